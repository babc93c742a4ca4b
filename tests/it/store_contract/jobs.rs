//! Contract: claims, leases, finishing, merging, retrying dead jobs, listing, and next_due.

use super::*;
use hookwise::store::{JobFilter, JobFinish, JobState, QueueGauges, RetryResult};
use std::time::Duration;

contract!(
    claim_takes_one_job_per_idle_account_up_to_limit,
    expired_lease_requeues_counting_the_attempt_then_dies_at_max,
    finish_by_a_stale_owner_changes_nothing,
    finishes_in_one_batch_are_each_what_finish_job_would_record,
    finish_retry_release_and_dead,
    requeue_merges_into_the_pending_job_of_its_key,
    retry_requeues_dead_merges_or_refuses,
    list_jobs_filters_and_pages_newest_first,
    next_due_is_the_earliest_run_or_lease_expiry,
    queue_gauges_count_waiting_work_per_account,
    ingest_says_which_events_folded_into_a_pending_job,
);

const LEASE: i64 = 30_000;

async fn claim(store: &SharedStore, owner: &str, now: i64, limit: usize) -> Vec<JobWithEvents> {
    store.claim_jobs(owner, now, limit, LEASE).await.unwrap()
}

async fn claim_takes_one_job_per_idle_account_up_to_limit(store: SharedStore) {
    let a1 = due_job(&store, "a1", "acme", "t1", T0).await;
    let a2 = due_job(&store, "a2", "acme", "t2", T0 + 1).await;
    let b1 = due_job(&store, "b1", "bolt", "t1", T0 + 2).await;
    let c1 = due_job(&store, "c1", "corp", "t1", T0 + 3).await;
    let later = due_job(&store, "d1", "dyna", "t1", T0 + 10_000).await;

    assert!(claim(&store, "w1", T0 + 5, 0).await.is_empty());
    // Oldest first, but acme's second job waits for its first.
    let first = claim(&store, "w1", T0 + 5, 2).await;
    assert_eq!(ids(&first), [a1, b1]);
    let a = &first[0];
    assert_eq!(a.job.state, JobState::Running);
    assert_eq!(a.job.attempts, 1);
    assert_eq!(a.job.lease_owner.as_deref(), Some("w1"));
    assert_eq!(a.job.lease_until_ms, Some(T0 + 5 + LEASE));
    assert_eq!(a.job.updated_at_ms, T0 + 5);
    assert_eq!(event_ids(a), ["a1"]);
    assert_eq!(a.job.events, 1);

    // Another worker: acme and bolt are busy, dyna is not due.
    assert_eq!(ids(&claim(&store, "w2", T0 + 5, 10).await), [c1]);
    assert!(claim(&store, "w2", T0 + 5, 10).await.is_empty());

    assert!(
        store
            .finish_job(a1, "w1", T0 + 6, JobFinish::Done)
            .await
            .unwrap()
    );
    assert_eq!(ids(&claim(&store, "w2", T0 + 6, 10).await), [a2]);
    assert_eq!(ids(&claim(&store, "w2", T0 + 10_000, 10).await), [later]);
    let running = store
        .list_jobs(&JobFilter {
            state: Some(JobState::Running),
            limit: 100,
            ..JobFilter::default()
        })
        .await
        .unwrap();
    let mut accounts: Vec<&str> = running.iter().map(|j| j.account.as_str()).collect();
    accounts.sort();
    assert_eq!(accounts, ["acme", "bolt", "corp", "dyna"]);
}

async fn expired_lease_requeues_counting_the_attempt_then_dies_at_max(store: SharedStore) {
    let o = ingest_one(
        &store,
        event("e1", "acme", "t1", T0),
        vec![immediate("triage", "t1", 2)],
    )
    .await;
    let id = o.jobs[0];
    let lease = 1_000;
    let claimed = store.claim_jobs("w1", T0, 1, lease).await.unwrap();
    assert_eq!(ids(&claimed), [id]);

    // At the expiry instant the lease still holds.
    assert!(
        store
            .claim_jobs("w2", T0 + lease, 1, lease)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(job(&store, id).await.job.lease_owner.as_deref(), Some("w1"));

    // Past it, a claim reaps: back to pending, the lost run counted (limit 0: reap only).
    let now = T0 + lease + 1;
    assert!(
        store
            .claim_jobs("w2", now, 0, lease)
            .await
            .unwrap()
            .is_empty()
    );
    let j = job(&store, id).await.job;
    assert_eq!(j.state, JobState::Pending);
    assert_eq!((j.attempts, j.run_at_ms), (1, now));
    assert_eq!((j.lease_owner, j.lease_until_ms), (None, None));
    assert!(j.last_error.unwrap().starts_with("lease expired"));

    let again = store.claim_jobs("w2", now, 1, lease).await.unwrap();
    assert_eq!(ids(&again), [id]);
    assert_eq!(again[0].job.attempts, 2);

    // Out of attempts: the next expiry is final.
    let later = now + lease + 1;
    assert!(
        store
            .claim_jobs("w3", later, 1, lease)
            .await
            .unwrap()
            .is_empty()
    );
    let j = job(&store, id).await.job;
    assert_eq!(j.state, JobState::Dead);
    assert_eq!(j.attempts, 2);
    assert_eq!(j.finished_at_ms, Some(later));
    assert_eq!((j.lease_owner, j.lease_until_ms), (None, None));
    assert!(j.last_error.unwrap().starts_with("lease expired"));
}

async fn finish_by_a_stale_owner_changes_nothing(store: SharedStore) {
    let id = due_job(&store, "e1", "acme", "t1", T0).await;
    claim(&store, "w1", T0, 1).await;
    let before = job(&store, id).await;
    for finish in [
        JobFinish::Done,
        JobFinish::Release,
        JobFinish::Dead { error: "x".into() },
        JobFinish::Retry {
            at_ms: T0,
            error: "x".into(),
        },
    ] {
        assert!(!store.finish_job(id, "w2", T0 + 1, finish).await.unwrap());
    }
    assert!(!store.extend_lease(id, "w2", T0 + 99_999).await.unwrap());
    assert_eq!(job(&store, id).await, before);

    assert!(store.extend_lease(id, "w1", T0 + 50_000).await.unwrap());
    assert_eq!(job(&store, id).await.job.lease_until_ms, Some(T0 + 50_000));
    assert!(
        store
            .finish_job(id, "w1", T0 + 2, JobFinish::Done)
            .await
            .unwrap()
    );
    let done = job(&store, id).await.job;
    assert_eq!(done.state, JobState::Done);
    assert_eq!(done.finished_at_ms, Some(T0 + 2));
    assert_eq!((done.lease_owner, done.lease_until_ms), (None, None));
    // Finished is finished: the owner cannot finish or extend it again.
    assert!(
        !store
            .finish_job(id, "w1", T0 + 3, JobFinish::Release)
            .await
            .unwrap()
    );
    assert!(!store.extend_lease(id, "w1", T0 + 60_000).await.unwrap());
    assert!(
        !store
            .finish_job(JobId(987_654), "w1", T0, JobFinish::Done)
            .await
            .unwrap()
    );
}

async fn finishes_in_one_batch_are_each_what_finish_job_would_record(store: SharedStore) {
    let a = due_job(&store, "e1", "acme", "t1", T0).await;
    let b = due_job(&store, "e2", "bolt", "t1", T0).await;
    let c = due_job(&store, "e3", "cobalt", "t1", T0).await;
    assert_eq!(claim(&store, "w1", T0, 3).await.len(), 3);
    let held = store
        .finish_jobs(
            "w1",
            vec![
                (a, T0 + 5, JobFinish::Done),
                (b, T0 + 6, JobFinish::Dead { error: "no".into() }),
                (JobId(987_654), T0 + 7, JobFinish::Done),
                (
                    c,
                    T0 + 8,
                    JobFinish::Retry {
                        at_ms: T0 + 60_000,
                        error: "later".into(),
                    },
                ),
            ],
        )
        .await
        .unwrap();
    assert_eq!(
        held,
        [true, true, false, true],
        "each item answered in order"
    );
    let (a, b, c) = (
        job(&store, a).await.job,
        job(&store, b).await.job,
        job(&store, c).await.job,
    );
    assert_eq!((a.state, a.finished_at_ms), (JobState::Done, Some(T0 + 5)));
    assert_eq!(
        (b.state, b.last_error.as_deref()),
        (JobState::Dead, Some("no"))
    );
    assert_eq!((c.state, c.run_at_ms), (JobState::Pending, T0 + 60_000));
    // A batch from an owner that holds none of them changes nothing.
    assert_eq!(
        store
            .finish_jobs("w2", vec![(c.id, T0 + 9, JobFinish::Done)])
            .await
            .unwrap(),
        [false]
    );
}

async fn finish_retry_release_and_dead(store: SharedStore) {
    let id = due_job(&store, "e1", "acme", "t1", T0).await;
    claim(&store, "w1", T0, 1).await;
    let retry = JobFinish::Retry {
        at_ms: T0 + 5_000,
        error: "upstream 503".into(),
    };
    assert!(store.finish_job(id, "w1", T0 + 100, retry).await.unwrap());
    let j = job(&store, id).await.job;
    assert_eq!(j.state, JobState::Pending);
    assert_eq!((j.run_at_ms, j.attempts), (T0 + 5_000, 1));
    assert_eq!(j.last_error.as_deref(), Some("upstream 503"));
    assert_eq!((j.lease_owner, j.updated_at_ms), (None, T0 + 100));

    assert!(claim(&store, "w1", T0 + 4_999, 1).await.is_empty());
    assert_eq!(claim(&store, "w1", T0 + 5_000, 1).await[0].job.attempts, 2);

    // Release (shutdown): pending now, this attempt not counted, the last error kept.
    assert!(
        store
            .finish_job(id, "w1", T0 + 5_100, JobFinish::Release)
            .await
            .unwrap()
    );
    let j = job(&store, id).await.job;
    assert_eq!(
        (j.state, j.run_at_ms, j.attempts),
        (JobState::Pending, T0 + 5_100, 1)
    );
    assert_eq!(j.last_error.as_deref(), Some("upstream 503"));

    assert_eq!(claim(&store, "w2", T0 + 5_100, 1).await[0].job.attempts, 2);
    let dead = JobFinish::Dead {
        error: "handler refused".into(),
    };
    assert!(store.finish_job(id, "w2", T0 + 5_200, dead).await.unwrap());
    let j = job(&store, id).await.job;
    assert_eq!(j.state, JobState::Dead);
    assert_eq!(j.last_error.as_deref(), Some("handler refused"));
    assert_eq!(j.finished_at_ms, Some(T0 + 5_200));
}

async fn requeue_merges_into_the_pending_job_of_its_key(store: SharedStore) {
    let running = due_job(&store, "e1", "acme", "t1", T0).await;
    claim(&store, "w1", T0, 1).await;
    // While it runs, a new event starts a new pending job of the same key.
    let pending = due_job(&store, "e2", "acme", "t1", T0 + 10).await;
    assert_ne!(pending, running);

    let retry = JobFinish::Retry {
        at_ms: T0 + 1_000,
        error: "flaky".into(),
    };
    assert!(
        store
            .finish_job(running, "w1", T0 + 20, retry)
            .await
            .unwrap()
    );
    let merged = job(&store, running).await.job;
    assert_eq!(merged.state, JobState::Merged);
    assert_eq!(
        merged.last_error,
        Some(format!("merged into job {pending}"))
    );
    assert_eq!((merged.attempts, merged.finished_at_ms), (1, Some(T0 + 20)));
    assert_eq!(merged.lease_owner, None);

    let p = job(&store, pending).await;
    assert_eq!(p.job.state, JobState::Pending);
    assert_eq!(event_ids(&p), ["e1", "e2"]);
    assert_eq!(p.job.attempts, 1, "the retry budget carries over");
    assert_eq!(p.job.run_at_ms, T0 + 1_000, "not before the backoff");
    assert_eq!(p.job.last_error.as_deref(), Some("flaky"));

    // Release merges too, without counting the attempt.
    let next = claim(&store, "w1", T0 + 1_000, 1).await;
    assert_eq!(ids(&next), [pending]);
    let newest = due_job(&store, "e3", "acme", "t1", T0 + 1_010).await;
    assert!(
        store
            .finish_job(pending, "w1", T0 + 1_020, JobFinish::Release)
            .await
            .unwrap()
    );
    let n = job(&store, newest).await;
    assert_eq!(event_ids(&n), ["e1", "e2", "e3"]);
    assert_eq!((n.job.attempts, n.job.run_at_ms), (1, T0 + 1_020));
    assert_eq!(job(&store, pending).await.job.state, JobState::Merged);
}

async fn retry_requeues_dead_merges_or_refuses(store: SharedStore) {
    let id = due_job(&store, "e1", "acme", "t1", T0).await;
    assert_eq!(
        store.retry_job(id, T0).await.unwrap(),
        RetryResult::NotDead(JobState::Pending)
    );
    claim(&store, "w1", T0, 1).await;
    assert_eq!(
        store.retry_job(id, T0).await.unwrap(),
        RetryResult::NotDead(JobState::Running)
    );
    let dead = JobFinish::Dead {
        error: "bad prompt".into(),
    };
    store.finish_job(id, "w1", T0 + 1, dead).await.unwrap();

    assert_eq!(
        store.retry_job(id, T0 + 100).await.unwrap(),
        RetryResult::Requeued(id)
    );
    let j = job(&store, id).await.job;
    assert_eq!(j.state, JobState::Pending);
    assert_eq!(
        (j.attempts, j.run_at_ms, j.finished_at_ms),
        (0, T0 + 100, None)
    );
    assert_eq!(
        j.last_error.as_deref(),
        Some("bad prompt"),
        "kept for the record"
    );
    assert_eq!(
        store.retry_job(JobId(987_654), T0).await.unwrap(),
        RetryResult::NotFound
    );

    // Dead again; meanwhile a new event opened a pending job of the key: retry folds into it.
    claim(&store, "w1", T0 + 100, 1).await;
    let dead = JobFinish::Dead {
        error: "still bad".into(),
    };
    store.finish_job(id, "w1", T0 + 101, dead).await.unwrap();
    let pending = due_job(&store, "e2", "acme", "t1", T0 + 200).await;
    assert_eq!(
        store.retry_job(id, T0 + 300).await.unwrap(),
        RetryResult::MergedInto(pending)
    );
    assert_eq!(job(&store, id).await.job.state, JobState::Merged);
    let p = job(&store, pending).await;
    assert_eq!(event_ids(&p), ["e1", "e2"]);
    assert_eq!((p.job.attempts, p.job.run_at_ms), (0, T0 + 300));
    assert_eq!(
        store.retry_job(id, T0).await.unwrap(),
        RetryResult::NotDead(JobState::Merged)
    );
}

async fn list_jobs_filters_and_pages_newest_first(store: SharedStore) {
    let j1 = due_job(&store, "e1", "acme", "t1", T0).await;
    let o = ingest_one(
        &store,
        event("e2", "northwind", "c1", T0),
        vec![immediate("nps", "c1", 3)],
    )
    .await;
    let j2 = o.jobs[0];
    let j3 = due_job(&store, "e3", "globex", "t9", T0 + 1).await;
    assert_eq!(ids(&claim(&store, "w1", T0, 1).await), [j1]);

    let list = |f: fn(&mut JobFilter)| {
        let store = store.clone();
        async move {
            let mut filter = JobFilter {
                limit: 100,
                ..JobFilter::default()
            };
            f(&mut filter);
            let jobs = store.list_jobs(&filter).await.unwrap();
            assert!(jobs.iter().all(|j| j.events == 1), "{jobs:?}");
            jobs.iter().map(|j| j.id).collect::<Vec<_>>()
        }
    };
    assert_eq!(list(|_| {}).await, [j3, j2, j1]);
    assert_eq!(list(|f| f.limit = 1).await, [j3]);
    assert_eq!(list(|f| f.state = Some(JobState::Pending)).await, [j3, j2]);
    assert_eq!(list(|f| f.state = Some(JobState::Running)).await, [j1]);
    assert_eq!(list(|f| f.state = Some(JobState::Dead)).await, Vec::new());
    assert_eq!(list(|f| f.account = Some("acme".into())).await, [j1]);
    assert_eq!(list(|f| f.handler = Some("triage".into())).await, [j3, j1]);
    let page = store
        .list_jobs(&JobFilter {
            before_id: Some(j3.0),
            limit: 100,
            ..JobFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(page.iter().map(|j| j.id).collect::<Vec<_>>(), [j2, j1]);
    assert_eq!(store.get_job(JobId(987_654)).await.unwrap(), None);
}

async fn next_due_is_the_earliest_run_or_lease_expiry(store: SharedStore) {
    assert_eq!(store.next_due_ms().await.unwrap(), None);
    let a = due_job(&store, "e1", "acme", "t1", T0 + 10_000).await;
    due_job(&store, "e2", "bolt", "t1", T0 + 60_000).await;
    assert_eq!(store.next_due_ms().await.unwrap(), Some(T0 + 10_000));

    let claimed = store.claim_jobs("w1", T0 + 10_000, 1, 5_000).await.unwrap();
    assert_eq!(ids(&claimed), [a]);
    assert_eq!(store.next_due_ms().await.unwrap(), Some(T0 + 15_000));
    let lease = T0 + 70_000;
    store.extend_lease(a, "w1", lease).await.unwrap();
    assert_eq!(store.next_due_ms().await.unwrap(), Some(T0 + 60_000));

    // Finished jobs no longer count.
    store
        .finish_job(a, "w1", T0 + 11_000, JobFinish::Done)
        .await
        .unwrap();
    assert_eq!(store.next_due_ms().await.unwrap(), Some(T0 + 60_000));
}

async fn queue_gauges_count_waiting_work_per_account(store: SharedStore) {
    let empty = store.queue_gauges(T0).await.unwrap();
    assert_eq!(empty, QueueGauges::default());

    due_job(&store, "a1", "acme", "t1", T0).await;
    due_job(&store, "a2", "acme", "t2", T0 + 1_000).await;
    let dies = due_job(&store, "b1", "bolt", "t1", T0 + 2_000).await;
    due_job(&store, "c1", "corp", "t1", T0 + 60_000).await; // not due yet
    // acme's oldest runs; bolt's dies; the next oldest due is acme's second.
    let running = claim(&store, "w1", T0 + 5_000, 2).await;
    assert_eq!(running.len(), 2);
    let finished = store
        .finish_job(
            dies,
            "w1",
            T0 + 6_000,
            JobFinish::Dead { error: "x".into() },
        )
        .await
        .unwrap();
    assert!(finished);

    let mut gauges = store.queue_gauges(T0 + 10_000).await.unwrap();
    gauges.jobs.sort();
    assert_eq!(
        gauges.jobs,
        [
            ("acme".to_string(), "pending", 1),
            ("acme".to_string(), "running", 1),
            ("bolt".to_string(), "dead", 1),
            ("corp".to_string(), "pending", 1),
        ]
    );
    assert_eq!(
        gauges.oldest_due_lag,
        Duration::from_secs(9),
        "acme's t2, due at T0+1s"
    );
    assert_eq!(gauges.approvals_pending, 0);
}

async fn ingest_says_which_events_folded_into_a_pending_job(store: SharedStore) {
    let first = ingest_one(
        &store,
        event("f1", "acme", "t1", T0),
        vec![route("triage", "t1")],
    )
    .await;
    assert_eq!(first.folded, 0, "the first event creates the job");
    // Same batch: one joins the job of the first, one creates another handler's job beside it.
    let outcomes = store
        .ingest(vec![
            routed(
                event("f2", "acme", "t1", T0 + 1),
                vec![route("triage", "t1"), route("sla", "t1")],
            ),
            routed(event("f3", "acme", "t1", T0 + 2), vec![route("sla", "t1")]),
        ])
        .await
        .unwrap();
    assert_eq!(outcomes[0].jobs.len(), 2);
    assert_eq!(outcomes[0].jobs[0], first.jobs[0]);
    assert_eq!((outcomes[0].folded, outcomes[1].folded), (1, 1));
    // A duplicate folds nothing.
    let again = ingest_one(
        &store,
        event("f1", "acme", "t1", T0 + 3),
        vec![route("triage", "t1")],
    )
    .await;
    assert!(again.duplicate);
    assert_eq!(again.folded, 0);
}
