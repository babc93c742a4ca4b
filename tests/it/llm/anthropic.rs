//! The Anthropic Messages client: tool_use / tool_result round trip, 529 overload with
//! retry-after, the reset-header fallback, billing errors, and stop_reason mapping.

use super::{get_ticket, ticket_question};
use crate::support::fake_llm::{FakeLlm, Reply};
use hookwise::kernel::Secret;
use hookwise::llm::{
    AnthropicConfig, AnthropicProvider, Finish, LlmError, LlmProvider, Message, RetryPolicy,
    ToolSpec, complete_with_retries,
};
use serde_json::{Value, json};
use std::time::Duration;

const KEY: &str = "sk-ant-test-0123456789";
const MODEL: &str = "claude-test";

fn provider(fake: &FakeLlm) -> AnthropicProvider {
    AnthropicProvider::new(AnthropicConfig::new(fake.url.clone(), Secret::new(KEY))).unwrap()
}

fn message(content: Value, stop_reason: &str, input: u64, output: u64) -> Reply {
    Reply::ok(json!({
        "id": "msg_01", "type": "message", "role": "assistant", "model": MODEL,
        "content": content,
        "stop_reason": stop_reason, "stop_sequence": null,
        "usage": {"input_tokens": input, "output_tokens": output,
                  "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
                  "service_tier": "standard"}
    }))
    .header("request-id", "req_01")
}

fn error(status: u16, kind: &str, text: &str) -> Reply {
    Reply::status(
        status,
        json!({"type": "error", "error": {"type": kind, "message": text}, "request_id": "req_02"}),
    )
}

#[tokio::test]
async fn a_tool_use_round_trip_answers_every_call_in_one_user_message() {
    let fake = FakeLlm::start(vec![
        message(
            json!([
                {"type": "text", "text": "Let me look that up."},
                {"type": "tool_use", "id": "toolu_01", "name": "get_ticket", "input": {"ticket_id": 4711}},
                {"type": "tool_use", "id": "toolu_02", "name": "list_notes", "input": {"ticket_id": 4711}}
            ]),
            "tool_use",
            321,
            40,
        ),
        message(
            json!([{"type": "text", "text": "Ticket 4711 is open."}]),
            "end_turn",
            400,
            8,
        ),
    ])
    .await;
    let llm = provider(&fake);
    let mut req = ticket_question(MODEL);
    req.tools.push(ToolSpec {
        name: "list_notes".into(),
        description: "List a ticket's private notes".into(),
        parameters: json!({"type": "object", "properties": {"ticket_id": {"type": "integer"}}})
            .into(),
    });

    let first = llm.complete(&req).await.unwrap();
    assert_eq!(first.finish, Finish::ToolCalls);
    assert_eq!(first.message.text.as_deref(), Some("Let me look that up."));
    let calls = &first.message.tool_calls;
    assert_eq!(calls.len(), 2);
    assert_eq!(
        (calls[0].id.as_str(), calls[0].name.as_str()),
        ("toolu_01", "get_ticket")
    );
    assert_eq!(
        calls[0].arguments.value(),
        Some(&json!({"ticket_id": 4711}))
    );
    assert_eq!(calls[1].id, "toolu_02");
    assert_eq!(
        (first.usage.input_tokens, first.usage.output_tokens),
        (321, 40)
    );

    req.messages.push(Message::Assistant(first.message.clone()));
    req.messages
        .push(Message::tool_result("toolu_01", r#"{"status":"open"}"#));
    req.messages
        .push(Message::tool_error("toolu_02", "upstream said 503"));
    let second = llm.complete(&req).await.unwrap();
    assert_eq!(second.finish, Finish::Stop);
    assert_eq!(second.message.text.as_deref(), Some("Ticket 4711 is open."));

    let seen = fake.received();
    assert_eq!(seen.len(), 2);
    for r in &seen {
        assert_eq!(r.uri, "/v1/messages");
        assert_eq!(r.header("x-api-key"), Some(KEY));
        assert_eq!(r.header("anthropic-version"), Some("2023-06-01"));
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.header("authorization"), None);
        // The system prompt is top-level; the messages hold only user and assistant turns.
        assert_eq!(r.body["system"], "You are a helpdesk agent.");
        assert_eq!(r.body["model"], MODEL);
        assert_eq!(r.body["max_tokens"], 256);
        assert_eq!(r.body["tools"][0]["name"], "get_ticket");
        assert_eq!(r.body["tools"][0]["input_schema"], *get_ticket().parameters);
        assert!(r.body["tools"][0].get("parameters").is_none());
    }
    assert_eq!(
        seen[1].body["messages"],
        json!([
            {"role": "user", "content": [{"type": "text", "text": "What is the status of ticket 4711?"}]},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Let me look that up."},
                {"type": "tool_use", "id": "toolu_01", "name": "get_ticket", "input": {"ticket_id": 4711}},
                {"type": "tool_use", "id": "toolu_02", "name": "list_notes", "input": {"ticket_id": 4711}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01", "content": "{\"status\":\"open\"}", "is_error": false},
                {"type": "tool_result", "tool_use_id": "toolu_02", "content": "upstream said 503", "is_error": true}
            ]}
        ])
    );
}

#[tokio::test(start_paused = true)]
async fn overload_529_waits_the_retry_after_then_succeeds() {
    let overloaded = || error(529, "overloaded_error", "Overloaded").header("retry-after", "3");
    let fake = FakeLlm::start(vec![
        overloaded(),
        overloaded(),
        message(json!([{"type": "text", "text": "ok"}]), "end_turn", 5, 1),
    ])
    .await;
    let llm = provider(&fake);
    let req = ticket_question(MODEL);

    let e = llm.complete(&req).await.unwrap_err();
    match &e {
        LlmError::Overloaded {
            retry_after,
            message,
        } => {
            assert_eq!(*retry_after, Some(Duration::from_secs(3)));
            assert!(message.contains("overloaded_error"), "{message}");
            // The request id is in the error body when no header carries it.
            assert!(message.contains("(request id req_02)"), "{message}");
        }
        other => panic!("expected Overloaded, got {other:?}"),
    }
    assert!(e.retryable());

    let c = complete_with_retries(&llm, &req, &RetryPolicy::default())
        .await
        .unwrap();
    assert_eq!(c.message.text.as_deref(), Some("ok"));
    let seen = fake.received();
    assert_eq!(seen.len(), 3);
    let waited = seen[2].at - seen[1].at;
    assert!(
        waited >= Duration::from_secs(3) && waited < Duration::from_millis(3100),
        "{waited:?}"
    );
}

#[tokio::test]
async fn a_rate_limit_without_retry_after_uses_the_exhausted_limits_reset() {
    let reset = (chrono::Utc::now() + chrono::Duration::seconds(20))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let fake = FakeLlm::start(vec![
        error(
            429,
            "rate_limit_error",
            "Number of request tokens has exceeded your per-minute rate limit",
        )
        .header("anthropic-ratelimit-tokens-remaining", "0")
        .header("anthropic-ratelimit-tokens-reset", reset)
        .header("anthropic-ratelimit-requests-remaining", "49"),
    ])
    .await;
    let e = provider(&fake)
        .complete(&ticket_question(MODEL))
        .await
        .unwrap_err();
    let LlmError::RateLimited { retry_after, .. } = e else {
        panic!("expected RateLimited, got {e:?}");
    };
    let after = retry_after.expect("the tokens reset stands in for retry-after");
    assert!(
        after > Duration::from_secs(15) && after <= Duration::from_secs(20),
        "{after:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_billing_error_is_exhausted_quota_and_not_retried() {
    let fake = FakeLlm::start(vec![
        error(
            400,
            "billing_error",
            "Your credit balance is too low to access the Anthropic API.",
        ),
        message(json!([]), "end_turn", 0, 0),
    ])
    .await;
    let e = complete_with_retries(
        &provider(&fake),
        &ticket_question(MODEL),
        &RetryPolicy::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, LlmError::QuotaExhausted(_)), "{e:?}");
    assert!(e.to_string().contains("credit balance"), "{e}");
    assert_eq!(fake.received().len(), 1);
}

#[tokio::test]
async fn stop_reasons_map_to_finish() {
    let cases = [
        ("end_turn", Finish::Stop),
        ("stop_sequence", Finish::Stop),
        ("tool_use", Finish::ToolCalls),
        ("max_tokens", Finish::Length),
        ("model_context_window_exceeded", Finish::Length),
        ("refusal", Finish::Other("refusal".into())),
        ("pause_turn", Finish::Other("pause_turn".into())),
        ("something_new", Finish::Other("something_new".into())),
    ];
    let fake = FakeLlm::start(
        cases
            .iter()
            .map(|(reason, _)| message(json!([{"type": "text", "text": "t"}]), reason, 1, 2))
            .collect(),
    )
    .await;
    let llm = provider(&fake);
    for (reason, finish) in cases {
        let c = llm.complete(&ticket_question(MODEL)).await.unwrap();
        assert_eq!(c.finish, finish, "{reason}");
        assert_eq!((c.usage.input_tokens, c.usage.output_tokens), (1, 2));
    }
}
