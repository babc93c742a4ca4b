//! Test support: `TestApp::spawn` runs the real service on a random loopback port with a fresh
//! SQLite file, and signs requests the way each configured sender would.

#![allow(dead_code)] // each test module uses a different part

use hookwise::config::Config;
use hookwise::ingress::Source;
use hookwise::{Server, clock::SystemClock};
use reqwest::StatusCode;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Secrets of the test configuration (Standard Webhooks vector A's secret among them).
pub const HAPPYFOX_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
pub const HAPPYFOX_OLD_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
pub const PLANHAT_TOKEN: &str = "planhat-test-token-0123456789";

pub fn test_config_text(db: &Path) -> String {
    format!(
        r#"
listen = "127.0.0.1:0"
store = "sqlite://{db}"
handlers_dir = "handlers"
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
"#,
        db = db.display()
    )
}

pub struct TestApp {
    pub url: String,
    pub db_path: PathBuf,
    pub config_path: PathBuf,
    pub config: Config,
    pub client: reqwest::Client,
    shutdown: CancellationToken,
    server: JoinHandle<anyhow::Result<()>>,
    // Last: the directory outlives the server that writes into it.
    pub dir: tempfile::TempDir,
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        hookwise::init_tls();
        let dir = tempfile::tempdir().expect("temp dir");
        let db_path = dir.path().join("hookwise.db");
        let config_path = dir.path().join("hookwise.toml");
        std::fs::write(&config_path, test_config_text(&db_path)).unwrap();
        let config =
            Config::load_with(Some(&config_path), &|_| None).expect("test config is valid");

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = Server::prepare_with_clock(config.clone(), Arc::new(SystemClock))
            .await
            .expect("server prepares");
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(server.run(listener, shutdown.clone()));
        TestApp {
            url,
            db_path,
            config_path,
            config,
            client: reqwest::Client::new(),
            shutdown,
            server,
            dir,
        }
    }

    /// Stops the server the way SIGTERM does and waits for it.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.server.await.unwrap().unwrap();
    }

    pub fn source(&self, name: &str) -> Source {
        Source::build(Path::new("test"), name, &self.config.sources[name]).unwrap()
    }

    /// Headers (and query) the configured sender of `source` would attach to `body` now.
    pub fn signed_request(
        &self,
        source: &str,
        body: &[u8],
        msg_id: &str,
    ) -> reqwest::RequestBuilder {
        let signed =
            self.source(source)
                .verifier
                .sign(body, msg_id, chrono::Utc::now().timestamp());
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
