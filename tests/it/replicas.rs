//! Several replicas behind a real nginx sharing one PostgreSQL: acked means stored, exactly once,
//! and a burst on one subject is one job, while one replica is SIGKILLed midway.
//!
//! Needs `nginx` (Debian package) and `HOOKWISE_TEST_POSTGRES_URL`; without either it says it was
//! skipped. `.ci/run` provides both. What it does not cover yet: runs. `serve` has no job runner
//! until the agent exists, so jobs are checked as created and debounced, not as executed.

use crate::store_contract::in_schema;
use crate::support::*;
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ACCOUNTS: usize = 50;
const BURST: usize = 12;
const SINGLES: usize = 30;
const DUPLICATE_EVERY: usize = 7;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed (SIGKILL) when dropped, so a failing test leaves nothing running.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_replica(config: &Path, port: u16, log: &Path) -> Proc {
    let log = std::fs::File::create(log).unwrap();
    Proc(
        Command::new(env!("CARGO_BIN_EXE_hookwise"))
            .arg("--config")
            .arg(config)
            .arg("serve")
            .env("HOOKWISE_LISTEN", format!("127.0.0.1:{port}"))
            .env("HOOKWISE_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    )
}

fn spawn_nginx(dir: &Path, port: u16, upstreams: &[u16]) -> Proc {
    let servers: String = upstreams
        .iter()
        .map(|p| format!("        server 127.0.0.1:{p} max_fails=1 fail_timeout=30s;\n"))
        .collect();
    // Round-robin over the replicas; a refused or reset connection moves the request to the next
    // one (nginx never re-sends a request an upstream may already have processed).
    let conf = format!(
        r#"worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log warn;
events {{ worker_connections 512; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    upstream hookwise {{
{servers}        keepalive 32;
    }}
    server {{
        listen 127.0.0.1:{port};
        location /webhooks/ {{
            proxy_pass http://hookwise;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_next_upstream error timeout;
        }}
    }}
}}
"#,
        dir = dir.display()
    );
    std::fs::write(dir.join("nginx.conf"), conf).unwrap();
    Proc(
        Command::new("nginx")
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .args(["-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

async fn wait_ready(client: &reqwest::Client, url: &str) {
    let start = Instant::now();
    loop {
        if let Ok(r) = client.get(url).send().await
            && r.status().is_success()
        {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{url} never became ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One event to deliver: its body (the event id is the body's hash) and its debounce subject.
struct Delivery {
    subject: String,
    body: String,
}

fn deliveries() -> Vec<Delivery> {
    let mut all = Vec::new();
    for a in 0..ACCOUNTS {
        for n in 0..BURST {
            all.push(Delivery {
                subject: "burst".into(),
                body: json!({"account": format!("acct-{a}"), "subject": "burst", "n": n})
                    .to_string(),
            });
        }
        for n in 0..SINGLES {
            let subject = format!("single-{n}");
            all.push(Delivery {
                body: json!({"account": format!("acct-{a}"), "subject": subject, "n": n})
                    .to_string(),
                subject,
            });
        }
    }
    // Interleave accounts so every replica sees every account.
    fastrand::seed(11);
    fastrand::shuffle(&mut all);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_behind_nginx_store_each_acked_event_once_while_one_is_killed() {
    if which_nginx().is_none() {
        let _ = writeln!(
            std::io::stderr(),
            "skipped: nginx not installed (replicas::three_replicas_behind_nginx)"
        );
        return;
    }
    in_schema("replicas::three_replicas_behind_nginx", |schema| async move {
        hookwise::init_tls();
        let dir = tempfile::tempdir().unwrap();
        let handlers = dir.path().join("handlers");
        std::fs::create_dir(&handlers).unwrap();
        let (name, text) = handler_toml("work", "multi.work", Some(("10m", "1h")), "");
        std::fs::write(handlers.join(name), text).unwrap();
        let config = dir.path().join("hookwise.toml");
        std::fs::write(&config, config_text(&schema.url(""), &handlers, "")).unwrap();
        // Create the schema's tables once, as an operator's `hookwise migrate` would.
        let migrate = Command::new(env!("CARGO_BIN_EXE_hookwise"))
            .arg("--config")
            .arg(&config)
            .arg("migrate")
            .output()
            .unwrap();
        assert!(migrate.status.success(), "{}", String::from_utf8_lossy(&migrate.stderr));

        let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let mut replicas: Vec<Option<Proc>> = ports
            .iter()
            .enumerate()
            .map(|(i, p)| Some(spawn_replica(&config, *p, &dir.path().join(format!("replica-{i}.log")))))
            .collect();
        let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
        for p in &ports {
            wait_ready(&client, &format!("http://127.0.0.1:{p}/readyz")).await;
        }
        let lb_port = free_port();
        let _nginx = spawn_nginx(dir.path(), lb_port, &ports);
        let url = format!("http://127.0.0.1:{lb_port}/webhooks/multi");
        let start = Instant::now();
        while client.post(&url).send().await.is_err() {
            assert!(start.elapsed() < Duration::from_secs(10), "nginx did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        let all = deliveries();
        let total = all.len();
        let mut acked: HashMap<usize, bool> = HashMap::new();
        let mut sent = 0;
        // Deliver in waves of 32 concurrent requests; every 7th event is delivered twice.
        for (wave, chunk) in all.chunks(32).enumerate() {
            let results = futures::future::join_all(chunk.iter().enumerate().flat_map(|(i, d)| {
                let copies = if (wave * 32 + i) % DUPLICATE_EVERY == 0 { 2 } else { 1 };
                (0..copies).map(move |_| (wave * 32 + i, d))
            }).map(|(idx, d)| {
                let (client, url) = (client.clone(), url.clone());
                async move { (idx, deliver(&client, &url, &d.body).await) }
            }))
            .await;
            for (idx, result) in results {
                sent += 1;
                let duplicate = result.unwrap_or_else(|| panic!("event {idx} was never acknowledged"));
                acked.entry(idx).and_modify(|d| *d &= duplicate).or_insert(duplicate);
            }
            if wave == (total / 32) * 2 / 5 {
                // Midway: one replica dies without warning.
                let mut killed = replicas[1].take().unwrap();
                killed.0.kill().unwrap();
                killed.0.wait().unwrap();
            }
        }
        assert_eq!(acked.len(), total, "every event acknowledged");

        // Read the shared store through a fresh connection.
        let mut conn = schema.connect().await;
        let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM events").fetch_one(&mut conn).await.unwrap();
        let distinct: i64 = sqlx::query_scalar("SELECT COUNT(DISTINCT payload) FROM events").fetch_one(&mut conn).await.unwrap();
        assert_eq!(stored, total as i64, "each acknowledged event stored once ({sent} deliveries)");
        assert_eq!(distinct, total as i64);

        let jobs: Vec<(String, String, String, i64)> = sqlx::query_as(
            "SELECT j.account, j.subject, j.state, (SELECT COUNT(*) FROM job_events je WHERE je.job_id = j.id)
             FROM jobs j",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap();
        assert_eq!(jobs.len(), ACCOUNTS * (1 + SINGLES), "one job per burst, one per single");
        let mut keys = HashSet::new();
        for (account, subject, state, events) in &jobs {
            assert_eq!(state, "pending", "no runner: jobs wait");
            assert!(keys.insert((account.clone(), subject.clone())), "two jobs for {account}/{subject}");
            let expected = if subject == "burst" { BURST } else { 1 };
            assert_eq!(*events as usize, expected, "{account}/{subject}");
        }
        let expected_accounts: HashSet<String> = (0..ACCOUNTS).map(|a| format!("acct-{a}")).collect();
        let seen: HashSet<String> = jobs.iter().map(|j| j.0.clone()).collect();
        assert_eq!(seen, expected_accounts);
        let subjects: HashSet<&str> = all.iter().map(|d| d.subject.as_str()).collect();
        assert_eq!(subjects.len(), 1 + SINGLES);
        drop(replicas);
    })
    .await;
}

fn which_nginx() -> Option<()> {
    Command::new("nginx")
        .arg("-v")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|_| ())
}
