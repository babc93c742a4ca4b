//! The OpenAI Chat Completions client: tool-call round trip, raw invalid arguments, the 429 cases
//! (rate limit vs quota), 5xx and 401, and Azure-style deployments.

use super::ticket_question;
use crate::support::fake_llm::{FakeLlm, Reply};
use hookwise::kernel::Secret;
use hookwise::llm::{
    Finish, LlmError, LlmProvider, Message, OpenAiConfig, OpenAiProvider, RetryPolicy,
    ToolArguments, complete_with_retries,
};
use serde_json::{Value, json};
use std::time::Duration;

const KEY: &str = "sk-test-0123456789";

fn provider(fake: &FakeLlm) -> OpenAiProvider {
    OpenAiProvider::new(OpenAiConfig::new(
        format!("{}/v1", fake.url),
        Some(Secret::new(KEY)),
    ))
    .unwrap()
}

fn tool_call_reply(arguments: &str) -> Reply {
    Reply::ok(json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1795329937, "model": "gpt-4.1-mini",
        "choices": [{
            "index": 0,
            "message": {
                "role": "assistant", "content": null, "refusal": null,
                "tool_calls": [{"id": "call_abc123", "type": "function",
                                "function": {"name": "get_ticket", "arguments": arguments}}]
            },
            "finish_reason": "tool_calls", "logprobs": null
        }],
        "usage": {"prompt_tokens": 289, "completion_tokens": 12, "total_tokens": 301,
                  "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0}},
        "system_fingerprint": "fp_1", "service_tier": "default"
    }))
    .header("x-request-id", "req_1")
    .header("x-ratelimit-remaining-requests", "499")
}

fn text_reply(text: &str) -> Reply {
    Reply::ok(json!({
        "id": "chatcmpl-2", "object": "chat.completion", "created": 1795329938, "model": "gpt-4.1-mini",
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": text, "refusal": null}}],
        "usage": {"prompt_tokens": 320, "completion_tokens": 9, "total_tokens": 329}
    }))
}

fn error_reply(status: u16, message: &str, kind: &str, code: Value) -> Reply {
    Reply::status(
        status,
        json!({"error": {"message": message, "type": kind, "param": null, "code": code}}),
    )
}

#[tokio::test]
async fn a_tool_call_round_trip_replays_the_call_and_answers_it_by_id() {
    let fake = FakeLlm::start(vec![
        tool_call_reply(r#"{"ticket_id": 4711}"#),
        text_reply("Ticket 4711 is open: Printer jammed."),
    ])
    .await;
    let llm = provider(&fake);

    let mut req = ticket_question("gpt-4.1-mini");
    let first = llm.complete(&req).await.unwrap();
    assert_eq!(first.finish, Finish::ToolCalls);
    assert_eq!(first.message.text, None);
    let call = &first.message.tool_calls[0];
    assert_eq!(
        (call.id.as_str(), call.name.as_str()),
        ("call_abc123", "get_ticket")
    );
    assert_eq!(call.arguments.value(), Some(&json!({"ticket_id": 4711})));
    assert_eq!(
        (first.usage.input_tokens, first.usage.output_tokens),
        (289, 12)
    );

    req.messages.push(Message::Assistant(first.message.clone()));
    req.messages.push(Message::tool_result(
        &call.id,
        r#"{"status":"open","subject":"Printer jammed"}"#,
    ));
    let second = llm.complete(&req).await.unwrap();
    assert_eq!(second.finish, Finish::Stop);
    assert_eq!(
        second.message.text.as_deref(),
        Some("Ticket 4711 is open: Printer jammed.")
    );
    assert!(second.message.tool_calls.is_empty());
    assert_eq!(
        (second.usage.input_tokens, second.usage.output_tokens),
        (320, 9)
    );

    let seen = fake.received();
    assert_eq!(seen.len(), 2);
    for r in &seen {
        assert_eq!(r.method, "POST");
        assert_eq!(r.uri, "/v1/chat/completions");
        assert_eq!(r.header("authorization"), Some(&*format!("Bearer {KEY}")));
        assert_eq!(r.header("content-type"), Some("application/json"));
    }
    assert_eq!(
        seen[0].body,
        json!({
            "model": "gpt-4.1-mini",
            "messages": [
                {"role": "system", "content": "You are a helpdesk agent."},
                {"role": "user", "content": "What is the status of ticket 4711?"}
            ],
            "tools": [{"type": "function", "function": {
                "name": "get_ticket",
                "description": "Fetch a helpdesk ticket by id",
                "parameters": {"type": "object",
                               "properties": {"ticket_id": {"type": "integer"}},
                               "required": ["ticket_id"]}
            }}],
            "tool_choice": "auto",
            "max_tokens": 256
        })
    );
    // The assistant turn comes back exactly as received (null content, the arguments text
    // byte for byte), then one `tool` message answering its id.
    let messages = seen[1].body["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 4);
    assert_eq!(
        messages[2],
        json!({"role": "assistant", "content": null, "tool_calls": [
            {"id": "call_abc123", "type": "function",
             "function": {"name": "get_ticket", "arguments": "{\"ticket_id\": 4711}"}}
        ]})
    );
    assert_eq!(
        messages[3],
        json!({"role": "tool", "tool_call_id": "call_abc123",
               "content": "{\"status\":\"open\",\"subject\":\"Printer jammed\"}"})
    );
}

#[tokio::test]
async fn arguments_that_are_not_json_come_back_raw_not_as_an_error() {
    let fake = FakeLlm::start(vec![tool_call_reply(r#"{"ticket_id": 4711,"#)]).await;
    let completion = provider(&fake)
        .complete(&ticket_question("gpt-4.1-mini"))
        .await
        .expect("invalid arguments are the agent's to report, not a failed call");
    let call = &completion.message.tool_calls[0];
    assert_eq!(call.name, "get_ticket");
    match &call.arguments {
        ToolArguments::Invalid { raw, error } => {
            assert_eq!(raw, r#"{"ticket_id": 4711,"#);
            assert!(!error.is_empty());
        }
        other => panic!("expected raw arguments, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_rate_limit_waits_the_retry_after_then_retries_once() {
    let fake = FakeLlm::start(vec![
        error_reply(
            429,
            "Rate limit reached for gpt-4.1-mini on requests per min (RPM): Limit 3, Used 3.",
            "requests",
            json!("rate_limit_exceeded"),
        )
        .header("retry-after", "2")
        .header("x-ratelimit-reset-requests", "2s"),
        text_reply("done"),
    ])
    .await;
    let started = tokio::time::Instant::now();
    let completion = complete_with_retries(
        &provider(&fake),
        &ticket_question("gpt-4.1-mini"),
        &RetryPolicy::default(),
    )
    .await
    .unwrap();
    assert_eq!(completion.message.text.as_deref(), Some("done"));
    let seen = fake.received();
    assert_eq!(seen.len(), 2, "one retry");
    // Virtual time: the wait is the server's 2 s, not the 0.5 s backoff, and nothing more.
    let waited = seen[1].at - seen[0].at;
    assert!(
        waited >= Duration::from_secs(2) && waited < Duration::from_millis(2100),
        "{waited:?}"
    );
    assert!(started.elapsed() < Duration::from_millis(2100));
}

#[tokio::test(start_paused = true)]
async fn exhausted_quota_is_not_retried_and_says_so() {
    let fake = FakeLlm::start(vec![
        error_reply(
            429,
            "You exceeded your current quota, please check your plan and billing details.",
            "insufficient_quota",
            json!("insufficient_quota"),
        )
        .header("retry-after", "1"),
        text_reply("never sent"),
    ])
    .await;
    let error = complete_with_retries(
        &provider(&fake),
        &ticket_question("gpt-4.1-mini"),
        &RetryPolicy::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(error, LlmError::QuotaExhausted(_)), "{error:?}");
    assert!(!error.retryable());
    let text = error.to_string();
    assert!(text.contains("quota exhausted"), "{text}");
    assert!(text.contains("insufficient_quota"), "{text}");
    assert_eq!(fake.received().len(), 1);
    assert_eq!(fake.unused(), 1);
}

#[tokio::test(start_paused = true)]
async fn server_errors_are_retried_with_growing_backoff() {
    let fake = FakeLlm::start(vec![
        error_reply(500, "The server had an error", "server_error", Value::Null),
        error_reply(500, "The server had an error", "server_error", Value::Null),
        text_reply("recovered"),
    ])
    .await;
    let completion = complete_with_retries(
        &provider(&fake),
        &ticket_question("gpt-4.1-mini"),
        &RetryPolicy::default(),
    )
    .await
    .unwrap();
    assert_eq!(completion.message.text.as_deref(), Some("recovered"));
    let seen = fake.received();
    assert_eq!(seen.len(), 3);
    // 0.5 s then 1 s, each shortened by up to a quarter of jitter.
    let (first, second) = (seen[1].at - seen[0].at, seen[2].at - seen[1].at);
    assert!(
        first >= Duration::from_millis(375) && first <= Duration::from_millis(510),
        "{first:?}"
    );
    assert!(
        second >= Duration::from_millis(750) && second <= Duration::from_millis(1010),
        "{second:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_refused_key_is_not_retried() {
    let fake = FakeLlm::start(vec![
        error_reply(
            401,
            "Incorrect API key provided: sk-test-****6789.",
            "invalid_request_error",
            json!("invalid_api_key"),
        ),
        text_reply("never sent"),
    ])
    .await;
    let error = complete_with_retries(
        &provider(&fake),
        &ticket_question("gpt-4.1-mini"),
        &RetryPolicy::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(error, LlmError::Auth(_)), "{error:?}");
    assert!(error.to_string().contains("invalid_api_key"), "{error}");
    assert_eq!(fake.received().len(), 1);
}

#[tokio::test]
async fn azure_deployments_use_their_url_and_the_api_key_header() {
    let fake = FakeLlm::start(vec![text_reply("from azure"), text_reply("from ollama")]).await;
    let azure = OpenAiProvider::new(OpenAiConfig {
        azure_api_version: Some("2024-10-21".into()),
        azure_deployment: Some("gpt4o-prod".into()),
        ..OpenAiConfig::new(fake.url.clone(), Some(Secret::new("azure-key")))
    })
    .unwrap();
    let c = azure.complete(&ticket_question("gpt-4o")).await.unwrap();
    assert_eq!(c.message.text.as_deref(), Some("from azure"));

    // A compatible server mounted elsewhere, without a key.
    let local = OpenAiProvider::new(OpenAiConfig {
        path: Some("/api/chat/completions".into()),
        ..OpenAiConfig::new(format!("{}/", fake.url), None)
    })
    .unwrap();
    let c = local.complete(&ticket_question("smollm2")).await.unwrap();
    assert_eq!(c.message.text.as_deref(), Some("from ollama"));

    let seen = fake.received();
    assert_eq!(
        seen[0].uri,
        "/openai/deployments/gpt4o-prod/chat/completions?api-version=2024-10-21"
    );
    assert_eq!(seen[0].header("api-key"), Some("azure-key"));
    assert_eq!(seen[0].header("authorization"), None);
    assert_eq!(seen[1].uri, "/api/chat/completions");
    assert_eq!(seen[1].header("authorization"), None);
    assert_eq!(seen[1].header("api-key"), None);
    assert_eq!(seen[1].body["model"], "smollm2");
}
