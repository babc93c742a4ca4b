//! MCP servers as tool sources, against a real MCP server: `support/mcp_server.py`, a small CRM
//! built on the official Python SDK (PyPI `mcp`) serving streamable HTTP on loopback. Needs
//! `HOOKWISE_TEST_MCP_PYTHON`, a python with that package (`.ci/mcp-server.sh` installs one and
//! prints the variable); without it these tests say loudly that they checked nothing.
//!
//! Covered: the tool list read at start-up (names, read vs write from `readOnlyHint`, schemas),
//! a read, a write in live mode (sent once, journaled), in dry-run mode (never sent) and in
//! approve mode (held, sent once when approved), a 429 pausing the account, the
//! handler's allow-list and argument scope, a tool that fails on the server, refused
//! credentials, a server down at start-up (hookwise starts, runs say why the tools are missing)
//! and coming up later (the next listing offers them).

use crate::support::fake_llm::{FakeLlm, llm_table, openai_calls, openai_text};
use crate::support::gate;
use crate::support::process::{Proc, free_port};
use crate::support::registry::Tools;
use crate::support::*;
use hookwise::store::{ApprovalState, JobFilter, JobState, RunFilter, StoredRun};
use hookwise::tools::ToolError;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PYTHON_VAR: &str = "HOOKWISE_TEST_MCP_PYTHON";
const HOW: &str = "run `bash .ci/mcp-server.sh` and export the variable it prints (a python \
                   with the `mcp` package from PyPI)";
const TOKEN: &str = "mcp-test-token-5f1c";

/// The Python CRM server on a loopback port, killed when dropped.
struct CrmServer {
    url: String,
    calls_file: PathBuf,
    _proc: Proc,
    _dir: tempfile::TempDir,
}

impl CrmServer {
    /// Starts it on a free port, or on `port`; None (after a loud skip) without the python.
    async fn start(test: &str) -> Option<CrmServer> {
        Self::start_on(test, free_port()).await
    }

    async fn start_on(test: &str, port: u16) -> Option<CrmServer> {
        let python = gate::var(PYTHON_VAR, test, HOW)?;
        let dir = tempfile::tempdir().unwrap();
        let calls_file = dir.path().join("calls.jsonl");
        let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
        let child = Command::new(python)
            .arg(repo_path("tests/it/support/mcp_server.py"))
            .arg(port.to_string())
            .arg(&calls_file)
            .arg(TOKEN)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("the MCP test server starts");
        let server = CrmServer {
            url: format!("http://127.0.0.1:{port}/mcp"),
            calls_file,
            _proc: Proc(child),
            _dir: dir,
        };
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "the MCP test server did not listen within 30 s: {}",
                std::fs::read_to_string(server._dir.path().join("server.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Some(server)
    }

    /// Every tool call that reached the server's tools, in order: (tool, arguments).
    fn calls(&self) -> Vec<(String, Value)> {
        std::fs::read_to_string(&self.calls_file)
            .unwrap_or_default()
            .lines()
            .map(|line| {
                let v: Value = serde_json::from_str(line).unwrap();
                (
                    v["tool"].as_str().unwrap().to_string(),
                    v["arguments"].clone(),
                )
            })
            .collect()
    }
}

/// `[accounts.crm]` for the server at `url`, serving the jobs of account `northwind` too.
fn account(url: &str, token: &str, extra: &str) -> String {
    format!(
        "[accounts.crm]\nconnector = \"mcp\"\nbase_url = \"{url}\"\nserves = [\"northwind\"]\n\
         headers = {{ Authorization = \"Bearer {token}\" }}\n{extra}\n"
    )
}

fn mcp_names(tools: &Tools) -> Vec<String> {
    tools
        .names()
        .into_iter()
        .filter(|n| n.starts_with("mcp."))
        .collect()
}

#[tokio::test]
async fn tools_are_listed_at_start_up_and_called_for_the_accounts_the_server_serves() {
    let Some(crm) = CrmServer::start("mcp::tools_are_listed_at_start_up...").await else {
        return;
    };
    let tools = Tools::new(&account(&crm.url, TOKEN, "")).await;
    assert_eq!(
        mcp_names(&tools),
        ["mcp.get_account", "mcp.list_invoices", "mcp.log_risk"]
    );
    let scoped = tools.registry.scoped(&mcp_names(&tools));
    let entry = |n: &str| scoped.get(&format!("mcp__{n}")).unwrap();
    assert!(!entry("get_account").tool.writes(), "readOnlyHint: true");
    assert!(!entry("list_invoices").tool.writes(), "readOnlyHint: true");
    assert!(entry("log_risk").tool.writes(), "no annotation: a write");
    assert_eq!(
        entry("log_risk").parameters["properties"]["level"]["enum"],
        json!(["low", "medium", "high"]),
        "the server's input schema is what the model sees"
    );
    assert!(
        tools
            .violations(
                "mcp.log_risk",
                &json!({"account_id": "a", "level": "severe", "reason": "r"})
            )
            .iter()
            .any(|v| v.contains("level")),
        "and what arguments are validated against"
    );

    // A read, for a job of an account the server serves.
    let account = tools
        .call_as(
            "northwind",
            "mcp.get_account",
            json!({"account_id": "nw-17"}),
        )
        .await
        .unwrap();
    assert_eq!(account["name"], "Northwind Traders");
    assert_eq!(account["health"], 38);
    // A tool that fails on the server: the model gets its message and may carry on.
    match tools
        .call_as("crm", "mcp.list_invoices", json!({"account_id": "nw-17"}))
        .await
    {
        Err(ToolError::Rejected(e)) => assert!(
            e.contains("the billing backend did not answer"),
            "the server's own words: {e}"
        ),
        other => panic!("expected the server's tool error, got {other:?}"),
    }
    // A job of an account the server does not serve never reaches it.
    match tools
        .call_as("acme", "mcp.get_account", json!({"account_id": "nw-17"}))
        .await
    {
        Err(ToolError::Rejected(e)) => {
            assert!(e.contains("not available to account acme"), "{e}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(
        crm.calls(),
        [
            ("get_account".to_string(), json!({"account_id": "nw-17"})),
            ("list_invoices".to_string(), json!({"account_id": "nw-17"})),
        ]
    );
}

#[tokio::test]
async fn a_429_from_the_server_pauses_the_account_and_the_call_goes_through_after_it() {
    let Some(crm) = CrmServer::start("mcp::a_429_from_the_server...").await else {
        return;
    };
    let tools = Tools::new(&account(&crm.url, TOKEN, "")).await;
    assert_eq!(mcp_names(&tools).len(), 3);
    // The next two POSTs (this call, then its first retry) are refused with Retry-After: 1.
    std::fs::write(crm.calls_file.with_extension("jsonl.429"), "2").unwrap();
    let started = Instant::now();
    let account = tools
        .call_as("crm", "mcp.get_account", json!({"account_id": "nw-17"}))
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(account["name"], "Northwind Traders");
    assert_eq!(
        crm.calls(),
        [
            ("(429)".to_string(), json!({})),
            ("(429)".to_string(), json!({})),
            ("get_account".to_string(), json!({"account_id": "nw-17"})),
        ]
    );
    assert!(
        took >= Duration::from_secs(2),
        "each 429 paused the account for its Retry-After: {took:?}"
    );
}

#[tokio::test]
async fn refused_credentials_or_a_server_down_leave_the_tools_out_and_start_up_continues() {
    let Some(crm) = CrmServer::start("mcp::refused_credentials_or_a_server_down...").await else {
        return;
    };
    let tools = Tools::new(&account(&crm.url, "wrong-token", "")).await;
    assert!(mcp_names(&tools).is_empty());
    assert!(
        tools.names().iter().any(|n| n == "happyfox.get_ticket"),
        "other tools stay"
    );
    let closed = format!("http://127.0.0.1:{}/mcp", free_port());
    let tools = Tools::new(&account(&closed, TOKEN, "")).await;
    assert!(mcp_names(&tools).is_empty());
    assert!(crm.calls().is_empty());
}

/// A handler of `multi.work` events allowing the CRM's tools, the write scoped to two levels.
fn handler(mode: &str) -> String {
    format!(
        r#"name = "renewal-risk"
on = ["multi.work"]
mode = "{mode}"
max_attempts = 1
[agent]
prompt = "Read the account and log its churn risk."
tools = ["mcp.get_account", "mcp.log_risk"]
max_steps = 6
deadline = "30s"
[agent.scopes."mcp.log_risk".args.level]
one_of = ["medium", "high"]
"#
    )
}

struct Run {
    app: TestApp,
    llm: FakeLlm,
}

/// One job of account `northwind` run by `handler` against the server at `url`, the scripted
/// model reading the account, trying a level outside the scope, then logging a high risk.
async fn run_one(url: &str, handler: String, extra: &str) -> Run {
    let llm = FakeLlm::start(vec![
        openai_calls(&[("c1", "mcp__get_account", r#"{"account_id": "nw-17"}"#)]),
        openai_calls(&[(
            "c2",
            "mcp__log_risk",
            r#"{"account_id": "nw-17", "level": "low", "reason": "fine"}"#,
        )]),
        openai_calls(&[(
            "c3",
            "mcp__log_risk",
            r#"{"account_id": "nw-17", "level": "high", "reason": "health 38, renewal in February"}"#,
        )]),
        openai_text("Logged a high churn risk."),
    ])
    .await;
    let app = TestApp::spawn_with(Options {
        handlers: vec![("renewal-risk.toml".into(), handler)],
        extra_config: format!(
            "{}\n[scheduler]\npoll_interval = \"10ms\"\n\n{}",
            account(url, TOKEN, extra),
            llm_table(&llm.url)
        ),
        ..Options::default()
    })
    .await;
    let body = serde_json::to_vec(&json!({"account": "northwind", "subject": "nw-17"})).unwrap();
    let (status, _) = app.send("multi", &body, "mcp-run-1").await;
    assert_eq!(status, 202);
    eventually("the job to finish", Duration::from_secs(30), || async {
        let jobs = app.store.list_jobs(&JobFilter::default()).await.unwrap();
        jobs.iter()
            .any(|j| matches!(j.state, JobState::Done | JobState::Dead))
    })
    .await;
    Run { app, llm }
}

async fn the_run(app: &TestApp) -> StoredRun {
    let runs = app.store.list_runs(&RunFilter::default()).await.unwrap();
    assert_eq!(runs.len(), 1);
    runs.into_iter().next().unwrap()
}

fn steps<'a>(run: &'a StoredRun, kind: &str) -> Vec<&'a Value> {
    run.run
        .steps
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["type"] == kind)
        .collect()
}

#[tokio::test]
async fn a_live_run_reads_and_writes_once_through_the_journal_within_its_scope() {
    let Some(crm) = CrmServer::start("mcp::a_live_run_reads_and_writes...").await else {
        return;
    };
    let Run { app, llm } = run_one(&crm.url, handler("live"), "").await;
    let jobs = app.store.list_jobs(&JobFilter::default()).await.unwrap();
    assert_eq!(jobs[0].state, JobState::Done, "{:?}", jobs[0].last_error);

    let received = llm.received();
    let offered: Vec<&str> = received[0].body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(offered, ["mcp__get_account", "mcp__log_risk"]);
    let log_risk = llm.received()[0].body["tools"][1]["function"]["parameters"].clone();
    assert_eq!(
        log_risk["properties"]["level"]["enum"],
        json!(["medium", "high"]),
        "the model sees the scope, not the server's whole enum"
    );
    assert!(
        llm.received()[1].body["messages"]
            .to_string()
            .contains("Northwind Traders"),
        "the read's result went back to the model"
    );

    let run = the_run(&app).await;
    let refused = steps(&run, "refused");
    assert_eq!(refused.len(), 1, "{:?}", run.run.steps);
    assert_eq!(refused[0]["name"], "mcp.log_risk");
    assert_eq!(
        crm.calls(),
        [
            ("get_account".to_string(), json!({"account_id": "nw-17"})),
            (
                "log_risk".to_string(),
                json!({"account_id": "nw-17", "level": "high", "reason": "health 38, renewal in February"})
            ),
        ],
        "the out-of-scope level never reached the server; the write was sent once"
    );
    let actions = app.store.list_actions(jobs[0].id).await.unwrap();
    assert_eq!(actions.len(), 1, "the write is journaled: {actions:?}");
    assert!(
        actions[0].request.starts_with("tools/call log_risk "),
        "{}",
        actions[0].request
    );
    assert_eq!(actions[0].status, Some(200));
    assert_eq!(
        actions[0].account, "crm",
        "the MCP account's journal and budget"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_dry_run_reads_from_the_server_and_records_the_write_without_sending_it() {
    let Some(crm) = CrmServer::start("mcp::a_dry_run_reads...").await else {
        return;
    };
    let Run { app, .. } = run_one(&crm.url, handler("dry-run"), "").await;
    let jobs = app.store.list_jobs(&JobFilter::default()).await.unwrap();
    assert_eq!(jobs[0].state, JobState::Done, "{:?}", jobs[0].last_error);
    assert_eq!(
        crm.calls(),
        [("get_account".to_string(), json!({"account_id": "nw-17"}))],
        "only the read reached the server"
    );
    let run = the_run(&app).await;
    let intended = steps(&run, "intended_action");
    assert_eq!(intended.len(), 1);
    assert_eq!(intended[0]["name"], "mcp.log_risk");
    assert_eq!(intended[0]["mode"], "dry-run");
    assert_eq!(intended[0]["arguments"]["level"], "high");
    assert!(app.store.list_actions(jobs[0].id).await.unwrap().is_empty());
    app.stop().await;
}

#[tokio::test]
async fn an_approve_mode_write_is_held_and_sent_once_when_a_person_approves_it() {
    let Some(crm) = CrmServer::start("mcp::an_approve_mode_write...").await else {
        return;
    };
    let Run { app, .. } = run_one(&crm.url, handler("approve"), "").await;
    assert_eq!(
        crm.calls(),
        [("get_account".to_string(), json!({"account_id": "nw-17"}))],
        "held, not sent"
    );
    let held = app.store.list_approvals(&Default::default()).await.unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].request.tool, "mcp.log_risk");
    let approve = format!("{}/api/approvals/{}/approve", app.url, held[0].id);
    for _ in 0..2 {
        // The second is a conflict: decided already, nothing sent.
        app.client.post(&approve).send().await.unwrap();
    }
    let approved = app.store.list_approvals(&Default::default()).await.unwrap();
    assert_eq!(approved[0].state, ApprovalState::Approved, "{approved:?}");
    assert_eq!(
        crm.calls()[1..],
        [(
            "log_risk".to_string(),
            json!({"account_id": "nw-17", "level": "high", "reason": "health 38, renewal in February"})
        )],
        "sent once, on approval"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_server_down_at_start_up_is_said_in_the_run_and_its_tools_come_with_the_next_listing() {
    let port = free_port();
    if gate::var(PYTHON_VAR, "mcp::a_server_down_at_start_up...", HOW).is_none() {
        return;
    }
    let url = format!("http://127.0.0.1:{port}/mcp");
    // Nothing listens yet: hookwise starts, and the run goes without the tools, saying why.
    let Run { app, llm } = run_one(&url, handler("live"), "refresh = \"10s\"").await;
    let run = the_run(&app).await;
    let notes: Vec<String> = steps(&run, "note")
        .iter()
        .map(|n| n["text"].as_str().unwrap().to_string())
        .collect();
    assert!(
        notes
            .iter()
            .any(|n| n.starts_with("mcp.get_account is not available now")
                && n.contains("MCP account crm")
                && n.contains(&format!("127.0.0.1:{port}"))),
        "{notes:?}"
    );
    assert!(
        llm.received()[0]
            .body
            .get("tools")
            .is_none_or(|t| t.as_array().is_some_and(|a| a.is_empty()))
    );

    // The server comes up; the next listing (within `refresh`) offers its tools again.
    let crm = CrmServer::start_on("mcp::a_server_down_at_start_up...", port)
        .await
        .unwrap();
    let listed = r#"hookwise_upstream_calls_total{account="crm",connector="mcp",method="POST",status_class="2xx"}"#;
    eventually("the next listing", Duration::from_secs(25), || async {
        let metrics = app
            .client
            .get(format!("{}/metrics", app.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        metrics.lines().any(|l| l.starts_with(listed))
    })
    .await;
    // The listing is counted just before its tools are published.
    tokio::time::sleep(Duration::from_millis(500)).await;
    llm.push(openai_calls(&[(
        "c1",
        "mcp__get_account",
        r#"{"account_id": "nw-18"}"#,
    )]));
    llm.push(openai_text("Read it."));
    let body = serde_json::to_vec(&json!({"account": "northwind", "subject": "nw-18"})).unwrap();
    assert_eq!(app.send("multi", &body, "mcp-run-2").await.0, 202);
    eventually(
        "the second job to finish",
        Duration::from_secs(30),
        || async {
            let jobs = app.store.list_jobs(&JobFilter::default()).await.unwrap();
            jobs.iter()
                .filter(|j| matches!(j.state, JobState::Done | JobState::Dead))
                .count()
                == 2
        },
    )
    .await;
    assert_eq!(
        crm.calls(),
        [("get_account".to_string(), json!({"account_id": "nw-18"}))]
    );
    app.stop().await;
}
