//! Many runs in flight: the real (release) binary on SQLite with the bundled handlers, due jobs
//! of the HappyFox triage handler for thousands of accounts (each with the 4.5 KB fixture ticket:
//! the handler's prompt, its tools offered, the event fenced in), and a model that holds every
//! answer (2 s by default) and then answers without a tool call. Three readings, each in its own
//! process and store:
//!
//! 1. idle: resident memory once started, nothing to do;
//! 2. all at once: `workers` = RUNS and RUNS due jobs, one per account. The model answers nothing
//!    until every run has its request in flight; then resident memory, and per run
//!    (with RUNS in flight − idle) / RUNS, beside the size of the conversation each run sent;
//!    memory after the burst, and after a second burst as large (freed memory is reused);
//! 3. busy and fair: `workers` = RUNS / 10, the same jobs plus one account with 10 jobs due
//!    first. Utilization (the share of workers × wall time a request was in flight), the most
//!    runs at once and per account, and how far a job's start was from its place in the due order.
//!
//! `cargo bench --bench inflight`; `HOOKWISE_INFLIGHT_RUNS` (default 5000) and
//! `HOOKWISE_INFLIGHT_HOLD_MS` (default 2000) change the load. Loopback only; about a minute and a half.

#[path = "../tests/it/support/inflight.rs"]
#[allow(dead_code)]
mod inflight;
#[path = "../tests/it/support/process.rs"]
#[allow(dead_code)]
mod process;

use inflight::*;
use process::*;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A file of the repository (`process` reads deploy/ with it too).
fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A served store with `workers` and the model at `llm_url`; returns the process and its store.
async fn serve(dir: &Path, workers: usize, llm_url: &str) -> (Proc, hookwise::store::SharedStore) {
    let db = dir.join("hookwise.db");
    let config = dir.join("hookwise.toml");
    std::fs::write(
        &config,
        inflight::config(&db, &repo_path("handlers"), workers, llm_url),
    )
    .unwrap();
    let port = free_port();
    let proc = spawn_hookwise(&config, port, &dir.join("serve.log"), "warn");
    wait_ready(
        &reqwest::Client::new(),
        &format!("http://127.0.0.1:{port}/readyz"),
    )
    .await;
    let store = hookwise::store::open_existing(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    (proc, store)
}

/// Due triage jobs for `jobs`, each with the fixture ticket.
async fn add_triage_jobs(store: &hookwise::store::SharedStore, jobs: &[(String, String)]) {
    let ticket =
        std::fs::read_to_string(repo_path("fixtures/happyfox/ticket_created.json")).unwrap();
    add_due_jobs_of(store, "happyfox-triage", &ticket, jobs).await;
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

#[tokio::main]
async fn main() {
    hookwise::init_tls();
    let runs = env_or("HOOKWISE_INFLIGHT_RUNS", 5000) as usize;
    let hold = Duration::from_millis(env_or("HOOKWISE_INFLIGHT_HOLD_MS", 2000));
    let limit = Duration::from_secs(120) + hold * 20;
    println!("inflight: {runs} runs, each model answer held {hold:?}");

    // 1. Idle.
    let idle = {
        let model = HeldModel::start(hold, false).await;
        let dir = tempfile::tempdir().unwrap();
        let (proc, _store) = serve(dir.path(), runs, &model.url).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let pid = proc.pid();
        println!(
            "idle: RSS {:.1} MiB = anonymous (heap, stacks) {:.1} MiB + file-backed (the binary's \
             pages, shared) {:.1} MiB",
            mib(rss_kib(pid)),
            mib(status_kib(pid, "RssAnon:")),
            mib(status_kib(pid, "RssFile:"))
        );
        rss_kib(pid)
    };

    // 2. Every run in flight at once.
    {
        let model = HeldModel::start(hold, true).await;
        let dir = tempfile::tempdir().unwrap();
        let (proc, store) = serve(dir.path(), runs, &model.url).await;
        let before = rss_kib(proc.pid());
        let start = Instant::now();
        add_triage_jobs(&store, &accounts(runs)).await;
        model.wait_in_flight(runs, limit).await;
        let filled = start.elapsed();
        // Let allocations settle (connections' buffers, the run writer's batch).
        tokio::time::sleep(Duration::from_millis(300)).await;
        let busy = rss_kib(proc.pid());
        model.open();
        model.wait_answered(runs, limit).await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let after = rss_kib(proc.pid());
        // A second burst as large: the memory the first one freed is reused, not added to.
        let again: Vec<(String, String)> = accounts(runs)
            .into_iter()
            .map(|(account, subject)| (account, format!("again-{subject}")))
            .collect();
        add_triage_jobs(&store, &again).await;
        model.wait_answered(2 * runs, limit).await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let second = rss_kib(proc.pid());
        let seen = model.seen();
        let conversation = seen.requests[..runs].iter().map(|r| r.bytes).sum::<usize>() as f64
            / runs as f64
            / 1024.0;
        println!(
            "all at once: {runs} in flight {:.2} s after the jobs were committed; RSS before {:.1} MiB, \
             with {runs} in flight {:.1} MiB, 3 s after the last answer {:.1} MiB; after a second \
             burst of {runs} {:.1} MiB",
            filled.as_secs_f64(),
            mib(before),
            mib(busy),
            mib(after),
            mib(second)
        );
        println!(
            "  per run in flight: {:.1} KiB above idle ({:.1} KiB above this process before the \
             jobs), of which the conversation sent is {conversation:.1} KiB",
            (busy.saturating_sub(idle)) as f64 / runs as f64,
            (busy.saturating_sub(before)) as f64 / runs as f64,
        );
        println!(
            "  most in flight: {}, per account: {}",
            seen.max_in_flight, seen.max_per_account
        );
    }

    // 3. Fewer workers than jobs: busy, oldest-due first, an account with many jobs beside the rest.
    {
        let workers = (runs / 10).max(1);
        let model = HeldModel::start(hold, false).await;
        let dir = tempfile::tempdir().unwrap();
        let (_proc, store) = serve(dir.path(), workers, &model.url).await;
        let hot: Vec<(String, String)> = (0..10)
            .map(|i| ("acct-hot".to_string(), format!("hot-{i}")))
            .collect();
        let others = accounts(runs);
        let start = Instant::now();
        add_triage_jobs(&store, &[hot, others.clone()].concat()).await;
        model.wait_answered(runs + 10, limit).await;
        let wall = start.elapsed();
        let seen = model.seen();
        let ideal = hold.as_secs_f64() * (runs as f64 / workers as f64).ceil();
        println!(
            "busy and fair: {} runs with {workers} workers in {:.1} s (ideal {ideal:.1} s); \
             utilization {:.3}; most in flight {}, per account {}; furthest from due order: {} places",
            runs + 10,
            wall.as_secs_f64(),
            utilization(&seen.requests, workers),
            seen.max_in_flight,
            seen.max_per_account,
            max_displacement(&seen.requests, &others),
        );
    }
}
