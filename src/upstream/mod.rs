//! Every call hookwise makes to an upstream API (HappyFox, Planhat, Truto) goes through
//! `Upstream::send`: the account's credentials, its rate governor, retries decided by kind, and
//! the action journal that keeps a write from being sent twice.
//!
//! Tools build a `Request` (path, query, body, which budget it spends, whether it writes) and get
//! a tolerant `Response` back (JSON, or the body as a string when it is not JSON). The account
//! comes from the `CallContext`, which the model cannot write.

mod call;
mod governor;
pub mod ratelimit;

pub use call::{CallContext, CallError};
pub use governor::with_causes;

use crate::config::AccountConfig;
use crate::kernel::ConnectorKind;
use crate::kernel::Secret;
use crate::kernel::clock::SharedClock;
use crate::store::{ActionBegin, SharedStore};
use crate::telemetry::metrics::SharedMetrics;
use crate::telemetry::trace::otel_span;
use reqwest::Method;
use serde_json::Value;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

/// How often an MCP server's tool list is read again when the account sets no `refresh`.
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(300);

/// One resolved `[accounts.NAME]`: where its API is and how to authenticate.
#[derive(Debug, Clone)]
pub struct Account {
    pub name: String,
    pub connector: ConnectorKind,
    /// The API root without a trailing slash; request paths are appended to it.
    pub base_url: String,
    auth: Auth,
    /// Truto: the integrated account the tools act on.
    pub integrated_account_id: Option<String>,
    /// HappyFox: the staff member hookwise writes as.
    pub bot_staff_id: Option<u64>,
    /// MCP: headers sent with every request to the server (its credentials).
    pub headers: BTreeMap<String, Secret>,
    /// MCP: the accounts whose jobs may use the server's tools, besides its own.
    pub serves: Vec<String>,
    /// MCP: how often the server's tool list is read again.
    pub refresh: Duration,
    /// Budgets by name (`get`, `post`, `api`): calls per window.
    pub limits: BTreeMap<String, ratelimit::Quota>,
    /// How long a 429 without a usable hint pauses the account.
    pub penalty: Duration,
    pub timeout: Duration,
    /// How long one call may wait for budget before its job is deferred instead.
    pub max_wait: Duration,
}

/// How an account's requests authenticate.
#[derive(Debug, Clone)]
pub enum Auth {
    Basic {
        user: Secret,
        password: Secret,
    },
    Bearer(Secret),
    /// The connector sends its credentials itself (an MCP account's `headers`).
    None,
}

/// What one upstream call is.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: Method,
    /// Appended to the account's `base_url`; starts with `/`.
    pub path: String,
    pub query: Vec<(String, String)>,
    pub body: Option<Value>,
    /// The budget this call spends: `get` or `post` on HappyFox, `api` on Planhat and Truto.
    pub bucket: &'static str,
    /// A write is journaled under the call's idempotency key and sent at most once per key; a
    /// tool makes at most one write per call. Reads are retried freely.
    pub write: bool,
}

impl Request {
    /// A read in the `api` budget (connectors with two budgets set `bucket`).
    pub fn get(path: impl Into<String>) -> Self {
        Self {
            method: Method::GET,
            path: path.into(),
            query: Vec::new(),
            body: None,
            bucket: "api",
            write: false,
        }
    }

    /// A write with a JSON body in the `api` budget.
    pub fn write(method: Method, path: impl Into<String>, body: Value) -> Self {
        Self {
            method,
            path: path.into(),
            query: Vec::new(),
            body: Some(body),
            bucket: "api",
            write: true,
        }
    }

    pub fn query(mut self, key: &str, value: impl ToString) -> Self {
        self.query.push((key.to_string(), value.to_string()));
        self
    }

    pub fn bucket(mut self, bucket: &'static str) -> Self {
        self.bucket = bucket;
        self
    }
}

/// What the governor and the journal need to know of one call, whatever carries it.
#[derive(Debug, Clone)]
pub struct Call {
    /// The budget it spends.
    pub bucket: &'static str,
    /// Journaled and sent at most once per idempotency key (see `Request::write`).
    pub write: bool,
    /// For errors and logs: `GET /tickets/1`, `tools/call get_account`.
    pub what: String,
    /// What the journal records of a write (compared on a re-run).
    pub described: String,
}

/// One attempt's answer: the status (an HTTP status, or what a protocol's answer amounts to),
/// the headers the governor learns from, and the body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub text: String,
}

/// One attempt that got no answer.
#[derive(Debug)]
pub struct Broken {
    /// What happened, for errors the model and the operator see.
    pub message: String,
    /// The request certainly never left (a refused connection): a write may be sent again.
    pub unsent: bool,
}

/// Where a write's response came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Sent now.
    Sent,
    /// An earlier attempt of this job sent it; this is the journaled response, nothing was sent.
    /// (A write sent earlier whose answer was never recorded is not a `Response`: `send` refuses
    /// it with `CallError::Rejected`, telling the model to read the current state.)
    Journaled,
}

/// An upstream's 2xx answer, read tolerantly.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// The JSON body; a body that is not JSON is kept as a string, an empty one is `null`.
    pub body: Value,
    pub origin: Origin,
}

/// The upstream client shared by every tool: one HTTP client, the accounts, the store that holds
/// rate state and the journal across replicas.
#[derive(Clone)]
pub struct Upstream {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    accounts: BTreeMap<String, Account>,
    /// Rate budgets, pauses and the journal live here, so every replica shares them.
    store: SharedStore,
    clock: SharedClock,
    /// How often a read is retried after a 5xx, a timeout or a dropped connection.
    max_retries: u32,
    metrics: SharedMetrics,
}

/// What a connector tells the upstream layer about its vendor's API.
#[derive(Debug, Clone, Copy)]
pub struct Profile {
    /// The API root when the account sets no `base_url`; None: `base_url` is required.
    pub default_base_url: Option<&'static str>,
    /// The budgets the vendor has, with their documented sizes: `[("api", "200/1m")]`.
    pub budgets: &'static [(&'static str, &'static str)],
    /// How long a 429 without a usable hint pauses the account.
    pub penalty: Duration,
}

/// Problems with the parts of an account table every connector shares (`base_url`, `rate_limits`,
/// `timeout`), as (key, message); the connector checks its own keys.
pub fn check_account(account: &AccountConfig, profile: &Profile) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    match &account.base_url {
        Some(url) => match reqwest::Url::parse(url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => {}
            _ => problems.push((
                "base_url".into(),
                format!("expected an http(s) URL, found {url:?}"),
            )),
        },
        None if profile.default_base_url.is_none() => problems.push((
            "base_url".into(),
            format!("required for connector = \"{}\"", account.connector),
        )),
        None => {}
    }
    for (bucket, spec) in &account.rate_limits {
        if !profile.budgets.iter().any(|(b, _)| b == bucket) {
            let known: Vec<&str> = profile.budgets.iter().map(|(b, _)| *b).collect();
            problems.push((
                format!("rate_limits.{bucket}"),
                format!("unknown budget; expected one of {}", known.join(", ")),
            ));
        } else if let Err(e) = ratelimit::Quota::parse(spec) {
            problems.push((format!("rate_limits.{bucket}"), e));
        }
    }
    if account.timeout.is_zero() {
        problems.push(("timeout".into(), "must be greater than 0".into()));
    }
    problems
}

impl Account {
    /// Resolves an account table that `check_account` and its connector found no problem in.
    pub fn resolve(
        name: &str,
        c: &AccountConfig,
        connector: ConnectorKind,
        profile: &Profile,
        auth: Auth,
    ) -> Result<Self, String> {
        let base_url = c
            .base_url
            .as_deref()
            .or(profile.default_base_url)
            .unwrap_or_default()
            .trim_end_matches('/')
            .to_string();
        let mut limits = BTreeMap::new();
        for (bucket, default) in profile.budgets {
            let spec = c.rate_limits.get(*bucket).map_or(*default, String::as_str);
            let quota = ratelimit::Quota::parse(spec)
                .map_err(|e| format!("accounts.{name}.rate_limits.{bucket}: {e}"))?;
            limits.insert(bucket.to_string(), quota);
        }
        Ok(Self {
            name: name.to_string(),
            connector,
            base_url,
            auth,
            integrated_account_id: c.integrated_account_id.clone(),
            bot_staff_id: c.bot_staff_id,
            headers: c.headers.clone(),
            serves: c.serves.clone(),
            refresh: c.refresh.unwrap_or(DEFAULT_REFRESH),
            limits,
            penalty: profile.penalty,
            timeout: c.timeout,
            max_wait: c.max_wait,
        })
    }
}

impl Upstream {
    /// The client for `accounts` (resolved by their connectors).
    pub fn new(
        accounts: Vec<Account>,
        store: SharedStore,
        clock: SharedClock,
        metrics: SharedMetrics,
    ) -> Result<Self, String> {
        let accounts = accounts.into_iter().map(|a| (a.name.clone(), a)).collect();
        let http = reqwest::Client::builder()
            .user_agent(concat!("hookwise/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("building the upstream HTTP client: {e}"))?;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                accounts,
                store,
                clock,
                max_retries: 3,
                metrics,
            }),
        })
    }

    /// Every configured account, by name.
    pub fn accounts(&self) -> impl Iterator<Item = &Account> {
        self.inner.accounts.values()
    }

    /// The account called `name`.
    pub fn account(&self, name: &str) -> Option<&Account> {
        self.inner.accounts.get(name)
    }

    /// The HTTP client every upstream call shares (a connector whose protocol library makes the
    /// requests itself is given this one).
    pub fn http_client(&self) -> reqwest::Client {
        self.inner.http.clone()
    }

    /// Counts one call made outside `send` (the MCP connector's) in the upstream metrics.
    pub fn count_call(&self, account: &Account, method: &str, status: Option<u16>) {
        self.inner
            .metrics
            .upstream_call(&account.name, account.connector.as_str(), method, status);
    }

    /// The job's account, if it is one of `connector`'s: a HappyFox tool run for a Planhat
    /// account is refused here, whatever the model asked.
    pub fn account_for(
        &self,
        ctx: &CallContext,
        connector: ConnectorKind,
    ) -> Result<&Account, CallError> {
        let name = ctx.account.as_str();
        match self.inner.accounts.get(name) {
            Some(a) if a.connector == connector => Ok(a),
            Some(a) => Err(CallError::Permanent(format!(
                "account {name} is a {} account, not {}",
                a.connector.as_str(),
                connector.as_str()
            ))),
            None => Err(CallError::Permanent(format!(
                "account {name} is not configured: add [accounts.{name}] with connector = \"{}\"",
                connector.as_str()
            ))),
        }
    }

    /// Sends one call for the job's account and returns its 2xx answer. A 4xx answer is
    /// `Refused` (the model may correct itself), refused credentials are `Permanent`, a budget
    /// that stays exhausted past `max_wait` is `RateLimited`, and outages that outlast the
    /// retries are `Unavailable` (the job is retried later).
    ///
    /// A write goes through the journal first: under the call's idempotency key it is sent at
    /// most once, whatever crashes or retries happen around it.
    pub async fn send(
        &self,
        ctx: &CallContext,
        connector: ConnectorKind,
        request: Request,
    ) -> Result<Response, CallError> {
        let account = self.account_for(ctx, connector)?;
        let call = Call {
            bucket: request.bucket,
            write: request.write,
            what: format!("{} {}", request.method, request.path),
            described: describe(&request),
        };
        self.exchange(ctx, account, &call, || self.attempt(account, &request))
            .await
    }

    /// `send` for any transport: `attempt` makes the call once (again for each retry the
    /// governor decides on); the account's budget, its pauses, the retries by kind and, for a
    /// write, the journal are the same as for every HTTP call. `account` is the one whose
    /// budget the call spends; the caller chose it from the job's (`account_for`, or a route).
    pub async fn exchange<F, Fut>(
        &self,
        ctx: &CallContext,
        account: &Account,
        call: &Call,
        attempt: F,
    ) -> Result<Response, CallError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Answer, Broken>>,
    {
        if !call.write {
            return governor::exchange(self, account, call, attempt)
                .await
                .map_err(|f| f.error)
                .and_then(|(status, text)| classify(account, status, text));
        }
        let key = ctx.idempotency_key.as_str();
        let described = call.described.clone();
        let store = &self.inner.store;
        let begun = store
            .begin_action(key, ctx.job, &account.name, &described, self.now_ms())
            .await
            .map_err(|e| CallError::Unavailable(format!("the action journal: {e}")))?;
        match begun {
            ActionBegin::Fresh => {}
            ActionBegin::Done {
                status,
                response,
                request,
            } => {
                if request != described {
                    tracing::warn!(key, earlier = %request, now = %described,
                        "a re-run asked for a different write under a journaled key; the earlier one stands");
                }
                self.inner.metrics.journal("replayed");
                let mut answer = classify(account, status, response)?;
                answer.origin = Origin::Journaled;
                return Ok(answer);
            }
            ActionBegin::InDoubt { request } => {
                tracing::warn!(key, request = %request, "write in doubt: not sent again");
                self.inner.metrics.journal("in_doubt");
                return Err(CallError::Rejected(format!(
                    "not sent: an earlier attempt of this job already sent this write ({request}) and \
                     stopped before its answer was recorded, so it may have taken effect. It is never \
                     sent twice; read the current state to see whether it did."
                )));
            }
        }
        match governor::exchange(self, account, call, attempt).await {
            Ok((status, text)) => {
                self.inner.metrics.journal("sent");
                if (200..300).contains(&status) {
                    if let Err(e) = store.finish_action(key, status, &text, self.now_ms()).await {
                        // The write happened; only its record is missing, so it stays in doubt
                        // and is never repeated.
                        tracing::error!(key, error = %e, "recording a sent write's answer failed");
                    }
                } else {
                    // A definite refusal: nothing was applied, a later attempt may send it.
                    self.abandon(key).await;
                }
                classify(account, status, text)
            }
            Err(failure) => {
                if !failure.maybe_applied {
                    self.abandon(key).await;
                }
                Err(failure.error)
            }
        }
    }

    async fn abandon(&self, key: &str) {
        if let Err(e) = self.inner.store.abandon_action(key).await {
            tracing::warn!(key, error = %e, "could not clear an unsent write from the journal; it stays in doubt");
        }
    }

    fn now_ms(&self) -> i64 {
        self.inner.clock.now().timestamp_millis()
    }

    /// One HTTP exchange: status, headers and body text, or what broke it.
    async fn attempt(&self, account: &Account, request: &Request) -> Result<Answer, Broken> {
        self.http_attempt(account, request)
            .await
            .map(|(status, headers, text)| Answer {
                status,
                headers,
                text,
            })
            .map_err(|e| Broken {
                message: governor::transport_error(&e, account.timeout),
                // A refused connection never carried the request; anything later might have.
                unsent: e.is_connect() || e.is_builder(),
            })
    }

    async fn http_attempt(
        &self,
        account: &Account,
        request: &Request,
    ) -> Result<(u16, http::HeaderMap, String), reqwest::Error> {
        let url = format!("{}{}", account.base_url, request.path);
        let mut builder = self
            .inner
            .http
            .request(request.method.clone(), &url)
            .timeout(account.timeout)
            .header(reqwest::header::ACCEPT, "application/json");
        if !request.query.is_empty() {
            builder = builder.query(&request.query);
        }
        builder = match &account.auth {
            Auth::Basic { user, password } => {
                builder.basic_auth(user.expose(), Some(password.expose()))
            }
            Auth::Bearer(token) => builder.bearer_auth(token.expose()),
            Auth::None => builder,
        };
        if let Some(body) = &request.body {
            builder = builder.json(body);
        }
        let span = otel_span!(
            "upstream",
            otel.name = request.method.as_str(),
            otel.kind = "client",
            http.request.method = request.method.as_str(),
            url.full = %url,
            server.address = tracing::field::Empty,
            hookwise.account = %account.name,
            hookwise.connector = account.connector.as_str(),
            hookwise.write = request.write,
            http.response.status_code = tracing::field::Empty,
            error.type = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        );
        if !span.is_disabled()
            && let Some(host) = url
                .parse::<http::Uri>()
                .ok()
                .as_ref()
                .and_then(|u| u.host())
        {
            span.record("server.address", host);
        }
        let answer: Result<_, reqwest::Error> = async {
            let response = builder.send().await?;
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            Ok((status, headers, response.text().await?))
        }
        .instrument(span.clone())
        .await;
        let status = answer.as_ref().ok().map(|(status, _, _)| *status);
        match &answer {
            Ok((status, _, _)) => {
                span.record("http.response.status_code", i64::from(*status));
                if *status >= 400 {
                    span.record("error.type", status.to_string());
                    span.record("otel.status_code", "ERROR");
                }
            }
            Err(e) => {
                let kind = if e.is_timeout() {
                    "timeout"
                } else if e.is_connect() {
                    "connect"
                } else {
                    "transport"
                };
                span.record("error.type", kind);
                span.record("otel.status_code", "ERROR");
            }
        }
        self.inner.metrics.upstream_call(
            &account.name,
            account.connector.as_str(),
            request.method.as_str(),
            status,
        );
        answer
    }
}

/// A request as the journal records it: method, path, query and body.
fn describe(request: &Request) -> String {
    let mut text = format!("{} {}", request.method, request.path);
    for (i, (k, v)) in request.query.iter().enumerate() {
        text.push(if i == 0 { '?' } else { '&' });
        text.push_str(&format!("{k}={v}"));
    }
    if let Some(body) = &request.body {
        text.push(' ');
        text.push_str(&body.to_string());
    }
    text
}

/// The body as JSON when it is JSON, else as a string (`null` when empty).
pub fn tolerant_body(text: &str) -> Value {
    if text.trim().is_empty() {
        return Value::Null;
    }
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
}

/// Maps a final status to the tool's result.
fn classify(account: &Account, status: u16, text: String) -> Result<Response, CallError> {
    let body = tolerant_body(&text);
    let shown = excerpt(&text);
    let who = account.connector.as_str();
    match status {
        200..=299 => Ok(Response {
            status,
            body,
            origin: Origin::Sent,
        }),
        401 | 403 => Err(CallError::Permanent(format!(
            "{who} refused the credentials of account {} ({status}): {shown}",
            account.name
        ))),
        408 | 429 | 500..=599 => Err(CallError::Unavailable(format!(
            "{who} answered {status}: {shown}"
        ))),
        _ => Err(CallError::Refused {
            upstream: who,
            status,
            body: shown,
        }),
    }
}

/// At most 500 characters of an upstream body, for errors the model and the transcript see.
pub(crate) fn excerpt(text: &str) -> String {
    let text = text.trim();
    match text.char_indices().nth(500) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}
