//! Truto as a tool source: at start-up, every `[accounts.X]` with `connector = "truto"` has its
//! integrated account's tools read from `GET /integrated-account/{id}/tools`, and each becomes
//! `truto.<name>` (sanitized to `[a-z0-9_]`). Calling one executes the tool's method on Truto's
//! proxy API (`/proxy/{resource}[/{id}|/{method}]?integrated_account_id=...`), through
//! `Upstream::send` like every other upstream call.
//!
//! - Reads are `list` and `get`; `create`, `update`, `delete` and custom methods are writes
//!   (a custom method may only read, but nothing says so, so it is treated as a write).
//! - A Truto account that cannot be reached at start-up is logged and skipped: the service starts
//!   without its tools (a handler naming them gets a "not provided" note) until the next start.
//! - Several Truto accounts listing the same tool name share one `truto.<name>`: the call is routed
//!   to the job's own account (never one the model names), with that account's schema for the
//!   run. A job of an account that does not list the tool is refused.
//!
//! Unconfirmed (Truto's public SDKs, not its API reference): the tool list's shape
//! (`{result: [{name, description, resource, method, query_schema, body_schema, required}],
//! next_cursor}`), that `id` addresses get/update/delete, and that `limit` and `next_cursor` page
//! list methods. Everything is read tolerantly; a tool whose definition cannot be used is skipped
//! with a warning.

use super::{Tool, ToolContext, ToolError, ToolRegistry};
use crate::config::ConnectorKind;
use crate::upstream::{Account, Request, Upstream};
use async_trait::async_trait;
use reqwest::Method;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Providers cap tool names at 64 characters; the model sees `truto__<name>`.
const MAX_NAME: usize = 57;
/// Pages of the tool list read at start-up (a cursor loop must end).
const MAX_PAGES: usize = 10;
/// Records of a list answer passed to the model, and the longest answer in characters.
const MAX_ITEMS: usize = 25;
const MAX_CHARS: usize = 20_000;

/// Registers the tools of every Truto account, as listed by its `/tools` endpoint. Never fails
/// start-up: an unreachable account or an unusable tool is logged and left out.
pub async fn register(registry: &mut ToolRegistry, upstream: &Upstream) -> Result<(), String> {
    let mut tools: BTreeMap<String, TrutoTool> = BTreeMap::new();
    for account in upstream
        .accounts()
        .filter(|a| a.connector == ConnectorKind::Truto)
    {
        let listed = match list_tools(upstream, account).await {
            Ok(listed) => listed,
            Err(e) => {
                tracing::error!(account = %account.name, error = %e,
                    "loading the Truto account's tools failed; its truto.* tools are unavailable until hookwise restarts");
                continue;
            }
        };
        let mut loaded = 0;
        for def in &listed {
            let id = account.integrated_account_id.as_deref().unwrap_or_default();
            let (name, route) = match Route::from_listed(id, def) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(account = %account.name, error = %e, "skipped a Truto tool");
                    continue;
                }
            };
            let tool = tools.entry(name.clone()).or_insert_with(|| TrutoTool {
                name,
                description: route.description.clone(),
                writes: false,
                routes: BTreeMap::new(),
                upstream: upstream.clone(),
            });
            if tool.routes.contains_key(&account.name) {
                tracing::warn!(account = %account.name, tool = %tool.name,
                    "two Truto tools of one account have the same sanitized name; keeping the first");
                continue;
            }
            tool.writes |= route.writes;
            tool.routes.insert(account.name.clone(), route);
            loaded += 1;
        }
        tracing::info!(account = %account.name, tools = loaded, "Truto tools loaded");
    }
    for tool in tools.into_values() {
        let name = tool.name.clone();
        if let Err(e) = registry.register(Arc::new(tool)) {
            tracing::error!(tool = %name, error = %e, "a Truto tool could not be registered");
        }
    }
    Ok(())
}

/// Every tool definition the account's `/tools` endpoint lists, following `next_cursor`.
async fn list_tools(upstream: &Upstream, account: &Account) -> Result<Vec<Value>, ToolError> {
    let id = account
        .integrated_account_id
        .as_deref()
        .ok_or_else(|| ToolError::Permanent("no integrated_account_id".into()))?;
    let ctx = ToolContext::for_account(&account.name, "truto-tools");
    let path = format!("/integrated-account/{}/tools", segment(id));
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let mut request = Request::get(&path);
        if let Some(c) = &cursor {
            request = request.query("next_cursor", c);
        }
        let body = upstream
            .send(&ctx, ConnectorKind::Truto, request)
            .await?
            .body;
        let (page, next) = match body {
            Value::Array(items) => (items, None),
            Value::Object(mut o) => match o.remove("result") {
                Some(Value::Array(items)) => (
                    items,
                    o.get("next_cursor")
                        .and_then(Value::as_str)
                        .filter(|c| !c.is_empty())
                        .map(str::to_string),
                ),
                _ => {
                    return Err(ToolError::Rejected(
                        "the tool list has no `result` array".into(),
                    ));
                }
            },
            _ => return Err(ToolError::Rejected("the tool list is not JSON".into())),
        };
        all.extend(page);
        match next {
            Some(n) if Some(&n) != cursor.as_ref() => cursor = Some(n),
            _ => break,
        }
    }
    Ok(all)
}

/// `truto.<name>` with the name lower-cased, other characters as `_`, and cut to fit providers.
pub fn tool_name(raw: &str) -> Option<String> {
    let mut s: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    s.truncate(MAX_NAME);
    let s = s.trim_matches('_');
    (!s.is_empty()).then(|| format!("truto.{s}"))
}

/// How one account executes one tool.
struct Route {
    integrated_account_id: String,
    resource: String,
    method: String,
    description: String,
    query_keys: Vec<String>,
    body_keys: Vec<String>,
    /// get, update and delete address one record by `id` in the path.
    individual: bool,
    writes: bool,
    schema: Value,
}

impl Route {
    fn from_listed(integrated_account_id: &str, def: &Value) -> Result<(String, Self), String> {
        let text = |k: &str| def.get(k).and_then(Value::as_str).unwrap_or_default();
        let raw = text("name");
        let name = tool_name(raw).ok_or_else(|| format!("tool without a usable name: {def}"))?;
        let (resource, method) = (text("resource"), text("method"));
        if resource.is_empty() || method.is_empty() {
            return Err(format!("{raw}: no resource or method"));
        }
        let individual = matches!(method, "get" | "update" | "delete");
        let mut properties = Map::new();
        let mut required: Vec<String> = def
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|r| r.as_str().map(str::to_string))
            .collect();
        let mut take = |schema: Option<&Value>, keys: &mut Vec<String>| {
            let props = schema
                .and_then(|s| s.get("properties"))
                .and_then(Value::as_object);
            for (k, v) in props.into_iter().flatten() {
                if individual && k == "id" {
                    continue;
                }
                let mut v = v.clone();
                // Some definitions mark a property `"required": true` (not JSON Schema).
                if let Some(o) = v.as_object_mut()
                    && let Some(Value::Bool(flag)) = o.get("required").cloned()
                {
                    o.remove("required");
                    if flag {
                        required.push(k.clone());
                    }
                }
                properties.entry(k.clone()).or_insert(v);
                keys.push(k.clone());
            }
        };
        let (mut query_keys, mut body_keys) = (Vec::new(), Vec::new());
        take(def.get("query_schema"), &mut query_keys);
        take(def.get("body_schema"), &mut body_keys);
        if method == "list" {
            for (k, s) in [
                (
                    "limit",
                    json!({"type": "integer", "minimum": 1, "maximum": 100}),
                ),
                (
                    "next_cursor",
                    json!({"type": "string", "description": "From the previous page's `next_cursor`."}),
                ),
            ] {
                if !properties.contains_key(k) {
                    properties.insert(k.into(), s);
                    query_keys.push(k.into());
                }
            }
        }
        if individual {
            properties.insert(
                "id".into(),
                json!({"type": ["string", "integer"], "description": "The record's id."}),
            );
            required.push("id".into());
        }
        required.retain(|r| properties.contains_key(r));
        required.sort();
        required.dedup();
        let mut schema = json!({"type": "object", "properties": properties,
                                "required": required, "additionalProperties": false});
        if jsonschema::validator_for(&schema).is_err() {
            // Keep the tool usable with names and descriptions only.
            tracing::warn!(
                tool = raw,
                "a Truto tool's schema does not compile; its argument types are not checked"
            );
            for v in schema["properties"]
                .as_object_mut()
                .into_iter()
                .flat_map(|p| p.values_mut())
            {
                let description = v.get("description").cloned();
                *v = json!({});
                if let Some(d) = description {
                    v["description"] = d;
                }
            }
        }
        let route = Route {
            integrated_account_id: integrated_account_id.to_string(),
            resource: resource.to_string(),
            method: method.to_string(),
            description: match text("description") {
                "" => format!("{raw} ({method} {resource}, through Truto)"),
                d => d.to_string(),
            },
            query_keys,
            body_keys,
            individual,
            writes: !matches!(method, "list" | "get"),
            schema,
        };
        Ok((name, route))
    }

    /// The proxy call for `args` (already valid against `schema`).
    fn request(&self, args: &Map<String, Value>) -> Result<Request, ToolError> {
        let mut path = format!(
            "/proxy/{}",
            self.resource
                .split('/')
                .map(segment)
                .collect::<Vec<_>>()
                .join("/")
        );
        if self.individual {
            let id = match args.get("id") {
                Some(Value::String(s)) if !s.is_empty() => s.clone(),
                Some(Value::Number(n)) => n.to_string(),
                _ => return Err(ToolError::Rejected("`id` is required".into())),
            };
            path = format!("{path}/{}", segment(&id));
        }
        let method = match self.method.as_str() {
            "list" | "get" => Method::GET,
            "create" => Method::POST,
            "update" => Method::PATCH,
            "delete" => Method::DELETE,
            custom => {
                path = format!("{path}/{}", segment(custom));
                Method::POST
            }
        };
        let mut query = Vec::new();
        for k in &self.query_keys {
            if let Some(v) = args.get(k) {
                flatten(k, v, &mut query);
            }
        }
        // Last, and from the account: a model-supplied value cannot redirect the call.
        query.retain(|(k, _)| k != "integrated_account_id");
        query.push((
            "integrated_account_id".into(),
            self.integrated_account_id.clone(),
        ));
        let body = (method == Method::POST || method == Method::PATCH).then(|| {
            let picked: Map<String, Value> = self
                .body_keys
                .iter()
                .filter_map(|k| args.get(k).map(|v| (k.clone(), v.clone())))
                .collect();
            Value::Object(picked)
        });
        Ok(Request {
            method,
            path,
            query,
            body,
            bucket: "api",
            write: self.writes,
        })
    }
}

/// Query parameters the way Truto's SDKs encode them (`qs`): `a[0]=x`, `a[b]=y`.
fn flatten(key: &str, value: &Value, out: &mut Vec<(String, String)>) {
    match value {
        Value::Null => {}
        Value::String(s) => out.push((key.to_string(), s.clone())),
        Value::Bool(_) | Value::Number(_) => out.push((key.to_string(), value.to_string())),
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                flatten(&format!("{key}[{i}]"), v, out);
            }
        }
        Value::Object(o) => {
            for (k, v) in o {
                flatten(&format!("{key}[{k}]"), v, out);
            }
        }
    }
}

fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A list's first records and a size cap, so one answer cannot fill the model's context.
fn trimmed(body: Value) -> Value {
    let mut body = body;
    if let Some(result) = body.get_mut("result").and_then(Value::as_array_mut)
        && result.len() > MAX_ITEMS
    {
        let more = result.len() - MAX_ITEMS;
        result.truncate(MAX_ITEMS);
        body["omitted_records"] = more.into();
    }
    let text = body.to_string();
    if text.len() <= MAX_CHARS {
        return body;
    }
    let cut: String = text.chars().take(MAX_CHARS).collect();
    json!({"truncated": true, "json_prefix": cut})
}

/// One `truto.<name>`, executed for the job's account.
struct TrutoTool {
    name: String,
    description: String,
    writes: bool,
    /// By account name.
    routes: BTreeMap<String, Route>,
    upstream: Upstream,
}

#[async_trait]
impl Tool for TrutoTool {
    fn name(&self) -> &str {
        &self.name
    }
    fn description(&self) -> &str {
        &self.description
    }
    fn parameters(&self) -> Value {
        self.routes
            .values()
            .next()
            .map(|r| r.schema.clone())
            .unwrap_or_else(|| json!({"type": "object"}))
    }
    async fn live_parameters(&self, ctx: &ToolContext) -> Result<Option<Value>, ToolError> {
        // Only when accounts differ does the job's account decide the schema.
        if self.routes.len() < 2 {
            return Ok(None);
        }
        Ok(self
            .routes
            .get(ctx.account.as_str())
            .map(|r| r.schema.clone()))
    }
    fn writes(&self) -> bool {
        self.writes
    }
    async fn call(&self, ctx: &ToolContext, args: Value) -> Result<Value, ToolError> {
        let Some(route) = self.routes.get(ctx.account.as_str()) else {
            let offered: Vec<&str> = self.routes.keys().map(String::as_str).collect();
            return Err(ToolError::Rejected(format!(
                "{} is not available to account {}: only Truto account(s) {} list it",
                self.name,
                ctx.account,
                offered.join(", ")
            )));
        };
        let empty = Map::new();
        let args = args.as_object().unwrap_or(&empty);
        let response = self
            .upstream
            .send(ctx, ConnectorKind::Truto, route.request(args)?)
            .await?;
        Ok(trimmed(response.body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_sanitized_to_what_handlers_and_providers_accept() {
        assert_eq!(
            tool_name("list_all_happy_fox_tickets").as_deref(),
            Some("truto.list_all_happy_fox_tickets")
        );
        assert_eq!(
            tool_name("Create a HappyFox-Note!").as_deref(),
            Some("truto.create_a_happyfox_note")
        );
        assert_eq!(tool_name("---").as_deref(), None);
        let long = tool_name(&"x".repeat(100)).unwrap();
        assert_eq!(long.len(), "truto.".len() + MAX_NAME);
    }

    #[test]
    fn query_values_are_encoded_like_truto_sdks_do() {
        let mut out = Vec::new();
        flatten(
            "filter",
            &json!({"status": ["open", "pending"], "n": 3, "skip": null}),
            &mut out,
        );
        assert_eq!(
            out,
            [
                ("filter[n]".to_string(), "3".to_string()),
                ("filter[status][0]".to_string(), "open".to_string()),
                ("filter[status][1]".to_string(), "pending".to_string()),
            ]
        );
    }

    #[test]
    fn a_definition_becomes_a_strict_schema_and_a_proxy_call() {
        let def = json!({
            "name": "update_a_happy_fox_ticket_by_id", "resource": "tickets", "method": "update",
            "description": "Update a ticket",
            "query_schema": {"properties": {"id": {"type": "string"}, "notify": {"type": "boolean", "required": true}}},
            "body_schema": {"properties": {"status": {"type": "integer"}, "integrated_account_id": {"type": "string"}}},
            "required": ["status", "missing"]
        });
        let (name, route) = Route::from_listed("ia-1", &def).unwrap();
        assert_eq!(name, "truto.update_a_happy_fox_ticket_by_id");
        assert!(route.writes);
        assert_eq!(route.schema["required"], json!(["id", "notify", "status"]));
        assert_eq!(route.schema["additionalProperties"], false);
        let args =
            json!({"id": 142, "notify": false, "status": 3, "integrated_account_id": "other"});
        let request = route.request(args.as_object().unwrap()).unwrap();
        assert_eq!(request.method, Method::PATCH);
        assert_eq!(request.path, "/proxy/tickets/142");
        assert_eq!(
            request.query,
            [
                ("notify".to_string(), "false".to_string()),
                ("integrated_account_id".to_string(), "ia-1".to_string()),
            ]
        );
        assert_eq!(
            request.body,
            Some(json!({"status": 3, "integrated_account_id": "other"}))
        );

        let custom = json!({"name": "send", "resource": "emails", "method": "send_now"});
        let (_, route) = Route::from_listed("ia-1", &custom).unwrap();
        let request = route.request(&Map::new()).unwrap();
        assert_eq!(
            (request.method, request.path.as_str()),
            (Method::POST, "/proxy/emails/send_now")
        );
        assert!(request.write);
    }

    #[test]
    fn long_lists_are_cut_for_the_model() {
        let body = json!({"result": (0..40).collect::<Vec<_>>(), "next_cursor": "c2"});
        let t = trimmed(body);
        assert_eq!(t["result"].as_array().unwrap().len(), MAX_ITEMS);
        assert_eq!(t["omitted_records"], 15);
        assert_eq!(t["next_cursor"], "c2");
        let huge = json!({"text": "x".repeat(MAX_CHARS * 2)});
        assert_eq!(trimmed(huge)["truncated"], true);
    }
}
