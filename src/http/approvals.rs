//! Held writes over HTTP: `GET /api/approvals`, `GET /api/approvals/{id}`,
//! `POST /api/approvals/{id}/approve` (sends the write) and `POST /api/approvals/{id}/reject`.
//! Deciding goes through `crate::approvals`, exactly as the CLI does.
//!
//! A decision may carry a JSON body naming who decided (`{"by": "ana"}`, default `api`) and, for
//! a rejection, why (`"reason"`): there is no authentication yet to say who is calling.

use super::AppState;
use super::extract::{Path, Query, read_body};
use super::paging::{Page, page_size};
use super::problem::{ApiError, Problem};
use crate::approvals::DecideError;
use crate::store::{Approval, ApprovalFilter, ApprovalState};
use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};

/// A decision's body is a name and a reason: anything near this is not one.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// Who decided, when the body does not say.
const DEFAULT_DECIDER: &str = "api";

/// Also the query of the next page's `Link`, with `before` replaced.
#[derive(Debug, Clone, Deserialize, Serialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ApprovalQuery {
    /// Only approvals in this state.
    #[param(value_type = Option<ApprovalState>)]
    state: Option<String>,
    /// Only approvals for this account.
    account: Option<String>,
    /// Only approvals of this handler.
    handler: Option<String>,
    /// Only approvals with a smaller `id` (exclusive): the next page of the newest-first list.
    before: Option<i64>,
    /// Rows per page (default 50; more than 1000 is served as 1000).
    #[param(minimum = 1)]
    limit: Option<u32>,
}

#[utoipa::path(
    get,
    path = "/api/approvals",
    tag = "approvals",
    operation_id = "list_approvals",
    params(ApprovalQuery),
    responses(
        (status = 200, description = "Held writes, newest first (by `id`)", body = [Approval],
            headers(("Link" = String, description = "`<...&before=ID>; rel=\"next\"` when the page is full: the same query, one page further"))),
    )
)]
pub async fn list(
    State(app): State<Arc<AppState>>,
    Query(q): Query<ApprovalQuery>,
) -> Result<Page<Approval>, ApiError> {
    let state = q
        .state
        .as_deref()
        .map(|s| {
            ApprovalState::parse(s).ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "state {s:?}: expected pending, executing, approved, failed or rejected"
                ))
            })
        })
        .transpose()?;
    let limit = page_size(q.limit)?;
    let filter = ApprovalFilter {
        state,
        account: q.account.clone(),
        handler: q.handler.clone(),
        before_id: q.before,
        limit,
    };
    let rows = app.store.list_approvals(&filter).await?;
    Page::new(
        "/api/approvals",
        rows,
        limit,
        |a| a.id,
        |before| ApprovalQuery {
            before: Some(before),
            ..q
        },
    )
}

#[utoipa::path(
    get,
    path = "/api/approvals/{id}",
    tag = "approvals",
    operation_id = "get_approval",
    params(("id" = i64, Path, description = "The approval's id")),
    responses(
        (status = 200, description = "The approval: the held write in full and what became of it", body = Approval),
        (status = 404, description = "No such approval", body = Problem, content_type = "application/problem+json"),
    )
)]
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

/// An approval decision; an empty body means the defaults.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApproveBody {
    /// Recorded as the decider (default `api`); not blank, no NUL characters.
    #[schema(min_length = 1)]
    by: Option<String>,
}

/// A rejection; an empty body means the defaults.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RejectBody {
    /// Recorded as the decider (default `api`); not blank, no NUL characters.
    #[schema(min_length = 1)]
    by: Option<String>,
    /// Why, for whoever reads the approval later; no NUL characters.
    reason: Option<String>,
}

/// 200 with the approval once the write was sent; 502 if the upstream refused it (recorded as
/// `failed`); 404, 409 (not pending), 422 (the tool is gone or the arguments no longer fit) and
/// 503 (upstream unavailable) change nothing.
#[utoipa::path(
    post,
    path = "/api/approvals/{id}/approve",
    tag = "approvals",
    params(("id" = i64, Path, description = "The pending approval's id")),
    request_body(content = Option<ApproveBody>, content_type = "application/json",
        description = "Optional: who decides"),
    responses(
        (status = 200, description = "Sent: the approval, now `approved`, with the tool's result", body = Approval),
        (status = 404, description = "No such approval", body = Problem, content_type = "application/problem+json"),
        (status = 408, description = "The body did not arrive in time", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not pending (decided, or being sent): nothing changed", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "A body over 64 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Its tool is gone or its arguments no longer fit: still pending", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "The upstream refused the write: now `failed`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The upstream is unavailable (still pending, approve again later), or the store is", body = Problem, content_type = "application/problem+json"),
    )
)]
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

#[utoipa::path(
    post,
    path = "/api/approvals/{id}/reject",
    tag = "approvals",
    params(("id" = i64, Path, description = "The pending approval's id")),
    request_body(content = Option<RejectBody>, content_type = "application/json",
        description = "Optional: who decides and why"),
    responses(
        (status = 200, description = "Rejected: the approval, never to be sent", body = Approval),
        (status = 404, description = "No such approval", body = Problem, content_type = "application/problem+json"),
        (status = 408, description = "The body did not arrive in time", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not pending: nothing changed", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "A body over 64 KiB", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn reject(
    State(app): State<Arc<AppState>>,
    Path(id): Path<i64>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Approval>, ApiError> {
    let body = read_body(&headers, body, MAX_BODY_BYTES, app.body_read_timeout).await?;
    let body: RejectBody = optional_json(&body)?;
    let by = decider(body.by)?;
    let reason = without_nul("reason", body.reason)?.filter(|r| !r.trim().is_empty());
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
    match without_nul("by", by)? {
        None => Ok(DEFAULT_DECIDER.to_string()),
        Some(by) if by.trim().is_empty() => {
            Err(ApiError::BadRequest("by: must not be empty".into()))
        }
        Some(by) => Ok(by.trim().to_string()),
    }
}

/// Text the store keeps: PostgreSQL text cannot hold a NUL character (the statement would fail,
/// a 503, even for an approval that does not exist), so it is refused on every store alike.
fn without_nul(field: &str, text: Option<String>) -> Result<Option<String>, ApiError> {
    if text.as_deref().is_some_and(|t| t.contains('\0')) {
        return Err(ApiError::BadRequest(format!(
            "{field}: must not contain NUL characters"
        )));
    }
    Ok(text)
}

impl From<DecideError> for ApiError {
    fn from(e: DecideError) -> Self {
        match e {
            DecideError::NotFound(_) => ApiError::NotFound,
            DecideError::NotPending { .. } | DecideError::ClaimLost(_) => {
                ApiError::Conflict(e.to_string())
            }
            DecideError::ToolMissing { .. }
            | DecideError::InvalidArguments { .. }
            | DecideError::OutOfScope { .. } => ApiError::Unprocessable(e.to_string()),
            DecideError::Unavailable { .. } => ApiError::UpstreamUnavailable(e.to_string()),
            DecideError::Internal { .. } => ApiError::Internal(e.to_string()),
            DecideError::Store(e) => ApiError::StoreUnavailable(e),
        }
    }
}
