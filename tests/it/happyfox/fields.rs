//! Custom fields: the live schema is the job ticket's category's fields, so a field that does not
//! exist is refused before anything is sent, and a mandatory empty one is required; a call naming
//! another ticket is checked against that ticket's own category.

use super::{Hf, rejected};
use serde_json::json;

#[tokio::test]
async fn the_live_schema_is_exactly_the_tickets_category_fields() {
    let hf = Hf::start().await;
    let (entry, notes) = hf
        .live_entry("happyfox.update_custom_fields", "acme", "142")
        .await;
    assert!(notes.is_empty(), "{notes:?}");
    assert_eq!(
        hf.fake.calls(),
        ["GET /ticket/142/", "GET /ticket_custom_fields/"]
    );

    let fields = &entry.parameters["properties"]["fields"];
    let mut keys: Vec<&str> = fields["properties"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    assert_eq!(keys, ["21", "22", "25"], "Billing's fields only");
    assert_eq!(fields["additionalProperties"], false);
    assert_eq!(
        fields["required"],
        json!([]),
        "nothing mandatory is empty on ticket 142"
    );
    assert_eq!(fields["properties"]["22"]["type"], "integer");
    assert_eq!(fields["properties"]["22"]["enum"], json!([31, 32, 33]));
    let described = fields["properties"]["22"]["description"].as_str().unwrap();
    assert!(
        described.contains("32 = Duplicate charge")
            && described.contains("Current value: \"Duplicate charge\""),
        "{described}"
    );
    assert!(
        described.contains("before the ticket is completed"),
        "{described}"
    );

    // Product Area belongs to Technical Support: it does not exist for this ticket.
    let unknown = entry.violations(&json!({"ticket_id": 142, "fields": {"24": 41}}));
    assert!(unknown.iter().any(|v| v.contains("24")), "{unknown:?}");
    assert!(
        !entry
            .violations(&json!({"ticket_id": 142, "fields": {"22": "Refund"}}))
            .is_empty(),
        "labels are not ids"
    );
    assert!(
        !entry
            .violations(&json!({"ticket_id": 142, "fields": {"22": 41}}))
            .is_empty(),
        "another field's choice"
    );
    assert!(
        !entry
            .violations(&json!({"ticket_id": 142, "fields": {}}))
            .is_empty(),
        "something to set"
    );
    assert!(
        entry
            .violations(&json!({"ticket_id": 142, "fields": {"22": 31, "21": "SO-1"}}))
            .is_empty()
    );
}

#[tokio::test]
async fn a_mandatory_field_that_is_empty_is_required() {
    let hf = Hf::start().await;
    let (entry, _) = hf
        .live_entry("happyfox.update_custom_fields", "acme", "150")
        .await;
    let fields = &entry.parameters["properties"]["fields"];
    assert_eq!(fields["required"], json!(["24"]));
    let missing = entry.violations(&json!({"ticket_id": 150, "fields": {"25": "ESC-1"}}));
    assert!(missing.iter().any(|v| v.contains("24")), "{missing:?}");
    assert!(
        entry
            .violations(&json!({"ticket_id": 150, "fields": {"24": 43, "25": "ESC-1"}}))
            .is_empty()
    );
}

#[tokio::test]
async fn values_are_written_as_t_cf_keys_by_the_bot() {
    let hf = Hf::start().await;
    let done = hf
        .call(
            "happyfox.update_custom_fields",
            json!({"ticket_id": 141, "fields": {"22": 31, "21": "SO-9"}}),
        )
        .await
        .unwrap();
    assert_eq!(
        hf.fake.calls(),
        [
            "GET /ticket/141/",
            "GET /ticket_custom_fields/",
            "POST /ticket/141/update_custom_fields/"
        ]
    );
    assert_eq!(
        hf.fake.writes()[0].body,
        json!({"staff": 7, "t-cf-21": "SO-9", "t-cf-22": 31})
    );
    assert_eq!(
        done["fields"],
        json!([
            {"id": 21, "name": "Order Number", "value": "SO-9"},
            {"id": 22, "name": "Billing Issue Type", "value": "Refund"},
        ])
    );
    assert_eq!(done["done"], "custom fields updated");
    assert_eq!(hf.fake.ticket(141)["custom_fields"][1]["value_id"], 31);
}

#[tokio::test]
async fn another_ticket_is_checked_against_its_own_category_and_nothing_is_sent() {
    let hf = Hf::start().await;
    // The run is about 142 (Billing), where field 21 exists; the model names 150 (Technical Support).
    let (entry, _) = hf
        .live_entry("happyfox.update_custom_fields", "acme", "142")
        .await;
    let args = json!({"ticket_id": 150, "fields": {"21": "SO-1"}});
    assert!(
        entry.violations(&args).is_empty(),
        "valid for the run's ticket"
    );
    let message = rejected(entry.tool.call(&hf.ctx("acme", "142"), args).await);
    assert_eq!(
        message,
        "field 21 does not exist in category Technical Support (5) of ticket 150; its fields are: \
         24 (Product Area), 25 (Internal Escalation Ref); field 24 (Product Area) is mandatory and \
         empty on ticket 150: include it"
    );
    let message = rejected(
        hf.call(
            "happyfox.update_custom_fields",
            json!({"ticket_id": 150, "fields": {"24": 31}}),
        )
        .await,
    );
    assert_eq!(
        message,
        "field 24 (Product Area) takes one choice id of: 41 = Mobile app, 42 = Web dashboard, 43 = Public API, found 31"
    );
    assert!(hf.fake.writes().is_empty(), "{:?}", hf.fake.calls());
}

#[tokio::test]
async fn without_a_ticket_subject_the_static_schema_stays_and_a_missing_ticket_is_noted() {
    let hf = Hf::start().await;
    let (entry, notes) = hf
        .live_entry("happyfox.update_custom_fields", "acme", "company-7")
        .await;
    assert!(notes.is_empty());
    assert!(
        entry.parameters["properties"]["fields"]["propertyNames"].is_object(),
        "the static schema"
    );
    assert!(hf.fake.received().is_empty());

    let (_, notes) = hf
        .live_entry("happyfox.update_custom_fields", "acme", "999")
        .await;
    assert_eq!(notes.len(), 1);
    assert!(
        notes[0].contains("live schema unavailable") && notes[0].contains("no ticket 999"),
        "{notes:?}"
    );
}
