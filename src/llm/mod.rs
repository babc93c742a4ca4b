//! The LLM provider layer: one provider-neutral conversation model, the `LlmProvider` trait that
//! OpenAI-compatible and Anthropic clients implement, their error classification, and the retry
//! loop that honours the providers' retry hints.
//!
//! The agent loop only ever sees these types; wire formats stay inside `openai.rs` and
//! `anthropic.rs`, so a transcript recorded with one provider can be replayed to the other.

pub mod anthropic;
mod build;
mod http;
mod metered;
pub mod openai;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

pub use anthropic::{AnthropicConfig, AnthropicProvider};
pub use build::{BuildError, build, retry_policy};
pub use metered::Metered;
pub use openai::{OpenAiConfig, OpenAiProvider};

/// One turn of a conversation. The system prompt normally goes in `CompletionRequest::system`;
/// `System` messages are for instructions added mid-run (Anthropic has no such role, so its client
/// appends them to the top-level system prompt).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "snake_case")]
pub enum Message {
    System {
        text: String,
    },
    User {
        text: String,
    },
    Assistant(AssistantMessage),
    /// The answer to one tool call. Consecutive results form one turn: Anthropic gets them in a
    /// single user message, OpenAI as consecutive `tool` messages.
    ToolResult(ToolResult),
}

impl Message {
    pub fn system(text: impl Into<String>) -> Self {
        Message::System { text: text.into() }
    }
    pub fn user(text: impl Into<String>) -> Self {
        Message::User { text: text.into() }
    }
    pub fn tool_result(call_id: impl Into<String>, content: impl Into<String>) -> Self {
        Message::ToolResult(ToolResult {
            call_id: call_id.into(),
            content: content.into(),
            is_error: false,
        })
    }
    /// A failed tool call (bad arguments, upstream refusal) reported to the model so it can correct
    /// itself. Anthropic marks it with `is_error`; OpenAI has no flag, so the text says it.
    pub fn tool_error(call_id: impl Into<String>, content: impl Into<String>) -> Self {
        Message::ToolResult(ToolResult {
            call_id: call_id.into(),
            content: content.into(),
            is_error: true,
        })
    }
}

/// What the model said: text, tool calls, or both. Append it to the conversation unchanged
/// (`Message::Assistant`): both providers require the calls to be replayed before their results.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AssistantMessage {
    /// None when the provider sent no text (OpenAI `content: null`); replayed the same way.
    pub text: Option<String>,
    pub tool_calls: Vec<ToolCall>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolResult {
    /// The `ToolCall::id` this answers.
    pub call_id: String,
    pub content: String,
    pub is_error: bool,
}

/// A tool the model may call. `parameters` is a JSON Schema whose top level is an object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    /// Shared with the tool registry's entry: every run and request offers the same schema.
    pub parameters: Arc<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// The provider's call id; the result must quote it.
    pub id: String,
    pub name: String,
    pub arguments: ToolArguments,
}

/// A tool call's arguments. Models write them as text and it is not always JSON; an invalid one
/// is kept, with the parse error, so the agent can tell the model what was wrong instead of
/// failing the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ToolArguments {
    /// Valid JSON. `raw` is the text as the model wrote it (OpenAI) or its serialization
    /// (Anthropic); OpenAI gets exactly this text back when the call is replayed.
    Json { value: Value, raw: String },
    /// Not JSON: the model's text and why it does not parse.
    Invalid { raw: String, error: String },
}

impl ToolArguments {
    /// Parses the model's text. Empty text is `{}`: compatible servers send it for tools without
    /// parameters.
    pub fn parse(raw: impl Into<String>) -> Self {
        let raw = raw.into();
        if raw.trim().is_empty() {
            return ToolArguments::Json {
                value: Value::Object(Default::default()),
                raw,
            };
        }
        match serde_json::from_str(&raw) {
            Ok(value) => ToolArguments::Json { value, raw },
            Err(e) => ToolArguments::Invalid {
                raw,
                error: e.to_string(),
            },
        }
    }

    pub fn from_value(value: Value) -> Self {
        let raw = value.to_string();
        ToolArguments::Json { value, raw }
    }

    /// The parsed arguments; None when they are not valid JSON.
    pub fn value(&self) -> Option<&Value> {
        match self {
            ToolArguments::Json { value, .. } => Some(value),
            ToolArguments::Invalid { .. } => None,
        }
    }

    pub fn raw(&self) -> &str {
        match self {
            ToolArguments::Json { raw, .. } | ToolArguments::Invalid { raw, .. } => raw,
        }
    }
}

/// Why the model stopped. The agent should run tool calls whenever `message.tool_calls` is not
/// empty, whatever this says: some compatible servers report `stop` alongside tool calls.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Finish {
    /// A natural end (OpenAI `stop`, Anthropic `end_turn` / `stop_sequence`).
    Stop,
    /// The model wants tool results (OpenAI `tool_calls`, Anthropic `tool_use`).
    ToolCalls,
    /// Cut off by `max_tokens` or the context window.
    Length,
    /// Anything else (`content_filter`, `refusal`, `pause_turn`, ...), as the provider spelled it;
    /// empty when the provider gave no reason.
    Other(String),
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Completion {
    pub message: AssistantMessage,
    pub finish: Finish,
    pub usage: Usage,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompletionRequest {
    pub model: String,
    pub system: Option<String>,
    pub messages: Vec<Message>,
    /// Only the tools of the handler's allow-list: a tool not listed does not exist for the model.
    pub tools: Vec<ToolSpec>,
    /// Required by Anthropic; sent as `max_tokens` to OpenAI-compatible servers, which all read it.
    pub max_tokens: u32,
}

#[async_trait]
pub trait LlmProvider: Send + Sync {
    /// One request, no retries: wrap it in `complete_with_retries`.
    async fn complete(&self, req: &CompletionRequest) -> Result<Completion, LlmError>;
}

/// Why a completion failed, classified so that the retry loop and the scheduler can decide
/// between waiting, retrying later and giving up.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LlmError {
    /// 429 for requests or tokens per minute: passes with time.
    #[error("rate limited: {message}")]
    RateLimited {
        /// The provider's hint, uncapped (the retry loop caps it; a scheduler may want all of it).
        retry_after: Option<Duration>,
        message: String,
    },
    /// 5xx, Anthropic's 529 `overloaded_error`: the provider's trouble, usually brief.
    #[error("provider unavailable: {message}")]
    Overloaded {
        retry_after: Option<Duration>,
        message: String,
    },
    /// OpenAI `insufficient_quota`, Anthropic `billing_error`: a 4xx that no wait fixes; someone
    /// has to add credit. Retrying it only burns the retry budget.
    #[error("quota exhausted, not retrying: {0}")]
    QuotaExhausted(String),
    /// 401/403: the key is wrong or lacks access.
    #[error("authentication failed: {0}")]
    Auth(String),
    /// 400/404/413/422: the request itself is wrong (unknown model, schema the provider rejects).
    #[error("request rejected: {0}")]
    BadRequest(String),
    /// Any other status, or one where `x-should-retry` overrode the usual decision.
    #[error("HTTP {status}: {message}")]
    Http {
        status: u16,
        message: String,
        retryable: bool,
        retry_after: Option<Duration>,
    },
    /// No response: connection refused or reset, timeout.
    #[error("transport: {0}")]
    Transport(String),
    /// A 2xx whose body is not the provider's format.
    #[error("invalid response: {0}")]
    InvalidResponse(String),
    /// Not sent: the provider's circuit breaker is open after consecutive provider failures
    /// (`scheduler::breaker`). Not retried within the run; the job waits until `until_ms`
    /// (Unix ms), when the breaker lets a probe through.
    #[error("{message}")]
    BreakerOpen { until_ms: i64, message: String },
}

impl LlmError {
    pub fn retryable(&self) -> bool {
        match self {
            LlmError::RateLimited { .. } | LlmError::Overloaded { .. } | LlmError::Transport(_) => {
                true
            }
            LlmError::Http { retryable, .. } => *retryable,
            LlmError::QuotaExhausted(_)
            | LlmError::Auth(_)
            | LlmError::BadRequest(_)
            | LlmError::InvalidResponse(_)
            | LlmError::BreakerOpen { .. } => false,
        }
    }

    /// Whether the failure is the provider's (5xx, 529, a timeout, no connection): what the
    /// circuit breaker counts. A 429 is not (the provider is up and says when to come back), nor
    /// is a request it refused, an exhausted quota, a refused key or an unreadable answer.
    pub fn provider_failure(&self) -> bool {
        match self {
            LlmError::Overloaded { .. } | LlmError::Transport(_) => true,
            LlmError::Http { status, .. } => *status >= 500 || *status == 408,
            LlmError::RateLimited { .. }
            | LlmError::QuotaExhausted(_)
            | LlmError::Auth(_)
            | LlmError::BadRequest(_)
            | LlmError::InvalidResponse(_)
            | LlmError::BreakerOpen { .. } => false,
        }
    }

    /// The provider's own wait hint (`retry-after-ms`, `retry-after`, reset headers), if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            LlmError::RateLimited { retry_after, .. }
            | LlmError::Overloaded { retry_after, .. }
            | LlmError::Http { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// How `complete_with_retries` waits. The defaults follow the official SDKs (0.5 s doubling to
/// 8 s, hints honoured up to 60 s), with more retries, since a job waits anyway.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first attempt; 0 disables retrying.
    pub max_retries: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// Longest wait a provider hint can impose on one retry; a longer hint is cut to this so a
    /// worker is not held for minutes (the error still carries the full hint).
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 4,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `retry + 1`: the provider's hint when it gave a positive one
    /// (capped), else exponential backoff with up to 25 % jitter taken off, so clients that failed
    /// together do not retry together.
    pub fn delay(&self, retry: u32, hint: Option<Duration>) -> Duration {
        if let Some(hint) = hint.filter(|d| !d.is_zero()) {
            return hint.min(self.max_retry_after);
        }
        let backoff = self
            .initial_backoff
            .saturating_mul(2u32.saturating_pow(retry))
            .min(self.max_backoff);
        backoff.mul_f64(1.0 - 0.25 * fastrand::f64())
    }
}

/// Calls `provider` until it succeeds, fails in a way no retry fixes, or `policy.max_retries`
/// retries are spent; returns the last error then. Waits with `tokio::time`, so tests drive it
/// with a paused clock.
pub async fn complete_with_retries<P: LlmProvider + ?Sized>(
    provider: &P,
    req: &CompletionRequest,
    policy: &RetryPolicy,
) -> Result<Completion, LlmError> {
    let mut retry = 0;
    loop {
        match provider.complete(req).await {
            Ok(completion) => return Ok(completion),
            Err(e) if e.retryable() && retry < policy.max_retries => {
                let wait = policy.delay(retry, e.retry_after());
                tracing::warn!(
                    model = %req.model,
                    retry = retry + 1,
                    wait_ms = wait.as_millis() as u64,
                    error = %e,
                    "LLM call failed; retrying"
                );
                tokio::time::sleep(wait).await;
                retry += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests;
