//! The dashboard at `/ui` over real HTTP: who may open it (this machine only without a token;
//! the token once, then a strict session cookie), that state changes need the page's CSRF token
//! and refuse other sites, and that its pages show a real scene: a HappyFox ticket handled by an
//! `approve`-mode handler with the fake model and the fake HappyFox, its held note, and a dead
//! job. `browser.rs` drives the same scene in headless Chromium.

mod browser;

use crate::support::fake_happyfox::{BOT_STAFF_ID, FakeHappyfox};
use crate::support::fake_llm::{FakeLlm, openai_calls, openai_text};
use crate::support::*;
use hookwise::store::{ApprovalFilter, JobFilter, JobId, JobState};
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use serde_json::json;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);
pub const TOKEN: &str = "dashboard-token-0123456789";
/// The note the model asks to add, held for approval.
pub const NOTE_HTML: &str = "<p>Charged twice for SO-884213: refund requested.</p>";

/// A HappyFox ticket (142) whose `approve`-mode handler asked to add a private note (held), and
/// a second ticket (143) whose run failed for good (the model had nothing more to say): a
/// pending approval and a dead job.
pub struct Scene {
    pub app: TestApp,
    pub happyfox: FakeHappyfox,
    pub llm: FakeLlm,
    pub approval: i64,
    pub handled: JobId,
    pub dead: JobId,
}

pub async fn scene(top_config: &str) -> Scene {
    let happyfox = FakeHappyfox::start().await;
    let webhook = std::fs::read(repo_path("fixtures/happyfox/ticket_created.json")).unwrap();
    happyfox.put_ticket(serde_json::from_slice(&webhook).unwrap());
    let args = json!({"ticket_id": 142, "html": NOTE_HTML}).to_string();
    let llm = FakeLlm::start(vec![
        openai_calls(&[("c1", "happyfox__get_ticket", r#"{"ticket_id": 142}"#)]),
        openai_calls(&[("c2", "happyfox__add_private_note", &args)]),
        openai_text("A note awaits approval."),
    ])
    .await;
    let handler = (
        "hf-approve.toml".to_string(),
        "name = \"hf-approve\"\non = [\"happyfox.ticket.created\"]\nmode = \"approve\"\nmax_attempts = 1\n\
         [agent]\nprompt = \"Read the ticket, then note it.\"\n\
         tools = [\"happyfox.get_ticket\", \"happyfox.add_private_note\"]\n\
         max_steps = 6\ndeadline = \"20s\"\n"
            .to_string(),
    );
    let app = TestApp::spawn_with(Options {
        handlers: vec![handler],
        top_config: top_config.to_string(),
        extra_config: format!(
            "[scheduler]\npoll_interval = \"10ms\"\n\n[llm]\nprovider = \"openai\"\nbase_url = \"{}/v1\"\napi_key = \"test-key\"\nmodel = \"test-model\"\n\n{}",
            llm.url,
            happyfox.account_toml("acme", Some(BOT_STAFF_ID), "")
        ),
        ..Options::default()
    })
    .await;
    let (status, _) = app.send("happyfox", &webhook, "msg-dash-142").await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let handled = finished(&app, 1).await;
    let mut second: serde_json::Value = serde_json::from_slice(&webhook).unwrap();
    second["id"] = json!(143);
    let (status, _) = app
        .send(
            "happyfox",
            &serde_json::to_vec(&second).unwrap(),
            "msg-dash-143",
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let dead = finished(&app, 2).await;
    let approvals = app
        .store
        .list_approvals(&ApprovalFilter::default())
        .await
        .unwrap();
    assert_eq!(approvals.len(), 1, "the note is held");
    let jobs = app.store.list_jobs(&JobFilter::default()).await.unwrap();
    let state = |id: JobId| jobs.iter().find(|j| j.id == id).unwrap().state;
    assert_eq!(state(handled), JobState::Done);
    assert_eq!(state(dead), JobState::Dead);
    Scene {
        app,
        happyfox,
        llm,
        approval: approvals[0].id,
        handled,
        dead,
    }
}

/// Waits until `n` jobs have finished (done or dead); returns the newest.
async fn finished(app: &TestApp, n: usize) -> JobId {
    let start = std::time::Instant::now();
    loop {
        let jobs = app.store.list_jobs(&JobFilter::default()).await.unwrap();
        let done: Vec<_> = jobs
            .iter()
            .filter(|j| matches!(j.state, JobState::Done | JobState::Dead))
            .collect();
        if done.len() >= n {
            return done[0].id;
        }
        assert!(
            start.elapsed() < WAIT,
            "{n} jobs did not finish in {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A form post as a browser sends it (reqwest's own `form` is not compiled in).
trait FormBody {
    fn form_body(self, pairs: &[(&str, &str)]) -> Self;
}

impl FormBody for reqwest::RequestBuilder {
    fn form_body(self, pairs: &[(&str, &str)]) -> Self {
        self.header("content-type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(pairs).unwrap())
    }
}

/// A client that shows redirects instead of following them.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn page(client: &reqwest::Client, url: &str, headers: HeaderMap) -> (StatusCode, String) {
    let response = client.get(url).headers(headers).send().await.unwrap();
    (response.status(), response.text().await.unwrap())
}

/// The CSRF token of the first form on a page.
pub fn csrf(html: &str) -> String {
    let re = regex::Regex::new(r#"name="csrf" value="([0-9a-f]+)""#).unwrap();
    re.captures(html).expect("a form with a CSRF token")[1].to_string()
}

/// A retried job ran again (the model now answers) and finished: it went back to the queue.
pub async fn done_again(app: &TestApp, id: JobId) {
    eventually("the retried job to run again and finish", WAIT, || async {
        job_state(app, id).await == JobState::Done
    })
    .await;
}

pub async fn job_state(app: &TestApp, id: JobId) -> JobState {
    app.store.get_job(id).await.unwrap().unwrap().job.state
}

#[tokio::test]
async fn without_a_token_the_dashboard_and_the_api_answer_only_this_machine() {
    let app = TestApp::spawn().await;
    let client = client();
    let (status, html) = page(&client, &format!("{}/ui", app.url), HeaderMap::new()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("<h1>Overview</h1>"), "{html}");

    // Through a proxy (even one on this machine), the client is someone else.
    let mut forwarded = HeaderMap::new();
    forwarded.insert("x-forwarded-for", "203.0.113.9".parse().unwrap());
    let (status, html) = page(&client, &format!("{}/ui", app.url), forwarded.clone()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        html.contains("api_token"),
        "the page says what to do: {html}"
    );
    let response = client
        .get(format!("{}/api/events", app.url))
        .headers(forwarded.clone())
        .send()
        .await
        .unwrap();
    let (status, body) = read(response).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["type"], "urn:hookwise:problem:loopback-only");
    assert_eq!(body["_problem"], true);
    // Webhooks and health checks are not the admin surface.
    let response = client
        .get(format!("{}/healthz", app.url))
        .headers(forwarded)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    app.stop().await;

    let open = TestApp::spawn_with(Options {
        extra_config: "[http]\nadmin_access = \"anywhere\"\n".into(),
        ..Options::default()
    })
    .await;
    let mut forwarded = HeaderMap::new();
    forwarded.insert("x-forwarded-for", "203.0.113.9".parse().unwrap());
    let (status, _) = page(&client, &format!("{}/ui", open.url), forwarded).await;
    assert_eq!(status, StatusCode::OK, "opened explicitly");
    open.stop().await;
}

#[tokio::test]
async fn with_a_token_the_dashboard_asks_for_it_once_and_keeps_a_strict_session_cookie() {
    let app = TestApp::spawn_with(Options {
        top_config: format!("api_token = \"{TOKEN}\""),
        ..Options::default()
    })
    .await;
    let client = client();
    let response = client
        .get(format!("{}/ui/jobs?state=dead", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        response.headers()[LOCATION],
        "/ui/login?next=/ui/jobs%3Fstate%3Ddead"
    );
    let (status, html) = page(&client, &format!("{}/ui/login", app.url), HeaderMap::new()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains(r#"type="password""#));

    let login = |token: &str| {
        client
            .post(format!("{}/ui/login", app.url))
            .form_body(&[("token", token), ("next", "/ui/jobs?state=dead")])
            .send()
    };
    let wrong = login("not-the-token").await.unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(wrong.headers().get(SET_COOKIE).is_none());

    let right = login(TOKEN).await.unwrap();
    assert_eq!(right.status(), StatusCode::SEE_OTHER);
    assert_eq!(right.headers()[LOCATION], "/ui/jobs?state=dead");
    let cookie = right.headers()[SET_COOKIE].to_str().unwrap().to_string();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/ui"] {
        assert!(cookie.contains(attribute), "{attribute} in {cookie}");
    }
    assert!(
        !cookie.contains(TOKEN),
        "the cookie is not the token itself"
    );
    let session = cookie.split(';').next().unwrap().to_string();

    let mut with_session = HeaderMap::new();
    with_session.insert("cookie", session.parse().unwrap());
    let (status, html) = page(&client, &format!("{}/ui/jobs", app.url), with_session).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("Sign out"));
    // A forged or altered session is not one.
    let mut forged = HeaderMap::new();
    forged.insert("cookie", format!("{session}0").parse().unwrap());
    let response = client
        .get(format!("{}/ui/jobs", app.url))
        .headers(forged)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    // The session is the dashboard's: the API still wants its bearer token.
    let response = client
        .get(format!("{}/api/jobs", app.url))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    app.stop().await;
}

#[tokio::test]
async fn every_page_shows_the_scene() {
    let s = scene("").await;
    let client = client();
    let get = |path: &str| {
        let url = format!("{}{path}", s.app.url);
        let client = client.clone();
        async move {
            let (status, html) = page(&client, &url, HeaderMap::new()).await;
            assert_eq!(status, StatusCode::OK, "{url}: {html}");
            html
        }
    };
    let overview = get("/ui").await;
    for expected in [
        r#"data-account="acme""#,
        "1 write(s) waiting for approval",
        "hf-approve",
        "done 1",
        "failed 1",
        "fake: unscripted request",
    ] {
        assert!(
            overview.contains(expected),
            "{expected:?} on the overview:\n{overview}"
        );
    }
    let events = get("/ui/events?source=happyfox&status=routed").await;
    assert_eq!(
        events.matches("<td>happyfox.ticket.created</td>").count(),
        2,
        "{events}"
    );
    let none = get("/ui/events?status=ignored").await;
    assert!(none.contains("No events match."));

    let event = get("/ui/events/1").await;
    assert!(
        event.contains("#BL00000142"),
        "the payload, pretty-printed: {event}"
    );
    assert!(
        event.contains(&format!(r#"href="/ui/jobs/{}""#, s.handled)),
        "{event}"
    );

    let job = get(&format!("/ui/jobs/{}", s.handled)).await;
    for expected in [
        "happyfox.get_ticket",
        "Result of happyfox.get_ticket [c1]",
        "Not sent (approve): would call",
        "happyfox.add_private_note",
        "Charged twice for SO-884213",
        &format!(r#"href="/ui/approvals/{}""#, s.approval),
        "A note awaits approval.",
    ] {
        assert!(
            job.contains(expected),
            "{expected:?} in the transcript:\n{job}"
        );
    }

    let dead = get("/ui/dead").await;
    assert!(
        dead.contains(&format!(r#"data-job="{}""#, s.dead)),
        "{dead}"
    );
    assert!(!dead.contains(&format!(r#"data-job="{}""#, s.handled)));

    let approvals = get("/ui/approvals").await;
    assert!(approvals.contains("Approve and send"));
    assert!(
        approvals.contains("&lt;p&gt;Charged twice for SO-884213: refund requested.&lt;/p&gt;"),
        "the exact arguments, escaped: {approvals}"
    );
    let handlers = get("/ui/handlers").await;
    assert!(handlers.contains("happyfox.add_private_note"));
    assert!(handlers.contains("approve"));

    // The API filters the same way.
    let (status, body) = read(
        client
            .get(format!(
                "{}/api/events?status=routed&subject=143",
                s.app.url
            ))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body.as_array().unwrap().len(), 1, "{body}");
    let (status, body) = read(
        client
            .get(format!("{}/api/events?status=lost", s.app.url))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["type"], "urn:hookwise:problem:invalid-query");

    let missing = client
        .get(format!("{}/ui/jobs/999999", s.app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let bad = client
        .get(format!("{}/ui/jobs?state=zombie", s.app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert!(
        bad.text()
            .await
            .unwrap()
            .contains("expected pending, running")
    );
    s.app.stop().await;
}

#[tokio::test]
async fn state_changes_need_the_pages_csrf_token_and_refuse_other_sites() {
    let s = scene("").await;
    let client = client();
    let (_, html) = page(&client, &format!("{}/ui/dead", s.app.url), HeaderMap::new()).await;
    let token = csrf(&html);
    let retry = format!("{}/ui/jobs/{}/retry", s.app.url, s.dead);

    let none = client
        .post(&retry)
        .form_body(&[("x", "1")])
        .send()
        .await
        .unwrap();
    assert_eq!(none.status(), StatusCode::FORBIDDEN);
    let wrong = client
        .post(&retry)
        .form_body(&[("csrf", "00ff")])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::FORBIDDEN);
    let cross = client
        .post(&retry)
        .header("origin", "http://evil.example")
        .form_body(&[("csrf", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(cross.status(), StatusCode::FORBIDDEN);
    let fetch_cross = client
        .post(&retry)
        .header("sec-fetch-site", "cross-site")
        .form_body(&[("csrf", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(fetch_cross.status(), StatusCode::FORBIDDEN);
    // The API's own state changes refuse other sites too (no token here: it is open locally).
    let api = client
        .post(format!("{}/api/jobs/{}/retry", s.app.url, s.dead))
        .header("origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    let (status, body) = read(api).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["type"], "urn:hookwise:problem:cross-site");
    assert_eq!(
        job_state(&s.app, s.dead).await,
        JobState::Dead,
        "nothing changed"
    );

    s.llm.push(openai_text("Handled on retry."));
    let ok = client
        .post(&retry)
        .header("origin", &s.app.url)
        .form_body(&[("csrf", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::SEE_OTHER);
    done_again(&s.app, s.dead).await;
    s.app.stop().await;
}

#[tokio::test]
async fn retrying_every_dead_job_of_a_filter_says_how_many_first() {
    let s = scene("").await;
    let client = client();
    let (status, html) = page(
        &client,
        &format!("{}/ui/dead/retry?handler=hf-approve", s.app.url),
        HeaderMap::new(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains("Retry <strong>1</strong> dead job (handler hf-approve)"),
        "{html}"
    );
    let (_, none) = page(
        &client,
        &format!("{}/ui/dead/retry?account=nobody", s.app.url),
        HeaderMap::new(),
    )
    .await;
    assert!(none.contains("No dead jobs match"), "{none}");
    let token = csrf(&html);
    s.llm.push(openai_text("Handled on retry."));
    let response = client
        .post(format!("{}/ui/dead/retry", s.app.url))
        .form_body(&[
            ("csrf", token.as_str()),
            ("handler", "hf-approve"),
            ("expected", "1"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let html = response.text().await.unwrap();
    assert!(html.contains("1 requeued."), "{html}");
    done_again(&s.app, s.dead).await;
    s.app.stop().await;
}

#[tokio::test]
async fn approving_from_the_dashboard_sends_the_note_once_and_shows_the_outcome() {
    let s = scene("").await;
    let client = client();
    let (_, html) = page(
        &client,
        &format!("{}/ui/approvals", s.app.url),
        HeaderMap::new(),
    )
    .await;
    let token = csrf(&html);
    let approve = || {
        client
            .post(format!("{}/ui/approvals/{}/approve", s.app.url, s.approval))
            .form_body(&[("csrf", token.as_str())])
            .send()
    };
    let response = approve().await.unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let shown = response.headers()[LOCATION].to_str().unwrap().to_string();
    let (_, html) = page(&client, &format!("{}{shown}", s.app.url), HeaderMap::new()).await;
    assert!(html.contains(r#"data-state="approved""#), "{html}");
    assert!(html.contains("Decided by"));
    let writes = s.happyfox.writes();
    assert_eq!(writes.len(), 1);
    assert_eq!(writes[0].path, "/ticket/142/staff_pvtnote/");
    assert_eq!(writes[0].body["html"], NOTE_HTML);
    // A second click (a stale page) changes nothing and says why.
    let again = approve().await.unwrap();
    assert_eq!(again.status(), StatusCode::CONFLICT);
    assert!(
        again
            .text()
            .await
            .unwrap()
            .contains("only a pending approval")
    );
    assert_eq!(
        s.happyfox.writes().len(),
        1,
        "HappyFox received the note once"
    );
    s.app.stop().await;
}
