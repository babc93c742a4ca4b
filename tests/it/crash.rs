//! A process killed between sending a write and finishing its job: the real binary, SIGKILLed,
//! then started again on the same SQLite file. The job runs again (its lease expired) and the
//! upstream still receives the write exactly once, whether the answer had been journaled before
//! the kill or not.

use crate::support::fake_happyfox::FakeHappyfox;
use crate::support::fake_llm::{FakeLlm, openai_calls, openai_text};
use crate::support::*;
use hookwise::store::{JobFilter, JobState, RunFilter};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const NOTE: &str =
    r#"{"ticket_id": 142, "html": "<p>Refund requested twice: checking the invoice.</p>"}"#;

/// SIGKILL on drop, so a failing test leaves nothing running.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn serve(config: &Path, port: u16, log: &Path) -> Proc {
    let log = std::fs::File::create(log).unwrap();
    Proc(
        Command::new(env!("CARGO_BIN_EXE_hookwise"))
            .arg("--config")
            .arg(config)
            .arg("serve")
            .env("HOOKWISE_LISTEN", format!("127.0.0.1:{port}"))
            .env("HOOKWISE_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    )
}

async fn wait_ready(port: u16) {
    let client = reqwest::Client::new();
    let started = Instant::now();
    while client
        .get(format!("http://127.0.0.1:{port}/readyz"))
        .send()
        .await
        .is_err()
    {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the server did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How the first process dies relative to the write.
#[derive(Clone, Copy, PartialEq)]
enum Kill {
    /// While HappyFox holds its answer: the write was applied, its answer never recorded.
    BeforeTheAnswer,
    /// After the answer was journaled, before the job was marked done.
    AfterTheAnswer,
}

async fn killed_after_a_write(kill: Kill) {
    hookwise::init_tls();
    let dir = tempfile::tempdir().unwrap();
    let hf = FakeHappyfox::start().await;
    let ticket = std::fs::read(repo_path("fixtures/happyfox/ticket_created.json")).unwrap();
    hf.put_ticket(serde_json::from_slice(&ticket).unwrap());
    // Each process is asked for the note at step 0 and gets it; the second also gets the final
    // answer. Killed after the answer, the first process is waiting for a slow model.
    let note = || openai_calls(&[("c1", "happyfox__add_private_note", NOTE)]);
    let mut script = vec![note()];
    if kill == Kill::AfterTheAnswer {
        script.push(openai_text("Noted.").delayed(Duration::from_secs(30)));
    }
    script.extend([note(), openai_text("Noted.")]);
    let llm = FakeLlm::start(script).await;
    if kill == Kill::BeforeTheAnswer {
        hf.hold_writes(Duration::from_secs(30));
    }
    let handlers = dir.path().join("handlers");
    std::fs::create_dir_all(&handlers).unwrap();
    std::fs::write(
        handlers.join("note.toml"),
        r#"name = "note"
on = ["multi.work"]
mode = "live"
max_attempts = 3
[agent]
prompt = "Add a private note to the ticket."
tools = ["happyfox.add_private_note"]
max_steps = 4
deadline = "60s"
"#,
    )
    .unwrap();
    let db = dir.path().join("hookwise.db");
    let config = dir.path().join("hookwise.toml");
    std::fs::write(
        &config,
        config_text(
            &format!("sqlite://{}", db.display()),
            &handlers,
            &format!(
                "[scheduler]\npoll_interval = \"50ms\"\nlease = \"2s\"\nretry_base = \"100ms\"\n\n\
                 [llm]\nprovider = \"openai\"\nbase_url = \"{}/v1\"\napi_key = \"k\"\nmodel = \"m\"\n\n{}",
                llm.url,
                hf.account_toml("acme", Some(7), "")
            ),
        ),
    )
    .unwrap();

    let port = free_port();
    let first = serve(&config, port, &dir.path().join("first.log"));
    wait_ready(port).await;
    let response = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/webhooks/multi"))
        .header("content-type", "application/json")
        .header("x-hookwise-token", "multi-token")
        .body(r#"{"account": "acme", "subject": "142", "n": 1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);

    // Wait for the write to reach HappyFox (and, for AfterTheAnswer, for its journal entry).
    let store = hookwise::store::open(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let started = Instant::now();
    loop {
        let arrived = !hf.writes().is_empty();
        let journaled = match store
            .list_jobs(&JobFilter::default())
            .await
            .unwrap()
            .first()
        {
            Some(job) => store
                .list_actions(job.id)
                .await
                .unwrap()
                .iter()
                .any(|a| a.state == "done"),
            None => false,
        };
        // The run's transcript so far is stored as it goes: the model's call is in it.
        let recorded = store
            .list_runs(&RunFilter::default())
            .await
            .unwrap()
            .iter()
            .any(|r| {
                r.run.outcome == "running"
                    && r.run
                        .steps
                        .to_string()
                        .contains("happyfox.add_private_note")
            });
        // Killed after the answer means while the first process waits for its slow model: its
        // second request must have reached the fake, or the restarted process would get the
        // slow reply instead.
        let waiting_for_model = llm.received().len() >= 2;
        if arrived
            && recorded
            && (kill == Kill::BeforeTheAnswer || (journaled && waiting_for_model))
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the write never arrived"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(first); // SIGKILL: no shutdown, no finish_job, the lease left to expire.
    hf.hold_writes(Duration::ZERO);
    let job = store.list_jobs(&JobFilter::default()).await.unwrap()[0].clone();
    assert_eq!(job.state, JobState::Running, "killed mid-run");

    let port = free_port();
    let _second = serve(&config, port, &dir.path().join("second.log"));
    let started = Instant::now();
    let job = loop {
        let job = store.get_job(job.id).await.unwrap().unwrap().job;
        if matches!(job.state, JobState::Done | JobState::Dead) {
            break job;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the job did not finish after the restart: {job:?}\n{}",
            std::fs::read_to_string(dir.path().join("second.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(job.state, JobState::Done, "{:?}", job.last_error);
    assert_eq!(
        job.attempts, 2,
        "the killed attempt counted, then the job ran again"
    );

    let notes: Vec<_> = hf
        .writes()
        .into_iter()
        .filter(|w| w.path.ends_with("/staff_pvtnote/"))
        .collect();
    assert_eq!(notes.len(), 1, "HappyFox received the note exactly once");

    // The re-run's transcript says why nothing was sent the second time.
    let runs = store.list_runs(&RunFilter::default()).await.unwrap();
    assert_eq!(runs.len(), 2, "the killed run is listed too");
    let killed = runs
        .iter()
        .find(|r| r.run.attempt == 1)
        .expect("the killed run left its record");
    assert_eq!(killed.run.outcome, "interrupted");
    assert!(
        killed
            .run
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("killed or crashed"),
        "{:?}",
        killed.run.error
    );
    let killed_steps = killed.run.steps.to_string();
    assert!(
        killed_steps.contains("happyfox.add_private_note")
            && killed_steps.contains("\"type\":\"assistant\""),
        "the steps taken before the kill: {killed_steps}"
    );
    let rerun = runs
        .iter()
        .find(|r| r.run.attempt == 2)
        .expect("the re-run was recorded");
    let steps = rerun.run.steps.to_string();
    match kill {
        Kill::BeforeTheAnswer => assert!(steps.contains("never sent twice"), "{steps}"),
        Kill::AfterTheAnswer => assert!(steps.contains("\"type\":\"tool_result\""), "{steps}"),
    }

    // `jobs show` lists the journal: the one write, and whether its answer was recorded.
    let shown = Command::new(env!("CARGO_BIN_EXE_hookwise"))
        .arg("--config")
        .arg(&config)
        .args(["jobs", "show", &job.id.to_string()])
        .output()
        .unwrap();
    let shown = String::from_utf8(shown.stdout).unwrap();
    assert!(shown.contains("writes sent upstream (1):"), "{shown}");
    assert!(
        shown.contains(&format!(
            "job-{}/step-0/call-0  POST /ticket/142/staff_pvtnote/",
            job.id
        )),
        "{shown}"
    );
    let expected = match kill {
        Kill::BeforeTheAnswer => "in doubt",
        Kill::AfterTheAnswer => "answered 200",
    };
    assert!(shown.contains(expected), "{shown}");
}

#[tokio::test]
async fn a_write_in_flight_when_the_process_is_killed_is_not_sent_again() {
    killed_after_a_write(Kill::BeforeTheAnswer).await;
}

#[tokio::test]
async fn a_journaled_write_is_not_sent_again_after_the_process_is_killed() {
    killed_after_a_write(Kill::AfterTheAnswer).await;
}
