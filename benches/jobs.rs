//! Scheduler throughput against backlog size: jobs claimed and completed per second by the real
//! scheduler (8 workers, no-op handler) on a SQLite store holding 1k, 100k and 1M pending jobs.
//! The per-job cost should stay flat as the backlog grows.
//!
//!   cargo bench --bench jobs                 # 1k, 100k, 1M
//!   BACKLOGS=1000,100000 cargo bench --bench jobs
//!   STORE=postgres://postgres@127.0.0.1:5432/test BACKLOGS=1000,100000 cargo bench --bench jobs
//!
//! With `STORE` (a PostgreSQL URL) the jobs live in its schema `hw_jobs_bench`, dropped and made
//! again for each backlog.

use async_trait::async_trait;
use hookwise::config::SchedulerConfig;
use hookwise::handler;
use hookwise::handler::HandlerSet;
use hookwise::kernel::clock::SystemClock;
use hookwise::kernel::event::{AccountId, Event, EventId, SourceName};
use hookwise::scheduler::{JobRunner, RunContext, RunError, Scheduler};
use hookwise::store::{self, Disposition, IngestItem, Route};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Jobs measured per backlog size, after a warm-up: together less than the smallest backlog, so
/// every measurement runs against a backlog of roughly the stated size.
const WARMUP: usize = 100;
const MEASURED: usize = 600;
const ACCOUNTS: usize = 1000;

struct Noop(AtomicUsize);

#[async_trait]
impl JobRunner for Noop {
    async fn run(&self, _: RunContext<'_>) -> Result<(), RunError> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

async fn fill(store: &store::SharedStore, n: usize) {
    let now = chrono::Utc::now();
    let mut batch = Vec::with_capacity(1024);
    for i in 0..n {
        let account = format!("acct-{}", i % ACCOUNTS);
        batch.push(IngestItem {
            event: Event {
                id: EventId::new(format!("evt-{i}")),
                source: SourceName::new("bench"),
                kind: "bench.work".into(),
                account: AccountId::new(account),
                subject: format!("s-{i}"),
                occurred_at: now,
                received_at: now,
                actor: None,
                payload: "{}".into(),
            },
            disposition: Disposition::Route(vec![Route {
                handler: "noop".into(),
                subject: format!("s-{i}"),
                period_ms: 0,
                max_wait_ms: 0,
                max_attempts: 3,
            }]),
            trace_context: None,
        });
        if batch.len() == 1024 || i + 1 == n {
            store.ingest(std::mem::take(&mut batch)).await.unwrap();
        }
    }
}

/// The PostgreSQL schema the jobs go in when `STORE` is set, and how it is emptied.
const SCHEMA: &str = "hw_jobs_bench";
const DROP_SCHEMA: &str = "DROP SCHEMA IF EXISTS hw_jobs_bench CASCADE";

async fn measure(backlog: usize, postgres: Option<&str>) -> (f64, f64) {
    let dir = tempfile::tempdir().unwrap();
    let url = match postgres {
        Some(server) => {
            let pool = sqlx::PgPool::connect(server).await.unwrap();
            sqlx::query(DROP_SCHEMA).execute(&pool).await.unwrap();
            let join = if server.contains('?') { '&' } else { '?' };
            format!("{server}{join}schema={SCHEMA}")
        }
        None => format!("sqlite://{}", dir.path().join("jobs.db").display()),
    };
    let store = store::open(&url).await.unwrap();
    store.migrate().await.unwrap();
    let filled = Instant::now();
    fill(&store, backlog).await;
    eprintln!(
        "  backlog {backlog}: filled in {:.1}s",
        filled.elapsed().as_secs_f64()
    );

    let handler = handler::parse_handler(
        Path::new("noop.toml"),
        "name = \"noop\"\non = [\"bench.work\"]\n[agent]\nprompt = \"noop\"\n",
    )
    .unwrap();
    let handlers = Arc::new(HandlerSet::new(vec![handler]));
    let runner = Arc::new(Noop(AtomicUsize::new(0)));
    let config = SchedulerConfig {
        workers: 8,
        poll_interval: Duration::from_millis(5),
        ..SchedulerConfig::default()
    };
    let scheduler = Scheduler::new(
        store.clone(),
        runner.clone(),
        handlers,
        Arc::new(SystemClock),
        config,
        Default::default(),
    );
    let stop = CancellationToken::new();
    let task = tokio::spawn(scheduler.run(stop.clone()));

    assert!(
        backlog >= WARMUP + MEASURED,
        "backlog must exceed {}",
        WARMUP + MEASURED
    );
    let warmup = WARMUP;
    while runner.0.load(Ordering::Relaxed) < warmup {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let start = Instant::now();
    while runner.0.load(Ordering::Relaxed) < warmup + MEASURED {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let elapsed = start.elapsed().as_secs_f64();
    stop.cancel();
    task.await.unwrap();
    let per_second = MEASURED as f64 / elapsed;
    (per_second, 1e6 / per_second)
}

fn main() {
    let backlogs: Vec<usize> = std::env::var("BACKLOGS")
        .ok()
        .map(|v| {
            v.split(',')
                .map(|n| n.trim().parse().expect("BACKLOGS: numbers"))
                .collect()
        })
        .unwrap_or_else(|| vec![1_000, 100_000, 1_000_000]);
    let postgres = std::env::var("STORE").ok().filter(|s| !s.is_empty());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut rows = Vec::new();
    for backlog in backlogs {
        let (rate, cost) = rt.block_on(measure(backlog, postgres.as_deref()));
        rows.push((backlog, rate, cost));
    }
    let base = rows[0].2;
    println!(
        "\njobs claimed + completed ({}, 8 workers, no-op handler, {MEASURED} jobs measured)",
        if postgres.is_some() {
            "PostgreSQL"
        } else {
            "SQLite"
        }
    );
    println!(
        "{:>10} {:>10} {:>12} {:>14}",
        "pending", "jobs/s", "us per job", "vs smallest"
    );
    for (backlog, rate, cost) in rows {
        println!(
            "{backlog:>10} {rate:>10.0} {cost:>12.0} {:>13.2}x",
            cost / base
        );
    }
}
