//! HappyFox handlers end to end: a signed webhook, the scheduler, the agent with a scripted model,
//! and the real HappyFox tools against the fake HappyFox.

use crate::support::fake_happyfox::{BOT_STAFF_ID, FakeHappyfox};
use crate::support::fake_llm::{FakeLlm, Reply};
use crate::support::*;
use hookwise::kernel::clock::ManualClock;
use hookwise::store::{JobFilter, JobRecord, JobState, RunFilter, StoredRun};
use serde_json::{Value, json};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

/// An OpenAI Chat Completions answer calling tools: (call id, wire name, arguments).
fn calls(list: &[(&str, &str, Value)]) -> Reply {
    let tool_calls: Vec<Value> = list
        .iter()
        .map(|(id, name, args)| json!({"id": id, "type": "function", "function": {"name": name, "arguments": args.to_string()}}))
        .collect();
    Reply::ok(json!({
        "id": "chatcmpl-hf", "object": "chat.completion", "created": 1, "model": "test-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": null, "tool_calls": tool_calls},
                     "finish_reason": "tool_calls"}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}
    }))
}

fn text(answer: &str) -> Reply {
    Reply::ok(json!({
        "id": "chatcmpl-hf", "object": "chat.completion", "created": 1, "model": "test-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 50, "completion_tokens": 10, "total_tokens": 60}
    }))
}

/// The webhook of a new ticket, and the fake HappyFox holding that same ticket.
async fn new_ticket_142() -> (FakeHappyfox, Vec<u8>) {
    let fake = FakeHappyfox::start().await;
    let webhook = std::fs::read(repo_path("fixtures/happyfox/ticket_created.json")).unwrap();
    fake.put_ticket(serde_json::from_slice(&webhook).unwrap());
    (fake, webhook)
}

async fn spawn(
    fake: &FakeHappyfox,
    llm: &FakeLlm,
    handler: (String, String),
    clock: Option<ManualClock>,
) -> TestApp {
    TestApp::spawn_with(Options {
        clock,
        handlers: vec![handler],
        extra_config: format!(
            "[scheduler]\npoll_interval = \"10ms\"\n\n[llm]\nprovider = \"openai\"\nbase_url = \"{}/v1\"\napi_key = \"test-key\"\nmodel = \"test-model\"\n\n{}",
            llm.url,
            fake.account_toml("acme", Some(BOT_STAFF_ID), "")
        ),
        ..Options::default()
    })
    .await
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

async fn the_run(app: &TestApp) -> StoredRun {
    let runs = app.store.list_runs(&RunFilter::default()).await.unwrap();
    assert_eq!(runs.len(), 1, "one run recorded");
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

/// The tool the model was offered under `wire_name` in a recorded request.
fn offered<'a>(request: &'a Value, wire_name: &str) -> &'a Value {
    request["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["function"]["name"] == wire_name)
        .map(|t| &t["function"]["parameters"])
        .unwrap_or_else(|| panic!("{wire_name} was not offered"))
}

#[tokio::test]
async fn the_bundled_triage_handler_reads_happyfox_and_records_its_writes_in_dry_run() {
    let (fake, webhook) = new_ticket_142().await;
    let note = "<p><b>Triage (hookwise)</b></p><p>Charged twice for order SO-884213: duplicate \
                charge, refund requested. Category Billing kept; priority raised to High (money \
                taken wrongly); Billing Issue Type set. Possible duplicate: none (#BL00000141 is an \
                invoice request).</p>";
    let llm = FakeLlm::start(vec![
        calls(&[("c1", "happyfox__get_ticket", json!({"ticket_id": 142}))]),
        calls(&[
            ("c2", "happyfox__list_tickets", json!({"query": "contact:\"dana.whitfield@example.org\"", "status": "pending"})),
            ("c3", "happyfox__list_categories", json!({})),
        ]),
        // A field of another category: the live schema refuses it, the model corrects itself.
        calls(&[("c4", "happyfox__update_custom_fields", json!({"ticket_id": 142, "fields": {"24": 41}}))]),
        calls(&[
            ("c5", "happyfox__update_custom_fields", json!({"ticket_id": 142, "fields": {"22": 32}})),
            ("c6", "happyfox__update_ticket", json!({"ticket_id": 142, "priority": 3})),
        ]),
        calls(&[("c7", "happyfox__add_private_note", json!({"ticket_id": 142, "html": note}))]),
        text("Kept Billing, set Billing Issue Type to Duplicate charge, raised priority to High.\nMoney was taken twice."),
    ])
    .await;
    let handler = (
        "happyfox-triage.toml".to_string(),
        std::fs::read_to_string(repo_path("handlers/happyfox-triage.toml")).unwrap(),
    );
    let clock = ManualClock::starting_at(chrono::Utc::now());
    let app = spawn(&fake, &llm, handler, Some(clock.clone())).await;
    let (status, ack) = app.send("happyfox", &webhook, "msg-triage-142").await;
    assert_eq!(status, reqwest::StatusCode::ACCEPTED, "{ack}");
    clock.advance(Duration::from_secs(46)); // past the handler's 45 s debounce
    let job = finished_job(&app).await;
    assert_eq!(job.state, JobState::Done, "{:?}", job.last_error);

    // Reads reached HappyFox: the live schemas first (allow-list order), then the model's reads;
    // list_categories was served from the cache the live schemas filled. No write was sent.
    assert_eq!(
        fake.calls(),
        [
            "GET /categories/",
            "GET /ticket/142/",
            "GET /ticket_custom_fields/",
            "GET /statuses/",
            "GET /priorities/",
            "GET /ticket/142/",
            "GET /tickets/",
        ]
    );
    assert!(fake.writes().is_empty());
    let search = fake
        .received()
        .into_iter()
        .find(|r| r.path == "/tickets/")
        .unwrap();
    assert_eq!(search.param("status"), Some("_pending"));
    assert_eq!(
        search.param("q"),
        Some("contact:\"dana.whitfield@example.org\"")
    );

    // What the model was offered: exactly the handler's tools, with live schemas.
    let requests = llm.received();
    assert_eq!(requests.len(), 6);
    let first = &requests[0].body;
    let mut names: Vec<&str> = first["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "happyfox__add_private_note",
            "happyfox__get_ticket",
            "happyfox__list_categories",
            "happyfox__list_tickets",
            "happyfox__move_ticket",
            "happyfox__update_custom_fields",
            "happyfox__update_ticket",
        ]
    );
    let fields =
        &offered(first, "happyfox__update_custom_fields")["properties"]["fields"]["properties"];
    let mut keys: Vec<&String> = fields.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, ["21", "22", "25"]);
    assert_eq!(
        offered(first, "happyfox__update_ticket")["properties"]["priority"]["enum"],
        json!([1, 2, 3, 4])
    );
    assert_eq!(
        offered(first, "happyfox__move_ticket")["properties"]["category_id"]["enum"],
        json!([1, 3, 5, 7])
    );
    // The model saw the trimmed ticket and the customer's other ticket.
    let seen = requests[1].body["messages"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()["content"]
        .to_string();
    assert!(
        seen.contains("Charged twice for my order") && !seen.contains("amazonaws"),
        "{seen}"
    );
    assert!(
        requests[2].body["messages"]
            .to_string()
            .contains("#BL00000141")
    );
    let refusal = requests[3].body["messages"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        refusal.contains("do not match the schema") && refusal.contains("24"),
        "{refusal}"
    );

    let run = the_run(&app).await;
    assert_eq!(run.run.outcome, "done");
    assert_eq!(run.run.mode, "dry-run");
    let intended: Vec<(String, Value)> = steps(&run, "intended_action")
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_string(),
                s["arguments"].clone(),
            )
        })
        .collect();
    assert_eq!(
        intended,
        [
            (
                "happyfox.update_custom_fields".to_string(),
                json!({"ticket_id": 142, "fields": {"22": 32}})
            ),
            (
                "happyfox.update_ticket".to_string(),
                json!({"ticket_id": 142, "priority": 3})
            ),
            (
                "happyfox.add_private_note".to_string(),
                json!({"ticket_id": 142, "html": note})
            ),
        ]
    );
    let results = steps(&run, "tool_result");
    assert_eq!(results.len(), 3);
    assert_eq!(results[0]["result"]["status"]["name"], "New");
    assert_eq!(results[0]["result"]["assignee"], Value::Null);
    assert_eq!(steps(&run, "tool_error").len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn in_a_live_run_an_unknown_field_never_reaches_happyfox_and_a_valid_one_is_written() {
    let (fake, webhook) = new_ticket_142().await;
    let llm = FakeLlm::start(vec![
        calls(&[(
            "c1",
            "happyfox__update_custom_fields",
            json!({"ticket_id": 142, "fields": {"24": 41}}),
        )]),
        calls(&[(
            "c2",
            "happyfox__update_custom_fields",
            json!({"ticket_id": 142, "fields": {"22": 32}}),
        )]),
        text("Set Billing Issue Type."),
    ])
    .await;
    let handler = (
        "hf-fields.toml".to_string(),
        "name = \"hf-fields\"\non = [\"happyfox.ticket.created\"]\nmode = \"live\"\nmax_attempts = 1\n\
         [agent]\nprompt = \"Fill the ticket's custom fields.\"\ntools = [\"happyfox.update_custom_fields\"]\n\
         max_steps = 4\ndeadline = \"20s\"\n"
            .to_string(),
    );
    let app = spawn(&fake, &llm, handler, None).await;
    app.send("happyfox", &webhook, "msg-fields-142").await;
    let job = finished_job(&app).await;
    assert_eq!(job.state, JobState::Done, "{:?}", job.last_error);

    assert_eq!(
        fake.calls(),
        [
            "GET /ticket/142/",
            "GET /ticket_custom_fields/", // the live schema
            "GET /ticket/142/",
            "POST /ticket/142/update_custom_fields/", // the valid call, re-checked
            "GET /ticket/142/",                       // after a write, live schemas are read again
        ]
    );
    assert_eq!(
        fake.writes()[0].body,
        json!({"staff": BOT_STAFF_ID, "t-cf-22": 32})
    );
    assert_eq!(
        fake.ticket(142)["custom_fields"][1]["value"],
        "Duplicate charge"
    );
    let run = the_run(&app).await;
    let errors = steps(&run, "tool_error");
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0]["error"].as_str().unwrap().contains("24"),
        "{}",
        errors[0]
    );
    assert_eq!(
        steps(&run, "tool_result")[0]["result"]["fields"][0]["value"],
        "Duplicate charge"
    );
    app.stop().await;
}

#[tokio::test]
async fn after_a_live_move_the_new_categorys_fields_are_offered() {
    let (fake, webhook) = new_ticket_142().await;
    let llm = FakeLlm::start(vec![
        calls(&[(
            "c1",
            "happyfox__move_ticket",
            json!({"ticket_id": 142, "category_id": 5}),
        )]),
        calls(&[(
            "c2",
            "happyfox__update_custom_fields",
            json!({"ticket_id": 142, "fields": {"24": 42}}),
        )]),
        text("Moved to category 5 and set Product Area."),
    ])
    .await;
    let handler = (
        "hf-move.toml".to_string(),
        "name = \"hf-move\"\non = [\"happyfox.ticket.created\"]\nmode = \"live\"\nmax_attempts = 1\n\
         [agent]\nprompt = \"Route the ticket, then fill its fields.\"\n\
         tools = [\"happyfox.move_ticket\", \"happyfox.update_custom_fields\"]\n\
         max_steps = 4\ndeadline = \"20s\"\n"
            .to_string(),
    );
    let app = spawn(&fake, &llm, handler, None).await;
    app.send("happyfox", &webhook, "msg-move-142").await;
    let job = finished_job(&app).await;
    assert_eq!(job.state, JobState::Done, "{:?}", job.last_error);

    // Before the move the model is offered category 3's fields; after it, category 5's.
    let requests = llm.received();
    let field_ids = |i: usize| {
        let fields = &offered(&requests[i].body, "happyfox__update_custom_fields")["properties"]["fields"]
            ["properties"];
        let mut keys: Vec<String> = fields.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        keys
    };
    assert_eq!(field_ids(0), ["21", "22", "25"]);
    assert_eq!(field_ids(1), ["24", "25"]);
    let writes: Vec<String> = fake.writes().iter().map(|w| w.path.clone()).collect();
    assert_eq!(
        writes,
        ["/ticket/142/move/", "/ticket/142/update_custom_fields/"]
    );
    assert_eq!(fake.writes()[1].body["t-cf-24"], 42);
    app.stop().await;
}

/// Runs a bundled handler in dry-run on `fixture` (its ticket also served by the fake) with
/// `script`; returns the fake, the app and the finished job.
async fn bundled(
    handler: &str,
    fixture: &str,
    script: Vec<Reply>,
) -> (FakeHappyfox, FakeLlm, TestApp, JobRecord) {
    let fake = FakeHappyfox::start().await;
    let webhook = std::fs::read(repo_path(&format!("fixtures/happyfox/{fixture}"))).unwrap();
    fake.put_ticket(serde_json::from_slice(&webhook).unwrap());
    let llm = FakeLlm::start(script).await;
    let file = format!("{handler}.toml");
    let text = std::fs::read_to_string(repo_path(&format!("handlers/{file}"))).unwrap();
    let clock = ManualClock::starting_at(chrono::Utc::now());
    let app = spawn(&fake, &llm, (file, text), Some(clock.clone())).await;
    let (status, ack) = app
        .send("happyfox", &webhook, &format!("msg-{handler}"))
        .await;
    assert_eq!(status, reqwest::StatusCode::ACCEPTED, "{ack}");
    clock.advance(Duration::from_secs(3600)); // past any debounce
    let job = finished_job(&app).await;
    assert_eq!(job.state, JobState::Done, "{:?}", job.last_error);
    (fake, llm, app, job)
}

fn intended(run: &StoredRun) -> Vec<(String, Value)> {
    steps(run, "intended_action")
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_string(),
                s["arguments"].clone(),
            )
        })
        .collect()
}

#[tokio::test]
async fn the_bundled_sla_escalation_raises_priority_and_notes_the_breach_in_dry_run() {
    let note = "<p><b>SLA escalation (hookwise)</b></p><p>1 breach (first response, inferred): \
                nobody has answered since the ticket was opened. Unassigned; category agents: \
                Priya Raman. Priority raised High → Urgent. Next: take and answer it now.</p>";
    let (fake, llm, app, _) = bundled(
        "happyfox-sla-escalation",
        "ticket_first_response_breached.json",
        vec![
            calls(&[("c1", "happyfox__get_ticket", json!({"ticket_id": 152}))]),
            calls(&[("c2", "happyfox__list_staff", json!({"category_id": 5}))]),
            calls(&[(
                "c3",
                "happyfox__update_ticket",
                json!({"ticket_id": 152, "priority": 4}),
            )]),
            calls(&[(
                "c4",
                "happyfox__add_private_note",
                json!({"ticket_id": 152, "html": note, "alert": "category"}),
            )]),
            text("Raised ticket 152 to Urgent and left an escalation note."),
        ],
    )
    .await;
    // The seed workflow's actions: priority one level up, one escalation note; nothing sent.
    let run = the_run(&app).await;
    assert_eq!(
        intended(&run),
        [
            (
                "happyfox.update_ticket".to_string(),
                json!({"ticket_id": 152, "priority": 4})
            ),
            (
                "happyfox.add_private_note".to_string(),
                json!({"ticket_id": 152, "html": note, "alert": "category"})
            ),
        ]
    );
    assert!(fake.writes().is_empty());
    let calls = fake.calls();
    assert!(calls.contains(&"GET /ticket/152/".to_string()), "{calls:?}");
    assert!(calls.contains(&"GET /staff/".to_string()), "{calls:?}");
    // Only the handler's four tools were offered, and no tool that can reach the customer.
    let offered: Vec<String> = llm.received()[0].body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(offered.len(), 4, "{offered:?}");
    assert!(!offered.iter().any(|n| n.contains("reply")), "{offered:?}");
    app.stop().await;
}

#[tokio::test]
async fn the_bundled_reply_draft_stores_its_draft_as_a_private_note_in_dry_run() {
    let note = "<p><b>Draft reply (hookwise)</b>: review before sending</p>\
                <p><i>For the agent:</i> [confirm refund reference]</p><hr>\
                <p>Hi Dana, thanks for the details. …</p>";
    let (fake, _llm, app, _) = bundled(
        "happyfox-reply-draft",
        "ticket_customer_replied.json",
        vec![
            calls(&[("c1", "happyfox__get_ticket", json!({"ticket_id": 142}))]),
            calls(&[(
                "c2",
                "happyfox__add_private_note",
                json!({"ticket_id": 142, "html": note}),
            )]),
            text("A draft reply was stored on ticket 142."),
        ],
    )
    .await;
    let run = the_run(&app).await;
    assert_eq!(
        intended(&run),
        [(
            "happyfox.add_private_note".to_string(),
            json!({"ticket_id": 142, "html": note})
        )]
    );
    assert!(fake.writes().is_empty());
    assert_eq!(
        steps(&run, "tool_result")[0]["name"],
        "happyfox.get_ticket",
        "the ticket was read from HappyFox"
    );
    app.stop().await;
}

#[tokio::test]
async fn an_approved_note_is_sent_to_happyfox_once_by_the_real_binary() {
    let (fake, webhook) = new_ticket_142().await;
    let note =
        json!({"ticket_id": 142, "html": "<p>Refund requested twice: check the invoice.</p>"});
    let llm = FakeLlm::start(vec![
        calls(&[("c1", "happyfox__add_private_note", note.clone())]),
        text("A note awaits approval."),
    ])
    .await;
    let handler = (
        "hf-approve.toml".to_string(),
        "name = \"hf-approve\"\non = [\"happyfox.ticket.created\"]\nmode = \"approve\"\nmax_attempts = 1\n\
         [agent]\nprompt = \"Note the ticket.\"\ntools = [\"happyfox.add_private_note\"]\n\
         max_steps = 4\ndeadline = \"20s\"\n"
            .to_string(),
    );
    let app = spawn(&fake, &llm, handler, None).await;
    app.send("happyfox", &webhook, "msg-approve-142").await;
    let job = finished_job(&app).await;
    assert_eq!(job.state, JobState::Done, "{:?}", job.last_error);
    assert!(fake.writes().is_empty(), "held, not sent");
    let held = app
        .store
        .list_approvals(&hookwise::store::ApprovalFilter::default())
        .await
        .unwrap();
    assert_eq!(held.len(), 1);
    let id = held[0].id.to_string();

    // Off the test's thread: the fake HappyFox answers on this runtime while the binary runs.
    let approve = || {
        let (config, id) = (app.config_path.clone(), id.clone());
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_hookwise"))
                .arg("--config")
                .arg(config)
                .args(["approvals", "approve", &id])
                .output()
                .unwrap()
        })
    };
    let out = approve().await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let writes = fake.writes();
    assert_eq!(writes.len(), 1);
    assert_eq!(writes[0].path, "/ticket/142/staff_pvtnote/");
    assert_eq!(writes[0].body["staff"], BOT_STAFF_ID);
    assert_eq!(writes[0].body["html"], note["html"]);
    // Approving again sends nothing: the approval is no longer pending.
    let again = approve().await.unwrap();
    assert!(!again.status.success());
    assert_eq!(fake.writes().len(), 1, "HappyFox received the note once");
    // The journal holds the write under the agent's key.
    let actions = app.store.list_actions(job.id).await.unwrap();
    assert_eq!(actions.len(), 1);
    assert_eq!(actions[0].key, held[0].request.idempotency_key);
    assert_eq!(actions[0].status, Some(200));
    app.stop().await;
}
