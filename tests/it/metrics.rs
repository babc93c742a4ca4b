//! `GET /metrics` after one HappyFox ticket went the whole way (webhook, job, agent, fake model,
//! fake HappyFox): every counter moved by exactly what happened, and nothing secret shows.

use crate::support::fake_happyfox::FakeHappyfox;
use crate::support::fake_llm::{FakeLlm, llm_table, openai_calls, openai_text};
use crate::support::*;
use hookwise::store::{JobFilter, JobState};
use std::time::Duration;

const TOKEN: &str = "metrics-test-api-token-5c1d";
const NOTE: &str = r#"{"ticket_id": 142, "html": "<p>Looking into the double charge.</p>"}"#;

/// The value of the sample whose name and labels are exactly `series`, or None.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.parse().unwrap())
}

#[tokio::test]
async fn metrics_count_exactly_what_one_ticket_caused() {
    let hf = FakeHappyfox::start().await;
    let ticket = std::fs::read(repo_path("fixtures/happyfox/ticket_created.json")).unwrap();
    hf.put_ticket(serde_json::from_slice(&ticket).unwrap());
    // Step 0: a note (sent) and a tool the handler does not allow (refused); step 1: arguments
    // that break the schema (refused); step 2: done.
    let llm = FakeLlm::start(vec![
        openai_calls(&[
            ("c1", "happyfox__add_private_note", NOTE),
            ("c2", "happyfox__reply_to_customer", NOTE),
        ]),
        openai_calls(&[("c3", "happyfox__add_private_note", r#"{"ticket_id": "x"}"#)]),
        openai_text("Noted."),
    ])
    .await;
    let app = TestApp::spawn_with(Options {
        top_config: format!("api_token = \"{TOKEN}\""),
        handlers: vec![(
            "triage.toml".into(),
            r#"name = "triage"
on = ["happyfox.ticket.*"]
mode = "live"
max_attempts = 1
[agent]
prompt = "Add a private note."
tools = ["happyfox.add_private_note"]
max_steps = 5
deadline = "20s"
"#
            .into(),
        )],
        extra_config: format!(
            "[scheduler]\npoll_interval = \"10ms\"\n\n{}\n{}",
            llm_table(&llm.url),
            hf.account_toml("acme", Some(7), "")
        ),
        ..Options::default()
    })
    .await;

    let (status, _) = app.send("happyfox", &ticket, "msg_metrics_1").await;
    assert_eq!(status, 202);
    let (status, _) = app.send("happyfox", &ticket, "msg_metrics_1").await;
    assert_eq!(status, 200, "the sender's retry is a duplicate");
    let forged = app
        .signed_request("happyfox", &ticket, "msg_metrics_2")
        .body(b"{\"id\": 1}".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    let unknown = app
        .client
        .post(format!("{}/webhooks/nosuchsource", app.url))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);

    eventually("the job is done", Duration::from_secs(20), || async {
        let jobs = app.store.list_jobs(&JobFilter::default()).await.unwrap();
        jobs.iter().any(|j| j.state == JobState::Done)
    })
    .await;

    let scrape = |token: Option<&str>| {
        let mut request = app.client.get(format!("{}/metrics", app.url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    assert_eq!(
        scrape(None).await.unwrap().status(),
        401,
        "behind api_token"
    );
    let response = scrape(Some(TOKEN)).await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text"),
    );
    let text = response.text().await.unwrap();
    let get =
        |series: &str| sample(&text, series).unwrap_or_else(|| panic!("no {series} in\n{text}"));

    // Webhooks by outcome; an unknown source is counted without its (unbounded) name.
    for (series, n) in [
        (
            "hookwise_webhooks_received_total{source=\"happyfox\",outcome=\"accepted\"}",
            1.0,
        ),
        (
            "hookwise_webhooks_received_total{source=\"happyfox\",outcome=\"duplicate\"}",
            1.0,
        ),
        (
            "hookwise_webhooks_received_total{source=\"happyfox\",outcome=\"bad_signature\"}",
            1.0,
        ),
        (
            "hookwise_webhooks_received_total{source=\"\",outcome=\"unknown_source\"}",
            1.0,
        ),
        ("hookwise_ingest_duration_seconds_count", 2.0),
        ("hookwise_ingest_batch_size_count", 2.0),
        ("hookwise_debounce_folds_total", 0.0),
        ("hookwise_job_claims_total", 1.0),
        (
            "hookwise_runs_total{handler=\"triage\",outcome=\"done\"}",
            1.0,
        ),
        (
            "hookwise_run_duration_seconds_count{handler=\"triage\"}",
            1.0,
        ),
        ("hookwise_agent_steps_total{handler=\"triage\"}", 3.0),
        (
            "hookwise_tool_refusals_total{handler=\"triage\",reason=\"out_of_scope\"}",
            1.0,
        ),
        (
            "hookwise_tool_refusals_total{handler=\"triage\",reason=\"invalid_arguments\"}",
            1.0,
        ),
        ("hookwise_journal_writes_total{outcome=\"sent\"}", 1.0),
        ("hookwise_approvals_pending", 0.0),
        ("hookwise_jobs_oldest_due_lag_seconds", 0.0),
    ] {
        assert_eq!(get(series), n, "{series}");
    }
    // Three model requests; the fake reports 100+100+50 input and 20+20+10 output tokens.
    let genai = "gen_ai_operation_name=\"chat\",gen_ai_provider_name=\"openai\",gen_ai_request_model=\"test-model\"";
    assert_eq!(
        get(&format!(
            "gen_ai_client_operation_duration_seconds_count{{{genai},error_type=\"\"}}"
        )),
        3.0
    );
    assert_eq!(
        get(&format!(
            "gen_ai_client_token_usage_sum{{{genai},gen_ai_token_type=\"input\"}}"
        )),
        250.0
    );
    assert_eq!(
        get(&format!(
            "gen_ai_client_token_usage_sum{{{genai},gen_ai_token_type=\"output\"}}"
        )),
        50.0
    );
    // Upstream calls: as many 2xx as the fake HappyFox answered, one of them the POST.
    let received = hf.received();
    let posts = received.iter().filter(|r| r.method == "POST").count() as f64;
    let gets = received.iter().filter(|r| r.method == "GET").count() as f64;
    assert_eq!(posts, 1.0, "one note reached HappyFox");
    let calls = |method: &str| {
        sample(
            &text,
            &format!("hookwise_upstream_calls_total{{account=\"acme\",connector=\"happyfox\",method=\"{method}\",status_class=\"2xx\"}}"),
        )
        .unwrap_or(0.0)
    };
    assert_eq!((calls("POST"), calls("GET")), (posts, gets));
    // A finished queue reports nothing waiting: no job series at all.
    assert!(!text.contains("hookwise_jobs{"), "{text}");
    for secret in [TOKEN, HAPPYFOX_SECRET, "test-key"] {
        assert!(!text.contains(secret), "{secret} leaked into /metrics");
    }
    app.stop().await;
}
