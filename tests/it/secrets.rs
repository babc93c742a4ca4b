//! No secret leaves hookwise: with every kind of secret configured (webhook secrets of each
//! scheme, HappyFox key and auth code, Planhat and Truto tokens, the LLM key, the API token), every
//! fixture replayed and a job run end to end, none appears in any log line (JSON, debug level),
//! any stored transcript, any `/api/` answer or `/metrics`.

use crate::support::fake_happyfox::{self, FakeHappyfox};
use crate::support::fake_llm::{FakeLlm, openai_calls, openai_text};
use crate::support::fake_planhat::{self, FakePlanhat};
use crate::support::fake_truto::{self, FakeTruto};
use crate::support::process::{free_port, spawn_hookwise, wait_ready};
use crate::support::*;
use serde_json::Value;
use std::process::Command;
use std::time::Duration;

const API_TOKEN: &str = "api-token-never-shown-7f3a9c";
const LLM_KEY: &str = "sk-llm-key-never-shown-2b8e";

#[tokio::test(flavor = "multi_thread")]
async fn no_secret_shows_in_logs_transcripts_the_api_or_metrics() {
    hookwise::init_tls();
    let dir = tempfile::tempdir().unwrap();
    let hf = FakeHappyfox::start().await;
    let ticket = std::fs::read(repo_path("fixtures/happyfox/ticket_created.json")).unwrap();
    hf.put_ticket(serde_json::from_slice(&ticket).unwrap());
    let planhat = FakePlanhat::start().await;
    let truto = FakeTruto::start(vec![("ia-secret-test", Vec::new())], 10).await;
    let note = r#"{"ticket_id": 142, "html": "<p>Checking the invoice.</p>"}"#;
    // Enough for each ticket-created fixture's job: a note, then done.
    let llm = FakeLlm::start(vec![
        openai_calls(&[("c1", "happyfox__add_private_note", note)]),
        openai_text("Noted."),
        openai_calls(&[("c1", "happyfox__add_private_note", note)]),
        openai_text("Noted."),
    ])
    .await;

    let handlers = dir.path().join("handlers");
    std::fs::create_dir_all(&handlers).unwrap();
    std::fs::write(
        handlers.join("note.toml"),
        r#"name = "note"
on = ["happyfox.ticket.created"]
mode = "live"
max_attempts = 1
[agent]
prompt = "Add a private note."
tools = ["happyfox.add_private_note"]
max_steps = 3
deadline = "20s"
"#,
    )
    .unwrap();
    let db = dir.path().join("hookwise.db");
    let config = dir.path().join("hookwise.toml");
    std::fs::write(
        &config,
        format!(
            "api_token = \"{API_TOKEN}\"\nlog_format = \"json\"\n{}",
            config_text(
                &format!("sqlite://{}", db.display()),
                &handlers,
                &format!(
                    "[scheduler]\npoll_interval = \"50ms\"\n\n\
                     [llm]\nprovider = \"openai\"\nbase_url = \"{}/v1\"\napi_key = \"{LLM_KEY}\"\nmodel = \"m\"\n\n\
                     {}\n\
                     [accounts.northwind]\nconnector = \"planhat\"\nbase_url = \"{}\"\ntoken = \"{}\"\n\n\
                     [accounts.acme-truto]\nconnector = \"truto\"\nbase_url = \"{}\"\napi_key = \"{}\"\nintegrated_account_id = \"ia-secret-test\"\n",
                    llm.url,
                    hf.account_toml("acme", Some(7), ""),
                    planhat.url,
                    fake_planhat::TOKEN,
                    truto.url,
                    fake_truto::API_KEY,
                )
            )
        ),
    )
    .unwrap();

    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let log = dir.path().join("serve.log");
    let _server = spawn_hookwise(&config, port, &log, "debug");
    let client = reqwest::Client::new();
    wait_ready(&client, &format!("{url}/readyz")).await;

    // Every fixture, signed with the configured secrets, through the real CLI.
    let mut fixtures = Vec::new();
    for source in std::fs::read_dir(repo_path("fixtures")).unwrap() {
        for file in std::fs::read_dir(source.unwrap().path()).unwrap() {
            let path = file.unwrap().path();
            if path.extension().is_some_and(|e| e == "json") {
                fixtures.push(path);
            }
        }
    }
    fixtures.sort();
    let replay = tokio::task::block_in_place(|| {
        Command::new(env!("CARGO_BIN_EXE_hookwise"))
            .arg("--config")
            .arg(&config)
            .args(["replay", "--url", &url])
            .args(&fixtures)
            .output()
            .unwrap()
    });
    assert!(
        replay.status.success(),
        "{}",
        String::from_utf8_lossy(&replay.stderr)
    );

    let get = |path: &str| {
        let request = client.get(format!("{url}{path}")).bearer_auth(API_TOKEN);
        let path = path.to_string();
        async move {
            let response = request.send().await.unwrap();
            assert!(
                response.status().is_success(),
                "{path}: {}",
                response.status()
            );
            response.text().await.unwrap()
        }
    };
    // The note's job runs to the end.
    let started = std::time::Instant::now();
    loop {
        let jobs: Value = serde_json::from_str(&get("/api/jobs?handler=note").await).unwrap();
        let states: Vec<&str> = jobs["jobs"]
            .as_array()
            .or(jobs.as_array())
            .map(|a| a.iter().filter_map(|j| j["state"].as_str()).collect())
            .unwrap_or_default();
        if states.contains(&"done") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the job did not finish: {jobs}\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!hf.writes().is_empty(), "the note reached HappyFox");

    let mut seen = Vec::new();
    for path in [
        "/api/events?limit=500",
        "/api/jobs?limit=500",
        "/api/runs?limit=500",
        "/api/approvals",
        "/metrics",
    ] {
        seen.push((path.to_string(), get(path).await));
    }
    let runs: Value = serde_json::from_str(&seen[2].1).unwrap();
    let ids: Vec<i64> = runs["runs"]
        .as_array()
        .or(runs.as_array())
        .unwrap()
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    assert!(!ids.is_empty(), "a run was stored: {runs}");
    for id in ids {
        let path = format!("/api/runs/{id}");
        seen.push((path.clone(), get(&path).await));
    }
    assert!(
        seen.iter()
            .any(|(p, t)| p.starts_with("/api/runs/") && t.contains("add_private_note")),
        "a transcript holds the note's call"
    );
    let logs = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = logs.lines().collect();
    assert!(lines.len() > 20, "debug logging wrote lines: {logs}");
    for line in &lines {
        let parsed: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("log_format = \"json\": one object per line ({e}): {line}"));
        assert!(
            parsed["level"].is_string() && parsed["timestamp"].is_string(),
            "{line}"
        );
    }
    // The job's lines carry its span's fields at the top level.
    assert!(
        lines.iter().any(|l| l.contains("\"handler\":\"note\"")
            && l.contains("\"account\":\"acme\"")
            && l.contains("\"job\":")),
        "{logs}"
    );
    seen.push(("serve.log".into(), logs));

    let secrets = [
        API_TOKEN,
        LLM_KEY,
        HAPPYFOX_SECRET,
        HAPPYFOX_SECRET.trim_start_matches("whsec_"),
        HAPPYFOX_OLD_SECRET.trim_start_matches("whsec_"),
        PLANHAT_TOKEN,
        "6e17561c-a20c-44ce-b8b5-caff0bf786fe",
        "whsec_test_billing",
        "It's a Secret to Everybody",
        "multi-token",
        fake_happyfox::API_KEY,
        fake_happyfox::AUTH_CODE,
        fake_planhat::TOKEN,
        fake_truto::API_KEY,
    ];
    for (place, text) in &seen {
        for secret in secrets {
            assert!(
                !text.contains(secret),
                "{secret:?} appears in {place}:\n{}",
                text.lines()
                    .find(|l| l.contains(secret))
                    .unwrap_or_default()
            );
        }
    }
}
