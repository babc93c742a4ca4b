//! Contract: ingest dedupes, keeps batch order, routes and debounces, and stores what it ignores.

use super::*;
use hookwise::store::{EventFilter, EventStatus, JobFilter, JobState};

contract!(
    dedupe_within_and_across_batches,
    outcomes_follow_batch_order,
    routing_creates_a_job_then_debounces_into_it_up_to_the_deadline,
    events_of_one_key_in_one_batch_debounce_as_they_would_one_by_one,
    ignored_and_unrouted_events_are_stored_without_jobs,
    list_events_filters_and_pages_newest_first,
    each_event_keeps_the_trace_context_of_its_delivery,
);

/// A run continues the traces of the requests that delivered its job's events, on whichever
/// replica claims it: the claim hands back each event's `traceparent`, in delivery order.
async fn each_event_keeps_the_trace_context_of_its_delivery(store: SharedStore) {
    let first = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let folded = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let r = vec![route("triage", "t1")];
    let traced = |id: &str, trace: Option<&str>| IngestItem {
        trace_context: trace.map(str::to_string),
        ..routed(event(id, "acme", "t1", T0), r.clone())
    };
    store
        .ingest(vec![traced("e1", Some(first)), traced("e2", None)])
        .await
        .unwrap();
    store
        .ingest(vec![traced("e3", Some(folded))])
        .await
        .unwrap();
    let claimed = store.claim_jobs("w", T0 + 60_000, 1, 30_000).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let traces: Vec<Option<&str>> = claimed[0]
        .events
        .iter()
        .map(|e| e.trace_context.as_deref())
        .collect();
    assert_eq!(traces, [Some(first), None, Some(folded)]);
}

async fn dedupe_within_and_across_batches(store: SharedStore) {
    let r = vec![route("triage", "t1")];
    let mut again = event("e1", "acme", "t1", T0 + 5);
    again.payload = r#"{"id":"e1","retried":true}"#.into();
    let first = store
        .ingest(vec![
            routed(event("e1", "acme", "t1", T0), r.clone()),
            routed(event("e2", "acme", "t1", T0), r.clone()),
            routed(again, r.clone()),
        ])
        .await
        .unwrap();
    let dup: Vec<bool> = first.iter().map(|o| o.duplicate).collect();
    assert_eq!(dup, [false, false, true]);
    assert_eq!(first[0].jobs, first[1].jobs, "same key: one job");
    assert!(first[2].jobs.is_empty(), "a duplicate routes nothing");

    let second = store
        .ingest(vec![
            routed(event("e2", "acme", "t1", T0 + 10), r.clone()),
            routed(event("e3", "acme", "t1", T0 + 10), r.clone()),
        ])
        .await
        .unwrap();
    let dup: Vec<bool> = second.iter().map(|o| o.duplicate).collect();
    assert_eq!(dup, [true, false]);

    // The id is unique per source, not globally.
    let mut elsewhere = event("e1", "acme", "t1", T0 + 20);
    elsewhere.source = SourceName::new("planhat");
    assert!(!ingest_one(&store, elsewhere, vec![]).await.duplicate);

    let all = store
        .list_events(&EventFilter {
            limit: 100,
            ..EventFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 4);
    let kept = store
        .get_event(&SourceName::new("happyfox"), &EventId::new("e1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(kept.payload, r#"{"id":"e1"}"#, "the first delivery is kept");
    assert_eq!(kept.received_at_ms, T0);
    let missing = store
        .get_event(&SourceName::new("happyfox"), &EventId::new("nope"))
        .await
        .unwrap();
    assert_eq!(missing, None);

    let job = job(&store, first[0].jobs[0]).await;
    assert_eq!(event_ids(&job), ["e1", "e2", "e3"]);
    assert_eq!(job.job.events, 3);
}

async fn outcomes_follow_batch_order(store: SharedStore) {
    let outcomes = store
        .ingest(vec![
            routed(event("b", "acme", "t2", T0), vec![route("triage", "t2")]),
            routed(
                event("a", "acme", "t1", T0),
                vec![route("triage", "t1"), route("summarize", "t1")],
            ),
            IngestItem {
                event: event("echo", "acme", "t1", T0),
                disposition: Disposition::Ignore("our own note".into()),
                trace_context: None,
            },
            routed(event("a", "acme", "t1", T0), vec![route("triage", "t1")]),
            routed(event("lonely", "acme", "t3", T0), vec![]),
        ])
        .await
        .unwrap();
    let order: Vec<(&str, bool, usize)> = outcomes
        .iter()
        .map(|o| (o.event_id.as_str(), o.duplicate, o.jobs.len()))
        .collect();
    assert_eq!(
        order,
        [
            ("b", false, 1),
            ("a", false, 2),
            ("echo", false, 0),
            ("a", true, 0),
            ("lonely", false, 0),
        ]
    );
    // Jobs of one event come in route order, each its own.
    let [triage, summarize] = outcomes[1].jobs[..] else {
        panic!("two jobs")
    };
    assert_eq!(job(&store, triage).await.job.handler, "triage");
    assert_eq!(job(&store, summarize).await.job.handler, "summarize");
    assert_ne!(outcomes[0].jobs[0], triage, "another subject, another job");
}

async fn events_of_one_key_in_one_batch_debounce_as_they_would_one_by_one(store: SharedStore) {
    // The sequence of the test above, arriving as one batch, with another key in between.
    let r = || vec![route("triage", "t1")];
    let outcomes = store
        .ingest(vec![
            routed(event("b1", "acme", "t1", T0), r()),
            routed(event("b2", "acme", "t1", T0 + 30_000), r()),
            routed(
                event("x1", "acme", "t2", T0 + 31_000),
                vec![route("triage", "t2")],
            ),
            routed(event("b3", "acme", "t1", T0 + 280_000), r()),
            routed(event("b4", "acme", "t1", T0 + 10_000), r()),
        ])
        .await
        .unwrap();
    let folded: Vec<usize> = outcomes.iter().map(|o| o.folded).collect();
    assert_eq!(folded, [0, 1, 0, 1, 1]);
    let id = outcomes[0].jobs[0];
    assert!([1, 3, 4].iter().all(|&i| outcomes[i].jobs == [id]));
    assert_ne!(outcomes[2].jobs, [id]);
    let j = job(&store, id).await;
    assert_eq!(
        j.job.run_at_ms,
        T0 + 300_000,
        "pushed, capped, never pulled back"
    );
    assert_eq!(j.job.first_seen_ms, T0);
    assert_eq!(j.job.updated_at_ms, T0 + 10_000, "the batch's last event");
    assert_eq!(event_ids(&j), ["b1", "b2", "b3", "b4"]);
    // A batch whose events all fold into a pending job created earlier.
    let more = store
        .ingest(vec![
            routed(event("b5", "acme", "t1", T0 + 1_000), r()),
            routed(event("b6", "acme", "t1", T0 + 2_000), r()),
        ])
        .await
        .unwrap();
    assert_eq!((more[0].folded, more[1].folded), (1, 1));
    assert_eq!(more[1].jobs, [id]);
    assert_eq!(event_ids(&job(&store, id).await).len(), 6);
}

async fn routing_creates_a_job_then_debounces_into_it_up_to_the_deadline(store: SharedStore) {
    let r = || vec![route("triage", "t1")];
    let created = ingest_one(&store, event("e1", "acme", "t1", T0), r()).await;
    let id = created.jobs[0];
    let j = job(&store, id).await.job;
    assert_eq!(j.state, JobState::Pending);
    assert_eq!((j.handler.as_str(), j.account.as_str()), ("triage", "acme"));
    assert_eq!(j.subject, "t1");
    assert_eq!(j.run_at_ms, T0 + 60_000, "now + period");
    assert_eq!(j.first_seen_ms, T0);
    assert_eq!(j.deadline_at_ms, T0 + 300_000, "first seen + max wait");
    assert_eq!((j.attempts, j.max_attempts), (0, 3));
    assert_eq!((j.created_at_ms, j.updated_at_ms), (T0, T0));
    assert_eq!(
        (j.lease_owner, j.lease_until_ms, j.finished_at_ms),
        (None, None, None)
    );

    // Trailing: each event pushes the run to its own time + period...
    let o = ingest_one(&store, event("e2", "acme", "t1", T0 + 30_000), r()).await;
    assert_eq!(o.jobs, [id]);
    let j = job(&store, id).await.job;
    assert_eq!(j.run_at_ms, T0 + 90_000);
    assert_eq!(j.updated_at_ms, T0 + 30_000);
    // ...but never past the deadline...
    ingest_one(&store, event("e3", "acme", "t1", T0 + 280_000), r()).await;
    assert_eq!(job(&store, id).await.job.run_at_ms, T0 + 300_000);
    // ...and never earlier than it already is.
    ingest_one(&store, event("e4", "acme", "t1", T0 + 10_000), r()).await;
    let j = job(&store, id).await;
    assert_eq!(j.job.run_at_ms, T0 + 300_000);
    assert_eq!(j.job.first_seen_ms, T0);
    assert_eq!(event_ids(&j), ["e1", "e2", "e3", "e4"]);

    // The key is (handler, account, subject): change any part, get another job.
    for (n, (handler, account, subject)) in [
        ("triage", "acme", "t2"),
        ("summarize", "acme", "t1"),
        ("triage", "globex", "t1"),
    ]
    .into_iter()
    .enumerate()
    {
        let o = ingest_one(
            &store,
            event(&format!("k{n}"), account, "whatever", T0),
            vec![route(handler, subject)],
        )
        .await;
        assert_ne!(o.jobs, [id], "{handler}/{account}/{subject}");
    }

    // A cap shorter than the period: the deadline is one period, not less.
    let short = Route {
        max_wait_ms: 10_000,
        ..route("triage", "t9")
    };
    let o = ingest_one(&store, event("s1", "acme", "t9", T0), vec![short]).await;
    let j = job(&store, o.jobs[0]).await.job;
    assert_eq!((j.run_at_ms, j.deadline_at_ms), (T0 + 60_000, T0 + 60_000));
}

async fn ignored_and_unrouted_events_are_stored_without_jobs(store: SharedStore) {
    let outcomes = store
        .ingest(vec![
            IngestItem {
                event: event("echo", "acme", "t1", T0),
                disposition: Disposition::Ignore("echo of our own note".into()),
                trace_context: None,
            },
            routed(event("nobody", "acme", "t1", T0), vec![]),
            routed(
                event("wanted", "acme", "t1", T0),
                vec![route("triage", "t1")],
            ),
        ])
        .await
        .unwrap();
    assert!(outcomes[0].jobs.is_empty() && outcomes[1].jobs.is_empty());
    let status = |id: &'static str| {
        let store = store.clone();
        async move {
            let e = store
                .get_event(&SourceName::new("happyfox"), &EventId::new(id))
                .await
                .unwrap()
                .unwrap();
            (e.status, e.status_reason)
        }
    };
    assert_eq!(
        status("echo").await,
        (EventStatus::Ignored, Some("echo of our own note".into()))
    );
    assert_eq!(status("nobody").await, (EventStatus::Unrouted, None));
    assert_eq!(status("wanted").await, (EventStatus::Routed, None));
    let jobs = store
        .list_jobs(&JobFilter {
            limit: 100,
            ..JobFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(job(&store, jobs[0].id).await.events.len(), 1);
}

async fn list_events_filters_and_pages_newest_first(store: SharedStore) {
    let mut created = event("e1", "acme", "t1", T0);
    created.kind = "happyfox.ticket.created".into();
    let mut nps = event("e2", "northwind", "c1", T0 + 1);
    nps.source = SourceName::new("planhat");
    nps.kind = "planhat.nps.submitted".into();
    let mut actor = event("e4", "globex", "t4", T0 + 3);
    actor.actor = Some(hookwise::kernel::event::Actor {
        kind: "staff".into(),
        id: "7".into(),
    });
    store
        .ingest(vec![
            routed(created, vec![]),
            routed(nps, vec![]),
            routed(event("e3", "acme", "t3", T0 + 2), vec![]),
            routed(actor, vec![]),
        ])
        .await
        .unwrap();
    let list = |filter: EventFilter| {
        let store = store.clone();
        async move {
            let events = store.list_events(&filter).await.unwrap();
            events
                .iter()
                .map(|e| e.event_id.to_string())
                .collect::<Vec<_>>()
        }
    };
    let all = |limit| EventFilter {
        limit,
        ..EventFilter::default()
    };
    assert_eq!(list(all(10)).await, ["e4", "e3", "e2", "e1"]);
    assert_eq!(list(all(2)).await, ["e4", "e3"]);
    let by = |f: fn(&mut EventFilter)| {
        let mut filter = all(10);
        f(&mut filter);
        filter
    };
    assert_eq!(
        list(by(|f| f.source = Some("happyfox".into()))).await,
        ["e4", "e3", "e1"]
    );
    assert_eq!(
        list(by(|f| f.account = Some("acme".into()))).await,
        ["e3", "e1"]
    );
    assert_eq!(
        list(by(|f| f.kind = Some("happyfox.ticket.updated".into()))).await,
        ["e4", "e3"]
    );
    let e3 = store
        .get_event(&SourceName::new("happyfox"), &EventId::new("e3"))
        .await
        .unwrap()
        .unwrap();
    let mut page = all(10);
    page.before_seq = Some(e3.seq);
    assert_eq!(list(page).await, ["e2", "e1"]);
    let mut narrow = all(1);
    narrow.source = Some("happyfox".into());
    narrow.account = Some("acme".into());
    assert_eq!(list(narrow).await, ["e3"]);

    // Every field comes back as stored.
    let e1 = &store.list_events(&all(10)).await.unwrap()[3];
    assert_eq!(e1.kind, "happyfox.ticket.created");
    assert_eq!((e1.account.as_str(), e1.subject.as_str()), ("acme", "t1"));
    assert_eq!((e1.occurred_at_ms, e1.received_at_ms), (T0 - 1_000, T0));
    assert_eq!(e1.payload, r#"{"id":"e1"}"#);
}
