//! Upstream faults under real jobs, on the real binary: signed events for two accounts start
//! jobs whose agent (the scripted fake model) adds a private note to each event's ticket at the
//! fake HappyFox, while the fake mistreats some of the writes: a 429 storm with `Retry-After` and
//! one without any wait, answers slower than the account's timeout, a connection dropped halfway
//! through the answer, a 5xx after the write was applied. After each round the shared
//! invariants (`support::invariants`) hold, and a write whose answer was lost is never sent
//! again: the fake applied it once, and the job's runs say why it was not repeated.
//!
//! `HOOKWISE_FAULT_ROUNDS` sets the rounds per fault (default 1); the figures are printed on
//! stderr (`-- --nocapture` shows them).

use crate::support::fake_happyfox::{BOT_STAFF_ID, FakeHappyfox, WriteFault};
use crate::support::fake_llm::{FakeLlm, Reply, openai_calls, openai_text};
use crate::support::invariants::{self, Figures};
use crate::support::process::{Proc, free_port, spawn_hookwise, wait_ready};
use crate::support::*;
use hookwise::store::{JobFilter, JobRecord, JobState, RunFilter, SharedStore};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// Events per round, alternating between the two accounts.
const EVENTS: u64 = 6;
/// The accounts' upstream timeout.
const TIMEOUT: Duration = Duration::from_millis(500);
/// Bound on a round settling.
const SETTLE: Duration = Duration::from_secs(25);
const ACCOUNTS: [&str; 2] = ["acme", "beta"];

struct Rig {
    _server: Proc,
    port: u16,
    log: std::path::PathBuf,
    happyfox: FakeHappyfox,
    _llm: FakeLlm,
    store: SharedStore,
    client: reqwest::Client,
    /// (source, event id) of every event acknowledged with a 2xx.
    acked: Vec<(String, String)>,
    next_ticket: u64,
    _dir: tempfile::TempDir,
}

/// The model: asked about a job, it adds one note to the job's ticket (named by the subject in
/// the first user message); told the tool's result, it is done.
fn note_then_done(request: &Value) -> Reply {
    let messages = request["messages"].as_array().cloned().unwrap_or_default();
    if messages.iter().any(|m| m["role"] == "tool") {
        return openai_text("Noted.");
    }
    let context = messages
        .iter()
        .find(|m| m["role"] == "user")
        .map(|m| m["content"].to_string())
        .unwrap_or_default();
    let ticket: u64 = context
        .split(", subject ")
        .nth(1)
        .and_then(|rest| rest.split('.').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no subject in {context}"));
    let arguments = json!({"ticket_id": ticket, "html": note(ticket)}).to_string();
    openai_calls(&[("c1", "happyfox__add_private_note", &arguments)])
}

fn note(ticket: u64) -> String {
    format!("<p>Looked at ticket {ticket}.</p>")
}

async fn rig() -> Rig {
    hookwise::init_tls();
    let dir = tempfile::tempdir().unwrap();
    let happyfox = FakeHappyfox::start().await;
    let llm = FakeLlm::start(Vec::new()).await;
    llm.respond_with(note_then_done);
    let handlers = dir.path().join("handlers");
    std::fs::create_dir_all(&handlers).unwrap();
    std::fs::write(
        handlers.join("note.toml"),
        "name = \"note\"\non = [\"multi.work\"]\nmode = \"live\"\nmax_attempts = 3\n\
         [agent]\nprompt = \"Add a private note to the ticket.\"\n\
         tools = [\"happyfox.add_private_note\"]\nmax_steps = 4\ndeadline = \"20s\"\n",
    )
    .unwrap();
    let accounts: String = ACCOUNTS
        .iter()
        .map(|a| {
            happyfox.account_toml(
                a,
                Some(BOT_STAFF_ID),
                &format!("timeout = \"{}ms\"\nmax_wait = \"3s\"", TIMEOUT.as_millis()),
            )
        })
        .collect();
    let db = dir.path().join("hookwise.db");
    let config = dir.path().join("hookwise.toml");
    std::fs::write(
        &config,
        config_text(
            &format!("sqlite://{}", db.display()),
            &handlers,
            &format!(
                "[scheduler]\npoll_interval = \"20ms\"\nretry_base = \"100ms\"\nretry_max = \"200ms\"\n\n{}\n{accounts}",
                fake_llm::llm_table(&llm.url)
            ),
        ),
    )
    .unwrap();
    let port = free_port();
    let log = dir.path().join("serve.log");
    let server = spawn_hookwise(&config, port, &log, "info");
    let client = reqwest::Client::new();
    wait_ready(&client, &format!("http://127.0.0.1:{port}/readyz")).await;
    let store = hookwise::store::open(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    Rig {
        _server: server,
        port,
        log,
        happyfox,
        _llm: llm,
        store,
        client,
        acked: Vec::new(),
        next_ticket: 5000,
        _dir: dir,
    }
}

impl Rig {
    /// Delivers `EVENTS` events (each a new ticket, accounts alternating), each twice: the
    /// second delivery is a duplicate. Returns the tickets.
    async fn deliver_round(&mut self) -> Vec<u64> {
        let fixture: Value = serde_json::from_slice(
            &std::fs::read(repo_path("fixtures/happyfox/ticket_created.json")).unwrap(),
        )
        .unwrap();
        let mut tickets = Vec::new();
        for i in 0..EVENTS {
            self.next_ticket += 1;
            let ticket = self.next_ticket;
            let mut copy = fixture.clone();
            copy["id"] = json!(ticket);
            self.happyfox.put_ticket(copy);
            let account = ACCOUNTS[i as usize % ACCOUNTS.len()];
            let body = json!({"account": account, "subject": ticket.to_string(), "n": ticket});
            for delivery in 0..2 {
                let response = self
                    .client
                    .post(format!("http://127.0.0.1:{}/webhooks/multi", self.port))
                    .header("content-type", "application/json")
                    .header("x-hookwise-token", "multi-token")
                    .body(body.to_string())
                    .send()
                    .await
                    .unwrap();
                let (status, ack) = read(response).await;
                assert_eq!(status, if delivery == 0 { 202 } else { 200 }, "{ack}");
                assert_eq!(ack["duplicate"], delivery == 1);
                if delivery == 0 {
                    let id = ack["event_id"].as_str().unwrap().to_string();
                    self.acked.push(("multi".into(), id));
                }
            }
            tickets.push(ticket);
        }
        tickets
    }

    async fn jobs(&self) -> Vec<JobRecord> {
        self.store
            .list_jobs(&JobFilter {
                limit: 10_000,
                ..JobFilter::default()
            })
            .await
            .unwrap()
    }

    /// Waits (bounded) until `settled` holds for the jobs of `tickets`.
    async fn settle(
        &self,
        tickets: &[u64],
        settled: impl Fn(&JobRecord) -> bool,
    ) -> Vec<JobRecord> {
        let started = Instant::now();
        loop {
            let jobs: Vec<JobRecord> = self
                .jobs()
                .await
                .into_iter()
                .filter(|j| tickets.iter().any(|t| j.subject == t.to_string()))
                .collect();
            if jobs.len() == tickets.len() && jobs.iter().all(&settled) {
                return jobs;
            }
            assert!(
                started.elapsed() < SETTLE,
                "the round did not settle within {SETTLE:?}: {jobs:#?}\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn invariants(&self) -> Figures {
        invariants::check(
            &self.store,
            &self.acked,
            &self.happyfox.applied_writes(),
            &self.log_text(),
        )
        .await
    }

    /// The notes the fake applied to `ticket`.
    fn notes_applied(&self, ticket: u64) -> usize {
        self.happyfox
            .received()
            .iter()
            .filter(|r| r.applied && r.path == format!("/ticket/{ticket}/staff_pvtnote/"))
            .count()
    }

    /// The tickets whose note met a fault, with the fault.
    fn faulted(&self) -> Vec<(u64, WriteFault)> {
        self.happyfox
            .received()
            .into_iter()
            .filter_map(|r| {
                let ticket = r
                    .path
                    .strip_prefix("/ticket/")?
                    .split('/')
                    .next()?
                    .parse()
                    .ok()?;
                Some((ticket, r.fault?))
            })
            .collect()
    }
}

fn rounds() -> usize {
    std::env::var("HOOKWISE_FAULT_ROUNDS")
        .ok()
        .map(|v| v.parse().expect("HOOKWISE_FAULT_ROUNDS: a number"))
        .unwrap_or(1)
}

fn report(what: &str, rounds: usize, faults: usize, took: Duration, figures: &Figures) {
    eprintln!(
        "upstream faults, {what}: {rounds} round(s), {faults} fault(s) injected, {:.1} s; \
         {} events, jobs {:?}, {} runs, {} writes applied, {} journaled ({} in doubt)",
        took.as_secs_f64(),
        figures.events,
        figures.jobs,
        figures.runs,
        figures.applied,
        figures.journaled,
        figures.in_doubt,
    );
}

fn ended(job: &JobRecord) -> bool {
    matches!(
        job.state,
        JobState::Done | JobState::Dead | JobState::Merged
    )
}

/// Rounds where `fault` hits the first `times` writes of each round and the write's answer is
/// lost, though the write was applied: every job still ends, each ticket has its note exactly
/// once, and each faulted job's runs say why the write was not sent again.
/// `evidence` is what the first run's error says about the fault.
async fn lost_answers(what: &str, faults: &[WriteFault], evidence: &str) {
    let mut rig = rig().await;
    let started = Instant::now();
    let rounds = rounds();
    let mut figures = Figures::default();
    for _ in 0..rounds {
        for fault in faults {
            rig.happyfox.inject(fault.clone(), 1);
        }
        let tickets = rig.deliver_round().await;
        let jobs = rig.settle(&tickets, ended).await;
        assert_eq!(rig.happyfox.faults_left(), 0, "every fault was met");
        figures = rig.invariants().await;
        for ticket in &tickets {
            assert_eq!(rig.notes_applied(*ticket), 1, "ticket {ticket}'s note");
        }
        for (ticket, fault) in rig.faulted() {
            let Some(job) = jobs.iter().find(|j| j.subject == ticket.to_string()) else {
                continue; // an earlier round's
            };
            // Sent once, its answer lost: the run failed saying so, the next attempt was told
            // the write is in doubt instead of sending it, and the job ended.
            assert_eq!(job.state, JobState::Done, "{fault:?}: {job:?}");
            let runs = rig
                .store
                .list_runs(&RunFilter {
                    job: Some(job.id),
                    limit: 100,
                    ..RunFilter::default()
                })
                .await
                .unwrap();
            let first = runs.iter().find(|r| r.run.attempt == 1).unwrap();
            let error = first.run.error.clone().unwrap_or_default();
            assert!(
                error.contains(evidence)
                    && error.contains("a write is not sent again, since it may have been applied"),
                "{fault:?}: the first run's error: {error}"
            );
            let rerun = runs.iter().find(|r| r.run.attempt == 2).unwrap();
            let steps = rerun.run.steps.to_string();
            assert!(steps.contains("never sent twice"), "{fault:?}: {steps}");
            let actions = rig.store.list_actions(job.id).await.unwrap();
            assert_eq!(actions.len(), 1, "{actions:?}");
            assert_ne!(actions[0].state, "done", "the journal holds it in doubt");
        }
    }
    report(
        what,
        rounds,
        rounds * faults.len(),
        started.elapsed(),
        &figures,
    );
    assert_eq!(figures.in_doubt, rounds * faults.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_slower_than_the_timeout_leave_writes_in_doubt_and_never_resent() {
    let slow = WriteFault::Slow(TIMEOUT * 3);
    lost_answers(
        "slow answers",
        &[slow.clone(), slow.clone(), slow],
        "no answer within the account's timeout of 500ms",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_dropped_mid_answer_leaves_the_write_in_doubt_and_never_resent() {
    let reset = WriteFault::ResetMidBody;
    lost_answers(
        "reset mid-body",
        &[reset.clone(), reset.clone(), reset],
        "error reading a body from connection: end of file before message length reached",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_5xx_after_the_write_was_applied_leaves_it_in_doubt_and_never_resent() {
    lost_answers(
        "5xx after apply",
        &[
            WriteFault::ErrorAfterApply(500),
            WriteFault::ErrorAfterApply(502),
            WriteFault::ErrorAfterApply(503),
        ],
        "happyfox answered 50",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_storm_with_retry_after_delays_the_writes_and_sends_each_once() {
    let mut rig = rig().await;
    let started = Instant::now();
    let rounds = rounds();
    let storm = 4;
    let mut figures = Figures::default();
    for _ in 0..rounds {
        rig.happyfox.inject(
            WriteFault::TooMany {
                retry_after: Some(1),
            },
            storm,
        );
        let tickets = rig.deliver_round().await;
        let jobs = rig.settle(&tickets, ended).await;
        figures = rig.invariants().await;
        for job in &jobs {
            assert_eq!(job.state, JobState::Done, "{job:?}");
        }
        for ticket in &tickets {
            assert_eq!(rig.notes_applied(*ticket), 1, "ticket {ticket}'s note");
        }
    }
    let refused = rig
        .happyfox
        .received()
        .iter()
        .filter(|r| r.status == 429)
        .count();
    assert_eq!(
        refused,
        rounds * storm,
        "the storm was met, and only the storm"
    );
    // Each 429 paused its account for the second it asked for, at least.
    assert!(started.elapsed() >= Duration::from_secs(storm as u64 / 2));
    report(
        "429 storm with Retry-After",
        rounds,
        refused,
        started.elapsed(),
        &figures,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_storm_without_a_wait_pauses_each_account_for_the_penalty_and_defers_its_jobs() {
    // One round: the pause is HappyFox's ten-minute penalty, so a second round would only queue.
    let mut rig = rig().await;
    let started = Instant::now();
    rig.happyfox
        .inject(WriteFault::TooMany { retry_after: None }, 100);
    let tickets = rig.deliver_round().await;
    // Each account's first write meets a 429 without a wait: the account pauses for the
    // penalty, longer than max_wait, so that job is deferred and the rest wait behind the pause.
    let jobs = rig
        .settle(&tickets, |j| {
            j.state == JobState::Pending
                && (j.attempts == 0 || j.last_error.as_deref().is_some_and(|e| e.contains("429")))
        })
        .await;
    let mut deferred = 0;
    for account in ACCOUNTS {
        let (until_ms, reason) = rig
            .store
            .account_pause(account)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{account} is not paused"));
        let left = until_ms - chrono::Utc::now().timestamp_millis();
        assert!(
            left > 9 * 60_000,
            "{account} paused for only {left} ms: {reason}"
        );
        deferred += jobs
            .iter()
            .filter(|j| j.account == account && j.last_error.is_some())
            .count();
    }
    assert_eq!(
        deferred,
        ACCOUNTS.len(),
        "one deferred job per account: {jobs:#?}"
    );
    let figures = rig.invariants().await;
    let posts = rig.happyfox.writes();
    assert_eq!(
        posts.len(),
        ACCOUNTS.len(),
        "one write per account met the storm; none was sent into the pause: {posts:#?}"
    );
    assert!(posts.iter().all(|p| p.status == 429 && !p.applied));
    assert_eq!(
        figures.journaled, 0,
        "a refused write leaves no journal entry"
    );
    report(
        "429 storm without a wait",
        1,
        posts.len(),
        started.elapsed(),
        &figures,
    );
}
