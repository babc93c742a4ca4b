//! The HappyFox tools that only read: a ticket, a page of tickets, contacts by email, and the
//! reference lists (categories with their custom fields, statuses, priorities, staff).

use super::model::{Page, Ticket};
use super::{Client, args, view};
use crate::tools::{Tool, ToolContext, ToolError};
use crate::upstream::Request;
use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

/// The largest page `list_tickets` and `list_users` return: a page the model can read whole.
/// HappyFox itself allows 50.
pub const MAX_PAGE_SIZE: u32 = 20;

tool_list! {
    GetTicket = "happyfox.get_ticket",
    ListTickets = "happyfox.list_tickets",
    ListUsers = "happyfox.list_users",
    ListCategories = "happyfox.list_categories",
    ListStatuses = "happyfox.list_statuses",
    ListPriorities = "happyfox.list_priorities",
    ListStaff = "happyfox.list_staff",
}

/// A strict arguments object.
pub fn object(properties: Value, required: &[&str]) -> Value {
    json!({
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false,
    })
}

pub fn ticket_id() -> Value {
    json!({
        "type": "integer", "minimum": 1,
        "description": "The ticket's numeric id (e.g. 142), never its display id (#BL00000142)."
    })
}

/// Implements the parts of `Tool` every read tool has in common.
macro_rules! read_tool {
    ($description:expr) => {
        fn name(&self) -> &str {
            Self::NAME
        }
        fn description(&self) -> &str {
            $description
        }
        fn writes(&self) -> bool {
            false
        }
    };
}

pub struct GetTicket(Arc<Client>);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TicketArgs {
    ticket_id: u64,
}

impl GetTicket {
    /// Its arguments' schema, known without a client (`hookwise check` reads it).
    pub fn static_parameters() -> Value {
        object(json!({"ticket_id": ticket_id()}), &["ticket_id"])
    }
}

#[async_trait]
impl Tool for GetTicket {
    read_tool!(
        "Read one HappyFox ticket: subject, status, priority, category, assignee, contact, custom \
         fields, tags, SLA and reply timestamps, the first message, and the last updates \
         (messages shortened, property changes, who made them), oldest first."
    );
    fn parameters(&self) -> Value {
        Self::static_parameters()
    }
    async fn call(&self, ctx: &ToolContext, a: Value) -> Result<Value, ToolError> {
        let a: TicketArgs = args(a)?;
        Ok(view::ticket(&self.0.ticket(ctx, a.ticket_id).await?))
    }
}

pub struct ListTickets(Arc<Client>);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListArgs {
    status: Option<StatusFilter>,
    category: Option<u64>,
    query: Option<String>,
    sort: Option<String>,
    page: Option<u32>,
    size: Option<u32>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum StatusFilter {
    Id(u64),
    Word(String),
}

/// Readable sort names → HappyFox's `sort` values (reference §2.3).
const SORTS: &[(&str, &str)] = &[
    ("last_reply_desc", "updated"),
    ("last_reply_asc", "updatea"),
    ("created_desc", "created"),
    ("created_asc", "createa"),
    ("modified_desc", "last_modifiedd"),
    ("modified_asc", "last_modifieda"),
    ("due", "due"),
];

impl ListTickets {
    /// Its arguments' schema, known without a client (`hookwise check` reads it).
    pub fn static_parameters() -> Value {
        let sorts: Vec<&str> = SORTS.iter().map(|(name, _)| *name).collect();
        object(
            json!({
                "status": {
                    "description": "\"pending\" (every status that is not completed), \"all\" (the default), or one status id.",
                    "anyOf": [{"type": "string", "enum": ["all", "pending"]}, {"type": "integer", "minimum": 1}]
                },
                "category": {"type": "integer", "minimum": 1, "description": "Only tickets in this category id."},
                "query": {
                    "type": "string", "minLength": 1, "maxLength": 500,
                    "description": "HappyFox search terms joined by spaces, e.g. contact:\"dana@example.org\", \
                        priority:\"High\", tag:\"refund\", assignee:--none, unresponded:true, \
                        created-on-or-after:\"2026/03/01\", \"Order Number\":\"SO-1\", or plain words. \
                        With a query, results are ordered by relevance."
                },
                "sort": {"type": "string", "enum": sorts, "description": "Order; default newest reply first."},
                "page": {"type": "integer", "minimum": 1, "description": "Page number, from 1."},
                "size": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE, "description": "Rows per page, default 10."}
            }),
            &[],
        )
    }
}

#[async_trait]
impl Tool for ListTickets {
    read_tool!(
        "Search HappyFox tickets, one page at a time (at most 20 per page; use `page` for more). \
         Rows are summaries: read a ticket in full with happyfox.get_ticket."
    );
    fn parameters(&self) -> Value {
        Self::static_parameters()
    }
    async fn call(&self, ctx: &ToolContext, a: Value) -> Result<Value, ToolError> {
        let a: ListArgs = args(a)?;
        let size = a.size.unwrap_or(10).clamp(1, MAX_PAGE_SIZE);
        let page = a.page.unwrap_or(1).max(1);
        let mut request = Request::get("/tickets/")
            .query("size", size)
            .query("page", page);
        request = match a.status {
            Some(StatusFilter::Id(id)) => request.query("status", id),
            Some(StatusFilter::Word(w)) => request.query("status", format!("_{w}")),
            None => request,
        };
        if let Some(category) = a.category {
            request = request.query("category", category);
        }
        if let Some(q) = a.query.as_deref().map(str::trim).filter(|q| !q.is_empty()) {
            request = request.query("q", q);
        }
        if let Some(sort) = a.sort {
            let value = SORTS
                .iter()
                .find(|(name, _)| *name == sort)
                .map(|(_, v)| *v);
            request = request.query("sort", value.unwrap_or(&sort));
        }
        let body = self.0.get(ctx, request, "the ticket search").await?;
        let page_of: Page = super::parse(body, "the ticket search")?;
        let tickets: Vec<Value> = page_of
            .data
            .into_iter()
            .filter_map(|t| serde_json::from_value::<Ticket>(t).ok())
            .map(|t| view::ticket_row(&t))
            .collect();
        Ok(paged(page, size, &page_of.page_info, "tickets", tickets))
    }
}

fn paged(
    page: u32,
    size: u32,
    info: &Option<super::model::PageInfo>,
    key: &str,
    rows: Vec<Value>,
) -> Value {
    let total = info.as_ref().and_then(|i| i.last_index);
    let pages = info.as_ref().and_then(|i| i.page_count);
    let mut out = json!({
        "page": page, "size": size, "total": total, "page_count": pages,
        "more": pages.is_some_and(|p| i64::from(page) < p),
    });
    out[key] = Value::Array(rows);
    out
}

pub struct ListUsers(Arc<Client>);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersArgs {
    email: String,
    page: Option<u32>,
}

impl ListUsers {
    /// Its arguments' schema, known without a client (`hookwise check` reads it).
    pub fn static_parameters() -> Value {
        object(
            json!({
                "email": {"type": "string", "minLength": 3, "maxLength": 254, "pattern": "^[^\\s\"]+$",
                          "description": "The email address (or a part of it) to search for."},
                "page": {"type": "integer", "minimum": 1}
            }),
            &["email"],
        )
    }
}

#[async_trait]
impl Tool for ListUsers {
    read_tool!(
        "Find HappyFox contacts (customers) by email address, or part of one such as a domain: \
         id, name, email, phones, contact groups, custom fields, ticket counts."
    );
    fn parameters(&self) -> Value {
        Self::static_parameters()
    }
    async fn call(&self, ctx: &ToolContext, a: Value) -> Result<Value, ToolError> {
        let a: UsersArgs = args(a)?;
        let page = a.page.unwrap_or(1).max(1);
        let request = Request::get("/users/")
            .query("q", format!("email:{}", a.email))
            .query("size", 10)
            .query("page", page);
        let body = self.0.get(ctx, request, "the contact search").await?;
        let found: Page = super::parse(body, "the contact search")?;
        let users: Vec<Value> = found
            .data
            .into_iter()
            .filter_map(|u| serde_json::from_value(u).ok())
            .map(|u| view::contact(&u))
            .collect();
        Ok(paged(page, 10, &found.page_info, "users", users))
    }
}

pub struct ListCategories(Arc<Client>);

impl ListCategories {
    /// Its arguments' schema, known without a client (`hookwise check` reads it).
    pub fn static_parameters() -> Value {
        object(json!({}), &[])
    }
}

#[async_trait]
impl Tool for ListCategories {
    read_tool!(
        "List the HappyFox categories with their ticket custom fields (field ids, types, dropdown \
         choice ids, which are mandatory or needed before completing or moving a ticket)."
    );
    fn parameters(&self) -> Value {
        Self::static_parameters()
    }
    async fn call(&self, ctx: &ToolContext, _: Value) -> Result<Value, ToolError> {
        let categories = self.0.categories(ctx).await?;
        let defs = self.0.field_defs(ctx).await?;
        let listed: Vec<Value> = categories
            .iter()
            .filter_map(|c| {
                let id = c.id.as_ref()?;
                let custom_fields: Vec<Value> = super::fields::for_category(&defs, id)
                    .into_iter()
                    .map(|d| {
                        json!({
                            "id": d.id, "name": d.name, "type": d.kind,
                            "required": d.required.unwrap_or(false),
                            "compulsory_on_completed": d.compulsory_on_completed.unwrap_or(false),
                            "compulsory_on_move": d.compulsory_on_move.unwrap_or(false),
                            "visible_to_staff_only": d.visible_to_staff_only.unwrap_or(false),
                            "choices": d.choices.iter().map(|ch| json!({"id": ch.id, "text": ch.text})).collect::<Vec<_>>(),
                        })
                    })
                    .collect();
                Some(json!({
                    "id": id, "name": c.name, "description": c.description, "public": c.public,
                    "time_spent_mandatory": c.time_spent_mandatory.unwrap_or(false),
                    "custom_fields": custom_fields,
                }))
            })
            .collect();
        Ok(json!({"categories": listed}))
    }
}

pub struct ListStatuses(Arc<Client>);

impl ListStatuses {
    /// Its arguments' schema, known without a client (`hookwise check` reads it).
    pub fn static_parameters() -> Value {
        object(json!({}), &[])
    }
}

#[async_trait]
impl Tool for ListStatuses {
    read_tool!(
        "List the HappyFox ticket statuses: id, name, and behavior (\"pending\" or \"completed\")."
    );
    fn parameters(&self) -> Value {
        Self::static_parameters()
    }
    async fn call(&self, ctx: &ToolContext, _: Value) -> Result<Value, ToolError> {
        let mut statuses: Vec<_> = self.0.statuses(ctx).await?.iter().cloned().collect();
        statuses.sort_by_key(|s| s.order.unwrap_or(i64::MAX));
        let listed: Vec<Value> = statuses
            .iter()
            .map(|s| json!({"id": s.id, "name": s.name, "behavior": s.behavior, "default": s.default.unwrap_or(false)}))
            .collect();
        Ok(json!({"statuses": listed}))
    }
}

pub struct ListPriorities(Arc<Client>);

impl ListPriorities {
    /// Its arguments' schema, known without a client (`hookwise check` reads it).
    pub fn static_parameters() -> Value {
        object(json!({}), &[])
    }
}

#[async_trait]
impl Tool for ListPriorities {
    read_tool!("List the HappyFox ticket priorities, lowest first: id and name.");
    fn parameters(&self) -> Value {
        Self::static_parameters()
    }
    async fn call(&self, ctx: &ToolContext, _: Value) -> Result<Value, ToolError> {
        let mut priorities: Vec<_> = self.0.priorities(ctx).await?.iter().cloned().collect();
        priorities.sort_by_key(|p| p.order.unwrap_or(i64::MAX));
        let listed: Vec<Value> = priorities
            .iter()
            .map(|p| json!({"id": p.id, "name": p.name, "default": p.default.unwrap_or(false)}))
            .collect();
        Ok(json!({"priorities": listed}))
    }
}

pub struct ListStaff(Arc<Client>);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StaffArgs {
    category_id: Option<u64>,
    #[serde(default)]
    include_inactive: bool,
}

impl ListStaff {
    /// Its arguments' schema, known without a client (`hookwise check` reads it).
    pub fn static_parameters() -> Value {
        object(
            json!({
                "category_id": {"type": "integer", "minimum": 1, "description": "Only agents who work in this category."},
                "include_inactive": {"type": "boolean", "description": "Also list deactivated agents (default false)."}
            }),
            &[],
        )
    }
}

#[async_trait]
impl Tool for ListStaff {
    read_tool!(
        "List HappyFox agents (staff): id, name, email, active, role, and the category ids they \
         work in. Only active agents unless include_inactive is true."
    );
    fn parameters(&self) -> Value {
        Self::static_parameters()
    }
    async fn call(&self, ctx: &ToolContext, a: Value) -> Result<Value, ToolError> {
        let a: StaffArgs = args(a)?;
        let staff = self.0.staff(ctx).await?;
        let listed: Vec<Value> = staff
            .iter()
            .filter(|s| a.include_inactive || s.active != Some(false))
            .filter(|s| {
                a.category_id
                    .is_none_or(|c| s.categories.iter().any(|id| id.is(c)))
            })
            .map(view::staff)
            .collect();
        Ok(json!({"staff": listed}))
    }
}
