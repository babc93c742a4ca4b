//! Held writes over HTTP: `GET /api/approvals`, `GET /api/approvals/{id}`,
//! `POST /api/approvals/{id}/approve` (sends the write) and `POST /api/approvals/{id}/reject`.
//! Deciding goes through `crate::approvals`, exactly as the CLI does.
//!
//! A decision may carry a JSON body naming who decided (`{"by": "ana"}`, default `api`) and, for
//! a rejection, why (`"reason"`): there is no authentication yet to say who is calling.

use super::AppState;
use super::extract::{Path, Query, read_body};
use super::problem::ApiError;
use crate::approvals::DecideError;
use crate::store::{Approval, ApprovalFilter, ApprovalState};
use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::sync::Arc;

const MAX_LIMIT: u32 = 1000;

/// A decision's body is a name and a reason: anything near this is not one.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// Who decided, when the body does not say.
const DEFAULT_DECIDER: &str = "api";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalQuery {
    state: Option<String>,
    account: Option<String>,
    handler: Option<String>,
    before: Option<i64>,
    limit: Option<u32>,
}

pub async fn list(
    State(app): State<Arc<AppState>>,
    Query(q): Query<ApprovalQuery>,
) -> Result<Json<Vec<Approval>>, ApiError> {
    let state = q
        .state
        .map(|s| {
            ApprovalState::parse(&s).ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "state {s:?}: expected pending, executing, approved, failed or rejected"
                ))
            })
        })
        .transpose()?;
    let filter = ApprovalFilter {
        state,
        account: q.account,
        handler: q.handler,
        before_id: q.before,
        limit: q.limit.unwrap_or(50).min(MAX_LIMIT),
    };
    Ok(Json(app.store.list_approvals(&filter).await?))
}

pub async fn get(
    State(app): State<Arc<AppState>>,
    Path(id): Path<i64>,
) -> Result<Json<Approval>, ApiError> {
    app.store
        .get_approval(id)
        .await?
        .map(Json)
        .ok_or(ApiError::NotFound)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApproveBody {
    by: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RejectBody {
    by: Option<String>,
    reason: Option<String>,
}

/// 200 with the approval once the write was sent; 502 if the upstream refused it (recorded as
/// `failed`); 404, 409 (not pending), 422 (the tool is gone or the arguments no longer fit) and
/// 503 (upstream unavailable) change nothing.
pub async fn approve(
    State(app): State<Arc<AppState>>,
    Path(id): Path<i64>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Approval>, ApiError> {
    let body = read_body(&headers, body, MAX_BODY_BYTES, app.body_read_timeout).await?;
    let body: ApproveBody = optional_json(&body)?;
    let by = decider(body.by)?;
    let approval = app.approvals.approve(id, &by).await?;
    if approval.state == ApprovalState::Failed {
        return Err(ApiError::UpstreamRefused(format!(
            "approval {id} was approved, but {} refused the write; it is recorded as failed: {}",
            approval.request.tool,
            approval.error.as_deref().unwrap_or_default()
        )));
    }
    Ok(Json(approval))
}

pub async fn reject(
    State(app): State<Arc<AppState>>,
    Path(id): Path<i64>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Approval>, ApiError> {
    let body = read_body(&headers, body, MAX_BODY_BYTES, app.body_read_timeout).await?;
    let body: RejectBody = optional_json(&body)?;
    let by = decider(body.by)?;
    let reason = body.reason.filter(|r| !r.trim().is_empty());
    Ok(Json(app.approvals.reject(id, &by, reason).await?))
}

/// An empty body is the defaults; anything else must be the JSON object the route documents.
fn optional_json<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("body: {e}")))
}

fn decider(by: Option<String>) -> Result<String, ApiError> {
    match by {
        None => Ok(DEFAULT_DECIDER.to_string()),
        Some(by) if by.trim().is_empty() => {
            Err(ApiError::BadRequest("by: must not be empty".into()))
        }
        Some(by) => Ok(by.trim().to_string()),
    }
}

impl From<DecideError> for ApiError {
    fn from(e: DecideError) -> Self {
        match e {
            DecideError::NotFound(_) => ApiError::NotFound,
            DecideError::NotPending { .. } | DecideError::ClaimLost(_) => {
                ApiError::Conflict(e.to_string())
            }
            DecideError::ToolMissing { .. } | DecideError::InvalidArguments { .. } => {
                ApiError::Unprocessable(e.to_string())
            }
            DecideError::Unavailable { .. } => ApiError::UpstreamUnavailable(e.to_string()),
            DecideError::Internal { .. } => ApiError::Internal(e.to_string()),
            DecideError::Store(e) => ApiError::StoreUnavailable(e),
        }
    }
}
