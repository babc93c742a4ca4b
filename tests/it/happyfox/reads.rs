//! The read tools: exact requests, trimmed answers, caching, credentials and the rate limit.

use super::{Hf, rejected};
use crate::support::fake_happyfox::{API_KEY, AUTH_CODE, Limits};
use hookwise::tools::ToolError;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn get_ticket_sends_basic_auth_and_returns_a_trimmed_ticket() {
    let hf = Hf::start().await;
    let t = hf
        .call("happyfox.get_ticket", json!({"ticket_id": 142}))
        .await
        .unwrap();

    let received = hf.fake.received();
    assert_eq!(hf.fake.calls(), ["GET /ticket/142/"]);
    use base64::Engine;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{API_KEY}:{AUTH_CODE}"));
    assert_eq!(
        received[0].authorization.as_deref(),
        Some(format!("Basic {basic}").as_str())
    );

    assert_eq!(t["id"], 142);
    assert_eq!(t["display_id"], "#BL00000142");
    assert_eq!(
        t["status"],
        json!({"id": 2, "name": "In Progress", "behavior": "pending"})
    );
    assert_eq!(t["priority"], json!({"id": 3, "name": "High"}));
    assert_eq!(
        t["category"],
        json!({"id": 3, "name": "Billing", "time_spent_mandatory": false})
    );
    assert_eq!(t["assignee"]["name"], "Marco Bell");
    assert_eq!(t["contact"]["email"], "dana.whitfield@example.org");
    assert_eq!(t["contact"]["phones"], json!(["+15555550142 (mobile)"]));
    assert_eq!(t["contact"]["contact_groups"], json!(["Northwind Traders"]));
    assert_eq!(t["tags"], json!(["refund", "payments"]));
    assert_eq!(
        t["custom_fields"][1],
        json!({
            "id": 22, "name": "Billing Issue Type", "type": "choice", "value": "Duplicate charge",
            "value_id": 32, "compulsory_on_complete": true
        })
    );
    assert_eq!(t["updates_total"], 4);
    let updates = t["updates"].as_array().unwrap();
    assert_eq!(updates.len(), 4);
    assert_eq!(
        updates[1]["by"],
        json!({"type": "smartrule", "id": 4, "name": null})
    );
    assert_eq!(
        updates[1]["changes"],
        json!({"due_date": "none -> 2026-03-04"})
    );
    assert_eq!(updates[2]["changes"]["status"], "New -> In Progress");
    assert_eq!(updates[2]["changes"]["assignee"], "none -> Marco Bell");
    assert_eq!(updates[0]["attachments"], json!(["bank-statement.png"]));
    assert!(
        updates[3]["message"]
            .as_str()
            .unwrap()
            .starts_with("Great, thank you!")
    );

    // Trimmed: no agent permissions, no pre-signed attachment URLs, no raw HTML copies.
    let text = t.to_string();
    for raw in [
        "permissions",
        "amazonaws",
        "<p>",
        "subscribers",
        "prepopulate_cc",
    ] {
        assert!(!text.contains(raw), "{raw} leaked into {text}");
    }
}

#[tokio::test]
async fn ids_as_strings_and_unknown_fields_are_read_tolerantly() {
    let hf = Hf::start().await;
    let mut ticket = hf.fake.ticket(141);
    ticket["id"] = json!("143");
    ticket["status"]["id"] = json!("1");
    ticket["category"]["id"] = json!("3");
    ticket["a_field_added_next_year"] = json!({"nested": [1, 2]});
    ticket["tags"] = json!(null);
    ticket["updates"] = json!([{"update_id": "77", "by": null, "message": {"html": "<p>Hello<br>there</p>"}, "new_kind_of_change": {}}]);
    hf.fake.put_ticket(ticket);

    let t = hf
        .call("happyfox.get_ticket", json!({"ticket_id": 143}))
        .await
        .unwrap();
    assert_eq!(t["id"], 143, "a string id comes back as a number");
    assert_eq!(t["status"]["id"], 1);
    assert_eq!(t["tags"], json!([]));
    assert_eq!(
        t["updates"][0],
        json!({
            "update_id": 77, "timestamp": null, "by": {"type": "system"}, "message": "Hello\nthere"
        })
    );
}

#[tokio::test]
async fn an_unknown_ticket_is_rejected_in_words_the_model_can_use() {
    let hf = Hf::start().await;
    let message = rejected(
        hf.call("happyfox.get_ticket", json!({"ticket_id": 999}))
            .await,
    );
    assert_eq!(message, "HappyFox found no ticket 999 (404)");
}

#[tokio::test]
async fn list_tickets_sends_its_filters_and_pages_at_most_twenty() {
    let hf = Hf::start().await;
    let page = hf
        .call("happyfox.list_tickets", json!({
            "status": "pending", "category": 3, "query": "contact:\"dana.whitfield@example.org\"",
            "sort": "created_desc", "size": 1, "page": 2
        }))
        .await
        .unwrap();
    let received = hf.fake.received();
    assert_eq!(received[0].path, "/tickets/");
    let query: Vec<(&str, &str)> = received[0]
        .query
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        query,
        [
            ("size", "1"),
            ("page", "2"),
            ("status", "_pending"),
            ("category", "3"),
            ("q", "contact:\"dana.whitfield@example.org\""),
            ("sort", "created"),
        ]
    );
    assert_eq!(
        (
            page["total"].clone(),
            page["page_count"].clone(),
            page["more"].clone()
        ),
        (json!(2), json!(2), json!(false))
    );
    let rows = page["tickets"].as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        rows[0],
        json!({
            "id": 141, "display_id": "#BL00000141", "subject": "Need a copy of my February invoice",
            "status": "New", "status_behavior": "pending", "priority": "Medium",
            "category": {"id": 3, "name": "Billing"}, "assignee": null,
            "contact_email": "dana.whitfield@example.org", "created_at": "2026-03-01 09:12:40",
            "last_modified": "2026-03-01 09:12:40", "unresponded": true, "sla_breaches": 0, "tags": ["invoice"],
        })
    );

    let all = hf.call("happyfox.list_tickets", json!({})).await.unwrap();
    assert_eq!(
        hf.fake.received()[1].param("size"),
        Some("10"),
        "a default page of 10"
    );
    assert_eq!(all["total"], 3);
    assert_eq!(
        hf.fake.received()[1].param("status"),
        None,
        "HappyFox's own default: all"
    );

    let entry = hf.entry("happyfox.list_tickets");
    assert!(
        !entry.violations(&json!({"size": 21})).is_empty(),
        "the page is capped at 20"
    );
    assert!(!entry.violations(&json!({"status": "open"})).is_empty());
    assert!(
        !entry.violations(&json!({"ticket_id": 1})).is_empty(),
        "no unknown arguments"
    );
    assert!(
        entry.violations(&json!({"status": 2})).is_empty(),
        "a status id"
    );
}

#[tokio::test]
async fn list_users_searches_contacts_by_email() {
    let hf = Hf::start().await;
    let found = hf
        .call(
            "happyfox.list_users",
            json!({"email": "dana.whitfield@example.org"}),
        )
        .await
        .unwrap();
    let r = &hf.fake.received()[0];
    assert_eq!(r.path, "/users/");
    assert_eq!(r.param("q"), Some("email:dana.whitfield@example.org"));
    assert_eq!(found["total"], 1);
    assert_eq!(
        found["users"][0],
        json!({
            "id": 5310, "name": "Dana Whitfield", "email": "dana.whitfield@example.org",
            "phones": ["+15555550142 (mobile)"], "contact_groups": ["Northwind Traders"],
            "custom_fields": [{"name": "Account Number", "value": "NW-20417"}],
            "tickets_count": 4, "pending_tickets_count": 1,
        })
    );
    let entry = hf.entry("happyfox.list_users");
    assert!(
        !entry
            .violations(&json!({"email": "a@b.c name:x"}))
            .is_empty(),
        "one search term only"
    );
}

#[tokio::test]
async fn reference_lists_are_trimmed_and_cached_per_account() {
    let hf = Hf::start().await;
    let listed = hf
        .call("happyfox.list_categories", json!({}))
        .await
        .unwrap();
    let billing = &listed["categories"][1];
    assert_eq!(billing["name"], "Billing");
    let ids: Vec<u64> = billing["custom_fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, [21, 22, 25], "Billing's fields in form order");
    assert_eq!(
        billing["custom_fields"][1]["choices"][1],
        json!({"id": 32, "text": "Duplicate charge"})
    );
    assert_eq!(billing["custom_fields"][1]["compulsory_on_completed"], true);
    let support = &listed["categories"][2];
    assert_eq!(support["time_spent_mandatory"], true);
    assert_eq!(support["custom_fields"][0]["required"], true);

    hf.call("happyfox.list_categories", json!({}))
        .await
        .unwrap();
    assert_eq!(
        hf.fake.calls(),
        ["GET /categories/", "GET /ticket_custom_fields/"],
        "the second call is cached"
    );
    hf.call_as("acme2", "happyfox.list_categories", json!({}))
        .await
        .unwrap();
    assert_eq!(
        hf.fake.calls().len(),
        4,
        "another account fetches its own lists"
    );

    let statuses = hf.call("happyfox.list_statuses", json!({})).await.unwrap();
    assert_eq!(
        statuses["statuses"][3],
        json!({"id": 4, "name": "Closed", "behavior": "completed", "default": false})
    );
    let priorities = hf
        .call("happyfox.list_priorities", json!({}))
        .await
        .unwrap();
    let names: Vec<&str> = priorities["priorities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Low", "Medium", "High", "Urgent"]);

    let active = hf.call("happyfox.list_staff", json!({})).await.unwrap();
    let ids = |v: &serde_json::Value| -> Vec<u64> {
        v["staff"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(ids(&active), [7, 12, 15], "inactive agents are left out");
    assert_eq!(
        active["staff"][1],
        json!({
            "id": 12, "name": "Marco Bell", "email": "marco.bell@acme-support.example",
            "active": true, "role": "Agent", "categories": [3, 5],
        })
    );
    let billing_staff = hf
        .call(
            "happyfox.list_staff",
            json!({"category_id": 3, "include_inactive": true}),
        )
        .await
        .unwrap();
    assert_eq!(ids(&billing_staff), [7, 12, 9]);
    assert_eq!(
        hf.fake
            .calls()
            .iter()
            .filter(|c| *c == "GET /staff/")
            .count(),
        1
    );
}

#[tokio::test]
async fn refused_credentials_are_permanent() {
    let hf = Hf::start().await;
    let result = hf
        .call_as("wrongkey", "happyfox.get_ticket", json!({"ticket_id": 142}))
        .await;
    match result {
        Err(ToolError::Permanent(message)) => assert!(message.contains("wrongkey"), "{message}"),
        other => panic!("expected Permanent, got {other:?}"),
    }
    assert_eq!(hf.fake.received()[0].status, 401);
}

#[tokio::test]
async fn a_429_pauses_every_call_of_the_account_for_the_documented_penalty() {
    let hf = Hf::start_with(Limits {
        get: 2,
        post: 1,
        window: Duration::from_secs(60),
        penalty: Duration::from_secs(600),
    })
    .await;
    let get = || hf.call("happyfox.get_ticket", json!({"ticket_id": 142}));
    get().await.unwrap();
    get().await.unwrap();
    let before = chrono::Utc::now().timestamp_millis();
    // HappyFox sends no Retry-After: the governor holds the account for the documented
    // 10 minutes rather than hammering, and defers the job instead of waiting that long.
    match get().await {
        Err(ToolError::RateLimited { until_ms, reason }) => {
            assert!(until_ms >= before + 600_000, "{until_ms} vs {before}");
            assert!(reason.contains("429"), "{reason}");
        }
        other => panic!("expected RateLimited, got {other:?}"),
    }
    // The pause holds POSTs too, and nothing more reaches HappyFox while it lasts.
    let note = json!({"ticket_id": 142, "html": "<p>x</p>"});
    assert!(matches!(
        hf.call("happyfox.add_private_note", note).await,
        Err(ToolError::RateLimited { .. })
    ));
    let statuses: Vec<u16> = hf.fake.received().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 200, 429]);
}
