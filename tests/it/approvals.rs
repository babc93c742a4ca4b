//! Approvals end to end: an `approve`-mode handler runs against the scripted fake LLM, its write
//! is held (never sent) as a pending approval, and a person sends it once or drops it over the
//! HTTP API, or with the real `hookwise approvals` binary.

use crate::support::fake_llm::{FakeLlm, Reply, llm_table, openai_calls, openai_text};
use crate::support::*;
use async_trait::async_trait;
use hookwise::store::{
    Approval, ApprovalFilter, ApprovalState, JobFilter, JobRecord, JobState, RunFilter,
};
use hookwise::tools::{Tool, ToolContext, ToolError};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

/// One call that reached the stand-in upstream, with everything the tool was given.
#[derive(Debug, Clone, PartialEq)]
struct Sent {
    tool: String,
    account: String,
    subject: String,
    key: String,
    args: Value,
}

#[derive(Default)]
struct Upstream(Mutex<Vec<Sent>>);

impl Upstream {
    fn sent(&self) -> Vec<Sent> {
        self.0.lock().unwrap().clone()
    }

    fn writes(&self) -> Vec<Sent> {
        self.sent()
            .into_iter()
            .filter(|s| s.tool == "test.add_note")
            .collect()
    }
}

struct RecordingTool {
    name: &'static str,
    writes: bool,
    upstream: Arc<Upstream>,
}

#[async_trait]
impl Tool for RecordingTool {
    fn name(&self) -> &str {
        self.name
    }
    fn description(&self) -> &str {
        "a test tool"
    }
    fn parameters(&self) -> Value {
        json!({
            "type": "object",
            "properties": {"ticket_id": {"type": "integer"}, "text": {"type": "string", "minLength": 1}},
            "required": ["ticket_id"],
            "additionalProperties": false
        })
    }
    fn writes(&self) -> bool {
        self.writes
    }
    async fn call(&self, ctx: &ToolContext, args: Value) -> Result<Value, ToolError> {
        self.upstream.0.lock().unwrap().push(Sent {
            tool: self.name.into(),
            account: ctx.account.to_string(),
            subject: ctx.subject.clone(),
            key: ctx.idempotency_key.clone(),
            args: args.clone(),
        });
        if args["ticket_id"] == 503 {
            return Err(ToolError::Unavailable("upstream answered 503".into()));
        }
        if args["ticket_id"] == 404 {
            return Err(ToolError::Rejected("ticket 404 does not exist".into()));
        }
        Ok(json!({"note_id": 9001, "ticket_id": args["ticket_id"]}))
    }
}

fn handler(max_attempts: u32) -> (String, String) {
    (
        "triage.toml".into(),
        format!(
            r#"name = "triage"
on = ["happyfox.ticket.*"]
mode = "approve"
max_attempts = {max_attempts}
[agent]
prompt = "Read the ticket, then add a private note."
tools = ["test.get_ticket", "test.add_note"]
max_steps = 6
deadline = "20s"
"#
        ),
    )
}

struct Setup {
    app: TestApp,
    llm: FakeLlm,
    upstream: Arc<Upstream>,
}

/// A server whose handler runs in approve mode against `script`, with a read and a write tool.
async fn setup(script: Vec<Reply>) -> Setup {
    setup_with(script, 1).await
}

async fn setup_with(script: Vec<Reply>, max_attempts: u32) -> Setup {
    let llm = FakeLlm::start(script).await;
    let upstream = Arc::new(Upstream::default());
    let tool = |name, writes| -> Arc<dyn Tool> {
        Arc::new(RecordingTool {
            name,
            writes,
            upstream: upstream.clone(),
        })
    };
    let app = TestApp::spawn_with(Options {
        handlers: vec![handler(max_attempts)],
        tools: vec![tool("test.get_ticket", false), tool("test.add_note", true)],
        extra_config: format!(
            "[scheduler]\npoll_interval = \"10ms\"\nretry_base = \"10ms\"\n\n{}",
            llm_table(&llm.url)
        ),
        ..Options::default()
    })
    .await;
    Setup { app, llm, upstream }
}

/// Reads the ticket, then asks for one note, then says it is done.
fn read_then_note(text: &str) -> Vec<Reply> {
    vec![
        openai_calls(&[("call_1", "test__get_ticket", r#"{"ticket_id": 142}"#)]),
        openai_calls(&[(
            "call_2",
            "test__add_note",
            &format!(r#"{{"ticket_id": 142, "text": "{text}"}}"#),
        )]),
        openai_text("Asked for a note; it awaits approval."),
    ]
}

async fn finished_job(app: &TestApp) -> JobRecord {
    let start = std::time::Instant::now();
    loop {
        let jobs = app.store.list_jobs(&JobFilter::default()).await.unwrap();
        if let Some(job) = jobs
            .into_iter()
            .find(|j| matches!(j.state, JobState::Done | JobState::Dead))
        {
            return job;
        }
        assert!(
            start.elapsed() < WAIT,
            "the job did not finish within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn pending(app: &TestApp) -> Vec<Approval> {
    app.store
        .list_approvals(&ApprovalFilter {
            state: Some(ApprovalState::Pending),
            ..ApprovalFilter::default()
        })
        .await
        .unwrap()
}

async fn post(app: &TestApp, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    let mut request = app.client.post(format!("{}{path}", app.url));
    if let Some(body) = body {
        request = request.json(&body);
    }
    read(request.send().await.unwrap()).await
}

async fn get(app: &TestApp, path: &str) -> (StatusCode, Value) {
    read(
        app.client
            .get(format!("{}{path}", app.url))
            .send()
            .await
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn a_held_write_is_sent_once_when_approved_over_the_api() {
    let s = setup(read_then_note("Duplicate charge: refund SO-884213")).await;
    s.app.send("happyfox", &ticket(142), "msg-approve-1").await;
    let job = finished_job(&s.app).await;
    assert_eq!(job.state, JobState::Done, "{:?}", job.last_error);

    // The read happened; the write did not, it is held with exactly what the model asked.
    assert_eq!(
        s.upstream
            .sent()
            .iter()
            .map(|c| c.tool.as_str())
            .collect::<Vec<_>>(),
        ["test.get_ticket"]
    );
    let held = pending(&s.app).await;
    assert_eq!(held.len(), 1, "{held:?}");
    let approval = &held[0];
    let args = json!({"ticket_id": 142, "text": "Duplicate charge: refund SO-884213"});
    let r = &approval.request;
    assert_eq!(r.tool, "test.add_note");
    assert_eq!(r.arguments, args);
    assert_eq!(
        (r.job, r.attempt, r.call_id.as_str()),
        (job.id, 1, "call_2")
    );
    assert_eq!(
        (r.handler.as_str(), r.account.as_str(), r.subject.as_str()),
        ("triage", "acme", "142")
    );
    assert_eq!(r.idempotency_key, format!("job-{}/step-1/call-0", job.id));

    // The transcript names the approval, and the model was told the write awaits a person.
    let runs = s.app.store.list_runs(&RunFilter::default()).await.unwrap();
    let steps = runs[0].run.steps.as_array().unwrap();
    let intended: Vec<&Value> = steps
        .iter()
        .filter(|s| s["type"] == "intended_action")
        .collect();
    assert_eq!(intended.len(), 1);
    assert_eq!(intended[0]["approval"], approval.id);
    assert_eq!(intended[0]["mode"], "approve");
    assert_eq!(intended[0]["arguments"], args);
    let requests = s.llm.received();
    let told = requests[2].body["messages"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()["content"]
        .as_str()
        .unwrap()
        .to_string();
    let told: Value = serde_json::from_str(&told).unwrap();
    assert!(
        told["status"]
            .as_str()
            .unwrap()
            .contains("must approve this write before it is sent"),
        "{told}"
    );
    assert_eq!(told["approval"], approval.id);

    // The API lists and shows it.
    let (status, listed) = get(&s.app, "/api/approvals?state=pending&account=acme").await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["id"], approval.id);
    let (status, shown) = get(&s.app, &format!("/api/approvals/{}", approval.id)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shown["arguments"], args);
    assert_eq!(shown["state"], "pending");

    // Two people approve at once: one sends it, once, with the stored key, account and
    // arguments; the other is told it is already decided.
    let approve = format!("/api/approvals/{}/approve", approval.id);
    let (ana, ben) = tokio::join!(
        post(&s.app, &approve, Some(json!({"by": "ana"}))),
        post(&s.app, &approve, Some(json!({"by": "ben"}))),
    );
    let (winner, body, loser) = match (ana, ben) {
        ((StatusCode::OK, body), (status, _)) => ("ana", body, status),
        ((status, _), (StatusCode::OK, body)) => ("ben", body, status),
        other => panic!("one approval must succeed: {other:?}"),
    };
    assert_eq!(loser, StatusCode::CONFLICT);
    assert_eq!(body["state"], "approved");
    assert_eq!(body["decided_by"], winner);
    assert_eq!(body["result"], json!({"note_id": 9001, "ticket_id": 142}));
    let expected = Sent {
        tool: "test.add_note".into(),
        account: "acme".into(),
        subject: "142".into(),
        key: r.idempotency_key.clone(),
        args: args.clone(),
    };
    assert_eq!(s.upstream.writes(), std::slice::from_ref(&expected));

    // A second approval, or a late rejection, is a conflict and sends nothing.
    let (status, problem) = post(&s.app, &approve, None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert_eq!(problem["_problem"], true);
    assert!(
        problem["detail"].as_str().unwrap().contains("is approved"),
        "{problem}"
    );
    let (status, _) = post(
        &s.app,
        &format!("/api/approvals/{}/reject", approval.id),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(s.upstream.writes(), [expected]);
    let stored = s
        .app
        .store
        .get_approval(approval.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.state, ApprovalState::Approved);

    // Missing approvals are 404 problems.
    let missing = approval.id + 100;
    for (status, body) in [
        get(&s.app, &format!("/api/approvals/{missing}")).await,
        post(&s.app, &format!("/api/approvals/{missing}/approve"), None).await,
        post(&s.app, &format!("/api/approvals/{missing}/reject"), None).await,
    ] {
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        assert_eq!(body["_problem"], true);
    }
    s.app.stop().await;
}

#[tokio::test]
async fn a_rejected_write_is_never_sent_and_bad_requests_change_nothing() {
    let s = setup(read_then_note("Refund it")).await;
    s.app.send("happyfox", &ticket(142), "msg-approve-2").await;
    assert_eq!(finished_job(&s.app).await.state, JobState::Done);
    let id = pending(&s.app).await[0].id;

    // Bad input: a clear 400, and the approval is still pending.
    let reject = format!("/api/approvals/{id}/reject");
    let (status, problem) = post(&s.app, &reject, Some(json!({"reasn": "typo"}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
    assert!(
        problem["detail"].as_str().unwrap().contains("reasn"),
        "{problem}"
    );
    let (status, problem) = get(&s.app, "/api/approvals?state=waiting").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
    assert_eq!(pending(&s.app).await.len(), 1);

    let (status, body) = post(
        &s.app,
        &reject,
        Some(json!({"by": "ana", "reason": "wrong ticket"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["state"], "rejected");
    assert_eq!(body["reason"], "wrong ticket");
    assert_eq!(body["decided_by"], "ana");

    let (status, problem) = post(&s.app, &format!("/api/approvals/{id}/approve"), None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert!(
        problem["detail"].as_str().unwrap().contains("is rejected"),
        "{problem}"
    );
    assert!(s.upstream.writes().is_empty(), "{:?}", s.upstream.sent());
    let (_, listed) = get(&s.app, "/api/approvals?state=rejected").await;
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    s.app.stop().await;
}

#[tokio::test]
async fn a_rerun_of_the_job_finds_the_write_it_already_holds() {
    // Attempt 1 holds the note, then a read fails transiently and the job is retried; attempt 2
    // asks for the same note at the same step, which is the same write: still one approval.
    let note = r#"{"ticket_id": 142, "text": "Refund"}"#;
    let s = setup_with(
        vec![
            openai_calls(&[("a1", "test__add_note", note)]),
            openai_calls(&[("a2", "test__get_ticket", r#"{"ticket_id": 503}"#)]),
            openai_calls(&[("b1", "test__add_note", note)]),
            openai_text("The note awaits approval."),
        ],
        2,
    )
    .await;
    s.app
        .send("happyfox", &ticket(142), "msg-approve-rerun")
        .await;
    let job = finished_job(&s.app).await;
    assert_eq!(job.state, JobState::Done, "{:?}", job.last_error);
    assert_eq!(job.attempts, 2);

    let all = s
        .app
        .store
        .list_approvals(&ApprovalFilter::default())
        .await
        .unwrap();
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(
        all[0].request.call_id, "a1",
        "the first attempt's approval stands"
    );
    let runs = s.app.store.list_runs(&RunFilter::default()).await.unwrap();
    assert_eq!(runs.len(), 2);
    let second = runs[0].run.steps.as_array().unwrap();
    let intended = second
        .iter()
        .find(|s| s["type"] == "intended_action")
        .unwrap();
    assert_eq!(intended["approval"], all[0].id);
    assert_eq!(intended["approval_state"], "pending");
    let told = s.llm.received()[3].body["messages"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(told.contains("awaiting approval"), "{told}");
    assert!(s.upstream.writes().is_empty());
    s.app.stop().await;
}

#[tokio::test]
async fn a_refused_send_is_recorded_as_failed_and_an_outage_leaves_it_pending() {
    let s = setup(vec![
        openai_calls(&[
            (
                "c1",
                "test__add_note",
                r#"{"ticket_id": 404, "text": "Gone"}"#,
            ),
            (
                "c2",
                "test__add_note",
                r#"{"ticket_id": 503, "text": "Later"}"#,
            ),
        ]),
        openai_text("done"),
    ])
    .await;
    s.app
        .send("happyfox", &ticket(142), "msg-approve-fail")
        .await;
    assert_eq!(finished_job(&s.app).await.state, JobState::Done);
    let held = pending(&s.app).await;
    let (outage, refused) = (held[0].id, held[1].id);

    let (status, problem) = post(&s.app, &format!("/api/approvals/{refused}/approve"), None).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("ticket 404 does not exist"),
        "{problem}"
    );
    let failed = s.app.store.get_approval(refused).await.unwrap().unwrap();
    assert_eq!(failed.state, ApprovalState::Failed);
    assert_eq!(failed.error.as_deref(), Some("ticket 404 does not exist"));

    let approve_outage = format!("/api/approvals/{outage}/approve");
    let (status, problem) = post(&s.app, &approve_outage, None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("pending again"),
        "{problem}"
    );
    let again = s.app.store.get_approval(outage).await.unwrap().unwrap();
    assert_eq!(again.state, ApprovalState::Pending);
    assert_eq!(again.error.as_deref(), Some("upstream answered 503"));
    // Tried once each; the outage may be approved again later, under the same key.
    let keys: Vec<String> = s.upstream.writes().into_iter().map(|w| w.key).collect();
    assert_eq!(
        keys,
        [
            failed.request.idempotency_key.clone(),
            again.request.idempotency_key.clone()
        ]
    );
    let (status, _) = post(&s.app, &approve_outage, None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(s.upstream.writes()[2].key, again.request.idempotency_key);
    s.app.stop().await;
}

/// Runs the real binary with the test app's configuration.
async fn hookwise(app: &TestApp, args: &[&str]) -> (bool, String, String) {
    let config = app.config_path.clone();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_hookwise"))
            .arg("--config")
            .arg(config)
            .args(&args)
            .env("USER", "cli-user")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[tokio::test]
async fn the_cli_lists_shows_and_rejects_and_will_not_send_without_the_tool() {
    // One step asks for two notes: two approvals.
    let s = setup(vec![
        openai_calls(&[
            (
                "c1",
                "test__add_note",
                r#"{"ticket_id": 142, "text": "First"}"#,
            ),
            (
                "c2",
                "test__add_note",
                r#"{"ticket_id": 142, "text": "Second «é»"}"#,
            ),
        ]),
        openai_text("done"),
    ])
    .await;
    s.app
        .send("happyfox", &ticket(142), "msg-approve-cli")
        .await;
    assert_eq!(finished_job(&s.app).await.state, JobState::Done);
    let held = pending(&s.app).await;
    assert_eq!(held.len(), 2);
    let (second, first) = (held[0].id, held[1].id);

    let (ok, listed, err) = hookwise(&s.app, &["approvals", "list", "--json"]).await;
    assert!(ok, "{err}");
    let lines: Vec<Value> = listed
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines.iter().map(|l| l["id"].clone()).collect::<Vec<_>>(),
        [json!(second), json!(first)],
        "newest first"
    );
    assert_eq!(lines[0]["arguments"]["text"], "Second «é»");
    let (ok, table, _) = hookwise(&s.app, &["approvals", "list", "--state", "pending"]).await;
    assert!(ok);
    assert_eq!(table.matches("test.add_note").count(), 2, "{table}");
    let (ok, none, _) = hookwise(&s.app, &["approvals", "list", "--handler", "other"]).await;
    assert!(ok);
    assert_eq!(none.lines().count(), 1, "only the header: {none}");
    let (ok, _, err) = hookwise(&s.app, &["approvals", "list", "--state", "waiting"]).await;
    assert!(!ok);
    assert!(err.contains("expected pending, executing"), "{err}");

    let (ok, shown, err) = hookwise(&s.app, &["approvals", "show", &first.to_string()]).await;
    assert!(ok, "{err}");
    let key = &held[1].request.idempotency_key;
    let mut at = 0;
    for expected in [
        &format!("approval {first}: pending"),
        "  tool      test.add_note",
        "  account   acme  subject 142",
        "call c1",
        &format!("  key       {key}"),
        "arguments:",
        "\"text\": \"First\"",
    ] {
        let found = shown[at..]
            .find(expected)
            .unwrap_or_else(|| panic!("{expected:?} after byte {at} in\n{shown}"));
        at += found + expected.len();
    }
    let (ok, json_text, _) =
        hookwise(&s.app, &["approvals", "show", &first.to_string(), "--json"]).await;
    assert!(ok);
    let (_, api) = get(&s.app, &format!("/api/approvals/{first}")).await;
    assert_eq!(serde_json::from_str::<Value>(&json_text).unwrap(), api);

    // The binary has only the real connectors: the test tool does not exist there. Approving is
    // refused with the reason, nothing is sent, and the approval stays pending.
    let (ok, _, err) = hookwise(&s.app, &["approvals", "approve", &first.to_string()]).await;
    assert!(!ok);
    assert!(
        err.contains("has no tool test.add_note") && err.contains("stays pending"),
        "{err}"
    );
    assert_eq!(pending(&s.app).await.len(), 2);
    assert!(s.upstream.writes().is_empty());

    let (ok, out, err) = hookwise(
        &s.app,
        &[
            "approvals",
            "reject",
            &first.to_string(),
            "--reason",
            "says nothing new",
        ],
    )
    .await;
    assert!(ok, "{err}");
    assert!(out.contains("rejected"), "{out}");
    let rejected = s.app.store.get_approval(first).await.unwrap().unwrap();
    assert_eq!(rejected.state, ApprovalState::Rejected);
    assert_eq!(rejected.reason.as_deref(), Some("says nothing new"));
    assert_eq!(rejected.decided_by.as_deref(), Some("cli-user"));

    let (ok, _, err) = hookwise(&s.app, &["approvals", "approve", &first.to_string()]).await;
    assert!(!ok);
    assert!(
        err.contains(&format!("approval {first} is rejected")),
        "{err}"
    );
    let (ok, _, err) = hookwise(&s.app, &["approvals", "show", "999"]).await;
    assert!(!ok);
    assert!(err.contains("no approval 999"), "{err}");
    s.app.stop().await;
}
