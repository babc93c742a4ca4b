//! Many runs in flight (bounded form): the real binary with `[scheduler] workers = 40` and 248
//! due jobs against a model that holds every answer. The configured concurrency is reached and
//! never exceeded, an account's runs never overlap, jobs start oldest-due first, an account with
//! many jobs does not hold the others up, and every job ends done. Memory figures for 5,000 runs
//! at once come from `cargo bench --bench inflight` (bench/README.md).

use crate::support::inflight::{self, *};
use crate::support::process::*;
use hookwise::store::JobState;
use std::time::Duration;

const WORKERS: usize = 40;
/// One account with this many jobs, due before everyone else's.
const HOT_JOBS: usize = 8;
const OTHERS: usize = 240;

#[tokio::test]
async fn workers_stay_busy_and_jobs_start_oldest_due_first() {
    hookwise::init_tls();
    let model = HeldModel::start(Duration::from_millis(150), true).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hookwise.db");
    let config = dir.path().join("hookwise.toml");
    let handlers = dir.path().join("handlers");
    work_handler(&handlers);
    std::fs::write(
        &config,
        inflight::config(&db, &handlers, WORKERS, &model.url),
    )
    .unwrap();
    let port = free_port();
    let proc = spawn_hookwise(&config, port, &dir.path().join("serve.log"), "warn");
    wait_ready(
        &reqwest::Client::new(),
        &format!("http://127.0.0.1:{port}/readyz"),
    )
    .await;
    let idle = rss_kib(proc.pid());

    let hot: Vec<(String, String)> = (0..HOT_JOBS)
        .map(|i| ("acct-hot".to_string(), format!("hot-{i}")))
        .collect();
    let others = accounts(OTHERS);
    let store = hookwise::store::open_existing(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    add_due_jobs(&store, &[hot.clone(), others.clone()].concat()).await;

    // Every worker holds a request before any is answered: the claims filled them all, the busy
    // account's first job among them and its other jobs skipped, not waited for.
    model.wait_in_flight(WORKERS, Duration::from_secs(30)).await;
    let busy = rss_kib(proc.pid());
    model.open();
    model
        .wait_answered(HOT_JOBS + OTHERS, Duration::from_secs(60))
        .await;

    {
        let seen = model.seen();
        assert_eq!(
            seen.max_in_flight, WORKERS,
            "runs at once: the configured workers, never more"
        );
        assert_eq!(
            seen.max_per_account, 1,
            "two runs of one account overlapped"
        );
        let hot_runs = seen
            .requests
            .iter()
            .filter(|r| r.account == "acct-hot")
            .count();
        assert_eq!(hot_runs, HOT_JOBS, "every job of the busy account ran");
        // Claims go by due time, a wave of free workers at a time: no job waits behind more than
        // about a wave of later ones (a LIFO or random order would be hundreds of places off).
        let displacement = max_displacement(&seen.requests, &others);
        assert!(
            displacement <= 2 * WORKERS,
            "a job started {displacement} places from its due order (workers: {WORKERS})"
        );
        eprintln!(
            "inflight: {} runs, {WORKERS} workers, utilization {:.2}, max displacement {displacement}, \
             RSS idle {idle} KiB, with {WORKERS} in flight {busy} KiB (debug build)",
            seen.requests.len(),
            utilization(&seen.requests, WORKERS),
        );
    }

    let jobs = crate::support::workload::settled(&store).await;
    assert_eq!(jobs.len(), HOT_JOBS + OTHERS);
    assert!(
        jobs.iter().all(|j| j.state == JobState::Done),
        "every job ends done"
    );
}
