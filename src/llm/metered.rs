//! A provider that counts what it does: every request's duration, its tokens, and failures by
//! kind, under the OpenTelemetry GenAI metric names.

use super::{Completion, CompletionRequest, LlmError, LlmProvider};
use crate::telemetry::metrics::SharedMetrics;
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Instant;

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
        }
    }
}

#[async_trait]
impl LlmProvider for Metered {
    async fn complete(&self, req: &CompletionRequest) -> Result<Completion, LlmError> {
        let started = Instant::now();
        let result = self.inner.complete(req).await;
        let (error_type, tokens) = match &result {
            Ok(c) => ("", Some((c.usage.input_tokens, c.usage.output_tokens))),
            Err(e) => (e.kind(), None),
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
