//! Contract: agent runs are kept with their transcripts, read back exactly, and listed newest
//! first by job, handler and account.

use super::*;
use hookwise::store::{JobFinish, RunFilter, RunRecord, StoredRun};
use serde_json::json;

contract!(
    a_recorded_run_reads_back_identical,
    get_of_a_missing_run_is_none,
    runs_of_one_job_list_newest_first,
    list_runs_filters_and_pages_newest_first,
    a_run_updated_as_it_goes_is_interrupted_when_its_lease_expires,
);

/// A run of `job` with a transcript that uses every step type, unicode, nesting and numbers.
fn run(job: JobId, handler: &str, account: &str, attempt: u32) -> RunRecord {
    RunRecord {
        job,
        handler: handler.into(),
        account: account.into(),
        attempt,
        mode: "dry-run".into(),
        model: "claude-test".into(),
        started_at_ms: T0 + i64::from(attempt) * 1_000,
        finished_at_ms: T0 + i64::from(attempt) * 1_000 + 750,
        outcome: "done".into(),
        error: None,
        input_tokens: 1_234,
        output_tokens: 56,
        cost_usd: None,
        steps: json!([
            {"type": "system", "text": "You triage tickets."},
            {"type": "user", "text": "Ticket 7 was updated: «Ça ne marche pas» 🚒"},
            {"type": "assistant", "text": "Looking it up.", "tool_calls": [
                {"id": "c1", "name": "get_ticket", "arguments": {"id": 7, "fields": ["status", null]}}
            ]},
            {"type": "tool_result", "call_id": "c1", "name": "get_ticket",
             "result": {"status": "open", "score": 0.25, "big": 9_007_199_254_740_993_u64}},
            {"type": "refused", "call_id": "c2", "name": "delete_ticket", "reason": "not allowed"},
            {"type": "intended_action", "call_id": "c3", "name": "add_note",
             "arguments": {"text": "line 1\nline 2"}, "mode": "dry-run"},
            {"type": "something_new", "x": [1, {"y": true}]}
        ]),
    }
}

async fn a_recorded_run_reads_back_identical(store: SharedStore) {
    let job = due_job(&store, "e1", "acme", "t1", T0).await;
    let mut failed = run(job, "triage", "acme", 2);
    failed.outcome = "failed".into();
    failed.error = Some("upstream said 502".into());
    failed.input_tokens = u64::from(u32::MAX) + 7;
    let id = store.record_run(&failed).await.unwrap();

    let got = store.get_run(id).await.unwrap().expect("the run is stored");
    assert_eq!(got.id, id);
    assert_eq!(got.run, failed, "every field, steps deep-equal");
    // Not just equal as values: key order and text survive as written.
    assert_eq!(
        serde_json::to_string(&got.run.steps).unwrap(),
        serde_json::to_string(&failed.steps).unwrap()
    );
    let listed = store.list_runs(&RunFilter::default()).await.unwrap();
    assert_eq!(listed, [got]);
}

async fn get_of_a_missing_run_is_none(store: SharedStore) {
    assert_eq!(store.get_run(1).await.unwrap(), None);
    let job = due_job(&store, "e1", "acme", "t1", T0).await;
    let id = store
        .record_run(&run(job, "triage", "acme", 1))
        .await
        .unwrap();
    assert_eq!(store.get_run(id + 1).await.unwrap(), None);
    assert_eq!(store.get_run(-1).await.unwrap(), None);
}

fn run_ids(runs: &[StoredRun]) -> Vec<i64> {
    runs.iter().map(|r| r.id).collect()
}

async fn runs_of_one_job_list_newest_first(store: SharedStore) {
    let job = due_job(&store, "e1", "acme", "t1", T0).await;
    let other = due_job(&store, "e2", "acme", "t2", T0).await;
    let mut ids = Vec::new();
    for attempt in 1..=3 {
        ids.push(
            store
                .record_run(&run(job, "triage", "acme", attempt))
                .await
                .unwrap(),
        );
    }
    store
        .record_run(&run(other, "triage", "acme", 1))
        .await
        .unwrap();

    let of_job = store
        .list_runs(&RunFilter {
            job: Some(job),
            ..RunFilter::default()
        })
        .await
        .unwrap();
    ids.reverse();
    assert_eq!(run_ids(&of_job), ids);
    let attempts: Vec<u32> = of_job.iter().map(|r| r.run.attempt).collect();
    assert_eq!(attempts, [3, 2, 1], "the latest attempt first");
    assert!(of_job.iter().all(|r| r.run.job == job));
}

async fn list_runs_filters_and_pages_newest_first(store: SharedStore) {
    let a = due_job(&store, "e1", "acme", "t1", T0).await;
    let b = due_job(&store, "e2", "bolt", "t1", T0).await;
    let r1 = store
        .record_run(&run(a, "triage", "acme", 1))
        .await
        .unwrap();
    let r2 = store
        .record_run(&run(b, "triage", "bolt", 1))
        .await
        .unwrap();
    let r3 = store
        .record_run(&run(a, "escalate", "acme", 1))
        .await
        .unwrap();
    let r4 = store
        .record_run(&run(b, "escalate", "bolt", 1))
        .await
        .unwrap();
    let r5 = store
        .record_run(&run(a, "triage", "acme", 2))
        .await
        .unwrap();

    let list = |filter: RunFilter| {
        let store = store.clone();
        async move { run_ids(&store.list_runs(&filter).await.unwrap()) }
    };
    assert_eq!(list(RunFilter::default()).await, [r5, r4, r3, r2, r1]);
    assert_eq!(
        list(RunFilter {
            handler: Some("triage".into()),
            ..RunFilter::default()
        })
        .await,
        [r5, r2, r1]
    );
    assert_eq!(
        list(RunFilter {
            account: Some("bolt".into()),
            ..RunFilter::default()
        })
        .await,
        [r4, r2]
    );
    assert_eq!(
        list(RunFilter {
            job: Some(a),
            handler: Some("escalate".into()),
            ..RunFilter::default()
        })
        .await,
        [r3]
    );
    assert!(
        list(RunFilter {
            account: Some("corp".into()),
            ..RunFilter::default()
        })
        .await
        .is_empty()
    );
    // Paging backwards: a page of two, then the next from the last id seen.
    let page = list(RunFilter {
        limit: 2,
        ..RunFilter::default()
    })
    .await;
    assert_eq!(page, [r5, r4]);
    assert_eq!(
        list(RunFilter {
            limit: 2,
            before_id: Some(r4),
            ..RunFilter::default()
        })
        .await,
        [r3, r2]
    );
    assert_eq!(
        list(RunFilter {
            before_id: Some(r2),
            ..RunFilter::default()
        })
        .await,
        [r1]
    );
}

async fn a_run_updated_as_it_goes_is_interrupted_when_its_lease_expires(store: SharedStore) {
    let job = due_job(&store, "e1", "acme", "t1", T0).await;
    let claimed = store.claim_jobs("w1", T0, 1, 30_000).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let mut started = run(job, "triage", "acme", 1);
    started.outcome = "running".into();
    started.steps = json!([{"type": "system", "text": "You triage tickets."}]);
    let id = store.record_run(&started).await.unwrap();
    // Two steps in, the process writes what it has (one transaction for every run that moved).
    let mut so_far = run(job, "triage", "acme", 1);
    so_far.outcome = "running".into();
    store.update_runs(vec![(id, so_far.clone())]).await.unwrap();
    assert_eq!(store.get_run(id).await.unwrap().unwrap().run, so_far);

    // It dies; the lease expires and the next claim reaps the job: the run says so, and keeps
    // the steps it took.
    let again = store
        .claim_jobs("w2", T0 + 31_000, 1, 30_000)
        .await
        .unwrap();
    assert_eq!(again.len(), 1, "the job runs again");
    let interrupted = store.get_run(id).await.unwrap().unwrap().run;
    assert_eq!(interrupted.outcome, "interrupted");
    assert_eq!(interrupted.finished_at_ms, T0 + 31_000);
    assert!(interrupted.error.unwrap().contains("killed or crashed"));
    assert_eq!(interrupted.steps, so_far.steps);
    assert_eq!(interrupted.input_tokens, so_far.input_tokens);

    // A checkpoint written late (queued before the run stopped) adds its steps and does not
    // reopen it.
    let mut late = so_far.clone();
    late.steps = json!([{"type": "system", "text": "You triage tickets."}, {"type": "assistant", "text": "late"}]);
    store.update_runs(vec![(id, late.clone())]).await.unwrap();
    let after = store.get_run(id).await.unwrap().unwrap().run;
    assert_eq!(
        (after.outcome.as_str(), after.finished_at_ms),
        ("interrupted", T0 + 31_000)
    );
    assert_eq!(after.steps, late.steps);
    assert!(after.error.is_some());

    // The new attempt's run is dropped (a panic) before it records its end; finishing the job
    // closes it. A run that recorded its end is left as it said.
    let mut second = run(job, "triage", "acme", 2);
    second.outcome = "running".into();
    let dropped = store.record_run(&second).await.unwrap();
    let finished = store
        .finish_job(
            job,
            "w2",
            T0 + 40_000,
            JobFinish::Dead { error: "x".into() },
        )
        .await
        .unwrap();
    assert!(finished);
    let closed = store.get_run(dropped).await.unwrap().unwrap().run;
    assert_eq!(
        (closed.outcome.as_str(), closed.finished_at_ms),
        ("interrupted", T0 + 40_000)
    );
    assert_eq!(
        store.get_run(id).await.unwrap().unwrap().run.finished_at_ms,
        T0 + 31_000
    );
}
