//! Logs as a hostile sender meets them: a value cannot forge a line of the text format, and a
//! flood of unsigned requests is one WARN line while every request is counted.

use crate::support::process::{free_port, spawn_hookwise, wait_ready};
use crate::support::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;

/// `hookwise serve` as a process, logging text at info into `serve.log`.
struct Served {
    _server: process::Proc,
    url: String,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

async fn serve_with_text_logs() -> Served {
    hookwise::init_tls();
    let dir = tempfile::tempdir().unwrap();
    let handlers = dir.path().join("handlers");
    std::fs::create_dir_all(&handlers).unwrap();
    let config = dir.path().join("hookwise.toml");
    std::fs::write(
        &config,
        test_config_text_with(&dir.path().join("hookwise.db"), &handlers, ""),
    )
    .unwrap();
    let port = free_port();
    let log = dir.path().join("serve.log");
    let server = spawn_hookwise(&config, port, &log, "info");
    let url = format!("http://127.0.0.1:{port}");
    wait_ready(&reqwest::Client::new(), &format!("{url}/readyz")).await;
    Served {
        _server: server,
        url,
        log,
        _dir: dir,
    }
}

async fn log_has(log: &std::path::Path, needle: &str) -> String {
    let mut text = String::new();
    eventually(needle, Duration::from_secs(5), || {
        text = std::fs::read_to_string(log).unwrap_or_default();
        let found = text.contains(needle);
        async move { found }
    })
    .await;
    text
}

#[tokio::test]
async fn a_newline_in_an_event_id_cannot_forge_a_log_line() {
    let served = serve_with_text_logs().await;
    let mut nps: Value = serde_json::from_slice(
        &std::fs::read(repo_path("fixtures/planhat/nps_submitted.json")).unwrap(),
    )
    .unwrap();
    let forged = "2026-12-02T00:00:00.000000Z ERROR hookwise: forged line";
    nps["idempotencyKey"] = json!(format!("key-1\n{forged}\r\u{1b}[2K"));
    let response = reqwest::Client::new()
        .post(format!("{}/webhooks/planhat", served.url))
        .header("content-type", "application/json")
        .header("x-hookwise-token", PLANHAT_TOKEN)
        .body(nps.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let log = log_has(&served.log, "webhook accepted").await;
    assert!(
        log.lines()
            .all(|line| !line.starts_with("2026-12-02T00:00:00")),
        "a forged line:\n{log}"
    );
    let accepted = log
        .lines()
        .find(|l| l.contains("webhook accepted"))
        .unwrap();
    assert!(
        accepted.contains(&format!(r"key-1\n{forged}\r\u{{1b}}[2K")),
        "the id, escaped: {accepted}"
    );
    // (The log's own colours are escapes too: only the sender's must not get through.)
    assert!(
        !log.contains("\u{1b}[2K"),
        "the sender's terminal escape is escaped"
    );
}

#[tokio::test]
async fn a_flood_of_unsigned_webhooks_logs_one_warning_and_counts_every_one() {
    let served = serve_with_text_logs().await;
    let client = reqwest::Client::new();
    let body = std::fs::read(repo_path("fixtures/planhat/nps_submitted.json")).unwrap();
    for _ in 0..40 {
        let response = client
            .post(format!("{}/webhooks/planhat", served.url))
            .header("content-type", "application/json")
            .header("x-hookwise-token", "not-the-token")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    let metrics = client
        .get(format!("{}/metrics", served.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            "hookwise_webhooks_received_total{source=\"planhat\",outcome=\"bad_signature\"} 40"
        ),
        "{metrics}"
    );
    let log = log_has(&served.log, "not authenticated").await;
    let warnings = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("webhook rejected"))
        .count();
    assert_eq!(warnings, 1, "{log}");
}
