//! Agent runs end to end: a run recorded for a real job is visible through `hookwise runs list`,
//! `hookwise runs show` (the real binary, against the live store) and `GET /api/runs/{id}`.

use crate::support::*;
use hookwise::store::{JobFilter, RunRecord};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Runs the real binary against the test app's configuration; panics with stderr on failure.
async fn hookwise(app: &TestApp, args: &[&str]) -> String {
    let config = app.config_path.clone();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_hookwise"))
            .arg("--config")
            .arg(config)
            .args(&args)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn a_recorded_run_shows_in_the_cli_and_the_api() {
    // No runner: the job waits, and the run below is the only one.
    let app = TestApp::spawn_with(Options {
        handlers: vec![handler_toml("triage", "happyfox.ticket.*", None, "")],
        ..Options::default()
    })
    .await;
    let body = std::fs::read(repo_path("fixtures/happyfox/ticket_created.json")).unwrap();
    let (status, ack) = app.send("happyfox", &body, "msg-run").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{ack}");
    let jobs = app.store.list_jobs(&JobFilter::default()).await.unwrap();
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    let job = &jobs[0];

    let long_result = "x".repeat(10_000);
    let run = RunRecord {
        job: job.id,
        handler: job.handler.clone(),
        account: job.account.clone(),
        attempt: 1,
        mode: "dry-run".into(),
        model: "claude-test".into(),
        started_at_ms: 1_767_225_600_000,
        finished_at_ms: 1_767_225_603_000,
        outcome: "done".into(),
        error: None,
        input_tokens: 900,
        output_tokens: 40,
        cost_usd: Some(0.5),
        steps: json!([
            {"type": "system", "text": "You triage tickets."},
            {"type": "user", "text": "Ticket created"},
            {"type": "assistant", "text": "Let me look.", "tool_calls": [
                {"id": "c1", "name": "get_ticket", "arguments": {"id": 7}}]},
            {"type": "tool_result", "call_id": "c1", "name": "get_ticket", "result": long_result},
            {"type": "refused", "call_id": "c2", "name": "close_ticket", "reason": "not allowed"},
            {"type": "intended_action", "call_id": "c3", "name": "add_note",
             "arguments": {"text": "Triaged"}, "mode": "dry-run"}
        ]),
    };
    let id = app.store.record_run(&run).await.unwrap();

    // `runs list --json`: one object per line, the whole run.
    let listed = hookwise(&app, &["runs", "list", "--json"]).await;
    let lines: Vec<Value> = listed
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{listed}");
    assert_eq!(lines[0]["id"], id);
    assert_eq!(lines[0]["job"], job.id.0);
    assert_eq!(lines[0]["steps"], run.steps, "--json never shortens");
    assert_eq!(lines[0]["cost_usd"], 0.5);
    let table = hookwise(&app, &["runs", "list", "--job", &job.id.to_string()]).await;
    assert!(
        table.contains("triage") && table.contains("900/40") && table.contains("$0.5000"),
        "{table}"
    );
    let none = hookwise(&app, &["runs", "list", "--handler", "other", "--json"]).await;
    assert!(none.is_empty(), "{none}");

    // `runs show`: the header, then each step readably, in order.
    let shown = hookwise(&app, &["runs", "show", &id.to_string()]).await;
    let mut at = 0;
    for expected in [
        &format!("run {id}: job {}, attempt 1: done", job.id),
        "  mode      dry-run",
        "duration 3.0s",
        "900 in, 40 out",
        "  cost      $0.5000",
        "steps (6):",
        "system prompt",
        "event context",
        "-> calls get_ticket [c1]\n            id: 7\n",
        "result of get_ticket [c1]",
        "more characters; --json shows all",
        "REFUSED close_ticket [c2]",
        "NOT SENT (dry-run): would call add_note [c3]",
    ] {
        let found = shown[at..]
            .find(expected)
            .unwrap_or_else(|| panic!("{expected:?} after byte {at} in\n{shown}"));
        at += found + expected.len();
    }
    let shown_json: Value =
        serde_json::from_str(&hookwise(&app, &["runs", "show", &id.to_string(), "--json"]).await)
            .unwrap();
    assert_eq!(shown_json["steps"], run.steps);

    // The API: the run, and a problem for a missing one.
    let (status, body) = read(
        app.client
            .get(format!("{}/api/runs/{id}", app.url))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["id"], id);
    assert_eq!(body["handler"], "triage");
    assert_eq!(body["steps"], run.steps);
    let (status, body) = read(
        app.client
            .get(format!("{}/api/runs?job={}", app.url, job.id))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body.as_array().map(Vec::len), Some(1), "{body}");
    let (status, body) = read(
        app.client
            .get(format!("{}/api/runs/{}", app.url, id + 1))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["_problem"], true, "{body}");
    app.stop().await;
}
