//! The LLM provider's circuit breaker under real jobs: the fake model answers 503 for an hour of
//! manual time and then recovers. The backlog waits instead of spending its attempts, the model
//! hears one probe per cool-down rather than one request per job, and every job is done once the
//! provider is back. Requests the provider refuses as the request's own fault do not open it.

use crate::store_contract::in_schema;
use crate::support::fake_llm::{FakeLlm, Reply, openai_text};
use crate::support::*;
use hookwise::kernel::clock::{Clock, ManualClock};
use hookwise::store::{BreakerRow, BreakerState, JobFilter, JobRecord, JobState};
use reqwest::StatusCode;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);
const ACCOUNTS: usize = 6;
const JOBS: usize = 12;

/// Four workers, three consecutive failures open the breaker for a minute (doubling up to ten),
/// one request per model call (no retries within the run), two attempts per job.
async fn rig(llm: &FakeLlm, clock: &ManualClock) -> TestApp {
    TestApp::spawn_with(Options {
        clock: Some(clock.clone()),
        handlers: vec![handler_toml("work", "multi.work", None, "max_attempts = 2")],
        extra_config: format!(
            "[scheduler]\nworkers = 4\npoll_interval = \"10ms\"\nretry_base = \"1s\"\nretry_max = \"1s\"\n\n\
             [llm]\nprovider = \"openai\"\nbase_url = \"{}/v1\"\napi_key = \"test-key\"\nmodel = \"test-model\"\n\
             timeout = \"5s\"\nmax_retries = 0\n\n\
             [llm.breaker]\nfailures = 3\ncool_down = \"60s\"\nmax_cool_down = \"10m\"\n",
            llm.url
        ),
        ..Options::default()
    })
    .await
}

/// The breaker's key: the provider's kind and base URL.
fn key(llm: &FakeLlm) -> String {
    format!("openai {}/v1", llm.url)
}

async fn breaker(app: &TestApp, llm: &FakeLlm) -> BreakerRow {
    app.store
        .llm_breaker(&key(llm))
        .await
        .unwrap()
        .unwrap_or_default()
}

async fn jobs(app: &TestApp) -> Vec<JobRecord> {
    app.store
        .list_jobs(&JobFilter {
            limit: 1000,
            ..JobFilter::default()
        })
        .await
        .unwrap()
}

/// One `multi.work` event per (account, subject).
async fn deliver(app: &TestApp, n: usize) {
    for i in 0..n {
        let body =
            json!({"account": format!("acct-{}", i % ACCOUNTS), "subject": format!("s-{i}")});
        let (status, ack) = app
            .send("multi", body.to_string().as_bytes(), &format!("msg-{i}"))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{ack}");
    }
}

fn now_ms(clock: &ManualClock) -> i64 {
    clock.now().timestamp_millis()
}

fn unavailable() -> Reply {
    Reply::status(
        503,
        json!({"error": {"message": "upstream connect error", "type": "server_error"}}),
    )
}

/// The openings `/metrics` counted for the openai provider.
async fn openings(app: &TestApp) -> String {
    let text = app
        .client
        .get(format!("{}/metrics", app.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with("hookwise_llm_breaker_"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn an_hour_long_outage_leaves_the_backlog_waiting_and_every_job_done_after_it() {
    let clock = ManualClock::starting_at(chrono::Utc::now());
    let llm = FakeLlm::start((0..JOBS).map(|_| openai_text("Done.")).collect()).await;
    llm.outage(unavailable());
    let app = rig(&llm, &clock).await;
    deliver(&app, JOBS).await;

    // Three 503s open the breaker; the runs in flight then end waiting, nothing runs.
    eventually("the breaker to open", WAIT, || async {
        let open = matches!(
            breaker(&app, &llm).await.state(now_ms(&clock)),
            BreakerState::Open { .. }
        );
        open && jobs(&app)
            .await
            .iter()
            .all(|j| j.state == JobState::Pending)
    })
    .await;
    // Nothing runs now, so nothing more is on its way to the provider.
    let at_open = llm.received().len();
    assert!(
        (3..=3 + 3).contains(&at_open),
        "the three failures that opened it, and at most one request from each of the three \
         other workers' runs already under way: {at_open}"
    );

    // An hour of outage: each time the cool-down ends, one probe, which fails and opens the
    // breaker again for longer.
    let outage_start = now_ms(&clock);
    let mut probes = 0;
    while now_ms(&clock) - outage_start < 3_600_000 {
        let until = breaker(&app, &llm).await.open_until_ms.expect("open");
        clock.advance(Duration::from_millis((until - now_ms(&clock)) as u64));
        eventually(
            "the probe to fail and the breaker to open again",
            WAIT,
            || async {
                let reopened = breaker(&app, &llm).await.open_until_ms > Some(until);
                reopened
                    && jobs(&app)
                        .await
                        .iter()
                        .all(|j| j.state == JobState::Pending)
            },
        )
        .await;
        probes += 1;
        let all = jobs(&app).await;
        assert!(all.iter().all(|j| j.attempts <= 1), "{all:#?}");
    }
    // 60 s, then 2, 4, 8 and 10 minutes (the cap) between probes.
    assert!((8..=10).contains(&probes), "{probes} probes in an hour");
    assert_eq!(
        llm.received().len(),
        at_open + probes,
        "during the outage the provider saw one request per probe, not one per job"
    );
    let row = breaker(&app, &llm).await;
    assert_eq!(row.trips as usize, 1 + probes);
    let until = row.open_until_ms.unwrap();
    assert!(until - now_ms(&clock) <= 600_000, "the cool-down is capped");

    // Every job still waits, none dead; those that met the open breaker say why, and when.
    let waiting = jobs(&app).await;
    assert_eq!(waiting.len(), JOBS);
    assert!(waiting.iter().all(|j| j.state == JobState::Pending));
    let deferred: Vec<_> = waiting
        .iter()
        .filter_map(|j| j.last_error.as_deref())
        .filter(|e| e.contains("next probe at"))
        .collect();
    assert!(deferred.len() >= probes.min(JOBS), "{waiting:#?}");
    for reason in &deferred {
        assert!(
            reason.contains(&format!("provider openai at {}/v1 unavailable", llm.url))
                && reason.contains("consecutive failures")
                && reason.contains("503"),
            "{reason}"
        );
    }
    let metrics = openings(&app).await;
    assert!(
        metrics.contains(&format!(
            "hookwise_llm_breaker_openings_total{{provider=\"openai\"}} {}",
            1 + probes
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains("hookwise_llm_breaker_state{provider=\"openai\"} 1"),
        "{metrics}"
    );

    // The provider is back: the next probe succeeds, closes the breaker, and the backlog runs.
    llm.recover();
    clock.advance(Duration::from_millis((until - now_ms(&clock)) as u64));
    eventually("every job done", WAIT, || async {
        jobs(&app).await.iter().all(|j| j.state == JobState::Done)
    })
    .await;
    let done = jobs(&app).await;
    assert!(
        done.iter().all(|j| j.attempts <= 2),
        "an hour of outage spent no attempt beyond the failures before the breaker opened: {done:#?}"
    );
    assert_eq!(llm.unused(), 0, "one successful request per job");
    assert_eq!(breaker(&app, &llm).await, BreakerRow::default());
    assert!(
        openings(&app)
            .await
            .contains("hookwise_llm_breaker_state{provider=\"openai\"} 0")
    );
    app.stop().await;
}

#[tokio::test]
async fn requests_the_provider_refuses_or_rate_limits_do_not_open_the_breaker() {
    let clock = ManualClock::starting_at(chrono::Utc::now());
    let refusal = |status: u16, message: &str| {
        Reply::status(
            status,
            json!({"error": {"message": message, "type": "invalid_request_error"}}),
        )
    };
    let llm = FakeLlm::start(vec![
        refusal(400, "Invalid schema for function"),
        refusal(404, "The model `test-model` does not exist"),
        refusal(422, "Unprocessable"),
        refusal(429, "Rate limit reached for requests").header("retry-after", "1"),
    ])
    .await;
    let app = rig(&llm, &clock).await;
    deliver(&app, 4).await;
    eventually("four runs to end", WAIT, || async {
        let all = jobs(&app).await;
        all.len() == 4
            && all.iter().all(|j| match j.state {
                JobState::Dead => true,
                // The 429 is retried later, like before.
                JobState::Pending => j.attempts == 1 && j.last_error.is_some(),
                _ => false,
            })
    })
    .await;
    assert_eq!(llm.received().len(), 4);
    assert_eq!(
        app.store.llm_breaker(&key(&llm)).await.unwrap(),
        None,
        "none of them counted as the provider failing"
    );

    // The next job is claimed and runs at once: the breaker is closed.
    llm.push(openai_text("Done."));
    let body = json!({"account": "acct-9", "subject": "s-9"});
    app.send("multi", body.to_string().as_bytes(), "msg-9")
        .await;
    eventually("the new job done", WAIT, || async {
        jobs(&app)
            .await
            .iter()
            .any(|j| j.account == "acct-9" && j.state == JobState::Done)
    })
    .await;
    app.stop().await;
}

/// One replica of two sharing a PostgreSQL schema.
struct Replica {
    url: String,
    stop: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

async fn replica(config: &hookwise::config::Config, clock: &ManualClock) -> Replica {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = hookwise::Server::prepare_with_clock(config.clone(), Arc::new(clock.clone()))
        .await
        .expect("replica prepares");
    let stop = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(server.run(listener, stop.clone()));
    Replica { url, stop, task }
}

/// Two replicas with one configuration share the breaker: both stop claiming when it opens, and
/// when the cool-down ends only one of them sends the probe, so the provider hears one request
/// per cool-down, not one per replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_the_breaker_and_send_one_probe_per_cool_down() {
    in_schema(
        concat!(
            module_path!(),
            "::two_replicas_share_the_breaker_and_send_one_probe_per_cool_down"
        ),
        |schema| async move {
            let clock = ManualClock::starting_at(chrono::Utc::now());
            let llm = FakeLlm::start((0..JOBS).map(|_| openai_text("Done.")).collect()).await;
            llm.outage(unavailable());
            let dir = tempfile::tempdir().unwrap();
            let handlers = dir.path().join("handlers");
            std::fs::create_dir_all(&handlers).unwrap();
            let (name, text) = handler_toml("work", "multi.work", None, "max_attempts = 2");
            std::fs::write(handlers.join(name), text).unwrap();
            let path = dir.path().join("hookwise.toml");
            let extra = format!(
                "[scheduler]\nworkers = 2\npoll_interval = \"10ms\"\nretry_base = \"1s\"\nretry_max = \"1s\"\n\n\
                 [llm]\nprovider = \"openai\"\nbase_url = \"{}/v1\"\napi_key = \"test-key\"\nmodel = \"test-model\"\n\
                 timeout = \"5s\"\nmax_retries = 0\n\n\
                 [llm.breaker]\nfailures = 3\ncool_down = \"60s\"\n",
                llm.url
            );
            std::fs::write(&path, config_text(&schema.url(""), &handlers, &extra)).unwrap();
            let config =
                hookwise::config::Config::load_with(Some(&path), &|_| None).expect("valid config");
            let replicas = [replica(&config, &clock).await, replica(&config, &clock).await];
            let store = schema.open_store().await;
            let jobs = || async {
                store
                    .list_jobs(&JobFilter {
                        limit: 1000,
                        ..JobFilter::default()
                    })
                    .await
                    .unwrap()
            };
            let row = || async {
                store
                    .llm_breaker(&key(&llm))
                    .await
                    .unwrap()
                    .unwrap_or_default()
            };
            let client = reqwest::Client::new();
            for i in 0..JOBS {
                let body = json!({"account": format!("acct-{}", i % ACCOUNTS), "subject": format!("s-{i}")});
                let status = client
                    .post(format!("{}/webhooks/multi", replicas[i % 2].url))
                    .header("content-type", "application/json")
                    .header("x-hookwise-token", "multi-token")
                    .body(body.to_string())
                    .send()
                    .await
                    .unwrap()
                    .status();
                assert_eq!(status, StatusCode::ACCEPTED);
            }

            let idle = || async { jobs().await.iter().all(|j| j.state == JobState::Pending) };
            eventually("the breaker to open", WAIT, || async {
                matches!(row().await.state(now_ms(&clock)), BreakerState::Open { .. })
                    && idle().await
            })
            .await;
            let at_open = llm.received().len();
            for _ in 0..3 {
                let until = row().await.open_until_ms.expect("open");
                clock.advance(Duration::from_millis((until - now_ms(&clock)) as u64));
                eventually("the probe to fail", WAIT, || async {
                    row().await.open_until_ms > Some(until) && idle().await
                })
                .await;
            }
            assert_eq!(
                llm.received().len(),
                at_open + 3,
                "one probe per cool-down between the two replicas"
            );

            llm.recover();
            let until = row().await.open_until_ms.unwrap();
            clock.advance(Duration::from_millis((until - now_ms(&clock)) as u64));
            eventually("every job done", WAIT, || async {
                jobs().await.iter().all(|j| j.state == JobState::Done)
            })
            .await;
            assert!(jobs().await.iter().all(|j| j.attempts <= 2));
            for replica in replicas {
                replica.stop.cancel();
                replica.task.await.unwrap().unwrap();
            }
        },
    )
    .await;
}
