//! The HappyFox connector: tools for a HappyFox Help Desk (REST API v1.1) that read tickets and
//! reference lists and write as the account's bot staff member.
//!
//! Every call goes through `Upstream::send` (credentials, rate budget `get`/`post`, journal); this
//! module adds what is HappyFox's own: refusals inside 2xx bodies, validation error shapes, the
//! bot identity writes need, and the cached reference lists that write schemas are built from.
//! Facts and their confidence: `reference/happyfox.md`; user-facing notes: README, "HappyFox tools".

/// Declares a module's tools once, each with its name: `tools` builds them over a client,
/// `NAMES` and `schemas` list them and their arguments' schemas without one (`hookwise check`
/// compares handlers' `tools` and `scopes` with them), and each tool's `NAME` is what its
/// `Tool::name` answers.
macro_rules! tool_list {
    ($($tool:ident = $name:literal),* $(,)?) => {
        pub const NAMES: &[&str] = &[$($name),*];

        pub fn schemas() -> Vec<(&'static str, Value)> {
            vec![$(($name, $tool::static_parameters())),*]
        }

        pub fn tools(client: &Arc<Client>) -> Vec<Arc<dyn Tool>> {
            vec![$(Arc::new($tool(client.clone()))),*]
        }

        $(impl $tool {
            const NAME: &'static str = $name;
        })*
    };
}

mod catalog;
mod errors;
mod fields;
mod model;
mod read;
mod view;
pub mod webhook;
mod write;

pub use catalog::TTL as CATALOG_TTL;

use super::{Connector, filled, require, secret};
use crate::config::AccountConfig;
use crate::ingress::sources::Adapter;
use crate::kernel::ConnectorKind;
use crate::tools::{Tool, ToolContext, ToolError, ToolRegistry};
use crate::upstream::{Auth, Origin, Profile, Request, Upstream};
use catalog::{Catalog, TtlCache};
use model::{Lenient, Ticket};
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The name `connector = "happyfox"` refers to.
pub const KIND: ConnectorKind = ConnectorKind::new("happyfox");

/// HappyFox Help Desk: tickets, notes, routing and custom fields; webhooks for ticket changes.
pub struct HappyFoxConnector;

#[async_trait::async_trait]
impl Connector for HappyFoxConnector {
    fn kind(&self) -> ConnectorKind {
        KIND
    }

    fn profile(&self) -> Profile {
        Profile {
            // Each help desk has its own host: `https://NAME.happyfox.com/api/1.1/json`.
            default_base_url: None,
            // 500 GET and 300 POST per minute (KB 1148)...
            budgets: &[("get", "500/1m"), ("post", "300/1m")],
            // ...and going over gives 429 for the next 10 minutes.
            penalty: Duration::from_secs(600),
        }
    }

    fn keys(&self) -> &'static [&'static str] {
        &["api_key", "auth_code", "bot_staff_id"]
    }

    fn check_account(&self, account: &AccountConfig) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        require(&mut problems, KIND, "api_key", filled(&account.api_key));
        require(&mut problems, KIND, "auth_code", filled(&account.auth_code));
        problems
    }

    fn auth(&self, account: &AccountConfig) -> Auth {
        Auth::Basic {
            user: secret(&account.api_key),
            password: secret(&account.auth_code),
        }
    }

    fn webhooks(&self) -> Option<&'static dyn Adapter> {
        Some(&webhook::Webhooks)
    }

    fn tool_names(&self) -> Option<Vec<&'static str>> {
        Some(read::NAMES.iter().chain(write::NAMES).copied().collect())
    }
    fn tool_schemas(&self) -> Option<Vec<(&'static str, Value)>> {
        let mut all = read::schemas();
        all.extend(write::schemas());
        Some(all)
    }
    async fn register_tools(
        &self,
        registry: &mut ToolRegistry,
        upstream: &Upstream,
    ) -> Result<(), String> {
        register(registry, upstream)
    }
}

/// Registers every HappyFox tool, sharing one client and one reference-list cache.
pub fn register(registry: &mut ToolRegistry, upstream: &Upstream) -> Result<(), String> {
    for tool in tools(upstream, CATALOG_TTL) {
        registry.register(tool)?;
    }
    Ok(())
}

/// Every HappyFox tool, with reference lists cached for `ttl`.
pub fn tools(upstream: &Upstream, ttl: Duration) -> Vec<Arc<dyn Tool>> {
    let client = Arc::new(Client {
        upstream: upstream.clone(),
        catalog: Catalog::new(ttl),
    });
    let mut all = read::tools(&client);
    all.extend(write::tools(&client));
    all
}

/// What the tools share: the upstream client and the per-account reference-list cache.
pub struct Client {
    upstream: Upstream,
    catalog: Catalog,
}

/// A write's answer and where it came from (sent now, or the journal's copy).
pub struct Written {
    pub body: Value,
    pub origin: Origin,
}

impl Client {
    /// A read in the `get` budget; `what` names it in errors ("ticket 142").
    async fn get(
        &self,
        ctx: &ToolContext,
        request: Request,
        what: &str,
    ) -> Result<Value, ToolError> {
        let response = self
            .upstream
            .send(ctx, KIND, request.bucket("get"))
            .await
            .map_err(|e| self.explain(ctx, e, what))?;
        self.refusal(ctx, &response.body, what)?;
        Ok(response.body)
    }

    /// A POST in the `post` budget, journaled under the call's idempotency key.
    async fn post(
        &self,
        ctx: &ToolContext,
        path: String,
        body: Value,
        what: &str,
    ) -> Result<Written, ToolError> {
        let request = Request::write(Method::POST, path, body).bucket("post");
        let response = self
            .upstream
            .send(ctx, KIND, request)
            .await
            .map_err(|e| self.explain(ctx, e, what))?;
        self.refusal(ctx, &response.body, what)?;
        Ok(Written {
            body: response.body,
            origin: response.origin,
        })
    }

    /// HappyFox's 2xx answers whose only key is `error` are refusals.
    fn refusal(&self, ctx: &ToolContext, body: &Value, what: &str) -> Result<(), ToolError> {
        match errors::in_body(body) {
            Some(error) => Err(ToolError::Rejected(format!(
                "HappyFox refused {what}: {}",
                errors::describe(error, &|key| self.field_name(ctx, key))
            ))),
            None => Ok(()),
        }
    }

    fn explain(&self, ctx: &ToolContext, err: ToolError, what: &str) -> ToolError {
        errors::explain(err, what, &|key| self.field_name(ctx, key))
    }

    /// `t-cf-22` → "Billing Issue Type", from the cached definitions (never fetched for this).
    fn field_name(&self, ctx: &ToolContext, key: &str) -> Option<String> {
        let id = key.strip_prefix("t-cf-")?;
        let defs = self.catalog.fields.any(ctx.account.as_str())?;
        defs.iter()
            .find(|d| d.id.as_ref().is_some_and(|i| i.to_string() == id))
            .and_then(|d| d.name.clone())
    }

    /// The staff id writes are made as. Without one, no write can work on this account.
    fn bot_staff_id(&self, ctx: &ToolContext) -> Result<u64, ToolError> {
        let account = self.upstream.account_for(ctx, KIND)?;
        account.bot_staff_id.ok_or_else(|| {
            ToolError::Permanent(format!(
                "account {name} has no bot_staff_id, and HappyFox writes are made as a staff \
                 member: set bot_staff_id under [accounts.{name}] to the id of the staff member \
                 hookwise writes as (GET /staff/ lists them)",
                name = account.name
            ))
        })
    }

    async fn ticket(&self, ctx: &ToolContext, id: u64) -> Result<Ticket, ToolError> {
        let what = format!("ticket {id}");
        let body = self
            .get(ctx, Request::get(format!("/ticket/{id}/")), &what)
            .await?;
        let ticket: Ticket = parse(body, &what)?;
        if ticket.id.is_none() {
            return Err(ToolError::Rejected(format!(
                "HappyFox answered {what} without a ticket in it"
            )));
        }
        Ok(ticket)
    }

    /// One cached reference list: the account's copy if fresh, else fetched from `path`.
    async fn reference<T>(
        &self,
        ctx: &ToolContext,
        cache: &TtlCache<Vec<T>>,
        path: &str,
    ) -> Result<Arc<Vec<T>>, ToolError>
    where
        T: DeserializeOwned,
    {
        let account = ctx.account.as_str();
        if let Some(hit) = cache.fresh(account, Instant::now()) {
            return Ok(hit);
        }
        let what = format!("the list {path}");
        let body = self.get(ctx, Request::get(path), &what).await?;
        // Documented as a bare array; a `{data: [...]}` envelope is accepted too.
        let items = match body {
            Value::Array(_) => body,
            Value::Object(mut map) if map.get("data").is_some_and(Value::is_array) => {
                map.remove("data").unwrap_or_default()
            }
            other => {
                return Err(ToolError::Rejected(format!(
                    "HappyFox answered {what} with something that is not a list: {}",
                    view::shorten(&other.to_string(), 200)
                )));
            }
        };
        Ok(cache.put(account, Vec::<T>::from_value(items), Instant::now()))
    }

    async fn categories(&self, ctx: &ToolContext) -> Result<Arc<Vec<model::Category>>, ToolError> {
        self.reference(ctx, &self.catalog.categories, "/categories/")
            .await
    }
    async fn field_defs(&self, ctx: &ToolContext) -> Result<Arc<Vec<model::FieldDef>>, ToolError> {
        self.reference(ctx, &self.catalog.fields, "/ticket_custom_fields/")
            .await
    }
    async fn statuses(&self, ctx: &ToolContext) -> Result<Arc<Vec<model::Status>>, ToolError> {
        self.reference(ctx, &self.catalog.statuses, "/statuses/")
            .await
    }
    async fn priorities(&self, ctx: &ToolContext) -> Result<Arc<Vec<model::Priority>>, ToolError> {
        self.reference(ctx, &self.catalog.priorities, "/priorities/")
            .await
    }
    async fn staff(&self, ctx: &ToolContext) -> Result<Arc<Vec<model::Staff>>, ToolError> {
        self.reference(ctx, &self.catalog.staff, "/staff/").await
    }
}

/// A HappyFox answer as `T`; a shape that cannot be read at all goes back to the model.
fn parse<T: DeserializeOwned>(body: Value, what: &str) -> Result<T, ToolError> {
    serde_json::from_value(body).map_err(|e| {
        ToolError::Rejected(format!(
            "HappyFox answered {what} in an unexpected shape: {e}"
        ))
    })
}

/// Schema-valid arguments as the tool's typed struct. The schema was checked before the call, so
/// a failure here means schema and struct disagree; the model is told, nothing is sent.
fn args<T: DeserializeOwned>(args: Value) -> Result<T, ToolError> {
    serde_json::from_value(args).map_err(|e| ToolError::Rejected(format!("invalid arguments: {e}")))
}

/// The job's subject as a ticket id, when it is one.
fn subject_ticket(ctx: &ToolContext) -> Option<u64> {
    ctx.subject.trim().parse().ok().filter(|id| *id > 0)
}
