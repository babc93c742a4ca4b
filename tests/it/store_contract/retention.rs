//! Contract: retention deletes old finished jobs with everything that hangs off them and old
//! events nothing refers to any more, oldest first and a batch at a time; it never touches what a
//! job that can still run needs, nor an undecided approval. Time is a `ManualClock`.

use super::*;
use hookwise::kernel::clock::{Clock, ManualClock};
use hookwise::store::{
    ActionBegin, ApprovalCreated, Decision, JobFinish, NewApproval, PrunePolicy, PruneReport,
    Pruner, RunFilter, RunRecord,
};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

contract!(
    old_finished_jobs_go_with_their_runs_journal_and_events,
    jobs_that_can_still_run_keep_their_events_journal_and_runs,
    a_dead_job_is_kept_for_its_own_longer_period,
    an_undecided_approval_keeps_its_job_until_decided,
    a_pruned_event_is_accepted_again_as_new,
    more_rows_than_a_batch_take_several_rounds_oldest_first,
    a_dry_run_counts_what_would_go_and_changes_nothing,
);

const DAY: i64 = 86_400_000;
const LEASE: i64 = 30_000;

/// The documented defaults: events and done jobs 30 days, dead jobs 90.
fn policy(batch: u32) -> PrunePolicy {
    PrunePolicy {
        events_ms: 30 * DAY,
        jobs_ms: 30 * DAY,
        dead_jobs_ms: 90 * DAY,
        batch,
    }
}

fn clock() -> ManualClock {
    ManualClock::starting_at(at(T0))
}

fn now(clock: &ManualClock) -> i64 {
    clock.now().timestamp_millis()
}

fn days(n: u64) -> Duration {
    Duration::from_secs(n * 86_400)
}

fn report(events: u64, jobs: u64, runs: u64, actions: u64, approvals: u64) -> PruneReport {
    PruneReport {
        events,
        jobs,
        runs,
        actions,
        approvals,
        skipped: false,
    }
}

/// A job of `account` due now with one event `id`, claimed by `w1`, with one write journaled
/// (answered) and one run recorded: what a finished agent run leaves behind.
async fn ran_job(store: &SharedStore, id: &str, account: &str, at_ms: i64) -> JobId {
    let job = due_job(store, id, account, "t1", at_ms).await;
    let claimed = store.claim_jobs("w1", at_ms, 100, LEASE).await.unwrap();
    assert!(claimed.iter().any(|j| j.job.id == job), "{job} claimed");
    let key = format!("job-{job}/step-0/call-0");
    let begun = store
        .begin_action(&key, job, account, "POST /note", at_ms)
        .await
        .unwrap();
    assert_eq!(begun, ActionBegin::Fresh);
    store
        .finish_action(&key, 200, "{}", at_ms + 1)
        .await
        .unwrap();
    store
        .record_run(&RunRecord {
            job,
            handler: "triage".into(),
            account: account.into(),
            attempt: 1,
            mode: "live".into(),
            model: "m".into(),
            started_at_ms: at_ms,
            finished_at_ms: at_ms + 2,
            outcome: "done".into(),
            error: None,
            input_tokens: 1,
            output_tokens: 1,
            cost_usd: None,
            steps: json!([]),
        })
        .await
        .unwrap();
    job
}

async fn finish(store: &SharedStore, job: JobId, at_ms: i64, how: JobFinish) {
    assert!(store.finish_job(job, "w1", at_ms, how).await.unwrap());
}

/// What is left of a job: (exists, runs, journal entries, events readable through it).
async fn remains(store: &SharedStore, job: JobId) -> (bool, usize, usize, usize) {
    let runs = store
        .list_runs(&RunFilter {
            job: Some(job),
            ..RunFilter::default()
        })
        .await
        .unwrap();
    let actions = store.list_actions(job).await.unwrap();
    let found = store.get_job(job).await.unwrap();
    let events = found.as_ref().map_or(0, |j| j.events.len());
    (found.is_some(), runs.len(), actions.len(), events)
}

async fn stored(store: &SharedStore, id: &str) -> bool {
    store
        .get_event(&SourceName::new("happyfox"), &EventId::new(id))
        .await
        .unwrap()
        .is_some()
}

async fn old_finished_jobs_go_with_their_runs_journal_and_events(store: SharedStore) {
    let clock = clock();
    let job = ran_job(&store, "e1", "acme", now(&clock)).await;
    finish(&store, job, now(&clock) + 1_000, JobFinish::Done).await;
    // An event no handler wanted: nothing refers to it.
    let unrouted = routed(event("u1", "acme", "t2", now(&clock)), vec![]);
    store.ingest(vec![unrouted]).await.unwrap();

    clock.advance(days(29));
    let early = store.prune(&policy(100), now(&clock)).await.unwrap();
    assert_eq!(early, PruneReport::default(), "nothing is 30 days old yet");
    assert_eq!(remains(&store, job).await, (true, 1, 1, 1));

    clock.advance(days(2));
    let pruned = store.prune(&policy(100), now(&clock)).await.unwrap();
    assert_eq!(pruned, report(2, 1, 1, 1, 0));
    assert_eq!(remains(&store, job).await, (false, 0, 0, 0));
    assert!(!stored(&store, "e1").await && !stored(&store, "u1").await);
    // Nothing left to do: a second round deletes nothing.
    let again = store.prune(&policy(100), now(&clock)).await.unwrap();
    assert!(again.is_empty(), "{again:?}");
}

async fn jobs_that_can_still_run_keep_their_events_journal_and_runs(store: SharedStore) {
    let clock = clock();
    let t = now(&clock);
    // Running: claimed and never finished (its worker may still be sending).
    let running = ran_job(&store, "e1", "acme", t).await;
    // Pending again after a failed attempt, with that attempt's run and write behind it.
    let retrying = ran_job(&store, "e2", "bolt", t).await;
    finish(
        &store,
        retrying,
        t + 1_000,
        JobFinish::Retry {
            at_ms: t + 400 * DAY,
            error: "upstream 503".into(),
        },
    )
    .await;
    // Pending and never claimed: debounced far into the future.
    let waiting = ingest_one(
        &store,
        event("e3", "cora", "t1", t),
        vec![Route {
            period_ms: 400 * DAY,
            max_wait_ms: 400 * DAY,
            ..route("triage", "t1")
        }],
    )
    .await
    .jobs[0];

    clock.advance(days(365));
    let pruned = store.prune(&policy(100), now(&clock)).await.unwrap();
    assert_eq!(pruned, PruneReport::default());
    assert_eq!(remains(&store, running).await, (true, 1, 1, 1));
    assert_eq!(remains(&store, retrying).await, (true, 1, 1, 1));
    assert_eq!(remains(&store, waiting).await, (true, 0, 0, 1));
    let dry = store
        .prune_dry_run(&policy(100), now(&clock))
        .await
        .unwrap();
    assert_eq!(dry, PruneReport::default());
}

async fn a_dead_job_is_kept_for_its_own_longer_period(store: SharedStore) {
    let clock = clock();
    let dead = ran_job(&store, "e1", "acme", now(&clock)).await;
    finish(
        &store,
        dead,
        now(&clock),
        JobFinish::Dead {
            error: "gave up".into(),
        },
    )
    .await;

    // Past the done-job period: still there, with what a retry needs (events, journal).
    clock.advance(days(60));
    let pruned = store.prune(&policy(100), now(&clock)).await.unwrap();
    assert_eq!(pruned, PruneReport::default());
    assert_eq!(remains(&store, dead).await, (true, 1, 1, 1));

    clock.advance(days(31));
    let pruned = store.prune(&policy(100), now(&clock)).await.unwrap();
    assert_eq!(pruned, report(1, 1, 1, 1, 0));
    assert_eq!(remains(&store, dead).await, (false, 0, 0, 0));
}

async fn an_undecided_approval_keeps_its_job_until_decided(store: SharedStore) {
    let clock = clock();
    let t = now(&clock);
    let job = ran_job(&store, "e1", "acme", t).await;
    let created = store
        .create_approval(&NewApproval {
            job,
            attempt: 1,
            call_id: "call_1".into(),
            handler: "triage".into(),
            account: "acme".into(),
            subject: "t1".into(),
            tool: "happyfox.add_private_note".into(),
            arguments: json!({"ticket_id": 1}),
            idempotency_key: format!("job-{job}/step-1/call-0"),
            created_at_ms: t,
        })
        .await
        .unwrap();
    let ApprovalCreated::New(approval) = created else {
        panic!("a new approval: {created:?}");
    };
    finish(&store, job, t + 1_000, JobFinish::Done).await;

    clock.advance(days(100));
    let pruned = store.prune(&policy(100), now(&clock)).await.unwrap();
    assert_eq!(
        pruned,
        PruneReport::default(),
        "the approval is still pending"
    );
    assert!(store.get_approval(approval.id).await.unwrap().is_some());
    assert_eq!(remains(&store, job).await, (true, 1, 1, 1));

    let reject = Decision::Reject {
        by: "ana".into(),
        reason: None,
    };
    store
        .decide_approval(approval.id, &reject, now(&clock))
        .await
        .unwrap();
    let pruned = store.prune(&policy(100), now(&clock)).await.unwrap();
    assert_eq!(pruned, report(1, 1, 1, 1, 1));
    assert_eq!(store.get_approval(approval.id).await.unwrap(), None);
}

/// The dedupe horizon: once an event is pruned, its (source, id) is free again, so a sender
/// re-delivering it is taken as a new event (and would start a new job). `retention.events`
/// must outlast every sender's retries; README "Retention" says so.
async fn a_pruned_event_is_accepted_again_as_new(store: SharedStore) {
    let clock = clock();
    let first = store
        .ingest(vec![routed(event("e1", "acme", "t1", now(&clock)), vec![])])
        .await
        .unwrap();
    assert!(!first[0].duplicate);
    clock.advance(days(3));
    let retried = store
        .ingest(vec![routed(event("e1", "acme", "t1", now(&clock)), vec![])])
        .await
        .unwrap();
    assert!(retried[0].duplicate, "within the horizon: a duplicate");

    clock.advance(days(28));
    let pruned = store.prune(&policy(100), now(&clock)).await.unwrap();
    assert_eq!(pruned.events, 1);
    let late = ingest_one(
        &store,
        event("e1", "acme", "t1", now(&clock)),
        vec![immediate("triage", "t1", 3)],
    )
    .await;
    assert!(!late.duplicate, "past the horizon: a new event");
    assert_eq!(late.jobs.len(), 1, "and it starts a new job");
    let stored = store
        .get_event(&SourceName::new("happyfox"), &EventId::new("e1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.received_at_ms, now(&clock));
}

async fn more_rows_than_a_batch_take_several_rounds_oldest_first(store: SharedStore) {
    let clock = clock();
    let t = now(&clock);
    // Five done jobs (one event each) finished a minute apart, oldest first, and two events no
    // handler wanted.
    let mut jobs = Vec::new();
    for (i, account) in ["a1", "a2", "a3", "a4", "a5"].into_iter().enumerate() {
        let job = due_job(&store, &format!("e{i}"), account, "t1", t).await;
        jobs.push(job);
    }
    store.claim_jobs("w1", t, 10, LEASE).await.unwrap();
    for (i, job) in jobs.iter().enumerate() {
        finish(&store, *job, t + 60_000 * i as i64, JobFinish::Done).await;
    }
    for id in ["u1", "u2"] {
        store
            .ingest(vec![routed(event(id, "a1", "t9", t), vec![])])
            .await
            .unwrap();
    }
    clock.advance(days(40));
    let dry = store.prune_dry_run(&policy(3), now(&clock)).await.unwrap();
    assert_eq!(dry, report(7, 5, 0, 0, 0));

    let first = store.prune(&policy(3), now(&clock)).await.unwrap();
    assert_eq!((first.jobs, first.events), (3, 3));
    assert!(first.may_have_more(&policy(3)));
    let left: Vec<bool> = still_there(&store, &jobs).await;
    assert_eq!(
        left,
        [false, false, false, true, true],
        "the oldest go first"
    );

    // The rest, as the pruner runs it: rounds until one leaves nothing behind.
    let pruner = Pruner {
        store: store.clone(),
        clock: Arc::new(clock.clone()),
        policy: policy(3),
        interval: Duration::from_secs(600),
        pause: Duration::ZERO,
        metrics: Default::default(),
    };
    let rest = pruner.prune_all().await.unwrap();
    assert_eq!(rest, report(4, 2, 0, 0, 0));
    // The metrics count what went, per kind (nothing for kinds with none).
    let text = pruner.metrics.render();
    assert!(
        text.contains(&format!(
            "hookwise_pruned_total{{kind=\"events\"}} {}",
            rest.events
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "hookwise_pruned_total{{kind=\"jobs\"}} {}",
            rest.jobs
        )),
        "{text}"
    );
    assert!(!text.contains("kind=\"runs\""), "{text}");
    let mut total = first;
    total.add(&rest);
    assert_eq!(total, dry, "the dry run counted every round");
    let after = store.prune_dry_run(&policy(3), now(&clock)).await.unwrap();
    assert_eq!(after, PruneReport::default());
}

async fn still_there(store: &SharedStore, jobs: &[JobId]) -> Vec<bool> {
    let mut exist = Vec::new();
    for job in jobs {
        exist.push(store.get_job(*job).await.unwrap().is_some());
    }
    exist
}

async fn a_dry_run_counts_what_would_go_and_changes_nothing(store: SharedStore) {
    let clock = clock();
    let done = ran_job(&store, "e1", "acme", now(&clock)).await;
    finish(&store, done, now(&clock), JobFinish::Done).await;
    // A job merged into the pending job of its key: finished, and its event is shared with the
    // job it merged into, which is pending and keeps it.
    let merged = ran_job(&store, "e2", "bolt", now(&clock)).await;
    let pending = ingest_one(
        &store,
        event("e3", "bolt", "t1", now(&clock)),
        vec![immediate("triage", "t1", 3)],
    )
    .await
    .jobs[0];
    finish(
        &store,
        merged,
        now(&clock),
        JobFinish::Retry {
            at_ms: now(&clock),
            error: "503".into(),
        },
    )
    .await;
    let into = job(&store, pending).await;
    assert_eq!(event_ids(&into), ["e2", "e3"], "merged into {pending}");

    clock.advance(days(31));
    let dry = store
        .prune_dry_run(&policy(100), now(&clock))
        .await
        .unwrap();
    // done: job, run, write, event e1; merged: job, run, write (e2 stays with the pending job).
    assert_eq!(dry, report(1, 2, 2, 2, 0));
    assert_eq!(remains(&store, done).await, (true, 1, 1, 1));
    assert_eq!(remains(&store, merged).await, (true, 1, 1, 1));
    assert!(stored(&store, "e1").await);
    let again = store
        .prune_dry_run(&policy(100), now(&clock))
        .await
        .unwrap();
    assert_eq!(again, dry, "counting twice counts the same");

    let pruned = store.prune(&policy(100), now(&clock)).await.unwrap();
    assert_eq!(pruned, dry);
    assert_eq!(
        event_ids(&job(&store, pending).await),
        ["e2", "e3"],
        "the pending job keeps every event"
    );
}

/// PostgreSQL only: while one replica prunes (holds the prune lock), another one's round is
/// skipped and changes nothing, rather than waiting or deleting the same rows.
#[tokio::test]
async fn one_replica_prunes_at_a_time() {
    in_schema(
        concat!(module_path!(), "::one_replica_prunes_at_a_time"),
        |schema| async move {
            let store = schema.open_store().await;
            let old = routed(event("u1", "acme", "t1", T0), vec![]);
            store.ingest(vec![old]).await.unwrap();
            let later = T0 + 31 * DAY;

            // The other replica, mid-round: the same lock its `prune` takes.
            let mut other = schema.connect().await;
            sqlx::raw_sql("BEGIN").execute(&mut other).await.unwrap();
            sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext(current_schema()))")
                .bind(0x686b_7703_i32)
                .execute(&mut other)
                .await
                .unwrap();
            let skipped = store.prune(&policy(100), later).await.unwrap();
            assert!(skipped.skipped && skipped.is_empty(), "{skipped:?}");
            assert!(stored(&store, "u1").await);

            sqlx::raw_sql("COMMIT").execute(&mut other).await.unwrap();
            let pruned = store.prune(&policy(100), later).await.unwrap();
            assert_eq!(pruned, report(1, 0, 0, 0, 0));
        },
    )
    .await;
}
