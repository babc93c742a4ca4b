//! A soak: the real binary on SQLite under a steady, realistic mix for a while, with retention
//! shortened so the store turns over during the run. Sampled over time: resident memory, open
//! file descriptors, threads, tasks alive in the async runtime (`hookwise_runtime_tasks`), the
//! database's size on disk (file + WAL) and the events it holds. Once retention has turned over,
//! each must stay flat; afterwards the backlog settles and the workload's invariants hold (jobs
//! explained, no write twice, no overlap, no panic).
//!
//! The mix, per second of `RATE` events: single events over every account and ticket, bursts on
//! one ticket (folded by debounce), a duplicate of an earlier delivery now and then, and every
//! 10 s a wave of NPS-like events on the Planhat accounts; each job makes one real write.
//!
//! `cargo test` runs it for 30 s; `HOOKWISE_SOAK_SECS=600 cargo test --test it soak --
//! --nocapture` is the 10-minute form (README, Development), and `HOOKWISE_SOAK_OUT=FILE`
//! writes the samples there as a Markdown table.

use crate::support::process::{Proc, status_kib};
use crate::support::workload::*;
use serde_json::json;
use std::time::{Duration, Instant};

/// Events per second, duplicates included.
const RATE: u64 = 20;

fn soak_secs() -> u64 {
    std::env::var("HOOKWISE_SOAK_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30)
}

/// One reading of the process and its store.
#[derive(Debug, Clone)]
struct Sample {
    at_s: f64,
    rss_kib: u64,
    fds: usize,
    threads: u64,
    tasks: u64,
    db_kib: u64,
    events: usize,
    sent: u64,
}

async fn sample(
    proc: &Proc,
    port: u16,
    db: &std::path::Path,
    store: &hookwise::store::SharedStore,
    at: Duration,
    sent: u64,
) -> Sample {
    let pid = proc.pid();
    let metrics = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let tasks = metrics
        .lines()
        .find_map(|l| l.strip_prefix("hookwise_runtime_tasks "))
        .and_then(|v| v.trim().parse().ok())
        .expect("hookwise_runtime_tasks in /metrics");
    let size = |p: std::path::PathBuf| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let db_bytes = size(db.to_path_buf()) + size(db.with_extension("db-wal"));
    let events = store
        .list_events(&hookwise::store::EventFilter {
            limit: 10_000,
            ..Default::default()
        })
        .await
        .unwrap()
        .len();
    Sample {
        at_s: at.as_secs_f64(),
        rss_kib: status_kib(pid, "VmRSS:"),
        fds: std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .count(),
        threads: status_kib(pid, "Threads:"),
        tasks,
        db_kib: db_bytes / 1024,
        events,
        sent,
    }
}

fn table(samples: &[Sample], retention_s: u64) -> String {
    let mut out = String::from(
        "# Soak: the real binary on SQLite under a steady mix\n\n\
         Written by `tests/it/soak.rs` (`HOOKWISE_SOAK_OUT`); README, Development, says how to run\n\
         it. Samples of the serving process and its database file over the run.\n\n\
         | time (s) | RSS (MiB) | open fds | threads | runtime tasks | db + wal (MiB) | events stored | events sent |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for s in samples {
        out.push_str(&format!(
            "| {:.0} | {:.1} | {} | {} | {} | {:.2} | {} | {} |\n",
            s.at_s,
            s.rss_kib as f64 / 1024.0,
            s.fds,
            s.threads,
            s.tasks,
            s.db_kib as f64 / 1024.0,
            s.events,
            s.sent
        ));
    }
    out.push_str(&format!(
        "\n{RATE} events/s; retention {retention_s} s for events and jobs.\n"
    ));
    out
}

/// The ticket the n-th event of the mix is about: eight tickets are live at a time and a new one
/// opens every two seconds, as tickets come and go at a help desk (notes to a handful of
/// tickets forever would grow each ticket, and every answer about it, without bound).
fn ticket(n: u64, k: u64) -> u64 {
    FIRST_TICKET + 1000 + n / (2 * RATE) + k % 8
}

/// The body of the n-th event of the mix.
fn mix(n: u64) -> String {
    let (account, subject) = match n % 10 {
        // A burst: five events on one ticket of one account in a quarter of a second.
        5..=9 => (ACCOUNTS[(n / 10 % 4) as usize], ticket(n, n / 10)),
        _ => (ACCOUNTS[(n % 4) as usize], ticket(n, n / 4)),
    };
    json!({"account": account, "subject": subject.to_string(), "n": n}).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_steady_mix_with_retention_turning_over_keeps_memory_fds_tasks_and_store_flat() {
    let secs = soak_secs();
    // Retention short enough to turn over in the first fifth of the run, pruning often.
    let retention = (secs / 5).max(6);
    let interval = (retention / 3).max(1);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hookwise.db");
    let url = format!("sqlite://{}", db.display());
    let world = world(
        &url,
        &format!(
            "[retention]\nevents = \"{retention}s\"\njobs = \"{retention}s\"\ndead_jobs = \"{retention}s\"\ninterval = \"{interval}s\"\n"
        ),
    )
    .await;
    let mut server = Replica::new("soak");
    server.start(&world, &[]).await;
    let port = server.port();
    let store = hookwise::store::open(&url).await.unwrap();
    let client = reqwest::Client::new();
    let send = |body: String| {
        let (client, url) = (client.clone(), server.url());
        async move {
            let r = client
                .post(&url)
                .header("content-type", "application/json")
                .header("x-hookwise-token", "multi-token")
                .body(body)
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success(), "{}", r.status());
        }
    };

    let every = Duration::from_secs(secs).div_f64(20.0);
    let start = Instant::now();
    let mut samples = Vec::new();
    let mut next_sample = Duration::ZERO;
    let mut ticker = tokio::time::interval(Duration::from_millis(1000 / RATE));
    let mut sent = 0u64;
    let mut n = 0u64;
    let mut in_flight = tokio::task::JoinSet::new();
    while start.elapsed() < Duration::from_secs(secs) {
        ticker.tick().await;
        let elapsed = start.elapsed();
        if elapsed >= next_sample {
            let proc = server.proc.as_ref().unwrap();
            samples.push(sample(proc, port, &db, &store, elapsed, sent).await);
            next_sample += every;
        }
        if n.is_multiple_of(2 * RATE) {
            // The tickets of the next two seconds exist before their events arrive.
            for k in 0..8 {
                world.open_ticket(ticket(n, k));
            }
        }
        // Every tenth delivery repeats an earlier one (a sender retrying); the rest are new.
        let body = if n % 10 == 3 && n > 20 {
            mix(n - 17)
        } else {
            mix(n)
        };
        in_flight.spawn(send(body));
        // An NPS wave on the Planhat accounts every 10 s.
        if n.is_multiple_of(RATE * 10) {
            for k in 0..10u64 {
                let account = ACCOUNTS[2 + (k % 2) as usize];
                let body =
                    json!({"account": account, "subject": format!("nps-{k}"), "wave": n, "k": k});
                in_flight.spawn(send(body.to_string()));
                sent += 1;
            }
        }
        n += 1;
        sent += 1;
        while let Some(done) = in_flight.try_join_next() {
            done.unwrap();
        }
    }
    while let Some(done) = in_flight.join_next().await {
        done.unwrap();
    }
    let proc = server.proc.as_ref().unwrap();
    samples.push(sample(proc, port, &db, &store, start.elapsed(), sent).await);
    let table = table(&samples, retention);
    eprintln!("soak over {secs} s:\n{table}");
    if let Ok(out) = std::env::var("HOOKWISE_SOAK_OUT") {
        std::fs::write(out, &table).unwrap();
    }

    // Flat once retention has turned over: from the first sample past two retention periods to
    // the end, against that sample.
    let turned = samples
        .iter()
        .position(|s| s.at_s >= (2 * retention + interval) as f64)
        .expect("retention turned over during the soak");
    let base = samples[turned].clone();
    let after = &samples[turned..];
    let most = |f: fn(&Sample) -> u64| after.iter().map(f).max().unwrap();
    let rss = most(|s| s.rss_kib);
    assert!(
        rss <= base.rss_kib + (base.rss_kib * 3 / 10).max(16 * 1024),
        "resident memory grew from {} KiB to {rss} KiB after retention turned over",
        base.rss_kib
    );
    let fds = most(|s| s.fds as u64);
    assert!(
        fds <= base.fds as u64 + 16,
        "open file descriptors grew from {} to {fds}",
        base.fds
    );
    let threads = most(|s| s.threads);
    assert!(
        threads <= base.threads + 4,
        "threads grew from {} to {threads}",
        base.threads
    );
    let tasks = most(|s| s.tasks);
    assert!(
        tasks <= base.tasks + 64,
        "runtime tasks grew from {} to {tasks}",
        base.tasks
    );
    let db_kib = most(|s| s.db_kib);
    assert!(
        db_kib <= base.db_kib * 3 / 2 + 1024,
        "the database grew from {} KiB to {db_kib} KiB although retention prunes",
        base.db_kib
    );
    // Pruning keeps up: what is stored is about what retention keeps (events of the last
    // retention period, plus one pruning interval, plus those jobs still refer to).
    let kept = (retention + 2 * interval) * (RATE + 2);
    let events = after.iter().map(|s| s.events).max().unwrap() as u64;
    assert!(
        events <= kept,
        "{events} events stored, retention should keep about {kept}"
    );

    // Retention pruned the early events and jobs: the invariants over what is left, with the
    // server stopped once the backlog settled, so nothing is pruned while they are checked.
    settled(&store).await;
    server.kill();
    let (figures, _) = check_invariants(&store, &world, &[], true).await;
    eprintln!("soak: {sent} events sent; left after pruning: {figures:?}");
    assert!(figures.applied > 0, "jobs ran and wrote");
    drop(server);
}
