//! The dashboard in a real browser: Debian's `chromium`, headless, driven over WebDriver by
//! `chromedriver` (Debian's `chromium-driver`) on a loopback port. Needs
//! `HOOKWISE_TEST_CHROMEDRIVER` (the chromedriver binary; `.ci/run` installs both and sets it);
//! without it the test says loudly it was skipped (`support::gate`). With `HOOKWISE_SCREENSHOTS=DIR` it also
//! saves a PNG of each page there (the ones in `docs/` are made this way).

use super::{NOTE_HTML, Scene, TOKEN, done_again, job_state, scene};
use crate::support::fake_llm::openai_text;
use crate::support::gate;
use fantoccini::{Client, ClientBuilder, Locator};
use hookwise::store::JobState;
use serde_json::json;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CHROMEDRIVER_VAR: &str = "HOOKWISE_TEST_CHROMEDRIVER";

/// chromedriver, killed when dropped.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn start_driver(binary: &str) -> (Driver, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(binary)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {binary}: {e}"));
    let driver = Driver(child);
    let url = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let start = Instant::now();
    while !client
        .get(format!("{url}/status"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "chromedriver never answered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (driver, url)
}

async fn browser(driver_url: &str) -> Client {
    let chromium = std::env::var("HOOKWISE_TEST_CHROMIUM").unwrap_or("/usr/bin/chromium".into());
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,1000", "--no-first-run", "--disable-extensions"]
        }),
    );
    ClientBuilder::rustls()
        .expect("TLS roots")
        .capabilities(caps)
        .connect(driver_url)
        .await
        .expect("a browser session")
}

/// The text of the first element matching `css`, waiting (bounded) for it to appear.
async fn text_of(browser: &Client, css: &str) -> String {
    tokio::time::timeout(
        Duration::from_secs(10),
        browser.wait().for_element(Locator::Css(css)),
    )
    .await
    .unwrap_or_else(|_| panic!("no {css} within 10s"))
    .unwrap()
    .text()
    .await
    .unwrap()
}

/// Waits (bounded) until the browser is on `expected` (path and query): a click that submits a
/// form returns before the next page has replaced the old one, whose elements may match too.
async fn wait_for_path(browser: &Client, expected: &str) {
    let start = Instant::now();
    loop {
        let now = path(browser).await;
        if now == expected {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "still on {now}, not {expected}, after 10s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn path(browser: &Client) -> String {
    let url = browser.current_url().await.unwrap();
    match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    }
}

async fn screenshot(browser: &Client, name: &str) {
    if let Ok(dir) = std::env::var("HOOKWISE_SCREENSHOTS") {
        let png = browser.screenshot().await.unwrap();
        std::fs::write(std::path::Path::new(&dir).join(format!("{name}.png")), png).unwrap();
    }
}

#[tokio::test]
async fn the_dashboard_in_a_real_browser() {
    let Some(binary) = gate::var(
        CHROMEDRIVER_VAR,
        "dashboard::browser::the_dashboard_in_a_real_browser",
        "apt install chromium chromium-driver and set it to the chromedriver binary; .ci/run does",
    ) else {
        return;
    };
    let Scene {
        app,
        happyfox,
        llm,
        approval,
        handled,
        dead,
    } = scene(&format!("api_token = \"{TOKEN}\"")).await;
    let (_driver, driver_url) = start_driver(&binary).await;
    let b = browser(&driver_url).await;

    // Without the token, nothing: the dashboard asks for it.
    b.goto(&format!("{}/ui", app.url)).await.unwrap();
    assert_eq!(path(&b).await, "/ui/login?next=/ui");
    screenshot(&b, "login").await;
    b.find(Locator::Css("#token"))
        .await
        .unwrap()
        .send_keys(TOKEN)
        .await
        .unwrap();
    b.find(Locator::Css("form.login button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();

    // The overview, with the replayed ticket's account and handler.
    wait_for_path(&b, "/ui").await;
    let account = text_of(&b, r#"tr[data-account="acme"]"#).await;
    assert!(account.starts_with("acme"), "{account}");
    let runs = text_of(&b, "#handler-runs").await;
    assert!(
        runs.contains("hf-approve") && runs.contains("done 1"),
        "{runs}"
    );
    screenshot(&b, "overview").await;

    // The run's transcript shows its tool calls and the held write.
    b.goto(&format!("{}/ui/jobs/{handled}", app.url))
        .await
        .unwrap();
    let transcript = text_of(&b, "ol.transcript").await;
    for expected in [
        "calls happyfox.get_ticket",
        "Result of happyfox.get_ticket [c1]",
        "Not sent (approve): would call happyfox.add_private_note [c2]",
    ] {
        assert!(
            transcript.contains(expected),
            "{expected:?} in\n{transcript}"
        );
    }
    screenshot(&b, "job").await;

    b.goto(&format!("{}/ui/events", app.url)).await.unwrap();
    let events = text_of(&b, "#events").await;
    assert_eq!(
        events.matches("happyfox.ticket.created").count(),
        2,
        "{events}"
    );
    screenshot(&b, "events").await;
    b.goto(&format!("{}/ui/events/1", app.url)).await.unwrap();
    assert!(text_of(&b, "pre.payload").await.contains("#BL00000142"));
    screenshot(&b, "event").await;
    b.goto(&format!("{}/ui/handlers", app.url)).await.unwrap();
    assert!(
        text_of(&b, "#handler-hf-approve")
            .await
            .contains("happyfox.add_private_note")
    );
    screenshot(&b, "handlers").await;

    // Approving the held note sends it to HappyFox once, and the page shows the outcome.
    b.goto(&format!("{}/ui/approvals", app.url)).await.unwrap();
    let card = text_of(&b, &format!("#approval-{approval}")).await;
    assert!(card.contains(NOTE_HTML), "the exact arguments: {card}");
    screenshot(&b, "approvals").await;
    assert!(happyfox.writes().is_empty(), "held until approved");
    b.find(Locator::Css(&format!(
        "#approval-{approval} button.approve"
    )))
    .await
    .unwrap()
    .click()
    .await
    .unwrap();
    wait_for_path(&b, &format!("/ui/approvals/{approval}")).await;
    let state = text_of(&b, &format!("#approval-{approval} h2 .state")).await;
    assert_eq!(state, "approved");
    let writes = happyfox.writes();
    assert_eq!(writes.len(), 1, "HappyFox received the note once");
    assert_eq!(writes[0].body["html"], NOTE_HTML);

    // Retrying a dead job puts it back in the queue (the model answers this time).
    b.goto(&format!("{}/ui/dead", app.url)).await.unwrap();
    text_of(&b, &format!(r#"tr[data-job="{dead}"]"#)).await;
    screenshot(&b, "dead").await;
    llm.push(openai_text("Handled on retry."));
    b.find(Locator::Css(&format!(r#"tr[data-job="{dead}"] button"#)))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_path(&b, &format!("/ui/jobs/{dead}")).await;
    text_of(&b, "#job-state").await;
    done_again(&app, dead).await;

    // A page on another site that posts to the dashboard is refused, with the session cookie
    // (SameSite=Strict keeps it off) and even if the cookie were sent (Origin is checked).
    let evil = evil_site(&app.url, handled.0).await;
    b.goto(&evil.url).await.unwrap();
    let start = Instant::now();
    loop {
        // The page navigates by itself (its form submits), so the body found may be gone
        // before its text is read: that is "not yet", not a failure.
        let body = match b.find(Locator::Css("body")).await {
            Ok(body) => body.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if body.contains("Forbidden") || body.contains("Sign in") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the cross-site post got no refusal: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        job_state(&app, handled).await,
        JobState::Done,
        "nothing changed"
    );
    assert_eq!(happyfox.writes().len(), 1);

    b.close().await.unwrap();
    app.stop().await;
}

/// A page on another loopback origin whose form posts itself to the dashboard's retry route.
struct EvilSite {
    url: String,
    _server: tokio::task::JoinHandle<()>,
}

async fn evil_site(target: &str, job: i64) -> EvilSite {
    let page = format!(
        "<!doctype html><html><body><form id=f method=post action=\"{target}/ui/jobs/{job}/retry\">\
         <input name=csrf value=guess></form><script>document.getElementById('f').submit()</script>\
         </body></html>"
    );
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(move || {
            let page = page.clone();
            async move { axum::response::Html(page) }
        }),
    );
    // Another origin: `localhost` is another site than `127.0.0.1` to a browser.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://localhost:{}/",
        listener.local_addr().unwrap().port()
    );
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    EvilSite {
        url,
        _server: server,
    }
}
