//! Contract: what the dashboard reads. The overview folds every account's queue, pause and call
//! slots into one row each and counts runs per handler and outcome in its window; an event is
//! found by its sequence number with the jobs it went to; the event list filters by subject,
//! status and time.

use super::*;
use hookwise::store::{EventFilter, EventStatus, HandlerRuns, JobFinish, RunRecord, RunSummary};
use serde_json::json;

contract!(
    the_overview_has_one_row_per_account_and_runs_per_handler_in_its_window,
    an_event_is_found_with_the_jobs_it_went_to,
    events_filter_by_subject_status_and_time,
);

fn run(job: JobId, handler: &str, outcome: &str, started_ms: i64, tokens: u64) -> RunRecord {
    RunRecord {
        job,
        handler: handler.into(),
        account: "acme".into(),
        attempt: 1,
        mode: "live".into(),
        model: "m".into(),
        started_at_ms: started_ms,
        finished_at_ms: started_ms + 100,
        outcome: outcome.into(),
        error: (outcome != "done").then(|| format!("{outcome} here")),
        input_tokens: tokens,
        output_tokens: tokens / 10,
        cost_usd: None,
        steps: json!([]),
    }
}

async fn the_overview_has_one_row_per_account_and_runs_per_handler_in_its_window(
    store: SharedStore,
) {
    assert_eq!(
        store.overview(T0, T0 - 1, 10).await.unwrap(),
        Default::default(),
        "an empty store has nothing to show"
    );
    // acme: two pending (one due later), one dead; globex: one running; initech: only paused.
    let first = due_job(&store, "e1", "acme", "t1", T0 + 5_000).await;
    due_job(&store, "e2", "acme", "t2", T0 + 9_000).await;
    let doomed = ingest_one(
        &store,
        event("e3", "acme", "t3", T0),
        vec![immediate("sla", "t3", 1)],
    )
    .await
    .jobs[0];
    let claimed = store.claim_jobs("w", T0 + 1, 10, 60_000).await.unwrap();
    assert_eq!(ids(&claimed), vec![doomed], "only t3 is due");
    assert!(
        store
            .finish_job(
                doomed,
                "w",
                T0 + 2,
                JobFinish::Dead {
                    error: "boom".into()
                }
            )
            .await
            .unwrap()
    );
    let running = due_job(&store, "e4", "globex", "g1", T0).await;
    assert_eq!(
        ids(&store.claim_jobs("w", T0 + 3, 10, 60_000).await.unwrap()),
        vec![running]
    );
    store
        .pause_account("initech", T0 + 30_000, "429 on GET /tickets/")
        .await
        .unwrap();
    store
        .pause_account("acme", T0 - 1, "long over")
        .await
        .unwrap();

    // Runs: two of triage in the window (done, failed), one of sla before it.
    store
        .record_run(&run(first, "triage", "done", T0 + 10, 1_000))
        .await
        .unwrap();
    store
        .record_run(&run(first, "triage", "failed", T0 + 20, 500))
        .await
        .unwrap();
    store
        .record_run(&run(doomed, "sla", "failed", T0 - 60_000, 7))
        .await
        .unwrap();
    let in_flight = store
        .record_run(&run(running, "triage", "running", T0 + 30, 0))
        .await
        .unwrap();

    let overview = store.overview(T0 + 4, T0, 10).await.unwrap();
    let accounts: Vec<_> = overview
        .accounts
        .iter()
        .map(|a| {
            (
                a.account.as_str(),
                a.pending,
                a.running,
                a.dead,
                a.next_run_at_ms,
                a.paused_until_ms,
            )
        })
        .collect();
    assert_eq!(
        accounts,
        vec![
            ("acme", 2, 0, 1, Some(T0 + 5_000), None),
            ("globex", 0, 1, 0, None, None),
            ("initech", 0, 0, 0, None, Some(T0 + 30_000)),
        ]
    );
    assert_eq!(
        overview.accounts[2].pause_reason.as_deref(),
        Some("429 on GET /tickets/")
    );
    assert_eq!(
        overview.handlers,
        vec![
            HandlerRuns {
                handler: "triage".into(),
                outcome: "done".into(),
                runs: 1,
                input_tokens: 1_000,
                output_tokens: 100
            },
            HandlerRuns {
                handler: "triage".into(),
                outcome: "failed".into(),
                runs: 1,
                input_tokens: 500,
                output_tokens: 50
            },
            HandlerRuns {
                handler: "triage".into(),
                outcome: "running".into(),
                runs: 1,
                input_tokens: 0,
                output_tokens: 0
            },
        ],
        "runs started in the window, per handler and outcome"
    );
    // Failures: every run that neither succeeded nor is still running, newest first.
    let failures: Vec<(&str, &str)> = overview
        .failures
        .iter()
        .map(|f: &RunSummary| (f.handler.as_str(), f.error.as_deref().unwrap_or_default()))
        .collect();
    assert_eq!(
        failures,
        vec![("sla", "failed here"), ("triage", "failed here")]
    );
    assert!(overview.failures.iter().all(|f| f.id != in_flight));
    assert_eq!(
        store.overview(T0 + 4, T0, 1).await.unwrap().failures.len(),
        1,
        "capped"
    );

    // A call slot booked ahead shows until it has passed.
    let (_, reserved) = store
        .reserve_call("globex", "default", T0 + 4, 1_000, 60_000)
        .await
        .unwrap();
    assert!(reserved);
    store
        .reserve_call("globex", "default", T0 + 4, 1_000, 60_000)
        .await
        .unwrap();
    let globex = |o: &hookwise::store::Overview| {
        o.accounts
            .iter()
            .find(|a| a.account == "globex")
            .unwrap()
            .call_slots
            .clone()
    };
    let slots = globex(&store.overview(T0 + 4, T0, 10).await.unwrap());
    assert_eq!(slots.len(), 1, "{slots:?}");
    assert_eq!(slots[0].bucket, "default");
    assert!(slots[0].next_free_ms > T0 + 4, "{slots:?}");
    assert!(globex(&store.overview(T0 + 120_000, T0, 10).await.unwrap()).is_empty());
}

async fn an_event_is_found_with_the_jobs_it_went_to(store: SharedStore) {
    let out = ingest_one(
        &store,
        event("e1", "acme", "t1", T0),
        vec![route("triage", "t1"), route("sla", "t1")],
    )
    .await;
    let unrouted = ingest_one(&store, event("e2", "acme", "t2", T0 + 1), vec![]).await;
    assert!(unrouted.jobs.is_empty());
    let events = store.list_events(&EventFilter::default()).await.unwrap();
    let seq = |id: &str| {
        events
            .iter()
            .find(|e| e.event_id.as_str() == id)
            .unwrap()
            .seq
    };

    let found = store.get_event_with_jobs(seq("e1")).await.unwrap().unwrap();
    assert_eq!(found.event.event_id.as_str(), "e1");
    let mut jobs: Vec<JobId> = found.jobs.iter().map(|j| j.id).collect();
    jobs.sort();
    let mut expected = out.jobs.clone();
    expected.sort();
    assert_eq!(jobs, expected);
    let alone = store.get_event_with_jobs(seq("e2")).await.unwrap().unwrap();
    assert!(alone.jobs.is_empty());
    assert_eq!(alone.event.status, EventStatus::Unrouted);
    assert!(store.get_event_with_jobs(999_999).await.unwrap().is_none());
}

async fn events_filter_by_subject_status_and_time(store: SharedStore) {
    ingest_one(
        &store,
        event("e1", "acme", "t1", T0),
        vec![route("triage", "t1")],
    )
    .await;
    ingest_one(&store, event("e2", "acme", "t2", T0 + 1_000), vec![]).await;
    ingest_one(
        &store,
        event("e3", "acme", "t1", T0 + 2_000),
        vec![route("triage", "t1")],
    )
    .await;
    let list = |filter: EventFilter| {
        let store = store.clone();
        async move {
            store
                .list_events(&filter)
                .await
                .unwrap()
                .into_iter()
                .map(|e| e.event_id.as_str().to_string())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        list(EventFilter {
            subject: Some("t1".into()),
            ..Default::default()
        })
        .await,
        vec!["e3", "e1"]
    );
    assert_eq!(
        list(EventFilter {
            status: Some(EventStatus::Unrouted),
            ..Default::default()
        })
        .await,
        vec!["e2"]
    );
    assert_eq!(
        list(EventFilter {
            since_ms: Some(T0 + 1_000),
            until_ms: Some(T0 + 2_000),
            ..Default::default()
        })
        .await,
        vec!["e2"],
        "since is inclusive, until exclusive"
    );
}
