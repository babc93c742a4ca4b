//! Token and cost budgets end to end, on a manual clock: a job whose account or handler has spent
//! its day does not start and waits, visibly, for the next UTC day (its attempt not counted); a run
//! that spends the rest of a budget stops after the step that did; every run records what it cost
//! by `[llm.prices]`, shown by `runs list`, `jobs show` and the API; and `check` names a bad
//! budget or price by its key.

use crate::agent::{Upstream, handler, tools};
use crate::support::fake_llm::{FakeLlm, Reply, llm_table, openai_calls, openai_text};
use crate::support::*;
use chrono::{DateTime, Utc};
use hookwise::kernel::clock::ManualClock;
use hookwise::store::{JobFilter, JobRecord, JobState, RunFilter, StoredRun, Usage};
use reqwest::StatusCode;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

/// Two hours before a UTC day ends: the budget window is 2026-12-03.
const LATE_EVENING: &str = "2026-12-03T22:00:00Z";
/// The next window starts.
const NEXT_MIDNIGHT: &str = "2026-12-04T00:00:00Z";

/// USD per million tokens for the fake's model, large enough that a test run's cost is readable:
/// the fake's answers cost 100 in + 20 out = $0.60 (a tool call) and 50 in + 10 out = $0.30
/// (the final text).
const PRICES: &str =
    "[llm.prices.\"test-model\"]\ninput_per_million = 3000.0\noutput_per_million = 15000.0\n";

fn utc(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

fn ms(text: &str) -> i64 {
    utc(text).timestamp_millis()
}

struct Setup {
    app: TestApp,
    llm: FakeLlm,
    clock: ManualClock,
    upstream: Arc<Upstream>,
}

/// A live `triage` handler (max 8 steps, one attempt) over the fake model, with `[budgets]` set
/// to `budgets`, at `LATE_EVENING` on a manual clock.
async fn setup(budgets: &str, script: Vec<Reply>) -> Setup {
    let clock = ManualClock::starting_at(utc(LATE_EVENING));
    let llm = FakeLlm::start(script).await;
    let upstream = Arc::new(Upstream::default());
    let app = TestApp::spawn_with(Options {
        clock: Some(clock.clone()),
        handlers: vec![handler("live", 8)],
        tools: tools(&upstream),
        extra_config: format!(
            "[scheduler]\npoll_interval = \"10ms\"\n\n{}{PRICES}\n[budgets]\n{budgets}\n",
            llm_table(&llm.url)
        ),
        ..Options::default()
    })
    .await;
    Setup {
        app,
        llm,
        clock,
        upstream,
    }
}

async fn the_job(app: &TestApp) -> JobRecord {
    let jobs = app.store.list_jobs(&JobFilter::default()).await.unwrap();
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    jobs.into_iter().next().unwrap()
}

/// Waits until the one job satisfies `done`, and returns it.
async fn job_when(app: &TestApp, what: &str, done: impl Fn(&JobRecord) -> bool) -> JobRecord {
    let start = std::time::Instant::now();
    loop {
        let jobs = app.store.list_jobs(&JobFilter::default()).await.unwrap();
        if let Some(job) = jobs.into_iter().find(&done) {
            return job;
        }
        assert!(start.elapsed() < WAIT, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn runs(app: &TestApp) -> Vec<StoredRun> {
    app.store.list_runs(&RunFilter::default()).await.unwrap()
}

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

async fn metrics(app: &TestApp) -> String {
    app.client
        .get(format!("{}/metrics", app.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn api(app: &TestApp, path: &str) -> Value {
    let (status, body) = read(
        app.client
            .get(format!("{}{path}", app.url))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{path}: {body}");
    body
}

fn assert_cost(got: &Value, want: f64) {
    let got = got
        .as_f64()
        .unwrap_or_else(|| panic!("a cost, found {got}"));
    assert!((got - want).abs() < 1e-9, "cost {got}, expected {want}");
}

#[tokio::test]
async fn an_account_over_its_day_budget_waits_for_the_next_day_then_runs_and_records_its_cost() {
    let s = setup(
        "account_tokens_per_day = 1000",
        vec![openai_text("Nothing to do.")],
    )
    .await;
    // Earlier today another handler's runs of acme spent more than the account's day (any
    // replica's steps land in the same store rows).
    s.app
        .store
        .add_usage(
            "2026-12-03",
            "acme",
            "followup",
            Usage {
                tokens: 1_200,
                cost_usd: 0.0,
            },
        )
        .await
        .unwrap();

    let (status, ack) = s.app.send("happyfox", &ticket(142), "msg-budget-1").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{ack}");
    let job = job_when(&s.app, "the job to be deferred", |j| j.last_error.is_some()).await;
    let reason = "account acme used 1,200 of 1,000 tokens on 2026-12-03";

    // Deferred, not failed: pending until the next UTC day, the attempt not counted.
    assert_eq!(job.state, JobState::Pending, "{job:?}");
    assert_eq!(job.attempts, 0, "a budget deferral spends no attempt");
    assert_eq!(job.run_at_ms, ms(NEXT_MIDNIGHT));
    let error = job.last_error.clone().unwrap();
    assert!(error.contains(reason), "{error}");
    // The run did not start: the model was never asked, nothing was recorded or sent.
    assert!(s.llm.received().is_empty());
    assert!(runs(&s.app).await.is_empty());
    assert!(s.upstream.calls().is_empty());

    // Visible where an operator looks: `jobs show`, the API, the metric.
    let shown = hookwise(&s.app, &["jobs", "show", &job.id.to_string()]).await;
    assert!(shown.contains("job 1: pending"), "{shown}");
    assert!(shown.contains("attempts  0/1"), "{shown}");
    assert!(shown.contains(reason), "{shown}");
    let body = api(&s.app, &format!("/api/jobs/{}", job.id)).await;
    assert!(
        body["job"]["last_error"].as_str().unwrap().contains(reason),
        "{body}"
    );
    let text = metrics(&s.app).await;
    assert!(
        text.contains("hookwise_budget_deferrals_total{scope=\"account\"} 1"),
        "{text}"
    );

    // Still the same day: the job stays where it is.
    s.clock.set(utc("2026-12-03T23:59:59Z"));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(the_job(&s.app).await.state, JobState::Pending);
    assert!(s.llm.received().is_empty());

    // The next day's budget is fresh: the job runs.
    s.clock.set(utc("2026-12-04T00:00:01Z"));
    let job = job_when(&s.app, "the job to run the next day", |j| {
        j.state == JobState::Done
    })
    .await;
    assert_eq!(job.attempts, 1, "the first attempt that ran");
    assert_eq!(s.llm.received().len(), 1);

    // Its cost by the price table: 50 in at $3000/M, 10 out at $15000/M.
    let all = runs(&s.app).await;
    assert_eq!(all.len(), 1);
    let run = &all[0];
    assert_eq!(run.run.outcome, "done");
    assert_eq!((run.run.input_tokens, run.run.output_tokens), (50, 10));
    let cost = run.run.cost_usd.expect("a priced model's run has a cost");
    assert!((cost - 0.30).abs() < 1e-9, "{cost}");
    // The day's usage counted it, in the new window.
    let day = s
        .app
        .store
        .usage("2026-12-04", "acme", "triage")
        .await
        .unwrap();
    assert_eq!(day.account.tokens, 60);
    assert!((day.handler.cost_usd - 0.30).abs() < 1e-9);

    let listed = api(&s.app, &format!("/api/runs?job={}", job.id)).await;
    assert_cost(&listed[0]["cost_usd"], 0.30);
    let one = api(&s.app, &format!("/api/runs/{}", run.id)).await;
    assert_cost(&one["cost_usd"], 0.30);
    let table = hookwise(&s.app, &["runs", "list"]).await;
    assert!(
        table.contains("cost") && table.contains("50/10") && table.contains("$0.3000"),
        "{table}"
    );
    let json = hookwise(&s.app, &["runs", "list", "--json"]).await;
    let line: Value = serde_json::from_str(json.lines().next().unwrap()).unwrap();
    assert_cost(&line["cost_usd"], 0.30);
    s.app.stop().await;
}

#[tokio::test]
async fn a_run_that_spends_the_budget_stops_after_that_step_and_resumes_the_next_day() {
    // Each tool-calling answer is 120 tokens: the second one takes the account to 240 of 200.
    let s = setup(
        "account_tokens_per_day = 200",
        vec![
            openai_calls(&[("call_1", "test__get_ticket", r#"{"ticket_id": 142}"#)]),
            openai_calls(&[(
                "call_2",
                "test__add_note",
                r#"{"ticket_id": 142, "text": "Refund the duplicate charge"}"#,
            )]),
            openai_text("Added the note."),
        ],
    )
    .await;
    let (status, ack) = s.app.send("happyfox", &ticket(142), "msg-budget-2").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{ack}");
    let job = job_when(&s.app, "the run to stop on its budget", |j| {
        j.last_error.is_some()
    })
    .await;

    // The step that crossed the budget was finished: its tool call was carried out.
    let calls = s.upstream.calls();
    let names: Vec<&str> = calls.iter().map(|c| c.0.as_str()).collect();
    assert_eq!(names, ["test.get_ticket", "test.add_note"]);
    // Then the run stopped: the model was not asked a third time.
    assert_eq!(s.llm.received().len(), 2);
    assert_eq!(s.llm.unused(), 1);

    assert_eq!(job.state, JobState::Pending, "{job:?}");
    assert_eq!(job.attempts, 0, "a budget stop spends no attempt");
    assert_eq!(job.run_at_ms, ms(NEXT_MIDNIGHT));
    let error = job.last_error.clone().unwrap();
    assert!(
        error.contains("account acme used 240 of 200 tokens on 2026-12-03"),
        "{error}"
    );

    // The run says how it ended, with the tokens and cost of both steps.
    let all = runs(&s.app).await;
    assert_eq!(all.len(), 1);
    let run = &all[0].run;
    assert_eq!(run.outcome, "budget_exceeded");
    assert_eq!(run.error.as_deref(), Some(error.as_str()));
    assert_eq!((run.input_tokens, run.output_tokens), (200, 40));
    let cost = run.cost_usd.expect("priced");
    assert!((cost - 1.20).abs() < 1e-9, "{cost}");
    let table = hookwise(&s.app, &["runs", "list"]).await;
    assert!(
        table.contains("budget_exceeded") && table.contains("$1.20"),
        "{table}"
    );
    let text = metrics(&s.app).await;
    assert!(
        text.contains("hookwise_budget_deferrals_total{scope=\"account\"} 1"),
        "{text}"
    );

    // The next day the job runs again and finishes.
    s.clock.set(utc("2026-12-04T00:00:01Z"));
    let job = job_when(&s.app, "the job to finish the next day", |j| {
        j.state == JobState::Done
    })
    .await;
    assert_eq!(job.attempts, 1);
    assert_eq!(s.llm.received().len(), 3);
    let all = runs(&s.app).await;
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].run.outcome, "done");
    s.app.stop().await;
}

#[tokio::test]
async fn a_handler_over_its_day_cost_waits_and_says_which_budget() {
    let s = setup("handler_cost_per_day = 1.0", vec![openai_text("Done.")]).await;
    // Today `triage` already cost $1.25 on another account.
    s.app
        .store
        .add_usage(
            "2026-12-03",
            "other-account",
            "triage",
            Usage {
                tokens: 10,
                cost_usd: 1.25,
            },
        )
        .await
        .unwrap();
    s.app.send("happyfox", &ticket(7), "msg-budget-3").await;
    let job = job_when(&s.app, "the job to be deferred", |j| j.last_error.is_some()).await;
    assert_eq!(job.state, JobState::Pending);
    assert_eq!(job.attempts, 0);
    let error = job.last_error.unwrap();
    assert!(
        error.contains("handler triage spent $1.25 of $1.00 on 2026-12-03"),
        "{error}"
    );
    assert!(s.llm.received().is_empty());
    let text = metrics(&s.app).await;
    assert!(
        text.contains("hookwise_budget_deferrals_total{scope=\"handler\"} 1"),
        "{text}"
    );
    // The account's own spending is not the handler's: another handler of acme would run.
    let acme = s
        .app
        .store
        .usage("2026-12-03", "acme", "triage")
        .await
        .unwrap();
    assert_eq!(acme.account, Usage::default());
    s.app.stop().await;
}

/// `hookwise check` in `dir` with `config` as hookwise.toml: (success, stderr + stdout).
fn check(config: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hookwise.toml"), config).unwrap();
    let handlers = dir.path().join("handlers");
    std::fs::create_dir_all(&handlers).unwrap();
    std::fs::write(
        handlers.join("triage.toml"),
        "on = [\"happyfox.ticket.created\"]\n[agent]\nprompt = \"Triage.\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hookwise"))
        .current_dir(dir.path())
        .arg("check")
        .env_remove("HOOKWISE_LISTEN")
        .env_remove("HOOKWISE_STORE")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    (out.status.success(), text)
}

const LLM: &str =
    "[llm]\nprovider = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\nmodel = \"test-model\"\n";

#[test]
fn check_names_each_bad_budget_and_price_by_its_key() {
    let (ok, text) = check(&format!(
        "{LLM}\n[llm.prices.\"test-model\"]\ninput_per_million = -1.0\noutput_per_million = 0.6\n\
         [llm.prices.\"other\"]\ninput_per_million = 0.1\noutput_per_milion = 0.2\n\
         \n[budgets]\naccount_tokens_per_day = 0\nhandler_cost_per_day = -5.0\nacount_cost_per_day = 1.0\n"
    ));
    assert!(!ok, "{text}");
    let line = |needles: &[&str]| {
        assert!(
            text.lines()
                .any(|l| l.contains("hookwise.toml") && needles.iter().all(|n| l.contains(n))),
            "a line with hookwise.toml and {needles:?} in:\n{text}"
        );
    };
    line(&["budgets.account_tokens_per_day", "greater than 0"]);
    line(&["budgets.handler_cost_per_day", "-5"]);
    line(&["acount_cost_per_day", "unknown key", "account_cost_per_day"]);
    line(&["test-model", "input_per_million", "-1"]);
    line(&["output_per_milion", "unknown key"]);
}

#[test]
fn check_warns_of_a_model_without_a_price_under_a_cost_budget() {
    let (ok, text) = check(&format!(
        "{LLM}\n[llm.prices.\"another-model\"]\ninput_per_million = 0.1\noutput_per_million = 0.2\n\
         \n[budgets]\naccount_cost_per_day = 5.0\n"
    ));
    assert!(ok, "a warning does not fail check:\n{text}");
    assert!(
        text.lines()
            .any(|l| l.contains("llm.model") && l.contains("test-model") && l.contains("no price")),
        "{text}"
    );
    // Without a cost budget a missing price is fine: runs record their cost as unknown.
    let (ok, text) = check(&format!(
        "{LLM}\n[budgets]\naccount_tokens_per_day = 5000\n"
    ));
    assert!(ok, "{text}");
    assert!(!text.contains("no price"), "{text}");
}
