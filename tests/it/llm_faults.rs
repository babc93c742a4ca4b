//! The LLM failing in every way a provider does, under real jobs: a signed HappyFox webhook, the
//! agent with the real HappyFox tools against the fake HappyFox (writes journaled), and the
//! scripted fake model answering with a timeout, 500, 529, a truncated body, empty `choices`,
//! arguments that do not fit the schema and a tool nobody offered. Each run ends with a clear
//! outcome: the transient faults are retried with backoff (within the call, then as a later
//! attempt of the job), the model's own mistakes are refused back to it, a broken answer ends the
//! job dead with the reason; the ticket gets its note at most once and nothing panics.

use crate::support::fake_happyfox::{BOT_STAFF_ID, FakeHappyfox};
use crate::support::fake_llm::{FakeLlm, Reply, openai_calls, openai_text};
use crate::support::*;
use hookwise::store::{JobFilter, JobRecord, JobState, RunFilter, StoredRun};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// Per model call; a reply held longer is a timeout.
const LLM_TIMEOUT: Duration = Duration::from_millis(400);
/// Bound on any one scenario reaching the state it waits for.
const WAIT: Duration = Duration::from_secs(20);
const NOTE: &str = "<p>Charged twice: refund requested.</p>";

struct Rig {
    app: TestApp,
    happyfox: FakeHappyfox,
    llm: FakeLlm,
    webhook: Vec<u8>,
}

/// A live handler allowed `get_ticket` and `add_private_note`, two attempts per job, LLM calls
/// retried once within a run; `retry_base` is how long a failed attempt waits for the next.
async fn rig(script: Vec<Reply>, retry_base: &str) -> Rig {
    let happyfox = FakeHappyfox::start().await;
    let webhook = std::fs::read(repo_path("fixtures/happyfox/ticket_created.json")).unwrap();
    happyfox.put_ticket(serde_json::from_slice(&webhook).unwrap());
    let llm = FakeLlm::start(script).await;
    let handler = (
        "hf-live.toml".to_string(),
        "name = \"hf-live\"\non = [\"happyfox.ticket.created\"]\nmode = \"live\"\nmax_attempts = 2\n\
         [agent]\nprompt = \"Read the ticket, then note it.\"\n\
         tools = [\"happyfox.get_ticket\", \"happyfox.add_private_note\"]\n\
         max_steps = 8\ndeadline = \"15s\"\n"
            .to_string(),
    );
    let app = TestApp::spawn_with(Options {
        handlers: vec![handler],
        extra_config: format!(
            "[scheduler]\npoll_interval = \"10ms\"\nretry_base = \"{retry_base}\"\nretry_max = \"{retry_base}\"\n\n\
             [llm]\nprovider = \"openai\"\nbase_url = \"{}/v1\"\napi_key = \"test-key\"\nmodel = \"test-model\"\n\
             timeout = \"{}ms\"\nmax_retries = 1\n\n{}",
            llm.url,
            LLM_TIMEOUT.as_millis(),
            happyfox.account_toml("acme", Some(BOT_STAFF_ID), "")
        ),
        ..Options::default()
    })
    .await;
    Rig {
        app,
        happyfox,
        llm,
        webhook,
    }
}

impl Rig {
    async fn deliver(&self, msg_id: &str) {
        let (status, _) = self.app.send("happyfox", &self.webhook, msg_id).await;
        assert_eq!(status, StatusCode::ACCEPTED);
    }

    /// The job once `ended` holds for it (bounded).
    async fn job_when(&self, what: &str, ended: impl Fn(&JobRecord) -> bool) -> JobRecord {
        let start = Instant::now();
        loop {
            let jobs = self
                .app
                .store
                .list_jobs(&JobFilter::default())
                .await
                .unwrap();
            assert!(jobs.len() <= 1, "one webhook, one job: {jobs:?}");
            if let Some(job) = jobs.into_iter().find(|j| ended(j)) {
                return job;
            }
            assert!(start.elapsed() < WAIT, "no job {what} within {WAIT:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn finished(&self) -> JobRecord {
        self.job_when("done or dead", |j| {
            matches!(j.state, JobState::Done | JobState::Dead)
        })
        .await
    }

    /// Every run of the job, oldest first.
    async fn runs(&self) -> Vec<StoredRun> {
        let mut runs = self
            .app
            .store
            .list_runs(&RunFilter::default())
            .await
            .unwrap();
        runs.sort_by_key(|r| r.id);
        runs
    }

    /// The notes HappyFox received.
    fn notes(&self) -> usize {
        self.happyfox
            .writes()
            .iter()
            .filter(|w| w.path.contains("staff_pvtnote"))
            .count()
    }
}

fn read_ticket(id: &str) -> Reply {
    openai_calls(&[(id, "happyfox__get_ticket", r#"{"ticket_id": 142}"#)])
}

fn add_note(id: &str) -> Reply {
    let args = json!({"ticket_id": 142, "html": NOTE}).to_string();
    openai_calls(&[(id, "happyfox__add_private_note", &args)])
}

fn openai_error(status: u16, message: &str) -> Reply {
    Reply::status(
        status,
        json!({"error": {"message": message, "type": "server_error", "code": null}}),
    )
}

/// No run ended in a panic (it would be a failed attempt reading "the run panicked").
fn assert_no_panic(job: &JobRecord, runs: &[StoredRun]) {
    let errors = runs
        .iter()
        .filter_map(|r| r.run.error.as_deref())
        .chain(job.last_error.as_deref());
    for e in errors {
        assert!(!e.contains("panicked"), "{e}");
    }
}

/// The text of the last message the model was sent in request `n`.
fn told(llm: &FakeLlm, n: usize) -> String {
    let requests = llm.received();
    let last = requests[n].body["messages"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    last["content"].as_str().unwrap_or_default().to_string()
}

#[tokio::test]
async fn a_model_held_past_the_timeout_is_asked_again_and_the_note_is_added_once() {
    let rig = rig(
        vec![
            read_ticket("c1"),
            add_note("c2"),
            // Held past the client's timeout: the call is abandoned and retried.
            openai_text("Noted.").delayed(LLM_TIMEOUT * 5),
            openai_text("Noted."),
        ],
        "1h",
    )
    .await;
    rig.deliver("msg-timeout").await;
    let job = rig.finished().await;
    assert_eq!(job.state, JobState::Done, "{:?}", job.last_error);
    assert_eq!(
        job.attempts, 1,
        "retried within the run, not as a new attempt"
    );
    let received = rig.llm.received();
    assert_eq!(received.len(), 4);
    // The retry came after the timeout and a backoff, not at once.
    assert!(
        received[3].at - received[2].at >= LLM_TIMEOUT,
        "{:?}",
        received[3].at - received[2].at
    );
    assert_eq!(rig.notes(), 1);
    let runs = rig.runs().await;
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].run.outcome, "done");
    assert_no_panic(&job, &runs);
    rig.app.stop().await;
}

#[tokio::test]
async fn a_500_and_a_529_are_retried_with_backoff_within_the_run() {
    let rig = rig(
        vec![
            read_ticket("c1"),
            openai_error(500, "internal error"),
            add_note("c2"),
            openai_error(529, "overloaded"),
            openai_text("Noted."),
        ],
        "1h",
    )
    .await;
    rig.deliver("msg-5xx").await;
    let job = rig.finished().await;
    assert_eq!(job.state, JobState::Done, "{:?}", job.last_error);
    assert_eq!(job.attempts, 1);
    let received = rig.llm.received();
    assert_eq!(received.len(), 5);
    // 0.5 s backoff less at most a quarter of jitter, each time.
    for (failed, retry) in [(1, 2), (3, 4)] {
        let gap = received[retry].at - received[failed].at;
        assert!(gap >= Duration::from_millis(370), "{gap:?}");
    }
    assert_eq!(
        received[2].body["messages"], received[1].body["messages"],
        "the same conversation is sent again"
    );
    assert_eq!(rig.notes(), 1);
    assert_no_panic(&job, &rig.runs().await);
    rig.app.stop().await;
}

#[tokio::test]
async fn an_outage_outlasting_the_retries_leaves_the_job_pending_with_the_reason() {
    let rig = rig(
        vec![
            read_ticket("c1"),
            openai_error(529, "overloaded"),
            openai_error(529, "overloaded"),
        ],
        "1h",
    )
    .await;
    rig.deliver("msg-outage").await;
    let job = rig
        .job_when("pending again with a reason", |j| {
            j.state == JobState::Pending && j.last_error.is_some()
        })
        .await;
    let reason = job.last_error.clone().unwrap();
    assert!(reason.contains("LLM") && reason.contains("529"), "{reason}");
    assert_eq!(job.attempts, 1);
    assert!(
        job.run_at_ms > rig.app.now() * 1000 + 30 * 60 * 1000,
        "the next attempt waits for the scheduler's backoff"
    );
    assert_eq!(
        rig.llm.received().len(),
        3,
        "one call retried once, no more"
    );
    let runs = rig.runs().await;
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].run.outcome, "failed");
    assert_eq!(rig.notes(), 0);
    assert_no_panic(&job, &runs);
    rig.app.stop().await;
}

/// The note was sent, then the model went down for longer than the run's retries: the job fails
/// this attempt. The next attempt replays the conversation; the same call at the same step is
/// answered from the journal, so HappyFox gets the note once.
#[tokio::test]
async fn the_attempt_after_an_outage_does_not_add_the_note_again() {
    let rig = rig(
        vec![
            read_ticket("c1"),
            add_note("c2"),
            openai_error(500, "internal error"),
            openai_error(500, "internal error"),
            // The second attempt: the model asks for the same calls again.
            read_ticket("c1"),
            add_note("c2"),
            openai_text("Noted."),
        ],
        "200ms",
    )
    .await;
    rig.deliver("msg-rerun").await;
    let job = rig.finished().await;
    assert_eq!(job.state, JobState::Done, "{:?}", job.last_error);
    assert_eq!(job.attempts, 2);
    assert_eq!(rig.notes(), 1, "the write is sent once across attempts");
    let runs = rig.runs().await;
    assert_eq!(
        runs.iter()
            .map(|r| r.run.outcome.as_str())
            .collect::<Vec<_>>(),
        ["failed", "done"]
    );
    assert!(
        runs[0]
            .run
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("500"),
        "{:?}",
        runs[0].run.error
    );
    assert_eq!(rig.llm.unused(), 0);
    assert_no_panic(&job, &runs);
    rig.app.stop().await;
}

#[tokio::test]
async fn a_truncated_answer_ends_the_job_dead_with_the_reason() {
    let rig = rig(
        vec![
            read_ticket("c1"),
            Reply::raw(r#"{"id":"chatcmpl-1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assi"#),
        ],
        "1h",
    )
    .await;
    rig.deliver("msg-truncated").await;
    let job = rig.finished().await;
    assert_eq!(job.state, JobState::Dead);
    let reason = job.last_error.clone().unwrap();
    assert!(reason.contains("not a chat completion"), "{reason}");
    assert_eq!(
        rig.llm.received().len(),
        2,
        "a broken answer is not asked for again"
    );
    let runs = rig.runs().await;
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].run.outcome, "failed");
    assert_eq!(rig.notes(), 0);
    assert_no_panic(&job, &runs);
    rig.app.stop().await;
}

#[tokio::test]
async fn an_answer_without_choices_ends_the_job_dead_with_the_reason() {
    let rig = rig(
        vec![
            read_ticket("c1"),
            Reply::ok(json!({"id": "chatcmpl-1", "object": "chat.completion", "choices": []})),
        ],
        "1h",
    )
    .await;
    rig.deliver("msg-no-choices").await;
    let job = rig.finished().await;
    assert_eq!(job.state, JobState::Dead);
    let reason = job.last_error.clone().unwrap();
    assert!(reason.contains("no choices"), "{reason}");
    assert_eq!(rig.llm.received().len(), 2);
    assert_eq!(rig.notes(), 0);
    assert_no_panic(&job, &rig.runs().await);
    rig.app.stop().await;
}

#[tokio::test]
async fn bad_arguments_and_an_unknown_tool_are_refused_back_to_the_model() {
    let rig = rig(
        vec![
            read_ticket("c1"),
            // Not JSON; then JSON the schema refuses; then a tool nobody offered.
            openai_calls(&[(
                "c2",
                "happyfox__add_private_note",
                r#"{"ticket_id": 142, "html": "#,
            )]),
            openai_calls(&[(
                "c3",
                "happyfox__add_private_note",
                r#"{"ticket_id": "one", "html": 7}"#,
            )]),
            openai_calls(&[("c4", "happyfox__delete_ticket", r#"{"ticket_id": 142}"#)]),
            add_note("c5"),
            openai_text("Noted."),
        ],
        "1h",
    )
    .await;
    rig.deliver("msg-bad-args").await;
    let job = rig.finished().await;
    assert_eq!(job.state, JobState::Done, "{:?}", job.last_error);
    assert_eq!(rig.notes(), 1, "only the valid call reached HappyFox");
    assert!(
        told(&rig.llm, 2).contains("not valid JSON"),
        "{}",
        told(&rig.llm, 2)
    );
    assert!(
        told(&rig.llm, 3).contains("do not match the schema"),
        "{}",
        told(&rig.llm, 3)
    );
    let refusal = told(&rig.llm, 4);
    assert!(refusal.contains("delete_ticket"), "{refusal}");
    let runs = rig.runs().await;
    let steps = |kind: &str| -> Vec<Value> {
        let all = runs[0].run.steps.as_array().unwrap();
        all.iter().filter(|s| s["type"] == kind).cloned().collect()
    };
    assert_eq!(
        steps("tool_error").len(),
        2,
        "each refusal is in the transcript"
    );
    assert_eq!(steps("refused").len(), 1);
    assert_eq!(steps("refused")[0]["name"], "happyfox.delete_ticket");
    assert_no_panic(&job, &runs);
    rig.app.stop().await;
}
