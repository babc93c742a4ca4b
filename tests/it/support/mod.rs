//! Test support: `TestApp::spawn` runs the real service on a random loopback port with a fresh
//! SQLite file, and signs requests the way each configured sender would; `fake_llm` stands in for
//! the LLM providers.

#![allow(dead_code)] // each test module uses a different part

pub mod fake_happyfox;
pub mod fake_llm;
pub mod fake_planhat;
pub mod fake_truto;
pub mod fake_upstream;
pub mod gate;
pub mod inflight;
pub mod invariants;
pub mod process;
pub mod registry;
pub mod workload;

use hookwise::Server;
use hookwise::config::Config;
use hookwise::ingress::Source;
use hookwise::kernel::clock::{Clock, ManualClock, SharedClock, SystemClock};
use hookwise::scheduler::{JobRunner, RunContext, RunError};
use hookwise::store::SharedStore;
use reqwest::StatusCode;
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Secrets of the test configuration (Standard Webhooks vector A's secret among them).
pub const HAPPYFOX_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
pub const HAPPYFOX_OLD_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
pub const PLANHAT_TOKEN: &str = "planhat-test-token-0123456789";

pub fn test_config_text(db: &Path) -> String {
    test_config_text_with(db, &Path::new(db).with_file_name("handlers"), "")
}

/// The test configuration, with a handlers directory and extra TOML appended (e.g. `[scheduler]`).
pub fn test_config_text_with(db: &Path, handlers: &Path, extra: &str) -> String {
    config_text(&format!("sqlite://{}", db.display()), handlers, extra)
}

/// The test configuration on any store URL (PostgreSQL for the replica tests).
pub fn config_text(store: &str, handlers: &Path, extra: &str) -> String {
    format!(
        r#"
listen = "127.0.0.1:0"
store = "{store}"
handlers_dir = "{handlers}"
max_body_bytes = 65536

[sources.happyfox]
kind = "happyfox"
scheme = "standard-webhooks"
secrets = ["{HAPPYFOX_SECRET}", "{HAPPYFOX_OLD_SECRET}"]
account = "acme"

[sources.planhat]
kind = "planhat"
scheme = "header-token"
header = "X-Hookwise-Token"
secrets = ["{PLANHAT_TOKEN}"]
account = "northwind"

[sources.truto]
kind = "truto"
scheme = "truto"
secrets = ["6e17561c-a20c-44ce-b8b5-caff0bf786fe"]

[sources.billing]
kind = "generic"
scheme = "stripe"
secrets = ["whsec_test_billing"]
account = "acme-billing"
event_pointer = "/type"
subject_pointer = "/data/object/customer"
id_pointer = "/id"

[sources.gh]
kind = "generic"
scheme = "github"
secrets = ["It's a Secret to Everybody"]
account = "acme"
event = "push"
subject_pointer = "/repository"

[sources.multi]
kind = "generic"
scheme = "header-token"
secrets = ["multi-token"]
account_pointer = "/account"
subject_pointer = "/subject"
event = "work"

{extra}
"#,
        handlers = handlers.display(),
    )
}

pub struct TestApp {
    pub url: String,
    pub db_path: PathBuf,
    pub config_path: PathBuf,
    pub config: Config,
    pub client: reqwest::Client,
    pub store: SharedStore,
    /// Set when the test drives time; signatures are then made at the manual clock's time.
    pub clock: Option<ManualClock>,
    shutdown: CancellationToken,
    server: JoinHandle<anyhow::Result<()>>,
    // Last: the directory outlives the server that writes into it.
    pub dir: Arc<tempfile::TempDir>,
}

/// How to start a test server; `Options::default()` is the plain ingest setup.
#[derive(Default, Clone)]
pub struct Options {
    pub clock: Option<ManualClock>,
    pub runner: Option<Arc<dyn JobRunner>>,
    /// Handler files to write: (file name, TOML text).
    pub handlers: Vec<(String, String)>,
    /// Extra TOML appended to the config, e.g. `[scheduler]` or `[accounts.acme]` tables.
    pub extra_config: String,
    /// Top-level keys put before every table (e.g. `api_token = "..."`).
    pub top_config: String,
    /// Reuse this directory (and its SQLite file): a restart after a crash.
    pub dir: Option<Arc<tempfile::TempDir>>,
    /// Tools the agent may offer (with `[llm]` in `extra_config`).
    pub tools: Vec<Arc<dyn hookwise::tools::Tool>>,
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(Options::default()).await
    }

    pub async fn spawn_with(options: Options) -> TestApp {
        hookwise::init_tls();
        let dir = options
            .dir
            .clone()
            .unwrap_or_else(|| Arc::new(tempfile::tempdir().expect("temp dir")));
        let db_path = dir.path().join("hookwise.db");
        let handlers_dir = dir.path().join("handlers");
        std::fs::create_dir_all(&handlers_dir).unwrap();
        for (name, text) in &options.handlers {
            std::fs::write(handlers_dir.join(name), text).unwrap();
        }
        let config_path = dir.path().join("hookwise.toml");
        std::fs::write(
            &config_path,
            format!(
                "{}\n{}",
                options.top_config,
                test_config_text_with(&db_path, &handlers_dir, &options.extra_config)
            ),
        )
        .unwrap();
        let config =
            Config::load_with(Some(&config_path), &|_| None).expect("test config is valid");

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let clock: SharedClock = match &options.clock {
            Some(c) => Arc::new(c.clone()),
            None => Arc::new(SystemClock),
        };
        let mut server = Server::prepare_with_clock(config.clone(), clock)
            .await
            .expect("server prepares");
        if let Some(runner) = options.runner.clone() {
            server = server.with_runner(runner);
        }
        if !options.tools.is_empty() {
            let mut registry = hookwise::tools::ToolRegistry::new();
            for tool in &options.tools {
                registry.register(tool.clone()).unwrap();
            }
            server = server.with_tools(registry);
        }
        let store = server.store();
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(server.run(listener, shutdown.clone()));
        TestApp {
            url,
            db_path,
            config_path,
            config,
            client: reqwest::Client::new(),
            store,
            clock: options.clock,
            shutdown,
            server,
            dir,
        }
    }

    /// Unix seconds as the server sees them.
    pub fn now(&self) -> i64 {
        match &self.clock {
            Some(c) => c.now().timestamp(),
            None => chrono::Utc::now().timestamp(),
        }
    }

    /// Stops the server the way SIGTERM does and waits for it.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.server.await.unwrap().unwrap();
    }

    pub fn source(&self, name: &str) -> Source {
        hookwise::app::build_sources(&self.config)
            .unwrap()
            .remove(name)
            .expect("a configured source")
    }

    /// Headers (and query) the configured sender of `source` would attach to `body` now.
    pub fn signed_request(
        &self,
        source: &str,
        body: &[u8],
        msg_id: &str,
    ) -> reqwest::RequestBuilder {
        let signed = self.source(source).verifier.sign(body, msg_id, self.now());
        let mut request = self
            .client
            .post(format!("{}/webhooks/{source}", self.url))
            .header("content-type", "application/json")
            .body(body.to_vec());
        for (name, value) in signed.headers {
            request = request.header(name, value);
        }
        if let Some(q) = signed.query {
            request = request.query(&[q]);
        }
        request
    }

    pub async fn send(&self, source: &str, body: &[u8], msg_id: &str) -> (StatusCode, Value) {
        let response = self
            .signed_request(source, body, msg_id)
            .send()
            .await
            .unwrap();
        read(response).await
    }

    /// A fresh connection to the SQLite file: what is there is what a crash would leave.
    pub async fn count_events(&self) -> i64 {
        self.fresh_connection()
            .query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))
            .unwrap()
    }

    /// A new connection to the SQLite file: what it sees is what a crash would leave.
    pub fn fresh_connection(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(&self.db_path).unwrap()
    }
}

pub async fn read(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let is_problem = response.headers().get("content-type").is_some_and(|v| {
        v.to_str()
            .unwrap_or_default()
            .starts_with("application/problem+json")
    });
    let text = response.text().await.unwrap();
    let mut body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    if is_problem {
        body["_problem"] = Value::Bool(true);
    }
    (status, body)
}

/// A HappyFox ticket body, distinct per `n`.
pub fn ticket(n: u64) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "id": n,
        "subject": format!("Ticket {n}"),
        "last_modified": "2026-03-02 14:05:12",
        "messages_count": 1,
        "updates": []
    }))
    .unwrap()
}

pub fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// Waits (bounded) until `check` holds; panics naming `what` otherwise. Polls, never guesses a
/// duration that is "enough".
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A handler file for tests.
pub fn handler_toml(
    name: &str,
    on: &str,
    debounce: Option<(&str, &str)>,
    extra: &str,
) -> (String, String) {
    let debounce = debounce
        .map(|(period, max_wait)| {
            format!("[debounce]\nperiod = \"{period}\"\nmax_wait = \"{max_wait}\"\n")
        })
        .unwrap_or_default();
    (
        format!("{name}.toml"),
        format!(
            "name = \"{name}\"\non = [\"{on}\"]\n{extra}\n{debounce}\n[agent]\nprompt = \"test\"\ndeadline = \"30s\"\n"
        ),
    )
}

/// What one run saw and when it happened.
#[derive(Debug, Clone)]
pub struct RunRecord {
    pub job: i64,
    pub handler: String,
    pub account: String,
    pub subject: String,
    pub attempt: u32,
    pub event_ids: Vec<String>,
    pub latest_payload: String,
    pub started: Instant,
    pub ended: Instant,
}

/// How the recording runner behaves.
#[derive(Debug, Clone)]
pub enum Behaviour {
    Succeed {
        work: Duration,
    },
    Fail(String),
    /// Never returns: a run in progress when the process dies.
    Block,
}

/// A `JobRunner` that records every run and the per-account concurrency it observed.
pub struct RecordingRunner {
    pub behaviour: Mutex<Behaviour>,
    pub runs: Mutex<Vec<RunRecord>>,
    pub started: Mutex<Vec<i64>>,
    in_flight: Mutex<HashMap<String, u32>>,
    /// The most runs of one account ever in flight at once (must stay 1).
    pub max_per_account: Mutex<u32>,
    /// The most runs in flight at once overall.
    pub max_overall: Mutex<u32>,
}

impl RecordingRunner {
    pub fn new(behaviour: Behaviour) -> Arc<Self> {
        Arc::new(Self {
            behaviour: Mutex::new(behaviour),
            runs: Mutex::new(Vec::new()),
            started: Mutex::new(Vec::new()),
            in_flight: Mutex::new(HashMap::new()),
            max_per_account: Mutex::new(0),
            max_overall: Mutex::new(0),
        })
    }

    pub fn runs(&self) -> Vec<RunRecord> {
        self.runs.lock().unwrap().clone()
    }

    pub fn set(&self, behaviour: Behaviour) {
        *self.behaviour.lock().unwrap() = behaviour;
    }
}

#[async_trait::async_trait]
impl JobRunner for RecordingRunner {
    async fn run(&self, ctx: RunContext<'_>) -> Result<(), RunError> {
        let started = Instant::now();
        self.started.lock().unwrap().push(ctx.job.id.0);
        {
            let mut in_flight = self.in_flight.lock().unwrap();
            let n = in_flight.entry(ctx.job.account.clone()).or_default();
            *n += 1;
            let mut max = self.max_per_account.lock().unwrap();
            *max = (*max).max(*n);
            let total: u32 = in_flight.values().sum();
            let mut overall = self.max_overall.lock().unwrap();
            *overall = (*overall).max(total);
        }
        let behaviour = self.behaviour.lock().unwrap().clone();
        let result = match behaviour {
            Behaviour::Succeed { work } => {
                tokio::time::sleep(work).await;
                Ok(())
            }
            Behaviour::Fail(e) => Err(RunError::Retryable(e)),
            Behaviour::Block => std::future::pending().await,
        };
        *self
            .in_flight
            .lock()
            .unwrap()
            .get_mut(&ctx.job.account)
            .unwrap() -= 1;
        self.runs.lock().unwrap().push(RunRecord {
            job: ctx.job.id.0,
            handler: ctx.job.handler.clone(),
            account: ctx.job.account.clone(),
            subject: ctx.job.subject.clone(),
            attempt: ctx.job.attempts,
            event_ids: ctx.events.iter().map(|e| e.event_id.to_string()).collect(),
            latest_payload: ctx
                .events
                .last()
                .map(|e| e.payload.clone())
                .unwrap_or_default(),
            started,
            ended: Instant::now(),
        });
        result
    }
}
