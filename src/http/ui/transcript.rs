//! A run's transcript rendered for a person, like a chat: the prompt and event context (folded),
//! the model's messages, its tool calls with their arguments, the tools' results (folded when
//! long), refusals and errors, the writes it intended but did not send, and notes.

use super::{pretty_json, when};
use crate::store::StoredRun;
use maud::{Markup, html};
use serde_json::Value;

/// Longer results start folded.
const FOLD_AT: usize = 600;

pub fn run(r: &StoredRun, open: bool, now: i64) -> Markup {
    let run = &r.run;
    let steps = run.steps.as_array();
    let duration_ms = (run.finished_at_ms - run.started_at_ms).max(0);
    html! {
        details.run id={ "run-" (r.id) } open[open] {
            summary {
                "Run " (r.id) " · attempt " (run.attempt) " · "
                span class={ "outcome " (run.outcome) } { (run.outcome) }
                " · " (run.mode) " · " (run.model)
                " · " (run.input_tokens) " in / " (run.output_tokens) " out tokens"
                @if let Some(usd) = run.cost_usd { " · " (crate::agent::budget::dollars(usd)) }
                " · " (format!("{:.1}s", duration_ms as f64 / 1000.0))
                " · " (when(run.started_at_ms, now))
            }
            @if let Some(e) = &run.error { p.error { (e) } }
            ol.transcript {
                @match steps {
                    Some(steps) => { @for step in steps { (self::step(step)) } }
                    None => li.step.other { pre { (run.steps.to_string()) } }
                }
            }
        }
    }
}

fn text(v: &Value, key: &str) -> String {
    match v.get(key) {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => serde_json::to_string_pretty(other).unwrap_or_default(),
    }
}

/// Tool arguments are stored as a JSON value or as the model's JSON text: pretty either way.
fn arguments(v: &Value) -> String {
    match v.get("arguments") {
        Some(Value::String(s)) => pretty_json(s),
        Some(other) => serde_json::to_string_pretty(other).unwrap_or_default(),
        None => String::new(),
    }
}

/// A block folded behind its summary when long.
fn foldable(summary: &str, body: &str) -> Markup {
    html! {
        @if body.chars().count() > FOLD_AT {
            details { summary { (summary) " (" (body.chars().count()) " characters)" } pre { (body) } }
        } @else {
            div.label { (summary) }
            pre { (body) }
        }
    }
}

fn step(step: &Value) -> Markup {
    let kind = step.get("type").and_then(Value::as_str).unwrap_or_default();
    let name = text(step, "name");
    let call = text(step, "call_id");
    html! {
        @match kind {
            "system" => li.step.system { details { summary { "System prompt" } pre { (text(step, "text")) } } },
            "user" => li.step.user { details { summary { "Event context given to the model" } pre { (text(step, "text")) } } },
            "assistant" => li.step.assistant {
                div.label { "Model" }
                @let said = text(step, "text");
                @if !said.is_empty() { p.said { (said) } }
                @for c in step.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
                    div.call {
                        "calls " code.tool { (text(c, "name")) } " " span.muted { "[" (text(c, "id")) "]" }
                        pre.args { (arguments(c)) }
                    }
                }
            },
            "tool_result" => li.step.result {
                (foldable(&format!("Result of {name} [{call}]"), &text(step, "result")))
            },
            "tool_error" => li.step.error {
                (foldable(&format!("Error from {name} [{call}], given back to the model"), &text(step, "error")))
            },
            // A refusal with the call's arguments is one outside the tool's argument scope.
            "refused" if step.get("arguments").is_some() => li.step.refused {
                div.label { "Refused " code { (name) } " [" (call) "]: outside the handler's argument scope" }
                @let reason = text(step, "reason");
                @if !reason.is_empty() { p { (reason) } }
            },
            "refused" => li.step.refused {
                div.label { "Refused " code { (name) } " [" (call) "]: not among the handler's tools" }
                @let reason = text(step, "reason");
                @if !reason.is_empty() { p { (reason) } }
            },
            "intended_action" => li.step.intended {
                div.label {
                    "Not sent (" (text(step, "mode")) "): would call " code.tool { (name) } " [" (call) "]"
                    @if let Some(id) = step.get("approval").and_then(Value::as_i64) {
                        " · " a href={ "/ui/approvals/" (id) } { "approval " (id) }
                    }
                }
                pre.args { (arguments(step)) }
            },
            "note" => li.step.note { div.label { "Note" } p { (text(step, "text")) } },
            _ => li.step.other { pre { (serde_json::to_string_pretty(step).unwrap_or_default()) } },
        }
    }
}
