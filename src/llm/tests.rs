//! The retry loop and the neutral model, against a scripted in-process provider and a paused
//! clock: which errors are retried, how long each wait is, and that the budget is respected.

use super::*;
use std::collections::VecDeque;
use std::sync::Mutex;
use tokio::time::Instant;

/// Replies from a script, one per call, and records when each call came.
struct Scripted {
    replies: Mutex<VecDeque<Result<Completion, LlmError>>>,
    calls: Mutex<Vec<Instant>>,
}

impl Scripted {
    fn new(replies: Vec<Result<Completion, LlmError>>) -> Self {
        Self {
            replies: Mutex::new(replies.into()),
            calls: Mutex::new(Vec::new()),
        }
    }

    /// Gaps between consecutive calls.
    fn waits(&self) -> Vec<Duration> {
        let calls = self.calls.lock().unwrap();
        calls.windows(2).map(|w| w[1] - w[0]).collect()
    }
}

#[async_trait]
impl LlmProvider for Scripted {
    async fn complete(&self, _: &CompletionRequest) -> Result<Completion, LlmError> {
        self.calls.lock().unwrap().push(Instant::now());
        self.replies
            .lock()
            .unwrap()
            .pop_front()
            .expect("the provider was called more often than scripted")
    }
}

fn done() -> Result<Completion, LlmError> {
    Ok(Completion {
        message: AssistantMessage {
            text: Some("done".into()),
            tool_calls: vec![],
        },
        finish: Finish::Stop,
        usage: Usage::default(),
    })
}

fn request() -> CompletionRequest {
    CompletionRequest {
        model: "m".into(),
        system: None,
        messages: vec![Message::user("hi")],
        tools: vec![],
        max_tokens: 16,
    }
}

fn rate_limited(after: Option<u64>) -> Result<Completion, LlmError> {
    Err(LlmError::RateLimited {
        retry_after: after.map(Duration::from_secs),
        message: "slow down".into(),
    })
}

#[tokio::test(start_paused = true)]
async fn a_hint_is_waited_exactly_and_a_long_one_is_capped() {
    let p = Scripted::new(vec![rate_limited(Some(3)), rate_limited(Some(600)), done()]);
    let c = complete_with_retries(&p, &request(), &RetryPolicy::default()).await;
    assert_eq!(c.unwrap().message.text.as_deref(), Some("done"));
    assert_eq!(p.waits(), [Duration::from_secs(3), Duration::from_secs(60)]);
}

#[tokio::test(start_paused = true)]
async fn without_a_hint_the_backoff_doubles_with_jitter_up_to_8s() {
    let overloaded = || {
        Err(LlmError::Overloaded {
            retry_after: None,
            message: "529".into(),
        })
    };
    let mut script: Vec<_> = (0..6).map(|_| overloaded()).collect();
    script.push(done());
    let p = Scripted::new(script);
    let policy = RetryPolicy {
        max_retries: 6,
        ..RetryPolicy::default()
    };
    complete_with_retries(&p, &request(), &policy)
        .await
        .unwrap();
    let waits = p.waits();
    let nominal = [0.5, 1.0, 2.0, 4.0, 8.0, 8.0];
    assert_eq!(waits.len(), nominal.len());
    for (wait, nominal) in waits.iter().zip(nominal) {
        let wait = wait.as_secs_f64();
        // Jitter takes off at most a quarter; timer resolution adds at most a millisecond.
        assert!(
            wait >= nominal * 0.75 && wait <= nominal + 0.002,
            "{wait} vs {nominal}: {waits:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn the_retry_budget_is_respected_and_the_last_error_returned() {
    let script = (0..3)
        .map(|_| Err(LlmError::Transport("reset".into())))
        .collect();
    let p = Scripted::new(script);
    let policy = RetryPolicy {
        max_retries: 2,
        ..RetryPolicy::default()
    };
    let e = complete_with_retries(&p, &request(), &policy)
        .await
        .unwrap_err();
    assert_eq!(e, LlmError::Transport("reset".into()));
    assert_eq!(p.calls.lock().unwrap().len(), 3);
}

#[tokio::test(start_paused = true)]
async fn quota_auth_bad_request_and_invalid_responses_are_never_retried() {
    for e in [
        LlmError::QuotaExhausted("insufficient_quota".into()),
        LlmError::Auth("401".into()),
        LlmError::BadRequest("unknown model".into()),
        LlmError::InvalidResponse("no choices".into()),
        LlmError::Http {
            status: 429,
            message: "x-should-retry: false".into(),
            retryable: false,
            retry_after: Some(Duration::from_secs(1)),
        },
    ] {
        let p = Scripted::new(vec![Err(e.clone()), done()]);
        let got = complete_with_retries(&p, &request(), &RetryPolicy::default()).await;
        assert_eq!(got.unwrap_err(), e);
        assert_eq!(p.calls.lock().unwrap().len(), 1, "{e:?}");
    }
}

#[test]
fn delay_ignores_a_zero_hint_and_never_overflows() {
    let policy = RetryPolicy::default();
    let d = policy.delay(0, Some(Duration::ZERO));
    assert!(
        d <= Duration::from_millis(500) && d >= Duration::from_millis(375),
        "{d:?}"
    );
    assert!(policy.delay(u32::MAX, None) <= Duration::from_secs(8));
    assert_eq!(
        policy.delay(0, Some(Duration::from_secs(3600))),
        Duration::from_secs(60)
    );
}

#[test]
fn tool_arguments_keep_the_raw_text() {
    let ok = ToolArguments::parse(r#"{"ticket_id": 4711}"#);
    assert_eq!(ok.value(), Some(&serde_json::json!({"ticket_id": 4711})));
    assert_eq!(ok.raw(), r#"{"ticket_id": 4711}"#);
    let bad = ToolArguments::parse(r#"{"ticket_id": 47"#);
    assert_eq!(bad.value(), None);
    assert_eq!(bad.raw(), r#"{"ticket_id": 47"#);
    match bad {
        ToolArguments::Invalid { error, .. } => assert!(error.contains("EOF"), "{error}"),
        other => panic!("{other:?}"),
    }
}
