//! A rolling restart and a crash under steady load, behind nginx configured from the shipped
//! `deploy/nginx.conf` (only its addresses changed), on one PostgreSQL: the sender sees no error
//! at all, and every acknowledged event is stored exactly once.
//!
//! Senders disable endpoints that fail (Planhat after 10 failures a day), so a deploy must be
//! invisible to them. Needs `nginx` and `HOOKWISE_TEST_POSTGRES_URL`, like `replicas.rs`; without
//! either it says it was skipped.

use crate::store_contract::in_schema;
use crate::support::process::*;
use crate::support::*;
use serde_json::json;
use std::collections::HashMap;
use std::io::Write;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const REPLICAS: usize = 3;
const SENDERS: usize = 4;
/// A bound, not a target: the load stops when the scenario is over.
const MAX_PER_SENDER: usize = 20_000;
/// Pause between one sender's deliveries: steady load, leaving CPU for five processes.
const PACE: Duration = Duration::from_millis(5);

/// What one delivery got: the subject (unique per delivery) and the status or transport error.
type Outcome = (String, Instant, Result<u16, String>);

async fn sender(
    client: reqwest::Client,
    url: String,
    n: usize,
    acked: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
) -> Vec<Outcome> {
    let mut out = Vec::new();
    for i in 0..MAX_PER_SENDER {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let subject = format!("r-{n}-{i}");
        let response = client
            .post(&url)
            .header("content-type", "application/json")
            .header("x-hookwise-token", "multi-token")
            .body(json!({"account": "acme", "subject": subject}).to_string())
            .send()
            .await;
        let result = match response {
            Ok(r) if r.status().is_success() => {
                acked.fetch_add(1, Ordering::Relaxed);
                Ok(r.status().as_u16())
            }
            Ok(r) => {
                let status = r.status().as_u16();
                let body = r.text().await.unwrap_or_default();
                Err(format!("{status} {body}"))
            }
            Err(e) => Err(format!("{e:?}")),
        };
        out.push((subject, Instant::now(), result));
        tokio::time::sleep(PACE).await;
    }
    out
}

/// Waits until `n` more deliveries were acknowledged than when it was called.
async fn more_acks(acked: &AtomicUsize, n: usize) {
    let target = acked.load(Ordering::Relaxed) + n;
    eventually(
        "more acknowledged deliveries",
        Duration::from_secs(20),
        || {
            let now = acked.load(Ordering::Relaxed);
            async move { now >= target }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_and_a_crash_behind_the_shipped_nginx_conf_show_senders_no_error() {
    if !nginx_installed() {
        gate::skip("rolling_restart", "nginx is not installed", NGINX_HOW);
        return;
    }
    in_schema("rolling_restart", |schema| async move {
        hookwise::init_tls();
        let dir = tempfile::tempdir().unwrap();
        let handlers = dir.path().join("handlers");
        std::fs::create_dir(&handlers).unwrap();
        let config = dir.path().join("hookwise.toml");
        // A short drain: nginx does not read /readyz, so the drain only has to outlast requests
        // already on their way; the rest is nginx's retry on refused connections.
        std::fs::write(
            &config,
            format!(
                "drain_delay = \"500ms\"\n{}",
                config_text(&schema.url(""), &handlers, "")
            ),
        )
        .unwrap();
        let migrate = Command::new(env!("CARGO_BIN_EXE_hookwise"))
            .arg("--config")
            .arg(&config)
            .arg("migrate")
            .output()
            .unwrap();
        assert!(
            migrate.status.success(),
            "{}",
            String::from_utf8_lossy(&migrate.stderr)
        );

        let ports: Vec<u16> = (0..REPLICAS).map(|_| free_port()).collect();
        let log = |i: usize| dir.path().join(format!("replica-{i}.log"));
        let mut replicas: Vec<Proc> = (0..REPLICAS)
            .map(|i| spawn_hookwise(&config, ports[i], &log(i), "warn"))
            .collect();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let ready = |i: usize| format!("http://127.0.0.1:{}/readyz", ports[i]);
        for i in 0..REPLICAS {
            wait_ready(&client, &ready(i)).await;
        }
        let lb = free_port();
        let _nginx = spawn_nginx(dir.path(), &shipped_nginx_conf(lb, &ports));
        wait_ready(&client, &format!("http://127.0.0.1:{lb}/readyz")).await;

        let url = format!("http://127.0.0.1:{lb}/webhooks/multi");
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
        more_acks(&acked, 100).await;

        // Rolling restart: each replica in turn gets SIGTERM, drains, exits 0, and is started
        // again on its port; the next one goes only once it is ready.
        let restart_began = Instant::now();
        for i in 0..REPLICAS {
            replicas[i].signal("TERM");
            let status = replicas[i].exited_within(Duration::from_secs(20)).await;
            assert_eq!(
                status.code(),
                Some(0),
                "replica {i}: {}",
                std::fs::read_to_string(log(i)).unwrap_or_default()
            );
            replicas[i] = spawn_hookwise(&config, ports[i], &log(i), "warn");
            wait_ready(&client, &ready(i)).await;
            more_acks(&acked, 20).await;
        }
        // A crash: SIGKILL mid-load (requests in flight on it are cut), then started again.
        let crashed = 1;
        replicas[crashed].0.kill().unwrap();
        replicas[crashed].0.wait().unwrap();
        replicas[crashed] = spawn_hookwise(&config, ports[crashed], &log(crashed), "warn");
        wait_ready(&client, &ready(crashed)).await;
        let restart_ended = Instant::now();
        more_acks(&acked, 100).await;
        stop.store(true, Ordering::Relaxed);

        let mut outcomes = Vec::new();
        for s in senders {
            outcomes.extend(s.await.unwrap());
        }
        let failed: Vec<_> = outcomes
            .iter()
            .filter_map(|(subject, _, r)| r.as_ref().err().map(|e| (subject, e)))
            .collect();
        let nginx_errors =
            std::fs::read_to_string(dir.path().join("nginx-error.log")).unwrap_or_default();
        assert!(
            failed.is_empty(),
            "{} of {} deliveries failed, first: {:?}\nnginx error log:\n{}",
            failed.len(),
            outcomes.len(),
            &failed[..failed.len().min(2)],
            nginx_errors.lines().take(30).collect::<Vec<_>>().join("\n")
        );
        let during = outcomes
            .iter()
            .filter(|(_, at, _)| *at > restart_began && *at < restart_ended)
            .count();
        assert!(
            during >= 100,
            "only {during} deliveries during the restarts"
        );

        // Every acknowledged event is stored exactly once, and nothing else is.
        let mut conn = schema.connect().await;
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT subject, COUNT(*) FROM events GROUP BY subject")
                .fetch_all(&mut conn)
                .await
                .unwrap();
        let stored: HashMap<String, i64> = rows.into_iter().collect();
        for (subject, _, _) in &outcomes {
            assert_eq!(stored.get(subject), Some(&1), "{subject} stored once");
        }
        assert_eq!(
            stored.len(),
            outcomes.len(),
            "only acknowledged events are stored"
        );
        let _ = writeln!(
            std::io::stderr(),
            "rolling_restart: {} deliveries, {during} during the restarts, 0 failed",
            outcomes.len()
        );
    })
    .await;
}
