//! Handlers and jobs: debounce, one run per account at a time, retries, dead letters, leases.

use crate::support::fake_llm::{FakeLlm, llm_table, openai_calls, openai_text};
use crate::support::*;
use hookwise::kernel::clock::{Clock, ManualClock};
use hookwise::store::{JobFilter, JobState};
use hookwise::tools::{Tool, ToolContext, ToolError};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

/// Scheduler settings for tests: fast polling and retries, so waiting is short.
const FAST: &str = r#"
[scheduler]
workers = 8
poll_interval = "10ms"
retry_base = "10ms"
retry_max = "40ms"
shutdown_grace = "2s"
"#;

fn manual_clock() -> ManualClock {
    ManualClock::starting_at(chrono::Utc::now())
}

async fn jobs_in(app: &TestApp, state: Option<JobState>) -> Vec<hookwise::store::JobRecord> {
    app.store
        .list_jobs(&JobFilter {
            state,
            limit: 1000,
            ..JobFilter::default()
        })
        .await
        .unwrap()
}

fn ticket_update(id: u64, n: u64) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "event": "ticket.updated", "id": id, "n": n,
        "last_modified": format!("2026-03-02 14:{:02}:{:02}", n / 60, n % 60),
        "updates": [{"update_id": n, "by": {"type": "user", "id": 5310}}]
    }))
    .unwrap()
}

#[tokio::test]
async fn a_burst_on_one_ticket_becomes_one_run_that_sees_every_event() {
    let clock = manual_clock();
    let runner = RecordingRunner::new(Behaviour::Succeed {
        work: Duration::ZERO,
    });
    let app = TestApp::spawn_with(Options {
        clock: Some(clock.clone()),
        runner: Some(runner.clone()),
        handlers: vec![handler_toml(
            "triage",
            "happyfox.ticket.*",
            Some(("60s", "10m")),
            "",
        )],
        extra_config: FAST.into(),
        ..Options::default()
    })
    .await;

    for n in 0..30 {
        let (status, ack) = app
            .send("happyfox", &ticket_update(7, n), &format!("msg-7-{n}"))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{ack}");
        // A second ticket debounces on its own key.
        if n % 10 == 0 {
            app.send("happyfox", &ticket_update(8, n), &format!("msg-8-{n}"))
                .await;
        }
        clock.advance(Duration::from_secs(1));
    }
    let pending = jobs_in(&app, Some(JobState::Pending)).await;
    assert_eq!(pending.len(), 2, "one job per ticket: {pending:?}");
    let job7 = pending.iter().find(|j| j.subject == "7").unwrap();
    assert_eq!(job7.events, 30);
    // Trailing: due one period after the last event, so nothing can be claimed yet.
    assert_eq!(
        job7.run_at_ms,
        clock.now().timestamp_millis() - 1000 + 60_000
    );
    assert!(runner.runs().is_empty());

    clock.advance(Duration::from_secs(60));
    eventually("both debounced runs", WAIT, || async {
        runner.runs().len() == 2
    })
    .await;
    let runs = runner.runs();
    let run7 = runs.iter().find(|r| r.subject == "7").unwrap();
    let expected: Vec<String> = (0..30).map(|n| format!("msg-7-{n}")).collect();
    assert_eq!(
        run7.event_ids, expected,
        "the run sees every coalesced event id, in order"
    );
    let latest: serde_json::Value = serde_json::from_str(&run7.latest_payload).unwrap();
    assert_eq!(latest["n"], 29, "and the latest payload");
    let run8 = runs.iter().find(|r| r.subject == "8").unwrap();
    assert_eq!(run8.event_ids.len(), 3);
    app.stop().await;
}

#[tokio::test]
async fn a_stream_that_never_pauses_still_runs_at_max_wait() {
    let clock = manual_clock();
    let runner = RecordingRunner::new(Behaviour::Succeed {
        work: Duration::ZERO,
    });
    let app = TestApp::spawn_with(Options {
        clock: Some(clock.clone()),
        runner: Some(runner.clone()),
        handlers: vec![handler_toml(
            "triage",
            "happyfox.ticket.*",
            Some(("60s", "5m")),
            "",
        )],
        extra_config: FAST.into(),
        ..Options::default()
    })
    .await;
    let start = clock.now().timestamp_millis();
    // One event every 20 s, forever: each pushes run_at, but never past first_seen + 5 min.
    for n in 0..15 {
        app.send("happyfox", &ticket_update(9, n), &format!("msg-9-{n}"))
            .await;
        let job = &jobs_in(&app, Some(JobState::Pending)).await[0];
        assert_eq!(
            job.run_at_ms,
            (start + n as i64 * 20_000 + 60_000).min(start + 300_000)
        );
        assert!(runner.runs().is_empty(), "ran before max_wait at event {n}");
        clock.advance(Duration::from_secs(20));
    }
    // The clock is now at start + 300 s: the cap is reached while events still flow.
    eventually("the max_wait run", WAIT, || async {
        runner.runs().len() == 1
    })
    .await;
    assert_eq!(runner.runs()[0].event_ids.len(), 15);
    app.stop().await;
}

#[tokio::test]
async fn runs_of_one_account_never_overlap_and_accounts_run_in_parallel() {
    let runner = RecordingRunner::new(Behaviour::Succeed {
        work: Duration::from_millis(15),
    });
    let app = TestApp::spawn_with(Options {
        runner: Some(runner.clone()),
        handlers: vec![handler_toml("work", "multi.work", None, "")],
        extra_config: FAST.into(),
        ..Options::default()
    })
    .await;
    let url = format!("{}/webhooks/multi", app.url);
    let sends = (0..20)
        .flat_map(|a| (0..20).map(move |j| (a, j)))
        .map(|(a, j)| {
            let (client, url) = (app.client.clone(), url.clone());
            async move {
                client
                    .post(url)
                    .header("content-type", "application/json")
                    .header("x-hookwise-token", "multi-token")
                    .body(
                        json!({"account": format!("acct-{a}"), "subject": format!("s-{j}")})
                            .to_string(),
                    )
                    .send()
                    .await
                    .unwrap()
                    .status()
            }
        });
    let statuses = futures::future::join_all(sends).await;
    assert!(statuses.iter().all(|s| *s == StatusCode::ACCEPTED));

    eventually("400 runs", Duration::from_secs(60), || async {
        runner.runs().len() == 400
    })
    .await;
    let runs = runner.runs();
    for a in 0..20 {
        let mut mine: Vec<_> = runs
            .iter()
            .filter(|r| r.account == format!("acct-{a}"))
            .collect();
        assert_eq!(mine.len(), 20);
        mine.sort_by_key(|r| r.started);
        for pair in mine.windows(2) {
            assert!(
                pair[0].ended <= pair[1].started,
                "account acct-{a}: runs overlap"
            );
        }
    }
    assert_eq!(*runner.max_per_account.lock().unwrap(), 1);
    let overall = *runner.max_overall.lock().unwrap();
    assert!(
        (2..=8).contains(&overall),
        "accounts ran in parallel, within 8 workers: {overall}"
    );
    eventually("all jobs done", WAIT, || async {
        jobs_in(&app, Some(JobState::Done)).await.len() == 400
    })
    .await;
    app.stop().await;
}

#[tokio::test]
async fn a_job_that_keeps_failing_ends_dead_and_retry_revives_it() {
    let runner = RecordingRunner::new(Behaviour::Fail("upstream said 502".into()));
    let app = TestApp::spawn_with(Options {
        runner: Some(runner.clone()),
        handlers: vec![handler_toml(
            "triage",
            "happyfox.ticket.*",
            None,
            "max_attempts = 3",
        )],
        extra_config: FAST.into(),
        ..Options::default()
    })
    .await;
    app.send("happyfox", &ticket(31), "msg-fail").await;
    eventually("the job to die", WAIT, || async {
        !jobs_in(&app, Some(JobState::Dead)).await.is_empty()
    })
    .await;
    let dead = &jobs_in(&app, Some(JobState::Dead)).await[0];
    assert_eq!(dead.attempts, 3);
    assert_eq!(runner.runs().len(), 3, "exactly max_attempts runs");
    assert_eq!(
        dead.last_error.as_deref(),
        Some("gave up after 3 attempts: upstream said 502")
    );

    // A person fixes the cause and revives the job from the CLI, against the live store.
    runner.set(Behaviour::Succeed {
        work: Duration::ZERO,
    });
    let out = tokio::task::spawn_blocking({
        let config = app.config_path.clone();
        let id = dead.id.0.to_string();
        move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_hookwise"))
                .arg("--config")
                .arg(config)
                .args(["jobs", "retry", &id])
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("pending again"));
    eventually("the revived job to finish", WAIT, || async {
        jobs_in(&app, Some(JobState::Done)).await.len() == 1
    })
    .await;

    // Retrying a job that is not dead is refused with a reason, over HTTP too.
    let response = app
        .client
        .post(format!("{}/api/jobs/{}/retry", app.url, dead.id))
        .send()
        .await
        .unwrap();
    let (status, problem) = read(response).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("only dead jobs"),
        "{problem}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_whose_process_died_mid_run_runs_again_after_its_lease_expires() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let blocking = RecordingRunner::new(Behaviour::Block);
    let handlers = vec![handler_toml("triage", "happyfox.ticket.*", None, "")];
    let config = format!("{FAST}lease = \"1s\"\n");

    // First life: the run starts and never finishes; then the whole runtime is dropped, like a
    // SIGKILL: no cleanup code runs, the job row stays `running` with its lease.
    let first = {
        let (dir, blocking, handlers, config) = (
            dir.clone(),
            blocking.clone(),
            handlers.clone(),
            config.clone(),
        );
        std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(async {
                let app = TestApp::spawn_with(Options {
                    runner: Some(blocking.clone()),
                    handlers,
                    extra_config: config,
                    dir: Some(dir),
                    ..Options::default()
                })
                .await;
                app.send("happyfox", &ticket(41), "msg-crash").await;
                eventually("the run to start", WAIT, || async {
                    !blocking.started.lock().unwrap().is_empty()
                })
                .await;
                drop(app); // only detaches: the server keeps running until the runtime dies
            });
            rt.shutdown_background();
        })
    };
    first.join().unwrap();

    let finishing = RecordingRunner::new(Behaviour::Succeed {
        work: Duration::ZERO,
    });
    let app = TestApp::spawn_with(Options {
        runner: Some(finishing.clone()),
        handlers,
        extra_config: config,
        dir: Some(dir),
        ..Options::default()
    })
    .await;
    eventually("the job to run again", WAIT, || async {
        finishing.runs().len() == 1
    })
    .await;
    let run = &finishing.runs()[0];
    assert_eq!(run.attempt, 2, "the crashed run counted as an attempt");
    assert_eq!(run.event_ids, vec!["msg-crash"]);
    eventually("done", WAIT, || async {
        jobs_in(&app, Some(JobState::Done)).await.len() == 1
    })
    .await;
    app.stop().await;
}

#[tokio::test]
async fn our_own_writes_do_not_trigger_handlers() {
    let runner = RecordingRunner::new(Behaviour::Succeed {
        work: Duration::ZERO,
    });
    let app = TestApp::spawn_with(Options {
        runner: Some(runner.clone()),
        handlers: vec![handler_toml("triage", "happyfox.ticket.*", None, "")],
        extra_config: format!(
            "{FAST}\n[accounts.acme]\nconnector = \"happyfox\"\nbot_staff_id = 12\n\
             base_url = \"http://127.0.0.1:9/api/1.1/json\"\napi_key = \"k\"\nauth_code = \"c\"\n"
        ),
        ..Options::default()
    })
    .await;
    // ticket_updated.json's latest update was made by staff 12: our bot, in this config.
    let echo = std::fs::read(repo_path("fixtures/happyfox/ticket_updated.json")).unwrap();
    let (status, _) = app.send("happyfox", &echo, "msg-echo").await;
    assert_eq!(status, StatusCode::ACCEPTED, "stored and acknowledged");
    let fresh = std::fs::read(repo_path("fixtures/happyfox/ticket_created.json")).unwrap();
    app.send("happyfox", &fresh, "msg-fresh").await;

    eventually("the fresh ticket's run", WAIT, || async {
        runner.runs().len() == 1
    })
    .await;
    assert_eq!(runner.runs()[0].event_ids, vec!["msg-fresh"]);
    let (status, reason): (String, Option<String>) = app
        .fresh_connection()
        .query_row(
            "SELECT status, status_reason FROM events WHERE event_id = 'msg-echo'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(status, "ignored");
    assert!(reason.unwrap().contains("staff 12"));
    assert_eq!(jobs_in(&app, None).await.len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn without_a_runner_jobs_wait_visibly() {
    let app = TestApp::spawn_with(Options {
        handlers: vec![handler_toml("triage", "happyfox.ticket.*", None, "")],
        ..Options::default()
    })
    .await;
    app.send("happyfox", &ticket(51), "msg-wait").await;
    let response = app
        .client
        .get(format!("{}/api/jobs?state=pending", app.url))
        .send()
        .await
        .unwrap();
    let (status, jobs) = read(response).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(jobs.as_array().unwrap().len(), 1, "{jobs}");
    assert_eq!(jobs[0]["handler"], "triage");
    let id = jobs[0]["id"].as_i64().unwrap();
    let (_, job) = read(
        app.client
            .get(format!("{}/api/jobs/{id}", app.url))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(job["events"][0]["event_id"], "msg-wait");
    app.stop().await;
}

/// A connector with a bug: every call panics.
struct Explodes;

#[async_trait::async_trait]
impl Tool for Explodes {
    fn name(&self) -> &str {
        "test.explode"
    }
    fn description(&self) -> &str {
        "a tool that panics"
    }
    fn parameters(&self) -> Value {
        json!({"type": "object", "properties": {}, "additionalProperties": false})
    }
    fn writes(&self) -> bool {
        false
    }
    async fn call(&self, _ctx: &ToolContext, _args: Value) -> Result<Value, ToolError> {
        panic!("the connector tripped over a null");
    }
}

#[tokio::test]
async fn a_tool_that_panics_fails_the_attempt_and_the_account_keeps_running() {
    let clock = manual_clock();
    // The first job's run calls the panicking tool; the second job (same account, another
    // subject) answers in words; the first job's retry calls the tool again.
    let llm = FakeLlm::start(vec![
        openai_calls(&[("call_1", "test__explode", "{}")]),
        openai_text("Nothing to do."),
        openai_calls(&[("call_2", "test__explode", "{}")]),
    ])
    .await;
    let handler = (
        "work.toml".to_string(),
        r#"name = "work"
on = ["multi.work"]
max_attempts = 2
[agent]
prompt = "Do the work."
tools = ["test.explode"]
deadline = "20s"
"#
        .to_string(),
    );
    let app = TestApp::spawn_with(Options {
        clock: Some(clock.clone()),
        handlers: vec![handler],
        tools: vec![Arc::new(Explodes)],
        // A short lease: a heartbeat that outlived its run would keep renewing it.
        extra_config: format!("{FAST}lease = \"1s\"\n\n{}", llm_table(&llm.url)),
        ..Options::default()
    })
    .await;
    let send = |subject: &'static str| {
        let request = app
            .client
            .post(format!("{}/webhooks/multi", app.url))
            .header("content-type", "application/json")
            .header("x-hookwise-token", "multi-token")
            .body(json!({"account": "acct-panic", "subject": subject}).to_string());
        async move { request.send().await.unwrap().status() }
    };

    assert_eq!(send("s-panics").await, StatusCode::ACCEPTED);
    eventually("the first run to ask the model", WAIT, || async {
        llm.received().len() == 1
    })
    .await;
    assert_eq!(send("s-fine").await, StatusCode::ACCEPTED);

    eventually("the account's other job to finish", WAIT, || async {
        jobs_in(&app, Some(JobState::Done)).await.len() == 1
    })
    .await;
    let jobs = jobs_in(&app, None).await;
    let fine = jobs.iter().find(|j| j.subject == "s-fine").unwrap();
    assert_eq!(fine.state, JobState::Done);
    let panicked = jobs.iter().find(|j| j.subject == "s-panics").unwrap();
    assert_eq!(panicked.state, JobState::Pending, "{panicked:?}");
    assert_eq!(panicked.attempts, 1);
    assert_eq!(
        panicked.last_error.as_deref(),
        Some("the run panicked: the connector tripped over a null")
    );
    assert!(
        panicked.run_at_ms > clock.now().timestamp_millis(),
        "retried after a backoff: {panicked:?}"
    );

    // Past the backoff the retry runs, panics again, and the job is dead after max_attempts.
    clock.advance(Duration::from_secs(1));
    eventually("the panicking job to die", WAIT, || async {
        !jobs_in(&app, Some(JobState::Dead)).await.is_empty()
    })
    .await;
    let dead = &jobs_in(&app, Some(JobState::Dead)).await[0];
    assert_eq!(dead.subject, "s-panics");
    assert_eq!(dead.attempts, 2);
    assert_eq!(
        dead.last_error.as_deref(),
        Some("gave up after 2 attempts: the run panicked: the connector tripped over a null")
    );
    // Both panicked runs are listed as interrupted, with the steps they took before the panic
    // (each step is written in the background, so the last may land just after the job ended).
    let filter = hookwise::store::RunFilter {
        job: Some(dead.id),
        ..Default::default()
    };
    eventually("both runs' steps to be stored", WAIT, || async {
        let runs = app.store.list_runs(&filter).await.unwrap();
        runs.len() == 2
            && runs.iter().all(|r| {
                r.run.outcome == "interrupted" && r.run.steps.to_string().contains("test.explode")
            })
    })
    .await;
    assert_eq!(llm.unused(), 0);
    app.stop().await;
}

/// A runner that holds every run until the test lets it finish, so the test decides when a job is
/// running and when it is done.
struct GatedRunner {
    gate: tokio::sync::Semaphore,
    /// (job id, event ids) of each run, in the order the runs started.
    started: std::sync::Mutex<Vec<(i64, Vec<String>)>>,
}

impl GatedRunner {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            gate: tokio::sync::Semaphore::new(0),
            started: std::sync::Mutex::new(Vec::new()),
        })
    }

    fn started(&self) -> Vec<(i64, Vec<String>)> {
        self.started.lock().unwrap().clone()
    }
}

#[async_trait::async_trait]
impl hookwise::scheduler::JobRunner for GatedRunner {
    async fn run(
        &self,
        ctx: hookwise::scheduler::RunContext<'_>,
    ) -> Result<(), hookwise::scheduler::RunError> {
        let ids = ctx.events.iter().map(|e| e.event_id.to_string()).collect();
        self.started.lock().unwrap().push((ctx.job.id.0, ids));
        self.gate.acquire().await.unwrap().forget();
        Ok(())
    }
}

#[tokio::test]
async fn without_debounce_a_pending_job_absorbs_new_events_and_a_started_job_does_not() {
    let clock = manual_clock();
    let runner = GatedRunner::new();
    let app = TestApp::spawn_with(Options {
        clock: Some(clock.clone()),
        runner: Some(runner.clone()),
        handlers: vec![handler_toml("triage", "happyfox.ticket.*", None, "")],
        extra_config: FAST.into(),
        ..Options::default()
    })
    .await;
    let send = |n: u64, id: &'static str| {
        let app = &app;
        async move {
            let (status, ack) = app.send("happyfox", &ticket_update(7, n), id).await;
            assert_eq!(status, StatusCode::ACCEPTED, "{ack}");
            assert_eq!(ack["event_id"], id);
        }
    };

    // Keep the account busy with another ticket's job: one job at a time per account, so ticket
    // 7's job stays pending while the events below arrive.
    let (status, _) = app.send("happyfox", &ticket(1), "msg-busy").await;
    assert_eq!(status, StatusCode::ACCEPTED);
    eventually("the busy job to start", WAIT, || async {
        runner.started().len() == 1
    })
    .await;

    // Two events for ticket 7 while its job is pending: one job carrying both.
    let first_at = clock.now().timestamp_millis();
    send(1, "msg-7-a").await;
    clock.advance(Duration::from_secs(5));
    send(2, "msg-7-b").await;
    let pending = jobs_in(&app, Some(JobState::Pending)).await;
    assert_eq!(pending.len(), 1, "{pending:?}");
    let folded = &pending[0];
    assert_eq!((folded.subject.as_str(), folded.events), ("7", 2));
    assert_eq!(
        folded.run_at_ms, first_at,
        "without debounce the job stays due at its first event: the second does not push it"
    );

    // The account frees up: the folded job runs once, with both events.
    runner.gate.add_permits(1);
    eventually("the folded job to start", WAIT, || async {
        runner.started().len() == 2
    })
    .await;
    assert_eq!(
        runner.started()[1],
        (folded.id.0, vec!["msg-7-a".into(), "msg-7-b".into()])
    );

    // An event while that job runs does not join it: it gets a job of its own.
    send(3, "msg-7-c").await;
    let pending = jobs_in(&app, Some(JobState::Pending)).await;
    assert_eq!(pending.len(), 1, "{pending:?}");
    let while_running = &pending[0];
    assert_ne!(while_running.id, folded.id);
    assert_eq!(while_running.events, 1);
    let running = jobs_in(&app, Some(JobState::Running)).await;
    assert_eq!(
        running.iter().map(|j| j.id).collect::<Vec<_>>(),
        [folded.id]
    );

    // Both finish; an event after that gets a new job too.
    runner.gate.add_permits(2);
    eventually("three jobs done", WAIT, || async {
        jobs_in(&app, Some(JobState::Done)).await.len() == 3
    })
    .await;
    send(4, "msg-7-d").await;
    runner.gate.add_permits(1);
    eventually("four jobs done", WAIT, || async {
        jobs_in(&app, Some(JobState::Done)).await.len() == 4
    })
    .await;

    let runs: Vec<Vec<String>> = runner.started().into_iter().map(|(_, ids)| ids).collect();
    assert_eq!(
        runs,
        [
            vec!["msg-busy"],
            vec!["msg-7-a", "msg-7-b"],
            vec!["msg-7-c"],
            vec!["msg-7-d"],
        ],
        "one run per job, each seeing exactly the events it absorbed"
    );
    assert_eq!(jobs_in(&app, None).await.len(), 4);
    app.stop().await;
}
