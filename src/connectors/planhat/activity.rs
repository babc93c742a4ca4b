//! Read tools over a company's activity: tasks, tickets and product issues. Same rules as
//! `read.rs`: paged here, filtered again here, trimmed for the model.

use super::read::{eq_id, is_open, limit_schema, twenty};
use super::refs::{ObjectId, object_id_schema};
use super::{Keep, List, Op, Planhat, shape};
use crate::tools::{ToolContext, ToolError};
use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};

pub struct ListTasks;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ListTasksArgs {
    company_id: Option<ObjectId>,
    owner_id: Option<ObjectId>,
    title_contains: Option<String>,
    #[serde(default)]
    include_archived: bool,
    #[serde(default = "twenty")]
    limit: usize,
}

#[async_trait]
impl Op for ListTasks {
    type Args = ListTasksArgs;
    const NAME: &'static str = "planhat.list_tasks";
    const DESCRIPTION: &'static str = "List Planhat tasks, newest first: title (`action`), description, status, owner, start/end time, whether archived (done). Use it to see whether a follow-up task already exists before creating one. Archived tasks are left out unless asked for.";
    const WRITES: bool = false;

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "companyId": object_id_schema("Only tasks of this company."),
                "ownerId": object_id_schema("Only tasks owned by this user."),
                "titleContains": {"type": "string", "minLength": 1, "description": "Only tasks whose title contains this text (case-insensitive)."},
                "includeArchived": {"type": "boolean", "default": false},
                "limit": limit_schema(20, 50)
            },
            "additionalProperties": false
        })
    }

    async fn run(ph: &Planhat, ctx: &ToolContext, a: Self::Args) -> Result<Value, ToolError> {
        let filters: Vec<(&str, String)> = a
            .company_id
            .iter()
            .map(|c| ("companyId", c.to_string()))
            .collect();
        let needle = a.title_contains.as_deref().map(str::to_lowercase);
        let list = List {
            path: "/tasks",
            sort: Some("-createdAt"),
            filters: &filters,
            page_size: 100,
            max_pages: 5,
        };
        let scan = ph
            .scan(ctx, list, a.limit, |t| {
                let keep = a
                    .company_id
                    .as_ref()
                    .is_none_or(|c| eq_id(t, "companyId", c))
                    && a.owner_id.as_ref().is_none_or(|o| eq_id(t, "ownerId", o))
                    && (a.include_archived
                        || t.get("isArchived").and_then(Value::as_bool) != Some(true))
                    && needle.as_ref().is_none_or(|n| {
                        t.get("action")
                            .and_then(Value::as_str)
                            .is_some_and(|s| s.to_lowercase().contains(n))
                    });
                if keep { Keep::Yes } else { Keep::No }
            })
            .await?;
        Ok(scan.answer("tasks", shape::task))
    }
}

pub struct ListTickets;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ListTicketsArgs {
    company_id: Option<ObjectId>,
    status: Option<String>,
    #[serde(default)]
    open_only: bool,
    email: Option<String>,
    #[serde(default = "twenty")]
    limit: usize,
}

#[async_trait]
impl Op for ListTickets {
    type Args = ListTicketsArgs;
    const NAME: &'static str = "planhat.list_tickets";
    const DESCRIPTION: &'static str = "List support tickets synced into Planhat, newest first: subject, snippet, status, whether open, severity, dates, contacts. Filter by company (recommended), status, requester email, or open ones only.";
    const WRITES: bool = false;

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "companyId": object_id_schema("Only tickets of this company."),
                "status": {"type": "string", "minLength": 1, "description": "Only tickets with this status (case-insensitive)."},
                "openOnly": {"type": "boolean", "default": false, "description": "Only tickets that are still open."},
                "email": {"type": "string", "minLength": 3, "description": "Only tickets from this requester email."},
                "limit": limit_schema(20, 50)
            },
            "additionalProperties": false
        })
    }

    async fn run(ph: &Planhat, ctx: &ToolContext, a: Self::Args) -> Result<Value, ToolError> {
        let mut filters: Vec<(&str, String)> = Vec::new();
        if let Some(c) = &a.company_id {
            filters.push(("companyId", c.to_string()));
        }
        if let Some(e) = &a.email {
            filters.push(("email", e.clone()));
        }
        let list = List {
            path: "/tickets",
            sort: Some("-createDate"),
            filters: &filters,
            page_size: 100,
            max_pages: 5,
        };
        let scan = ph
            .scan(ctx, list, a.limit, |t| {
                let keep = a
                    .company_id
                    .as_ref()
                    .is_none_or(|c| eq_id(t, "companyId", c))
                    && a.status.as_ref().is_none_or(|s| {
                        t.get("status")
                            .and_then(Value::as_str)
                            .is_some_and(|v| v.trim().eq_ignore_ascii_case(s.trim()))
                    })
                    && (!a.open_only || is_open(t))
                    && a.email.as_ref().is_none_or(|e| {
                        t.get("email")
                            .and_then(Value::as_str)
                            .is_some_and(|v| v.eq_ignore_ascii_case(e))
                    });
                if keep { Keep::Yes } else { Keep::No }
            })
            .await?;
        Ok(scan.answer("tickets", shape::ticket))
    }
}

pub struct ListIssues;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ListIssuesArgs {
    company_id: Option<ObjectId>,
    #[serde(default)]
    open_only: bool,
    #[serde(default = "twenty")]
    limit: usize,
}

#[async_trait]
impl Op for ListIssues {
    type Args = ListIssuesArgs;
    const NAME: &'static str = "planhat.list_issues";
    const DESCRIPTION: &'static str = "List product issues (bugs, feature requests) in Planhat, newest first: title, description, status, priority and the companies affected (`companyIds`). Filter by company or open ones only; filtering is done by hookwise over the most recent issues.";
    const WRITES: bool = false;

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "companyId": object_id_schema("Only issues whose `companyIds` include this company."),
                "openOnly": {"type": "boolean", "default": false},
                "limit": limit_schema(20, 50)
            },
            "additionalProperties": false
        })
    }

    async fn run(ph: &Planhat, ctx: &ToolContext, a: Self::Args) -> Result<Value, ToolError> {
        let list = List {
            path: "/issues",
            sort: Some("-createdAt"),
            filters: &[],
            page_size: 200,
            max_pages: 5,
        };
        let scan = ph
            .scan(ctx, list, a.limit, |i| {
                let affects = |c: &ObjectId| {
                    ["companyIds", "companies"].iter().any(|key| {
                        i.get(*key).and_then(Value::as_array).is_some_and(|list| {
                            list.iter().any(|v| {
                                shape::id(v).is_some_and(|v| v.eq_ignore_ascii_case(c.as_str()))
                            })
                        })
                    })
                };
                let keep =
                    a.company_id.as_ref().is_none_or(affects) && (!a.open_only || is_open(i));
                if keep { Keep::Yes } else { Keep::No }
            })
            .await?;
        Ok(scan.answer("issues", shape::issue))
    }
}
