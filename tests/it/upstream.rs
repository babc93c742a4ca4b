//! The upstream client against a rate-limited fake upstream on loopback: pacing within the
//! configured budget, pauses learned from headers (reset as delta seconds and as a Unix time),
//! 429s that pause the account and retry the same call, resets stated in whole seconds rounded
//! either way, retries by kind, and the journal that keeps a write from being sent twice.

use crate::support::fake_upstream::{FakeUpstream, Limits, ResetStyle, Rounding};
use hookwise::app::App;
use hookwise::config::Config;
use hookwise::connectors::{happyfox, planhat};
use hookwise::kernel::event::AccountId;
use hookwise::store::{JobId, SharedStore};
use hookwise::tools::{ToolContext, ToolError};
use hookwise::upstream::{Origin, Request, Upstream};
use reqwest::Method;
use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const TOKEN: &str = "planhat-api-token";

fn limits(calls: u32, window_ms: u64, reset: ResetStyle) -> Limits {
    Limits {
        calls,
        window: Duration::from_millis(window_ms),
        reset,
        rounding: Rounding::Up,
        penalty: Duration::ZERO,
        retry_after: false,
    }
}

struct Rig {
    upstream: Upstream,
    store: SharedStore,
    _dir: tempfile::TempDir,
}

/// A Planhat-kind account named `acme` pointed at `fake`, with extra account keys.
async fn rig(fake: &FakeUpstream, extra: &str) -> Rig {
    rig_of("planhat", fake, &format!("token = \"{TOKEN}\"\n{extra}")).await
}

/// A HappyFox-kind account (its 10-minute penalty when a 429 states no wait) named `acme`.
async fn happyfox_rig(fake: &FakeUpstream, extra: &str) -> Rig {
    let keys = format!("api_key = \"hf-key\"\nauth_code = \"{TOKEN}\"\nbot_staff_id = 7\n{extra}");
    rig_of("happyfox", fake, &keys).await
}

async fn rig_of(connector: &str, fake: &FakeUpstream, keys: &str) -> Rig {
    hookwise::init_tls();
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "store = \"sqlite://{}\"\n[accounts.acme]\nconnector = \"{connector}\"\nbase_url = \"{}\"\n{keys}",
        dir.path().join("hookwise.db").display(),
        fake.url
    );
    let config = Config::parse(Path::new("test.toml"), &text, &|_| None).unwrap();
    let app = App::assemble(config).await.unwrap();
    let (upstream, store) = (app.upstream, app.store);
    Rig {
        upstream,
        store,
        _dir: dir,
    }
}

fn ctx(key: &str) -> ToolContext {
    ToolContext {
        account: AccountId::new("acme"),
        job: JobId(1),
        subject: "c1".into(),
        idempotency_key: key.into(),
    }
}

fn note(text: &str) -> Request {
    Request::write(Method::POST, "/tasks", json!({"title": text}))
}

#[tokio::test]
async fn calls_are_paced_within_the_budget_and_never_meet_a_429() {
    let fake = FakeUpstream::spawn(limits(10, 1000, ResetStyle::Delta), TOKEN).await;
    let rig = rig(&fake, "rate_limits = { api = \"10/1s\" }").await;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..3 {
        let upstream = rig.upstream.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..8 {
                let r = upstream
                    .send(
                        &ctx(&format!("r{worker}-{i}")),
                        planhat::KIND,
                        Request::get("/companies"),
                    )
                    .await
                    .unwrap();
                assert_eq!(r.status, 200);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(fake.count(200), 24);
    assert_eq!(fake.count(429), 0, "paced calls never exceed the window");
    // 24 calls at 10 per second: at least 2.3 s of spacing for the 23 gaps.
    assert!(
        started.elapsed() >= Duration::from_millis(2300),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_429_pauses_the_account_and_the_same_call_is_sent_again_after_retry_after() {
    let fake = FakeUpstream::spawn(limits(1000, 60_000, ResetStyle::None), TOKEN).await;
    fake.script(
        429,
        vec![("retry-after", "1".into())],
        r#"{"error":"slow down"}"#,
    );
    let rig = rig(&fake, "").await;
    let started = Instant::now();
    let r = rig
        .upstream
        .send(&ctx("k"), planhat::KIND, Request::get("/companies/c1"))
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let seen = fake.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(
        seen[0].uri, seen[1].uri,
        "the same call, not the run, is retried"
    );
    // `Retry-After: 1` is a whole second: the wait runs to its end, plus a margin and jitter.
    let gap = seen[1].at - seen[0].at;
    assert!(
        gap >= Duration::from_millis(2000) && gap < Duration::from_millis(3500),
        "{gap:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(4));
    let (until, reason) = rig.store.account_pause("acme").await.unwrap().unwrap();
    assert!(until > 0 && reason.contains("429"), "{reason}");
}

#[tokio::test]
async fn an_exhausted_budget_stated_as_a_unix_time_holds_the_next_call() {
    let fake = FakeUpstream::spawn(limits(2, 2000, ResetStyle::Unix), TOKEN).await;
    let rig = rig(&fake, "").await;
    for i in 0..3 {
        rig.upstream
            .send(&ctx(&format!("{i}")), planhat::KIND, Request::get("/nps"))
            .await
            .unwrap();
    }
    let seen = fake.seen();
    assert_eq!(
        fake.count(429),
        0,
        "remaining=0 paused the account before a 429"
    );
    assert_eq!(seen.len(), 3);
    // The third call waited for the window's reset (the Unix time, rounded up to the second).
    let gap = seen[2].at - seen[0].at;
    assert!(gap >= Duration::from_millis(1900), "{gap:?}");
}

#[tokio::test]
async fn a_pause_longer_than_max_wait_defers_the_job_and_leaves_no_write_in_the_journal() {
    let fake = FakeUpstream::spawn(limits(1000, 60_000, ResetStyle::None), TOKEN).await;
    fake.script(429, vec![("retry-after", "30".into())], "{}");
    let rig = rig(&fake, "max_wait = \"1s\"").await;
    let before = chrono::Utc::now().timestamp_millis();
    let err = rig
        .upstream
        .send(
            &ctx("job-1/step-0/call-0"),
            planhat::KIND,
            note("call back"),
        )
        .await
        .unwrap_err();
    let ToolError::RateLimited { until_ms, reason } = err else {
        panic!("expected RateLimited, got {err:?}");
    };
    assert!(until_ms >= before + 29_000, "{until_ms} vs {before}");
    assert!(reason.contains("acme"), "{reason}");
    assert_eq!(fake.seen().len(), 1);
    // A 429 was not applied: a later attempt may send the write.
    assert!(rig.store.list_actions(JobId(1)).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_journaled_write_is_answered_from_the_journal_on_a_rerun() {
    let fake = FakeUpstream::spawn(limits(1000, 60_000, ResetStyle::Delta), TOKEN).await;
    let rig = rig(&fake, "").await;
    let first = rig
        .upstream
        .send(
            &ctx("job-1/step-2/call-0"),
            planhat::KIND,
            note("call back"),
        )
        .await
        .unwrap();
    assert_eq!(first.origin, Origin::Sent);
    let again = rig
        .upstream
        .send(
            &ctx("job-1/step-2/call-0"),
            planhat::KIND,
            note("call back"),
        )
        .await
        .unwrap();
    assert_eq!(again.origin, Origin::Journaled);
    assert_eq!(again.body, first.body, "the recorded answer, not a new one");
    assert_eq!(fake.seen().len(), 1, "the upstream received the write once");
    let actions = rig.store.list_actions(JobId(1)).await.unwrap();
    assert_eq!(actions.len(), 1);
    assert_eq!(actions[0].request, "POST /tasks {\"title\":\"call back\"}");
    // Another key is another write.
    rig.upstream
        .send(
            &ctx("job-1/step-3/call-0"),
            planhat::KIND,
            note("call back"),
        )
        .await
        .unwrap();
    assert_eq!(fake.seen().len(), 2);
}

#[tokio::test]
async fn a_write_whose_answer_never_came_is_in_doubt_and_never_sent_again() {
    let fake = FakeUpstream::spawn(limits(1000, 60_000, ResetStyle::Delta), TOKEN).await;
    fake.set_delay(Duration::from_secs(2));
    let rig = rig(&fake, "timeout = \"300ms\"").await;
    let err = rig
        .upstream
        .send(&ctx("k1"), planhat::KIND, note("once"))
        .await
        .unwrap_err();
    assert!(matches!(err, ToolError::Unavailable(_)), "{err:?}");
    fake.set_delay(Duration::ZERO);
    let err = rig
        .upstream
        .send(&ctx("k1"), planhat::KIND, note("once"))
        .await
        .unwrap_err();
    let ToolError::Rejected(message) = err else {
        panic!("expected Rejected, got {err:?}");
    };
    assert!(message.contains("never sent twice"), "{message}");
    assert_eq!(fake.seen().len(), 1);
}

#[tokio::test]
async fn reads_are_retried_after_a_5xx_but_writes_are_not() {
    let fake = FakeUpstream::spawn(limits(1000, 60_000, ResetStyle::Delta), TOKEN).await;
    fake.script(503, vec![], "upstream down");
    let rig = rig(&fake, "").await;
    let r = rig
        .upstream
        .send(&ctx("r"), planhat::KIND, Request::get("/users"))
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(fake.seen().len(), 2);

    fake.script(500, vec![], "boom");
    let err = rig
        .upstream
        .send(&ctx("w"), planhat::KIND, note("x"))
        .await
        .unwrap_err();
    let ToolError::Unavailable(message) = err else {
        panic!("expected Unavailable, got {err:?}");
    };
    assert!(
        message.contains("500") && message.contains("not sent again"),
        "{message}"
    );
    assert_eq!(fake.seen().len(), 3, "the write went out once");
}

#[tokio::test]
async fn refusals_are_told_apart_from_outages() {
    let fake = FakeUpstream::spawn(limits(1000, 60_000, ResetStyle::Delta), "another-token").await;
    let rig = rig(&fake, "").await;
    let err = rig
        .upstream
        .send(&ctx("k"), planhat::KIND, Request::get("/companies"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ToolError::Permanent(ref m) if m.contains("401")),
        "{err:?}"
    );
    assert_eq!(
        fake.seen()[0].authorization.as_deref(),
        Some(&*format!("Bearer {TOKEN}"))
    );

    // A tool of another connector is refused before anything is sent.
    let err = rig
        .upstream
        .send(&ctx("k"), happyfox::KIND, Request::get("/tickets/"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ToolError::Permanent(ref m) if m.contains("planhat account")),
        "{err:?}"
    );
    assert_eq!(fake.seen().len(), 1);
}

/// The bug of issue 16: an upstream whose windows end mid-second stated the end as a whole
/// second rounded down, and calls resumed up to a second early, into a 429 and the upstream's
/// penalty. Against every style and rounding, paced calls over three windows draw no 429.
#[tokio::test]
async fn whole_second_resets_rounded_either_way_never_resume_into_a_429() {
    let mut runs = Vec::new();
    for reset in [ResetStyle::Unix, ResetStyle::Delta] {
        for rounding in [Rounding::Down, Rounding::Up] {
            runs.push(async move {
                let fake = FakeUpstream::spawn(
                    Limits {
                        calls: 3,
                        window: Duration::from_secs(2),
                        reset,
                        rounding,
                        // Any 429 would hold every call far past `max_wait`.
                        penalty: Duration::from_secs(600),
                        retry_after: true,
                    },
                    TOKEN,
                )
                .await;
                fake.end_windows_at(Duration::from_millis(600));
                // A configured budget far above the upstream's: only its headers pace the calls.
                let rig = happyfox_rig(
                    &fake,
                    "rate_limits = { get = \"100/1s\" }\nmax_wait = \"10s\"",
                )
                .await;
                let started = Instant::now();
                for i in 0..7 {
                    let r = rig
                        .upstream
                        .send(
                            &ctx(&format!("r{i}")),
                            happyfox::KIND,
                            Request::get("/tickets/").bucket("get"),
                        )
                        .await
                        .unwrap_or_else(|e| {
                            panic!("{reset:?} reset rounded {rounding:?}, call {i}: {e:?}")
                        });
                    assert_eq!(r.status, 200);
                }
                assert_eq!(
                    fake.count(429),
                    0,
                    "{reset:?} reset rounded {rounding:?}: a call resumed before its window ended"
                );
                // Seven calls at three per window span three windows, not a penalty.
                assert!(
                    started.elapsed() < Duration::from_secs(9),
                    "{:?}",
                    started.elapsed()
                );
            });
        }
    }
    futures::future::join_all(runs).await;
}

/// The second half of the bug: a 429 whose headers say `Remaining: 10` beside a reset (floored,
/// mid-second) fell back to the 10-minute penalty. The reset is the server's word on when calls
/// are welcome again: the same call goes out once its second has ended, not ten minutes later.
#[tokio::test]
async fn a_429_with_budget_left_waits_for_its_reset_not_the_penalty() {
    let fake = FakeUpstream::spawn(limits(1000, 60_000, ResetStyle::None), TOKEN).await;
    let rig = happyfox_rig(&fake, "max_wait = \"30s\"").await;
    let (t0, unix0) = (Instant::now(), SystemTime::now());
    let reset = (unix0 + Duration::from_millis(1600))
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    fake.script(
        429,
        vec![
            ("x-ratelimit-limit", "500".into()),
            ("x-ratelimit-remaining", "10".into()),
            ("x-ratelimit-reset", reset.to_string()),
        ],
        r#"{"error":"rate limit exceeded"}"#,
    );
    let r = rig
        .upstream
        .send(
            &ctx("k"),
            happyfox::KIND,
            Request::get("/ticket/1/").bucket("get"),
        )
        .await
        .expect("the call is sent again after the reset, not deferred for the penalty");
    assert_eq!(r.status, 200);
    let seen = fake.seen();
    assert_eq!(seen.len(), 2);
    let retried_at = unix0 + (seen[1].at - t0);
    assert!(
        retried_at >= UNIX_EPOCH + Duration::from_secs(reset + 1),
        "the retry left before the stated second ended: {retried_at:?} vs {reset}"
    );
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    let (_, reason) = rig.store.account_pause("acme").await.unwrap().unwrap();
    assert!(reason.contains("429"), "{reason}");
}
