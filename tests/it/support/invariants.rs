//! What must hold after any fault, whatever the fault was: every acknowledged event stored once;
//! every job done, merged, dead with a reason, or pending with a reason; no write applied
//! upstream twice, by idempotency key (the journal) or by content; no two runs of one account
//! overlapping; no panic in the log. The fault suites (`upstream_faults`, the crash suites) call
//! `check` once things have settled (no job running) and report its figures.

use hookwise::store::{EventFilter, JobFilter, JobRecord, JobState, RunFilter, SharedStore};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};

/// A write as the fake upstream applied it (`path` below the API root, as the journal has it).
#[derive(Debug, Clone, PartialEq)]
pub struct Write {
    pub method: String,
    pub path: String,
    pub body: Value,
}

/// What the store held when the invariants were checked, for the figures.
#[derive(Debug, Default)]
pub struct Figures {
    pub events: usize,
    /// Jobs per state (`done`, `dead`, ...).
    pub jobs: BTreeMap<String, usize>,
    pub runs: usize,
    /// Journal entries, and how many of them are in doubt (sent, never answered).
    pub journaled: usize,
    pub in_doubt: usize,
    /// Writes the upstream applied.
    pub applied: usize,
}

/// Checks every invariant; panics listing each one that does not hold. `acked` are the
/// (source, event id) pairs the server acknowledged with a 2xx, `applied` the writes the fake
/// upstreams applied, `log` what the server logged.
pub async fn check(
    store: &SharedStore,
    acked: &[(String, String)],
    applied: &[Write],
    log: &str,
) -> Figures {
    let mut broken = Vec::new();
    let mut figures = Figures {
        applied: applied.len(),
        ..Figures::default()
    };

    // Every acknowledged event is stored, once.
    let events = all_events(store).await;
    figures.events = events.len();
    let mut stored: HashMap<(String, String), usize> = HashMap::new();
    for e in &events {
        *stored
            .entry((e.source.to_string(), e.event_id.to_string()))
            .or_default() += 1;
    }
    for (key, n) in &stored {
        if *n > 1 {
            broken.push(format!("event {key:?} stored {n} times"));
        }
    }
    for key in acked {
        if !stored.contains_key(key) {
            broken.push(format!("event {key:?} was acknowledged but is not stored"));
        }
    }

    // Every job has ended, or says why it has not.
    let jobs = all_jobs(store).await;
    let mut journal = Vec::new();
    for job in &jobs {
        *figures.jobs.entry(job.state.as_str().into()).or_default() += 1;
        if let Some(problem) = unexplained(store, job).await {
            broken.push(format!("job {} ({}): {problem}", job.id, job.account));
        }
        journal.extend(store.list_actions(job.id).await.unwrap());
    }

    // No write applied twice: each applied write has exactly one journal entry (its idempotency
    // key), no journal entry stands for two applied writes, and no content was applied twice.
    figures.journaled = journal.len();
    figures.in_doubt = journal.iter().filter(|a| a.state != "done").count();
    let mut keys: HashMap<&str, usize> = HashMap::new();
    for action in &journal {
        *keys.entry(action.key.as_str()).or_default() += 1;
    }
    for (key, n) in keys {
        if n > 1 {
            broken.push(format!("idempotency key {key} journaled {n} times"));
        }
    }
    let mut by_key: HashMap<&str, usize> = HashMap::new();
    for (i, write) in applied.iter().enumerate() {
        let same: Vec<_> = applied
            .iter()
            .enumerate()
            .filter(|(j, w)| *j != i && *w == write)
            .collect();
        if !same.is_empty() && same[0].0 > i {
            broken.push(format!(
                "applied {} times: {} {} {}",
                same.len() + 1,
                write.method,
                write.path,
                write.body
            ));
        }
        let entries: Vec<_> = journal
            .iter()
            .filter(|a| journaled_as(&a.request, write))
            .collect();
        match entries.as_slice() {
            [one] => *by_key.entry(one.key.as_str()).or_default() += 1,
            [] => broken.push(format!(
                "applied without a journal entry: {} {} {}",
                write.method, write.path, write.body
            )),
            many => broken.push(format!(
                "applied once, journaled under {} keys: {} {}",
                many.len(),
                write.method,
                write.path
            )),
        }
    }
    for (key, n) in by_key {
        if n > 1 {
            broken.push(format!("the write under {key} was applied {n} times"));
        }
    }

    // No two runs of one account at once.
    let runs = all_runs(store).await;
    figures.runs = runs.len();
    let mut per_account: BTreeMap<&str, Vec<(i64, i64, i64)>> = BTreeMap::new();
    for r in &runs {
        if r.run.outcome == "running" {
            broken.push(format!(
                "run {} of job {} is still running",
                r.id, r.run.job
            ));
        }
        per_account
            .entry(r.run.account.as_str())
            .or_default()
            .push((r.run.started_at_ms, r.run.finished_at_ms, r.id));
    }
    for (account, mut spans) in per_account {
        spans.sort();
        for pair in spans.windows(2) {
            let ((_, finished, a), (started, _, b)) = (pair[0], pair[1]);
            if started < finished {
                broken.push(format!(
                    "runs {a} and {b} of account {account} overlap by {} ms",
                    finished - started
                ));
            }
        }
    }

    if log.contains("panicked") {
        let line = log.lines().find(|l| l.contains("panicked")).unwrap();
        broken.push(format!("the log has a panic: {line}"));
    }

    assert!(
        broken.is_empty(),
        "{} invariant(s) broken ({figures:?}):\n{}",
        broken.len(),
        broken.join("\n")
    );
    figures
}

/// Why a job's state is not an explained one, if it is not.
async fn unexplained(store: &SharedStore, job: &JobRecord) -> Option<String> {
    let reason = job
        .last_error
        .as_deref()
        .is_some_and(|e| !e.trim().is_empty());
    match job.state {
        JobState::Done | JobState::Merged => None,
        JobState::Dead if reason => None,
        JobState::Dead => Some("dead without a reason".into()),
        JobState::Running => Some("still running".into()),
        JobState::Pending if reason => None,
        JobState::Pending => {
            // Waiting behind its account's pause is a reason; so is a run time not reached yet.
            let paused = store.account_pause(&job.account).await.unwrap().is_some();
            let later = job.run_at_ms > chrono::Utc::now().timestamp_millis();
            (!paused && !later).then(|| "pending and due, with no reason".into())
        }
    }
}

/// Whether a journal entry (`METHOD PATH BODY`, see `upstream::describe`) is `write`.
fn journaled_as(request: &str, write: &Write) -> bool {
    let mut parts = request.splitn(3, ' ');
    let (Some(method), Some(path)) = (parts.next(), parts.next()) else {
        return false;
    };
    let body = parts
        .next()
        .map(|b| serde_json::from_str(b).unwrap_or(Value::String(b.into())))
        .unwrap_or(Value::Null);
    method == write.method && path == write.path && body == write.body
}

async fn all_events(store: &SharedStore) -> Vec<hookwise::store::StoredEvent> {
    let mut all = Vec::new();
    loop {
        let page = store
            .list_events(&EventFilter {
                before_seq: all.last().map(|e: &hookwise::store::StoredEvent| e.seq),
                limit: 1000,
                ..EventFilter::default()
            })
            .await
            .unwrap();
        let done = page.len() < 1000;
        all.extend(page);
        if done {
            return all;
        }
    }
}

async fn all_jobs(store: &SharedStore) -> Vec<JobRecord> {
    let mut all = Vec::new();
    loop {
        let page = store
            .list_jobs(&JobFilter {
                before_id: all.last().map(|j: &JobRecord| j.id.0),
                limit: 1000,
                ..JobFilter::default()
            })
            .await
            .unwrap();
        let done = page.len() < 1000;
        all.extend(page);
        if done {
            return all;
        }
    }
}

async fn all_runs(store: &SharedStore) -> Vec<hookwise::store::StoredRun> {
    let mut all = Vec::new();
    loop {
        let page = store
            .list_runs(&RunFilter {
                before_id: all.last().map(|r: &hookwise::store::StoredRun| r.id),
                limit: 1000,
                ..RunFilter::default()
            })
            .await
            .unwrap();
        let done = page.len() < 1000;
        all.extend(page);
        if done {
            return all;
        }
    }
}
