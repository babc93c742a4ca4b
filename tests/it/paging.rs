//! Lists page by key, newest first, over HTTP and in the CLI: a full page answers a `Link` to the
//! next one (the body stays a bare array); `hookwise events/jobs list` read in pages, `--all`
//! prints every row, and a listing cut at `--limit` says how to get the rest.

use crate::support::*;
use reqwest::StatusCode;
use serde_json::Value;

/// Seven HappyFox ticket events (tickets 1..=7), each a job of `triage`; their seqs, newest first.
async fn seven_events(app: &TestApp) -> Vec<i64> {
    for n in 1..=7 {
        let (status, ack) = app.send("happyfox", &ticket(n), &format!("msg-{n}")).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{ack}");
    }
    let mut seqs: Vec<i64> = app
        .fresh_connection()
        .prepare("SELECT seq FROM events")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    seqs.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(seqs.len(), 7);
    seqs
}

async fn spawn() -> TestApp {
    // No runner: the jobs stay pending, one per ticket.
    TestApp::spawn_with(Options {
        handlers: vec![handler_toml("triage", "happyfox.ticket.*", None, "")],
        ..Options::default()
    })
    .await
}

/// The `rel="next"` target of a `Link` header.
fn next_link(response: &reqwest::Response) -> Option<String> {
    let link = response.headers().get("link")?.to_str().unwrap();
    let (target, rel) = link.split_once(';').unwrap();
    assert_eq!(rel.trim(), "rel=\"next\"", "{link}");
    Some(
        target
            .trim()
            .strip_prefix('<')
            .and_then(|t| t.strip_suffix('>'))
            .unwrap()
            .to_string(),
    )
}

#[tokio::test]
async fn the_link_header_pages_through_a_list_without_gaps_or_repeats() {
    let app = spawn().await;
    let seqs = seven_events(&app).await;

    let mut next = Some("/api/events?source=happyfox&limit=3".to_string());
    let mut pages = Vec::new();
    while let Some(path) = next.take() {
        assert!(pages.len() < 5, "the links never end: {pages:?}");
        let response = app
            .client
            .get(format!("{}{path}", app.url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        next = next_link(&response);
        if let Some(link) = &next {
            assert!(link.contains("source=happyfox"), "filters kept: {link}");
        }
        let body: Value = response.json().await.unwrap();
        let page: Vec<i64> = body
            .as_array()
            .expect("a bare JSON array")
            .iter()
            .map(|e| e["seq"].as_i64().unwrap())
            .collect();
        pages.push(page);
    }
    assert_eq!(
        pages.iter().map(Vec::len).collect::<Vec<_>>(),
        [3, 3, 1],
        "{pages:?}"
    );
    assert_eq!(pages.concat(), seqs, "every event once, newest first");

    // The same for jobs, which page by id; a limit of 0 asks for nothing and is refused.
    let first = app
        .client
        .get(format!("{}/api/jobs?limit=7", app.url))
        .send()
        .await
        .unwrap();
    let link = next_link(&first).expect("a full page links on");
    let jobs: Value = first.json().await.unwrap();
    assert_eq!(jobs.as_array().unwrap().len(), 7);
    let last = app
        .client
        .get(format!("{}{link}", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(next_link(&last), None);
    assert_eq!(last.json::<Value>().await.unwrap(), serde_json::json!([]));
    let (status, problem) = read(
        app.client
            .get(format!("{}/api/events?limit=0", app.url))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(problem["type"], "urn:hookwise:problem:invalid-query");
    app.stop().await;
}

/// Runs the real binary against the test app's configuration: (success, stdout, stderr).
async fn hookwise(app: &TestApp, args: &[&str]) -> (bool, String, String) {
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
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn json_seqs(stdout: &str) -> Vec<i64> {
    stdout
        .lines()
        .map(|line| {
            let event: Value = serde_json::from_str(line).expect("each line is JSON");
            event["seq"].as_i64().unwrap()
        })
        .collect()
}

#[tokio::test]
async fn the_cli_says_when_a_limit_cut_the_list_and_all_prints_every_row() {
    let app = spawn().await;
    let seqs = seven_events(&app).await;

    let (ok, out, err) = hookwise(&app, &["events", "list", "--limit", "3", "--json"]).await;
    assert!(ok, "{err}");
    assert_eq!(json_seqs(&out), seqs[..3]);
    assert_eq!(
        err.trim(),
        format!(
            "-- showing the newest 3 events; more with --before {} or --all",
            seqs[2]
        )
    );
    let before = seqs[2].to_string();
    let (ok, out, _) = hookwise(
        &app,
        &[
            "events", "list", "--limit", "3", "--before", &before, "--json",
        ],
    )
    .await;
    assert!(ok);
    assert_eq!(json_seqs(&out), seqs[3..6], "the next page, no overlap");

    let (ok, out, err) = hookwise(&app, &["events", "list", "--all", "--json"]).await;
    assert!(ok, "{err}");
    assert_eq!(json_seqs(&out), seqs, "every event once");
    assert_eq!(err, "", "nothing was cut");
    let (ok, out, err) = hookwise(&app, &["events", "list", "--limit", "7"]).await;
    assert!(ok);
    assert_eq!(out.lines().count(), 7);
    assert_eq!(err, "", "exactly the limit, nothing more to say");

    let (ok, out, err) = hookwise(&app, &["jobs", "list", "--limit", "2"]).await;
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 1 + 2, "header and two jobs:\n{out}");
    assert!(
        err.contains("-- showing the newest 2 jobs; more with --before"),
        "{err}"
    );
    let (ok, out, _) = hookwise(&app, &["jobs", "list", "--all", "--json"]).await;
    assert!(ok);
    assert_eq!(out.lines().count(), 7);

    for command in ["events", "jobs", "runs", "approvals"] {
        let (ok, out, err) = hookwise(&app, &[command, "list", "--limit", "0"]).await;
        assert!(!ok, "{command}: {out}");
        assert!(err.contains("--all"), "{command}: {err}");
    }

    let (ok, out, err) =
        hookwise(&app, &["events", "list", "--kind", "happyfox.no.such.kind"]).await;
    assert!(ok);
    assert_eq!((out.as_str(), err.trim()), ("", "-- no events match"));
    let (ok, out, err) = hookwise(&app, &["events", "list", "--source", "nosuch"]).await;
    assert!(ok);
    assert_eq!(out, "");
    assert!(err.contains("no source \"nosuch\" is configured"), "{err}");
    app.stop().await;
}
