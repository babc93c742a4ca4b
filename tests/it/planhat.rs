//! The Planhat connector against the fake Planhat: every tool's exact requests and trimmed
//! answers, the checks that keep bad writes from being sent (custom field keys, ids of the wrong
//! kind), error bodies reaching the model, and the rate limit. `handlers` runs the bundled
//! Planhat handlers end to end.

mod handlers;

use crate::support::fake_planhat::{Failure, FakePlanhat, TOKEN};
use crate::support::registry::Tools;
use hookwise::tools::ToolError;
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;

pub const NORTHWIND: &str = "64b7e2f09a1c3d5e7f802a11";
pub const ATELIERS: &str = "64e5b8c29d1f3a6e7b0c5d91";
const BRIGHTPATH: &str = "65a1d3c5e7f9a1b3c5d7e9f1";
pub const ANA: &str = "5f8a1b2c3d4e5f6a7b8c9d01";
const JONAS: &str = "5f8a1b2c3d4e5f6a7b8c9d02";
pub const CLAIRE: &str = "5f8a1b2c3d4e5f6a7b8c9d07";
const SAM_REMOVED: &str = "5f8a1b2c3d4e5f6a7b8c9d09";
pub const MARIA: &str = "64c0a8d27b3e4f1a9c5d6e01";
const JOY_OF_BRIGHTPATH: &str = "65a1d3c5e7f9a1b3c5d7ea02";
const OPPORTUNITY: &str = "6715ee01a2b3c4d5e6f71101";

pub fn account(url: &str, token: &str) -> String {
    format!(
        "[accounts.northwind]\nconnector = \"planhat\"\nbase_url = \"{url}\"\ntoken = \"{token}\"\n"
    )
}

async fn setup() -> (FakePlanhat, Tools) {
    let fake = FakePlanhat::start().await;
    let tools = Tools::new(&account(&fake.url, TOKEN)).await;
    (fake, tools)
}

async fn call(tools: &Tools, tool: &str, args: Value) -> Result<Value, ToolError> {
    tools.call_as("northwind", tool, args).await
}

fn rejected(result: Result<Value, ToolError>) -> String {
    match result {
        Err(ToolError::Rejected(e)) => e,
        Err(e @ ToolError::Refused { .. }) => e.to_string(),
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[tokio::test]
async fn every_tool_is_registered_and_writes_are_marked() {
    let (_fake, tools) = setup().await;
    let planhat: Vec<String> = tools
        .names()
        .into_iter()
        .filter(|n| n.starts_with("planhat."))
        .collect();
    assert_eq!(
        planhat,
        [
            "planhat.create_churn",
            "planhat.create_task",
            "planhat.get_company",
            "planhat.list_custom_fields",
            "planhat.list_endusers",
            "planhat.list_issues",
            "planhat.list_nps",
            "planhat.list_tasks",
            "planhat.list_tickets",
            "planhat.list_users",
            "planhat.update_opportunity",
        ]
    );
    let scoped = tools.registry.scoped(&planhat);
    for name in &planhat {
        let writes = scoped.get(&name.replace('.', "__")).unwrap().tool.writes();
        let expected = name.contains("create_") || name.contains("update_");
        assert_eq!(writes, expected, "{name}");
    }
}

#[tokio::test]
async fn get_company_reads_one_company_with_the_bearer_token_and_trims_it() {
    let (fake, tools) = setup().await;
    let c = call(
        &tools,
        "planhat.get_company",
        json!({"companyId": NORTHWIND}),
    )
    .await
    .unwrap();
    assert_eq!(c["name"], "Northwind Logistics");
    assert_eq!(c["owner"], ANA);
    assert_eq!(c["renewalDaysFromNow"], 361);
    assert_eq!(c["custom"]["Segment"], "Mid-Market");
    assert!(c.get("__v").is_none() && c.get("usage").is_none(), "{c}");
    let sent = &fake.received()[0];
    assert_eq!(sent.line(), format!("GET /companies/{NORTHWIND}"));
    assert_eq!(sent.headers["authorization"], format!("Bearer {TOKEN}"));

    // By external id, as the reference documents for companies.
    let c = call(
        &tools,
        "planhat.get_company",
        json!({"companyId": "extid-acct-10442"}),
    )
    .await
    .unwrap();
    assert_eq!(c["_id"], NORTHWIND);
    assert_eq!(fake.lines()[1], "GET /companies/extid-acct-10442");

    // A list-style owner object still reaches the model as an id string.
    let c = call(
        &tools,
        "planhat.get_company",
        json!({"companyId": BRIGHTPATH}),
    )
    .await
    .unwrap();
    assert_eq!(c["owner"], SAM_REMOVED);

    let missing = rejected(call(&tools, "planhat.get_company", json!({"companyId": MARIA})).await);
    assert!(
        missing.contains("no company") && missing.contains("Item not found"),
        "{missing}"
    );
    assert!(
        !tools
            .violations("planhat.get_company", &json!({"companyId": "Northwind"}))
            .is_empty()
    );
}

#[tokio::test]
async fn a_refused_token_is_a_permanent_failure() {
    let fake = FakePlanhat::start().await;
    let tools = Tools::new(&account(&fake.url, "not-the-token")).await;
    match call(
        &tools,
        "planhat.get_company",
        json!({"companyId": NORTHWIND}),
    )
    .await
    {
        Err(ToolError::Permanent(e)) => {
            assert!(e.contains("401") && e.contains("Unauthorized"), "{e}")
        }
        other => panic!("expected a permanent failure, got {other:?}"),
    }
    assert_eq!(fake.received()[0].status, 401);
}

#[tokio::test]
async fn list_nps_filters_by_company_score_and_date_itself() {
    let (fake, tools) = setup().await;
    let r = call(
        &tools,
        "planhat.list_nps",
        json!({"companyId": NORTHWIND, "maxScore": 6}),
    )
    .await
    .unwrap();
    assert_eq!(r["count"], 1, "{r}");
    let nps = &r["responses"][0];
    assert_eq!(nps["score"], 4);
    assert_eq!(nps["cId"], NORTHWIND);
    assert_eq!(
        nps["comment"],
        "Reporting exports keep timing out and support took three days to answer."
    );
    assert_eq!(r["more_may_exist"], false);
    // The company filter's parameter name is unconfirmed: none is sent, hookwise filters.
    assert_eq!(
        fake.lines(),
        ["GET /nps?limit=200&offset=0&sort=-dateAnswered"]
    );

    // Newest first, so the scan stops at the first answer older than the window.
    let r = call(
        &tools,
        "planhat.list_nps",
        json!({"answeredAfter": "2024-10-01"}),
    )
    .await
    .unwrap();
    let scores: Vec<&Value> = r["responses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| &n["score"])
        .collect();
    assert_eq!(scores, [&json!(4), &json!(9), &json!(5)]);
    assert_eq!(
        (r["scanned"].clone(), r["more_may_exist"].clone()),
        (json!(4), json!(false))
    );

    let r = call(
        &tools,
        "planhat.list_nps",
        json!({"email": "TOM.BERG@northwind-logistics.example", "minScore": 9}),
    )
    .await
    .unwrap();
    assert_eq!(r["count"], 1);
    assert!(
        !tools
            .violations("planhat.list_nps", &json!({"maxScore": 11}))
            .is_empty()
    );
}

#[tokio::test]
async fn list_tasks_tickets_and_issues_filter_by_company() {
    let (fake, tools) = setup().await;
    let tasks = call(
        &tools,
        "planhat.list_tasks",
        json!({"companyId": NORTHWIND}),
    )
    .await
    .unwrap();
    assert_eq!(tasks["count"], 1, "archived tasks are left out: {tasks}");
    assert_eq!(tasks["tasks"][0]["action"], "Quarterly business review");
    assert_eq!(tasks["tasks"][0]["description"], "Prepare the QBR deck.");
    let earlier = call(
        &tools,
        "planhat.list_tasks",
        json!({"companyId": ATELIERS, "includeArchived": true, "titleContains": "renewal RISK"}),
    )
    .await
    .unwrap();
    assert_eq!(earlier["count"], 1);

    let tickets = call(
        &tools,
        "planhat.list_tickets",
        json!({"companyId": ATELIERS, "openOnly": true}),
    )
    .await
    .unwrap();
    let subjects: Vec<&str> = tickets["tickets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["subject"].as_str().unwrap())
        .collect();
    assert_eq!(
        subjects,
        ["Invoice export fails at month-end", "SSO login loop"]
    );
    let northwind = call(
        &tools,
        "planhat.list_tickets",
        json!({"companyId": NORTHWIND, "status": "open"}),
    )
    .await
    .unwrap();
    assert_eq!(
        northwind["tickets"][0]["endusers"],
        json!([{"id": MARIA, "name": "Maria Lindqvist"}])
    );

    let issues = call(
        &tools,
        "planhat.list_issues",
        json!({"companyId": ATELIERS, "openOnly": true}),
    )
    .await
    .unwrap();
    assert_eq!(issues["count"], 2, "{issues}");
    assert_eq!(issues["issues"][0]["title"], "Large exports time out");

    assert_eq!(
        fake.lines(),
        [
            format!("GET /tasks?limit=100&offset=0&sort=-createdAt&companyId={NORTHWIND}"),
            format!("GET /tasks?limit=100&offset=0&sort=-createdAt&companyId={ATELIERS}"),
            format!("GET /tickets?limit=100&offset=0&sort=-createDate&companyId={ATELIERS}"),
            format!("GET /tickets?limit=100&offset=0&sort=-createDate&companyId={NORTHWIND}"),
            // Issues have no documented company filter: hookwise filters `companyIds`.
            "GET /issues?limit=200&offset=0&sort=-createdAt".to_string(),
        ]
    );
}

#[tokio::test]
async fn list_endusers_users_and_custom_fields() {
    let (fake, tools) = setup().await;
    let e = call(
        &tools,
        "planhat.list_endusers",
        json!({"companyId": NORTHWIND, "email": "maria.lindqvist@northwind-logistics.example"}),
    )
    .await
    .unwrap();
    assert_eq!(e["count"], 1);
    assert_eq!(e["endusers"][0]["position"], "Head of Operations");
    assert_eq!(e["endusers"][0]["primary"], true);

    let active = call(&tools, "planhat.list_users", json!({"activeOnly": true}))
        .await
        .unwrap();
    assert_eq!(active["count"], 3);
    let sam = call(&tools, "planhat.list_users", json!({"userId": SAM_REMOVED}))
        .await
        .unwrap();
    assert_eq!(sam["users"][0]["removed"], true);
    assert_eq!(active["users"][0]["roles"], json!(["CSM"]));

    let fields = call(
        &tools,
        "planhat.list_custom_fields",
        json!({"model": "task"}),
    )
    .await
    .unwrap();
    let names: Vec<&str> = fields["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Created by", "Follow-up channel", "Days open"]);
    assert_eq!(fields["fields"][2]["isFormula"], true);

    assert_eq!(
        fake.lines(),
        [
            format!(
                "GET /endusers?limit=100&offset=0&companyId={NORTHWIND}&email=maria.lindqvist@northwind-logistics.example"
            ),
            "GET /users?limit=500&offset=0".to_string(),
            "GET /users?limit=500&offset=0".to_string(),
            "GET /customfields?limit=2000&offset=0".to_string(),
        ]
    );
}

fn task(extra: Value) -> Value {
    let mut args = json!({
        "mainType": "task",
        "companyId": NORTHWIND,
        "action": "Call Maria about NPS 4 (reporting export timeouts)",
        "description": "<p>Detractor response received 2024-11-05.</p>",
        "ownerId": ANA,
        "startTime": "2024-11-06T09:00:00.000Z",
        "endusers": [MARIA],
        "users": [JONAS],
        "externalId": "agent-task-6729f3a1c4e8b20d5f1a7c33",
        "custom": {"Created by": "nps-agent"}
    });
    for (k, v) in extra.as_object().unwrap() {
        args[k] = v.clone();
    }
    args
}

#[tokio::test]
async fn create_task_verifies_every_reference_then_sends_exactly_the_arguments() {
    let (fake, tools) = setup().await;
    let args = task(json!({}));
    let created = call(&tools, "planhat.create_task", args.clone())
        .await
        .unwrap();
    assert!(
        created["_id"].as_str().unwrap().starts_with("6800"),
        "{created}"
    );
    assert_eq!(created["companyName"], "Northwind Logistics");
    assert!(created.get("note").is_none(), "sent now: {created}");
    assert_eq!(
        fake.lines(),
        [
            format!("GET /companies/{NORTHWIND}"),
            format!("GET /users/{ANA}"),
            format!("GET /endusers/{MARIA}"),
            format!("GET /users/{JONAS}"),
            "GET /customfields?limit=2000&offset=0".to_string(),
            "POST /tasks".to_string(),
        ]
    );
    let post = fake.writes().pop().unwrap();
    assert_eq!(post.body, args, "the body is the arguments, nothing added");
    assert_eq!(fake.records("tasks").len(), 4);

    // Definitions are cached per account: a second write does not read them again.
    call(
        &tools,
        "planhat.create_task",
        task(json!({"custom": {"Follow-up channel": "Call"}})),
    )
    .await
    .unwrap();
    let reads = fake
        .lines()
        .iter()
        .filter(|l| l.starts_with("GET /customfields"))
        .count();
    assert_eq!(reads, 1);
    assert!(
        !tools
            .violations(
                "planhat.create_task",
                &json!({"companyId": NORTHWIND, "action": "x"})
            )
            .is_empty(),
        "mainType is required"
    );
}

#[tokio::test]
async fn unknown_or_computed_custom_fields_are_refused_before_anything_is_sent() {
    let (fake, tools) = setup().await;
    let e = rejected(
        call(
            &tools,
            "planhat.create_task",
            task(json!({"custom": {"created by": "nps-agent"}})),
        )
        .await,
    );
    assert!(
        e.contains("\"created by\" is not a custom field of task"),
        "{e}"
    );
    assert!(
        e.contains(
            "valid keys for task (exact, case-sensitive): \"Created by\", \"Follow-up channel\""
        ),
        "{e}"
    );
    assert!(
        !e.contains("Days open"),
        "formula fields are not offered: {e}"
    );
    let e = rejected(
        call(
            &tools,
            "planhat.create_task",
            task(json!({"custom": {"Days open": 3}})),
        )
        .await,
    );
    assert!(e.contains("\"Days open\" is a formula field"), "{e}");
    // The same check runs for dry-run and approve, before a write is recorded.
    let checked = tools
        .check_as(
            "northwind",
            "planhat.create_task",
            task(json!({"custom": {"Segment": "SMB"}})),
        )
        .await;
    assert!(
        matches!(checked, Err(ToolError::Rejected(e)) if e.contains("\"Segment\" is not a custom field of task"))
    );
    assert!(
        fake.writes().is_empty(),
        "nothing reached Planhat: {:?}",
        fake.lines()
    );
}

#[tokio::test]
async fn ids_of_the_wrong_kind_are_refused_before_anything_is_sent() {
    let (fake, tools) = setup().await;
    let e = rejected(
        call(
            &tools,
            "planhat.create_task",
            task(json!({"companyId": MARIA})),
        )
        .await,
    );
    assert!(
        e.starts_with(&format!("`companyId` {MARIA} is not a Planhat company")),
        "{e}"
    );
    assert!(
        e.contains("an NPS record's `cId`"),
        "says where company ids come from: {e}"
    );
    assert_eq!(fake.lines(), [format!("GET /companies/{MARIA}")]);

    let e = rejected(
        call(
            &tools,
            "planhat.create_task",
            task(json!({"ownerId": NORTHWIND})),
        )
        .await,
    );
    assert!(
        e.contains(&format!("`ownerId` {NORTHWIND} is not a Planhat user")),
        "{e}"
    );
    let e = rejected(
        call(
            &tools,
            "planhat.create_task",
            task(json!({"ownerId": SAM_REMOVED})),
        )
        .await,
    );
    assert!(
        e.contains("is a removed Planhat user: leave `ownerId` out"),
        "{e}"
    );
    let e = rejected(
        call(
            &tools,
            "planhat.create_task",
            task(json!({"endusers": [JOY_OF_BRIGHTPATH]})),
        )
        .await,
    );
    assert!(
        e.contains(&format!(
            "is an enduser of company {BRIGHTPATH}, not of companyId {NORTHWIND}"
        )),
        "{e}"
    );
    let e = rejected(
        call(
            &tools,
            "planhat.create_task",
            task(json!({"users": [MARIA]})),
        )
        .await,
    );
    assert!(
        e.contains(&format!("`users[0]` {MARIA} is not a Planhat user")),
        "{e}"
    );
    let e = rejected(
        call(
            &tools,
            "planhat.update_opportunity",
            json!({"opportunityId": NORTHWIND, "salesStage": "Won"}),
        )
        .await,
    );
    assert!(e.contains("is not a Planhat opportunity"), "{e}");
    let e = rejected(call(&tools, "planhat.create_churn", json!({"companyId": ANA})).await);
    assert!(e.contains("is not a Planhat company"), "{e}");
    assert!(
        fake.writes().is_empty(),
        "nothing reached Planhat: {:?}",
        fake.lines()
    );
}

#[tokio::test]
async fn create_churn_and_update_opportunity_send_what_the_reference_names() {
    let (fake, tools) = setup().await;
    let churn = json!({
        "companyId": ATELIERS, "churnDate": "2024-12-22", "reasons": ["Product limitations"],
        "arr": 35400.0, "onlyDowngrade": false, "comment": "Exports never fixed.",
        "custom": {"Exit interview done": true}
    });
    let created = call(&tools, "planhat.create_churn", churn.clone())
        .await
        .unwrap();
    assert_eq!(created["companyName"], "Ateliers du Rhône");
    let post = fake.writes().pop().unwrap();
    assert_eq!(
        (post.method.clone(), post.path.as_str()),
        (Method::POST, "/churn")
    );
    assert_eq!(post.body, churn);

    let update = json!({"opportunityId": OPPORTUNITY, "salesStage": "Evaluating", "_currency": "USD",
                        "ownerId": JONAS, "custom": {"Forecast category": "Best case"}});
    let updated = call(&tools, "planhat.update_opportunity", update)
        .await
        .unwrap();
    assert_eq!(updated["salesStage"], "Evaluating");
    assert_eq!(updated["title"], "Expansion 2025", "untouched fields stay");
    let put = fake.writes().pop().unwrap();
    assert_eq!(put.line(), format!("PUT /opportunities/{OPPORTUNITY}"));
    assert_eq!(
        put.body,
        json!({"salesStage": "Evaluating", "_currency": "USD", "ownerId": JONAS,
               "custom": {"Forecast category": "Best case"}})
    );
    assert!(
        !tools
            .violations(
                "planhat.update_opportunity",
                &json!({"opportunityId": OPPORTUNITY})
            )
            .is_empty(),
        "an update must change something"
    );
}

#[tokio::test]
async fn planhat_error_bodies_reach_the_model_as_text() {
    let (fake, tools) = setup().await;
    fake.fail_next(Failure {
        method: Method::POST,
        path: "/tasks".into(),
        status: 400,
        body: json!("Failed to execute task create"),
    });
    let e = rejected(call(&tools, "planhat.create_task", task(json!({}))).await);
    assert!(
        e.contains("400") && e.contains("Failed to execute task create"),
        "{e}"
    );
    fake.fail_next(Failure {
        method: Method::POST,
        path: "/tasks".into(),
        status: 400,
        body: json!({"error": "Invalid date for startTime"}),
    });
    let e = rejected(call(&tools, "planhat.create_task", task(json!({}))).await);
    assert!(e.contains("Invalid date for startTime"), "{e}");
    fake.fail_next(Failure {
        method: Method::GET,
        path: "/nps".into(),
        status: 500,
        body: json!("Internal error"),
    });
    // A read that meets a 500 is retried (with backoff) and the model never sees the outage.
    let retried = call(&tools, "planhat.list_nps", json!({})).await;
    assert!(retried.is_ok(), "{retried:?}");
    let nps: Vec<u16> = fake
        .received()
        .iter()
        .filter(|r| r.path == "/nps")
        .map(|r| r.status)
        .collect();
    assert_eq!(nps, [500, 200]);
}

#[tokio::test]
async fn past_the_quota_planhat_answers_429_with_a_reset_in_delta_seconds() {
    // A short window, so a governor that waits out the reset keeps this test fast.
    let fake = FakePlanhat::with_quota(3, Duration::from_secs(2)).await;
    let tools = Tools::new(&account(&fake.url, TOKEN)).await;
    for _ in 0..3 {
        call(
            &tools,
            "planhat.get_company",
            json!({"companyId": NORTHWIND}),
        )
        .await
        .unwrap();
    }
    // The third answer said remaining 0 with a reset in delta seconds: the governor holds the
    // fourth call until the window resets instead of meeting a 429.
    let started = std::time::Instant::now();
    call(
        &tools,
        "planhat.get_company",
        json!({"companyId": NORTHWIND}),
    )
    .await
    .unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    let statuses: Vec<u16> = fake.received().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 200, 200, 200], "no 429 was needed");

    // Past the quota, Planhat's answer is a 429 with the reset in delta seconds.
    let client = reqwest::Client::new();
    let mut response = None;
    for _ in 0..4 {
        let r = client
            .get(format!("{}/companies/{NORTHWIND}", fake.url))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        if r.status() == 429 {
            response = Some(r);
            break;
        }
    }
    let response = response.expect("a 429 within the quota plus one");
    let header = |n: &str| {
        response.headers()[n]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
    };
    assert_eq!(
        (header("ratelimit-limit"), header("ratelimit-remaining")),
        (3, 0)
    );
    let reset = header("ratelimit-reset");
    assert!(
        (1..=60).contains(&reset),
        "delta seconds, not a Unix time: {reset}"
    );
}
