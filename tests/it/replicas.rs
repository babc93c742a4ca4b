//! Several replicas behind a real nginx (the shipped `deploy/nginx.conf`) sharing one PostgreSQL:
//! acked means stored, exactly once, and a burst on one subject is one job, while one replica is
//! SIGKILLed midway.
//!
//! Needs `nginx` (Debian package) and `HOOKWISE_TEST_POSTGRES_URL`; without either it says it was
//! skipped. `.ci/run` provides both. Jobs run through the real agent against a fake LLM server,
//! which is also the upstream that watches per-account concurrency: it learns each run's account
//! and job from the context it is sent, and holds every answer for a while so overlaps would show.

use crate::store_contract::in_schema;
use crate::support::process::*;
use crate::support::workload::{Observed, observe};
use crate::support::*;
use serde_json::json;
use std::collections::HashSet;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const ACCOUNTS: usize = 50;
const BURST: usize = 12;
const SINGLES: usize = 30;
const DUPLICATE_EVERY: usize = 7;

/// One event to deliver: its body (the event id is the body's hash).
struct Delivery {
    body: String,
}

/// Bursts first, each account's burst together (well inside the debounce period), then the
/// singles shuffled across accounts so every replica sees every account.
fn deliveries() -> Vec<Delivery> {
    let body = |a: usize, subject: &str, n: usize| {
        json!({"account": format!("acct-{a}"), "subject": subject, "n": n}).to_string()
    };
    let mut all = Vec::new();
    for a in 0..ACCOUNTS {
        for n in 0..BURST {
            all.push(Delivery {
                body: body(a, "burst", n),
            });
        }
    }
    let mut singles = Vec::new();
    for a in 0..ACCOUNTS {
        for n in 0..SINGLES {
            let subject = format!("single-{n}");
            singles.push(Delivery {
                body: body(a, &subject, n),
            });
        }
    }
    fastrand::seed(11);
    fastrand::shuffle(&mut singles);
    all.extend(singles);
    all
}

/// Delivers like a sender: retries a refused or failed delivery (5xx, connection error) a few
/// times. Returns whether the event was acknowledged, and whether as a duplicate.
async fn deliver(client: &reqwest::Client, url: &str, body: &str) -> Option<bool> {
    for _ in 0..6 {
        let sent = client
            .post(url)
            .header("content-type", "application/json")
            .header("x-hookwise-token", "multi-token")
            .body(body.to_string())
            .send()
            .await;
        if let Ok(response) = sent
            && response.status().is_success()
        {
            let ack: serde_json::Value = response.json().await.unwrap();
            return Some(ack["duplicate"] == true);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// How long the fake LLM holds each answer: runs overlap in time, so a serialization bug shows.
const HOLD: Duration = Duration::from_millis(150);

async fn fake_llm() -> (String, Arc<Mutex<Observed>>) {
    let observed = Arc::new(Mutex::new(Observed::default()));
    let state = observed.clone();
    let answer = move |axum::Json(body): axum::Json<serde_json::Value>| {
        let observed = state.clone();
        async move {
            // A request ends when its answer is sent or when its client goes away (a killed
            // replica's connection closes and this future is dropped mid-sleep).
            let _in_flight = observe(&observed, &body).0;
            tokio::time::sleep(HOLD).await;
            axum::Json(json!({
                "id": "chatcmpl-fake", "object": "chat.completion", "created": 1, "model": "fake",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "noted"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 1, "total_tokens": 11}
            }))
        }
    };
    let app = axum::Router::new().route("/v1/chat/completions", axum::routing::post(answer));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, observed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_behind_nginx_lose_nothing_and_never_overlap_an_account_while_one_is_killed()
{
    if !nginx_installed() {
        gate::skip(
            "replicas::three_replicas_behind_nginx",
            "nginx is not installed",
            NGINX_HOW,
        );
        return;
    }
    in_schema("replicas::three_replicas_behind_nginx", |schema| async move {
        hookwise::init_tls();
        let (llm_url, observed) = fake_llm().await;
        let dir = tempfile::tempdir().unwrap();
        let handlers = dir.path().join("handlers");
        std::fs::create_dir(&handlers).unwrap();
        std::fs::write(
            handlers.join("work.toml"),
            "name = \"work\"\non = [\"multi.work\"]\nmode = \"dry-run\"\n[debounce]\nperiod = \"2s\"\nmax_wait = \"20s\"\n\
             [agent]\nprompt = \"Summarize.\"\nmax_steps = 2\ndeadline = \"20s\"\n",
        )
        .unwrap();
        let extra = format!(
            "[scheduler]\nlease = \"2s\"\npoll_interval = \"50ms\"\n\n[llm]\nprovider = \"openai\"\nbase_url = \"{llm_url}\"\napi_key = \"k\"\nmodel = \"fake\"\n"
        );
        let config = dir.path().join("hookwise.toml");
        std::fs::write(&config, config_text(&schema.url(""), &handlers, &extra)).unwrap();
        // Create the schema's tables once, as an operator's `hookwise migrate` would.
        let migrate = Command::new(env!("CARGO_BIN_EXE_hookwise")).arg("--config").arg(&config).arg("migrate").output().unwrap();
        assert!(migrate.status.success(), "{}", String::from_utf8_lossy(&migrate.stderr));

        let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let mut replicas: Vec<Option<Proc>> = ports
            .iter()
            .enumerate()
            .map(|(i, p)| Some(spawn_hookwise(&config, *p, &dir.path().join(format!("replica-{i}.log")), "warn")))
            .collect();
        let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
        for p in &ports {
            wait_ready(&client, &format!("http://127.0.0.1:{p}/readyz")).await;
        }
        let lb_port = free_port();
        let _nginx = spawn_nginx(dir.path(), &shipped_nginx_conf(lb_port, &ports));
        let url = format!("http://127.0.0.1:{lb_port}/webhooks/multi");
        let start = Instant::now();
        while client.post(&url).send().await.is_err() {
            assert!(start.elapsed() < Duration::from_secs(10), "nginx did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        let all = deliveries();
        let total = all.len();
        let mut acked: HashSet<usize> = HashSet::new();
        let mut sent = 0;
        // Waves of 32 concurrent requests; every 7th event is delivered twice.
        for (wave, chunk) in all.chunks(32).enumerate() {
            let results = futures::future::join_all(
                chunk
                    .iter()
                    .enumerate()
                    .flat_map(|(i, d)| {
                        let copies = if (wave * 32 + i) % DUPLICATE_EVERY == 0 { 2 } else { 1 };
                        (0..copies).map(move |_| (wave * 32 + i, d))
                    })
                    .map(|(idx, d)| {
                        let (client, url) = (client.clone(), url.clone());
                        async move { (idx, deliver(&client, &url, &d.body).await) }
                    }),
            )
            .await;
            for (idx, result) in results {
                sent += 1;
                assert!(result.is_some(), "event {idx} was never acknowledged");
                acked.insert(idx);
            }
        }
        assert_eq!(acked.len(), total, "every event acknowledged");

        // Once runs are in flight, SIGKILL a replica that holds a lease at that moment.
        let mut conn = schema.connect().await;
        let start = Instant::now();
        let (victim, orphaned) = loop {
            let running: Vec<(i64, String)> =
                sqlx::query_as("SELECT id, lease_owner FROM jobs WHERE state = 'running'")
                    .fetch_all(&mut conn)
                    .await
                    .unwrap();
            let by_replica = replicas.iter().position(|r| {
                r.as_ref().is_some_and(|p| running.iter().any(|(_, o)| o.starts_with(&format!("hookwise-{}-", p.0.id()))))
            });
            if let Some(i) = by_replica {
                let pid = replicas[i].as_ref().unwrap().0.id();
                let mut victim = replicas[i].take().unwrap();
                victim.0.kill().unwrap();
                victim.0.wait().unwrap();
                // Read after the kill: a run that was finishing as the signal came may have
                // committed `done` (attempt 1); only jobs still held by the dead process are cut.
                let orphaned: Vec<i64> = sqlx::query_scalar(
                    "SELECT id FROM jobs WHERE state = 'running' AND lease_owner LIKE $1",
                )
                .bind(format!("hookwise-{pid}-%"))
                .fetch_all(&mut conn)
                .await
                .unwrap();
                break (i, orphaned);
            }
            assert!(start.elapsed() < Duration::from_secs(30), "no run ever started");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };

        // The survivors finish everything, including the dead replica's jobs once leases expire.
        let start = Instant::now();
        loop {
            let unfinished: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE state <> 'done'")
                .fetch_one(&mut conn)
                .await
                .unwrap();
            if unfinished == 0 {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(90), "{unfinished} jobs never finished");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM events").fetch_one(&mut conn).await.unwrap();
        assert_eq!(stored, total as i64, "each acknowledged event stored once ({sent} deliveries)");
        let jobs: Vec<(i64, String, String, i32, i64)> = sqlx::query_as(
            "SELECT j.id, j.account, j.subject, j.attempts, (SELECT COUNT(*) FROM job_events je WHERE je.job_id = j.id)
             FROM jobs j",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap();
        assert_eq!(jobs.len(), ACCOUNTS * (1 + SINGLES), "one job per burst, one per single");
        let mut keys = HashSet::new();
        for (_, account, subject, _, events) in &jobs {
            assert!(keys.insert((account.clone(), subject.clone())), "two jobs for {account}/{subject}");
            let expected = if subject == "burst" { BURST } else { 1 };
            assert_eq!(*events as usize, expected, "{account}/{subject}");
        }
        assert!(!orphaned.is_empty());
        for id in &orphaned {
            let (_, _, _, attempts, _) = jobs.iter().find(|j| j.0 == *id).unwrap();
            assert!(*attempts >= 2, "job {id} of the killed replica {victim} ran again: attempts {attempts}");
        }

        let observed = observed.lock().unwrap();
        assert_eq!(observed.max_in_flight, 1, "two runs of one account overlapped");
        let ran: HashSet<i64> = observed.requests.iter().map(|r| r.0).collect();
        assert_eq!(ran.len(), jobs.len(), "every job ran");
        for (job, account, subject) in &observed.requests {
            assert!(jobs.iter().any(|j| j.0 == *job && &j.1 == account && &j.2 == subject), "run of unknown job {job}");
        }
        drop(replicas);
    })
    .await;
}
