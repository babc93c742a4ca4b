//! Extractors whose refusals are problems: axum's `Query` and `Path` answer a bad value with
//! `400 text/plain`; these wrap them and answer with the problem type of `ApiError`. Request
//! bodies are read by `read_body`, which refuses a declared length over the limit before reading
//! anything and bounds the time the whole body may take.

use super::problem::ApiError;
use axum::body::{Body, Bytes};
use axum::extract::FromRequestParts;
use axum::http::{HeaderMap, header, request::Parts};
use futures::StreamExt;
use serde::de::DeserializeOwned;
use std::time::Duration;

/// The query string as `T`; unknown keys and bad values are `invalid-query` problems, and so is
/// a NUL character (`%00`): PostgreSQL text cannot hold one, so such a filter would fail the
/// query there (a 503), while SQLite would run it; refused alike on both.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        if parts.uri.query().is_some_and(|q| q.contains("%00")) {
            return Err(ApiError::InvalidQuery(
                "query values must not contain NUL characters (%00)".into(),
            ));
        }
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Query(q.0))
            .map_err(|e| ApiError::InvalidQuery(e.body_text()))
    }
}

/// The path parameters as `T`; a value that does not parse (`/api/jobs/abc`, an id past `i64`)
/// is an `invalid-path` problem.
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Path(p.0))
            .map_err(|e| ApiError::InvalidPath(e.body_text()))
    }
}

/// Reads a whole request body of at most `limit` bytes within `timeout`. A declared
/// `Content-Length` over the limit is refused before a byte is read (so `Expect: 100-continue`
/// gets no `100 Continue`); a body that turns out longer is refused as soon as it passes the limit.
pub async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::PayloadTooLarge(limit));
    }
    let read = async {
        let mut stream = body.into_data_stream();
        let mut bytes = Vec::with_capacity(declared.map_or(0, |n| n as usize));
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| ApiError::BodyRead(e.to_string()))?;
            if bytes.len() + chunk.len() > limit {
                return Err(ApiError::PayloadTooLarge(limit));
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(Bytes::from(bytes))
    };
    tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| ApiError::BodyTimeout(timeout))?
}

/// A `state` filter's value as a job state; the refusal names the states there are.
pub fn job_state(s: &str) -> Result<crate::store::JobState, String> {
    crate::store::JobState::parse(s)
        .ok_or_else(|| format!("state {s:?}: expected pending, running, done, dead or merged"))
}

/// A `status` filter's value as an event status; the refusal names the statuses there are.
pub fn event_status(s: &str) -> Result<crate::store::EventStatus, String> {
    crate::store::EventStatus::parse(s)
        .ok_or_else(|| format!("status {s:?}: expected routed, unrouted or ignored"))
}
