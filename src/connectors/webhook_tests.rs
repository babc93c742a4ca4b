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
