//! Truto as a tool source against the fake Truto: tools loaded from an integrated account's
//! `/tools` endpoint at start-up, executed on the proxy API for the job's own account, an
//! unreachable Truto leaving only its tools out, and the handler allow-list deciding what a run
//! may call.

use crate::support::fake_llm::{FakeLlm, Reply};
use crate::support::fake_truto::{API_KEY, FakeTruto, happyfox_tools};
use crate::support::registry::{Tools, context};
use crate::support::*;
use hookwise::store::{JobFilter, JobState, RunFilter};
use hookwise::tools::ToolError;
use serde_json::{Value, json};
use std::time::Duration;

const IA: &str = "0f6b3c2e-4d5a-4e8f-9a1b-7c6d5e4f3a21";
const IA_US: &str = "7a1c9e55-2b0d-4f7e-8c3a-1d2e3f4a5b6c";

fn account(name: &str, url: &str, key: &str, integrated_account: &str) -> String {
    format!(
        "[accounts.{name}]\nconnector = \"truto\"\nbase_url = \"{url}\"\napi_key = \"{key}\"\nintegrated_account_id = \"{integrated_account}\"\n"
    )
}

fn truto_names(tools: &Tools) -> Vec<String> {
    tools
        .names()
        .into_iter()
        .filter(|n| n.starts_with("truto."))
        .collect()
}

#[tokio::test]
async fn tools_are_loaded_from_the_tools_endpoint_and_run_on_the_proxy_api() {
    // Two per page: the list is followed through its cursor.
    let fake = FakeTruto::start(vec![(IA, happyfox_tools())], 2).await;
    let tools = Tools::new(&account("hf", &fake.url, API_KEY, IA)).await;
    assert_eq!(
        truto_names(&tools),
        [
            "truto.create_a_happy_fox_private_note",
            "truto.delete_a_happy_fox_ticket_by_id",
            "truto.get_single_happy_fox_ticket_by_id",
            "truto.list_all_happy_fox_tickets",
            "truto.update_a_happyfox_ticket_s_status",
        ],
        "sanitized to [a-z0-9_]; the nameless definition is skipped"
    );
    assert_eq!(
        fake.lines(),
        [
            format!("GET /integrated-account/{IA}/tools"),
            format!("GET /integrated-account/{IA}/tools?next_cursor=2"),
            format!("GET /integrated-account/{IA}/tools?next_cursor=4"),
        ]
    );
    assert_eq!(
        fake.received()[0].headers["authorization"],
        format!("Bearer {API_KEY}")
    );

    let names = truto_names(&tools);
    let scoped = tools.registry.scoped(&names);
    let entry = |n: &str| scoped.get(&format!("truto__{n}")).unwrap();
    let writes: Vec<bool> = names
        .iter()
        .map(|n| entry(n.strip_prefix("truto.").unwrap()).tool.writes())
        .collect();
    assert_eq!(
        writes,
        [true, true, false, false, true],
        "by method: only list and get read"
    );
    let list = &entry("list_all_happy_fox_tickets").parameters;
    assert_eq!(list["additionalProperties"], false);
    let props: Vec<&String> = list["properties"].as_object().unwrap().keys().collect();
    assert_eq!(props, ["category", "limit", "next_cursor", "status"]);
    assert_eq!(
        entry("get_single_happy_fox_ticket_by_id").parameters["required"],
        json!(["id"])
    );

    let ticket = tools
        .call_as(
            "hf",
            "truto.get_single_happy_fox_ticket_by_id",
            json!({"id": "143"}),
        )
        .await
        .unwrap();
    assert_eq!(ticket["subject"], "Cannot log in after password reset");
    let status = tools
        .call_as(
            "hf",
            "truto.update_a_happyfox_ticket_s_status",
            json!({"id": 143, "status": 3}),
        )
        .await
        .unwrap();
    assert_eq!(status["status"], 3);
    let sent = fake.received();
    assert_eq!(
        sent[3].line(),
        format!("GET /proxy/tickets/143?integrated_account_id={IA}")
    );
    assert_eq!(
        sent[4].line(),
        format!("PATCH /proxy/tickets/143?integrated_account_id={IA}")
    );
    assert_eq!(sent[4].body, json!({"status": 3}));
}

#[tokio::test]
async fn an_unreachable_or_refusing_truto_leaves_its_tools_out_and_start_up_continues() {
    // A port nothing listens on.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let tools = Tools::new(&account("hf", &closed, API_KEY, IA)).await;
    assert!(truto_names(&tools).is_empty());
    assert!(
        tools.names().iter().any(|n| n == "planhat.get_company"),
        "other tools stay"
    );

    let fake = FakeTruto::start(vec![(IA, happyfox_tools())], 50).await;
    let tools = Tools::new(&account("hf", &fake.url, "wrong-key", IA)).await;
    assert!(truto_names(&tools).is_empty());
    assert_eq!(
        fake.lines(),
        [format!("GET /integrated-account/{IA}/tools")]
    );

    // The whole service starts too.
    let app = TestApp::spawn_with(Options {
        extra_config: account("hf", &closed, API_KEY, IA),
        ..Options::default()
    })
    .await;
    let health = app
        .client
        .get(format!("{}/healthz", app.url))
        .send()
        .await
        .unwrap();
    assert!(health.status().is_success());
    app.stop().await;
}

#[tokio::test]
async fn accounts_listing_the_same_tool_share_it_and_each_job_uses_its_own() {
    let mut us_tools = happyfox_tools();
    us_tools[0]["query_schema"]["properties"]["priority"] = json!({"type": "string"});
    let fake = FakeTruto::start(vec![(IA, happyfox_tools()), (IA_US, us_tools)], 50).await;
    let config = format!(
        "{}{}",
        account("hf-eu", &fake.url, API_KEY, IA),
        account("hf-us", &fake.url, API_KEY, IA_US)
    );
    let tools = Tools::new(&config).await;
    assert_eq!(
        truto_names(&tools).len(),
        5,
        "one tool per name, not per account"
    );

    tools
        .call_as(
            "hf-eu",
            "truto.list_all_happy_fox_tickets",
            json!({"status": "pending"}),
        )
        .await
        .unwrap();
    let scoped = tools
        .registry
        .scoped(&["truto.list_all_happy_fox_tickets".to_string()]);
    let tool = &scoped
        .get("truto__list_all_happy_fox_tickets")
        .unwrap()
        .tool;
    // The run's schema is the job's account's.
    let us = tool
        .live_parameters(&context("hf-us"))
        .await
        .unwrap()
        .unwrap();
    assert!(us["properties"].get("priority").is_some());
    let listed = tool
        .call(&context("hf-us"), json!({"priority": "high", "limit": 5}))
        .await
        .unwrap();
    assert_eq!(listed["result"][0]["account"], IA_US);
    let lines = fake.lines();
    assert_eq!(
        lines[2..],
        [
            format!("GET /proxy/tickets?status=pending&integrated_account_id={IA}"),
            format!("GET /proxy/tickets?priority=high&limit=5&integrated_account_id={IA_US}"),
        ]
    );
    // A job of an account that does not list the tool cannot use it.
    match tool.call(&context("northwind"), json!({})).await {
        Err(ToolError::Rejected(e)) => {
            assert!(e.contains("not available to account northwind"), "{e}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn calls(list: &[(&str, Value)]) -> Reply {
    let tool_calls: Vec<Value> = list
        .iter()
        .enumerate()
        .map(|(n, (name, args))| {
            json!({"id": format!("call_{n}"), "type": "function",
                   "function": {"name": name, "arguments": args.to_string()}})
        })
        .collect();
    Reply::ok(json!({
        "id": "chatcmpl-test", "object": "chat.completion", "created": 1, "model": "test-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": null, "tool_calls": tool_calls},
                     "finish_reason": "tool_calls"}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}
    }))
}

#[tokio::test]
async fn a_run_executes_allow_listed_truto_tools_and_refuses_the_rest() {
    let fake = FakeTruto::start(vec![(IA, happyfox_tools())], 50).await;
    let note = json!({"ticket_id": 143, "text": "<p>Login loop after reset: known issue, workaround sent.</p>"});
    let llm = FakeLlm::start(vec![
        calls(&[
            ("truto__list_all_happy_fox_tickets", json!({"status": "pending"})),
            ("truto__delete_a_happy_fox_ticket_by_id", json!({"id": "143"})),
        ]),
        calls(&[("truto__create_a_happy_fox_private_note", note.clone())]),
        Reply::ok(json!({
            "id": "chatcmpl-test", "object": "chat.completion", "created": 1, "model": "test-model",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Noted."}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 50, "completion_tokens": 10, "total_tokens": 60}
        })),
    ])
    .await;
    let handler = r#"name = "truto-notes"
on = ["multi.work"]
mode = "live"
max_attempts = 1
[agent]
prompt = "Read the pending tickets and leave a private note."
tools = ["truto.list_all_happy_fox_tickets", "truto.create_a_happy_fox_private_note"]
max_steps = 5
deadline = "20s"
"#;
    let app = TestApp::spawn_with(Options {
        handlers: vec![("truto-notes.toml".into(), handler.into())],
        extra_config: format!(
            "{}\n[scheduler]\npoll_interval = \"10ms\"\n\n[llm]\nprovider = \"openai\"\nbase_url = \"{}/v1\"\napi_key = \"test-key\"\nmodel = \"test-model\"\n",
            account("hf-truto", &fake.url, API_KEY, IA),
            llm.url
        ),
        ..Options::default()
    })
    .await;
    let body = serde_json::to_vec(&json!({"account": "hf-truto", "subject": "143"})).unwrap();
    let (status, _) = app.send("multi", &body, "truto-run-1").await;
    assert_eq!(status, 202);
    eventually("the job to finish", Duration::from_secs(20), || async {
        let jobs = app.store.list_jobs(&JobFilter::default()).await.unwrap();
        jobs.iter()
            .any(|j| matches!(j.state, JobState::Done | JobState::Dead))
    })
    .await;
    let jobs = app.store.list_jobs(&JobFilter::default()).await.unwrap();
    assert_eq!(jobs[0].state, JobState::Done, "{:?}", jobs[0].last_error);

    let offered: Vec<String> = llm.received()[0].body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        offered,
        [
            "truto__list_all_happy_fox_tickets",
            "truto__create_a_happy_fox_private_note"
        ]
    );
    let runs = app.store.list_runs(&RunFilter::default()).await.unwrap();
    let steps = runs[0].run.steps.as_array().unwrap();
    let refused: Vec<&Value> = steps.iter().filter(|s| s["type"] == "refused").collect();
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0]["name"], "truto.delete_a_happy_fox_ticket_by_id");
    assert!(
        llm.received()[1].body["messages"]
            .to_string()
            .contains("Cannot log in after password reset")
    );

    let lines = fake.lines();
    assert_eq!(
        lines,
        [
            format!("GET /integrated-account/{IA}/tools"),
            format!("GET /proxy/tickets?status=pending&integrated_account_id={IA}"),
            format!("POST /proxy/private_notes?integrated_account_id={IA}"),
        ],
        "the refused delete never reached Truto"
    );
    assert_eq!(fake.received()[2].body, note);
    app.stop().await;
}
