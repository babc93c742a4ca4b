//! Layered configuration: built-in defaults, then the TOML file, then `HOOKWISE_*` variables.
//!
//! Every problem is reported with the file and the dotted key it concerns, so `hookwise check` and
//! start-up failures tell the user exactly what to fix.

pub mod budgets;
mod env;
pub mod http;
mod listen;
pub mod llm;
pub mod retention;
mod strict;

use crate::kernel::{ConfigError, ConfigErrors, Secret};
pub use budgets::BudgetsConfig;
pub use http::HttpConfig;
pub use listen::Listen;
pub use retention::RetentionConfig;
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The file `serve` and the other commands read when `--config` is not given, if it exists.
pub const DEFAULT_CONFIG_FILE: &str = "hookwise.toml";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address the HTTP server binds: `HOST:PORT`, HOST an IP address or a name.
    pub listen: Listen,
    /// `sqlite://path` (embedded default) or `postgres://...` (several replicas; `?schema=NAME`
    /// keeps the tables in that schema).
    pub store: String,
    /// Directory of handler files.
    pub handlers_dir: PathBuf,
    /// Largest webhook body accepted; larger ones get 413 before any work is done.
    pub max_body_bytes: usize,
    /// When set, `/api/` requests need `Authorization: Bearer <api_token>`.
    #[serde(deserialize_with = "optional_secret")]
    pub api_token: Option<Secret>,
    /// Webhook endpoints by name: `POST /webhooks/{name}`.
    pub sources: BTreeMap<String, SourceConfig>,
    /// Upstream instances by account name (the `account` of events).
    pub accounts: BTreeMap<String, AccountConfig>,
    /// On SIGTERM/SIGINT, how long `/readyz` answers 503 while every request is still served,
    /// before the process stops accepting: the time a load balancer needs to notice and send
    /// elsewhere. A second signal ends it early.
    #[serde(deserialize_with = "duration")]
    pub drain_delay: std::time::Duration,
    /// Timeouts and the connection cap of the HTTP server.
    pub http: HttpConfig,
    /// How jobs are claimed, retried and shut down.
    pub scheduler: SchedulerConfig,
    /// The LLM provider that runs handlers; without it jobs wait as `pending`.
    pub llm: Option<llm::LlmConfig>,
    /// What hookwise tells its operators: `/metrics`.
    pub telemetry: TelemetryConfig,
    /// How log lines are written to stderr: `text` for people, `json` (one object per line, with
    /// the fields of the spans around it: account, handler, job, source) for log pipelines.
    pub log_format: LogFormat,
    /// How long events, jobs and runs are kept, and how often the pruner runs.
    pub retention: RetentionConfig,
    /// Tokens and cost the agent may spend per UTC day, per account and per handler.
    pub budgets: BudgetsConfig,
    /// Where this configuration came from; None for built-in defaults.
    #[serde(skip)]
    pub file: Option<PathBuf>,
    /// The keys a `HOOKWISE_*` variable set, with the variable: a problem with such a key is
    /// the variable's, not the file's.
    #[serde(skip)]
    pub from_env: BTreeMap<&'static str, &'static str>,
}

/// Whether a command needs the secrets `${VAR}` references stand for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Secrets {
    /// `serve`, `check` and every command that verifies or sends: an unset variable is an error.
    Required,
    /// Commands that only read or prune the store: an unset variable (other than in `store`)
    /// becomes "", a value they never use.
    Unused,
}

/// What loading found: the configuration as far as it reads (every key in error left at its
/// default, a table missing a required key left out) and every problem, each once.
pub struct Loaded {
    /// None when nothing could be read: the file is missing or not TOML.
    pub config: Option<Config>,
    pub problems: Vec<ConfigError>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: Listen {
                host: "127.0.0.1".into(),
                port: 8080,
            },
            store: "sqlite://hookwise.db".into(),
            handlers_dir: PathBuf::from("handlers"),
            max_body_bytes: 1024 * 1024,
            api_token: None,
            sources: BTreeMap::new(),
            accounts: BTreeMap::new(),
            drain_delay: std::time::Duration::from_secs(5),
            http: HttpConfig::default(),
            scheduler: SchedulerConfig::default(),
            llm: None,
            telemetry: TelemetryConfig::default(),
            log_format: LogFormat::Text,
            retention: RetentionConfig::default(),
            budgets: BudgetsConfig::default(),
            file: None,
            from_env: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SchemeName {
    StandardWebhooks,
    Github,
    Stripe,
    Truto,
    Hmac,
    HeaderToken,
    UrlToken,
}

impl SchemeName {
    pub fn as_str(self) -> &'static str {
        match self {
            SchemeName::StandardWebhooks => "standard-webhooks",
            SchemeName::Github => "github",
            SchemeName::Stripe => "stripe",
            SchemeName::Truto => "truto",
            SchemeName::Hmac => "hmac",
            SchemeName::HeaderToken => "header-token",
            SchemeName::UrlToken => "url-token",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlgorithmName {
    Sha256,
    Sha1,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EncodingName {
    Hex,
    Base64,
}

/// One `[accounts.NAME]` table: one upstream instance, its credentials and its rate budget.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountConfig {
    /// Which upstream this account is: `happyfox`, `planhat`, `truto` or `mcp` (a connector registered
    /// in `crate::connectors`; checked when the configuration is assembled).
    pub connector: String,
    /// The HappyFox staff id hookwise writes as. Events whose latest update was made by this
    /// staff member are hookwise's own echo: stored, marked ignored, never routed.
    pub bot_staff_id: Option<u64>,
    /// The API root every tool path is appended to: `https://NAME.happyfox.com/api/1.1/json`,
    /// `https://api.planhat.com`, `https://api.truto.one`. Planhat and Truto default to those.
    pub base_url: Option<String>,
    /// HappyFox: the API key (Basic auth user); Truto: the API token (Bearer).
    #[serde(default, deserialize_with = "optional_secret")]
    pub api_key: Option<Secret>,
    /// HappyFox: the auth code (Basic auth password).
    #[serde(default, deserialize_with = "optional_secret")]
    pub auth_code: Option<Secret>,
    /// Planhat: the API token (Bearer).
    #[serde(default, deserialize_with = "optional_secret")]
    pub token: Option<Secret>,
    /// Truto: the integrated account whose tools this account offers.
    pub integrated_account_id: Option<String>,
    /// MCP: headers sent with every request to the server, usually its credentials:
    /// `{ Authorization = "Bearer ${PLANHAT_TOKEN}" }`.
    #[serde(default, deserialize_with = "secret_map")]
    pub headers: BTreeMap<String, Secret>,
    /// MCP: the accounts whose jobs may use this server's tools, besides the account itself
    /// (`serves = ["planhat"]` offers a Planhat MCP server's tools to the Planhat account's jobs).
    #[serde(default)]
    pub serves: Vec<String>,
    /// MCP: how often the server's tool list is read again (default 5m).
    #[serde(default, deserialize_with = "optional_duration")]
    pub refresh: Option<std::time::Duration>,
    /// Calls allowed per window, per budget: `{ get = "500/1m", post = "300/1m" }` for HappyFox,
    /// `{ api = "200/1m" }` for Planhat and Truto. Unset budgets keep the connector's default.
    #[serde(default)]
    pub rate_limits: BTreeMap<String, String>,
    /// Per upstream request, connecting included.
    #[serde(default = "default_upstream_timeout", deserialize_with = "duration")]
    pub timeout: std::time::Duration,
    /// How long one call may wait for the account's budget (pacing, or a pause after a 429)
    /// before its job is put back until the pause ends instead.
    #[serde(default = "default_max_wait", deserialize_with = "duration")]
    pub max_wait: std::time::Duration,
}

fn default_max_wait() -> std::time::Duration {
    std::time::Duration::from_secs(60)
}

fn default_upstream_timeout() -> std::time::Duration {
    std::time::Duration::from_secs(30)
}

fn optional_secret<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Secret>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.map(Secret::new))
}

fn secret_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, Secret>, D::Error> {
    let map = BTreeMap::<String, String>::deserialize(d)?;
    Ok(map.into_iter().map(|(k, v)| (k, Secret::new(v))).collect())
}

fn optional_duration<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<std::time::Duration>, D::Error> {
    duration(d).map(Some)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

impl LogFormat {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "text" => Some(Self::Text),
            "json" => Some(Self::Json),
            _ => None,
        }
    }
}

/// `[telemetry]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// `/metrics` answers without `api_token` (a scraper on a private network). Off by default:
    /// with an `api_token` set, a scrape sends `Authorization: Bearer <api_token>`.
    pub metrics_public: bool,
    /// Where to send traces over OTLP/HTTP (protobuf), e.g. `http://127.0.0.1:4318`; the path
    /// `/v1/traces` is added to a URL without one. Unset: no exporter, no spans recorded.
    pub otlp_endpoint: Option<String>,
    /// Put message content on spans: prompts, the model's answers, tool arguments and results.
    /// Off by default: traces then carry names, ids, timings and token counts only.
    pub trace_content: bool,
}

/// `[scheduler]`: defaults suit one replica with a handful of accounts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchedulerConfig {
    /// Jobs running at once in this process (one per account at most, always).
    pub workers: usize,
    /// How long a claimed job is ours without a heartbeat; a crashed replica's jobs are
    /// claimed again once it expires.
    #[serde(deserialize_with = "duration")]
    pub lease: std::time::Duration,
    /// Attempts before a job is dead, for handlers that do not set `max_attempts`.
    pub max_attempts: u32,
    /// First retry delay; doubles per attempt, with jitter, up to `retry_max`.
    #[serde(deserialize_with = "duration")]
    pub retry_base: std::time::Duration,
    #[serde(deserialize_with = "duration")]
    pub retry_max: std::time::Duration,
    /// Longest the scheduler sleeps without looking for due jobs (other replicas' jobs, expired
    /// leases); new local jobs wake it at once.
    #[serde(deserialize_with = "duration")]
    pub poll_interval: std::time::Duration,
    /// On shutdown, how long running jobs may take to finish before they are released.
    #[serde(deserialize_with = "duration")]
    pub shutdown_grace: std::time::Duration,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        use std::time::Duration;
        Self {
            workers: 8,
            lease: Duration::from_secs(60),
            max_attempts: 5,
            retry_base: Duration::from_secs(10),
            retry_max: Duration::from_secs(600),
            poll_interval: Duration::from_secs(1),
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<std::time::Duration, D::Error> {
    let text = String::deserialize(d)?;
    crate::kernel::parse_duration(&text).map_err(serde::de::Error::custom)
}

/// One `[sources.NAME]` table, as written by the user.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// Which adapter reads the payloads: `generic`, or a connector that sends webhooks
    /// (`happyfox`, `planhat`, `truto`); checked when the configuration is assembled.
    pub kind: String,
    pub scheme: SchemeName,
    #[serde(deserialize_with = "secrets")]
    pub secrets: Vec<Secret>,
    /// How far a signed timestamp may be from now, both ways.
    #[serde(default = "default_tolerance")]
    pub tolerance_secs: u64,
    /// hmac: the signature header; header-token: the token header (default `x-hookwise-token`).
    pub header: Option<String>,
    /// hmac only: `sha256` (default) or `sha1`.
    pub algorithm: Option<AlgorithmName>,
    /// hmac only: `hex` (default) or `base64`.
    pub encoding: Option<EncodingName>,
    /// hmac only: literal text before the signature, e.g. `sha1=`.
    pub prefix: Option<String>,
    /// url-token only: the query parameter (default `token`).
    pub param: Option<String>,
    /// Every event of this source belongs to this account...
    pub account: Option<String>,
    /// ...or the account is read from the payload at this JSON pointer.
    pub account_pointer: Option<String>,
    /// Overrides where the subject (ticket id, company id) is read from.
    pub subject_pointer: Option<String>,
    /// Overrides where the sender's event id is read from in the payload.
    pub id_pointer: Option<String>,
    /// Reads the sender's event id from this header (e.g. `X-Shopify-Event-Id`).
    pub id_header: Option<String>,
    /// generic only: a fixed event name, or...
    pub event: Option<String>,
    /// generic (and overrides for others): where the event name is read from.
    pub event_pointer: Option<String>,
}

fn default_tolerance() -> u64 {
    300
}

fn secrets<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Secret>, D::Error> {
    Ok(Vec::<String>::deserialize(d)?
        .into_iter()
        .map(Secret::new)
        .collect())
}

impl Config {
    /// Loads `path`, or `hookwise.toml` when it exists, or the defaults; then applies the
    /// environment. Checking what it says is `crate::app::Plan::check`'s part.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigErrors> {
        Self::load_with(path, &|name| std::env::var(name).ok())
    }

    /// As `load`, for a command that never uses the secrets `${VAR}` references stand for (it
    /// reads or prunes the store): their variables need not be set.
    pub fn load_for_reading(path: Option<&Path>) -> Result<Self, ConfigErrors> {
        Self::load_all(path, &|name| std::env::var(name).ok(), Secrets::Unused).into_result()
    }

    /// As `load`, with the environment given: tests use this instead of mutating the process env.
    pub fn load_with(
        path: Option<&Path>,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigErrors> {
        Self::load_all(path, lookup, Secrets::Required).into_result()
    }

    /// Loads as far as the file reads, collecting every problem instead of stopping at the
    /// first: `hookwise check` goes on to check the rest with what it gets.
    pub fn load_all(
        path: Option<&Path>,
        lookup: &dyn Fn(&str) -> Option<String>,
        secrets: Secrets,
    ) -> Loaded {
        let path = match path {
            Some(p) => Some(p.to_path_buf()),
            None => {
                let default = PathBuf::from(DEFAULT_CONFIG_FILE);
                default.exists().then_some(default)
            }
        };
        let mut loaded = match &path {
            Some(p) => match std::fs::read_to_string(p) {
                Ok(text) => Self::parse_all(p, &text, lookup, secrets),
                Err(e) => Loaded {
                    config: None,
                    problems: vec![ConfigError::new(p, "", format!("cannot read: {e}"))],
                },
            },
            None => Loaded {
                config: Some(Config::default()),
                problems: Vec::new(),
            },
        };
        if let Some(config) = &mut loaded.config {
            config.apply_env(lookup, &mut loaded.problems);
        }
        loaded
    }

    /// Parses TOML text as if read from `file`.
    pub fn parse(
        file: &Path,
        text: &str,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigErrors> {
        Self::parse_all(file, text, lookup, Secrets::Required).into_result()
    }

    fn parse_all(
        file: &Path,
        text: &str,
        lookup: &dyn Fn(&str) -> Option<String>,
        secrets: Secrets,
    ) -> Loaded {
        let mut value: toml::Value = match toml::from_str(text) {
            Ok(value) => value,
            Err(e) => {
                let at = e
                    .span()
                    .map(|s| {
                        let line = text[..s.start].matches('\n').count() + 1;
                        format!(" (line {line})")
                    })
                    .unwrap_or_default();
                let message = format!("not valid TOML{at}: {}", e.message().trim_end());
                return Loaded {
                    config: None,
                    problems: vec![ConfigError::new(file, "", message)],
                };
            }
        };
        let mut problems = Vec::new();
        env::substitute(file, &mut value, lookup, secrets, &mut problems);
        let (mut config, mut more) = strict::deserialize_all::<Config>(file, value);
        problems.append(&mut more);
        if let Some(config) = &mut config {
            config.file = Some(file.to_path_buf());
        }
        Loaded { config, problems }
    }

    fn apply_env(
        &mut self,
        lookup: &dyn Fn(&str) -> Option<String>,
        errors: &mut Vec<ConfigError>,
    ) {
        if let Some(v) = lookup("HOOKWISE_LISTEN") {
            match Listen::parse(&v) {
                Ok(addr) => self.listen = addr,
                Err(e) => errors.push(ConfigError::env("HOOKWISE_LISTEN", e)),
            }
            self.from_env.insert("listen", "HOOKWISE_LISTEN");
        }
        if let Some(v) = lookup("HOOKWISE_STORE") {
            self.store = v;
            self.from_env.insert("store", "HOOKWISE_STORE");
        }
        if let Some(v) = lookup("HOOKWISE_HANDLERS_DIR") {
            self.handlers_dir = PathBuf::from(v);
            self.from_env
                .insert("handlers_dir", "HOOKWISE_HANDLERS_DIR");
        }
        if let Some(v) = lookup("HOOKWISE_API_TOKEN") {
            self.api_token = Some(Secret::new(v));
            self.from_env.insert("api_token", "HOOKWISE_API_TOKEN");
        }
        if let Some(v) = lookup("HOOKWISE_MAX_BODY_BYTES") {
            match v.parse() {
                Ok(n) => self.max_body_bytes = n,
                Err(_) => errors.push(ConfigError::env(
                    "HOOKWISE_MAX_BODY_BYTES",
                    format!("expected a number of bytes, found {v:?}"),
                )),
            }
            self.from_env
                .insert("max_body_bytes", "HOOKWISE_MAX_BODY_BYTES");
        }
        if let Some(v) = lookup("HOOKWISE_LOG_FORMAT") {
            match LogFormat::parse(&v) {
                Some(format) => self.log_format = format,
                None => errors.push(ConfigError::env(
                    "HOOKWISE_LOG_FORMAT",
                    format!("expected text or json, found {v:?}"),
                )),
            }
            self.from_env.insert("log_format", "HOOKWISE_LOG_FORMAT");
        }
        if let Some(v) = lookup("HOOKWISE_OTLP_ENDPOINT") {
            self.telemetry.otlp_endpoint = Some(v).filter(|v| !v.is_empty());
            self.from_env
                .insert("telemetry.otlp_endpoint", "HOOKWISE_OTLP_ENDPOINT");
        }
        if let Some(v) = lookup("HOOKWISE_DRAIN_DELAY") {
            match crate::kernel::parse_duration(&v) {
                Ok(d) => self.drain_delay = d,
                Err(e) => errors.push(ConfigError::env("HOOKWISE_DRAIN_DELAY", e)),
            }
            self.from_env.insert("drain_delay", "HOOKWISE_DRAIN_DELAY");
        }
    }

    /// A problem with `key`, blamed on the `HOOKWISE_*` variable that set it, else the file.
    pub fn problem(&self, key: &str, message: impl Into<String>) -> ConfigError {
        match self.from_env.get(key) {
            Some(var) => ConfigError::env(*var, message),
            None => ConfigError::new(self.file_label(), key, message),
        }
    }

    /// Where `key`'s value came from, for messages outside the checks: "hookwise.toml: key
    /// `listen`", "environment variable HOOKWISE_LISTEN" or "defaults: key `listen`".
    pub fn origin(&self, key: &str) -> String {
        match self.from_env.get(key) {
            Some(var) => format!("environment variable {var}"),
            None => format!("{}: key `{key}`", self.file_label().display()),
        }
    }

    /// Checks what serde cannot, as far as plain data goes: combinations of keys and ranges.
    /// Whether sources, accounts and `[llm]` can become components is for the composition root
    /// (`crate::app`), which reports those problems the same way.
    pub fn validate(&self) -> Result<(), ConfigErrors> {
        let file = self.file_label();
        let mut errors = Vec::new();
        if !(self.store.starts_with("sqlite:")
            || self.store.starts_with("postgres://")
            || self.store.starts_with("postgresql://"))
        {
            errors.push(self.problem(
                "store",
                format!(
                    "expected sqlite://PATH or postgres://..., found {:?}",
                    self.store
                ),
            ));
        }
        if self
            .api_token
            .as_ref()
            .is_some_and(|t| t.expose().len() < 16)
        {
            errors.push(self.problem(
                "api_token",
                "too short: use at least 16 characters (e.g. openssl rand -hex 32)",
            ));
        }
        if self.max_body_bytes == 0 {
            errors.push(self.problem("max_body_bytes", "must be greater than 0"));
        }
        if let Some(endpoint) = &self.telemetry.otlp_endpoint {
            let valid = endpoint.parse::<::http::Uri>().is_ok_and(|u| {
                matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some()
            });
            if !valid {
                errors.push(self.problem(
                    "telemetry.otlp_endpoint",
                    format!(
                        "expected an http:// or https:// URL such as http://127.0.0.1:4318, found {endpoint:?}"
                    ),
                ));
            }
        }
        self.validate_scheduler(&file, &mut errors);
        self.retention.validate(&file, &mut errors);
        self.http.validate(&file, &mut errors);
        self.budgets.validate(&file, &mut errors);
        for (key, message) in self.llm.iter().flat_map(|llm| llm.price_problems()) {
            errors.push(self.problem(&format!("llm.{key}"), message));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(errors))
        }
    }

    fn validate_scheduler(&self, file: &Path, errors: &mut Vec<ConfigError>) {
        let s = &self.scheduler;
        if s.workers == 0 {
            errors.push(ConfigError::new(
                file,
                "scheduler.workers",
                "must be at least 1",
            ));
        }
        if s.max_attempts == 0 {
            errors.push(ConfigError::new(
                file,
                "scheduler.max_attempts",
                "must be at least 1",
            ));
        }
        for (key, d) in [
            ("scheduler.lease", s.lease),
            ("scheduler.retry_base", s.retry_base),
            ("scheduler.poll_interval", s.poll_interval),
        ] {
            if d.is_zero() {
                errors.push(ConfigError::new(file, key, "must be greater than 0"));
            }
        }
        if s.retry_max < s.retry_base {
            errors.push(ConfigError::new(
                file,
                "scheduler.retry_max",
                "must not be shorter than retry_base",
            ));
        }
    }

    /// Settings that are valid but probably a mistake, each naming its file and key: `serve`
    /// logs them at start-up and `check` prints them, neither refuses to go on.
    pub fn warnings(&self) -> Vec<ConfigError> {
        self.retention.warnings(&self.file_label())
    }

    /// The name used in error messages: the file, or `defaults` when there is none.
    pub fn file_label(&self) -> PathBuf {
        self.file
            .clone()
            .unwrap_or_else(|| PathBuf::from("defaults"))
    }
}

impl Loaded {
    /// The configuration, if it loaded without a problem; else every problem.
    pub fn into_result(self) -> Result<Config, ConfigErrors> {
        match self.config {
            Some(config) if self.problems.is_empty() => Ok(config),
            _ => Err(ConfigErrors(self.problems)),
        }
    }
}
