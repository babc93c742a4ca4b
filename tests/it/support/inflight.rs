//! Many runs in flight: a model that holds every answer, due jobs for many accounts written
//! straight into the store, and the real binary's resident memory. Shared by the bounded test
//! (tests/it/inflight.rs) and the benchmark that measures 5,000 runs at once
//! (benches/inflight.rs, which includes this file and `process` by path: nothing else of
//! `support` may be used here).
//!
//! A run here is one model request: the model answers "Done." without a tool call, so what is
//! measured is the scheduler and the agent around a request in flight, not tools.

use hookwise::kernel::event::{AccountId, Event, EventId, SourceName};
use hookwise::store::{Disposition, IngestItem, Route, SharedStore};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// The handler every job runs: no tools, one model request.
pub const HANDLER: &str = r#"name = "work"
on = ["load.work"]
mode = "live"
max_attempts = 1
[agent]
prompt = "Say that the ticket was seen."
tools = []
max_steps = 2
deadline = "5m"
"#;

/// One model request, from arrival to answer.
#[derive(Debug, Clone)]
pub struct Request {
    pub account: String,
    pub arrived: Instant,
    pub answered: Option<Instant>,
    /// The request body's size: the conversation the run holds, as sent.
    pub bytes: usize,
}

/// What the model saw.
#[derive(Default)]
pub struct Seen {
    pub in_flight: usize,
    pub max_in_flight: usize,
    per_account: HashMap<String, usize>,
    /// The most requests of one account in flight at once (1: runs of an account never overlap).
    pub max_per_account: usize,
    /// In order of arrival.
    pub requests: Vec<Request>,
}

struct State {
    hold: Duration,
    /// Answers wait while this is false (after their `hold`).
    gate: watch::Sender<bool>,
    seen: Mutex<Seen>,
}

/// An OpenAI-compatible model on loopback that holds each answer `hold`, and longer while its
/// gate is closed.
pub struct HeldModel {
    pub url: String,
    state: Arc<State>,
}

/// Which run a model request belongs to, read from the agent's context message ("Job 12 for
/// handler work on account hf-1, subject 5003."): (job, account, subject).
pub fn run_of(body: &Value) -> (i64, String, String) {
    let context = body["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["content"].as_str())
        .find(|c| c.starts_with("Job "))
        .unwrap_or_default();
    let words: Vec<&str> = context.split_whitespace().collect();
    let word = |i: usize, end: char| {
        words
            .get(i)
            .unwrap_or(&"?")
            .trim_end_matches(end)
            .to_string()
    };
    let job = words.get(1).and_then(|w| w.parse().ok()).unwrap_or(-1);
    (job, word(7, ','), word(9, '.'))
}

/// Takes a request out of `in_flight` however it ends (a dropped connection included).
struct Held {
    state: Arc<State>,
    index: usize,
    account: String,
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut seen = self.state.seen.lock().unwrap();
        seen.in_flight -= 1;
        *seen.per_account.get_mut(&self.account).unwrap() -= 1;
        seen.requests[self.index].answered = Some(Instant::now());
    }
}

impl HeldModel {
    /// Starts answering at once if `gated` is false; otherwise answers wait for `open`.
    pub async fn start(hold: Duration, gated: bool) -> Self {
        let (gate, _) = watch::channel(!gated);
        let state = Arc::new(State {
            hold,
            gate,
            seen: Mutex::new(Seen::default()),
        });
        let shared = state.clone();
        let answer = move |raw: axum::body::Bytes| {
            let state = shared.clone();
            async move {
                let body: Value = serde_json::from_slice(&raw).unwrap_or_default();
                let (_, account, _) = run_of(&body);
                let held = {
                    let mut seen = state.seen.lock().unwrap();
                    seen.in_flight += 1;
                    seen.max_in_flight = seen.max_in_flight.max(seen.in_flight);
                    let n = seen.per_account.entry(account.clone()).or_default();
                    *n += 1;
                    let n = *n;
                    seen.max_per_account = seen.max_per_account.max(n);
                    seen.requests.push(Request {
                        account: account.clone(),
                        arrived: Instant::now(),
                        answered: None,
                        bytes: raw.len(),
                    });
                    Held {
                        state: state.clone(),
                        index: seen.requests.len() - 1,
                        account,
                    }
                };
                tokio::time::sleep(state.hold).await;
                let mut gate = state.gate.subscribe();
                let _ = gate.wait_for(|open| *open).await;
                drop(held);
                axum::Json(json!({
                    "id": "chatcmpl-held", "object": "chat.completion", "created": 1, "model": "held",
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": "Done."}}],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}
                }))
            }
        };
        let app = axum::Router::new().route("/v1/chat/completions", axum::routing::post(answer));
        // A backlog for thousands of connections opened at once (tokio's default is 1,024).
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(8192).unwrap();
        let url = format!("http://{}/v1", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, state }
    }

    pub fn open(&self) {
        self.state.gate.send_replace(true);
    }

    pub fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.state.seen.lock().unwrap()
    }

    /// Waits (bounded) until `n` requests are in flight at once.
    pub async fn wait_in_flight(&self, n: usize, limit: Duration) {
        let start = Instant::now();
        while self.seen().in_flight < n {
            assert!(
                start.elapsed() < limit,
                "{} requests in flight after {limit:?}, expected {n}",
                self.seen().in_flight
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits (bounded) until `n` requests were answered.
    pub async fn wait_answered(&self, n: usize, limit: Duration) {
        let start = Instant::now();
        loop {
            let answered = {
                let seen = self.seen();
                seen.requests
                    .iter()
                    .filter(|r| r.answered.is_some())
                    .count()
            };
            if answered >= n {
                return;
            }
            assert!(
                start.elapsed() < limit,
                "{answered} of {n} requests answered after {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Writes the `work` handler into `dir`.
pub fn work_handler(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("work.toml"), HANDLER).unwrap();
}

/// The configuration: SQLite at `db`, the handlers in `handlers`, `workers` runs at once, the
/// model at `llm_url`.
pub fn config(db: &Path, handlers: &Path, workers: usize, llm_url: &str) -> String {
    format!(
        "listen = \"127.0.0.1:0\"\nstore = \"sqlite://{}\"\nhandlers_dir = \"{}\"\n\n\
         [scheduler]\nworkers = {workers}\npoll_interval = \"100ms\"\n\n\
         [llm]\nprovider = \"openai\"\nbase_url = \"{llm_url}\"\napi_key = \"k\"\nmodel = \"held\"\nmax_retries = 0\ntimeout = \"5m\"\n",
        db.display(),
        handlers.display()
    )
}

/// The jobs to run, oldest due first: `(account, subject)`.
pub fn accounts(n: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|i| (format!("acct-{i:05}"), format!("s-{i}")))
        .collect()
}

/// The `work` handler's jobs, with a small payload.
pub async fn add_due_jobs(store: &SharedStore, jobs: &[(String, String)]) {
    add_due_jobs_of(store, "work", &json!({"ticket": 1}).to_string(), jobs).await
}

/// Writes one due job of `handler` per `(account, subject)` into the store in one transaction,
/// each with one event carrying `payload`, due 1 ms apart in the order given (all in the past),
/// as a webhook would have.
pub async fn add_due_jobs_of(
    store: &SharedStore,
    handler: &str,
    payload: &str,
    jobs: &[(String, String)],
) {
    let start = chrono::Utc::now() - chrono::Duration::milliseconds(jobs.len() as i64 + 1);
    let batch = jobs
        .iter()
        .enumerate()
        .map(|(i, (account, subject))| {
            let at = start + chrono::Duration::milliseconds(i as i64);
            IngestItem {
                event: Event {
                    id: EventId::new(format!("load-{account}-{subject}")),
                    source: SourceName::new("load"),
                    kind: "load.work".into(),
                    account: AccountId::new(account.clone()),
                    subject: subject.clone(),
                    occurred_at: at,
                    received_at: at,
                    actor: None,
                    payload: payload.to_string(),
                },
                disposition: Disposition::Route(vec![Route {
                    handler: handler.into(),
                    subject: subject.clone(),
                    period_ms: 0,
                    max_wait_ms: 0,
                    max_attempts: 1,
                }]),
                trace_context: None,
            }
        })
        .collect();
    store.ingest(batch).await.unwrap();
}

/// Resident memory of process `pid`, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    super::process::status_kib(pid, "VmRSS:")
}

/// How far, at most, a job's turn at the model was from its place in the due order
/// (`due` = the jobs' `(account, subject)` oldest first, each account once).
pub fn max_displacement(requests: &[Request], due: &[(String, String)]) -> usize {
    let rank: HashMap<&str, usize> = due
        .iter()
        .enumerate()
        .map(|(i, (account, _))| (account.as_str(), i))
        .collect();
    requests
        .iter()
        .enumerate()
        .filter_map(|(turn, r)| rank.get(r.account.as_str()).map(|&due| turn.abs_diff(due)))
        .max()
        .unwrap_or(0)
}

/// The share of `workers` × the span from the first request to the last answer that requests
/// were in flight: 1.0 means every worker held a request all along.
pub fn utilization(requests: &[Request], workers: usize) -> f64 {
    let first = requests.iter().map(|r| r.arrived).min();
    let last = requests.iter().filter_map(|r| r.answered).max();
    let (Some(first), Some(last)) = (first, last) else {
        return 0.0;
    };
    let busy: f64 = requests
        .iter()
        .filter_map(|r| r.answered.map(|a| (a - r.arrived).as_secs_f64()))
        .sum();
    busy / (workers as f64 * (last - first).as_secs_f64())
}
