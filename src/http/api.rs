//! Read and operate on stored events, jobs and runs: `/api/events`, `/api/jobs`, `/api/jobs/{id}`,
//! `POST /api/jobs/{id}/retry`, `/api/runs`, `/api/runs/{id}`. Authentication arrives with the admin API; until then bind the
//! service to a private address (the default listen address is loopback).

use super::AppState;
use super::extract::{Path, Query};
use super::problem::ApiError;
use crate::store::{
    EventFilter, JobFilter, JobId, JobRecord, JobState, JobWithEvents, RetryResult, RunFilter,
    StoredEvent, StoredRun,
};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use std::sync::Arc;

const MAX_LIMIT: u32 = 1000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventQuery {
    source: Option<String>,
    account: Option<String>,
    kind: Option<String>,
    before: Option<i64>,
    limit: Option<u32>,
}

pub async fn list_events(
    State(app): State<Arc<AppState>>,
    Query(q): Query<EventQuery>,
) -> Result<Json<Vec<StoredEvent>>, ApiError> {
    let filter = EventFilter {
        source: q.source,
        account: q.account,
        kind: q.kind,
        before_seq: q.before,
        limit: q.limit.unwrap_or(50).min(MAX_LIMIT),
        ..EventFilter::default()
    };
    Ok(Json(app.store.list_events(&filter).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobQuery {
    state: Option<String>,
    account: Option<String>,
    handler: Option<String>,
    before: Option<i64>,
    limit: Option<u32>,
}

pub async fn list_jobs(
    State(app): State<Arc<AppState>>,
    Query(q): Query<JobQuery>,
) -> Result<Json<Vec<JobRecord>>, ApiError> {
    let state = q
        .state
        .map(|s| {
            JobState::parse(&s).ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "state {s:?}: expected pending, running, done, dead or merged"
                ))
            })
        })
        .transpose()?;
    let filter = JobFilter {
        state,
        account: q.account,
        handler: q.handler,
        before_id: q.before,
        limit: q.limit.unwrap_or(50).min(MAX_LIMIT),
    };
    Ok(Json(app.store.list_jobs(&filter).await?))
}

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

pub async fn retry_job(
    State(app): State<Arc<AppState>>,
    Path(id): Path<i64>,
) -> Result<(StatusCode, Json<RetryResult>), ApiError> {
    let result = app
        .store
        .retry_job(JobId(id), app.clock.now().timestamp_millis())
        .await?;
    let status = match &result {
        RetryResult::Requeued(_) | RetryResult::MergedInto(_) => {
            app.jobs_added.notify_one();
            StatusCode::OK
        }
        RetryResult::NotFound => return Err(ApiError::NotFound),
        RetryResult::NotDead(state) => {
            return Err(ApiError::Conflict(format!(
                "job {id} is {}; only dead jobs can be retried",
                state.as_str()
            )));
        }
    };
    Ok((status, Json(result)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunQuery {
    job: Option<i64>,
    handler: Option<String>,
    account: Option<String>,
    before: Option<i64>,
    limit: Option<u32>,
}

pub async fn list_runs(
    State(app): State<Arc<AppState>>,
    Query(q): Query<RunQuery>,
) -> Result<Json<Vec<StoredRun>>, ApiError> {
    let filter = RunFilter {
        job: q.job.map(JobId),
        handler: q.handler,
        account: q.account,
        before_id: q.before,
        limit: q.limit.unwrap_or(50).min(MAX_LIMIT),
    };
    Ok(Json(app.store.list_runs(&filter).await?))
}

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
