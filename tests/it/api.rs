//! The admin API's optional token: with `api_token` set, every `/api/` route needs
//! `Authorization: Bearer <token>` (a 401 problem otherwise), while webhooks (signed) and health
//! checks stay open.

use crate::support::*;
use reqwest::StatusCode;

const TOKEN: &str = "test-api-token-0123456789abcdef";

#[tokio::test]
async fn with_an_api_token_the_api_needs_it_and_webhooks_and_health_do_not() {
    let app = TestApp::spawn_with(Options {
        top_config: format!("api_token = \"{TOKEN}\""),
        ..Options::default()
    })
    .await;
    let get = |path: &str, auth: Option<&str>| {
        let mut request = app.client.get(format!("{}{path}", app.url));
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        request.send()
    };
    for path in [
        "/api/events",
        "/api/jobs",
        "/api/runs",
        "/api/approvals",
        "/api/jobs/1",
    ] {
        for auth in [
            None,
            Some("Bearer wrong-token".to_string()),
            Some(TOKEN.to_string()),
        ] {
            let response = get(path, auth.as_deref()).await.unwrap();
            assert_eq!(
                response.status(),
                StatusCode::UNAUTHORIZED,
                "{path} {auth:?}"
            );
            assert_eq!(response.headers()["www-authenticate"], "Bearer");
            let (_, problem) = read(response).await;
            assert_eq!(
                problem["type"], "urn:hookwise:problem:unauthorized",
                "{problem}"
            );
        }
    }
    let bearer = format!("Bearer {TOKEN}");
    let ok = get("/api/events", Some(&bearer)).await.unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    // A refused request changed nothing: a POST without the token retries no job.
    let refused = app
        .client
        .post(format!("{}/api/jobs/1/retry", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let missing = get("/api/jobs/1", Some(&bearer)).await.unwrap();
    assert_eq!(
        missing.status(),
        StatusCode::NOT_FOUND,
        "behind the token, the real answer"
    );

    assert_eq!(
        get("/healthz", None).await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(get("/readyz", None).await.unwrap().status(), StatusCode::OK);
    let (status, _) = app.send("happyfox", &ticket(5), "msg-api-token").await;
    assert_eq!(
        status,
        StatusCode::ACCEPTED,
        "webhooks authenticate by signature"
    );
    app.stop().await;
}

#[tokio::test]
async fn without_a_token_the_api_is_open_as_before() {
    let app = TestApp::spawn().await;
    let response = app
        .client
        .get(format!("{}/api/events", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    app.stop().await;
}
