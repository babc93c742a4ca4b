//! A provider that counts and traces what it does: every request's duration, its tokens, and
//! failures by kind, under the OpenTelemetry GenAI metric names, and a `chat {model}` span per
//! request with the GenAI span attributes (message content only with `trace_content`).

use super::{Completion, CompletionRequest, Finish, LlmError, LlmProvider};
use crate::telemetry::metrics::SharedMetrics;
use crate::telemetry::trace::{self, otel_span};
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Instant;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

pub struct Metered {
    inner: Arc<dyn LlmProvider>,
    /// The OpenTelemetry `gen_ai.provider.name`: `openai` or `anthropic`.
    provider: &'static str,
    metrics: SharedMetrics,
}

impl Metered {
    pub fn new(
        inner: Arc<dyn LlmProvider>,
        provider: &'static str,
        metrics: SharedMetrics,
    ) -> Self {
        Self {
            inner,
            provider,
            metrics,
        }
    }
}

impl LlmError {
    /// A stable name for the failure's kind (metrics' `error_type`, spans' `error.type`).
    pub fn kind(&self) -> &'static str {
        match self {
            LlmError::RateLimited { .. } => "rate_limited",
            LlmError::Overloaded { .. } => "overloaded",
            LlmError::QuotaExhausted(_) => "quota_exhausted",
            LlmError::Auth(_) => "auth",
            LlmError::BadRequest(_) => "bad_request",
            LlmError::Http { .. } => "http",
            LlmError::Transport(_) => "transport",
            LlmError::InvalidResponse(_) => "invalid_response",
            LlmError::BreakerOpen { .. } => "breaker_open",
        }
    }
}

#[async_trait]
impl LlmProvider for Metered {
    async fn complete(&self, req: &CompletionRequest) -> Result<Completion, LlmError> {
        let span = otel_span!(
            "chat",
            otel.name = format!("chat {}", req.model),
            otel.kind = "client",
            gen_ai.operation.name = "chat",
            gen_ai.provider.name = self.provider,
            gen_ai.request.model = %req.model,
            gen_ai.request.max_tokens = i64::from(req.max_tokens),
            gen_ai.response.finish_reasons = tracing::field::Empty,
            gen_ai.usage.input_tokens = tracing::field::Empty,
            gen_ai.usage.output_tokens = tracing::field::Empty,
            error.type = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        );
        if trace::content() && !span.is_disabled() {
            if let Some(system) = &req.system {
                span.set_attribute("gen_ai.system_instructions", system.clone());
            }
            span.set_attribute("gen_ai.input.messages", json(&req.messages));
        }
        let started = Instant::now();
        let result = self.inner.complete(req).instrument(span.clone()).await;
        let (error_type, tokens) = match &result {
            Ok(c) => {
                span.record("gen_ai.usage.input_tokens", c.usage.input_tokens as i64);
                span.record("gen_ai.usage.output_tokens", c.usage.output_tokens as i64);
                if !span.is_disabled() {
                    let reason = match &c.finish {
                        Finish::Stop => "stop",
                        Finish::ToolCalls => "tool_calls",
                        Finish::Length => "length",
                        Finish::Other(other) => other.as_str(),
                    };
                    span.set_attribute(
                        "gen_ai.response.finish_reasons",
                        opentelemetry::Value::Array(
                            vec![opentelemetry::StringValue::from(reason.to_string())].into(),
                        ),
                    );
                    if trace::content() {
                        span.set_attribute("gen_ai.output.messages", json(&[&c.message]));
                    }
                }
                ("", Some((c.usage.input_tokens, c.usage.output_tokens)))
            }
            Err(e) => {
                span.record("error.type", e.kind());
                span.record("otel.status_code", "ERROR");
                (e.kind(), None)
            }
        };
        self.metrics.llm_request(
            self.provider,
            &req.model,
            started.elapsed(),
            error_type,
            tokens,
        );
        result
    }
}

fn json(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).unwrap_or_default()
}
