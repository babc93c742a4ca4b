//! `hookwise replay` and `hookwise sign`, run as the real binary against a running server.

use crate::support::*;
use std::process::Command;

fn fixtures() -> Vec<std::path::PathBuf> {
    let mut all = Vec::new();
    for dir in std::fs::read_dir(repo_path("fixtures")).unwrap() {
        for file in std::fs::read_dir(dir.unwrap().path()).unwrap() {
            let path = file.unwrap().path();
            if path.extension().is_some_and(|e| e == "json") {
                all.push(path);
            }
        }
    }
    all.sort();
    all
}

#[tokio::test(flavor = "multi_thread")]
async fn every_fixture_replays_through_the_cli() {
    let app = TestApp::spawn().await;
    let fixtures = fixtures();
    assert!(
        fixtures.len() >= 7,
        "one fixture per source and kind: {fixtures:?}"
    );

    let run = |extra: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hookwise"));
        cmd.arg("--config")
            .arg(&app.config_path)
            .arg("replay")
            .arg("--url")
            .arg(&app.url);
        cmd.args(extra).args(&fixtures);
        let out = cmd.output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, stdout, stderr) = tokio::task::block_in_place(|| run(&[]));
    assert!(ok, "replay failed:\n{stdout}\n{stderr}");
    assert_eq!(
        stdout.matches(" -> 202 ").count(),
        fixtures.len(),
        "{stdout}"
    );
    assert_eq!(app.count_events().await, fixtures.len() as i64);

    // Replaying again is a sender's retry: accepted as duplicates, nothing new stored.
    let (ok, stdout, _) = tokio::task::block_in_place(|| run(&[]));
    assert!(ok);
    assert_eq!(
        stdout.matches("\"duplicate\":true").count(),
        fixtures.len(),
        "{stdout}"
    );
    assert_eq!(app.count_events().await, fixtures.len() as i64);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn replay_reports_rejections_and_exits_non_zero() {
    let app = TestApp::spawn().await;
    // A config whose happyfox secret differs from the server's: the server must refuse.
    let other = app.dir.path().join("other.toml");
    let text = std::fs::read_to_string(&app.config_path).unwrap().replace(
        HAPPYFOX_SECRET,
        "whsec_ZGlmZmVyZW50IHNlY3JldCBlbnRpcmVseQ==",
    );
    std::fs::write(&other, text).unwrap();
    let out = tokio::task::block_in_place(|| {
        Command::new(env!("CARGO_BIN_EXE_hookwise"))
            .arg("--config")
            .arg(&other)
            .args(["replay", "--url", &app.url])
            .arg(repo_path("fixtures/happyfox/ticket_created.json"))
            .output()
            .unwrap()
    });
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(stdout.contains("-> 401"), "{stdout}");
    assert_eq!(app.count_events().await, 0);
    app.stop().await;
}

#[test]
fn sign_prints_the_headers_a_sender_adds() {
    let out = Command::new(env!("CARGO_BIN_EXE_hookwise"))
        .current_dir(repo_path(""))
        .args(["sign", "fixtures/happyfox/ticket_created.json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    for header in [
        "Content-Type: application/json",
        "webhook-id: msg_",
        "webhook-timestamp: ",
        "webhook-signature: v1,",
    ] {
        assert!(stdout.contains(header), "missing {header:?} in:\n{stdout}");
    }
}
