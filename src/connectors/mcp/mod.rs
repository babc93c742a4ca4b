//! MCP servers as tool sources: every `[accounts.X]` with `connector = "mcp"` is one server,
//! reached at its `base_url` over the streamable HTTP transport (the official Rust SDK, `rmcp`,
//! speaks the protocol), with its `headers` on every request. Its tools are listed at start-up
//! and every `refresh` (default 5m), and each becomes `mcp.<name>` (sanitized to `[a-z0-9_]`).
//!
//! - Who may use them: jobs of the MCP account itself and of the accounts it `serves`. A call
//!   goes to the first MCP account (by name) that serves the job's account and lists the tool;
//!   the model never chooses the server.
//! - Read or write: a tool annotated `readOnlyHint: true` reads; every other tool writes (the
//!   annotation is the server's claim, and without it nothing says a tool changes nothing).
//!   Writes go through the action journal under the call's idempotency key (sent at most once),
//!   through dry-run and approve mode like every write, and every call spends the account's `api`
//!   budget in the rate governor. A 429 pauses the account; a JSON-RPC error about the request is
//!   fed back to the model, like a tool result marked `isError`.
//! - A server that does not answer at start-up does not stop hookwise: its tools are missing
//!   (runs that allow-list them say why) until a later listing succeeds. A server that stops
//!   answering later keeps its last listed tools; calls then fail as unavailable and the job is
//!   retried.
//! - One MCP session per account, opened on first use and opened again after it breaks.

use super::Connector;
use crate::config::AccountConfig;
use crate::kernel::ConnectorKind;
use crate::tools::{LiveTools, Tool, ToolContext, ToolError, ToolRegistry};
use crate::upstream::{
    Account, Answer, Auth, Broken, Call, Profile, Response, Upstream, with_causes,
};
use async_trait::async_trait;
use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, ClientCapabilities, ClientConfig, Implementation};
use rmcp::service::{ClientInitializeError, RoleClient, RunningService, ServiceError};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::{
    HttpStatusError, StreamableHttpClientTransportConfig, StreamableHttpError,
};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashMap};
use std::error::Error as StdError;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// The name `connector = "mcp"` refers to.
pub const KIND: ConnectorKind = ConnectorKind::new("mcp");

/// The shortest `refresh` accepted: listing is a call against the server's budget too.
const MIN_REFRESH: Duration = Duration::from_secs(10);
/// Headers the transport sets itself.
const RESERVED: &[&str] = &[
    "accept",
    "content-type",
    "mcp-session-id",
    "mcp-protocol-version",
    "last-event-id",
];

/// MCP: any server speaking the Model Context Protocol over streamable HTTP.
pub struct McpConnector;

#[async_trait]
impl Connector for McpConnector {
    fn kind(&self) -> ConnectorKind {
        KIND
    }

    fn profile(&self) -> Profile {
        Profile {
            // The server's endpoint is the account's; there is no default.
            default_base_url: None,
            // MCP defines no rate limit; set `rate_limits.api` to the server's own.
            budgets: &[("api", "600/1m")],
            penalty: Duration::from_secs(60),
        }
    }

    fn keys(&self) -> &'static [&'static str] {
        &["headers", "serves", "refresh"]
    }

    fn check_account(&self, account: &AccountConfig) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        for (name, value) in &account.headers {
            let key = format!("headers.{name}");
            match http::HeaderName::from_bytes(name.as_bytes()) {
                Err(_) => problems.push((key, "not a valid HTTP header name".into())),
                Ok(h) if RESERVED.contains(&h.as_str()) => {
                    problems.push((key, "set by the MCP transport itself; remove it".into()))
                }
                Ok(_) => {
                    if http::HeaderValue::from_str(value.expose()).is_err() {
                        problems.push((
                            key,
                            "not a valid HTTP header value (control characters or non-ASCII)"
                                .into(),
                        ));
                    }
                }
            }
        }
        for (i, name) in account.serves.iter().enumerate() {
            if name.trim().is_empty() {
                problems.push((format!("serves[{i}]"), "an account name, not empty".into()));
            }
        }
        if let Some(every) = account.refresh
            && every < MIN_REFRESH
        {
            problems.push((
                "refresh".into(),
                format!("at least {MIN_REFRESH:?}: each listing spends the server's budget"),
            ));
        }
        problems
    }

    fn auth(&self, _account: &AccountConfig) -> Auth {
        Auth::None
    }

    /// Each server lists its own, at start-up and every `refresh`.
    fn tool_names(&self) -> Option<Vec<&'static str>> {
        None
    }

    async fn register_tools(
        &self,
        registry: &mut ToolRegistry,
        upstream: &Upstream,
    ) -> Result<(), String> {
        register(registry, upstream).await;
        Ok(())
    }
}

/// Lists every MCP account's tools once, adds them to `registry` as a live set, and keeps each
/// account's list fresh in the background for as long as the registry lives. Never fails: a
/// server that does not answer is logged and its tools are missing until it does.
pub async fn register(registry: &mut ToolRegistry, upstream: &Upstream) {
    let accounts: Vec<Account> = upstream
        .accounts()
        .filter(|a| a.connector == KIND)
        .cloned()
        .collect();
    if accounts.is_empty() {
        return;
    }
    let live = Arc::new(LiveTools::new(KIND.as_str()));
    let catalog = Arc::new(Catalog {
        upstream: upstream.clone(),
        sessions: Arc::new(Sessions::default()),
        live: Arc::downgrade(&live),
        listed: Mutex::default(),
        unreachable: Mutex::default(),
    });
    for account in &accounts {
        for served in &account.serves {
            if upstream.account(served).is_none() {
                tracing::warn!(account = %account.name, serves = %served,
                    "an MCP account serves an account that is not configured");
            }
        }
        catalog.list(account).await;
    }
    catalog.publish(&live);
    registry.add_live(live);
    for account in accounts {
        tokio::spawn(catalog.clone().keep_fresh(account));
    }
}

/// What the connector knows of its servers: their tool lists and their sessions.
struct Catalog {
    upstream: Upstream,
    sessions: Arc<Sessions>,
    /// The registry's live set; gone once the registry is dropped, which ends the refreshes.
    live: Weak<LiveTools>,
    /// Each account's tools as last listed; an account never listed is absent.
    listed: Mutex<BTreeMap<String, Vec<rmcp::model::Tool>>>,
    /// Accounts whose last listing failed, with why.
    unreachable: Mutex<BTreeMap<String, String>>,
}

impl Catalog {
    /// Lists `account`'s tools and records the outcome (the tools, or why not).
    async fn list(&self, account: &Account) {
        let ctx = ToolContext::for_account(&account.name, "mcp-tools");
        let call = Call {
            bucket: "api",
            write: false,
            what: "tools/list".into(),
            described: "tools/list".into(),
        };
        let sessions = &self.sessions;
        let listed = self
            .upstream
            .exchange(&ctx, account, &call, || {
                sessions.list(&self.upstream, account)
            })
            .await
            .and_then(|r| {
                serde_json::from_value::<Vec<rmcp::model::Tool>>(r.body).map_err(|e| {
                    ToolError::Unavailable(format!("the server's tool list is not usable: {e}"))
                })
            });
        let mut unreachable = lock(&self.unreachable);
        match listed {
            Ok(tools) => {
                let before = lock(&self.listed).insert(account.name.clone(), tools.clone());
                let names = |t: &[rmcp::model::Tool]| -> Vec<String> {
                    t.iter().map(|t| t.name.to_string()).collect()
                };
                if before.as_deref().map(names) != Some(names(&tools)) {
                    tracing::info!(account = %account.name, tools = tools.len(),
                        names = %names(&tools).join(", "), "MCP tools listed");
                }
                if unreachable.remove(&account.name).is_some() {
                    tracing::info!(account = %account.name, "the MCP server answers again");
                }
            }
            Err(e) => {
                let kept = lock(&self.listed).contains_key(&account.name);
                tracing::error!(account = %account.name, url = %account.base_url, error = %e,
                    next_try_in = ?account.refresh,
                    "listing the MCP server's tools failed; {}",
                    if kept { "its tools as last listed stay offered" }
                    else { "its mcp.* tools are unavailable until it answers" });
                unreachable.insert(account.name.clone(), e.to_string());
            }
        }
    }

    /// Makes the tools every account listed the registry's `mcp.*` set.
    fn publish(&self, live: &LiveTools) {
        let mut tools: BTreeMap<String, McpTool> = BTreeMap::new();
        for (account, listed) in lock(&self.listed).iter() {
            for def in listed {
                let Some(name) = tool_name(&def.name) else {
                    tracing::warn!(account, tool = %def.name, "skipped an MCP tool: its name has no usable character");
                    continue;
                };
                let tool = tools.entry(name.clone()).or_insert_with(|| McpTool {
                    name,
                    description: String::new(),
                    writes: false,
                    routes: BTreeMap::new(),
                    sessions: self.sessions.clone(),
                    upstream: self.upstream.clone(),
                });
                if tool.routes.contains_key(account) {
                    tracing::warn!(account, tool = %tool.name,
                        "two MCP tools of one server have the same sanitized name; keeping the first");
                    continue;
                }
                let route = Route::from_listed(def);
                if tool.description.is_empty() {
                    tool.description = route.description.clone();
                }
                tool.writes |= route.writes;
                tool.routes.insert(account.clone(), route);
            }
        }
        let tools: Vec<Arc<dyn Tool>> = tools
            .into_values()
            .map(|t| Arc::new(t) as Arc<dyn Tool>)
            .collect();
        for problem in live.replace(tools) {
            tracing::warn!(error = %problem, "an MCP tool is left out");
        }
        let unreachable = lock(&self.unreachable);
        live.set_note((!unreachable.is_empty()).then(|| {
            let each: Vec<String> = unreachable
                .iter()
                .map(|(account, why)| format!("MCP account {account}: {why}"))
                .collect();
            format!(
                "its MCP server did not list its tools ({}); they are offered again once it answers",
                each.join("; ")
            )
        }));
    }

    /// Lists `account`'s tools again every `refresh`, until the registry is gone.
    async fn keep_fresh(self: Arc<Self>, account: Account) {
        loop {
            tokio::time::sleep(account.refresh).await;
            if self.live.strong_count() == 0 {
                return;
            }
            self.list(&account).await;
            let Some(live) = self.live.upgrade() else {
                return;
            };
            self.publish(&live);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// `mcp.<name>` (`runtime_tool_name`).
pub fn tool_name(raw: &str) -> Option<String> {
    super::runtime_tool_name(KIND, raw)
}

/// One server's definition of a tool.
struct Route {
    /// The tool's name on the server.
    remote: String,
    description: String,
    schema: Value,
    writes: bool,
}

impl Route {
    fn from_listed(def: &rmcp::model::Tool) -> Self {
        let mut schema = Value::Object((*def.input_schema).clone());
        if let Some(o) = schema.as_object_mut() {
            o.entry("type").or_insert_with(|| json!("object"));
        }
        let read_only = def
            .annotations
            .as_ref()
            .and_then(|a| a.read_only_hint)
            .unwrap_or(false);
        let description = def
            .description
            .as_deref()
            .or(def.title.as_deref())
            .unwrap_or("")
            .to_string();
        Self {
            remote: def.name.to_string(),
            description,
            schema,
            writes: !read_only,
        }
    }
}

/// One `mcp.<name>`, executed on the server that serves the job's account.
struct McpTool {
    name: String,
    description: String,
    /// A write when any server's definition is one (no `readOnlyHint: true`).
    writes: bool,
    /// By MCP account name.
    routes: BTreeMap<String, Route>,
    sessions: Arc<Sessions>,
    upstream: Upstream,
}

impl McpTool {
    /// The MCP account that serves the job's account and lists this tool, with its definition.
    fn route(&self, job_account: &str) -> Option<(&Account, &Route)> {
        self.routes.iter().find_map(|(name, route)| {
            let account = self.upstream.account(name)?;
            (name == job_account || account.serves.iter().any(|s| s == job_account))
                .then_some((account, route))
        })
    }
}

#[async_trait]
impl Tool for McpTool {
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
        // Only when servers differ does the job's account decide the schema.
        if self.routes.len() < 2 {
            return Ok(None);
        }
        Ok(self
            .route(ctx.account.as_str())
            .map(|(_, r)| r.schema.clone()))
    }
    fn writes(&self) -> bool {
        self.writes
    }
    async fn call(&self, ctx: &ToolContext, args: Value) -> Result<Value, ToolError> {
        let Some((account, route)) = self.route(ctx.account.as_str()) else {
            let listed: Vec<&str> = self.routes.keys().map(String::as_str).collect();
            return Err(ToolError::Rejected(format!(
                "{} is not available to account {}: it is listed by MCP account(s) {}, none of \
                 which is that account or serves it",
                self.name,
                ctx.account,
                listed.join(", ")
            )));
        };
        let arguments = match args {
            Value::Object(o) => o,
            _ => Map::new(),
        };
        let call = Call {
            bucket: "api",
            write: self.writes,
            what: format!("tools/call {}", route.remote),
            described: format!(
                "tools/call {} {}",
                route.remote,
                Value::Object(arguments.clone())
            ),
        };
        let sessions = &self.sessions;
        let upstream = &self.upstream;
        let response = upstream
            .exchange(ctx, account, &call, || {
                sessions.call(upstream, account, &route.remote, arguments.clone())
            })
            .await?;
        for_model(&self.name, response)
    }
}

/// What the model gets of a tool's result: its structured content when it has one, else its
/// content (one text block as the JSON it holds, or as text). A result marked `isError` is
/// refused with its text, for the model to correct itself.
fn for_model(name: &str, response: Response) -> Result<Value, ToolError> {
    let body = response.body;
    let shown = match body.get("structuredContent") {
        Some(structured) => structured.clone(),
        None => content(body.get("content")),
    };
    if body.get("isError") == Some(&Value::Bool(true)) {
        let text = match &shown {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        return Err(ToolError::Rejected(format!(
            "the MCP server's {name} reported an error: {text}"
        )));
    }
    Ok(shown)
}

fn content(blocks: Option<&Value>) -> Value {
    let Some(Value::Array(blocks)) = blocks else {
        return Value::Null;
    };
    let texts: Option<Vec<&str>> = blocks
        .iter()
        .map(|b| {
            (b.get("type").and_then(Value::as_str) == Some("text"))
                .then(|| b.get("text").and_then(Value::as_str))
                .flatten()
        })
        .collect();
    match texts.as_deref() {
        Some([one]) => serde_json::from_str(one).unwrap_or_else(|_| Value::String(one.to_string())),
        Some(many) => Value::String(many.join("\n")),
        None => Value::Array(blocks.clone()),
    }
}

type Client = RunningService<RoleClient, ClientConfig>;

/// One MCP session per account, shared by its calls.
#[derive(Default)]
struct Sessions {
    open: tokio::sync::Mutex<BTreeMap<String, Arc<Client>>>,
}

/// A step that ended without a value: the answer to report (an HTTP status, a JSON-RPC error)
/// or what broke.
type Outcome = Result<Answer, Broken>;

impl Sessions {
    /// The account's session, opened now if there is none or it broke.
    async fn client(&self, upstream: &Upstream, account: &Account) -> Result<Arc<Client>, Outcome> {
        let mut open = self.open.lock().await;
        if let Some(client) = open.get(&account.name)
            && !client.is_closed()
            && !client.is_transport_closed()
        {
            return Ok(client.clone());
        }
        open.remove(&account.name);
        let client = Arc::new(connect(upstream, account).await?);
        open.insert(account.name.clone(), client.clone());
        Ok(client)
    }

    /// Drops `client` as the account's session, so the next call opens another.
    async fn forget(&self, account: &str, client: &Arc<Client>) {
        let mut open = self.open.lock().await;
        if open.get(account).is_some_and(|c| Arc::ptr_eq(c, client)) {
            open.remove(account);
        }
    }

    /// `tools/list`, every page: the tools as a JSON array.
    async fn list(&self, upstream: &Upstream, account: &Account) -> Outcome {
        let client = match self.client(upstream, account).await {
            Ok(c) => c,
            Err(outcome) => return outcome,
        };
        let answer = tokio::time::timeout(account.timeout, client.list_all_tools()).await;
        self.settle(upstream, account, &client, answer, |tools| {
            serde_json::to_string(&tools)
        })
        .await
    }

    /// `tools/call`: the result as JSON (`content`, `structuredContent`, `isError`).
    async fn call(
        &self,
        upstream: &Upstream,
        account: &Account,
        name: &str,
        arguments: Map<String, Value>,
    ) -> Outcome {
        let client = match self.client(upstream, account).await {
            Ok(c) => c,
            Err(outcome) => return outcome,
        };
        let params = CallToolRequestParams::new(name.to_string()).with_arguments(arguments);
        let answer = tokio::time::timeout(account.timeout, client.call_tool(params)).await;
        self.settle(upstream, account, &client, answer, |result| {
            serde_json::to_string(&result)
        })
        .await
    }

    /// One request's result as the governor reads it: a result is a 200; a JSON-RPC error is a
    /// 400 when it is about the request, else a 500; an HTTP status the transport met is that
    /// status; anything else broke the session, which is dropped.
    async fn settle<T>(
        &self,
        upstream: &Upstream,
        account: &Account,
        client: &Arc<Client>,
        answer: Result<Result<T, ServiceError>, tokio::time::error::Elapsed>,
        text: impl FnOnce(T) -> serde_json::Result<String>,
    ) -> Outcome {
        let outcome = match answer {
            Err(_) => {
                self.forget(&account.name, client).await;
                Err(Broken {
                    message: format!(
                        "no answer within the account's timeout of {:?}",
                        account.timeout
                    ),
                    unsent: false,
                })
            }
            Ok(Ok(value)) => match text(value) {
                Ok(text) => Ok(answer_with(200, text, None)),
                Err(e) => Err(Broken {
                    message: format!("the server's answer could not be read: {e}"),
                    unsent: false,
                }),
            },
            Ok(Err(ServiceError::McpError(error))) => {
                let status = match error.code.0 {
                    // Parse error, invalid request, method not found, invalid params.
                    -32700 | -32600 | -32601 | -32602 => 400,
                    _ => 500,
                };
                let text = serde_json::to_string(&error).unwrap_or_else(|_| error.to_string());
                Ok(answer_with(status, text, None))
            }
            Ok(Err(e)) => match http_status(&e) {
                Some((status, retry_after)) => Ok(answer_with(
                    status,
                    format!("the MCP server answered HTTP {status}"),
                    retry_after,
                )),
                None => {
                    self.forget(&account.name, client).await;
                    Err(Broken {
                        message: describe(&e),
                        unsent: refused_connection(&e),
                    })
                }
            },
        };
        let status = outcome.as_ref().ok().map(|a| a.status);
        upstream.count_call(account, "POST", status);
        outcome
    }
}

/// Opens a session: `initialize` and `notifications/initialized` over streamable HTTP, with the
/// account's headers and hookwise's HTTP client. Nothing of a tool call has been sent when this
/// fails, so a write may be tried again; refused credentials and a 429 are reported as answers.
async fn connect(upstream: &Upstream, account: &Account) -> Result<Client, Outcome> {
    let mut headers = HashMap::new();
    for (name, value) in &account.headers {
        // `check_account` found both valid.
        if let (Ok(name), Ok(mut value)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            http::HeaderValue::from_str(value.expose()),
        ) {
            value.set_sensitive(true);
            headers.insert(name, value);
        }
    }
    let config = StreamableHttpClientTransportConfig::with_uri(account.base_url.as_str())
        .custom_headers(headers);
    let transport = StreamableHttpClientTransport::with_client(upstream.http_client(), config);
    let info = ClientConfig::new(
        ClientCapabilities::default(),
        Implementation::new("hookwise", env!("CARGO_PKG_VERSION")),
    );
    let unsent = |message: String| {
        Err(Broken {
            message: format!(
                "connecting to the MCP server at {}: {message}",
                account.base_url
            ),
            unsent: true,
        })
    };
    match tokio::time::timeout(account.timeout, info.serve(transport)).await {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(e)) => Err(match http_status(&e) {
            Some((status @ (401 | 403 | 429), retry_after)) => Ok(answer_with(
                status,
                format!("the MCP server answered HTTP {status} to initialize"),
                retry_after,
            )),
            _ => unsent(describe(&e)),
        }),
        Err(_) => Err(unsent(format!(
            "no answer within the account's timeout of {:?}",
            account.timeout
        ))),
    }
}

fn answer_with(status: u16, text: String, retry_after: Option<String>) -> Answer {
    let mut headers = http::HeaderMap::new();
    if let Some(value) = retry_after.and_then(|v| http::HeaderValue::from_str(&v).ok()) {
        headers.insert(http::header::RETRY_AFTER, value);
    }
    Answer {
        status,
        headers,
        text,
    }
}

/// An error and every error under it. `ClientInitializeError::TransportError` and
/// `StreamableHttpError::Client` do not name the error they hold as their source, so the walk
/// steps into them here.
fn chain<'a>(e: &'a (dyn StdError + 'static)) -> Vec<&'a (dyn StdError + 'static)> {
    let mut all = Vec::new();
    let mut cause = Some(e);
    while let Some(err) = cause {
        all.push(err);
        cause = if let Some(ClientInitializeError::TransportError { error, .. }) =
            err.downcast_ref::<ClientInitializeError>()
        {
            Some(error)
        } else if let Some(StreamableHttpError::Client(error)) =
            err.downcast_ref::<StreamableHttpError<reqwest::Error>>()
        {
            Some(error)
        } else {
            err.source()
        };
    }
    all
}

/// The HTTP status (and `Retry-After`) an error of the transport carries, if any.
fn http_status(e: &(dyn StdError + 'static)) -> Option<(u16, Option<String>)> {
    chain(e).into_iter().find_map(|err| {
        if let Some(s) = err.downcast_ref::<HttpStatusError>() {
            return Some((s.status, s.retry_after.clone()));
        }
        match err.downcast_ref::<StreamableHttpError<reqwest::Error>>()? {
            StreamableHttpError::HttpStatus(h) => Some((h.status, h.retry_after.clone())),
            StreamableHttpError::AuthRequired(_) => Some((401, None)),
            StreamableHttpError::InsufficientScope(_) => Some((403, None)),
            _ => None,
        }
    })
}

/// Whether the connection was refused: the request never left.
fn refused_connection(e: &(dyn StdError + 'static)) -> bool {
    chain(e).into_iter().any(|err| {
        err.downcast_ref::<reqwest::Error>()
            .is_some_and(reqwest::Error::is_connect)
    })
}

/// An error in words an operator can act on: the HTTP client's own error with its causes when
/// there is one under the protocol's (which names Rust types), else the whole chain.
fn describe(e: &(dyn StdError + 'static)) -> String {
    chain(e)
        .into_iter()
        .find_map(|err| err.downcast_ref::<reqwest::Error>().map(|r| with_causes(r)))
        .unwrap_or_else(|| with_causes(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_sanitized_to_what_handlers_and_providers_accept() {
        assert_eq!(tool_name("get_account").as_deref(), Some("mcp.get_account"));
        assert_eq!(
            tool_name("Companies.Search-v2").as_deref(),
            Some("mcp.companies_search_v2")
        );
        assert_eq!(tool_name("???"), None);
        let long = tool_name(&"y".repeat(100)).unwrap();
        assert_eq!(crate::tools::wire(&long).len(), 64);
    }

    #[test]
    fn the_model_gets_structured_content_or_the_text_and_errors_are_refused() {
        let answer = |body: Value| Response {
            status: 200,
            body,
            origin: crate::upstream::Origin::Sent,
        };
        let structured = answer(json!({
            "content": [{"type": "text", "text": "{\"id\": 7}"}],
            "structuredContent": {"id": 7, "name": "Acme"}
        }));
        assert_eq!(
            for_model("mcp.get", structured).unwrap(),
            json!({"id": 7, "name": "Acme"})
        );
        let json_text = answer(json!({"content": [{"type": "text", "text": "{\"id\": 7}"}]}));
        assert_eq!(for_model("mcp.get", json_text).unwrap(), json!({"id": 7}));
        let lines = answer(json!({"content": [
            {"type": "text", "text": "one"}, {"type": "text", "text": "two"}
        ]}));
        assert_eq!(for_model("mcp.get", lines).unwrap(), json!("one\ntwo"));
        let failed = answer(json!({
            "content": [{"type": "text", "text": "the CRM is down"}], "isError": true
        }));
        let e = for_model("mcp.get", failed).unwrap_err();
        assert!(
            matches!(&e, ToolError::Rejected(m) if m.contains("the CRM is down")),
            "{e}"
        );
    }

    #[test]
    fn a_tool_without_read_only_hint_writes() {
        let def = |annotations: Value| -> rmcp::model::Tool {
            serde_json::from_value(json!({
                "name": "t", "inputSchema": {"properties": {}}, "annotations": annotations
            }))
            .unwrap()
        };
        assert!(!Route::from_listed(&def(json!({"readOnlyHint": true}))).writes);
        assert!(Route::from_listed(&def(json!({"readOnlyHint": false}))).writes);
        assert!(Route::from_listed(&def(json!({"destructiveHint": false}))).writes);
        let route = Route::from_listed(&def(json!({})));
        assert_eq!(
            route.schema["type"], "object",
            "a schema without a type gets one"
        );
    }
}
