//! Read tools: a company, NPS responses, endusers and users (`activity.rs` has tasks, tickets
//! and issues). Lists are paged here and filtered again here, so a filter Planhat ignores (or lacks)
//! still holds; each answer says how many records were scanned and whether more may exist.

use super::refs::{ObjectId, object_id_schema};
use super::{Keep, List, Op, Planhat, segment, shape};
use crate::tools::{ToolContext, ToolError};
use crate::upstream::Request;
use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

/// Statuses that mean "no longer open" across tenants' ticket and issue workflows.
pub(super) const CLOSED: &[&str] = &["closed", "solved", "resolved", "done", "archived", "fixed"];

pub(super) fn limit_schema(default: usize, max: usize) -> Value {
    json!({"type": "integer", "minimum": 1, "maximum": max, "default": default,
           "description": format!("Most records returned (default {default}).")})
}

pub(super) fn eq_id(record: &Value, key: &str, id: &ObjectId) -> bool {
    shape::str_of(record, key).is_some_and(|v| v.eq_ignore_ascii_case(id.as_str()))
}

pub(super) fn is_open(record: &Value) -> bool {
    if record.get("archived").and_then(Value::as_bool) == Some(true) {
        return false;
    }
    if let Some(open) = record.get("isOpen").and_then(Value::as_bool) {
        return open;
    }
    !record
        .get("status")
        .and_then(Value::as_str)
        .is_some_and(|s| CLOSED.contains(&s.trim().to_ascii_lowercase().as_str()))
}

/// `2024-11-05` or `2024-11-05T14:32:09.915Z`.
fn parse_when(field: &str, s: &str) -> Result<DateTime<Utc>, ToolError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .or_else(|_| {
            NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .map(|d| d.and_hms_opt(0, 0, 0).unwrap().and_utc())
        })
        .map_err(|_| {
            ToolError::Rejected(format!(
                "`{field}`: expected a date like 2024-11-05 or 2024-11-05T14:32:09Z, found {s:?}"
            ))
        })
}

/// A record's date: ISO text, or epoch milliseconds (Planhat mixes both).
fn time_of(record: &Value, key: &str) -> Option<DateTime<Utc>> {
    match record.get(key)? {
        Value::String(s) => DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|t| t.with_timezone(&Utc)),
        Value::Number(n) => DateTime::from_timestamp_millis(n.as_i64()?),
        _ => None,
    }
}

const DATE_PATTERN: &str = r"^\d{4}-\d{2}-\d{2}(T.+)?$";

pub struct GetCompany;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GetCompanyArgs {
    company_id: String,
}

#[async_trait]
impl Op for GetCompany {
    type Args = GetCompanyArgs;
    const NAME: &'static str = "planhat.get_company";
    const DESCRIPTION: &'static str = "Get one Planhat company: name, status, phase, health `h` and its change `hDiff`, revenue (mrr, arr, renewalArr), renewal date and days to it, owner and coOwner (user ids), domains, tags and custom fields.";
    const WRITES: bool = false;

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "companyId": {"type": "string", "pattern": "^([0-9a-fA-F]{24}|extid-.+|srcid-.+)$",
                              "description": "The company's `_id` (an NPS record's `cId`), or `extid-<externalId>` / `srcid-<sourceId>`."}
            },
            "required": ["companyId"],
            "additionalProperties": false
        })
    }

    async fn run(ph: &Planhat, ctx: &ToolContext, args: Self::Args) -> Result<Value, ToolError> {
        let path = format!("/companies/{}", segment(&args.company_id));
        let body = ph
            .get(ctx, Request::get(&path))
            .await
            .map_err(|e| match e {
                e @ (ToolError::Rejected(_) | ToolError::Refused { .. }) => {
                    ToolError::Rejected(format!("no company {} in Planhat: {e}", args.company_id))
                }
                other => other,
            })?;
        if shape::str_of(&body, "_id").is_none() {
            return Err(ToolError::Rejected(format!(
                "no company {} in Planhat (GET {path} returned no record)",
                args.company_id
            )));
        }
        Ok(shape::company(&body))
    }
}

pub struct ListNps;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ListNpsArgs {
    company_id: Option<ObjectId>,
    enduser_id: Option<ObjectId>,
    email: Option<String>,
    min_score: Option<u8>,
    max_score: Option<u8>,
    answered_after: Option<String>,
    answered_before: Option<String>,
    #[serde(default = "twenty")]
    limit: usize,
}

pub(super) fn twenty() -> usize {
    20
}

#[async_trait]
impl Op for ListNps {
    type Args = ListNpsArgs;
    const NAME: &'static str = "planhat.list_nps";
    const DESCRIPTION: &'static str = "List NPS responses, newest answer first: score (0-10), comment, the company `cId`, the enduser `euId`, email, dateAnswered. Filter by company, enduser, email, score range and answer date; filters are applied by hookwise over the most recent responses, so `more_may_exist` says whether older matches could have been missed.";
    const WRITES: bool = false;

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "companyId": object_id_schema("Only responses of this company (matched against the record's `cId`)."),
                "enduserId": object_id_schema("Only responses of this enduser (`euId`)."),
                "email": {"type": "string", "minLength": 3, "description": "Only responses from this email address (case-insensitive)."},
                "minScore": {"type": "integer", "minimum": 0, "maximum": 10},
                "maxScore": {"type": "integer", "minimum": 0, "maximum": 10, "description": "e.g. 6 for detractors."},
                "answeredAfter": {"type": "string", "pattern": DATE_PATTERN, "description": "ISO date or date-time; inclusive."},
                "answeredBefore": {"type": "string", "pattern": DATE_PATTERN, "description": "ISO date or date-time; exclusive."},
                "limit": limit_schema(20, 50)
            },
            "additionalProperties": false
        })
    }

    async fn run(ph: &Planhat, ctx: &ToolContext, a: Self::Args) -> Result<Value, ToolError> {
        let after = a
            .answered_after
            .as_deref()
            .map(|s| parse_when("answeredAfter", s))
            .transpose()?;
        let before = a
            .answered_before
            .as_deref()
            .map(|s| parse_when("answeredBefore", s))
            .transpose()?;
        let email = a.email.as_deref().map(str::to_ascii_lowercase);
        // The list is requested newest first; only while the answers really come in that order
        // may the scan stop at the first one older than `answeredAfter`.
        let mut previous: Option<DateTime<Utc>> = None;
        let mut ordered = true;
        let list = List {
            path: "/nps",
            sort: Some("-dateAnswered"),
            filters: &[],
            page_size: 200,
            max_pages: 5,
        };
        let scan = ph
            .scan(ctx, list, a.limit, |r| {
                let answered = time_of(r, "dateAnswered");
                if let (Some(p), Some(t)) = (previous, answered) {
                    ordered &= t <= p;
                }
                previous = answered.or(previous);
                if let (Some(after), Some(t)) = (after, answered)
                    && t < after
                {
                    return if ordered { Keep::Stop } else { Keep::No };
                }
                let score = r.get("score").and_then(Value::as_f64);
                let keep = a
                    .company_id
                    .as_ref()
                    .is_none_or(|c| eq_id(r, "cId", c) || eq_id(r, "companyId", c))
                    && a.enduser_id.as_ref().is_none_or(|e| eq_id(r, "euId", e))
                    && email.as_ref().is_none_or(|e| {
                        r.get("email")
                            .and_then(Value::as_str)
                            .is_some_and(|m| m.eq_ignore_ascii_case(e))
                    })
                    && a.min_score
                        .is_none_or(|m| score.is_some_and(|s| s >= m as f64))
                    && a.max_score
                        .is_none_or(|m| score.is_some_and(|s| s <= m as f64))
                    && (after.is_none() && before.is_none()
                        || answered.is_some_and(|t| {
                            after.is_none_or(|a| t >= a) && before.is_none_or(|b| t < b)
                        }));
                if keep { Keep::Yes } else { Keep::No }
            })
            .await?;
        Ok(scan.answer("responses", shape::nps))
    }
}

pub struct ListEndusers;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ListEndusersArgs {
    company_id: Option<ObjectId>,
    email: Option<String>,
    #[serde(default = "twenty")]
    limit: usize,
}

#[async_trait]
impl Op for ListEndusers {
    type Args = ListEndusersArgs;
    const NAME: &'static str = "planhat.list_endusers";
    const DESCRIPTION: &'static str = "List endusers (a customer's contacts) in Planhat: name, email, position, company, whether primary or featured, latest NPS. Filter by company and/or email.";
    const WRITES: bool = false;

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "companyId": object_id_schema("Only contacts of this company."),
                "email": {"type": "string", "minLength": 3, "description": "Only the contact with this email (also matched against other emails)."},
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
            path: "/endusers",
            sort: None,
            filters: &filters,
            page_size: 100,
            max_pages: 5,
        };
        let scan = ph
            .scan(ctx, list, a.limit, |e| {
                let mail = |m: &str| {
                    let mut all = e.get("email").into_iter().chain(
                        e.get("otherEmails")
                            .and_then(Value::as_array)
                            .into_iter()
                            .flatten(),
                    );
                    all.any(|v| v.as_str().is_some_and(|v| v.eq_ignore_ascii_case(m)))
                };
                let keep = a
                    .company_id
                    .as_ref()
                    .is_none_or(|c| eq_id(e, "companyId", c))
                    && a.email.as_deref().is_none_or(mail);
                if keep { Keep::Yes } else { Keep::No }
            })
            .await?;
        Ok(scan.answer("endusers", shape::enduser))
    }
}

pub struct ListUsers;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ListUsersArgs {
    user_id: Option<ObjectId>,
    email: Option<String>,
    #[serde(default)]
    active_only: bool,
    #[serde(default = "fifty")]
    limit: usize,
}

fn fifty() -> usize {
    50
}

#[async_trait]
impl Op for ListUsers {
    type Args = ListUsersArgs;
    const NAME: &'static str = "planhat.list_users";
    const DESCRIPTION: &'static str = "List your team members in Planhat (the users that own companies and tasks): `_id`, names, email, roles, and whether `removed` or `inactive`. Use it to resolve a company's `owner` id and check that the owner is still active.";
    const WRITES: bool = false;

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "userId": object_id_schema("Only this user (e.g. a company's `owner`)."),
                "email": {"type": "string", "minLength": 3},
                "activeOnly": {"type": "boolean", "default": false, "description": "Leave out removed and inactive users."},
                "limit": limit_schema(50, 100)
            },
            "additionalProperties": false
        })
    }

    async fn run(ph: &Planhat, ctx: &ToolContext, a: Self::Args) -> Result<Value, ToolError> {
        let list = List {
            path: "/users",
            sort: None,
            filters: &[],
            page_size: 500,
            max_pages: 4,
        };
        let scan = ph
            .scan(ctx, list, a.limit, |u| {
                let flag = |k: &str| u.get(k).and_then(Value::as_bool) == Some(true);
                let keep = a.user_id.as_ref().is_none_or(|id| eq_id(u, "_id", id))
                    && a.email.as_ref().is_none_or(|e| {
                        u.get("email")
                            .and_then(Value::as_str)
                            .is_some_and(|v| v.eq_ignore_ascii_case(e))
                    })
                    && (!a.active_only || !(flag("removed") || flag("inactive")));
                if keep { Keep::Yes } else { Keep::No }
            })
            .await?;
        Ok(scan.answer("users", shape::user))
    }
}
