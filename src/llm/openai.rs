//! OpenAI Chat Completions client, also for compatible servers (Ollama, vLLM, llama.cpp) and
//! Azure OpenAI deployments. Responses are read tolerantly: these servers add, omit and rename
//! fields, and an unknown `finish_reason` is reported, not rejected.

use super::http::{self, ApiError, Reply};
use super::{
    AssistantMessage, Completion, CompletionRequest, Finish, LlmError, LlmProvider, Message,
    ToolArguments, ToolCall, Usage,
};
use crate::kernel::Secret;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::time::{Duration, SystemTime};

const PROVIDER: &str = "openai";

/// Where and how to reach an OpenAI-compatible endpoint.
#[derive(Debug, Clone)]
pub struct OpenAiConfig {
    /// `https://api.openai.com/v1`, `http://localhost:11434/v1` (Ollama), ...; for Azure the
    /// resource URL, `https://NAME.openai.azure.com`.
    pub base_url: String,
    /// Sent as `Authorization: Bearer` (or `api-key` for Azure); None for local servers without
    /// authentication.
    pub api_key: Option<Secret>,
    /// Replaces `/chat/completions` after `base_url`, for servers mounted elsewhere.
    pub path: Option<String>,
    /// Set for Azure: requests go to `{base}/openai/deployments/{deployment}/chat/completions
    /// ?api-version=...` with an `api-key` header.
    pub azure_api_version: Option<String>,
    /// The Azure deployment; None uses the request's model name, as the Azure SDKs do.
    pub azure_deployment: Option<String>,
    /// Whole-request timeout.
    pub timeout: Duration,
    /// Replays an assistant message without text as `"content": ""` instead of `null`:
    /// llama-cpp-python rejects `null` next to `tool_calls`, OpenAI documents `null`.
    pub empty_content_as_string: bool,
}

impl OpenAiConfig {
    pub fn new(base_url: impl Into<String>, api_key: Option<Secret>) -> Self {
        Self {
            base_url: base_url.into(),
            api_key,
            path: None,
            azure_api_version: None,
            azure_deployment: None,
            timeout: Duration::from_secs(60),
            empty_content_as_string: false,
        }
    }
}

pub struct OpenAiProvider {
    config: OpenAiConfig,
    client: reqwest::Client,
}

impl OpenAiProvider {
    pub fn new(config: OpenAiConfig) -> Result<Self, String> {
        let client = http::client(config.timeout)?;
        Ok(Self { config, client })
    }

    fn request(&self, model: &str) -> reqwest::RequestBuilder {
        let base = self.config.base_url.trim_end_matches('/');
        let key = self.config.api_key.as_ref().map(Secret::expose);
        match &self.config.azure_api_version {
            Some(version) => {
                let deployment = self.config.azure_deployment.as_deref().unwrap_or(model);
                let path = self.config.path.as_deref().unwrap_or("/chat/completions");
                let url = format!("{base}/openai/deployments/{deployment}{path}");
                let request = self.client.post(url).query(&[("api-version", version)]);
                match key {
                    Some(key) => request.header("api-key", key),
                    None => request,
                }
            }
            None => {
                let path = self.config.path.as_deref().unwrap_or("/chat/completions");
                let request = self.client.post(format!("{base}{path}"));
                match key {
                    Some(key) => request.bearer_auth(key),
                    None => request,
                }
            }
        }
    }
}

#[async_trait]
impl LlmProvider for OpenAiProvider {
    async fn complete(&self, req: &CompletionRequest) -> Result<Completion, LlmError> {
        let body = request_body(req, self.config.empty_content_as_string);
        let reply = http::send(PROVIDER, self.request(&req.model).json(&body)).await?;
        if !reply.status.is_success() {
            return Err(error(&reply));
        }
        parse_response(&reply.body)
    }
}

#[derive(Serialize)]
struct ChatRequest<'a> {
    model: &'a str,
    messages: Vec<OutMessage<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<OutTool<'a>>,
    /// `"auto"` whenever tools are offered. OpenAI defaults to it, but llama-cpp-python's
    /// `chatml-function-calling` treats a missing `tool_choice` as `"none"`: it leaves the tools
    /// out of the prompt and the model can never call one. OpenAI rejects it without tools.
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<&'static str>,
    max_tokens: u32,
}

#[derive(Serialize)]
#[serde(tag = "role", rename_all = "lowercase")]
enum OutMessage<'a> {
    System {
        content: &'a str,
    },
    User {
        content: &'a str,
    },
    Assistant {
        content: Option<&'a str>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        tool_calls: Vec<OutToolCall<'a>>,
    },
    Tool {
        tool_call_id: &'a str,
        content: std::borrow::Cow<'a, str>,
    },
}

#[derive(Serialize)]
struct OutToolCall<'a> {
    id: &'a str,
    r#type: &'static str,
    function: OutFunctionCall<'a>,
}

#[derive(Serialize)]
struct OutFunctionCall<'a> {
    name: &'a str,
    /// The model's own text, valid JSON or not, so the replay is what it produced.
    arguments: &'a str,
}

#[derive(Serialize)]
struct OutTool<'a> {
    r#type: &'static str,
    function: OutFunction<'a>,
}

#[derive(Serialize)]
struct OutFunction<'a> {
    name: &'a str,
    description: &'a str,
    parameters: &'a Value,
}

fn request_body(req: &CompletionRequest, empty_content_as_string: bool) -> ChatRequest<'_> {
    let mut messages = Vec::with_capacity(req.messages.len() + 1);
    if let Some(system) = &req.system {
        messages.push(OutMessage::System { content: system });
    }
    for message in &req.messages {
        messages.push(match message {
            Message::System { text } => OutMessage::System { content: text },
            Message::User { text } => OutMessage::User { content: text },
            Message::Assistant(a) => OutMessage::Assistant {
                content: match a.text.as_deref() {
                    None if empty_content_as_string => Some(""),
                    text => text,
                },
                tool_calls: a
                    .tool_calls
                    .iter()
                    .map(|c| OutToolCall {
                        id: &c.id,
                        r#type: "function",
                        function: OutFunctionCall {
                            name: &c.name,
                            arguments: c.arguments.raw(),
                        },
                    })
                    .collect(),
            },
            // OpenAI has no error flag on tool messages: the text has to say it.
            Message::ToolResult(r) => OutMessage::Tool {
                tool_call_id: &r.call_id,
                content: if r.is_error {
                    format!("Error: {}", r.content).into()
                } else {
                    r.content.as_str().into()
                },
            },
        });
    }
    let tools: Vec<OutTool> = req
        .tools
        .iter()
        .map(|t| OutTool {
            r#type: "function",
            function: OutFunction {
                name: &t.name,
                description: &t.description,
                parameters: &t.parameters,
            },
        })
        .collect();
    ChatRequest {
        model: &req.model,
        messages,
        tool_choice: (!tools.is_empty()).then_some("auto"),
        tools,
        max_tokens: req.max_tokens,
    }
}

// The response, read tolerantly: every field that a compatible server might leave out has a
// default, and unknown fields (`refusal`, `logprobs`, the legacy `function_call`) are ignored.

#[derive(Deserialize)]
struct ChatResponse {
    #[serde(default)]
    choices: Vec<Choice>,
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct Choice {
    message: WireMessage,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct WireMessage {
    /// A string, null, or (rarely) an array of text parts.
    #[serde(default)]
    content: Value,
    #[serde(default)]
    tool_calls: Option<Vec<WireToolCall>>,
}

#[derive(Deserialize)]
struct WireToolCall {
    id: Option<String>,
    function: WireFunction,
}

#[derive(Deserialize)]
struct WireFunction {
    name: String,
    /// A JSON string per the spec; some servers send the object itself.
    #[serde(default)]
    arguments: Value,
}

#[derive(Deserialize)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
}

/// Public only for the fuzz targets (`fuzz/`); not an API.
#[doc(hidden)]
pub fn parse_response(body: &[u8]) -> Result<Completion, LlmError> {
    let response: ChatResponse = serde_json::from_slice(body).map_err(|e| {
        LlmError::InvalidResponse(format!(
            "{PROVIDER}: not a chat completion ({e}): {}",
            http::body_excerpt(body)
        ))
    })?;
    let Some(choice) = response.choices.into_iter().next() else {
        return Err(LlmError::InvalidResponse(format!(
            "{PROVIDER}: the response has no choices: {}",
            http::body_excerpt(body)
        )));
    };
    let text = match choice.message.content {
        Value::String(s) => Some(s),
        Value::Array(parts) => Some(
            parts
                .iter()
                .filter_map(|p| p.get("text")?.as_str())
                .collect::<Vec<_>>()
                .join(""),
        ),
        _ => None,
    };
    let tool_calls = choice
        .message
        .tool_calls
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, call)| ToolCall {
            // Without an id the result could not be matched to the call; make one up that is
            // unique in this message.
            id: call.id.unwrap_or_else(|| format!("call_{i}")),
            name: call.function.name,
            arguments: match call.function.arguments {
                Value::String(raw) => ToolArguments::parse(raw),
                Value::Null => ToolArguments::parse(""),
                other => ToolArguments::from_value(other),
            },
        })
        .collect();
    let finish = match choice.finish_reason.as_deref() {
        Some("stop") => Finish::Stop,
        Some("tool_calls") => Finish::ToolCalls,
        Some("length") => Finish::Length,
        Some(other) => Finish::Other(other.to_owned()),
        None => Finish::Other(String::new()),
    };
    let usage = response
        .usage
        .map(|u| Usage {
            input_tokens: u.prompt_tokens,
            output_tokens: u.completion_tokens,
        })
        .unwrap_or_default();
    Ok(Completion {
        message: AssistantMessage { text, tool_calls },
        finish,
        usage,
    })
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    #[serde(default)]
    message: String,
    r#type: Option<String>,
    code: Option<Value>,
}

fn error(reply: &Reply) -> LlmError {
    let api = match serde_json::from_slice::<ErrorBody>(&reply.body) {
        Ok(ErrorBody { error }) => {
            // `code` is a string on OpenAI, a number on some compatible servers.
            let code = error.code.and_then(|c| match c {
                Value::String(s) => Some(s),
                Value::Null => None,
                other => Some(other.to_string()),
            });
            let quota = error.r#type.as_deref() == Some("insufficient_quota")
                || code.as_deref() == Some("insufficient_quota");
            ApiError {
                kind: error.r#type,
                code,
                message: error.message,
                quota,
                request_id: None,
            }
        }
        Err(_) => ApiError {
            kind: None,
            code: None,
            message: http::body_excerpt(&reply.body),
            quota: false,
            request_id: None,
        },
    };
    let retry_after = http::retry_after(&reply.headers, SystemTime::now());
    http::classify(PROVIDER, reply, api, retry_after)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::ToolSpec;
    use serde_json::json;

    #[test]
    fn unknown_fields_and_finish_reasons_are_tolerated() {
        let body = json!({
            "id": "x", "object": "chat.completion", "system_fingerprint": "fp",
            "choices": [{"index": 0, "logprobs": null, "finish_reason": "content_filter",
                         "message": {"role": "assistant", "content": "partial", "refusal": null,
                                     "function_call": {"name": "wrong:", "arguments": "{}"}}}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7,
                      "completion_tokens_details": {"reasoning_tokens": 0}}
        });
        let c = parse_response(body.to_string().as_bytes()).unwrap();
        assert_eq!(c.finish, Finish::Other("content_filter".into()));
        assert_eq!(c.message.text.as_deref(), Some("partial"));
        assert!(
            c.message.tool_calls.is_empty(),
            "legacy function_call ignored"
        );
        assert_eq!(c.usage.input_tokens, 3);
        assert_eq!(c.usage.output_tokens, 4);
    }

    #[test]
    fn object_arguments_and_missing_ids_are_accepted() {
        let body = json!({"choices": [{"finish_reason": "tool_calls", "message": {
            "content": null,
            "tool_calls": [{"function": {"name": "a", "arguments": {"x": 1}}},
                           {"function": {"name": "b", "arguments": ""}}]}}]});
        let c = parse_response(body.to_string().as_bytes()).unwrap();
        assert_eq!(c.message.text, None);
        let calls = &c.message.tool_calls;
        assert_eq!(
            (calls[0].id.as_str(), calls[1].id.as_str()),
            ("call_0", "call_1")
        );
        assert_eq!(calls[0].arguments.value(), Some(&json!({"x": 1})));
        assert_eq!(calls[1].arguments.value(), Some(&json!({})));
        assert_eq!(c.usage, Usage::default());
    }

    #[test]
    fn no_choices_is_an_invalid_response() {
        let e = parse_response(br#"{"choices": []}"#).unwrap_err();
        assert!(matches!(e, LlmError::InvalidResponse(_)), "{e:?}");
        let e = parse_response(b"<html>bad gateway</html>").unwrap_err();
        assert!(e.to_string().contains("<html>bad gateway"), "{e}");
    }

    #[test]
    fn tool_errors_say_so_and_empty_content_can_be_a_string() {
        let req = CompletionRequest {
            model: "m".into(),
            system: None,
            messages: vec![
                Message::Assistant(AssistantMessage {
                    text: None,
                    tool_calls: vec![ToolCall {
                        id: "c1".into(),
                        name: "t".into(),
                        arguments: ToolArguments::parse("{oops"),
                    }],
                }),
                Message::tool_error("c1", "arguments are not JSON"),
            ],
            tools: vec![ToolSpec {
                name: "t".into(),
                description: "d".into(),
                parameters: json!({"type": "object"}).into(),
            }],
            max_tokens: 10,
        };
        let body = serde_json::to_value(request_body(&req, true)).unwrap();
        assert_eq!(body["messages"][0]["content"], json!(""));
        assert_eq!(
            body["messages"][0]["tool_calls"][0]["function"]["arguments"],
            json!("{oops")
        );
        assert_eq!(
            body["messages"][1]["content"],
            json!("Error: arguments are not JSON")
        );
        let body = serde_json::to_value(request_body(&req, false)).unwrap();
        assert_eq!(body["messages"][0]["content"], Value::Null);
    }

    #[test]
    fn tool_choice_is_auto_exactly_when_tools_are_offered() {
        // llama-cpp-python reads a missing tool_choice as "none" and drops the tools from the
        // prompt; OpenAI rejects a tool_choice without tools.
        let mut req = CompletionRequest {
            model: "m".into(),
            system: Some("s".into()),
            messages: vec![Message::user("look up ticket 4711")],
            tools: vec![ToolSpec {
                name: "get_ticket".into(),
                description: "d".into(),
                parameters: json!({"type": "object"}).into(),
            }],
            max_tokens: 10,
        };
        let body = serde_json::to_value(request_body(&req, false)).unwrap();
        assert_eq!(body["tool_choice"], json!("auto"));
        req.tools.clear();
        let body = serde_json::to_value(request_body(&req, false)).unwrap();
        assert!(body.get("tool_choice").is_none(), "{body}");
        assert!(body.get("tools").is_none(), "{body}");
    }
}
