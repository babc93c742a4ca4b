//! Held writes: each shows the tool, its target and the exact arguments that would be sent,
//! with approve and reject. Deciding goes through `crate::approvals`, as the API and CLI do.

use super::{Ctx, Live, Nav, UiError, csrf_field, older_link, page, read_form, set, when};
use crate::http::AppState;
use crate::http::extract::{Path, Query};
use crate::http::problem::ApiError;
use crate::store::{Approval, ApprovalFilter, ApprovalState};
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;
use std::sync::Arc;

/// Who decided, as recorded, when the dashboard sends the decision.
const DECIDER: &str = "dashboard";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalQuery {
    state: Option<String>,
    before: Option<i64>,
}

pub async fn list(
    State(app): State<Arc<AppState>>,
    ctx: Ctx,
    Query(q): Query<ApprovalQuery>,
) -> Result<Markup, UiError> {
    let now = app.clock.now().timestamp_millis();
    let state_text = set(&q.state).unwrap_or_else(|| "pending".into());
    let state = if state_text == "all" {
        None
    } else {
        Some(ApprovalState::parse(&state_text).ok_or_else(|| {
            ApiError::InvalidQuery(format!(
                "state {state_text:?}: expected pending, executing, approved, failed, rejected or all"
            ))
        })?)
    };
    let approvals = app
        .store
        .list_approvals(&ApprovalFilter {
            state,
            before_id: q.before,
            limit: super::PAGE,
            ..ApprovalFilter::default()
        })
        .await?;
    let body = html! {
        form.filters method="get" action="/ui/approvals" {
            label { "State " select name="state" {
                @for s in ["pending", "executing", "approved", "failed", "rejected", "all"] {
                    option value=(s) selected[state_text == s] { (s) }
                }
            } }
            button type="submit" { "Show" }
        }
        @if approvals.is_empty() {
            p.empty { @if state == Some(ApprovalState::Pending) { "Nothing is waiting for approval." } @else { "No approvals match." } }
        }
        @for a in &approvals { (card(&ctx, a, now)) }
        (older_link("/ui/approvals", &[("state", Some(state_text.clone()))], approvals.len(), approvals.last().map(|a| a.id)))
    };
    Ok(page(&ctx, Nav::Approvals, "Approvals", Live::Yes, body))
}

/// One approval: what would be sent where, and (while pending) the buttons.
fn card(ctx: &Ctx, a: &Approval, now: i64) -> Markup {
    let r = &a.request;
    html! {
        article.approval id={ "approval-" (a.id) } data-state=(a.state.as_str()) {
            h2 {
                a href={ "/ui/approvals/" (a.id) } { "Approval " (a.id) } ": "
                code.tool { (r.tool) }
                " " span class={ "state " (a.state.as_str()) } { (a.state.as_str()) }
            }
            dl.fields {
                dt { "Target" } dd { "account " strong { (r.account) } ", subject " strong { (r.subject) } }
                dt { "Asked by" } dd {
                    "handler " (r.handler) ", " a href={ "/ui/jobs/" (r.job) } { "job " (r.job) }
                    " attempt " (r.attempt) ", call " code { (r.call_id) }
                }
                dt { "Held since" } dd { (when(r.created_at_ms, now)) }
                @if let Some(by) = &a.decided_by {
                    dt { "Decided by" } dd { (by) @if let Some(at) = a.decided_at_ms { ", " (when(at, now)) } }
                }
                @if let Some(reason) = &a.reason { dt { "Reason" } dd { (reason) } }
                @if let Some(e) = &a.error { dt { "Error" } dd.error { (e) } }
                dt { "Idempotency key" } dd { code { (r.idempotency_key) } }
            }
            div.label { "Exactly these arguments would be sent:" }
            pre.args { (serde_json::to_string_pretty(&r.arguments).unwrap_or_default()) }
            @if let Some(result) = &a.result {
                details { summary { "What the upstream answered" } pre { (serde_json::to_string_pretty(result).unwrap_or_default()) } }
            }
            @if a.state == ApprovalState::Pending {
                div.decide {
                    form.inline method="post" action={ "/ui/approvals/" (a.id) "/approve" } {
                        (csrf_field(ctx))
                        button.primary.approve type="submit" { "Approve and send" }
                    }
                    form.inline method="post" action={ "/ui/approvals/" (a.id) "/reject" } {
                        (csrf_field(ctx))
                        input name="reason" placeholder="Why (optional)";
                        button.reject type="submit" { "Reject" }
                    }
                }
            }
        }
    }
}

pub async fn show(
    State(app): State<Arc<AppState>>,
    ctx: Ctx,
    Path(id): Path<i64>,
) -> Result<Markup, UiError> {
    let now = app.clock.now().timestamp_millis();
    let approval = app
        .store
        .get_approval(id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let body = html! {
        (card(&ctx, &approval, now))
        p { a href="/ui/approvals" { "Back to approvals" } }
    };
    Ok(page(
        &ctx,
        Nav::Approvals,
        &format!("Approval {id}"),
        Live::No,
        body,
    ))
}

/// Sends the write (once: its idempotency key is journaled), then shows the approval with its
/// outcome. A refusal by the upstream is recorded as `failed` and shown on the same page.
pub async fn approve(
    State(app): State<Arc<AppState>>,
    ctx: Ctx,
    Path(id): Path<i64>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, UiError> {
    let _: super::NoFields = read_form(&app, &ctx, &headers, body).await?;
    app.approvals
        .approve(id, DECIDER)
        .await
        .map_err(ApiError::from)?;
    Ok(Redirect::to(&format!("/ui/approvals/{id}")).into_response())
}

#[derive(Debug, Deserialize)]
pub struct RejectForm {
    reason: Option<String>,
}

pub async fn reject(
    State(app): State<Arc<AppState>>,
    ctx: Ctx,
    Path(id): Path<i64>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, UiError> {
    let form: RejectForm = read_form(&app, &ctx, &headers, body).await?;
    let reason = set(&form.reason);
    app.approvals
        .reject(id, DECIDER, reason)
        .await
        .map_err(ApiError::from)?;
    Ok(Redirect::to(&format!("/ui/approvals/{id}")).into_response())
}
