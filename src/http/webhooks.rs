//! `POST /webhooks/{source}`: verify, normalize, commit, then acknowledge.

use super::AppState;
use super::extract::read_body;
use super::problem::ApiError;
use crate::ingress::IngressError;
use crate::store::IngestItem;
use crate::telemetry::trace::{self, otel_span};
use axum::Json;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use std::sync::Arc;
use std::time::Instant;
use tracing::Instrument;

#[derive(Debug, Serialize)]
pub struct Ack {
    pub event_id: String,
    pub duplicate: bool,
}

pub async fn receive(
    State(app): State<Arc<AppState>>,
    source_name: Result<Path<String>, PathRejection>,
    uri: Uri,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    // A name that is not UTF-8 once decoded (`%FF`) is no source's name: named as sent.
    let source_name = match source_name {
        Ok(Path(name)) => name,
        Err(_) => uri
            .path()
            .strip_prefix("/webhooks/")
            .unwrap_or_default()
            .to_owned(),
    };
    let span = otel_span!(
        "webhook",
        otel.name = "POST /webhooks/{source}",
        otel.kind = "server",
        http.request.method = "POST",
        http.route = "/webhooks/{source}",
        hookwise.source = %source_name,
        hookwise.event_id = tracing::field::Empty,
        hookwise.outcome = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
        error.type = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    );
    trace::continue_from_headers(&span, &headers);
    let result = accept(&app, &source_name, query, headers, body)
        .instrument(span.clone())
        .await;
    // The label is the configured source, or "" for a name no source has (unbounded otherwise).
    let source = if app.sources.contains_key(&source_name) {
        source_name.as_str()
    } else {
        ""
    };
    let (outcome, response) = match result {
        Ok((status, Json(ack))) => {
            app.metrics.ingest_committed(started.elapsed());
            span.record("hookwise.event_id", ack.event_id.as_str());
            let outcome = if ack.duplicate {
                "duplicate"
            } else {
                "accepted"
            };
            (outcome, (status, Json(ack)).into_response())
        }
        Err(e) => {
            let outcome = e.webhook_outcome();
            span.record("error.type", outcome);
            (outcome, e.into_response())
        }
    };
    app.metrics.webhook(source, outcome);
    span.record("hookwise.outcome", outcome);
    span.record(
        "http.response.status_code",
        i64::from(response.status().as_u16()),
    );
    if response.status().is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    response
}

async fn accept(
    app: &AppState,
    source_name: &str,
    query: Option<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<Ack>), ApiError> {
    let source = app
        .sources
        .get(source_name)
        .ok_or_else(|| ApiError::unknown_source(source_name))?;
    let body = read_body(&headers, body, app.max_body_bytes, app.body_read_timeout)
        .await
        .inspect_err(|e| {
            // The client's doing (slow, or too much): worth a line, not an alarm.
            tracing::info!(source = %source.name, error = %e, "webhook body refused");
        })?;

    let (event, payload) = source
        .accept(&headers, query.as_deref(), &body, app.clock.now())
        .inspect_err(|e| log_rejection(app, source_name, e))?;
    let (kind, account) = (event.kind.clone(), event.account.clone());

    // The ack is sent only after the commit: a 2xx always means "stored".
    let disposition = app.routing.decide(&event, &payload);
    drop(payload);
    let outcome = app
        .queue
        .submit(IngestItem {
            event,
            disposition,
            trace_context: trace::current_traceparent(),
        })
        .await?;
    if !outcome.jobs.is_empty() {
        app.jobs_added.notify_one();
    }

    tracing::info!(
        source = %source.name,
        event = %outcome.event_id,
        kind,
        account = %account,
        duplicate = outcome.duplicate,
        jobs = outcome.jobs.len(),
        "webhook accepted"
    );
    let status = if outcome.duplicate {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((
        status,
        Json(Ack {
            event_id: outcome.event_id.to_string(),
            duplicate: outcome.duplicate,
        }),
    ))
}

/// Refusals of authenticated requests are each worth a WARN (the sender is misconfigured);
/// unauthenticated ones are held back to one a minute per source, since anyone can send them.
fn log_rejection(app: &AppState, source: &str, e: &IngressError) {
    if !matches!(e, IngressError::Signature(_)) {
        tracing::warn!(source, error = %e, "webhook rejected");
        return;
    }
    match app.rejections.admit(source) {
        Some(held_back) => tracing::warn!(
            source,
            error = %e,
            held_back,
            "webhook rejected: not authenticated; more from this source within a minute are logged at debug"
        ),
        None => tracing::debug!(source, error = %e, "webhook rejected: not authenticated"),
    }
}
