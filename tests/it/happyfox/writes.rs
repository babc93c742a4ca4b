//! The write tools: exact bodies as the bot, refusals in both documented shapes (one inside a
//! 2xx), the bot id an account needs, and the live schemas of statuses, priorities, categories.

use super::{Hf, rejected};
use hookwise::tools::ToolError;
use serde_json::json;

#[tokio::test]
async fn a_private_note_is_posted_as_the_bot_with_its_options() {
    let hf = Hf::start().await;
    let done = hf
        .call("happyfox.add_private_note", json!({
            "ticket_id": 142, "html": "<p><b>Triage (hookwise)</b></p>", "time_spent": 3, "alert": "category"
        }))
        .await
        .unwrap();
    let writes = hf.fake.writes();
    assert_eq!(writes.len(), 1);
    assert_eq!(writes[0].path, "/ticket/142/staff_pvtnote/");
    assert_eq!(
        writes[0].body,
        json!({"staff": 7, "html": "<p><b>Triage (hookwise)</b></p>", "time_spent": 3, "alert": "c"})
    );
    assert_eq!(done["ticket_id"], 142);
    assert_eq!(done["done"], "private note added");
    assert_eq!(done["ticket"]["status"], "In Progress");
    let last = hf.fake.ticket(142)["updates"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["by"]["id"], 7);

    hf.call(
        "happyfox.add_private_note",
        json!({"ticket_id": 142, "html": "<p>x</p>", "alert": 12}),
    )
    .await
    .unwrap();
    assert_eq!(
        hf.fake.writes()[1].body,
        json!({"staff": 7, "html": "<p>x</p>", "alert": 12})
    );
}

#[tokio::test]
async fn update_ticket_sends_only_what_changes_and_never_a_message() {
    let hf = Hf::start().await;
    let done = hf
        .call(
            "happyfox.update_ticket",
            json!({"ticket_id": 142, "priority": 4}),
        )
        .await
        .unwrap();
    assert_eq!(done["ticket"]["priority"], "Urgent");
    hf.call(
        "happyfox.update_ticket",
        json!({"ticket_id": 142, "assignee": null, "status": 3}),
    )
    .await
    .unwrap();
    let bodies: Vec<_> = hf
        .fake
        .writes()
        .into_iter()
        .map(|w| (w.path, w.body))
        .collect();
    assert_eq!(
        bodies,
        [
            (
                "/ticket/142/staff_update/".to_string(),
                json!({"staff": 7, "priority": 4})
            ),
            (
                "/ticket/142/staff_update/".to_string(),
                json!({"staff": 7, "status": 3, "assignee": null})
            ),
        ]
    );
    assert!(hf.fake.ticket(142)["assigned_to"].is_null());

    let message = rejected(
        hf.call(
            "happyfox.update_ticket",
            json!({"ticket_id": 142, "time_spent": 5}),
        )
        .await,
    );
    assert!(message.contains("nothing to change"), "{message}");
    assert_eq!(hf.fake.writes().len(), 2, "nothing was sent");
    let entry = hf.entry("happyfox.update_ticket");
    assert!(
        !entry
            .violations(&json!({"ticket_id": 142, "html": "<p>hi</p>"}))
            .is_empty(),
        "no public text here"
    );
}

#[tokio::test]
async fn update_ticket_offers_the_accounts_own_statuses_and_priorities() {
    let hf = Hf::start().await;
    let (entry, notes) = hf.live_entry("happyfox.update_ticket", "acme", "142").await;
    assert!(notes.is_empty(), "{notes:?}");
    let p = &entry.parameters["properties"];
    assert_eq!(p["status"]["enum"], json!([1, 2, 3, 4]));
    assert_eq!(p["priority"]["enum"], json!([1, 2, 3, 4]));
    let described = p["status"]["description"].as_str().unwrap();
    assert!(described.contains("4 = Closed (completed)"), "{described}");
    assert!(
        !entry
            .violations(&json!({"ticket_id": 142, "priority": 9}))
            .is_empty()
    );
    assert!(
        entry
            .violations(&json!({"ticket_id": 142, "priority": 3}))
            .is_empty()
    );
    assert_eq!(hf.fake.calls(), ["GET /statuses/", "GET /priorities/"]);
}

#[tokio::test]
async fn a_refusal_inside_a_200_is_rejected_naming_the_field() {
    let hf = Hf::start().await;
    // With the definitions cached, the refusal names the field, not only its key.
    hf.call("happyfox.list_categories", json!({}))
        .await
        .unwrap();
    let message = rejected(
        hf.call(
            "happyfox.update_ticket",
            json!({"ticket_id": 141, "status": 4}),
        )
        .await,
    );
    assert_eq!(
        message,
        "HappyFox refused the update of ticket 141: t-cf-22 (Billing Issue Type): This field should be \
         filled before marking this ticket as completed"
    );
    let last = hf.fake.received().last().unwrap().clone();
    assert_eq!(last.status, 200, "HappyFox said no with a 200");
    assert_eq!(
        hf.fake.ticket(141)["status"]["name"],
        "New",
        "nothing changed"
    );
}

#[tokio::test]
async fn validation_errors_name_the_fields_in_both_shapes() {
    let hf = Hf::start().await;
    let message = rejected(
        hf.call(
            "happyfox.move_ticket",
            json!({"ticket_id": 142, "category_id": 99}),
        )
        .await,
    );
    assert_eq!(
        message,
        "HappyFox refused the move of ticket 142 to category 99 (400): target_category_id: Select a valid choice."
    );
    // Technical Support needs time spent on every staff write.
    let message = rejected(
        hf.call(
            "happyfox.add_private_note",
            json!({"ticket_id": 150, "html": "<p>x</p>"}),
        )
        .await,
    );
    assert_eq!(
        message,
        "HappyFox refused the private note on ticket 150 (400): time_spent: This field is required."
    );
    hf.call(
        "happyfox.add_private_note",
        json!({"ticket_id": 150, "html": "<p>x</p>", "time_spent": 1}),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn a_public_reply_is_a_staff_update_with_a_message_that_emails_by_default() {
    let hf = Hf::start().await;
    let done = hf
        .call(
            "happyfox.reply_to_customer",
            json!({"ticket_id": 142, "html": "<p>Hi Dana, refunded.</p>"}),
        )
        .await
        .unwrap();
    assert_eq!(done["done"], "public reply sent");
    hf.call(
        "happyfox.reply_to_customer",
        json!({"ticket_id": 142, "html": "<p>Portal only</p>", "notify_customer": false}),
    )
    .await
    .unwrap();
    let writes = hf.fake.writes();
    assert_eq!(writes[0].path, "/ticket/142/staff_update/");
    assert_eq!(
        writes[0].body,
        json!({"staff": 7, "html": "<p>Hi Dana, refunded.</p>", "update_customer": true})
    );
    assert_eq!(writes[1].body["update_customer"], false);
    let last = hf.fake.ticket(142)["updates"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["message"]["text"], "<p>Portal only</p>");
}

#[tokio::test]
async fn move_ticket_offers_real_categories_and_moves_as_the_bot() {
    let hf = Hf::start().await;
    let (entry, _) = hf.live_entry("happyfox.move_ticket", "acme", "142").await;
    assert_eq!(
        entry.parameters["properties"]["category_id"]["enum"],
        json!([1, 3, 5, 7])
    );
    assert!(
        !entry
            .violations(&json!({"ticket_id": 142, "category_id": 99}))
            .is_empty()
    );

    let done = hf
        .call(
            "happyfox.move_ticket",
            json!({"ticket_id": 142, "category_id": 5, "note": "An app crash, not billing"}),
        )
        .await
        .unwrap();
    assert_eq!(
        hf.fake.writes()[0].body,
        json!({"staff_id": 7, "target_category_id": 5, "move_note": "An app crash, not billing"})
    );
    assert_eq!(done["message"], "moved ticket to Technical Support");
    assert_eq!(hf.fake.ticket(142)["category"]["id"], 5);
}

#[tokio::test]
async fn without_a_bot_staff_id_writes_are_permanent_failures_and_send_nothing() {
    let hf = Hf::start().await;
    let calls = [
        (
            "happyfox.add_private_note",
            json!({"ticket_id": 142, "html": "<p>x</p>"}),
        ),
        (
            "happyfox.update_ticket",
            json!({"ticket_id": 142, "priority": 1}),
        ),
        (
            "happyfox.reply_to_customer",
            json!({"ticket_id": 142, "html": "<p>x</p>"}),
        ),
        (
            "happyfox.move_ticket",
            json!({"ticket_id": 142, "category_id": 5}),
        ),
        (
            "happyfox.update_custom_fields",
            json!({"ticket_id": 142, "fields": {"21": "SO-1"}}),
        ),
    ];
    for (name, args) in calls {
        match hf.call_as("nobot", name, args).await {
            Err(ToolError::Permanent(message)) => assert!(
                message.contains("set bot_staff_id under [accounts.nobot]"),
                "{name}: {message}"
            ),
            other => panic!("{name}: expected Permanent, got {other:?}"),
        }
    }
    assert!(hf.fake.received().is_empty(), "{:?}", hf.fake.calls());
    // Reads do not need it.
    hf.call_as("nobot", "happyfox.get_ticket", json!({"ticket_id": 142}))
        .await
        .unwrap();
}
