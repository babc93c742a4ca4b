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

/// A configuration for `replay --local` in `dir`: the test sources, one `triage` handler in
/// `mode` whose debounce would hold a job for ten minutes, and `extra` (an `[llm]` table).
fn local_config(dir: &std::path::Path, mode: &str, extra: &str) -> std::path::PathBuf {
    let handlers = dir.join("handlers");
    std::fs::create_dir_all(&handlers).unwrap();
    std::fs::write(
        handlers.join("triage.toml"),
        format!(
            r#"name = "triage"
on = ["happyfox.ticket.created"]
mode = "{mode}"
[debounce]
period = "10m"
[agent]
prompt = "Triage the ticket."
tools = ["test.get_ticket"]
max_steps = 3
deadline = "20s"
"#
        ),
    )
    .unwrap();
    let config = dir.join("hookwise.toml");
    std::fs::write(
        &config,
        test_config_text_with(&dir.join("configured.db"), &handlers, extra),
    )
    .unwrap();
    config
}

/// `hookwise --config CONFIG replay --local ARGS... FIXTURE`: (success, stdout, stderr).
fn replay_local(config: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let out = tokio::task::block_in_place(|| {
        Command::new(env!("CARGO_BIN_EXE_hookwise"))
            .arg("--config")
            .arg(config)
            .args(["replay", "--local"])
            .args(args)
            .arg(repo_path("fixtures/happyfox/ticket_created.json"))
            .output()
            .unwrap()
    });
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn replay_local_runs_each_job_now_and_prints_its_transcript() {
    use crate::support::fake_llm::{FakeLlm, llm_table, openai_text};
    let llm = FakeLlm::start(vec![
        openai_text("Triaged: a duplicate charge."),
        openai_text("Triaged again."),
    ])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = local_config(dir.path(), "live", &llm_table(&llm.url));

    let (ok, stdout, stderr) = replay_local(&config, &[]);
    assert!(ok, "{stdout}\n{stderr}");
    let mut at = 0;
    for expected in [
        "ticket_created.json -> event msg_",
        "(happyfox.ticket.created, account acme, subject 142): 1 job(s)",
        "=== job 1: handler triage (live mode), account acme, subject 142, 1 event(s)",
        "run 1: job 1, attempt 1: done",
        "  mode      live",
        "system prompt",
        "Triage the ticket.",
        "event context (to the model)",
        "Charged twice for my order",
        "allow-listed tools this hookwise does not provide: test.get_ticket",
        "assistant",
        "Triaged: a duplicate charge.",
        "1 run(s): 1 done, 0 not done",
    ] {
        let found = stdout[at..]
            .find(expected)
            .unwrap_or_else(|| panic!("{expected:?} after byte {at} in\n{stdout}"));
        at += found + expected.len();
    }
    // The ten-minute debounce was not waited for, and the model saw the fixture's ticket.
    let received = llm.received();
    assert_eq!(received.len(), 1);
    assert!(
        received[0].body.to_string().contains("SO-884213"),
        "{}",
        received[0].body
    );
    assert!(
        !dir.path().join("configured.db").exists(),
        "the configured store is not touched"
    );

    // Again, forced to dry-run: a throwaway store, so the same delivery is new again.
    let (ok, stdout, stderr) = replay_local(&config, &["--dry-run"]);
    assert!(ok, "{stdout}\n{stderr}");
    for expected in [
        "subject 142): 1 job(s)",
        "handler triage (dry-run mode)",
        "  mode      dry-run",
        "Triaged again.",
        "1 run(s): 1 done, 0 not done (--dry-run: no write was sent)",
    ] {
        assert!(stdout.contains(expected), "{expected:?} in\n{stdout}");
    }
    assert_eq!(llm.received().len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn replay_local_needs_an_llm_and_exits_non_zero_when_a_run_fails() {
    use crate::support::fake_llm::{FakeLlm, llm_table};
    let dir = tempfile::tempdir().unwrap();
    let config = local_config(dir.path(), "live", "");
    let (ok, stdout, stderr) = replay_local(&config, &[]);
    assert!(!ok);
    assert!(
        stderr.contains("has no [llm] table") && stderr.contains("hookwise.toml"),
        "{stderr}"
    );
    assert!(stdout.is_empty(), "nothing ran: {stdout}");

    // A model that answers nothing usable: the run fails, its transcript still prints.
    let llm = FakeLlm::start(Vec::new()).await;
    let config = local_config(dir.path(), "live", &llm_table(&llm.url));
    let (ok, stdout, stderr) = replay_local(&config, &[]);
    assert!(!ok, "{stdout}\n{stderr}");
    assert!(stdout.contains("attempt 1: failed"), "{stdout}");
    assert!(stdout.contains("1 run(s): 0 done, 1 not done"), "{stdout}");
}
