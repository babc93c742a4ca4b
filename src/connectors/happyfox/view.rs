//! What the model is shown: trimmed shapes of HappyFox objects. A raw ticket carries every
//! subscriber's permissions, pre-signed attachment URLs and the whole history; the model needs the
//! state of the case, the recent conversation, and the ids it can act on.

use super::model::{Change, Contact, FieldValue, Staff, Ticket, Update};
use serde_json::{Map, Value, json};

/// Updates shown by `get_ticket`, newest last; older ones are counted, not shown.
pub const UPDATES_SHOWN: usize = 10;
/// Characters of one message shown; longer ones are cut with a marker.
pub const MESSAGE_CHARS: usize = 1200;
const FIRST_MESSAGE_CHARS: usize = 2000;

/// A ticket as `get_ticket` returns it.
pub fn ticket(t: &Ticket) -> Value {
    let skipped = t.updates.len().saturating_sub(UPDATES_SHOWN);
    let updates: Vec<Value> = t.updates[skipped..].iter().map(update).collect();
    json!({
        "id": t.id,
        "display_id": t.display_id,
        "subject": t.subject,
        "status": t.status.as_ref().map(|s| json!({"id": s.id, "name": s.name, "behavior": s.behavior})),
        "priority": t.priority.as_ref().map(|p| json!({"id": p.id, "name": p.name})),
        "category": t.category.as_ref().map(|c| json!({
            "id": c.id, "name": c.name, "time_spent_mandatory": c.time_spent_mandatory.unwrap_or(false),
        })),
        "assignee": t.assigned_to.as_ref().map(staff_brief),
        "contact": t.user.as_ref().map(contact),
        "custom_fields": t.custom_fields.iter().map(field_value).collect::<Vec<_>>(),
        "tags": t.tag_list(),
        "due_date": t.due_date,
        "created_at": t.created_at,
        "last_modified": t.last_modified,
        "last_staff_reply_at": t.last_staff_reply_at,
        "last_user_reply_at": t.last_user_reply_at,
        "unresponded": t.unresponded,
        "sla_breaches": t.sla_breaches,
        "messages_count": t.messages_count,
        "time_spent": t.time_spent,
        "first_message": t.first_message.as_deref().map(|m| shorten(m, FIRST_MESSAGE_CHARS)),
        "updates_total": t.updates.len(),
        "updates_omitted": skipped,
        "updates": updates,
    })
}

/// One row of `list_tickets`: enough to choose which ticket to read in full.
pub fn ticket_row(t: &Ticket) -> Value {
    json!({
        "id": t.id,
        "display_id": t.display_id,
        "subject": t.subject,
        "status": t.status.as_ref().and_then(|s| s.name.clone()),
        "status_behavior": t.status.as_ref().and_then(|s| s.behavior.clone()),
        "priority": t.priority.as_ref().and_then(|p| p.name.clone()),
        "category": t.category.as_ref().map(|c| json!({"id": c.id, "name": c.name})),
        "assignee": t.assigned_to.as_ref().and_then(|s| s.name.clone()),
        "contact_email": t.user.as_ref().and_then(|u| u.email.clone()),
        "created_at": t.created_at,
        "last_modified": t.last_modified,
        "unresponded": t.unresponded,
        "sla_breaches": t.sla_breaches,
        "tags": t.tag_list(),
    })
}

/// The state after a write, from the ticket some write endpoints answer with.
pub fn ticket_state(t: &Ticket) -> Value {
    json!({
        "status": t.status.as_ref().and_then(|s| s.name.clone()),
        "priority": t.priority.as_ref().and_then(|p| p.name.clone()),
        "category": t.category.as_ref().and_then(|c| c.name.clone()),
        "assignee": t.assigned_to.as_ref().and_then(|s| s.name.clone()),
    })
}

pub fn contact(c: &Contact) -> Value {
    json!({
        "id": c.id,
        "name": c.name,
        "email": c.email,
        "phones": c.phones.iter().filter_map(|p| {
            let number = p.number.clone()?;
            Some(match p.kind.as_deref().and_then(phone_kind) {
                Some(kind) => format!("{number} ({kind})"),
                None => number,
            })
        }).collect::<Vec<_>>(),
        "contact_groups": c.contact_groups.iter().filter_map(|g| g.name.clone()).collect::<Vec<_>>(),
        "custom_fields": c.custom_fields.iter()
            .filter(|f| !f.is_empty())
            .map(|f| json!({"name": f.name, "value": f.value}))
            .collect::<Vec<_>>(),
        "tickets_count": c.tickets_count,
        "pending_tickets_count": c.pending_tickets_count,
    })
}

pub fn staff(s: &Staff) -> Value {
    json!({
        "id": s.id,
        "name": s.name,
        "email": s.email,
        "active": s.active,
        "role": s.role.as_ref().and_then(|r| r.name.clone()),
        "categories": s.categories,
    })
}

/// HappyFox's phone type codes (reference §3.4).
fn phone_kind(code: &str) -> Option<&'static str> {
    Some(match code {
        "mo" => "mobile",
        "w" => "work",
        "m" => "main",
        "h" => "home",
        "o" => "other",
        _ => return None,
    })
}

fn staff_brief(s: &Staff) -> Value {
    json!({"id": s.id, "name": s.name, "email": s.email, "active": s.active})
}

fn field_value(f: &FieldValue) -> Value {
    let mut out = json!({"id": f.id, "name": f.name, "type": f.kind, "value": f.value});
    if f.value_id.as_ref().is_some_and(|v| !v.is_null()) {
        out["value_id"] = f.value_id.clone().unwrap_or_default();
    }
    if f.compulsory_on_complete == Some(true) {
        out["compulsory_on_complete"] = Value::Bool(true);
    }
    out
}

fn update(u: &Update) -> Value {
    let mut out = Map::new();
    out.insert("update_id".into(), json!(u.update_id));
    out.insert("timestamp".into(), json!(u.timestamp));
    out.insert(
        "by".into(),
        match &u.by {
            Some(b) => json!({"type": b.kind, "id": b.id, "name": b.name}),
            None => json!({"type": "system"}),
        },
    );
    if let Some(m) = &u.message {
        let text = match (&m.text, &m.html) {
            (Some(t), _) if !t.trim().is_empty() => t.clone(),
            (_, Some(h)) => html_to_text(h),
            _ => String::new(),
        };
        out.insert("message".into(), json!(shorten(&text, MESSAGE_CHARS)));
        // How HappyFox marks a private note is undocumented; `message_type` is the likeliest
        // place, so it is passed on whenever it says anything.
        if let Some(kind) = &m.message_type {
            out.insert("message_type".into(), json!(kind));
        }
        if let Some(notified) = m.customer_updated {
            out.insert("customer_updated".into(), json!(notified));
        }
        let files: Vec<_> = m
            .attachments
            .iter()
            .filter_map(|a| a.filename.clone())
            .collect();
        if !files.is_empty() {
            out.insert("attachments".into(), json!(files));
        }
    }
    let mut changes = Map::new();
    for (name, change) in [
        ("status", &u.status_change),
        ("priority", &u.priority_change),
        ("assignee", &u.assignee_change),
        ("category", &u.category_change),
        ("due_date", &u.due_date_change),
    ] {
        if let Some(c) = change {
            changes.insert(name.into(), json!(describe_change(c)));
        }
    }
    if !changes.is_empty() {
        out.insert("changes".into(), Value::Object(changes));
    }
    if let Some(minutes) = u.time_spent {
        out.insert("time_spent".into(), json!(minutes));
    }
    Value::Object(out)
}

/// `"New -> In Progress"`, from names when HappyFox sends them, else from the raw values.
fn describe_change(c: &Change) -> String {
    let side = |name: &Option<String>, raw: &Option<Value>| match (name, raw) {
        (Some(n), _) => n.clone(),
        (None, Some(Value::String(s))) => s.clone(),
        (None, Some(v)) if !v.is_null() => v.to_string(),
        _ => "none".to_string(),
    };
    format!(
        "{} -> {}",
        side(&c.old_name, &c.old),
        side(&c.new_name, &c.new)
    )
}

/// At most `max` characters of `text`, cut on a character boundary with a marker saying so.
pub fn shorten(text: &str, max: usize) -> String {
    let text = text.trim();
    match text.char_indices().nth(max) {
        Some((at, _)) => format!(
            "{}… [{} more characters]",
            &text[..at],
            text[at..].chars().count()
        ),
        None => text.to_string(),
    }
}

/// Readable text from a message's HTML, for updates that carry no plain-text copy.
pub fn html_to_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut rest = html;
    while let Some(open) = rest.find('<') {
        out.push_str(&rest[..open]);
        let Some(close) = rest[open..].find('>') else {
            rest = &rest[open..];
            break;
        };
        let tag = rest[open + 1..open + close]
            .trim_start_matches('/')
            .to_ascii_lowercase();
        let name = tag
            .split(|c: char| !c.is_ascii_alphanumeric())
            .next()
            .unwrap_or("");
        if matches!(name, "br" | "p" | "div" | "li" | "tr" | "h1" | "h2" | "h3") {
            out.push('\n');
        }
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    let out = out
        .replace("&nbsp;", " ")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&");
    let lines: Vec<&str> = out
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_cut_on_a_character_boundary_and_says_so() {
        assert_eq!(shorten("  short  ", 10), "short");
        assert_eq!(shorten("ééééé", 3), "ééé… [2 more characters]");
    }

    #[test]
    fn html_becomes_lines_of_text() {
        assert_eq!(
            html_to_text("<p>Hi Dana,</p><p>Refund &amp; credit<br/>soon</p>"),
            "Hi Dana,\nRefund & credit\nsoon"
        );
        assert_eq!(html_to_text("a < b"), "a < b");
    }

    #[test]
    fn only_the_last_updates_are_shown_and_the_rest_counted() {
        let updates: Vec<Value> = (1..=13)
            .map(|n| json!({"update_id": n, "message": {"text": format!("m{n}")}}))
            .collect();
        let t: Ticket = serde_json::from_value(json!({"id": 1, "updates": updates})).unwrap();
        let v = ticket(&t);
        assert_eq!(v["updates_total"], 13);
        assert_eq!(v["updates_omitted"], 3);
        assert_eq!(v["updates"][0]["update_id"], 4);
        assert_eq!(v["updates"][9]["message"], "m13");
    }
}
