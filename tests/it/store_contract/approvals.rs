//! Contract: writes held for approval are kept exactly, listed newest first, and decided once:
//! of two people approving at once only one may send the write, a rejection is final, and only
//! the claim that is sending a write may record how it ended.

use super::*;
use hookwise::store::{
    Approval, ApprovalCreated, ApprovalFilter, ApprovalState, Decided, Decision,
    EXECUTION_LEASE_MS, Execution, NewApproval,
};
use serde_json::json;

contract!(
    a_created_approval_reads_back_identical_and_its_key_is_unique,
    get_of_a_missing_approval_is_none,
    list_approvals_filters_and_pages_newest_first,
    approving_claims_the_write_once_then_records_the_result,
    concurrent_approvers_claim_a_write_exactly_once,
    a_rejection_is_final_and_needs_a_pending_approval,
    a_refused_send_is_final_and_a_transient_one_is_pending_again,
    a_stale_claim_can_be_taken_over_and_fences_the_old_executor,
);

/// A held write of `job` at (step, call), with arguments that use unicode, nesting and numbers.
fn approval(job: JobId, handler: &str, account: &str, step: u32) -> NewApproval {
    NewApproval {
        job,
        attempt: 1,
        call_id: format!("call_{step}"),
        handler: handler.into(),
        account: account.into(),
        subject: "142".into(),
        tool: "happyfox.add_private_note".into(),
        arguments: json!({
            "ticket_id": 142,
            "html": "<p>Remboursement «double débit» 🚒</p>",
            "meta": {"tags": ["billing", null], "big": 9_007_199_254_740_993_u64, "ratio": 0.25}
        }),
        idempotency_key: format!("job-{job}/step-{step}/call-0"),
        created_at_ms: T0 + i64::from(step),
    }
}

async fn create(store: &SharedStore, a: &NewApproval) -> Approval {
    match store.create_approval(a).await.unwrap() {
        ApprovalCreated::New(created) => created,
        other => panic!("expected a new approval, got {other:?}"),
    }
}

fn execute(by: &str) -> Decision {
    Decision::Execute { by: by.into() }
}

async fn claim(store: &SharedStore, id: i64, by: &str, now: i64) -> Approval {
    match store.decide_approval(id, &execute(by), now).await.unwrap() {
        Decided::Claimed(a) => a,
        other => panic!("expected a claim of approval {id}, got {other:?}"),
    }
}

async fn state_of(store: &SharedStore, id: i64) -> ApprovalState {
    store.get_approval(id).await.unwrap().unwrap().state
}

async fn a_created_approval_reads_back_identical_and_its_key_is_unique(store: SharedStore) {
    let job = due_job(&store, "e1", "acme", "142", T0).await;
    let new = approval(job, "triage", "acme", 1);
    let created = create(&store, &new).await;
    assert_eq!(created.request, new, "every field, arguments deep-equal");
    assert_eq!(created.state, ApprovalState::Pending);
    assert_eq!(
        (&created.decided_by, created.decided_at_ms, &created.result),
        (&None, None, &None)
    );
    assert_eq!(created.updated_at_ms, new.created_at_ms);
    let got = store.get_approval(created.id).await.unwrap().unwrap();
    assert_eq!(got, created);
    // Key order and text survive as written.
    assert_eq!(
        serde_json::to_string(&got.request.arguments).unwrap(),
        serde_json::to_string(&new.arguments).unwrap()
    );

    // A re-run of the job reaching the same step: the first approval stands, nothing is added.
    let mut again = new.clone();
    again.attempt = 2;
    again.arguments = json!({"ticket_id": 142, "html": "something else"});
    match store.create_approval(&again).await.unwrap() {
        ApprovalCreated::Existing(existing) => assert_eq!(existing, created),
        other => panic!("expected the existing approval, got {other:?}"),
    }
    let all = store
        .list_approvals(&ApprovalFilter::default())
        .await
        .unwrap();
    assert_eq!(all, [created]);
}

async fn get_of_a_missing_approval_is_none(store: SharedStore) {
    assert_eq!(store.get_approval(1).await.unwrap(), None);
    let job = due_job(&store, "e1", "acme", "142", T0).await;
    let created = create(&store, &approval(job, "triage", "acme", 1)).await;
    assert_eq!(store.get_approval(created.id + 1).await.unwrap(), None);
    assert_eq!(store.get_approval(-1).await.unwrap(), None);
    assert_eq!(
        store
            .decide_approval(created.id + 1, &execute("ana"), T0)
            .await
            .unwrap(),
        Decided::NotFound
    );
}

async fn list_approvals_filters_and_pages_newest_first(store: SharedStore) {
    let a = due_job(&store, "e1", "acme", "142", T0).await;
    let b = due_job(&store, "e2", "bolt", "142", T0).await;
    let a1 = create(&store, &approval(a, "triage", "acme", 1)).await.id;
    let b1 = create(&store, &approval(b, "triage", "bolt", 1)).await.id;
    let a2 = create(&store, &approval(a, "escalate", "acme", 2)).await.id;
    let b2 = create(&store, &approval(b, "escalate", "bolt", 2)).await.id;
    let a3 = create(&store, &approval(a, "triage", "acme", 3)).await.id;
    claim(&store, b1, "ana", T0).await;
    store
        .decide_approval(
            a2,
            &Decision::Reject {
                by: "ana".into(),
                reason: None,
            },
            T0,
        )
        .await
        .unwrap();

    let list = |filter: ApprovalFilter| {
        let store = store.clone();
        async move {
            let listed = store.list_approvals(&filter).await.unwrap();
            listed.iter().map(|a| a.id).collect::<Vec<_>>()
        }
    };
    let pending = |filter: ApprovalFilter| ApprovalFilter {
        state: Some(ApprovalState::Pending),
        ..filter
    };
    assert_eq!(list(ApprovalFilter::default()).await, [a3, b2, a2, b1, a1]);
    assert_eq!(list(pending(ApprovalFilter::default())).await, [a3, b2, a1]);
    assert_eq!(
        list(ApprovalFilter {
            state: Some(ApprovalState::Rejected),
            ..ApprovalFilter::default()
        })
        .await,
        [a2]
    );
    assert_eq!(
        list(pending(ApprovalFilter {
            account: Some("acme".into()),
            ..ApprovalFilter::default()
        }))
        .await,
        [a3, a1]
    );
    assert_eq!(
        list(ApprovalFilter {
            handler: Some("escalate".into()),
            ..ApprovalFilter::default()
        })
        .await,
        [b2, a2]
    );
    assert!(
        list(ApprovalFilter {
            account: Some("corp".into()),
            ..ApprovalFilter::default()
        })
        .await
        .is_empty()
    );
    // Paging backwards: a page of two, then the next from the last id seen.
    assert_eq!(
        list(ApprovalFilter {
            limit: 2,
            ..ApprovalFilter::default()
        })
        .await,
        [a3, b2]
    );
    assert_eq!(
        list(ApprovalFilter {
            limit: 2,
            before_id: Some(b2),
            ..ApprovalFilter::default()
        })
        .await,
        [a2, b1]
    );
}

async fn approving_claims_the_write_once_then_records_the_result(store: SharedStore) {
    let job = due_job(&store, "e1", "acme", "142", T0).await;
    let id = create(&store, &approval(job, "triage", "acme", 1)).await.id;

    let claimed = claim(&store, id, "ana", T0 + 5_000).await;
    assert_eq!(claimed.state, ApprovalState::Executing);
    assert_eq!(claimed.decided_by.as_deref(), Some("ana"));
    assert_eq!(claimed.decided_at_ms, Some(T0 + 5_000));
    // While it is being sent, nobody else may approve or reject it.
    for decision in [
        execute("ben"),
        Decision::Reject {
            by: "ben".into(),
            reason: None,
        },
    ] {
        assert_eq!(
            store
                .decide_approval(id, &decision, T0 + 6_000)
                .await
                .unwrap(),
            Decided::NotPending(ApprovalState::Executing)
        );
    }

    let result = json!({"id": 9001, "staff": "hookwise", "text": "é"});
    let done = store
        .finish_approval(
            &claimed,
            &Execution::Sent {
                result: result.clone(),
            },
            T0 + 7_000,
        )
        .await
        .unwrap()
        .expect("the claim finishes its approval");
    assert_eq!(done.state, ApprovalState::Approved);
    assert_eq!(done.result, Some(result));
    assert_eq!(done.decided_by.as_deref(), Some("ana"));
    assert_eq!(done.decided_at_ms, Some(T0 + 5_000));
    assert_eq!(done.updated_at_ms, T0 + 7_000);
    assert_eq!(store.get_approval(id).await.unwrap(), Some(done.clone()));

    // Decided is decided: no second approval, no second finish.
    assert_eq!(
        store
            .decide_approval(id, &execute("ben"), T0 + 8_000)
            .await
            .unwrap(),
        Decided::NotPending(ApprovalState::Approved)
    );
    let twice = store
        .finish_approval(
            &claimed,
            &Execution::Failed {
                error: "late".into(),
            },
            T0 + 9_000,
        )
        .await
        .unwrap();
    assert_eq!(twice, None);
    assert_eq!(store.get_approval(id).await.unwrap(), Some(done));
}

async fn concurrent_approvers_claim_a_write_exactly_once(store: SharedStore) {
    let job = due_job(&store, "e1", "acme", "142", T0).await;
    let id = create(&store, &approval(job, "triage", "acme", 1)).await.id;
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..8 {
        let store = store.clone();
        tasks.spawn(async move {
            store
                .decide_approval(id, &execute(&format!("person-{n}")), T0 + 1_000)
                .await
                .unwrap()
        });
    }
    let mut claimed = Vec::new();
    let mut refused = 0;
    while let Some(decided) = tasks.join_next().await {
        match decided.unwrap() {
            Decided::Claimed(a) => claimed.push(a),
            Decided::NotPending(ApprovalState::Executing) => refused += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(claimed.len(), 1, "exactly one approver sends the write");
    assert_eq!(refused, 7);
    assert_eq!(
        store.get_approval(id).await.unwrap().unwrap().decided_by,
        claimed[0].decided_by
    );
}

async fn a_rejection_is_final_and_needs_a_pending_approval(store: SharedStore) {
    let job = due_job(&store, "e1", "acme", "142", T0).await;
    let id = create(&store, &approval(job, "triage", "acme", 1)).await.id;
    let reject = Decision::Reject {
        by: "ana".into(),
        reason: Some("wrong ticket".into()),
    };
    let rejected = match store
        .decide_approval(id, &reject, T0 + 1_000)
        .await
        .unwrap()
    {
        Decided::Rejected(a) => a,
        other => panic!("expected a rejection, got {other:?}"),
    };
    assert_eq!(rejected.state, ApprovalState::Rejected);
    assert_eq!(rejected.reason.as_deref(), Some("wrong ticket"));
    assert_eq!(rejected.decided_by.as_deref(), Some("ana"));
    assert_eq!(rejected.decided_at_ms, Some(T0 + 1_000));
    for decision in [execute("ben"), reject] {
        assert_eq!(
            store
                .decide_approval(id, &decision, T0 + 2_000)
                .await
                .unwrap(),
            Decided::NotPending(ApprovalState::Rejected)
        );
    }
    // Long after: a rejection is never "stale".
    assert_eq!(
        store
            .decide_approval(id, &execute("ben"), T0 + 10 * EXECUTION_LEASE_MS)
            .await
            .unwrap(),
        Decided::NotPending(ApprovalState::Rejected)
    );
    assert_eq!(store.get_approval(id).await.unwrap(), Some(rejected));
}

async fn a_refused_send_is_final_and_a_transient_one_is_pending_again(store: SharedStore) {
    let job = due_job(&store, "e1", "acme", "142", T0).await;
    let refused = create(&store, &approval(job, "triage", "acme", 1)).await.id;
    let flaky = create(&store, &approval(job, "triage", "acme", 2)).await.id;

    let claim_refused = claim(&store, refused, "ana", T0 + 1_000).await;
    let failed = store
        .finish_approval(
            &claim_refused,
            &Execution::Failed {
                error: "happyfox answered 400: no such ticket".into(),
            },
            T0 + 2_000,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(failed.state, ApprovalState::Failed);
    assert_eq!(
        failed.error.as_deref(),
        Some("happyfox answered 400: no such ticket")
    );
    assert_eq!(failed.result, None);
    assert_eq!(
        store
            .decide_approval(refused, &execute("ben"), T0 + 3_000)
            .await
            .unwrap(),
        Decided::NotPending(ApprovalState::Failed)
    );

    let claim_flaky = claim(&store, flaky, "ana", T0 + 1_000).await;
    let again = store
        .finish_approval(
            &claim_flaky,
            &Execution::Retry {
                error: "happyfox answered 503".into(),
            },
            T0 + 2_000,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.state, ApprovalState::Pending);
    assert_eq!(again.error.as_deref(), Some("happyfox answered 503"));
    assert_eq!((again.decided_by, again.decided_at_ms), (None, None));
    let reclaimed = claim(&store, flaky, "ben", T0 + 3_000).await;
    assert_eq!(reclaimed.decided_by.as_deref(), Some("ben"));
    // The first claim ended when it put the approval back: it cannot finish the second one.
    assert_eq!(
        store
            .finish_approval(
                &claim_flaky,
                &Execution::Sent { result: json!(1) },
                T0 + 4_000
            )
            .await
            .unwrap(),
        None
    );
    assert_eq!(state_of(&store, flaky).await, ApprovalState::Executing);
}

async fn a_stale_claim_can_be_taken_over_and_fences_the_old_executor(store: SharedStore) {
    let job = due_job(&store, "e1", "acme", "142", T0).await;
    let id = create(&store, &approval(job, "triage", "acme", 1)).await.id;
    let first = claim(&store, id, "ana", T0).await;
    assert_eq!(
        store
            .decide_approval(id, &execute("ben"), T0 + EXECUTION_LEASE_MS - 1)
            .await
            .unwrap(),
        Decided::NotPending(ApprovalState::Executing),
        "a claim within its lease is still being sent"
    );
    let second = claim(&store, id, "ben", T0 + EXECUTION_LEASE_MS).await;
    assert_eq!(second.decided_at_ms, Some(T0 + EXECUTION_LEASE_MS));

    // The presumed-dead executor comes back: its result is not recorded over the new claim's.
    let late = store
        .finish_approval(
            &first,
            &Execution::Failed {
                error: "timed out".into(),
            },
            T0 + EXECUTION_LEASE_MS + 1,
        )
        .await
        .unwrap();
    assert_eq!(late, None);
    let done = store
        .finish_approval(
            &second,
            &Execution::Sent {
                result: json!({"ok": true}),
            },
            T0 + EXECUTION_LEASE_MS + 2,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(done.state, ApprovalState::Approved);
    assert_eq!(done.decided_by.as_deref(), Some("ben"));
}
