//! `hookwise runs`: list agent runs and print one run's transcript so a person can follow what
//! the agent saw, asked for, was refused and would have done.

use super::pages;
use crate::store::{self, JobId, RunFilter, StoredRun};
use anyhow::bail;
use clap::Subcommand;
use serde_json::Value;
use std::fmt::Write as _;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// Newest first, in pages: --limit N (default 50), --before ID for the next page, or --all.
    List {
        /// Only the runs of this job.
        #[arg(long)]
        job: Option<i64>,
        /// Only runs of this handler.
        #[arg(long)]
        handler: Option<String>,
        /// Only runs for this account.
        #[arg(long)]
        account: Option<String>,
        #[command(flatten)]
        page: pages::PageArgs,
        /// One JSON object per line (JSON Lines, also with --all) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One run: its header, then every step of the transcript in order.
    Show {
        id: i64,
        /// The stored run as JSON, nothing shortened.
        #[arg(long)]
        json: bool,
    },
}

/// How much of one text the readable transcript prints. Tool results can be whole API responses;
/// past this the reader is pointed at `--json`, which never shortens anything.
const SHOW_TEXT_LIMIT: usize = 4_000;

pub async fn run(store: &dyn store::Store, command: RunsCommand) -> anyhow::Result<ExitCode> {
    match command {
        RunsCommand::List {
            job,
            handler,
            account,
            page,
            json,
        } => {
            if !json {
                print!("{}", header());
            }
            let filter = RunFilter {
                job: job.map(JobId),
                handler,
                account,
                ..RunFilter::default()
            };
            let listed = pages::list(
                &page,
                async |before_id, limit| {
                    let filter = RunFilter {
                        before_id,
                        limit,
                        ..filter.clone()
                    };
                    store.list_runs(&filter).await
                },
                |r| r.id,
                |out, r| {
                    if json {
                        writeln!(out, "{}", serde_json::to_string(r)?)?;
                    } else {
                        out.write_all(row(r).as_bytes())?;
                    }
                    Ok(())
                },
            )
            .await?;
            if let Some(notice) = pages::notice(&page, &listed, "runs") {
                eprintln!("{notice}");
            }
            Ok(ExitCode::SUCCESS)
        }
        RunsCommand::Show { id, json } => {
            let Some(run) = store.get_run(id).await? else {
                bail!("no run {id}");
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&run)?);
            } else {
                print!("{}", transcript(&run));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The `runs list` table's header line.
fn header() -> String {
    format!(
        "{:>6} {:>6}  {:<20} {:<12} {:>7}  {:<8} {:<15} {:>5} {:>15} {:>9}  started\n",
        "id",
        "job",
        "handler",
        "account",
        "attempt",
        "mode",
        "outcome",
        "steps",
        "tokens in/out",
        "cost"
    )
}

/// One run's line of the `runs list` table.
fn row(r: &StoredRun) -> String {
    let run = &r.run;
    let steps = run.steps.as_array().map_or(0, Vec::len);
    format!(
        "{:>6} {:>6}  {:<20} {:<12} {:>7}  {:<8} {:<15} {:>5} {:>15} {:>9}  {}\n",
        r.id,
        run.job,
        clip(&run.handler, 20),
        clip(&run.account, 12),
        run.attempt,
        clip(&run.mode, 8),
        clip(&run.outcome, 15),
        steps,
        format!("{}/{}", run.input_tokens, run.output_tokens),
        cost(run.cost_usd),
        super::time(run.started_at_ms)
    )
}

/// The readable transcript of `runs show`.
pub fn transcript(r: &StoredRun) -> String {
    let run = &r.run;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "run {}: job {}, attempt {}: {}",
        r.id, run.job, run.attempt, run.outcome
    );
    let _ = writeln!(out, "  handler   {}", run.handler);
    let _ = writeln!(out, "  account   {}", run.account);
    let _ = writeln!(out, "  mode      {}", run.mode);
    let _ = writeln!(out, "  model     {}", run.model);
    let _ = writeln!(
        out,
        "  started   {}  duration {}",
        super::time(run.started_at_ms),
        duration(run.finished_at_ms - run.started_at_ms)
    );
    let _ = writeln!(
        out,
        "  tokens    {} in, {} out",
        run.input_tokens, run.output_tokens
    );
    let _ = writeln!(out, "  cost      {}", cost(run.cost_usd));
    if let Some(e) = &run.error {
        let _ = writeln!(out, "  error     {}", shorten(e));
    }
    let Some(steps) = run.steps.as_array() else {
        // Not the array the contract promises: show it as it is rather than nothing.
        let _ = writeln!(out, "\nsteps: {}", shorten(&run.steps.to_string()));
        return out;
    };
    let _ = writeln!(out, "\nsteps ({}):", steps.len());
    for (i, step) in steps.iter().enumerate() {
        write_step(&mut out, i + 1, step);
    }
    out
}

fn write_step(out: &mut String, n: usize, step: &Value) {
    let kind = step.get("type").and_then(Value::as_str).unwrap_or_default();
    let name = text(step, "name");
    let call = text(step, "call_id");
    match kind {
        "system" => {
            let _ = writeln!(out, "{n:>3}. system prompt");
            body(out, &text(step, "text"));
        }
        "user" => {
            let _ = writeln!(out, "{n:>3}. event context (to the model)");
            body(out, &text(step, "text"));
        }
        "assistant" => {
            let _ = writeln!(out, "{n:>3}. assistant");
            let said = text(step, "text");
            if !said.is_empty() {
                body(out, &said);
            }
            let calls = step.get("tool_calls").and_then(Value::as_array);
            for c in calls.into_iter().flatten() {
                let _ = write!(
                    out,
                    "       -> calls {} [{}]",
                    text(c, "name"),
                    text(c, "id")
                );
                arguments(out, &text(c, "arguments"), "            ");
            }
        }
        "tool_result" => {
            let _ = writeln!(out, "{n:>3}. result of {name} [{call}]");
            body(out, &text(step, "result"));
        }
        "tool_error" => {
            let _ = writeln!(out, "{n:>3}. ERROR from {name} [{call}]");
            body(out, &text(step, "error"));
        }
        // A refusal with the call's arguments is one outside the tool's argument scope.
        "refused" if step.get("arguments").is_some() => {
            let _ = writeln!(
                out,
                "{n:>3}. REFUSED {name} [{call}]: outside the handler's argument scope"
            );
            body(out, &text(step, "reason"));
        }
        "refused" => {
            let _ = writeln!(
                out,
                "{n:>3}. REFUSED {name} [{call}]: not in the handler's allowed tools"
            );
            body(out, &text(step, "reason"));
        }
        "intended_action" => {
            let mode = text(step, "mode");
            let held = match step.get("approval") {
                Some(id) if !id.is_null() => format!(", approval {id}"),
                _ => String::new(),
            };
            let _ = write!(
                out,
                "{n:>3}. NOT SENT ({mode}{held}): would call {name} [{call}]"
            );
            arguments(out, &text(step, "arguments"), "       ");
        }
        _ => {
            let _ = writeln!(out, "{n:>3}. {}", shorten(&step.to_string()));
        }
    }
}

/// A tool call's arguments after its line: an object one `key: value` per line below it (strings
/// as text, so a note's HTML or a reply reads as written), anything else on the same line.
fn arguments(out: &mut String, raw: &str, indent: &str) {
    let Ok(Value::Object(args)) = serde_json::from_str::<Value>(raw) else {
        let _ = writeln!(out, " {}", shorten(raw));
        return;
    };
    let _ = writeln!(out);
    for (key, value) in &args {
        let value = match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let mut lines = shorten(&value)
            .lines()
            .map(str::to_owned)
            .collect::<Vec<_>>()
            .into_iter();
        let _ = writeln!(out, "{indent}{key}: {}", lines.next().unwrap_or_default());
        for line in lines {
            let _ = writeln!(out, "{indent}  {line}");
        }
    }
}

/// A field as text: strings as they are, anything else as compact JSON, missing as empty.
fn text(v: &Value, key: &str) -> String {
    match v.get(key) {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// Indented under its step, every line, so multi-line texts stay readable.
fn body(out: &mut String, s: &str) {
    for line in shorten(s).lines() {
        let _ = writeln!(out, "       {line}");
    }
}

/// `s` cut to SHOW_TEXT_LIMIT characters, saying how much was left out.
pub(super) fn shorten(s: &str) -> String {
    match s.char_indices().nth(SHOW_TEXT_LIMIT) {
        None => s.to_string(),
        Some((at, _)) => format!(
            "{}... [{} more characters; --json shows all]",
            &s[..at],
            s[at..].chars().count()
        ),
    }
}

/// `s` in at most `width` characters for a table column.
pub(super) fn clip(s: &str, width: usize) -> String {
    match s.char_indices().nth(width.saturating_sub(1)) {
        Some((at, _)) if s.chars().count() > width => format!("{}~", &s[..at]),
        _ => s.to_string(),
    }
}

/// A run's cost for people: `$0.0042`, or `-` when its model has no price.
fn cost(usd: Option<f64>) -> String {
    usd.map_or_else(|| "-".to_string(), crate::agent::budget::dollars)
}

fn duration(ms: i64) -> String {
    if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        format!("{}m{:02}s", ms / 60_000, (ms % 60_000) / 1000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::RunRecord;
    use serde_json::json;

    fn stored(steps: Value) -> StoredRun {
        StoredRun {
            id: 3,
            run: RunRecord {
                job: JobId(7),
                handler: "triage".into(),
                account: "acme".into(),
                attempt: 2,
                mode: "dry-run".into(),
                model: "claude-test".into(),
                started_at_ms: 1_767_225_600_000,
                finished_at_ms: 1_767_225_602_500,
                outcome: "failed".into(),
                error: Some("upstream said 502".into()),
                input_tokens: 1200,
                output_tokens: 34,
                cost_usd: Some(0.00021),
                steps,
            },
        }
    }

    #[test]
    fn the_transcript_shows_every_known_step_readably_and_others_as_json() {
        let text = transcript(&stored(json!([
            {"type": "system", "text": "You triage."},
            {"type": "user", "text": "Ticket 7\nwas updated"},
            {"type": "assistant", "text": "Checking.", "tool_calls": [
                {"id": "c1", "name": "get_ticket", "arguments": {"id": 7}}]},
            {"type": "tool_result", "call_id": "c1", "name": "get_ticket", "result": {"status": "open"}},
            {"type": "tool_error", "call_id": "c2", "name": "get_user", "error": "404"},
            {"type": "refused", "call_id": "c3", "name": "delete_ticket", "reason": "not allowed"},
            {"type": "intended_action", "call_id": "c4", "name": "add_note",
             "arguments": {"text": "hi"}, "mode": "dry-run"},
            {"type": "intended_action", "call_id": "c5", "name": "add_note",
             "arguments": {"text": "ok?"}, "mode": "approve", "approval": 12},
            {"type": "novel", "x": 1},
            {"type": "refused", "call_id": "c6", "name": "update_ticket", "arguments": {"status": 2},
             "reason": "argument `status` may not be set"}
        ])));
        for expected in [
            "run 3: job 7, attempt 2: failed",
            "  error     upstream said 502",
            "duration 2.5s",
            "  tokens    1200 in, 34 out",
            "  cost      $0.0002",
            "steps (10):",
            "  1. system prompt\n       You triage.\n",
            "       Ticket 7\n       was updated\n",
            "       -> calls get_ticket [c1]\n            id: 7\n",
            "  4. result of get_ticket [c1]\n       {\"status\":\"open\"}",
            "  5. ERROR from get_user [c2]\n       404",
            "  6. REFUSED delete_ticket [c3]: not in the handler's allowed tools",
            " 10. REFUSED update_ticket [c6]: outside the handler's argument scope\n       argument `status` may not be set",
            "  7. NOT SENT (dry-run): would call add_note [c4]",
            "       text: hi",
            "  8. NOT SENT (approve, approval 12): would call add_note [c5]",
            "       text: ok?",
            "  9. {\"type\":\"novel\",\"x\":1}",
        ] {
            assert!(text.contains(expected), "{expected:?} in\n{text}");
        }
    }

    #[test]
    fn the_list_shows_the_cost_and_a_budget_outcome_whole() {
        let mut run = stored(json!([]));
        run.run.outcome = "budget_exceeded".into();
        let line = row(&run);
        assert!(line.contains(" budget_exceeded "), "{line}");
        assert!(line.contains("1200/34   $0.0002  "), "{line}");
        run.run.cost_usd = None;
        let line = row(&run);
        assert!(line.contains("1200/34         -  "), "{line}");
        assert!(header().contains("tokens in/out      cost  started"));
    }

    #[test]
    fn long_texts_are_shortened_in_the_readable_views_only() {
        let long = "é".repeat(SHOW_TEXT_LIMIT + 10);
        let run = stored(json!([{"type": "user", "text": long}]));
        let text = transcript(&run);
        assert!(text.contains("... [10 more characters; --json shows all]"));
        assert!(!text.contains(&long));
        assert!(serde_json::to_string(&run).unwrap().contains(&long));
        let line = row(&StoredRun {
            run: RunRecord {
                handler: "a-very-long-handler-name-indeed".into(),
                ..run.run.clone()
            },
            ..run
        });
        assert!(line.contains("a-very-long-handler~ "), "{line}");
    }
}
