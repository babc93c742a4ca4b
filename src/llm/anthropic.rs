//! Anthropic Messages API client: `x-api-key` + `anthropic-version`, the system prompt at the top
//! level, tool calls as `tool_use` blocks and their results as `tool_result` blocks in one user
//! message, 529 `overloaded_error` as a passing outage.

use super::http::{self, ApiError, Reply};
use super::{
    AssistantMessage, Completion, CompletionRequest, Finish, LlmError, LlmProvider, Message,
    ToolArguments, ToolCall, Usage,
};
use crate::kernel::Secret;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use reqwest::header::HeaderMap;
use serde::Deserialize;
use serde_json::{Value, json};
use std::time::{Duration, SystemTime};

const PROVIDER: &str = "anthropic";
/// The API version this client speaks; still what the current official SDK sends.
pub const API_VERSION: &str = "2023-06-01";

#[derive(Debug, Clone)]
pub struct AnthropicConfig {
    /// `https://api.anthropic.com`; requests go to `{base_url}/v1/messages`.
    pub base_url: String,
    pub api_key: Secret,
    /// Whole-request timeout.
    pub timeout: Duration,
}

impl AnthropicConfig {
    pub fn new(base_url: impl Into<String>, api_key: Secret) -> Self {
        Self {
            base_url: base_url.into(),
            api_key,
            timeout: Duration::from_secs(60),
        }
    }
}

pub struct AnthropicProvider {
    config: AnthropicConfig,
    client: reqwest::Client,
}

impl AnthropicProvider {
    pub fn new(config: AnthropicConfig) -> Result<Self, String> {
        let client = http::client(config.timeout)?;
        Ok(Self { config, client })
    }
}

#[async_trait]
impl LlmProvider for AnthropicProvider {
    async fn complete(&self, req: &CompletionRequest) -> Result<Completion, LlmError> {
        let url = format!("{}/v1/messages", self.config.base_url.trim_end_matches('/'));
        let request = self
            .client
            .post(url)
            .header("x-api-key", self.config.api_key.expose())
            .header("anthropic-version", API_VERSION)
            .json(&request_body(req));
        let reply = http::send(PROVIDER, request).await?;
        if !reply.status.is_success() {
            return Err(error(&reply));
        }
        parse_response(&reply.body)
    }
}

/// The request as JSON: the shapes vary per block type, and a `json!` per block reads closer to
/// the API reference than a family of one-use structs.
fn request_body(req: &CompletionRequest) -> Value {
    // Anthropic has no system role: mid-run instructions join the top-level prompt.
    let system: Vec<&str> = req
        .system
        .iter()
        .map(String::as_str)
        .chain(req.messages.iter().filter_map(|m| match m {
            Message::System { text } => Some(text.as_str()),
            _ => None,
        }))
        .collect();

    let mut messages: Vec<(&str, Vec<Value>)> = Vec::new();
    for message in &req.messages {
        let (role, block) = match message {
            Message::System { .. } => continue,
            Message::User { text } => ("user", vec![json!({"type": "text", "text": text})]),
            Message::Assistant(a) => ("assistant", assistant_blocks(a)),
            Message::ToolResult(r) => (
                "user",
                vec![json!({
                    "type": "tool_result",
                    "tool_use_id": r.call_id,
                    "content": r.content,
                    "is_error": r.is_error,
                })],
            ),
        };
        // Consecutive results (and any text after them) are one user turn: every tool_use must
        // be answered in the very next message.
        match messages.last_mut() {
            Some((last, blocks)) if *last == role => blocks.extend(block),
            _ => messages.push((role, block)),
        }
    }

    let mut body = json!({
        "model": req.model,
        "max_tokens": req.max_tokens,
        "messages": messages
            .into_iter()
            .map(|(role, content)| json!({"role": role, "content": content}))
            .collect::<Vec<_>>(),
    });
    if !system.is_empty() {
        body["system"] = json!(system.join("\n\n"));
    }
    if !req.tools.is_empty() {
        body["tools"] = req
            .tools
            .iter()
            .map(|t| json!({"name": t.name, "description": t.description, "input_schema": t.parameters}))
            .collect();
    }
    body
}

fn assistant_blocks(a: &AssistantMessage) -> Vec<Value> {
    let mut blocks = Vec::with_capacity(a.tool_calls.len() + 1);
    // The API rejects empty text blocks.
    if let Some(text) = a.text.as_deref().filter(|t| !t.is_empty()) {
        blocks.push(json!({"type": "text", "text": text}));
    }
    for call in &a.tool_calls {
        // Anthropic's input is always an object; a call whose arguments did not parse can only
        // come from another provider's transcript, and its raw text is not an object.
        let input = match call.arguments.value() {
            Some(v @ Value::Object(_)) => v.clone(),
            _ => json!({}),
        };
        blocks.push(json!({"type": "tool_use", "id": call.id, "name": call.name, "input": input}));
    }
    blocks
}

#[derive(Deserialize)]
struct MessageResponse {
    #[serde(default)]
    content: Vec<Value>,
    stop_reason: Option<String>,
    #[serde(default)]
    usage: WireUsage,
}

#[derive(Deserialize, Default)]
struct WireUsage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
}

/// Public only for the fuzz targets (`fuzz/`); not an API.
#[doc(hidden)]
pub fn parse_response(body: &[u8]) -> Result<Completion, LlmError> {
    let invalid = |why: String| {
        LlmError::InvalidResponse(format!("{PROVIDER}: {why}: {}", http::body_excerpt(body)))
    };
    let response: MessageResponse =
        serde_json::from_slice(body).map_err(|e| invalid(format!("not a message ({e})")))?;
    let mut texts = Vec::new();
    let mut tool_calls = Vec::new();
    for block in &response.content {
        // Other block types (thinking, server tool results) are not ours to act on.
        match block.get("type").and_then(Value::as_str) {
            Some("text") => {
                if let Some(text) = block.get("text").and_then(Value::as_str) {
                    texts.push(text);
                }
            }
            Some("tool_use") => {
                let field = |name: &str| block.get(name).and_then(Value::as_str);
                let (Some(id), Some(name)) = (field("id"), field("name")) else {
                    return Err(invalid("a tool_use block without id or name".into()));
                };
                tool_calls.push(ToolCall {
                    id: id.to_owned(),
                    name: name.to_owned(),
                    arguments: ToolArguments::from_value(
                        block.get("input").cloned().unwrap_or_else(|| json!({})),
                    ),
                });
            }
            _ => {}
        }
    }
    let finish = match response.stop_reason.as_deref() {
        Some("end_turn" | "stop_sequence") => Finish::Stop,
        Some("tool_use") => Finish::ToolCalls,
        Some("max_tokens" | "model_context_window_exceeded") => Finish::Length,
        Some(other) => Finish::Other(other.to_owned()),
        None => Finish::Other(String::new()),
    };
    Ok(Completion {
        message: AssistantMessage {
            // Several text blocks are rare (text around a tool call); one paragraph each.
            text: (!texts.is_empty()).then(|| texts.join("\n\n")),
            tool_calls,
        },
        finish,
        usage: Usage {
            input_tokens: response.usage.input_tokens,
            output_tokens: response.usage.output_tokens,
        },
    })
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
    request_id: Option<String>,
}

#[derive(Deserialize)]
struct ErrorDetail {
    r#type: Option<String>,
    #[serde(default)]
    message: String,
}

fn error(reply: &Reply) -> LlmError {
    let api = match serde_json::from_slice::<ErrorBody>(&reply.body) {
        Ok(ErrorBody { error, request_id }) => ApiError {
            // A spent credit balance comes back as a 400-class billing_error.
            quota: error.r#type.as_deref() == Some("billing_error"),
            kind: error.r#type,
            code: None,
            message: error.message,
            request_id,
        },
        Err(_) => ApiError {
            kind: None,
            code: None,
            message: http::body_excerpt(&reply.body),
            quota: false,
            request_id: None,
        },
    };
    let now = SystemTime::now();
    let retry_after = http::retry_after(&reply.headers, now).or_else(|| {
        (reply.status.as_u16() == 429)
            .then(|| exhausted_limit_reset(&reply.headers, now))
            .flatten()
    });
    http::classify(PROVIDER, reply, api, retry_after)
}

/// Without `retry-after`, the latest reset among the limits with nothing remaining: until then
/// at least one of them refuses every request.
fn exhausted_limit_reset(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let header = |name: String| headers.get(name)?.to_str().ok().map(str::trim);
    let now: DateTime<Utc> = now.into();
    ["requests", "tokens", "input-tokens", "output-tokens"]
        .iter()
        .filter(|limit| header(format!("anthropic-ratelimit-{limit}-remaining")) == Some("0"))
        .filter_map(|limit| {
            let reset = header(format!("anthropic-ratelimit-{limit}-reset"))?;
            let at = DateTime::parse_from_rfc3339(reset).ok()?;
            (at.with_timezone(&Utc) - now).to_std().ok()
        })
        .filter(|d| !d.is_zero())
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn reset_of_an_exhausted_limit_stands_in_for_retry_after() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000); // 2023-11-14T22:13:20Z
        let mut h = HeaderMap::new();
        let mut set = |k: &'static str, v: &str| {
            h.insert(k, HeaderValue::from_str(v).unwrap());
        };
        set("anthropic-ratelimit-requests-remaining", "10");
        set("anthropic-ratelimit-requests-reset", "2023-11-14T22:20:00Z");
        set("anthropic-ratelimit-tokens-remaining", "0");
        set("anthropic-ratelimit-tokens-reset", "2023-11-14T22:13:25Z");
        set("anthropic-ratelimit-output-tokens-remaining", "0");
        set(
            "anthropic-ratelimit-output-tokens-reset",
            "2023-11-14T22:13:32Z",
        );
        // The requests limit is not exhausted, so its later reset does not count.
        assert_eq!(
            exhausted_limit_reset(&h, now),
            Some(Duration::from_secs(12))
        );
        assert_eq!(exhausted_limit_reset(&HeaderMap::new(), now), None);
    }

    #[test]
    fn stop_reasons_map_and_unknown_blocks_are_skipped() {
        for (reason, finish) in [
            ("end_turn", Finish::Stop),
            ("stop_sequence", Finish::Stop),
            ("tool_use", Finish::ToolCalls),
            ("max_tokens", Finish::Length),
            ("refusal", Finish::Other("refusal".into())),
            ("pause_turn", Finish::Other("pause_turn".into())),
        ] {
            let body = json!({"content": [{"type": "thinking", "thinking": "..."},
                                          {"type": "text", "text": "hi"}],
                              "stop_reason": reason,
                              "usage": {"input_tokens": 1, "output_tokens": 2,
                                        "cache_read_input_tokens": 0}});
            let c = parse_response(body.to_string().as_bytes()).unwrap();
            assert_eq!(c.finish, finish, "{reason}");
            assert_eq!(c.message.text.as_deref(), Some("hi"));
        }
    }
}
