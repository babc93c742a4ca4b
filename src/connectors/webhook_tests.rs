//! Adapter behaviour on the reference fixtures and on the shapes we tolerate: each connector's
//! webhook adapter, and the generic one, as `[sources.*]` `kind` finds them.

use crate::ingress::sources::*;
use serde_json::{Value, json};

fn by_kind(kind: &str) -> &'static dyn Adapter {
    super::adapter(kind).expect("a registered adapter")
}

fn fixture(path: &str) -> Value {
    let text = std::fs::read_to_string(format!("{}/fixtures/{path}", env!("CARGO_MANIFEST_DIR")))
        .expect("fixture exists");
    serde_json::from_str(&text).expect("fixture is JSON")
}

fn opts() -> AdapterOptions {
    AdapterOptions {
        source: "billing".into(),
        ..AdapterOptions::default()
    }
}

#[test]
fn happyfox_new_ticket_is_created_with_its_id_as_subject() {
    let n = normalize(
        by_kind("happyfox"),
        &fixture("happyfox/ticket_created.json"),
        &opts(),
    )
    .unwrap();
    assert_eq!(n.kind, "happyfox.ticket.created");
    assert_eq!(n.subject.as_deref(), Some("142"));
    assert_eq!(
        n.occurred_at.unwrap().to_rfc3339(),
        "2026-03-02T14:05:12+00:00"
    );
    let actor = n.actor.expect("latest update names its author");
    assert_eq!(actor.kind, "smartrule");
}

#[test]
fn happyfox_ticket_touched_by_staff_is_updated_and_names_the_staff_member() {
    let n = normalize(
        by_kind("happyfox"),
        &fixture("happyfox/ticket_updated.json"),
        &opts(),
    )
    .unwrap();
    assert_eq!(n.kind, "happyfox.ticket.updated");
    assert_eq!(n.subject.as_deref(), Some("142"));
    let actor = n.actor.unwrap();
    assert_eq!((actor.kind.as_str(), actor.id.as_str()), ("staff", "12"));
}

#[test]
fn happyfox_ids_differ_between_states_and_repeat_for_the_same_state() {
    let created = normalize(
        by_kind("happyfox"),
        &fixture("happyfox/ticket_created.json"),
        &opts(),
    )
    .unwrap();
    let updated = normalize(
        by_kind("happyfox"),
        &fixture("happyfox/ticket_updated.json"),
        &opts(),
    )
    .unwrap();
    let again = normalize(
        by_kind("happyfox"),
        &fixture("happyfox/ticket_updated.json"),
        &opts(),
    )
    .unwrap();
    assert_ne!(created.id, updated.id);
    assert_eq!(updated.id, again.id);
}

#[test]
fn happyfox_wrapped_ticket_and_explicit_event_name() {
    let body = json!({"event": "Ticket Updated", "ticket": {"id": "77", "last_modified": "2026-01-01 00:00:00"}});
    let n = normalize(by_kind("happyfox"), &body, &opts()).unwrap();
    assert_eq!(n.kind, "happyfox.ticket.updated");
    assert_eq!(n.subject.as_deref(), Some("77"));
}

#[test]
fn happyfox_without_ticket_id_is_rejected_with_a_reason() {
    let err = normalize(by_kind("happyfox"), &json!({"subject": "x"}), &opts()).unwrap_err();
    assert!(err.contains("ticket id"), "{err}");
}

#[test]
fn planhat_nps_automation_body() {
    let n = normalize(
        by_kind("planhat"),
        &fixture("planhat/nps_submitted.json"),
        &opts(),
    )
    .unwrap();
    assert_eq!(n.kind, "planhat.nps.submitted");
    assert_eq!(
        n.subject.as_deref(),
        Some("64b7e2f09a1c3d5e7f802a11"),
        "NPS is about its company (cId)"
    );
    assert_eq!(
        n.id.as_deref(),
        Some("6729f3a1c4e8b20d5f1a7c33:2024-11-05T14:32:09.915Z")
    );
    assert_eq!(
        n.occurred_at.unwrap().to_rfc3339(),
        "2024-11-05T14:32:10.482+00:00"
    );
}

#[test]
fn planhat_company_and_ticket_events() {
    let company = json!({"event": "company.updated", "model": "Company", "object": {"_id": "c1", "updatedAt": "2024-01-01T00:00:00Z"}});
    let n = normalize(by_kind("planhat"), &company, &opts()).unwrap();
    assert_eq!(
        (n.kind.as_str(), n.subject.as_deref()),
        ("planhat.company.changed", Some("c1"))
    );
    assert_eq!(n.id.as_deref(), Some("company-c1-2024-01-01T00:00:00Z"));

    let ticket = json!({"event": "ticket.created", "object": {"_id": "t1", "companyId": "c2"}});
    let n = normalize(by_kind("planhat"), &ticket, &opts()).unwrap();
    assert_eq!(
        (n.kind.as_str(), n.subject.as_deref()),
        ("planhat.ticket.created", Some("c2"))
    );

    assert!(normalize(by_kind("planhat"), &json!({"object": {}}), &opts()).is_err());
}

#[test]
fn a_blank_planhat_idempotency_key_is_refused_not_replaced() {
    for blank in ["", "   "] {
        let body = json!({"event": "company.updated", "idempotencyKey": blank,
                          "object": {"_id": "c1", "updatedAt": "2024-01-01T00:00:00Z"}});
        let e = normalize(by_kind("planhat"), &body, &opts()).unwrap_err();
        assert!(e.contains("idempotencyKey is blank"), "{e}");
    }
}

#[test]
fn truto_record_event() {
    let body = json!({
        "id": "evt-1", "event": "record:created", "environment_id": "env", "webhook_id": "wh",
        "created_at": "2024-09-10 12:00:00",
        "payload": {"integrated_account_id": "ia-9", "record": {"id": 4411}}
    });
    let n = normalize(by_kind("truto"), &body, &opts()).unwrap();
    assert_eq!(n.kind, "truto.record.created");
    assert_eq!(n.id.as_deref(), Some("evt-1"));
    assert_eq!(n.account.as_deref(), Some("ia-9"));
    assert_eq!(n.subject.as_deref(), Some("4411"));
    assert_eq!(
        n.occurred_at.unwrap().to_rfc3339(),
        "2024-09-10T12:00:00+00:00"
    );
}

#[test]
fn generic_kind_is_prefixed_with_the_source() {
    let body = json!({"type": "invoice.paid"});
    let options = AdapterOptions {
        event_pointer: Some("/type".into()),
        ..opts()
    };
    let n = normalize(by_kind("generic"), &body, &options).unwrap();
    assert_eq!(n.kind, "billing.invoice.paid");
    assert!(normalize(by_kind("generic"), &json!({}), &options).is_err());
}

// Parsing only what is read (`crate::ingress::select`): each adapter, and the bundled handlers,
// find in a payload parsed as far as they declare what they find in the whole of it.

/// Every fixture body, as it is and in the envelopes the adapters look into, and each with one
/// top-level member left out: payloads of every shape the adapters meet.
fn bodies() -> Vec<Value> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let mut bodies = Vec::new();
    for dir in std::fs::read_dir(&root).unwrap() {
        for file in std::fs::read_dir(dir.unwrap().path()).unwrap() {
            let path = file.unwrap().path();
            if path.extension().is_some_and(|e| e == "json") {
                let text = std::fs::read_to_string(&path).unwrap();
                bodies.push(serde_json::from_str::<Value>(&text).unwrap());
            }
        }
    }
    let mut all = Vec::new();
    for body in bodies {
        all.push(json!({"ticket": body.clone(), "event": "Ticket Updated"}));
        all.push(json!({"object": body.clone(), "event": "company.updated", "model": "Company"}));
        all.push(json!({"payload": body.clone(), "event": "integrated_account:created"}));
        if let Some(members) = body.as_object() {
            for key in members.keys() {
                let mut less = members.clone();
                less.remove(key);
                all.push(Value::Object(less));
            }
        }
        all.push(body);
    }
    all
}

#[test]
fn every_adapter_finds_what_it_reads_in_a_payload_parsed_only_as_far_as_it_declares() {
    let bodies = bodies();
    assert!(bodies.len() > 100, "{} bodies", bodies.len());
    for kind in ["happyfox", "planhat", "truto", "generic"] {
        let adapter = crate::connectors::adapter(kind).unwrap();
        let reads = crate::ingress::select::Reads::patterns(
            adapter
                .reads()
                .expect("every bundled adapter declares its reads"),
        );
        assert!(!reads.is_everything());
        let options = AdapterOptions {
            source: "s".into(),
            ..AdapterOptions::default()
        };
        for body in &bodies {
            let text = serde_json::to_string(body).unwrap();
            let kept = reads.parse(&text).unwrap();
            assert_eq!(
                normalize(adapter, &kept, &options),
                normalize(adapter, body, &options),
                "{kind}: {body}"
            );
        }
    }
}

#[test]
fn the_bundled_handlers_route_every_fixture_alike_on_the_parts_they_declare() {
    use crate::ingress::route::EventRouter;
    use crate::kernel::event::{AccountId, Event, EventId, SourceName};
    use std::path::Path;
    use std::sync::Arc;

    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let handlers = crate::handler::load_dir(&root.join("handlers")).unwrap();
    let router = EventRouter::new(
        Arc::new(crate::handler::HandlerSet::new(handlers)),
        &Default::default(),
        5,
    );
    let mut routed = 0;
    for (dir, kind) in [
        ("happyfox", "happyfox"),
        ("planhat", "planhat"),
        ("truto", "truto"),
    ] {
        let adapter = crate::connectors::adapter(kind).unwrap();
        let mut reads = router.reads();
        reads.merge(&crate::ingress::select::Reads::patterns(
            adapter.reads().unwrap(),
        ));
        for file in std::fs::read_dir(root.join("fixtures").join(dir)).unwrap() {
            let path = file.unwrap().path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let body = std::fs::read_to_string(&path).unwrap();
            let full: Value = serde_json::from_str(&body).unwrap();
            let kept = reads.parse(&body).unwrap();
            let normalized = adapter.normalize(&full, &Default::default()).unwrap();
            assert_eq!(
                adapter.normalize(&kept, &Default::default()).unwrap(),
                normalized
            );
            let now = chrono::Utc::now();
            let event = Event {
                id: EventId::new("e"),
                source: SourceName::new(dir),
                kind: normalized.kind,
                account: AccountId::new("acme"),
                subject: normalized.subject.unwrap_or_default(),
                occurred_at: now,
                received_at: now,
                actor: normalized.actor,
                payload: String::new(),
            };
            let (on_full, on_kept) = (router.decide(&event, &full), router.decide(&event, &kept));
            assert_eq!(
                format!("{on_kept:?}"),
                format!("{on_full:?}"),
                "{}",
                path.display()
            );
            if let crate::store::Disposition::Route(routes) = on_full {
                routed += routes.len();
            }
        }
    }
    // The fixtures exist to start the bundled handlers: most of them do.
    assert!(routed >= 8, "{routed} routes");
}
