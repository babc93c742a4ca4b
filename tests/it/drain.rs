//! Draining one process (the real binary on SQLite): on SIGTERM `/readyz` answers 503 at once
//! while webhooks are still acknowledged for `drain_delay`; then the listener closes, every
//! request in flight is answered after its commit, the running job finishes, and the process
//! exits 0. Acknowledged means stored, and nothing unacknowledged is stored.

use crate::support::fake_llm::{FakeLlm, llm_table, openai_text};
use crate::support::process::*;
use crate::support::*;
use serde_json::json;
use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Short, so the test is quick; long enough for many deliveries to arrive while draining.
const DRAIN_DELAY: &str = "1500ms";
const SENDERS: usize = 4;
/// Upper bound per sender: the stream ends when the server refuses, this is only a bound.
const MAX_PER_SENDER: usize = 3000;
/// How long the fake model holds the slow job's answer: the job is still running when the
/// listener closes, so the process has to wait for it.
const SLOW_RUN: Duration = Duration::from_secs(6);

/// What one delivery got.
struct Delivery {
    subject: String,
    sent: Instant,
    answered: Instant,
    /// The status, or the transport error: refused once the listener closed, or reset or closed
    /// unanswered when the connection had been opened but its request not yet read.
    result: Result<u16, String>,
}

/// Delivers distinct events one after another until the server refuses (or `stop`), like a
/// sender that never retries: every failure is visible.
async fn sender(
    client: reqwest::Client,
    url: String,
    n: usize,
    acked: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
) -> Vec<Delivery> {
    let mut out = Vec::new();
    for i in 0..MAX_PER_SENDER {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let subject = format!("d-{n}-{i}");
        let sent = Instant::now();
        let response = client
            .post(&url)
            .header("content-type", "application/json")
            .header("x-hookwise-token", "multi-token")
            .body(json!({"account": "acme", "subject": subject}).to_string())
            .send()
            .await;
        let result = match response {
            Ok(r) => {
                if r.status().is_success() {
                    acked.fetch_add(1, Ordering::Relaxed);
                }
                Ok(r.status().as_u16())
            }
            Err(e) => Err(format!("{e:?}")),
        };
        let failed = result.is_err();
        out.push(Delivery {
            subject,
            sent,
            answered: Instant::now(),
            result,
        });
        if failed {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    out
}

fn write_config(dir: &Path, drain_delay: &str, extra: &str) -> std::path::PathBuf {
    let db = dir.join("hookwise.db");
    let handlers = dir.join("handlers");
    std::fs::create_dir_all(&handlers).unwrap();
    std::fs::write(
        handlers.join("slow.toml"),
        "name = \"slow\"\non = [\"multi.work\"]\nmode = \"dry-run\"\n\
         [[when]]\npointer = \"/subject\"\nop = \"equals\"\nvalue = \"slow\"\n\
         [agent]\nprompt = \"Summarize.\"\nmax_steps = 2\ndeadline = \"60s\"\n",
    )
    .unwrap();
    let config = dir.join("hookwise.toml");
    std::fs::write(
        &config,
        format!(
            "drain_delay = \"{drain_delay}\"\n{}",
            config_text(&format!("sqlite://{}", db.display()), &handlers, extra)
        ),
    )
    .unwrap();
    config
}

/// Polls `/readyz` until it answers 503 as a problem of type `draining`; returns when it saw it.
async fn until_draining(client: &reqwest::Client, port: u16) -> Instant {
    let start = Instant::now();
    loop {
        if let Ok(r) = client
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
            && r.status() == 503
        {
            let seen = Instant::now();
            let (_, body) = read(r).await;
            assert_eq!(body["_problem"], true, "{body}");
            assert_eq!(body["type"], "urn:hookwise:problem:draining", "{body}");
            return seen;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "/readyz did not turn 503 after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_acks_only_what_is_stored_finishes_the_running_job_and_exits_0() {
    hookwise::init_tls();
    let dir = tempfile::tempdir().unwrap();
    let llm = FakeLlm::start(vec![openai_text("Noted.").delayed(SLOW_RUN)]).await;
    let extra = format!(
        "[scheduler]\npoll_interval = \"50ms\"\nshutdown_grace = \"20s\"\n\n{}",
        llm_table(&llm.url)
    );
    let config = write_config(dir.path(), DRAIN_DELAY, &extra);
    let port = free_port();
    let log = dir.path().join("serve.log");
    let mut server = spawn_hookwise(&config, port, &log, "info");
    let client = reqwest::Client::new();
    // Its own client: a probe's connection never sits in the senders' pool.
    let probe = reqwest::Client::new();
    wait_ready(&probe, &format!("http://127.0.0.1:{port}/readyz")).await;
    let url = format!("http://127.0.0.1:{port}/webhooks/multi");

    // One job that is still running when the listener closes.
    let slow = client
        .post(&url)
        .header("content-type", "application/json")
        .header("x-hookwise-token", "multi-token")
        .body(json!({"account": "acme", "subject": "slow"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(slow.status(), 202);
    eventually(
        "the slow job to reach the model",
        Duration::from_secs(10),
        || {
            let asked = !llm.received().is_empty();
            async move { asked }
        },
    )
    .await;
    let run_ends = llm.received()[0].at.into_std() + SLOW_RUN;

    let acked = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let senders: Vec<_> = (0..SENDERS)
        .map(|n| {
            tokio::spawn(sender(
                client.clone(),
                url.clone(),
                n,
                acked.clone(),
                stop.clone(),
            ))
        })
        .collect();
    eventually(
        "deliveries before the signal",
        Duration::from_secs(10),
        || {
            let n = acked.load(Ordering::Relaxed);
            async move { n >= 40 }
        },
    )
    .await;

    server.signal("TERM");
    let not_ready_at = until_draining(&probe, port).await;
    let status = server.exited_within(Duration::from_secs(30)).await;
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(status.code(), Some(0), "{log_text}");
    stop.store(true, Ordering::Relaxed);
    let mut deliveries = Vec::new();
    for s in senders {
        deliveries.extend(s.await.unwrap());
    }

    // Every answer was a 2xx; the rest got no answer at all, once the drain was over (and were
    // not stored: checked below).
    let statuses: HashSet<u16> = deliveries
        .iter()
        .filter_map(|d| d.result.as_ref().ok().copied())
        .collect();
    assert!(
        statuses.iter().all(|s| (200..300).contains(s)),
        "{statuses:?}"
    );
    let failures = deliveries.iter().filter(|d| d.result.is_err()).count();
    let first_unanswered = deliveries
        .iter()
        .filter(|d| d.result.is_err())
        .map(|d| d.answered)
        .min()
        .expect("the server stopped accepting before the senders ran out");

    // Not ready at once, yet still serving: deliveries sent after /readyz said 503 were acked.
    let acked_while_draining = deliveries
        .iter()
        .filter(|d| d.sent > not_ready_at && d.result.is_ok())
        .count();
    assert!(
        acked_while_draining >= 10,
        "only {acked_while_draining} deliveries acked while draining"
    );
    assert!(
        first_unanswered < run_ends,
        "the listener closed while the job was still running (so exit waited for it)"
    );

    // Acked means stored, and nothing that was not acked is stored.
    let db = rusqlite::Connection::open(dir.path().join("hookwise.db")).unwrap();
    let mut stmt = db
        .prepare("SELECT subject FROM events WHERE source = 'multi' AND subject <> 'slow'")
        .unwrap();
    let stored: HashSet<String> = stmt
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let acked: HashSet<String> = deliveries
        .iter()
        .filter(|d| d.result.is_ok())
        .map(|d| d.subject.clone())
        .collect();
    assert_eq!(
        acked.len(),
        deliveries.len() - failures,
        "distinct subjects"
    );
    let lost: Vec<_> = acked.difference(&stored).collect();
    assert!(lost.is_empty(), "acked but not stored: {lost:?}");
    let unacked: Vec<_> = stored.difference(&acked).collect();
    assert!(unacked.is_empty(), "stored but never acked: {unacked:?}");

    // The job running at the signal finished (within shutdown_grace) instead of being released.
    let (state, attempts): (String, i64) = db
        .query_row(
            "SELECT state, attempts FROM jobs WHERE subject = 'slow'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((state.as_str(), attempts), ("done", 1), "{log_text}");
    assert!(
        log_text.contains("shutdown requested: draining"),
        "{log_text}"
    );
}

#[tokio::test]
async fn a_second_signal_ends_the_drain_at_once() {
    hookwise::init_tls();
    let dir = tempfile::tempdir().unwrap();
    // A drain far longer than the test may take.
    let config = write_config(dir.path(), "10m", "");
    let port = free_port();
    let log = dir.path().join("serve.log");
    let mut server = spawn_hookwise(&config, port, &log, "info");
    let client = reqwest::Client::new();
    wait_ready(&client, &format!("http://127.0.0.1:{port}/readyz")).await;

    server.signal("TERM");
    until_draining(&client, port).await;
    let still_served = client
        .post(format!("http://127.0.0.1:{port}/webhooks/multi"))
        .header("content-type", "application/json")
        .header("x-hookwise-token", "multi-token")
        .body(json!({"account": "acme", "subject": "late"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(still_served.status(), 202);
    assert_eq!(
        still_served
            .headers()
            .get("connection")
            .map(|v| v.to_str().unwrap()),
        Some("close"),
        "a draining process closes connections after answering"
    );

    server.signal("INT");
    let status = server.exited_within(Duration::from_secs(10)).await;
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(status.code(), Some(0), "{log_text}");
    assert!(log_text.contains("second signal"), "{log_text}");
}
