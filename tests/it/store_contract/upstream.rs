//! Contract: the action journal sends a write at most once per key, and the rate governor's
//! budgets and pauses are shared state every process sees the same way.

use super::*;
use hookwise::store::{ActionBegin, JobFinish};

contract!(
    a_journaled_write_is_returned_instead_of_sent_again,
    a_write_begun_but_never_answered_stays_in_doubt,
    an_abandoned_write_may_be_sent_again,
    the_budget_spaces_calls_and_a_pause_holds_them,
    a_paused_account_has_no_claimable_jobs,
    a_deferred_job_keeps_its_attempts,
);

const KEY: &str = "job-1/step-0/call-0";
const REQUEST: &str = "POST /ticket/42/staff_pvtnote/ {\"text\":\"hi\"}";

async fn a_journaled_write_is_returned_instead_of_sent_again(store: SharedStore) {
    let begin = store
        .begin_action(KEY, JobId(1), "acme", REQUEST, T0)
        .await
        .unwrap();
    assert_eq!(begin, ActionBegin::Fresh);
    store
        .finish_action(KEY, 201, "{\"id\":9}", T0 + 5)
        .await
        .unwrap();
    let again = store
        .begin_action(KEY, JobId(1), "acme", REQUEST, T0 + 60_000)
        .await
        .unwrap();
    assert_eq!(
        again,
        ActionBegin::Done {
            status: 201,
            response: "{\"id\":9}".into(),
            request: REQUEST.into()
        }
    );
    let actions = store.list_actions(JobId(1)).await.unwrap();
    assert_eq!(actions.len(), 1);
    assert_eq!(actions[0].state, "done");
    assert_eq!(actions[0].finished_at_ms, Some(T0 + 5));
    assert!(store.list_actions(JobId(2)).await.unwrap().is_empty());
}

async fn a_write_begun_but_never_answered_stays_in_doubt(store: SharedStore) {
    assert_eq!(
        store
            .begin_action(KEY, JobId(1), "acme", REQUEST, T0)
            .await
            .unwrap(),
        ActionBegin::Fresh
    );
    // The process died here. Every later attempt, whatever it asks, is told it is in doubt.
    for other in [
        REQUEST,
        "POST /ticket/42/staff_pvtnote/ {\"text\":\"other\"}",
    ] {
        assert_eq!(
            store
                .begin_action(KEY, JobId(1), "acme", other, T0 + 1)
                .await
                .unwrap(),
            ActionBegin::InDoubt {
                request: REQUEST.into()
            }
        );
    }
}

async fn an_abandoned_write_may_be_sent_again(store: SharedStore) {
    store
        .begin_action(KEY, JobId(1), "acme", REQUEST, T0)
        .await
        .unwrap();
    store.abandon_action(KEY).await.unwrap();
    assert_eq!(
        store
            .begin_action(KEY, JobId(1), "acme", REQUEST, T0 + 1)
            .await
            .unwrap(),
        ActionBegin::Fresh
    );
    // A write already answered is never abandoned: its record is what prevents a repeat.
    store.finish_action(KEY, 200, "{}", T0 + 2).await.unwrap();
    store.abandon_action(KEY).await.unwrap();
    assert!(matches!(
        store
            .begin_action(KEY, JobId(1), "acme", REQUEST, T0 + 3)
            .await
            .unwrap(),
        ActionBegin::Done { status: 200, .. }
    ));
}

async fn the_budget_spaces_calls_and_a_pause_holds_them(store: SharedStore) {
    let reserve = |account: &'static str, bucket: &'static str, now: i64, horizon: i64| {
        let store = store.clone();
        async move {
            store
                .reserve_call(account, bucket, T0 + now, 100, horizon)
                .await
                .unwrap()
        }
    };
    // Slots 100 ms apart: each call reserves the next free one and learns how long to wait.
    assert_eq!(reserve("acme", "get", 0, 1_000).await, (0, true));
    assert_eq!(reserve("acme", "get", 30, 1_000).await, (70, true));
    assert_eq!(reserve("acme", "get", 40, 1_000).await, (160, true));
    // A slot past the caller's horizon is not reserved: the next caller gets the same one.
    assert_eq!(reserve("acme", "get", 50, 100).await, (250, false));
    assert_eq!(reserve("acme", "get", 50, 1_000).await, (250, true));
    // A caller after a quiet spell goes at once; the schedule does not bank unused slots.
    assert_eq!(reserve("acme", "get", 5_000, 1_000).await, (0, true));
    assert_eq!(reserve("acme", "get", 5_000, 1_000).await, (100, true));
    // Budgets are per account and per bucket.
    assert_eq!(reserve("acme", "post", 0, 1_000).await, (0, true));
    assert_eq!(reserve("globex", "get", 0, 1_000).await, (0, true));

    store
        .pause_account("acme", T0 + 10_000, "429 on GET /tickets/")
        .await
        .unwrap();
    // A shorter pause never shortens a longer one.
    store
        .pause_account("acme", T0 + 8_000, "budget used up")
        .await
        .unwrap();
    assert_eq!(
        store.account_pause("acme").await.unwrap(),
        Some((T0 + 10_000, "429 on GET /tickets/".to_string()))
    );
    // While paused nothing is reserved, whatever the horizon.
    assert_eq!(reserve("acme", "get", 6_000, 60_000).await, (4_000, false));
    assert_eq!(reserve("acme", "post", 6_000, 60_000).await, (4_000, false));
    assert_eq!(reserve("acme", "get", 10_000, 1_000).await, (0, true));
    assert_eq!(store.account_pause("nobody").await.unwrap(), None);
}

async fn a_paused_account_has_no_claimable_jobs(store: SharedStore) {
    let paused = due_job(&store, "e1", "acme", "1", T0).await;
    let other = due_job(&store, "e2", "globex", "2", T0).await;
    store
        .pause_account("acme", T0 + 60_000, "429")
        .await
        .unwrap();
    let claimed = store.claim_jobs("w1", T0 + 1, 10, 600_000).await.unwrap();
    assert_eq!(ids(&claimed), vec![other]);
    let claimed = store
        .claim_jobs("w1", T0 + 60_001, 10, 600_000)
        .await
        .unwrap();
    assert_eq!(ids(&claimed), vec![paused]);
}

async fn a_deferred_job_keeps_its_attempts(store: SharedStore) {
    let id = due_job(&store, "e1", "acme", "1", T0).await;
    let claimed = store.claim_jobs("w1", T0, 1, 30_000).await.unwrap();
    assert_eq!(claimed[0].job.attempts, 1);
    let finish = JobFinish::Defer {
        at_ms: T0 + 600_000,
        error: "rate limited".into(),
    };
    assert!(store.finish_job(id, "w1", T0 + 10, finish).await.unwrap());
    let j = job(&store, id).await.job;
    assert_eq!(j.state, hookwise::store::JobState::Pending);
    assert_eq!((j.attempts, j.run_at_ms), (0, T0 + 600_000));
    assert!(
        store
            .claim_jobs("w1", T0 + 599_999, 1, 30_000)
            .await
            .unwrap()
            .is_empty()
    );
}
