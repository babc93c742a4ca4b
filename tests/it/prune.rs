//! `hookwise prune` through the real binary on a real SQLite file: `--dry-run` counts what
//! `[retention]` no longer keeps and changes nothing; without it, exactly that goes and what is
//! still kept stays.

use crate::store_contract::{event, immediate, routed};
use hookwise::kernel::event::{EventId, SourceName};
use hookwise::store::{self, JobFinish, SharedStore};

const DAY: i64 = 86_400_000;

fn hookwise(config: &std::path::Path, args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hookwise"))
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

async fn has_event(store: &SharedStore, id: &str) -> bool {
    store
        .get_event(&SourceName::new("happyfox"), &EventId::new(id))
        .await
        .unwrap()
        .is_some()
}

/// The count printed for `kind` in the command's table.
fn count(out: &str, kind: &str) -> u64 {
    out.lines()
        .find_map(|l| {
            let mut words = l.split_whitespace();
            (words.next() == Some(kind)).then(|| words.next().unwrap().parse().unwrap())
        })
        .unwrap_or_else(|| panic!("no {kind} line in:\n{out}"))
}

#[tokio::test]
async fn prune_dry_run_counts_then_prune_deletes_exactly_that() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("hookwise.db").display());
    let config = dir.path().join("hookwise.toml");
    std::fs::write(
        &config,
        format!(
            "store = \"{url}\"\nhandlers_dir = \"{}\"\n\n[retention]\nevents = \"30d\"\njobs = \"30d\"\ndead_jobs = \"90d\"\nbatch = 2\n",
            dir.path().join("handlers").display()
        ),
    )
    .unwrap();

    // The binary reads the system clock: rows are written at times relative to now.
    let now = chrono::Utc::now().timestamp_millis();
    let store = store::open(&url).await.unwrap();
    store.migrate().await.unwrap();
    let old = now - 40 * DAY;
    let mut batch: Vec<_> = (0..3)
        .map(|i| routed(event(&format!("old{i}"), "acme", "t1", old), vec![]))
        .collect();
    batch.push(routed(event("recent", "acme", "t1", now - DAY), vec![]));
    batch.push(routed(
        event("job-event", "acme", "t2", old),
        vec![immediate("triage", "t2", 3)],
    ));
    let outcomes = store.ingest(batch).await.unwrap();
    let job = outcomes[4].jobs[0];
    store.claim_jobs("w1", old, 1, 60_000).await.unwrap();
    assert!(
        store
            .finish_job(job, "w1", old + 1_000, JobFinish::Done)
            .await
            .unwrap()
    );
    drop(store);

    let dry = hookwise(&config, &["prune", "--dry-run"]);
    assert!(dry.starts_with("would prune (events older than 30d, done jobs older than 30d, dead jobs older than 90d):"), "{dry}");
    assert_eq!(
        (count(&dry, "events"), count(&dry, "jobs")),
        (4, 1),
        "{dry}"
    );
    assert_eq!(count(&dry, "runs"), 0);
    let store = store::open(&url).await.unwrap();
    assert!(has_event(&store, "old0").await && store.get_job(job).await.unwrap().is_some());
    drop(store);

    // Four events with batch = 2: several rounds, one command.
    let pruned = hookwise(&config, &["prune"]);
    assert!(pruned.starts_with("pruned ("), "{pruned}");
    assert_eq!(
        (count(&pruned, "events"), count(&pruned, "jobs")),
        (4, 1),
        "{pruned}"
    );
    let store = store::open(&url).await.unwrap();
    for id in ["old0", "old1", "old2", "job-event"] {
        assert!(!has_event(&store, id).await, "{id} pruned");
    }
    assert!(store.get_job(job).await.unwrap().is_none());
    assert!(has_event(&store, "recent").await, "a day-old event is kept");

    let nothing = hookwise(&config, &["prune", "--dry-run"]);
    assert_eq!(
        count(&nothing, "events") + count(&nothing, "jobs"),
        0,
        "{nothing}"
    );
}

#[tokio::test]
async fn prune_refuses_when_retention_is_disabled() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hookwise.toml");
    std::fs::write(
        &config,
        format!(
            "store = \"sqlite://{}\"\n\n[retention]\nenabled = false\n",
            dir.path().join("hookwise.db").display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hookwise"))
        .arg("--config")
        .arg(&config)
        .arg("prune")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("retention is disabled"), "{stderr}");
}
