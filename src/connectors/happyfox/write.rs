//! The HappyFox tools that write, always as the account's `bot_staff_id`: a private note, a
//! property update, a public reply (its own tool, so a handler's allow-list alone decides whether
//! the agent can ever speak to a customer), a category move, and custom field values.
//!
//! Each call makes at most one write, journaled under the call's idempotency key by `Upstream`.
//! Schemas that depend on the account's data (statuses, priorities, categories, the ticket's
//! custom fields) are built per run by `live_parameters`.

use super::model::{Id, Ticket};
use super::read::{object, ticket_id};
use super::{Client, Written, args, fields, subject_ticket, view};
use crate::tools::{Tool, ToolContext, ToolError};
use crate::upstream::Origin;
use async_trait::async_trait;
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value, json};
use std::sync::Arc;

tool_list! {
    AddPrivateNote = "happyfox.add_private_note",
    UpdateTicket = "happyfox.update_ticket",
    ReplyToCustomer = "happyfox.reply_to_customer",
    MoveTicket = "happyfox.move_ticket",
    UpdateCustomFields = "happyfox.update_custom_fields",
}

macro_rules! write_tool {
    ($description:expr) => {
        fn name(&self) -> &str {
            Self::NAME
        }
        fn description(&self) -> &str {
            $description
        }
        fn writes(&self) -> bool {
            true
        }
    };
}

fn html() -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": 20000,
           "description": "HTML (<p>, <b>, <i>, <ul>, <li>, <br>, <hr>); Markdown is not rendered."})
}

fn time_spent() -> Value {
    json!({"type": "integer", "minimum": 0, "maximum": 1440,
           "description": "Minutes spent; needed where the category has time_spent_mandatory."})
}

/// What the model is told after a write; the ticket's new state when HappyFox answered with it.
fn written(ticket_id: u64, done: &str, w: &Written) -> Value {
    let mut out = json!({"ticket_id": ticket_id, "done": done});
    match w.origin {
        Origin::Sent => {}
        Origin::Journaled => {
            out["note"] =
                json!("an earlier attempt of this job already made this write; it was not repeated")
        }
    }
    if let Ok(t) = serde_json::from_value::<Ticket>(w.body.clone())
        && t.id.is_some()
    {
        out["ticket"] = view::ticket_state(&t);
    }
    out
}

pub struct AddPrivateNote(Arc<Client>);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoteArgs {
    ticket_id: u64,
    html: String,
    time_spent: Option<u32>,
    alert: Option<Alert>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Alert {
    Staff(u64),
    Group(String),
}

impl AddPrivateNote {
    /// Its arguments' schema, known without a client (`hookwise check` reads it).
    pub fn static_parameters() -> Value {
        object(
            json!({
                "ticket_id": ticket_id(),
                "html": html(),
                "time_spent": time_spent(),
                "alert": {
                    "description": "Who is notified: \"subscribers\" (the ticket's subscribers), \"category\" (every agent of the ticket's category), or one staff id. Default: nobody.",
                    "anyOf": [{"type": "string", "enum": ["subscribers", "category"]}, {"type": "integer", "minimum": 1}]
                }
            }),
            &["ticket_id", "html"],
        )
    }
}

#[async_trait]
impl Tool for AddPrivateNote {
    write_tool!(
        "Add a private note to a HappyFox ticket, visible to staff only (never to the customer)."
    );
    fn parameters(&self) -> Value {
        Self::static_parameters()
    }
    async fn call(&self, ctx: &ToolContext, a: Value) -> Result<Value, ToolError> {
        let a: NoteArgs = args(a)?;
        let staff = self.0.bot_staff_id(ctx)?;
        let mut body = json!({"staff": staff, "html": a.html});
        if let Some(minutes) = a.time_spent {
            body["time_spent"] = json!(minutes);
        }
        match a.alert {
            Some(Alert::Staff(id)) => body["alert"] = json!(id),
            Some(Alert::Group(g)) => body["alert"] = json!(if g == "category" { "c" } else { "s" }),
            None => {}
        }
        let what = format!("the private note on ticket {}", a.ticket_id);
        let path = format!("/ticket/{}/staff_pvtnote/", a.ticket_id);
        let w = self.0.post(ctx, path, body, &what).await?;
        Ok(written(a.ticket_id, "private note added", &w))
    }
}

pub struct UpdateTicket(Arc<Client>);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateArgs {
    ticket_id: u64,
    status: Option<u64>,
    priority: Option<u64>,
    /// Absent: unchanged; null: unassign.
    #[serde(default, deserialize_with = "present")]
    assignee: Option<Option<u64>>,
    time_spent: Option<u32>,
}

fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<u64>>, D::Error> {
    Option::<u64>::deserialize(d).map(Some)
}

const UPDATE_DESCRIPTION: &str = "Change a HappyFox ticket's status, priority or assignee (as \
    the bot staff member). Sends nothing to the customer; give only what changes.";

impl UpdateTicket {
    fn schema(status: Value, priority: Value) -> Value {
        object(
            json!({
                "ticket_id": ticket_id(),
                "status": status,
                "priority": priority,
                "assignee": {"type": ["integer", "null"], "minimum": 1, "description": "Staff id to assign, or null to unassign."},
                "time_spent": time_spent(),
            }),
            &["ticket_id"],
        )
    }
}

/// An id property whose values are the account's: `1 = New (pending), 2 = ...`.
fn id_enum(what: &str, items: Vec<(Option<Id>, String)>) -> Value {
    let ids: Vec<Value> = items
        .iter()
        .filter_map(|(id, _)| id.as_ref().map(|i| json!(i)))
        .collect();
    let named: Vec<String> = items
        .iter()
        .filter_map(|(id, label)| Some(format!("{} = {label}", id.as_ref()?)))
        .collect();
    json!({"type": "integer", "enum": ids, "description": format!("{what} id: {}.", named.join(", "))})
}

impl UpdateTicket {
    /// Its arguments' schema, known without a client (`hookwise check` reads it).
    pub fn static_parameters() -> Value {
        Self::schema(
            json!({"type": "integer", "minimum": 1, "description": "Status id (see happyfox.list_statuses)."}),
            json!({"type": "integer", "minimum": 1, "description": "Priority id (see happyfox.list_priorities)."}),
        )
    }
}

#[async_trait]
impl Tool for UpdateTicket {
    write_tool!(UPDATE_DESCRIPTION);
    fn parameters(&self) -> Value {
        Self::static_parameters()
    }
    /// The account's statuses and priorities as enums, so the model picks real ids.
    async fn live_parameters(&self, ctx: &ToolContext) -> Result<Option<Value>, ToolError> {
        let mut statuses: Vec<_> = self.0.statuses(ctx).await?.iter().cloned().collect();
        statuses.sort_by_key(|s| s.order.unwrap_or(i64::MAX));
        let mut priorities: Vec<_> = self.0.priorities(ctx).await?.iter().cloned().collect();
        priorities.sort_by_key(|p| p.order.unwrap_or(i64::MAX));
        let status = id_enum(
            "Status",
            statuses
                .into_iter()
                .map(|s| {
                    let behavior = s.behavior.unwrap_or_default();
                    (s.id, format!("{} ({behavior})", s.name.unwrap_or_default()))
                })
                .collect(),
        );
        let priority = id_enum(
            "Priority (lowest first)",
            priorities
                .into_iter()
                .map(|p| (p.id, p.name.unwrap_or_default()))
                .collect(),
        );
        Ok(Some(Self::schema(status, priority)))
    }
    async fn call(&self, ctx: &ToolContext, a: Value) -> Result<Value, ToolError> {
        let a: UpdateArgs = args(a)?;
        if a.status.is_none() && a.priority.is_none() && a.assignee.is_none() {
            return Err(ToolError::Rejected(
                "nothing to change: give status, priority or assignee".into(),
            ));
        }
        let mut body = json!({"staff": self.0.bot_staff_id(ctx)?});
        if let Some(status) = a.status {
            body["status"] = json!(status);
        }
        if let Some(priority) = a.priority {
            body["priority"] = json!(priority);
        }
        if let Some(assignee) = a.assignee {
            body["assignee"] = json!(assignee);
        }
        if let Some(minutes) = a.time_spent {
            body["time_spent"] = json!(minutes);
        }
        let what = format!("the update of ticket {}", a.ticket_id);
        let path = format!("/ticket/{}/staff_update/", a.ticket_id);
        let w = self.0.post(ctx, path, body, &what).await?;
        Ok(written(a.ticket_id, "updated", &w))
    }
}

pub struct ReplyToCustomer(Arc<Client>);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplyArgs {
    ticket_id: u64,
    html: String,
    notify_customer: Option<bool>,
    time_spent: Option<u32>,
}

impl ReplyToCustomer {
    /// Its arguments' schema, known without a client (`hookwise check` reads it).
    pub fn static_parameters() -> Value {
        object(
            json!({
                "ticket_id": ticket_id(),
                "html": html(),
                "notify_customer": {"type": "boolean", "description": "Email the reply to the contact (default true)."},
                "time_spent": time_spent(),
            }),
            &["ticket_id", "html"],
        )
    }
}

#[async_trait]
impl Tool for ReplyToCustomer {
    write_tool!(
        "Send a PUBLIC reply on a HappyFox ticket as the bot staff member: the customer sees it \
         in the portal and, unless notify_customer is false, gets it by email. For staff-only \
         text use happyfox.add_private_note."
    );
    fn parameters(&self) -> Value {
        Self::static_parameters()
    }
    async fn call(&self, ctx: &ToolContext, a: Value) -> Result<Value, ToolError> {
        let a: ReplyArgs = args(a)?;
        let mut body = json!({
            "staff": self.0.bot_staff_id(ctx)?,
            "html": a.html,
            "update_customer": a.notify_customer.unwrap_or(true),
        });
        if let Some(minutes) = a.time_spent {
            body["time_spent"] = json!(minutes);
        }
        let what = format!("the reply on ticket {}", a.ticket_id);
        let path = format!("/ticket/{}/staff_update/", a.ticket_id);
        let w = self.0.post(ctx, path, body, &what).await?;
        Ok(written(a.ticket_id, "public reply sent", &w))
    }
}

pub struct MoveTicket(Arc<Client>);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MoveArgs {
    ticket_id: u64,
    category_id: u64,
    note: Option<String>,
}

impl MoveTicket {
    fn schema(category: Value) -> Value {
        object(
            json!({
                "ticket_id": ticket_id(),
                "category_id": category,
                "note": {"type": "string", "minLength": 1, "maxLength": 2000, "description": "Why it moves (kept with the move)."},
            }),
            &["ticket_id", "category_id"],
        )
    }
}

impl MoveTicket {
    /// Its arguments' schema, known without a client (`hookwise check` reads it).
    pub fn static_parameters() -> Value {
        Self::schema(
            json!({"type": "integer", "minimum": 1, "description": "Target category id (see happyfox.list_categories)."}),
        )
    }
}

#[async_trait]
impl Tool for MoveTicket {
    write_tool!(
        "Move a HappyFox ticket to another category (its custom fields then follow the new \
         category). Does not assign it."
    );
    fn parameters(&self) -> Value {
        Self::static_parameters()
    }
    /// The account's categories as an enum.
    async fn live_parameters(&self, ctx: &ToolContext) -> Result<Option<Value>, ToolError> {
        let categories = self.0.categories(ctx).await?;
        let items = categories
            .iter()
            .map(|c| (c.id.clone(), c.name.clone().unwrap_or_default()));
        Ok(Some(Self::schema(id_enum(
            "Target category",
            items.collect(),
        ))))
    }
    async fn call(&self, ctx: &ToolContext, a: Value) -> Result<Value, ToolError> {
        let a: MoveArgs = args(a)?;
        let mut body =
            json!({"staff_id": self.0.bot_staff_id(ctx)?, "target_category_id": a.category_id});
        if let Some(note) = a.note {
            body["move_note"] = json!(note);
        }
        let what = format!(
            "the move of ticket {} to category {}",
            a.ticket_id, a.category_id
        );
        let path = format!("/ticket/{}/move/", a.ticket_id);
        let w = self.0.post(ctx, path, body, &what).await?;
        let mut out = written(a.ticket_id, "moved", &w);
        out["category_id"] = json!(a.category_id);
        if let Some(message) = w.body.get("message").and_then(Value::as_str) {
            out["message"] = json!(message);
        }
        Ok(out)
    }
}

pub struct UpdateCustomFields(Arc<Client>);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FieldsArgs {
    ticket_id: u64,
    fields: Map<String, Value>,
}

const FIELDS_DESCRIPTION: &str = "Set custom field values on a HappyFox ticket. The fields \
    offered are those of the ticket's category; dropdowns take a choice id, never text.";

impl UpdateCustomFields {
    /// Its arguments' schema, known without a client (`hookwise check` reads it).
    pub fn static_parameters() -> Value {
        object(
            json!({
                "ticket_id": ticket_id(),
                "fields": {
                    "type": "object", "minProperties": 1,
                    "description": "Field id -> new value (see happyfox.list_categories for the ticket's category).",
                    "propertyNames": {"pattern": "^[1-9][0-9]*$"},
                    "additionalProperties": {"type": ["string", "number", "array"]}
                }
            }),
            &["ticket_id", "fields"],
        )
    }
}

#[async_trait]
impl Tool for UpdateCustomFields {
    write_tool!(FIELDS_DESCRIPTION);
    /// Without a live ticket: any field id with a plain value; `call` checks them all.
    fn parameters(&self) -> Value {
        Self::static_parameters()
    }
    /// Built from the job's ticket: exactly its category's fields, typed, with choices as enums
    /// and mandatory empty fields required.
    async fn live_parameters(&self, ctx: &ToolContext) -> Result<Option<Value>, ToolError> {
        let Some(id) = subject_ticket(ctx) else {
            return Ok(None);
        };
        let ticket = self.0.ticket(ctx, id).await?;
        let Some(category) = ticket.category_id() else {
            return Ok(None);
        };
        let defs = self.0.field_defs(ctx).await?;
        let fields = fields::fields_schema(&ticket, &fields::for_category(&defs, category));
        let mut id_schema = ticket_id();
        id_schema["description"] = json!(format!(
            "The ticket's numeric id: this run's ticket is {id}. The fields below are those of \
             its category; another ticket is checked against its own category."
        ));
        Ok(Some(object(
            json!({"ticket_id": id_schema, "fields": fields}),
            &["ticket_id", "fields"],
        )))
    }
    async fn call(&self, ctx: &ToolContext, a: Value) -> Result<Value, ToolError> {
        let a: FieldsArgs = args(a)?;
        let staff = self.0.bot_staff_id(ctx)?;
        // The schema was built for the job's ticket; this one may be another, in another category.
        let ticket = self.0.ticket(ctx, a.ticket_id).await?;
        let Some(category) = ticket.category_id() else {
            return Err(ToolError::Rejected(format!(
                "ticket {} has no category, so it has no custom fields",
                a.ticket_id
            )));
        };
        let defs = self.0.field_defs(ctx).await?;
        let defs = fields::for_category(&defs, category);
        fields::check(&ticket, &defs, &a.fields).map_err(ToolError::Rejected)?;
        let (entries, summary) = fields::body_and_summary(&defs, &a.fields);
        let mut body = Map::new();
        body.insert("staff".into(), json!(staff));
        body.extend(entries);
        let what = format!("the custom fields of ticket {}", a.ticket_id);
        let path = format!("/ticket/{}/update_custom_fields/", a.ticket_id);
        let w = self.0.post(ctx, path, Value::Object(body), &what).await?;
        let mut out = written(a.ticket_id, "custom fields updated", &w);
        out["fields"] = json!(summary);
        Ok(out)
    }
}
