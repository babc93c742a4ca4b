//! Proof under SIGKILL: the real binary killed inside runs, round after round, while events
//! arrive and jobs make real writes to the fake HappyFox and Planhat. On SQLite one process is
//! killed and started again on the same file; on PostgreSQL two replicas share a schema, the one
//! holding a lease is killed each round, and every other round the replicas' database
//! connections are terminated under them (`pg_terminate_backend`, mid-transaction when it
//! lands there).
//!
//! After the rounds the survivors finish the backlog, and `support::workload::check_invariants`
//! holds: every acknowledged event stored once; every job done, merged or dead with a reason;
//! every write the fakes applied journaled under exactly one key and none applied twice; no two
//! runs of one account overlapping (by the store's run times, and in flight at the model,
//! killed runs included); no panic in any log. Some kill must have cut a run short.
//!
//! `cargo test` runs 3 rounds per store; `HOOKWISE_KILL_ROUNDS=100 cargo test --test it
//! kill_rounds -- --test-threads 1` is the long form (README, Development). With
//! `HOOKWISE_KILL_PG_RESTART=1` the PostgreSQL test also restarts the server itself every tenth
//! round (from round 5): it cuts every connection on the machine, so run it alone.

use crate::store_contract::TestSchema;
use crate::support::invariants::Figures;
use crate::support::process::Proc;
use crate::support::workload::*;
use hookwise::store::{JobFilter, JobRecord, JobState, SharedStore};
use serde_json::json;
use std::time::{Duration, Instant};

/// Events per round: some repeat a subject within the debounce period (one job), some are
/// delivered twice (one event).
const EVENTS_PER_ROUND: usize = 16;

fn rounds() -> usize {
    std::env::var("HOOKWISE_KILL_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
}

/// The events of round `round`: bodies distinct across rounds, over every account; every
/// fourth repeats the previous event's account and subject (folded into its job if that has
/// not started), every fifth is delivered twice (one event).
fn round_events(round: usize) -> Vec<(String, usize)> {
    (0..EVENTS_PER_ROUND)
        .map(|i| {
            let key = if i % 4 == 3 { i - 1 } else { i };
            let account = ACCOUNTS[key % ACCOUNTS.len()];
            let subject = FIRST_TICKET + (round + key) as u64 % SUBJECTS;
            let body =
                json!({"account": account, "subject": subject.to_string(), "round": round, "n": i})
                    .to_string();
            (body, if i % 5 == 0 { 2 } else { 1 })
        })
        .collect()
}

/// Waits (bounded) until some job is running, then a random while more (under 400 ms): the
/// moment a kill lands inside a run (reading context, waiting for the model, or writing).
/// Returns the lease owners of the jobs running when it waited long enough.
async fn inside_a_run(store: &SharedStore) -> Vec<String> {
    let start = Instant::now();
    loop {
        let running = store
            .list_jobs(&JobFilter {
                state: Some(JobState::Running),
                limit: 10_000,
                ..Default::default()
            })
            .await
            .unwrap();
        if !running.is_empty() {
            tokio::time::sleep(Duration::from_millis(fastrand::u64(0..400))).await;
            return running.into_iter().filter_map(|j| j.lease_owner).collect();
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no job started running"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Figures of one test, printed and checked: the kills must have cut runs short.
fn report(store_name: &str, figures: &Figures, jobs: &[JobRecord], world: &World, extra: &str) {
    let rerun = jobs.iter().filter(|j| j.attempts > 1).count();
    eprintln!(
        "kill_rounds {store_name}: {} rounds, {} events stored, jobs {:?} ({rerun} run again after a kill), {} runs, {} model answers, writes: {} journaled ({} in doubt, never sent again), {} applied upstream{extra}",
        rounds(),
        figures.events,
        figures.jobs,
        figures.runs,
        world.observed.lock().unwrap().answers,
        figures.journaled,
        figures.in_doubt,
        figures.applied,
    );
    assert!(rerun > 0, "no kill landed inside a run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_killed_at_random_moments_loses_nothing_and_writes_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hookwise.db");
    let url = format!("sqlite://{}", db.display());
    let world = world(&url, "").await;
    fastrand::seed(31);
    let mut server = Replica::new("serve");
    server.start(&world, &[]).await;
    let store = hookwise::store::open(&url).await.unwrap();
    let mut acked = Vec::new();
    for round in 0..rounds() {
        let deliveries = tokio::spawn(deliver_all(vec![server.url()], round_events(round)));
        inside_a_run(&store).await;
        server.kill();
        server.start(&world, &[]).await;
        acked.extend(deliveries.await.unwrap());
    }
    let (figures, jobs) = check_invariants(&store, &world, &acked, false).await;
    report("sqlite", &figures, &jobs, &world, "");
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_replicas_killed_and_cut_off_lose_nothing_and_write_once() {
    let test = "kill_rounds::postgres_replicas_killed_and_cut_off";
    let Some(schema) = TestSchema::create(test).await else {
        return;
    };
    // Named connections, so only this test's are terminated.
    let app_name = format!("kill_{}", schema.name);
    let world = world(&schema.url(&format!("application_name={app_name}")), "").await;
    let store = schema.open_store().await;
    fastrand::seed(37);
    let mut replicas = [Replica::new("a"), Replica::new("b")];
    for r in &mut replicas {
        r.start(&world, &[]).await;
    }
    let mut acked = Vec::new();
    let mut terminated = 0;
    // Restarting the server cuts every other test's connections too: only when asked, alone.
    let restart_server = std::env::var("HOOKWISE_KILL_PG_RESTART").is_ok_and(|v| v == "1");
    let mut restarts = 0;
    for round in 0..rounds() {
        let urls = replicas.iter().map(Replica::url).collect();
        let deliveries = tokio::spawn(deliver_all(urls, round_events(round)));
        if round % 2 == 1 {
            inside_a_run(&store).await;
            terminated += terminate_backends(&schema, &app_name).await;
        }
        if restart_server && round % 10 == 5 {
            inside_a_run(&store).await;
            restart_postgres();
            restarts += 1;
        }
        // The replica holding a lease, if one still does after the wait.
        let owners = inside_a_run(&store).await;
        let victim = replicas
            .iter()
            .position(|r| {
                let pid = r.proc.as_ref().map(Proc::pid).unwrap_or(0);
                owners
                    .iter()
                    .any(|o| o.starts_with(&format!("hookwise-{pid}-")))
            })
            .unwrap_or_else(|| fastrand::usize(..replicas.len()));
        replicas[victim].kill();
        replicas[victim].start(&world, &[]).await;
        acked.extend(deliveries.await.unwrap());
    }
    let (figures, jobs) = check_invariants(&store, &world, &acked, false).await;
    report(
        "postgres",
        &figures,
        &jobs,
        &world,
        &format!(", {terminated} connections terminated, {restarts} server restarts"),
    );
    drop(replicas);
    schema.drop().await;
}

/// Terminates every connection the replicas hold (named `app_name`), wherever it is: idle, in a
/// statement or inside a transaction. Returns how many were cut.
async fn terminate_backends(schema: &TestSchema, app_name: &str) -> i64 {
    let mut conn = schema.connect().await;
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name = $1 AND pid <> pg_backend_pid()) t",
    )
    .bind(app_name)
    .fetch_one(&mut conn)
    .await
    .unwrap()
}

/// Restarts the local PostgreSQL cluster (Debian's `pg_ctlcluster`, as `.ci/run` starts it) and
/// waits until it accepts connections again.
fn restart_postgres() {
    let version = std::fs::read_dir("/etc/postgresql")
        .expect("a Debian PostgreSQL cluster")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .max_by_key(|v| v.parse::<u32>().unwrap_or(0))
        .unwrap();
    let status = std::process::Command::new("pg_ctlcluster")
        .args(["--skip-systemctl-redirect", &version, "main", "restart"])
        .status()
        .expect("pg_ctlcluster runs");
    assert!(status.success(), "pg_ctlcluster {version} main restart");
}
