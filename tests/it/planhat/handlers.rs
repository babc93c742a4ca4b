//! The bundled Planhat handlers end to end, as shipped (dry-run): a fixture webhook is ingested,
//! the debounced job runs as an agent with the scripted fake LLM calling the real Planhat tools
//! against the fake Planhat, and the run produces what the seed workflow describes: reads reach
//! the fake, the one task is recorded as an intended action and never sent.

use super::{ANA, ATELIERS, CLAIRE, MARIA, NORTHWIND, account};
use crate::support::fake_llm::{FakeLlm, Reply};
use crate::support::fake_planhat::{FakePlanhat, TOKEN};
use crate::support::*;
use hookwise::kernel::clock::ManualClock;
use hookwise::store::{JobFilter, JobState, RunFilter, StoredRun};
use serde_json::{Value, json};
use std::time::Duration;

/// One model turn calling tools: (wire name, arguments).
fn calls(list: &[(&str, Value)]) -> Reply {
    let tool_calls: Vec<Value> = list
        .iter()
        .enumerate()
        .map(|(n, (name, args))| {
            json!({"id": format!("call_{name}_{n}"), "type": "function",
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

fn text(answer: &str) -> Reply {
    Reply::ok(json!({
        "id": "chatcmpl-test", "object": "chat.completion", "created": 1, "model": "test-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 50, "completion_tokens": 10, "total_tokens": 60}
    }))
}

struct Ran {
    fake: FakePlanhat,
    llm: FakeLlm,
    run: StoredRun,
}

impl Ran {
    fn steps(&self, kind: &str) -> Vec<&Value> {
        let steps = self.run.run.steps.as_array().unwrap();
        steps.iter().filter(|s| s["type"] == kind).collect()
    }

    /// Everything the model was told after its `n`th turn (tool results included).
    fn seen_by_model(&self, n: usize) -> String {
        self.llm.received()[n].body["messages"].to_string()
    }
}

/// Ingests `fixture` for the bundled `handler`, lets its debounce pass, and waits for the run.
async fn run_bundled(handler: &str, fixture: &str, debounce: Duration, script: Vec<Reply>) -> Ran {
    let fake = FakePlanhat::start().await;
    let llm = FakeLlm::start(script).await;
    let clock = ManualClock::starting_at(chrono::Utc::now());
    let file = format!("{handler}.toml");
    let text = std::fs::read_to_string(repo_path(&format!("handlers/{file}"))).unwrap();
    let app = TestApp::spawn_with(Options {
        clock: Some(clock.clone()),
        handlers: vec![(file, text)],
        extra_config: format!(
            "{}\n[scheduler]\npoll_interval = \"10ms\"\n\n[llm]\nprovider = \"openai\"\nbase_url = \"{}/v1\"\napi_key = \"test-key\"\nmodel = \"test-model\"\n",
            account(&fake.url, TOKEN),
            llm.url
        ),
        ..Options::default()
    })
    .await;
    let body = std::fs::read(repo_path(fixture)).unwrap();
    let (status, ack) = app.send("planhat", &body, fixture).await;
    assert_eq!(status, 202, "{ack}");
    clock.advance(debounce + Duration::from_secs(1));

    let started = std::time::Instant::now();
    let job = loop {
        let jobs = app.store.list_jobs(&JobFilter::default()).await.unwrap();
        if let Some(job) = jobs
            .into_iter()
            .find(|j| matches!(j.state, JobState::Done | JobState::Dead))
        {
            break job;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the job did not finish"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(job.state, JobState::Done, "{:?}", job.last_error);
    let mut runs = app.store.list_runs(&RunFilter::default()).await.unwrap();
    assert_eq!(runs.len(), 1);
    let run = runs.pop().unwrap();
    assert_eq!(run.run.mode, "dry-run");
    assert_eq!(run.run.outcome, "done");
    app.stop().await;
    Ran { fake, llm, run }
}

#[tokio::test]
async fn nps_detractor_gathers_context_and_records_one_owner_task() {
    let wrong = json!({"mainType": "task", "companyId": MARIA, "action": "NPS 4 from Maria Lindqvist: follow up"});
    let task = json!({
        "mainType": "task",
        "companyId": NORTHWIND,
        "ownerId": ANA,
        "endusers": [MARIA],
        "action": "NPS 4 from Maria Lindqvist: follow up",
        "description": "<p><b>NPS 4</b> from Maria Lindqvist (Head of Operations, primary contact): \"Reporting exports keep timing out and support took three days to answer.\"</p><ul><li>Customer, Adoption, health 4 (down 2), ARR 50,400, renews in 361 days</li><li>Open ticket: Report export times out (High)</li></ul><p>Follow up within 5 business days.</p>"
    });
    let ran = run_bundled(
        "planhat-nps-detractor",
        "fixtures/planhat/nps_submitted.json",
        Duration::from_secs(5 * 60),
        vec![
            calls(&[("planhat__get_company", json!({"companyId": NORTHWIND}))]),
            calls(&[
                (
                    "planhat__list_nps",
                    json!({"companyId": NORTHWIND, "limit": 20}),
                ),
                ("planhat__list_endusers", json!({"companyId": NORTHWIND})),
                (
                    "planhat__list_tickets",
                    json!({"companyId": NORTHWIND, "openOnly": true}),
                ),
                ("planhat__list_users", json!({"userId": ANA})),
            ]),
            // The model confuses the respondent's id with the company's: refused, it corrects.
            calls(&[("planhat__create_task", wrong)]),
            calls(&[("planhat__create_task", task.clone())]),
            text("Created one task for Ana Sousa: NPS 4 from Maria Lindqvist: follow up."),
        ],
    )
    .await;

    let intended = ran.steps("intended_action");
    assert_eq!(intended.len(), 1, "exactly one task");
    assert_eq!(intended[0]["name"], "planhat.create_task");
    assert_eq!(intended[0]["arguments"], task);
    let errors = ran.steps("tool_error");
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0]["error"]
            .as_str()
            .unwrap()
            .contains("is not a Planhat company"),
        "{}",
        errors[0]
    );
    assert!(ran.steps("refused").is_empty());

    // What the model worked from came from Planhat.
    assert!(ran.seen_by_model(1).contains("Northwind Logistics"));
    let context = ran.seen_by_model(2);
    for fact in [
        "Reporting exports keep timing out",
        "Head of Operations",
        "Report export times out",
        "ana.sousa@vendor.example",
    ] {
        assert!(context.contains(fact), "the model saw {fact:?}");
    }

    assert!(
        ran.fake.writes().is_empty(),
        "dry-run sends nothing: {:?}",
        ran.fake.lines()
    );
    assert_eq!(
        ran.fake.lines(),
        [
            format!("GET /companies/{NORTHWIND}"),
            "GET /nps?limit=200&offset=0&sort=-dateAnswered".to_string(),
            format!("GET /endusers?limit=100&offset=0&companyId={NORTHWIND}"),
            format!("GET /tickets?limit=100&offset=0&sort=-createDate&companyId={NORTHWIND}"),
            "GET /users?limit=500&offset=0".to_string(),
            // The check of the refused task, then of the recorded one.
            format!("GET /companies/{MARIA}"),
            format!("GET /companies/{NORTHWIND}"),
            format!("GET /users/{ANA}"),
            format!("GET /endusers/{MARIA}"),
        ]
    );
}

#[tokio::test]
async fn renewal_risk_weighs_the_evidence_and_records_one_owner_task() {
    let task = json!({
        "mainType": "task",
        "companyId": ATELIERS,
        "ownerId": CLAIRE,
        "action": "Renewal risk (high): Ateliers du Rhône, renews in 45 days",
        "description": "<p><b>Risk: high</b> (confidence medium)</p><ul><li>Health 4, down 2</li><li>2 open High tickets: invoice export, SSO login loop</li><li>Issues in progress: Large exports time out; SAML login loop</li><li>NPS 5 in October, down from 8</li></ul><p>ARR at stake: 35,400. Actions: fix plan for exports, executive check-in.</p>"
    });
    let ran = run_bundled(
        "planhat-renewal-risk",
        "fixtures/planhat/company_renewal_at_risk.json",
        Duration::from_secs(30 * 60),
        vec![
            calls(&[("planhat__get_company", json!({"companyId": ATELIERS}))]),
            calls(&[
                ("planhat__list_tasks", json!({"companyId": ATELIERS, "titleContains": "Renewal risk"})),
                ("planhat__list_tickets", json!({"companyId": ATELIERS})),
                ("planhat__list_issues", json!({"companyId": ATELIERS})),
                ("planhat__list_nps", json!({"companyId": ATELIERS})),
                ("planhat__list_users", json!({"userId": CLAIRE})),
            ]),
            calls(&[("planhat__create_task", task.clone())]),
            text("High risk: two open High tickets and a falling NPS 45 days before renewal; task created for Claire Dubois."),
        ],
    )
    .await;

    let intended = ran.steps("intended_action");
    assert_eq!(intended.len(), 1);
    assert_eq!(intended[0]["arguments"], task);
    assert!(ran.steps("tool_error").is_empty() && ran.steps("refused").is_empty());
    let context = ran.seen_by_model(2);
    for fact in [
        "Invoice export fails at month-end",
        "SAML login loop with Azure AD",
        "Invoice exports fail every month-end",
        "claire.dubois@vendor.example",
        "\\\"count\\\":0",
    ] {
        assert!(context.contains(fact), "the model saw {fact:?}");
    }
    assert!(ran.fake.writes().is_empty(), "dry-run sends nothing");
    assert_eq!(
        ran.fake.lines(),
        [
            format!("GET /companies/{ATELIERS}"),
            format!("GET /tasks?limit=100&offset=0&sort=-createdAt&companyId={ATELIERS}"),
            format!("GET /tickets?limit=100&offset=0&sort=-createDate&companyId={ATELIERS}"),
            "GET /issues?limit=200&offset=0&sort=-createdAt".to_string(),
            "GET /nps?limit=200&offset=0&sort=-dateAnswered".to_string(),
            "GET /users?limit=500&offset=0".to_string(),
            format!("GET /companies/{ATELIERS}"),
            format!("GET /users/{CLAIRE}"),
        ]
    );
}
