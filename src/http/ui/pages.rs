//! The overview, the events and the handlers pages.

use super::{Ctx, Live, Nav, UiError, clip, older_link, page, pretty_json, set, when};
use crate::http::AppState;
use crate::http::extract::{Path, Query};
use crate::http::problem::ApiError;
use crate::store::{ApprovalFilter, ApprovalState, EventFilter, JobRecord};
use axum::extract::State;
use maud::{Markup, html};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The overview's window for runs per handler.
const RUNS_WINDOW_MS: i64 = 24 * 60 * 60 * 1000;
/// Recent failures shown on the overview.
const FAILURES: u32 = 10;

pub async fn overview(State(app): State<Arc<AppState>>, ctx: Ctx) -> Result<Markup, UiError> {
    let now = app.clock.now().timestamp_millis();
    let overview = app
        .store
        .overview(now, now - RUNS_WINDOW_MS, FAILURES)
        .await?;
    let pending_approvals = app
        .store
        .list_approvals(&ApprovalFilter {
            state: Some(ApprovalState::Pending),
            limit: 100,
            ..ApprovalFilter::default()
        })
        .await?
        .len();
    // Every loaded handler, with its runs by outcome (handlers without runs show zeros).
    let mut handlers: BTreeMap<&str, (BTreeMap<&str, i64>, i64, i64)> = app
        .handlers
        .iter()
        .map(|h| (h.name.as_str(), Default::default()))
        .collect();
    for row in &overview.handlers {
        let entry = handlers.entry(&row.handler).or_default();
        entry.0.insert(&row.outcome, row.runs);
        entry.1 += row.input_tokens;
        entry.2 += row.output_tokens;
    }
    let body = html! {
        @if pending_approvals > 0 {
            p.notice {
                a href="/ui/approvals" {
                    (if pending_approvals >= 100 { "100+".to_string() } else { pending_approvals.to_string() })
                    " write(s) waiting for approval"
                }
            }
        }
        section {
            h2 { "Accounts" }
            @if overview.accounts.is_empty() {
                p.empty { "No account has queued, running or dead jobs, and none is paused." }
            } @else {
                table #accounts {
                    thead { tr {
                        th { "Account" } th.num { "Pending" } th.num { "Running" } th.num { "Dead" }
                        th { "Next run" } th { "Paused until" } th { "Call slots booked until" }
                    } }
                    tbody {
                        @for a in &overview.accounts {
                            tr data-account=(a.account) {
                                td { a href={ "/ui/jobs?account=" (super::encode(&a.account)) } { (a.account) } }
                                td.num { (a.pending) }
                                td.num { (a.running) }
                                td.num {
                                    @if a.dead > 0 {
                                        a.bad href={ "/ui/dead?account=" (super::encode(&a.account)) } { (a.dead) }
                                    } @else { "0" }
                                }
                                td { @if let Some(at) = a.next_run_at_ms { (when(at, now)) " (" (super::relative(at, now)) ")" } }
                                td {
                                    @if let Some(until) = a.paused_until_ms {
                                        span.warn { (super::relative(until, now)) }
                                        @if let Some(reason) = &a.pause_reason { " · " (clip(reason, 120)) }
                                    }
                                }
                                td {
                                    @for slot in &a.call_slots {
                                        span.slot { (slot.bucket) ": " (super::relative(slot.next_free_ms, now)) } " "
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        section {
            h2 { "Handlers, last 24 hours" }
            @if handlers.is_empty() {
                p.empty { "No handlers are loaded." }
            } @else {
                table #handler-runs {
                    thead { tr { th { "Handler" } th { "Runs by outcome" } th.num { "Tokens in" } th.num { "Tokens out" } } }
                    tbody {
                        @for (name, (outcomes, input, output)) in &handlers {
                            tr {
                                td { a href={ "/ui/jobs?handler=" (super::encode(name)) } { (name) } }
                                td {
                                    @if outcomes.is_empty() { span.muted { "no runs" } }
                                    @for (outcome, n) in outcomes {
                                        span class={ "outcome " (outcome) } { (outcome) " " (n) } " "
                                    }
                                }
                                td.num { (input) }
                                td.num { (output) }
                            }
                        }
                    }
                }
            }
        }
        section {
            h2 { "Recent failures" }
            @if overview.failures.is_empty() {
                p.empty { "No run has failed." }
            } @else {
                table #failures {
                    thead { tr { th { "Run" } th { "Job" } th { "Handler" } th { "Account" } th { "Outcome" } th { "Error" } th { "Started" } } }
                    tbody {
                        @for f in &overview.failures {
                            tr {
                                td { a href={ "/ui/jobs/" (f.job) "#run-" (f.id) } { (f.id) } }
                                td { a href={ "/ui/jobs/" (f.job) } { (f.job) } }
                                td { (f.handler) }
                                td { (f.account) }
                                td { span class={ "outcome " (f.outcome) } { (f.outcome) } }
                                td { @if let Some(e) = &f.error { (clip(e, 160)) } }
                                td { (when(f.started_at_ms, now)) }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(page(&ctx, Nav::Overview, "Overview", Live::Yes, body))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventQuery {
    source: Option<String>,
    kind: Option<String>,
    account: Option<String>,
    subject: Option<String>,
    status: Option<String>,
    /// `YYYY-MM-DDTHH:MM` (UTC), as a datetime-local input sends it.
    since: Option<String>,
    until: Option<String>,
    before: Option<i64>,
}

pub async fn events(
    State(app): State<Arc<AppState>>,
    ctx: Ctx,
    Query(q): Query<EventQuery>,
) -> Result<Markup, UiError> {
    let now = app.clock.now().timestamp_millis();
    let status = set(&q.status)
        .map(|s| crate::http::extract::event_status(&s))
        .transpose()
        .map_err(ApiError::InvalidQuery)?;
    let since = set(&q.since)
        .map(|s| parse_minute("since", &s))
        .transpose()?;
    let until = set(&q.until)
        .map(|s| parse_minute("until", &s))
        .transpose()?;
    let events = app
        .store
        .list_events(&EventFilter {
            source: set(&q.source),
            account: set(&q.account),
            kind: set(&q.kind),
            subject: set(&q.subject),
            status,
            since_ms: since,
            until_ms: until,
            before_seq: q.before,
            limit: super::PAGE,
        })
        .await?;
    let filters = [
        ("source", set(&q.source)),
        ("kind", set(&q.kind)),
        ("account", set(&q.account)),
        ("subject", set(&q.subject)),
        ("status", set(&q.status)),
        ("since", set(&q.since)),
        ("until", set(&q.until)),
    ];
    let mut sources: Vec<&String> = app.sources.keys().collect();
    sources.sort();
    let body = html! {
        form.filters method="get" action="/ui/events" {
            label { "Source " select name="source" {
                option value="" { "any" }
                @for s in &sources { option value=(s) selected[q.source.as_deref() == Some(s.as_str())] { (s) } }
            } }
            label { "Kind " input name="kind" value=[q.kind.as_deref()] placeholder="happyfox.ticket.created"; }
            label { "Account " input name="account" value=[q.account.as_deref()]; }
            label { "Subject " input name="subject" value=[q.subject.as_deref()]; }
            label { "Status " select name="status" {
                option value="" { "any" }
                @for s in ["routed", "unrouted", "ignored"] { option value=(s) selected[q.status.as_deref() == Some(s)] { (s) } }
            } }
            label { "Since (UTC) " input type="datetime-local" name="since" value=[q.since.as_deref()]; }
            label { "Until (UTC) " input type="datetime-local" name="until" value=[q.until.as_deref()]; }
            button type="submit" { "Filter" }
            a href="/ui/events" { "Clear" }
        }
        @if events.is_empty() {
            p.empty { "No events match." }
        } @else {
            table #events {
                thead { tr { th { "#" } th { "Received" } th { "Source" } th { "Kind" } th { "Account" } th { "Subject" } th { "Status" } } }
                tbody {
                    @for e in &events {
                        tr {
                            td { a href={ "/ui/events/" (e.seq) } { (e.seq) } }
                            td { (when(e.received_at_ms, now)) }
                            td { (e.source.as_str()) }
                            td { (e.kind) }
                            td { (e.account) }
                            td { (clip(&e.subject, 40)) }
                            td {
                                span class={ "status " (e.status.as_str()) } { (e.status.as_str()) }
                                @if let Some(r) = &e.status_reason { " · " (clip(r, 80)) }
                            }
                        }
                    }
                }
            }
            (older_link("/ui/events", &filters, events.len(), events.last().map(|e| e.seq)))
        }
    };
    Ok(page(&ctx, Nav::Events, "Events", Live::No, body))
}

/// A `datetime-local` value (`2026-12-03T07:40`, seconds optional) read as UTC.
fn parse_minute(key: &str, s: &str) -> Result<i64, ApiError> {
    ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"]
        .iter()
        .find_map(|f| chrono::NaiveDateTime::parse_from_str(s, f).ok())
        .map(|t| t.and_utc().timestamp_millis())
        .ok_or_else(|| {
            ApiError::InvalidQuery(format!("{key} {s:?}: expected YYYY-MM-DDTHH:MM (UTC)"))
        })
}

pub async fn event(
    State(app): State<Arc<AppState>>,
    ctx: Ctx,
    Path(seq): Path<i64>,
) -> Result<Markup, UiError> {
    let now = app.clock.now().timestamp_millis();
    let found = app
        .store
        .get_event_with_jobs(seq)
        .await?
        .ok_or(ApiError::NotFound)?;
    let e = &found.event;
    let body = html! {
        dl.fields {
            dt { "Source" } dd { (e.source.as_str()) }
            dt { "Event id" } dd { code { (e.event_id.as_str()) } }
            dt { "Kind" } dd { (e.kind) }
            dt { "Account" } dd { (e.account) }
            dt { "Subject" } dd { (e.subject) }
            dt { "Occurred" } dd { (when(e.occurred_at_ms, now)) }
            dt { "Received" } dd { (when(e.received_at_ms, now)) }
            dt { "Status" } dd {
                span class={ "status " (e.status.as_str()) } { (e.status.as_str()) }
                @if let Some(r) = &e.status_reason { " · " (r) }
            }
        }
        h2 { "Jobs it went to" }
        @if found.jobs.is_empty() {
            p.empty { "None: no handler took this event." }
        } @else {
            (job_table(&found.jobs, now))
        }
        h2 { "Payload" }
        pre.payload { (pretty_json(&e.payload)) }
    };
    Ok(page(
        &ctx,
        Nav::Events,
        &format!("Event {seq}"),
        Live::No,
        body,
    ))
}

/// Jobs as a table, used by the jobs list, the dead letters and an event's page.
pub fn job_table(jobs: &[JobRecord], now: i64) -> Markup {
    html! {
        table.jobs {
            thead { tr {
                th { "Job" } th { "Handler" } th { "Account" } th { "Subject" } th { "State" }
                th.num { "Attempts" } th.num { "Events" } th { "Run at / finished" } th { "Last error" }
            } }
            tbody {
                @for j in jobs {
                    tr data-job=(j.id) {
                        td { a href={ "/ui/jobs/" (j.id) } { (j.id) } }
                        td { (j.handler) }
                        td { (j.account) }
                        td { (clip(&j.subject, 30)) }
                        td { span class={ "state " (j.state.as_str()) } { (j.state.as_str()) } }
                        td.num { (j.attempts) "/" (j.max_attempts) }
                        td.num { (j.events) }
                        td { (when(j.finished_at_ms.unwrap_or(j.run_at_ms), now)) }
                        td { @if let Some(e) = &j.last_error { (clip(e, 100)) } }
                    }
                }
            }
        }
    }
}

pub async fn handlers(State(app): State<Arc<AppState>>, ctx: Ctx) -> Result<Markup, UiError> {
    let body = html! {
        @if !app.warnings.is_empty() {
            section.problems {
                h2 { "Problems" }
                ul { @for w in app.warnings.iter() { li.warn { (w) } } }
            }
        }
        @if app.handlers.iter().next().is_none() {
            p.empty { "No handlers are loaded: put handler files in the configured handlers_dir." }
        }
        @for h in app.handlers.iter() {
            section.handler id={ "handler-" (h.name) } {
                h2 {
                    (h.name)
                    " " span class={ "mode " (h.mode.as_str()) } { (h.mode.as_str()) }
                    @if !h.enabled { " " span.state.dead { "disabled" } }
                }
                @if let Some(d) = &h.description { p { (d) } }
                dl.fields {
                    dt { "On" } dd { @for p in &h.on { code { (p) } " " } }
                    dt { "When" } dd {
                        @if h.when.is_empty() { span.muted { "always" } }
                        @for c in &h.when { code { (c) } br; }
                    }
                    dt { "Debounce" } dd {
                        @match &h.debounce {
                            None => span.muted { "none: every event runs on its own" },
                            Some(d) => {
                                (humantime(d.period)) " after the last event, at most " (humantime(d.max_wait))
                                " after the first; key: "
                                @match &d.key {
                                    crate::handler::DebounceKey::Subject => "subject",
                                    crate::handler::DebounceKey::Account => "account",
                                    crate::handler::DebounceKey::Pointer(p) => code { (p) },
                                }
                            }
                        }
                    }
                    dt { "Tools" } dd { @for t in &h.agent.tools { code { (t) } " " } }
                    dt { "Model" } dd { (h.agent.model.as_deref().unwrap_or("the configured default")) }
                    dt { "Limits" } dd { (h.agent.max_steps) " steps, " (humantime(h.agent.deadline)) }
                    dt { "Attempts" } dd { (h.max_attempts.map_or("the scheduler's default".to_string(), |n| n.to_string())) }
                    dt { "File" } dd { code { (h.file.display()) } }
                }
                details { summary { "Prompt" } pre { (h.agent.prompt) } }
            }
        }
    };
    Ok(page(&ctx, Nav::Handlers, "Handlers", Live::No, body))
}

fn humantime(d: std::time::Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => format!("{}ms", d.as_millis()),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}
