//! Traces: OpenTelemetry spans for each webhook request, each job run, each LLM call, each tool
//! call and each upstream HTTP exchange, exported over OTLP/HTTP when `[telemetry]
//! otlp_endpoint` is set.
//!
//! The spans are `tracing` spans under their own target, [`TARGET`], made with [`otel_span!`].
//! Integer attributes are recorded as `i64`: the OpenTelemetry layer turns unsigned ones into
//! strings.
//! The log layer never shows them (their attributes are for a trace viewer, not a log line), and
//! only the OpenTelemetry layer enables them, which exists only when an endpoint is configured:
//! without one, each span costs a disabled-callsite check and its fields are never evaluated.
//!
//! A job's run is a child of the webhook request that created the job (the W3C `traceparent`
//! of the request's span is stored with the event), with a link to each request whose event
//! was folded into the job later, so an event can be followed from arrival to the upstream
//! write, across replicas.

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tracing::Subscriber;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Layer;
use tracing_subscriber::registry::LookupSpan;

/// The `tracing` target of every span meant for the trace exporter.
pub const TARGET: &str = "hookwise::otel";

/// A span for the trace exporter: `otel_span!("name", field = value, ...)`.
macro_rules! otel_span {
    ($name:literal $(, $($fields:tt)*)?) => {
        tracing::span!(target: "hookwise::otel", tracing::Level::INFO, $name $(, $($fields)*)?)
    };
}
pub(crate) use otel_span;

/// Whether spans carry message content (prompts, answers, tool arguments and results).
static CONTENT: AtomicBool = AtomicBool::new(false);
/// Whether an exporter is installed: stored trace contexts and log `trace_id`s only then.
static ENABLED: AtomicBool = AtomicBool::new(false);

/// `[telemetry] trace_content`: message content goes on spans only when explicitly enabled.
pub fn content() -> bool {
    CONTENT.load(Ordering::Relaxed)
}

pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The installed exporter; [`Tracing::shutdown`] sends what is still buffered.
pub struct Tracing {
    provider: SdkTracerProvider,
}

impl Tracing {
    /// Flushes and stops the exporter. Blocks: call it outside the async runtime's workers,
    /// while the runtime is still alive (the exporter's requests run on it).
    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown() {
            eprintln!("warning: flushing traces at exit failed: {e}");
        }
    }
}

/// The OpenTelemetry layer exporting to `endpoint` (`[telemetry] otlp_endpoint`), with message
/// content on spans if `content`. The exporter sends its batches from its own thread through
/// requests run on `runtime`.
pub fn layer<S>(
    endpoint: &str,
    content: bool,
    runtime: tokio::runtime::Handle,
) -> anyhow::Result<(impl Layer<S> + use<S>, Tracing)>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(Client { http, runtime })
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_endpoint(traces_url(endpoint))
        .with_timeout(Duration::from_secs(10))
        .build()?;
    let mut resource = opentelemetry_sdk::Resource::builder().with_attribute(
        opentelemetry::KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
    );
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name("hookwise");
    }
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build();
    let tracer = provider.tracer("hookwise");
    CONTENT.store(content, Ordering::Relaxed);
    ENABLED.store(true, Ordering::Relaxed);
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_threads(false)
        .with_tracked_inactivity(false)
        // Our spans, and the log events inside them as span events (warnings about refused
        // tools or paused accounts show where they happened). Other crates' spans stay out.
        .with_filter(tracing_subscriber::filter::filter_fn(|meta| {
            meta.target() == TARGET
                || (meta.is_event()
                    && *meta.level() <= tracing::Level::INFO
                    && meta.target().starts_with("hookwise"))
        }));
    Ok((layer, Tracing { provider }))
}

/// The collector's traces URL: a base URL (`http://collector:4318`) gets the OTLP path
/// `/v1/traces`, as `OTEL_EXPORTER_OTLP_ENDPOINT` would; a URL with a path is used as given.
fn traces_url(endpoint: &str) -> String {
    let trimmed = endpoint.trim_end_matches('/');
    let has_path = trimmed
        .split_once("://")
        .is_some_and(|(_, rest)| rest.contains('/'));
    if has_path {
        trimmed.to_string()
    } else {
        format!("{trimmed}/v1/traces")
    }
}

/// The W3C `traceparent` of the current span, when traces are exported and it is recorded.
pub fn current_traceparent() -> Option<String> {
    if !enabled() {
        return None;
    }
    let span = tracing::Span::current();
    if span.is_disabled() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&span.context(), &mut carrier);
    carrier.remove("traceparent")
}

/// Makes a webhook request's span continue the sender's trace when it sent a `traceparent`.
pub fn continue_from_headers(span: &tracing::Span, headers: &http::HeaderMap) {
    if span.is_disabled() || !headers.contains_key("traceparent") {
        return;
    }
    let cx = TraceContextPropagator::new().extract(&opentelemetry_http::HeaderExtractor(headers));
    if cx.span().span_context().is_valid() {
        let _ = span.set_parent(cx);
    }
}

/// Ties a run's span to the requests that delivered its job's events (their stored
/// `traceparent`s, in delivery order): the first is its parent, the others (folded in by
/// debounce) are links.
pub fn follow<'a>(span: &tracing::Span, traceparents: impl IntoIterator<Item = &'a str>) {
    if span.is_disabled() {
        return;
    }
    let propagator = TraceContextPropagator::new();
    let mut contexts = traceparents.into_iter().filter_map(|t| {
        let carrier = HashMap::from([("traceparent".to_string(), t.to_string())]);
        let cx = propagator.extract(&carrier);
        let sc = cx.span().span_context().clone();
        sc.is_valid().then_some((cx, sc))
    });
    if let Some((cx, _)) = contexts.next() {
        let _ = span.set_parent(cx);
    }
    for (_, sc) in contexts {
        span.add_link(sc);
    }
}

/// The trace id of the innermost exported span around the caller, for log lines.
pub fn current_trace_id() -> Option<String> {
    if !enabled() {
        return None;
    }
    let cx = tracing::Span::current().context();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| sc.trace_id().to_string())
}

/// The exporter's HTTP client: our reqwest client, driven on the tokio runtime (the batch
/// processor calls it from a plain thread, where reqwest cannot run by itself).
#[derive(Debug)]
struct Client {
    http: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for Client {
    async fn send_bytes(
        &self,
        request: http::Request<bytes::Bytes>,
    ) -> Result<http::Response<bytes::Bytes>, opentelemetry_http::HttpError> {
        let http = self.http.clone();
        self.runtime
            .spawn(async move {
                let response = http.execute(reqwest::Request::try_from(request)?).await?;
                let mut answer = http::Response::builder().status(response.status());
                if let Some(headers) = answer.headers_mut() {
                    *headers = response.headers().clone();
                }
                Ok(answer.body(response.bytes().await?)?)
            })
            .await?
    }
}

#[cfg(test)]
mod tests {
    use super::traces_url;

    #[test]
    fn a_base_url_gets_the_otlp_traces_path() {
        assert_eq!(
            traces_url("http://collector:4318"),
            "http://collector:4318/v1/traces"
        );
        assert_eq!(
            traces_url("http://collector:4318/"),
            "http://collector:4318/v1/traces"
        );
        assert_eq!(
            traces_url("https://otlp.example.com/otlp/v1/traces"),
            "https://otlp.example.com/otlp/v1/traces"
        );
    }
}
