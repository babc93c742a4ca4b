//! Contract: budget usage (tokens and cost per UTC day, per account and per handler) adds up in the
//! store, so every process holding the same store sees the same figures; and a run keeps the cost
//! it was recorded with.

use super::*;
use hookwise::store::{DayUsage, RunRecord, Usage};
use serde_json::json;

contract!(
    usage_adds_up_per_day_per_account_and_per_handler,
    a_run_keeps_its_cost_and_an_unknown_cost_stays_unknown,
);

const DAY: &str = "2026-01-01";
const NEXT_DAY: &str = "2026-01-02";

fn spent(tokens: u64, cost_usd: f64) -> Usage {
    Usage { tokens, cost_usd }
}

fn assert_close(got: f64, want: f64) {
    assert!((got - want).abs() < 1e-9, "cost {got}, expected {want}");
}

async fn usage_adds_up_per_day_per_account_and_per_handler(store: SharedStore) {
    // Nothing spent yet: zero, not an error.
    assert_eq!(
        store.usage(DAY, "acme", "triage").await.unwrap(),
        DayUsage::default()
    );

    let after = store
        .add_usage(DAY, "acme", "triage", spent(1_000, 0.25))
        .await
        .unwrap();
    assert_eq!(after.account.tokens, 1_000);
    assert_eq!(after.handler.tokens, 1_000);
    assert_close(after.account.cost_usd, 0.25);

    // The same account under another handler, and the same handler on another account: each
    // adds to the scope it shares and to nothing else.
    let other_handler = store
        .add_usage(DAY, "acme", "followup", spent(300, 0.5))
        .await
        .unwrap();
    assert_eq!(other_handler.account.tokens, 1_300);
    assert_eq!(other_handler.handler.tokens, 300);
    assert_close(other_handler.account.cost_usd, 0.75);
    assert_close(other_handler.handler.cost_usd, 0.5);

    let other_account = store
        .add_usage(DAY, "beta", "triage", spent(40, 0.0))
        .await
        .unwrap();
    assert_eq!(other_account.account.tokens, 40);
    assert_eq!(other_account.handler.tokens, 1_040);
    assert_close(other_account.handler.cost_usd, 0.25);

    // What add returned is what a later read sees.
    let read = store.usage(DAY, "acme", "triage").await.unwrap();
    assert_eq!(read.account.tokens, 1_300);
    assert_eq!(read.handler.tokens, 1_040);
    assert_close(read.account.cost_usd, 0.75);
    assert_close(read.handler.cost_usd, 0.25);

    // A new day starts from nothing, and leaves the old day as it was.
    assert_eq!(
        store.usage(NEXT_DAY, "acme", "triage").await.unwrap(),
        DayUsage::default()
    );
    let next = store
        .add_usage(NEXT_DAY, "acme", "triage", spent(7, 0.001))
        .await
        .unwrap();
    assert_eq!(next.account.tokens, 7);
    assert_eq!(next.handler.tokens, 7);
    assert_eq!(
        store
            .usage(DAY, "acme", "triage")
            .await
            .unwrap()
            .account
            .tokens,
        1_300
    );

    // Counts past what 32 bits hold are kept exactly.
    let big = store
        .add_usage(DAY, "gamma", "bulk", spent(u64::from(u32::MAX) + 10, 0.0))
        .await
        .unwrap();
    assert_eq!(big.account.tokens, u64::from(u32::MAX) + 10);
}

fn run(job: JobId, cost_usd: Option<f64>) -> RunRecord {
    RunRecord {
        job,
        handler: "triage".into(),
        account: "acme".into(),
        attempt: 1,
        mode: "dry-run".into(),
        model: "gpt-test".into(),
        started_at_ms: T0,
        finished_at_ms: T0 + 500,
        outcome: "done".into(),
        error: None,
        input_tokens: 2_000,
        output_tokens: 100,
        cost_usd,
        steps: json!([{"type": "system", "text": "hi"}]),
    }
}

async fn a_run_keeps_its_cost_and_an_unknown_cost_stays_unknown(store: SharedStore) {
    let job = due_job(&store, "e1", "acme", "t1", T0).await;
    let priced = store.record_run(&run(job, Some(0.00036))).await.unwrap();
    let unpriced = store.record_run(&run(job, None)).await.unwrap();

    let got = store.get_run(priced).await.unwrap().unwrap();
    assert_close(got.run.cost_usd.expect("a priced run has a cost"), 0.00036);
    let got = store.get_run(unpriced).await.unwrap().unwrap();
    assert_eq!(
        got.run.cost_usd, None,
        "no price: the cost is unknown, not 0"
    );

    // A run recorded as it starts gets its cost with its final state.
    let mut started = run(job, None);
    started.outcome = "running".into();
    let id = store.record_run(&started).await.unwrap();
    let mut finished = run(job, Some(1.5));
    finished.outcome = "budget_exceeded".into();
    store.update_runs(vec![(id, finished)]).await.unwrap();
    let got = store.get_run(id).await.unwrap().unwrap();
    assert_eq!(got.run.outcome, "budget_exceeded");
    assert_close(got.run.cost_usd.expect("updated with a cost"), 1.5);

    // Lists carry the cost too.
    let listed = store
        .list_runs(&hookwise::store::RunFilter {
            job: Some(job),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    let costs: Vec<Option<f64>> = listed.iter().map(|r| r.run.cost_usd).collect();
    assert_eq!(costs.len(), 3);
    assert_eq!(costs[1], None);
    assert_close(costs[0].unwrap(), 1.5);
    assert_close(costs[2].unwrap(), 0.00036);
}

/// PostgreSQL only: two replicas (store handles with their own pools on one schema) adding at the
/// same time lose nothing, and each reads the total of both.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_share_one_days_usage() {
    in_schema(
        concat!(module_path!(), "::two_replicas_share_one_days_usage"),
        |schema| async move {
            let replicas = [schema.open_store().await, schema.open_store().await];
            let mut adds = tokio::task::JoinSet::new();
            for (r, store) in replicas.iter().enumerate() {
                for n in 0..25 {
                    let store = store.clone();
                    // Half of the steps name the other handler: the account's row is shared by
                    // all of them, each handler's row by half.
                    let handler = if n % 2 == 0 { "triage" } else { "followup" };
                    adds.spawn(async move {
                        store
                            .add_usage(DAY, "acme", handler, spent(100 + r as u64, 0.01))
                            .await
                            .unwrap()
                    });
                }
            }
            while let Some(done) = adds.join_next().await {
                done.unwrap();
            }
            // 25 steps of 100 tokens and 25 of 101.
            let total = 25 * 100 + 25 * 101;
            for store in &replicas {
                let usage = store.usage(DAY, "acme", "triage").await.unwrap();
                assert_eq!(usage.account.tokens, total, "every step counted once");
                assert_close(usage.account.cost_usd, 0.5);
                // 13 of each replica's 25 steps were triage's (n even).
                assert_eq!(usage.handler.tokens, 13 * 100 + 13 * 101);
            }
        },
    )
    .await;
}
