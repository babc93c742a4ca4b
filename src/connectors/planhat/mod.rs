//! The Planhat connector: typed tools over Planhat's REST API (Bearer token, bare JSON arrays for
//! lists, ids as 24-hex ObjectIds), every call through `Upstream::send`.
//!
//! Facts the reference marks unconfirmed are handled tolerantly: responses are read as JSON
//! values with unknown fields allowed and ids coerced to strings; filters Planhat may not have
//! (NPS by company, score or date; issues by company) are applied here, over a bounded number of
//! pages; writes are checked first, because Planhat accepts a wrong id or an unknown custom
//! field key without complaint.

mod activity;
mod custom_fields;
mod read;
mod refs;
mod shape;
pub mod webhook;
mod write;

use super::{Connector, filled, require, secret};
use crate::config::AccountConfig;
use crate::ingress::sources::Adapter;
use crate::kernel::ConnectorKind;
use crate::tools::{Tool, ToolContext, ToolError, ToolRegistry, path_segment as segment};
use crate::upstream::{Auth, Origin, Profile, Request, Response, Upstream};
use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

/// The name `connector = "planhat"` refers to.
pub const KIND: ConnectorKind = ConnectorKind::new("planhat");

/// Planhat: companies, NPS, tasks, churn and opportunities; webhooks from its automations.
pub struct PlanhatConnector;

#[async_trait]
impl Connector for PlanhatConnector {
    fn kind(&self) -> ConnectorKind {
        KIND
    }

    fn profile(&self) -> Profile {
        Profile {
            default_base_url: Some("https://api.planhat.com"),
            // A soft quota of 200 calls per minute.
            budgets: &[("api", "200/1m")],
            // Its counter resets every 60-120 s.
            penalty: Duration::from_secs(60),
        }
    }

    fn keys(&self) -> &'static [&'static str] {
        &["token"]
    }

    fn check_account(&self, account: &AccountConfig) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        require(&mut problems, KIND, "token", filled(&account.token));
        if account.api_key.is_some() {
            problems.push((
                "api_key".into(),
                "Planhat uses `token`, not `api_key`".into(),
            ));
        }
        problems
    }

    fn auth(&self, account: &AccountConfig) -> Auth {
        Auth::Bearer(secret(&account.token))
    }

    fn webhooks(&self) -> Option<&'static dyn Adapter> {
        Some(&webhook::Webhooks)
    }

    fn tool_names(&self) -> Option<Vec<&'static str>> {
        Some(NAMES.to_vec())
    }
    fn tool_schemas(&self) -> Option<Vec<(&'static str, Value)>> {
        Some(schemas())
    }
    async fn register_tools(
        &self,
        registry: &mut ToolRegistry,
        upstream: &Upstream,
    ) -> Result<(), String> {
        register(registry, upstream)
    }
}

/// Every Planhat tool, listed once: `tools` builds them, `NAMES` and `schemas` name them and
/// their arguments' schemas without a client (`hookwise check` compares handlers' `tools` and
/// `scopes` with them).
macro_rules! ops {
    ($($op:ty),* $(,)?) => {
        const NAMES: &[&str] = &[$(<$op as Op>::NAME),*];

        fn schemas() -> Vec<(&'static str, Value)> {
            vec![$((<$op as Op>::NAME, <$op as Op>::schema())),*]
        }

        fn tools(ph: &Arc<Planhat>) -> Vec<Arc<dyn Tool>> {
            vec![$(tool::<$op>(ph)),*]
        }
    };
}

ops![
    read::GetCompany,
    read::ListNps,
    activity::ListTasks,
    activity::ListTickets,
    activity::ListIssues,
    read::ListEndusers,
    read::ListUsers,
    custom_fields::ListCustomFields,
    write::CreateTask,
    write::CreateChurn,
    write::UpdateOpportunity,
];

/// Registers every Planhat tool. They are offered whether or not a Planhat account is configured:
/// the job's account decides at call time, and a non-Planhat account is refused there.
pub fn register(registry: &mut ToolRegistry, upstream: &Upstream) -> Result<(), String> {
    let ph = Arc::new(Planhat {
        upstream: upstream.clone(),
        fields: custom_fields::Cache::default(),
    });
    for t in tools(&ph) {
        registry.register(t)?;
    }
    Ok(())
}

fn tool<O: Op>(ph: &Arc<Planhat>) -> Arc<dyn Tool> {
    Arc::new(PlanhatTool::<O> {
        ph: ph.clone(),
        op: PhantomData,
    })
}

/// One Planhat tool: typed arguments, a fixed schema, and for writes the checks that run before
/// anything is sent.
#[async_trait]
trait Op: Send + Sync + 'static {
    type Args: DeserializeOwned + Send + Sync;
    const NAME: &'static str;
    const DESCRIPTION: &'static str;
    const WRITES: bool;
    /// Strict: `additionalProperties: false` at every object level the tool defines.
    fn schema() -> Value;
    /// Read-only verification of what a write references; reads need none.
    async fn check(_ph: &Planhat, _ctx: &ToolContext, _args: &Self::Args) -> Result<(), ToolError> {
        Ok(())
    }
    async fn run(ph: &Planhat, ctx: &ToolContext, args: Self::Args) -> Result<Value, ToolError>;
}

struct PlanhatTool<O> {
    ph: Arc<Planhat>,
    op: PhantomData<fn() -> O>,
}

#[async_trait]
impl<O: Op> Tool for PlanhatTool<O> {
    fn name(&self) -> &str {
        O::NAME
    }
    fn description(&self) -> &str {
        O::DESCRIPTION
    }
    fn parameters(&self) -> Value {
        O::schema()
    }
    fn writes(&self) -> bool {
        O::WRITES
    }
    async fn check(&self, ctx: &ToolContext, args: &Value) -> Result<(), ToolError> {
        let args: O::Args = parse(args.clone())?;
        O::check(&self.ph, ctx, &args).await
    }
    async fn call(&self, ctx: &ToolContext, args: Value) -> Result<Value, ToolError> {
        let args: O::Args = parse(args)?;
        if O::WRITES {
            O::check(&self.ph, ctx, &args).await?;
        }
        O::run(&self.ph, ctx, args).await
    }
}

/// Arguments already passed the schema; this only fails where serde is stricter (it names the
/// field, so the model can fix it).
fn parse<A: DeserializeOwned>(args: Value) -> Result<A, ToolError> {
    serde_path_to_error::deserialize(args).map_err(|e| {
        ToolError::Rejected(format!("invalid arguments at {}: {}", e.path(), e.inner()))
    })
}

/// The connector's shared state: the upstream client and the custom field definitions per
/// account.
pub struct Planhat {
    upstream: Upstream,
    fields: custom_fields::Cache,
}

impl Planhat {
    async fn send(&self, ctx: &ToolContext, request: Request) -> Result<Response, ToolError> {
        self.upstream.send(ctx, KIND, request).await
    }

    async fn get(&self, ctx: &ToolContext, request: Request) -> Result<Value, ToolError> {
        Ok(self.send(ctx, request).await?.body)
    }

    /// Pages through a list endpoint (offset pagination, bare arrays) keeping what `keep`
    /// accepts, until `want` are kept, a short page ends the list, `keep` says the rest cannot
    /// match, or `max_pages` were read.
    async fn scan(
        &self,
        ctx: &ToolContext,
        list: List<'_>,
        want: usize,
        mut keep: impl FnMut(&Value) -> Keep,
    ) -> Result<Scan, ToolError> {
        let mut scan = Scan::default();
        for page in 0..list.max_pages {
            let mut request = Request::get(list.path)
                .query("limit", list.page_size)
                .query("offset", page * list.page_size);
            if let Some(sort) = list.sort {
                request = request.query("sort", sort);
            }
            for (k, v) in list.filters {
                request = request.query(k, v);
            }
            let items = items(self.get(ctx, request).await?, list.path)?;
            let short = items.len() < list.page_size;
            for item in items {
                scan.scanned += 1;
                match keep(&item) {
                    Keep::Yes => scan.items.push(item),
                    Keep::No => {}
                    Keep::Stop => {
                        scan.complete = true;
                        return Ok(scan);
                    }
                }
                if scan.items.len() >= want {
                    return Ok(scan);
                }
            }
            if short {
                scan.complete = true;
                return Ok(scan);
            }
        }
        Ok(scan)
    }
}

/// Where and how to page a list endpoint.
struct List<'a> {
    path: &'a str,
    sort: Option<&'a str>,
    /// Server-side filters the reference says Planhat has; results are filtered again here.
    filters: &'a [(&'a str, String)],
    page_size: usize,
    max_pages: usize,
}

/// Whether a scanned record is kept; `Stop` when the order proves no later record can match.
enum Keep {
    Yes,
    No,
    Stop,
}

#[derive(Default)]
struct Scan {
    items: Vec<Value>,
    scanned: usize,
    /// Every matching record was seen (the list ended, or the order ruled out the rest).
    complete: bool,
}

impl Scan {
    /// The answer of a list tool: the trimmed records and whether more may exist.
    fn answer(self, key: &str, trim: fn(&Value) -> Value) -> Value {
        let items: Vec<Value> = self.items.iter().map(trim).collect();
        let mut out = serde_json::Map::new();
        out.insert("count".into(), items.len().into());
        out.insert(key.into(), Value::Array(items));
        out.insert("scanned".into(), self.scanned.into());
        out.insert("more_may_exist".into(), (!self.complete).into());
        Value::Object(out)
    }
}

/// A list answer's records: Planhat returns a bare array; an envelope is accepted in case that
/// changes.
fn items(body: Value, path: &str) -> Result<Vec<Value>, ToolError> {
    match body {
        Value::Array(items) => Ok(items),
        Value::Object(mut o) => match ["data", "result", "results"]
            .iter()
            .find_map(|k| o.remove(*k).filter(Value::is_array))
        {
            Some(Value::Array(items)) => Ok(items),
            _ => Err(not_a_list(path, &Value::Object(o))),
        },
        other => Err(not_a_list(path, &other)),
    }
}

fn not_a_list(path: &str, body: &Value) -> ToolError {
    let text = body.to_string();
    let text: String = text.chars().take(300).collect();
    ToolError::Rejected(format!(
        "planhat answered GET {path} with something that is not a list: {text}"
    ))
}

/// A write's answer for the model, saying when it was not sent now.
fn written(response: Response, trimmed: Value) -> Value {
    let mut out = match trimmed {
        Value::Object(o) => o,
        other => {
            let mut o = serde_json::Map::new();
            o.insert("answer".into(), other);
            o
        }
    };
    match response.origin {
        Origin::Sent => {}
        Origin::Journaled => {
            out.insert(
                "note".into(),
                "already done by an earlier attempt of this job; not sent again".into(),
            );
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::refs::ObjectId;
    use super::*;
    use serde_json::json;

    #[test]
    fn path_segments_are_percent_encoded() {
        assert_eq!(
            segment("64b7e2f09a1c3d5e7f802a11"),
            "64b7e2f09a1c3d5e7f802a11"
        );
        assert_eq!(segment("extid-acct/10 442"), "extid-acct%2F10%20442");
    }

    #[test]
    fn object_ids_are_24_hex_characters() {
        assert!(ObjectId::parse("64b7e2f09a1c3d5e7f802a11").is_ok());
        assert!(ObjectId::parse("64B7E2F09A1C3D5E7F802A11").is_ok());
        assert!(ObjectId::parse("64b7e2f09a1c3d5e7f802a1").is_err());
        assert!(ObjectId::parse("64b7e2f09a1c3d5e7f802a1z").is_err());
        assert!(ObjectId::parse("extid-acct-10442").is_err());
    }

    #[test]
    fn ids_reach_the_model_as_strings() {
        let company = json!({
            "_id": "64b7e2f09a1c3d5e7f802a11",
            "owner": {"_id": "5f8a1b2c3d4e5f6a7b8c9d01", "nickName": "Ana"},
            "coOwner": 12345,
            "name": "Northwind",
            "__v": 0,
            "usage": {"big": true}
        });
        assert_eq!(
            shape::company(&company),
            json!({"_id": "64b7e2f09a1c3d5e7f802a11", "name": "Northwind",
                   "owner": "5f8a1b2c3d4e5f6a7b8c9d01", "coOwner": "12345"})
        );
        let ticket = json!({"_id": "t1", "endusers": [{"id": 7, "name": "Maria"}]});
        assert_eq!(
            shape::ticket(&ticket)["endusers"],
            json!([{"id": "7", "name": "Maria"}])
        );
    }

    #[test]
    fn lists_are_bare_arrays_or_a_known_envelope() {
        assert_eq!(items(json!([1, 2]), "/nps").unwrap().len(), 2);
        assert_eq!(items(json!({"data": [1]}), "/nps").unwrap().len(), 1);
        let err = items(json!({"error": "nope"}), "/nps").unwrap_err();
        assert!(err.to_string().contains("not a list"), "{err}");
    }

    #[test]
    fn every_schema_compiles_and_refuses_unknown_arguments() {
        let schemas = [
            read::GetCompany::schema(),
            read::ListNps::schema(),
            read::ListEndusers::schema(),
            read::ListUsers::schema(),
            activity::ListTasks::schema(),
            activity::ListTickets::schema(),
            activity::ListIssues::schema(),
            custom_fields::ListCustomFields::schema(),
            write::CreateTask::schema(),
            write::CreateChurn::schema(),
            write::UpdateOpportunity::schema(),
        ];
        for schema in schemas {
            assert_eq!(schema["additionalProperties"], false, "{schema}");
            let validator = jsonschema::validator_for(&schema).unwrap();
            assert!(!validator.is_valid(&json!({"unexpected": 1})), "{schema}");
        }
    }
}
