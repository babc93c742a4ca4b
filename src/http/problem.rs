//! RFC 9457 problem+json responses with a stable `type` per failure, and the error type every route
//! returns. Internal failures are logged and answered with a bare 500: no internals leak.

use crate::ingress::IngressError;
use crate::store::StoreError;
use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// The `type` URI of a problem: `urn:hookwise:problem:<slug>`, stable across releases.
pub fn problem_type(slug: &str) -> String {
    format!("urn:hookwise:problem:{slug}")
}

/// An RFC 9457 problem, served as `application/problem+json`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// Stable per kind of failure: `urn:hookwise:problem:<slug>` (`not-found`, `invalid-query`,
    /// `unauthorized`, `conflict`, `store-unavailable`, ...).
    #[serde(rename = "type")]
    #[schema(example = "urn:hookwise:problem:not-found")]
    pub kind: String,
    /// A short summary of the kind, the same for every problem of that `type`.
    pub title: &'static str,
    /// The HTTP status code, repeated.
    pub status: u16,
    /// What went wrong with this request, when there is more to say.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Problem {
    pub fn new(
        status: StatusCode,
        slug: &str,
        title: &'static str,
        detail: Option<String>,
    ) -> Self {
        Self {
            kind: problem_type(slug),
            title,
            status: status.as_u16(),
            detail,
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, Json(self)).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        response
    }
}

/// Every way a request can fail, each with one status and one problem type.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Made by `ApiError::unknown_source`, which caps the name: it is echoed back.
    #[error("no source named {0:?} is configured")]
    UnknownSource(String),
    #[error("not found")]
    NotFound,
    #[error("this route does not answer that method")]
    MethodNotAllowed,
    #[error("{0}")]
    InvalidQuery(String),
    #[error("{0}")]
    InvalidPath(String),
    /// `/api/` needs `Authorization: Bearer <api_token>` and the request had none or another.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// The request is refused whoever sends it as it is: `slug` says why (`loopback-only`: no
    /// `api_token` and not from this machine; `cross-site`: a state change from another site).
    #[error("{detail}")]
    Forbidden { slug: &'static str, detail: String },
    #[error("body larger than {0} bytes")]
    PayloadTooLarge(usize),
    #[error("cannot read the request body: {0}")]
    BodyRead(String),
    /// The client sent its body too slowly (`[http] body_read_timeout`).
    #[error("the request body did not arrive within {0:?}")]
    BodyTimeout(std::time::Duration),
    /// The request as a whole took too long (a store that does not answer): nothing was stored.
    #[error("the request took too long; nothing was stored, retry")]
    Timeout,
    #[error(transparent)]
    Ingress(#[from] IngressError),
    #[error("the store is unavailable: {0}")]
    StoreUnavailable(#[from] StoreError),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Conflict(String),
    /// Well-formed and allowed, but it cannot be carried out as things stand (an approval whose
    /// tool is gone): nothing changed.
    #[error("{0}")]
    Unprocessable(String),
    /// An upstream API refused the call this request made; the refusal is recorded.
    #[error("{0}")]
    UpstreamRefused(String),
    /// An upstream API could not be reached or was overloaded; nothing was done, try later.
    #[error("{0}")]
    UpstreamUnavailable(String),
    /// The process is shutting down (`/readyz` only: every other request is still served).
    #[error("this process is shutting down: send new requests to another one")]
    Draining,
    /// A bug: logged, answered with a bare 500.
    #[error("{0}")]
    Internal(String),
}

/// The most of a source name a 404 echoes back, in characters.
const ECHOED_NAME_CHARS: usize = 64;

impl ApiError {
    /// A request for a source no configuration has; `name` is echoed in the problem, cut to a
    /// few dozen characters (a path can be many kilobytes).
    pub fn unknown_source(name: &str) -> Self {
        let mut chars = name.chars();
        let mut echoed: String = chars.by_ref().take(ECHOED_NAME_CHARS).collect();
        if chars.next().is_some() {
            echoed.push('…');
        }
        ApiError::UnknownSource(echoed)
    }

    /// The `outcome` label of `hookwise_webhooks_received_total` for a refused webhook.
    pub fn webhook_outcome(&self) -> &'static str {
        use crate::ingress::verify::VerifyError;
        match self {
            ApiError::UnknownSource(_) => "unknown_source",
            ApiError::PayloadTooLarge(_) => "too_large",
            ApiError::BodyTimeout(_) => "timeout",
            ApiError::Ingress(IngressError::Signature(
                VerifyError::Stale(_) | VerifyError::Future(_),
            )) => "stale",
            ApiError::Ingress(IngressError::Signature(_)) => "bad_signature",
            ApiError::Ingress(IngressError::UnsupportedMediaType(_)) => "unsupported_media_type",
            ApiError::Ingress(IngressError::EmptyEventId(_)) => "bad_event_id",
            ApiError::BodyRead(_)
            | ApiError::Ingress(IngressError::InvalidJson(_) | IngressError::Unmappable(_)) => {
                "bad_body"
            }
            ApiError::StoreUnavailable(_) => "unavailable",
            _ => "error",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        use IngressError::*;
        let detail = Some(self.to_string());
        let problem = match &self {
            ApiError::UnknownSource(_) => Problem::new(
                StatusCode::NOT_FOUND,
                "unknown-source",
                "Unknown webhook source",
                detail,
            ),
            ApiError::NotFound => {
                Problem::new(StatusCode::NOT_FOUND, "not-found", "Not found", None)
            }
            ApiError::Unauthorized(_) => {
                let mut response = Problem::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "Missing or wrong API token",
                    detail,
                )
                .into_response();
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                return response;
            }
            ApiError::Forbidden { slug, .. } => {
                Problem::new(StatusCode::FORBIDDEN, slug, "Forbidden", detail)
            }
            ApiError::MethodNotAllowed => Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
                detail,
            ),
            ApiError::InvalidQuery(_) => Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid-query",
                "Invalid query string",
                detail,
            ),
            ApiError::InvalidPath(_) => Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid-path",
                "Invalid path parameter",
                detail,
            ),
            // The body was not read (in full): the connection cannot carry another request.
            ApiError::PayloadTooLarge(_) => {
                return closing(Problem::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload-too-large",
                    "Payload too large",
                    detail,
                ));
            }
            ApiError::BodyTimeout(_) => {
                return closing(Problem::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "body-timeout",
                    "Request body too slow",
                    detail,
                ));
            }
            ApiError::Timeout => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "timeout",
                "Request took too long",
                detail,
            ),
            ApiError::BodyRead(_) => Problem::new(
                StatusCode::BAD_REQUEST,
                "unreadable-body",
                "Unreadable body",
                detail,
            ),
            ApiError::Ingress(Signature(e)) => Problem::new(
                StatusCode::UNAUTHORIZED,
                e.code(),
                "Invalid webhook signature",
                detail,
            ),
            ApiError::Ingress(UnsupportedMediaType(_)) => Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
                detail,
            ),
            ApiError::Ingress(InvalidJson(_)) => Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid-json",
                "Body is not valid JSON",
                detail,
            ),
            ApiError::Ingress(Unmappable(_)) => Problem::new(
                StatusCode::BAD_REQUEST,
                "unrecognized-payload",
                "Payload is not what this source expects",
                detail,
            ),
            ApiError::Ingress(EmptyEventId(_)) => Problem::new(
                StatusCode::BAD_REQUEST,
                "empty-event-id",
                "The event id is empty",
                detail,
            ),
            ApiError::Conflict(_) => Problem::new(
                StatusCode::CONFLICT,
                "conflict",
                "Conflict with the current state",
                detail,
            ),
            ApiError::Unprocessable(_) => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unprocessable",
                "Cannot be carried out as things stand",
                detail,
            ),
            ApiError::UpstreamRefused(_) => Problem::new(
                StatusCode::BAD_GATEWAY,
                "upstream-refused",
                "The upstream refused the call",
                detail,
            ),
            ApiError::UpstreamUnavailable(_) => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "upstream-unavailable",
                "The upstream is unavailable",
                detail,
            ),
            ApiError::Draining => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "draining",
                "Shutting down",
                detail,
            ),
            ApiError::Internal(e) => {
                tracing::error!(error = %e, "internal error");
                return StatusCode::INTERNAL_SERVER_ERROR.into_response();
            }
            ApiError::BadRequest(_) => Problem::new(
                StatusCode::BAD_REQUEST,
                "bad-request",
                "Bad request",
                detail,
            ),
            ApiError::StoreUnavailable(e) => {
                // Senders retry on 503: the event was not stored, so retrying is exactly right.
                tracing::error!(error = %e, "store unavailable");
                let mut response = Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store-unavailable",
                    "Temporarily unable to store events",
                    Some("the event was not stored; retry later".into()),
                )
                .into_response();
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
                return response;
            }
        };
        problem.into_response()
    }
}

/// `problem` with `Connection: close`: for refusals made before the body was read in full.
fn closing(problem: Problem) -> Response {
    let mut response = problem.into_response();
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}
