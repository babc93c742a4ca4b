//! Jobs, a job's page (its events, journal of writes and runs' transcripts), and dead letters
//! with retry of one or of a filtered selection.

use super::pages::job_table;
use super::{
    Ctx, Live, Nav, UiError, clip, csrf_field, older_link, page, pretty_json, query, read_form,
    set, when,
};
use crate::http::AppState;
use crate::http::extract::{Path, Query};
use crate::http::problem::ApiError;
use crate::store::{JobFilter, JobId, JobState, RetryResult, RunFilter, StoredAction};
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;
use std::sync::Arc;

/// The most dead jobs one "retry all" click revives.
const RETRY_ALL_MAX: u32 = 10_000;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobQuery {
    state: Option<String>,
    handler: Option<String>,
    account: Option<String>,
    before: Option<i64>,
}

fn job_state(s: &Option<String>) -> Result<Option<JobState>, ApiError> {
    set(s)
        .map(|s| crate::http::extract::job_state(&s))
        .transpose()
        .map_err(ApiError::InvalidQuery)
}

pub async fn list(
    State(app): State<Arc<AppState>>,
    ctx: Ctx,
    Query(q): Query<JobQuery>,
) -> Result<Markup, UiError> {
    let now = app.clock.now().timestamp_millis();
    let jobs = app
        .store
        .list_jobs(&JobFilter {
            state: job_state(&q.state)?,
            handler: set(&q.handler),
            account: set(&q.account),
            before_id: q.before,
            limit: super::PAGE,
        })
        .await?;
    let filters = [
        ("state", set(&q.state)),
        ("handler", set(&q.handler)),
        ("account", set(&q.account)),
    ];
    let body = html! {
        form.filters method="get" action="/ui/jobs" {
            label { "State " select name="state" {
                option value="" { "any" }
                @for s in ["pending", "running", "done", "dead", "merged"] {
                    option value=(s) selected[q.state.as_deref() == Some(s)] { (s) }
                }
            } }
            (handler_select(&app, q.handler.as_deref()))
            label { "Account " input name="account" value=[q.account.as_deref()]; }
            button type="submit" { "Filter" }
            a href="/ui/jobs" { "Clear" }
        }
        @if jobs.is_empty() {
            p.empty { "No jobs match." }
        } @else {
            (job_table(&jobs, now))
            (older_link("/ui/jobs", &filters, jobs.len(), jobs.last().map(|j| j.id.0)))
        }
    };
    Ok(page(&ctx, Nav::Jobs, "Jobs", Live::Yes, body))
}

fn handler_select(app: &AppState, selected: Option<&str>) -> Markup {
    html! {
        label { "Handler " select name="handler" {
            option value="" { "any" }
            @for h in app.handlers.iter() {
                option value=(h.name) selected[selected == Some(h.name.as_str())] { (h.name) }
            }
        } }
    }
}

pub async fn show(
    State(app): State<Arc<AppState>>,
    ctx: Ctx,
    Path(id): Path<i64>,
) -> Result<Markup, UiError> {
    let now = app.clock.now().timestamp_millis();
    let found = app
        .store
        .get_job(JobId(id))
        .await?
        .ok_or(ApiError::NotFound)?;
    let job = &found.job;
    let actions = app.store.list_actions(JobId(id)).await?;
    let runs = app
        .store
        .list_runs(&RunFilter {
            job: Some(JobId(id)),
            limit: 100,
            ..RunFilter::default()
        })
        .await?;
    let body = html! {
        dl.fields {
            dt { "Handler" } dd { (job.handler) }
            dt { "Account" } dd { (job.account) }
            dt { "Subject" } dd { (job.subject) }
            dt { "State" } dd #job-state { span class={ "state " (job.state.as_str()) } { (job.state.as_str()) } }
            dt { "Attempts" } dd { (job.attempts) " of " (job.max_attempts) }
            dt { "Run at" } dd { (when(job.run_at_ms, now)) " (" (super::relative(job.run_at_ms, now)) ")" }
            dt { "First event" } dd { (when(job.first_seen_ms, now)) }
            dt { "Deadline" } dd { (when(job.deadline_at_ms, now)) }
            @if let Some(f) = job.finished_at_ms { dt { "Finished" } dd { (when(f, now)) } }
            @if let Some(owner) = &job.lease_owner { dt { "Leased to" } dd { (owner) } }
            @if let Some(e) = &job.last_error { dt { "Last error" } dd.error { (e) } }
        }
        @if job.state == JobState::Dead {
            form.inline method="post" action={ "/ui/jobs/" (id) "/retry" } {
                (csrf_field(&ctx))
                button.primary #retry type="submit" { "Retry this job" }
            }
        }
        h2 { "Events (" (found.events.len()) ")" }
        table.events {
            thead { tr { th { "#" } th { "Kind" } th { "Subject" } th { "Received" } } }
            tbody {
                @for e in &found.events {
                    tr {
                        td { a href={ "/ui/events/" (e.seq) } { (e.seq) } }
                        td { (e.kind) }
                        td { (clip(&e.subject, 40)) }
                        td { (when(e.received_at_ms, now)) }
                    }
                }
            }
        }
        h2 { "Writes sent upstream" }
        @if actions.is_empty() {
            p.empty { "None: no run of this job has sent a write upstream." }
        } @else {
            (journal(&actions, now))
        }
        h2 { "Runs (" (runs.len()) ")" }
        @if runs.is_empty() {
            p.empty { "Not run yet." }
        }
        @for (i, run) in runs.iter().enumerate() {
            (super::transcript::run(run, i == 0, now))
        }
    };
    Ok(page(&ctx, Nav::Jobs, &format!("Job {id}"), Live::No, body))
}

/// The action journal: what was sent, what answered, what is in doubt.
fn journal(actions: &[StoredAction], now: i64) -> Markup {
    html! {
        table #journal {
            thead { tr { th { "Key" } th { "State" } th { "Status" } th { "Request" } th { "Answer" } th { "Sent" } } }
            tbody {
                @for a in actions {
                    @let state = match (a.state.as_str(), a.finished_at_ms) {
                        ("sent", None) => "in doubt: sent, no answer recorded",
                        ("done", _) => "answered",
                        (other, _) => other,
                    };
                    tr {
                        td { code { (a.key) } }
                        td { (state) }
                        td { @if let Some(s) = a.status { (s) } }
                        td { details { summary { (clip(&a.request, 60)) } pre { (pretty_json(&a.request)) } } }
                        td { @if let Some(r) = &a.response { details { summary { (clip(r, 40)) } pre { (pretty_json(r)) } } } }
                        td { (when(a.created_at_ms, now)) }
                    }
                }
            }
        }
    }
}

pub async fn retry(
    State(app): State<Arc<AppState>>,
    ctx: Ctx,
    Path(id): Path<i64>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, UiError> {
    let _: super::NoFields = read_form(&app, &ctx, &headers, body).await?;
    let now = app.clock.now().timestamp_millis();
    let result = app.store.retry_job(JobId(id), now).await?;
    let shown = crate::http::api::retried(&app, id, &result)?;
    Ok(Redirect::to(&format!("/ui/jobs/{}", shown.0)).into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadQuery {
    handler: Option<String>,
    account: Option<String>,
    before: Option<i64>,
}

pub async fn dead(
    State(app): State<Arc<AppState>>,
    ctx: Ctx,
    Query(q): Query<DeadQuery>,
) -> Result<Markup, UiError> {
    let now = app.clock.now().timestamp_millis();
    let jobs = app
        .store
        .list_jobs(&JobFilter {
            state: Some(JobState::Dead),
            handler: set(&q.handler),
            account: set(&q.account),
            before_id: q.before,
            limit: super::PAGE,
        })
        .await?;
    let filters = [("handler", set(&q.handler)), ("account", set(&q.account))];
    let body = html! {
        p { "Jobs that gave up after their attempts, or failed for good. Retrying puts a job back in the queue with fresh attempts." }
        form.filters method="get" action="/ui/dead" {
            (handler_select(&app, q.handler.as_deref()))
            label { "Account " input name="account" value=[q.account.as_deref()]; }
            button type="submit" { "Filter" }
            a href="/ui/dead" { "Clear" }
        }
        @if jobs.is_empty() {
            p.empty { "No dead jobs match." }
        } @else {
            p { a.button #retry-all href={ "/ui/dead/retry" (query(&filters)) } { "Retry every dead job shown by this filter…" } }
            table.jobs {
                thead { tr { th { "Job" } th { "Handler" } th { "Account" } th { "Subject" } th.num { "Attempts" } th { "Died" } th { "Why" } th {} } }
                tbody {
                    @for j in &jobs {
                        tr data-job=(j.id) {
                            td { a href={ "/ui/jobs/" (j.id) } { (j.id) } }
                            td { (j.handler) }
                            td { (j.account) }
                            td { (clip(&j.subject, 30)) }
                            td.num { (j.attempts) "/" (j.max_attempts) }
                            td { @if let Some(f) = j.finished_at_ms { (when(f, now)) } }
                            td { @if let Some(e) = &j.last_error { (clip(e, 120)) } }
                            td {
                                form.inline method="post" action={ "/ui/jobs/" (j.id) "/retry" } {
                                    (csrf_field(&ctx))
                                    button type="submit" { "Retry" }
                                }
                            }
                        }
                    }
                }
            }
            (older_link("/ui/dead", &filters, jobs.len(), jobs.last().map(|j| j.id.0)))
        }
    };
    Ok(page(&ctx, Nav::Dead, "Dead letters", Live::Yes, body))
}

/// The dead jobs a "retry all" would revive, newest first, at most `RETRY_ALL_MAX`.
async fn dead_selection(
    app: &AppState,
    handler: Option<String>,
    account: Option<String>,
) -> Result<Vec<JobId>, UiError> {
    let jobs = app
        .store
        .list_jobs(&JobFilter {
            state: Some(JobState::Dead),
            handler,
            account,
            before_id: None,
            limit: RETRY_ALL_MAX,
        })
        .await?;
    Ok(jobs.into_iter().map(|j| j.id).collect())
}

fn describe(handler: &Option<String>, account: &Option<String>) -> String {
    match (handler, account) {
        (None, None) => "every handler and account".into(),
        (Some(h), None) => format!("handler {h}"),
        (None, Some(a)) => format!("account {a}"),
        (Some(h), Some(a)) => format!("handler {h}, account {a}"),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelectionQuery {
    handler: Option<String>,
    account: Option<String>,
}

/// The confirmation: how many jobs a retry of the selection would revive.
pub async fn confirm_retry_all(
    State(app): State<Arc<AppState>>,
    ctx: Ctx,
    Query(q): Query<SelectionQuery>,
) -> Result<Markup, UiError> {
    let (handler, account) = (set(&q.handler), set(&q.account));
    let n = dead_selection(&app, handler.clone(), account.clone())
        .await?
        .len();
    let body = html! {
        @if n == 0 {
            p.empty { "No dead jobs match (" (describe(&handler, &account)) ")." }
        } @else {
            p #confirm-count {
                "Retry " strong { (n) } " dead job" (if n == 1 { "" } else { "s" })
                " (" (describe(&handler, &account)) ")"
                @if n as u32 >= RETRY_ALL_MAX { ", the newest " (RETRY_ALL_MAX) " of them" }
                "? Each goes back to the queue with fresh attempts."
            }
            form method="post" action="/ui/dead/retry" {
                (csrf_field(&ctx))
                @if let Some(h) = &handler { input type="hidden" name="handler" value=(h); }
                @if let Some(a) = &account { input type="hidden" name="account" value=(a); }
                input type="hidden" name="expected" value=(n);
                button.primary #confirm type="submit" { "Retry " (n) " job" (if n == 1 { "" } else { "s" }) }
                " "
                a href={ "/ui/dead" (query(&[("handler", handler.clone()), ("account", account.clone())])) } { "Cancel" }
            }
        }
    };
    Ok(page(&ctx, Nav::Dead, "Retry dead jobs", Live::No, body))
}

#[derive(Debug, Deserialize)]
pub struct RetryAllForm {
    handler: Option<String>,
    account: Option<String>,
    /// How many the confirmation said: the answer says so if the selection changed meanwhile.
    expected: Option<usize>,
}

pub async fn retry_all(
    State(app): State<Arc<AppState>>,
    ctx: Ctx,
    headers: HeaderMap,
    body: Body,
) -> Result<Markup, UiError> {
    let form: RetryAllForm = read_form(&app, &ctx, &headers, body).await?;
    let (handler, account) = (set(&form.handler), set(&form.account));
    let ids = dead_selection(&app, handler.clone(), account.clone()).await?;
    let now = app.clock.now().timestamp_millis();
    let (mut requeued, mut merged, mut gone) = (0, 0, 0);
    for id in &ids {
        match app.store.retry_job(*id, now).await? {
            RetryResult::Requeued(_) => requeued += 1,
            RetryResult::MergedInto(_) => merged += 1,
            RetryResult::NotFound | RetryResult::NotDead(_) => gone += 1,
        }
    }
    if requeued + merged > 0 {
        app.jobs_added.notify_one();
    }
    tracing::info!(requeued, merged, selection = %describe(&handler, &account), "dead jobs retried from the dashboard");
    let body = html! {
        p #retry-result {
            (requeued) " requeued"
            @if merged > 0 { ", " (merged) " merged into a job already pending for the same key" }
            @if gone > 0 { ", " (gone) " no longer dead (retried by someone else)" }
            "."
        }
        @if let Some(expected) = form.expected {
            @if expected != ids.len() {
                p.warn { "The selection changed since the confirmation: it said " (expected) ", " (ids.len()) " were found." }
            }
        }
        p { a href="/ui/jobs?state=pending" { "See pending jobs" } " · " a href="/ui/dead" { "Back to dead letters" } }
    };
    Ok(page(&ctx, Nav::Dead, "Dead jobs retried", Live::No, body))
}
