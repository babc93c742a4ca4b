//! HappyFox ticket webhooks. The envelope is undocumented (see reference/happyfox.md §5): we accept
//! a bare ticket object or one wrapped as `{"ticket": {...}}`, with or without an event name.

use crate::ingress::sources::{
    Adapter, AdapterOptions, Normalized, dotted, first_id, first_time, id_string,
};
use crate::kernel::event::Actor;
use serde_json::Value;

pub fn normalize(payload: &Value) -> Result<Normalized, String> {
    let ticket = payload
        .get("ticket")
        .filter(|t| t.is_object())
        .unwrap_or(payload);
    let ticket_id = first_id(ticket, &["/id", "/ticket_id", "/ticket_number"])
        .ok_or("expected a HappyFox ticket: no ticket id at `id` (or `ticket.id`, `ticket_id`)")?;
    let updates = ticket
        .get("updates")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    // The newest update is the one with the largest update_id; fall back to the array order.
    let latest = updates.iter().max_by_key(|u| {
        u.get("update_id")
            .and_then(Value::as_i64)
            .unwrap_or(i64::MIN)
    });

    let action = explicit_action(payload).unwrap_or_else(|| {
        if looks_new(ticket, updates) {
            "created".into()
        } else {
            "updated".into()
        }
    });

    // A retry of the same notification describes the same ticket state; a new change moves
    // `last_modified` or adds an update. Without `last_modified` the body hash is the id.
    let id = ticket
        .get("last_modified")
        .and_then(Value::as_str)
        .map(|modified| {
            let update = latest
                .and_then(|u| u.get("update_id"))
                .and_then(id_string)
                .unwrap_or_else(|| "0".into());
            format!("ticket-{ticket_id}-{action}-{modified}-{update}")
        });

    let actor = latest.and_then(|u| u.get("by")).and_then(|by| {
        Some(Actor {
            kind: by.get("type")?.as_str()?.to_string(),
            id: id_string(by.get("id")?)?,
        })
    });

    Ok(Normalized {
        kind: format!("happyfox.ticket.{action}"),
        id,
        account: None,
        subject: Some(ticket_id),
        occurred_at: first_time(
            ticket,
            &["/last_modified", "/last_updated_at", "/created_at"],
        ),
        actor,
    })
}

/// An event name in the payload, if the sender (or a relay) includes one.
fn explicit_action(payload: &Value) -> Option<String> {
    let name = ["event", "event_type", "action"]
        .iter()
        .find_map(|k| payload.get(*k).and_then(Value::as_str))?;
    let name = dotted(name);
    if name.contains("creat") {
        Some("created".into())
    } else if name.contains("updat") || name.contains("chang") {
        Some("updated".into())
    } else {
        None
    }
}

/// Without an event name: a ticket no staff member has touched yet is taken as newly created.
fn looks_new(ticket: &Value, updates: &[Value]) -> bool {
    let staff_touched = updates
        .iter()
        .any(|u| u.pointer("/by/type").and_then(Value::as_str) == Some("staff"));
    let staff_replied = ticket
        .get("last_staff_reply_at")
        .is_some_and(|v| !v.is_null());
    let messages = ticket
        .get("messages_count")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    !staff_touched && !staff_replied && messages <= 1
}

/// The adapter `kind = "happyfox"` sources use.
pub struct Webhooks;

impl Adapter for Webhooks {
    fn kind(&self) -> &'static str {
        "happyfox"
    }
    fn normalize(&self, payload: &Value, _options: &AdapterOptions) -> Result<Normalized, String> {
        normalize(payload)
    }
    fn reads(&self) -> Option<&'static [&'static str]> {
        Some(READS)
    }
}

/// What `normalize` reads: the event name, and the ticket's fields either bare or under `ticket`.
const READS: &[&str] = &[
    "/event",
    "/event_type",
    "/action",
    "/id",
    "/ticket_id",
    "/ticket_number",
    "/updates/*/update_id",
    "/updates/*/by",
    "/last_modified",
    "/last_updated_at",
    "/created_at",
    "/last_staff_reply_at",
    "/messages_count",
    "/ticket/id",
    "/ticket/ticket_id",
    "/ticket/ticket_number",
    "/ticket/updates/*/update_id",
    "/ticket/updates/*/by",
    "/ticket/last_modified",
    "/ticket/last_updated_at",
    "/ticket/created_at",
    "/ticket/last_staff_reply_at",
    "/ticket/messages_count",
];
