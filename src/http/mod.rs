//! The HTTP surface: webhook ingestion, health, the `/api/` routes (events, jobs, runs,
//! approvals, and their OpenAPI document) and the `/ui` dashboard.

pub mod access;
mod api;
mod approvals;
mod extract;
pub mod openapi;
mod paging;
pub mod problem;
mod rejections;
mod serve;
mod ui;
mod webhooks;

pub use rejections::{INTERVAL as REJECTION_LOG_INTERVAL, RejectionLog};
pub use serve::serve;

use crate::approvals::Approvals;
use crate::ingress::Source;
use crate::ingress::route::EventRouter;
use crate::kernel::clock::SharedClock;
use crate::store::SharedStore;
use crate::store::batcher::IngestQueue;
use crate::telemetry::metrics::{self, SharedMetrics};
use axum::Router;
use axum::extract::State;
use axum::http::Request;
use axum::routing::{get, post};
use problem::ApiError;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;

/// What every request handler can reach.
pub struct AppState {
    pub sources: HashMap<String, Source>,
    /// Which handlers an event starts or joins (not to be confused with axum's router).
    pub routing: Arc<EventRouter>,
    /// Woken after a commit that added jobs, so the scheduler does not wait for its next poll.
    pub jobs_added: Arc<Notify>,
    pub queue: IngestQueue,
    pub store: SharedStore,
    pub clock: SharedClock,
    /// Sends approved writes with this process's tools.
    pub approvals: Approvals,
    pub max_body_bytes: usize,
    /// How long a request body may take to arrive (`[http] body_read_timeout`): 408 after.
    pub body_read_timeout: Duration,
    /// Who may use `/api/`, `/ui` and (unless `metrics_public`) `/metrics`: the token, or this
    /// machine only without one.
    pub access: access::AdminAccess,
    /// The loaded handlers, for the dashboard.
    pub handlers: Arc<crate::handler::HandlerSet>,
    /// Valid but doubtful configuration, shown on the dashboard's handlers page.
    pub warnings: Vec<String>,
    pub metrics: SharedMetrics,
    /// Holds back WARN lines for refused unauthenticated webhooks (one per source a minute).
    pub rejections: rejections::RejectionLog,
    /// `/metrics` answers without the token (`[telemetry] metrics_public`).
    pub metrics_public: bool,
    /// Cancelled when the process begins to shut down: `/readyz` answers 503 from then on, and
    /// connections are closed after their response, while every request is still served.
    pub draining: CancellationToken,
}

/// Declares the `/api/` routes once: `api_router` serves exactly these, and `API_ROUTES` lists
/// them for the test that checks `/api/openapi.json` documents each (a route added here without a
/// `utoipa::path` in `openapi::ApiDoc` fails it).
macro_rules! api_routes {
    ($($method:ident $path:literal => $handler:path),* $(,)?) => {
        /// Every `/api/` route the router serves: (method, path).
        pub const API_ROUTES: &[(&str, &str)] = &[$((stringify!($method), $path)),*];

        fn api_router() -> Router<Arc<AppState>> {
            Router::new()$(.route($path, axum::routing::$method($handler)))*
        }
    };
}

api_routes! {
    get "/api/events" => api::list_events,
    get "/api/jobs" => api::list_jobs,
    get "/api/jobs/{id}" => api::get_job,
    post "/api/jobs/{id}/retry" => api::retry_job,
    get "/api/runs" => api::list_runs,
    get "/api/runs/{id}" => api::get_run,
    get "/api/approvals" => approvals::list,
    get "/api/approvals/{id}" => approvals::get,
    post "/api/approvals/{id}/approve" => approvals::approve,
    post "/api/approvals/{id}/reject" => approvals::reject,
    get "/api/openapi.json" => openapi::openapi_json,
}

pub fn router(state: Arc<AppState>) -> Router {
    // The admin API reads everything stored and can send approved writes: behind the token when
    // one is configured (its OpenAPI document too: it is part of the API). Webhooks authenticate
    // by signature, health checks need nothing.
    let api = api_router().route_layer(axum::middleware::from_fn_with_state(
        state.clone(),
        require_api_token,
    ));
    let ui = ui::routes(state.clone());
    let metrics = Router::new().route("/metrics", get(metrics));
    let metrics = if state.metrics_public {
        metrics
    } else {
        metrics.route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_api_token,
        ))
    };
    Router::new()
        .route("/webhooks/{source}", post(webhooks::receive))
        .merge(api)
        .merge(ui)
        .merge(metrics)
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(|| async { ApiError::NotFound })
        // After every route: it is set on the routes present.
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(state.clone())
        // Outermost first: while draining, every response (even a timeout) closes its connection;
        // every response carries the request id, and the trace span has it too; the timeout
        // bounds a request stuck behind a wedged store (the body's own, shorter timeout is the
        // handler's: a slow client is answered 408 before this).
        .layer(
            ServiceBuilder::new()
                .layer(axum::middleware::from_fn_with_state(
                    state,
                    close_when_draining,
                ))
                .layer(SetRequestIdLayer::x_request_id(RequestIds::default()))
                .layer(PropagateRequestIdLayer::x_request_id())
                .layer(TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
                    let id = req
                        .headers()
                        .get("x-request-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default();
                    tracing::debug_span!("request", method = %req.method(), path = %req.uri().path(), request_id = id)
                }))
                .layer(axum::middleware::from_fn(request_timeout)),
        )
}

/// Answers a request still running after `REQUEST_TIMEOUT` with a 503 problem; its handler is
/// dropped (an ingest that had not committed stores nothing).
async fn request_timeout(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Result<axum::response::Response, ApiError> {
    tokio::time::timeout(crate::config::http::REQUEST_TIMEOUT, next.run(request))
        .await
        .map_err(|_| ApiError::Timeout)
}

/// Request ids unique within the process; a caller's own `x-request-id` is kept.
#[derive(Clone, Default)]
struct RequestIds(Arc<AtomicU64>);

impl MakeRequestId for RequestIds {
    fn make_request_id<B>(&mut self, _: &Request<B>) -> Option<RequestId> {
        let n = self.0.fetch_add(1, Ordering::Relaxed);
        format!("req-{n:x}").parse().ok().map(RequestId::new)
    }
}

/// The process is up and serving HTTP.
async fn healthz() -> &'static str {
    "ok"
}

/// The process can do its job and wants more of it: not draining, and the store answers.
async fn readyz(State(app): State<Arc<AppState>>) -> Result<&'static str, ApiError> {
    if app.draining.is_cancelled() {
        return Err(ApiError::Draining);
    }
    app.store.ping().await?;
    Ok("ready")
}

/// The metrics, with the queue gauges read from the store now (the same on every replica).
async fn metrics(State(app): State<Arc<AppState>>) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let queue = app
        .store
        .queue_gauges(app.clock.now().timestamp_millis())
        .await?;
    let text = app.metrics.scrape(&queue);
    Ok((
        [(axum::http::header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        text,
    )
        .into_response())
}

/// While draining, answers with `Connection: close`: a proxy's pooled (keep-alive) connection is
/// then closed by the response instead of being reused for a request just as the listener
/// closes, so the last requests arrive on fresh connections that are refused cleanly once the
/// drain is over (and go to another replica).
async fn close_when_draining(
    State(app): State<Arc<AppState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let mut response = next.run(request).await;
    if app.draining.is_cancelled() {
        response.headers_mut().insert(
            axum::http::header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
    }
    response
}

/// Lets an `/api/` (or `/metrics`) request through by `AdminAccess::admit_api`: the bearer
/// token when one is configured, else only from this machine; never a cross-site state change.
async fn require_api_token(
    State(app): State<Arc<AppState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Result<axum::response::Response, ApiError> {
    app.access.admit_api(
        request.method(),
        request.headers(),
        access::peer(request.extensions()),
    )?;
    Ok(next.run(request).await)
}
