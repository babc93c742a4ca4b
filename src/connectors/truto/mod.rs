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

use super::{Connector, filled, require, secret};
use crate::config::AccountConfig;
use crate::ingress::sources::Adapter;
use crate::kernel::ConnectorKind;
use crate::tools::{Tool, ToolContext, ToolError, ToolRegistry, path_segment as segment};
use crate::upstream::{Account, Auth, Profile, Request, Upstream};
mod route;
pub mod webhook;

use async_trait::async_trait;
use route::{Route, trimmed};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Pages of the tool list read at start-up (a cursor loop must end).
const MAX_PAGES: usize = 10;

/// The name `connector = "truto"` refers to.
pub const KIND: ConnectorKind = ConnectorKind::new("truto");

/// Truto: a unified API whose integrated accounts list their own tools; webhooks relay record
/// changes of third-party apps.
pub struct TrutoConnector;

#[async_trait]
impl Connector for TrutoConnector {
    fn kind(&self) -> ConnectorKind {
        KIND
    }

    fn profile(&self) -> Profile {
        Profile {
            default_base_url: Some("https://api.truto.one"),
            // Truto documents no number; its responses' headers teach the governor the rest.
            budgets: &[("api", "600/1m")],
            penalty: Duration::from_secs(60),
        }
    }

    fn keys(&self) -> &'static [&'static str] {
        &["api_key", "integrated_account_id"]
    }

    fn check_account(&self, account: &AccountConfig) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        require(&mut problems, KIND, "api_key", filled(&account.api_key));
        let id = account.integrated_account_id.as_ref();
        require(
            &mut problems,
            KIND,
            "integrated_account_id",
            id.is_some_and(|s| !s.is_empty()),
        );
        problems
    }

    fn auth(&self, account: &AccountConfig) -> Auth {
        Auth::Bearer(secret(&account.api_key))
    }

    fn webhooks(&self) -> Option<&'static dyn Adapter> {
        Some(&webhook::Webhooks)
    }

    /// Each account lists its own at start-up.
    fn tool_names(&self) -> Option<Vec<&'static str>> {
        None
    }
    async fn register_tools(
        &self,
        registry: &mut ToolRegistry,
        upstream: &Upstream,
    ) -> Result<(), String> {
        register(registry, upstream).await
    }
}

/// Registers the tools of every Truto account, as listed by its `/tools` endpoint. Never fails
/// start-up: an unreachable account or an unusable tool is logged and left out.
pub async fn register(registry: &mut ToolRegistry, upstream: &Upstream) -> Result<(), String> {
    let mut tools: BTreeMap<String, TrutoTool> = BTreeMap::new();
    for account in upstream.accounts().filter(|a| a.connector == KIND) {
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
        let body = upstream.send(&ctx, KIND, request).await?.body;
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

/// `truto.<name>` (`runtime_tool_name`).
pub fn tool_name(raw: &str) -> Option<String> {
    super::runtime_tool_name(KIND, raw)
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
        let response = self.upstream.send(ctx, KIND, route.request(args)?).await?;
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
        assert_eq!(crate::tools::wire(&long).len(), 64);
    }
}
