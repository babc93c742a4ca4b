//! The bundled handlers, end to end through ingest: every fixture starts exactly the jobs its
//! workflow expects (testdata/handler_expectations.json), and no others.

use crate::support::*;
use reqwest::StatusCode;
use serde::Deserialize;

#[derive(Deserialize)]
struct Expectation {
    fixture: String,
    kind: String,
    triggers: Vec<String>,
}

fn bundled_handlers() -> Vec<(String, String)> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(repo_path("handlers")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            files.push((name, std::fs::read_to_string(&path).unwrap()));
        }
    }
    files
}

#[tokio::test]
async fn every_fixture_starts_exactly_the_expected_handlers() {
    let handlers = bundled_handlers();
    assert_eq!(handlers.len(), 5, "the five seed workflows");
    let app = TestApp::spawn_with(Options {
        handlers,
        ..Options::default()
    })
    .await;
    let expectations: Vec<Expectation> = serde_json::from_str(
        &std::fs::read_to_string(repo_path("testdata/handler_expectations.json")).unwrap(),
    )
    .unwrap();
    assert!(expectations.len() >= 18);

    let conn = app.fresh_connection();
    for e in &expectations {
        let source = e.fixture.split('/').nth(1).unwrap();
        let body = std::fs::read(repo_path(&e.fixture)).unwrap();
        let (status, ack) = app.send(source, &body, &e.fixture).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{}: {ack}", e.fixture);
        // The stored id is the sender's: the signed delivery id, or one from the body.
        let event_id = ack["event_id"].as_str().unwrap().to_string();

        let kind: String = conn
            .query_row(
                "SELECT kind FROM events WHERE event_id = ?1",
                [&event_id],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(kind, e.kind, "{}", e.fixture);
        let mut started: Vec<String> = conn
            .prepare(
                "SELECT j.handler FROM events e JOIN job_events je ON je.event_seq = e.seq
                 JOIN jobs j ON j.id = je.job_id WHERE e.event_id = ?1 ORDER BY j.handler",
            )
            .unwrap()
            .query_map([&event_id], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        started.sort();
        let mut expected = e.triggers.clone();
        expected.sort();
        assert_eq!(started, expected, "{}", e.fixture);
    }
    app.stop().await;
}

#[test]
fn check_accepts_the_repository_config_and_handlers() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hookwise"))
        .current_dir(repo_path(""))
        .arg("check")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("handlers: ok (5 handlers)"), "{stdout}");
}

#[test]
fn check_names_file_and_key_of_every_mistake() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("handlers")).unwrap();
    std::fs::write(
        dir.path().join("handlers/bad.toml"),
        "name = \"bad\"\non = [\"happyfox.ticket.created\"]\nmode = \"yolo\"\n[debounce]\nperiod = \"soon\"\n[agent]\nprompt = \"x\"\ntemprature = 1\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("hookwise.toml"),
        "handlers_dir = \"handlers\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hookwise"))
        .current_dir(dir.path())
        .arg("check")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    for key in [
        "key `mode`",
        "key `debounce.period`",
        "key `agent.temprature`",
    ] {
        assert!(
            stderr.contains(&format!("handlers/bad.toml: {key}")),
            "{key} missing in:\n{stderr}"
        );
    }
    assert!(stderr.contains("3 problem(s) found"), "{stderr}");
}
