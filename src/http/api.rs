//! Read and operate on stored events, jobs and runs: `/api/events`, `/api/jobs`, `/api/jobs/{id}`,
//! `POST /api/jobs/{id}/retry`, `/api/runs`, `/api/runs/{id}`. Behind `api_token` when one is
//! configured (`super::require_api_token`). Lists page by key (`super::paging`); every route is
//! described in `/api/openapi.json` by its `utoipa::path` attribute here.

use super::AppState;
use super::extract::{Path, Query};
use super::paging::{Page, page_size};
use super::problem::ApiError;
use crate::store::{
    EventFilter, JobFilter, JobId, JobRecord, JobState, JobWithEvents, RetryResult, RunFilter,
    StoredEvent, StoredRun,
};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::IntoParams;

/// Also the query of the next page's `Link`, with `before` replaced.
#[derive(Debug, Clone, Deserialize, Serialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventQuery {
    /// Only events from this configured source.
    source: Option<String>,
    /// Only events of this account.
    account: Option<String>,
    /// Only events of this kind, e.g. `happyfox.ticket.updated`.
    kind: Option<String>,
    /// Only events about this subject (a ticket, a company).
    subject: Option<String>,
    /// Only events with this status: `routed`, `unrouted` or `ignored`.
    status: Option<String>,
    /// Only events received at or after this time (Unix milliseconds).
    since: Option<i64>,
    /// Only events received before this time (Unix milliseconds).
    until: Option<i64>,
    /// Only events with a smaller `seq` (exclusive): the next page of the newest-first list.
    before: Option<i64>,
    /// Rows per page (default 50; more than 1000 is served as 1000).
    #[param(minimum = 1)]
    limit: Option<u32>,
}

#[utoipa::path(
    get,
    path = "/api/events",
    tag = "events",
    params(EventQuery),
    responses(
        (status = 200, description = "Stored events, newest first (by `seq`)",
            body = [StoredEvent],
            headers(("Link" = String, description = "`<...&before=SEQ>; rel=\"next\"` when the page is full: the same query, one page further"))),
    )
)]
pub async fn list_events(
    State(app): State<Arc<AppState>>,
    Query(q): Query<EventQuery>,
) -> Result<Page<StoredEvent>, ApiError> {
    let limit = page_size(q.limit)?;
    let status = q
        .status
        .as_deref()
        .map(super::extract::event_status)
        .transpose()
        .map_err(ApiError::InvalidQuery)?;
    let filter = EventFilter {
        source: q.source.clone(),
        account: q.account.clone(),
        kind: q.kind.clone(),
        subject: q.subject.clone(),
        status,
        since_ms: q.since,
        until_ms: q.until,
        before_seq: q.before,
        limit,
    };
    let rows = app.store.list_events(&filter).await?;
    Page::new(
        "/api/events",
        rows,
        limit,
        |e| e.seq,
        |before| EventQuery {
            before: Some(before),
            ..q
        },
    )
}

/// Also the query of the next page's `Link`, with `before` replaced.
#[derive(Debug, Clone, Deserialize, Serialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct JobQuery {
    /// Only jobs in this state.
    #[param(value_type = Option<JobState>)]
    state: Option<String>,
    /// Only jobs of this account.
    account: Option<String>,
    /// Only jobs of this handler.
    handler: Option<String>,
    /// Only jobs with a smaller `id` (exclusive): the next page of the newest-first list.
    before: Option<i64>,
    /// Rows per page (default 50; more than 1000 is served as 1000).
    #[param(minimum = 1)]
    limit: Option<u32>,
}

#[utoipa::path(
    get,
    path = "/api/jobs",
    tag = "jobs",
    params(JobQuery),
    responses(
        (status = 200, description = "Jobs, newest first (by `id`)", body = [JobRecord],
            headers(("Link" = String, description = "`<...&before=ID>; rel=\"next\"` when the page is full: the same query, one page further"))),
    )
)]
pub async fn list_jobs(
    State(app): State<Arc<AppState>>,
    Query(q): Query<JobQuery>,
) -> Result<Page<JobRecord>, ApiError> {
    let state = q
        .state
        .as_deref()
        .map(super::extract::job_state)
        .transpose()
        .map_err(ApiError::BadRequest)?;
    let limit = page_size(q.limit)?;
    let filter = JobFilter {
        state,
        account: q.account.clone(),
        handler: q.handler.clone(),
        before_id: q.before,
        limit,
    };
    let rows = app.store.list_jobs(&filter).await?;
    Page::new(
        "/api/jobs",
        rows,
        limit,
        |j| j.id.0,
        |before| JobQuery {
            before: Some(before),
            ..q
        },
    )
}

#[utoipa::path(
    get,
    path = "/api/jobs/{id}",
    tag = "jobs",
    params(("id" = i64, Path, description = "The job's id")),
    responses(
        (status = 200, description = "The job and every event it coalesced, oldest first", body = JobWithEvents),
        (status = 404, description = "No such job", body = super::problem::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_job(
    State(app): State<Arc<AppState>>,
    Path(id): Path<i64>,
) -> Result<Json<JobWithEvents>, ApiError> {
    app.store
        .get_job(JobId(id))
        .await?
        .map(Json)
        .ok_or(ApiError::NotFound)
}

#[utoipa::path(
    post,
    path = "/api/jobs/{id}/retry",
    tag = "jobs",
    params(("id" = i64, Path, description = "The dead job's id")),
    responses(
        (status = 200, description = "Pending again (`requeued`), or its events folded into the pending job of its key (`merged_into`)", body = RetryResult),
        (status = 404, description = "No such job", body = super::problem::Problem, content_type = "application/problem+json"),
        (status = 409, description = "The job is not dead", body = super::problem::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn retry_job(
    State(app): State<Arc<AppState>>,
    Path(id): Path<i64>,
) -> Result<(StatusCode, Json<RetryResult>), ApiError> {
    let result = app
        .store
        .retry_job(JobId(id), app.clock.now().timestamp_millis())
        .await?;
    retried(&app, id, &result)?;
    Ok((StatusCode::OK, Json(result)))
}

/// What a retry of job `id` did, as the API and the dashboard answer it: the job to look at next
/// (the job itself, or the pending job its events joined), with the scheduler woken; 404 for no
/// such job, 409 for one that is not dead.
pub(super) fn retried(app: &AppState, id: i64, result: &RetryResult) -> Result<JobId, ApiError> {
    match result {
        RetryResult::Requeued(job) | RetryResult::MergedInto(job) => {
            app.jobs_added.notify_one();
            Ok(*job)
        }
        RetryResult::NotFound => Err(ApiError::NotFound),
        RetryResult::NotDead(state) => Err(ApiError::Conflict(format!(
            "job {id} is {}; only dead jobs can be retried",
            state.as_str()
        ))),
    }
}

/// Also the query of the next page's `Link`, with `before` replaced.
#[derive(Debug, Clone, Deserialize, Serialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RunQuery {
    /// Only the runs of this job.
    job: Option<i64>,
    /// Only runs of this handler.
    handler: Option<String>,
    /// Only runs for this account.
    account: Option<String>,
    /// Only runs with a smaller `id` (exclusive): the next page of the newest-first list.
    before: Option<i64>,
    /// Rows per page (default 50; more than 1000 is served as 1000).
    #[param(minimum = 1)]
    limit: Option<u32>,
}

#[utoipa::path(
    get,
    path = "/api/runs",
    tag = "runs",
    params(RunQuery),
    responses(
        (status = 200, description = "Agent runs with their transcripts, newest first (by `id`)", body = [StoredRun],
            headers(("Link" = String, description = "`<...&before=ID>; rel=\"next\"` when the page is full: the same query, one page further"))),
    )
)]
pub async fn list_runs(
    State(app): State<Arc<AppState>>,
    Query(q): Query<RunQuery>,
) -> Result<Page<StoredRun>, ApiError> {
    let limit = page_size(q.limit)?;
    let filter = RunFilter {
        job: q.job.map(JobId),
        handler: q.handler.clone(),
        account: q.account.clone(),
        before_id: q.before,
        limit,
    };
    let rows = app.store.list_runs(&filter).await?;
    Page::new(
        "/api/runs",
        rows,
        limit,
        |r| r.id,
        |before| RunQuery {
            before: Some(before),
            ..q
        },
    )
}

#[utoipa::path(
    get,
    path = "/api/runs/{id}",
    tag = "runs",
    params(("id" = i64, Path, description = "The run's id")),
    responses(
        (status = 200, description = "The run and its transcript", body = StoredRun),
        (status = 404, description = "No such run", body = super::problem::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_run(
    State(app): State<Arc<AppState>>,
    Path(id): Path<i64>,
) -> Result<Json<StoredRun>, ApiError> {
    app.store
        .get_run(id)
        .await?
        .map(Json)
        .ok_or(ApiError::NotFound)
}
