//! Ingestion at the HTTP boundary: verify, dedupe, commit, then ack.

use crate::support::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test]
async fn an_acked_event_is_already_in_the_sqlite_file() {
    let app = TestApp::spawn().await;
    let body = ticket(1);
    let (status, ack) = app.send("happyfox", &body, "msg_durable_1").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{ack}");
    assert_eq!(
        ack,
        json!({"event_id": "msg_durable_1", "duplicate": false})
    );

    // Read through a brand-new connection while the server keeps running: no cache, no flush.
    let (kind, account, subject, payload): (String, String, String, String) = app
        .fresh_connection()
        .query_row(
            "SELECT kind, account, subject, payload FROM events WHERE source = 'happyfox' AND event_id = 'msg_durable_1'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!(kind, "happyfox.ticket.created");
    assert_eq!(account, "acme");
    assert_eq!(subject, "1");
    assert_eq!(
        payload.as_bytes(),
        body.as_slice(),
        "the raw body is stored byte for byte"
    );
    app.stop().await;
}

#[tokio::test]
async fn the_same_event_twice_is_stored_once() {
    let app = TestApp::spawn().await;
    let (first, _) = app.send("happyfox", &ticket(2), "msg_twice").await;
    let (second, ack) = app.send("happyfox", &ticket(2), "msg_twice").await;
    assert_eq!(first, StatusCode::ACCEPTED);
    assert_eq!(second, StatusCode::OK);
    assert_eq!(ack, json!({"event_id": "msg_twice", "duplicate": true}));
    assert_eq!(app.count_events().await, 1);
    app.stop().await;
}

#[tokio::test]
async fn a_new_delivery_id_makes_the_same_body_a_new_event_and_the_same_id_a_duplicate() {
    // Standard Webhooks: the signed delivery id is the event id, whatever the body says.
    let app = TestApp::spawn().await;
    let body = ticket(5);
    let (status, ack) = app.send("happyfox", &body, "msg_delivery_1").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{ack}");
    let (status, ack) = app.send("happyfox", &body, "msg_delivery_1").await;
    assert_eq!(status, StatusCode::OK, "the sender's retry");
    assert_eq!(
        ack,
        json!({"event_id": "msg_delivery_1", "duplicate": true})
    );
    let (status, ack) = app.send("happyfox", &body, "msg_delivery_2").await;
    assert_eq!(
        status,
        StatusCode::ACCEPTED,
        "a new delivery of the same body"
    );
    assert_eq!(
        ack,
        json!({"event_id": "msg_delivery_2", "duplicate": false})
    );

    // The svix-* names of the same headers behave the same way.
    for (id, expected) in [
        ("msg_delivery_3", StatusCode::ACCEPTED),
        ("msg_delivery_3", StatusCode::OK),
    ] {
        let signed = app.source("happyfox").verifier.sign(&body, id, app.now());
        let mut request = app
            .client
            .post(format!("{}/webhooks/happyfox", app.url))
            .header("content-type", "application/json")
            .body(body.clone());
        for (name, value) in signed.headers {
            request = request.header(name.replace("webhook-", "svix-"), value);
        }
        let (status, ack) = read(request.send().await.unwrap()).await;
        assert_eq!(status, expected, "{ack}");
        assert_eq!(ack["event_id"], id);
    }
    assert_eq!(app.count_events().await, 3);
    app.stop().await;
}

#[tokio::test]
async fn fifty_concurrent_deliveries_of_one_event_store_it_once() {
    let app = TestApp::spawn().await;
    let body = ticket(3);
    let sends = (0..50).map(|_| app.send("happyfox", &body, "msg_concurrent"));
    let results = futures::future::join_all(sends).await;
    let accepted = results
        .iter()
        .filter(|(s, _)| *s == StatusCode::ACCEPTED)
        .count();
    let duplicates = results
        .iter()
        .filter(|(s, b)| *s == StatusCode::OK && b["duplicate"] == true)
        .count();
    assert_eq!((accepted, duplicates), (1, 49), "{results:?}");
    assert_eq!(app.count_events().await, 1);
    app.stop().await;
}

#[tokio::test]
async fn distinct_concurrent_events_are_all_stored() {
    let app = TestApp::spawn().await;
    let bodies: Vec<_> = (0..200).map(ticket).collect();
    let app_ref = &app;
    let sends = bodies
        .iter()
        .enumerate()
        .map(|(i, b)| async move { app_ref.send("happyfox", b, &format!("msg_many_{i}")).await });
    let results = futures::future::join_all(sends).await;
    assert!(
        results.iter().all(|(s, _)| *s == StatusCode::ACCEPTED),
        "{results:?}"
    );
    assert_eq!(app.count_events().await, 200);
    app.stop().await;
}

#[tokio::test]
async fn bad_signatures_get_401_problem_json_and_store_nothing() {
    let app = TestApp::spawn().await;
    let body = ticket(4);
    let url = format!("{}/webhooks/happyfox", app.url);
    let now = chrono::Utc::now().timestamp();
    let valid = app
        .source("happyfox")
        .verifier
        .sign(&body, "msg_x", now)
        .headers;
    let header = |name: &str| valid.iter().find(|(n, _)| n == name).unwrap().1.clone();

    type Case<'a> = (&'a str, Vec<(&'a str, String)>, &'a [u8], &'a str);
    let cases: Vec<Case> = vec![
        ("no headers", vec![], &body, "missing-signature"),
        (
            "tampered body",
            vec![
                ("webhook-id", "msg_x".into()),
                ("webhook-timestamp", now.to_string()),
                ("webhook-signature", header("webhook-signature")),
            ],
            br#"{"id": 4, "subject": "changed"}"#,
            "signature-mismatch",
        ),
        (
            "wrong id",
            vec![
                ("webhook-id", "msg_y".into()),
                ("webhook-timestamp", now.to_string()),
                ("webhook-signature", header("webhook-signature")),
            ],
            &body,
            "signature-mismatch",
        ),
        (
            "stale timestamp",
            vec![
                ("webhook-id", "msg_x".into()),
                ("webhook-timestamp", (now - 3600).to_string()),
                ("webhook-signature", header("webhook-signature")),
            ],
            &body,
            "stale-timestamp",
        ),
        (
            "unknown version only",
            vec![
                ("webhook-id", "msg_x".into()),
                ("webhook-timestamp", now.to_string()),
                (
                    "webhook-signature",
                    header("webhook-signature").replace("v1,", "v2,"),
                ),
            ],
            &body,
            "signature-mismatch",
        ),
    ];
    for (name, headers, body, code) in cases {
        let mut request = app
            .client
            .post(&url)
            .header("content-type", "application/json")
            .body(body.to_vec());
        for (n, v) in headers {
            request = request.header(n, v);
        }
        let (status, problem) = read(request.send().await.unwrap()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{name}: {problem}");
        assert_eq!(
            problem["_problem"], true,
            "{name}: problem+json content type"
        );
        assert_eq!(
            problem["type"],
            format!("urn:hookwise:problem:{code}"),
            "{name}: {problem}"
        );
        assert_eq!(problem["status"], 401);
    }
    assert_eq!(app.count_events().await, 0);
    app.stop().await;
}

#[tokio::test]
async fn a_secret_being_rotated_out_still_verifies() {
    let app = TestApp::spawn().await;
    // The sender still signs with the old secret only; the config lists old and new.
    let old = hookwise::ingress::verify::Verifier::new(
        hookwise::ingress::verify::Scheme::StandardWebhooks,
        vec![hookwise::kernel::Secret::new(HAPPYFOX_OLD_SECRET)],
        300,
    )
    .unwrap();
    let body = ticket(5);
    let signed = old.sign(&body, "msg_old_key", chrono::Utc::now().timestamp());
    let mut request = app
        .client
        .post(format!("{}/webhooks/happyfox", app.url))
        .header("content-type", "application/json")
        .body(body);
    for (n, v) in signed.headers {
        request = request.header(n, v);
    }
    assert_eq!(request.send().await.unwrap().status(), StatusCode::ACCEPTED);
    app.stop().await;
}

#[tokio::test]
async fn each_scheme_accepts_its_own_signature() {
    let app = TestApp::spawn().await;
    let cases = [
        (
            "planhat",
            std::fs::read(repo_path("fixtures/planhat/nps_submitted.json")).unwrap(),
        ),
        (
            "truto",
            std::fs::read(repo_path("fixtures/truto/record_created.json")).unwrap(),
        ),
        (
            "billing",
            std::fs::read(repo_path("fixtures/billing/invoice_paid.json")).unwrap(),
        ),
        (
            "gh",
            br#"{"repository": "acme/widgets", "ref": "refs/heads/main"}"#.to_vec(),
        ),
    ];
    for (source, body) in cases {
        let (status, ack) = app.send(source, &body, "delivery-1").await;
        assert_eq!(status, StatusCode::ACCEPTED, "{source}: {ack}");
    }
    assert_eq!(app.count_events().await, 4);

    // A token sent to the wrong header, or a wrong token, is refused.
    let body = std::fs::read(repo_path("fixtures/planhat/company_changed.json")).unwrap();
    for (header, token) in [("X-Other", PLANHAT_TOKEN), ("X-Hookwise-Token", "wrong")] {
        let (status, problem) = read(
            app.client
                .post(format!("{}/webhooks/planhat", app.url))
                .header("content-type", "application/json")
                .header(header, token)
                .body(body.clone())
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{problem}");
    }
    assert_eq!(app.count_events().await, 4);
    app.stop().await;
}

#[tokio::test]
async fn bad_requests_get_clear_statuses_and_store_nothing() {
    let app = TestApp::spawn().await;

    let (status, problem) = read(
        app.client
            .post(format!("{}/webhooks/nonexistent", app.url))
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(problem["type"], "urn:hookwise:problem:unknown-source");

    let huge = format!(r#"{{"id": 1, "pad": "{}"}}"#, "x".repeat(70_000));
    let (status, problem) = app.send("happyfox", huge.as_bytes(), "m1").await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{problem}");
    assert_eq!(problem["type"], "urn:hookwise:problem:payload-too-large");

    let signed =
        app.source("happyfox")
            .verifier
            .sign(b"id=1", "m2", chrono::Utc::now().timestamp());
    let mut request = app
        .client
        .post(format!("{}/webhooks/happyfox", app.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("id=1");
    for (n, v) in signed.headers {
        request = request.header(n, v);
    }
    let response = request.send().await.unwrap();
    let (status, problem) = read(response).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{problem}");

    let (status, problem) = app.send("happyfox", b"{not json", "m3").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(problem["type"], "urn:hookwise:problem:invalid-json");

    let (status, problem) = app.send("happyfox", br#"{"no": "ticket"}"#, "m4").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(problem["type"], "urn:hookwise:problem:unrecognized-payload");
    assert!(
        problem["detail"].as_str().unwrap().contains("ticket id"),
        "{problem}"
    );

    let (status, _) = read(
        app.client
            .get(format!("{}/nowhere", app.url))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    assert_eq!(app.count_events().await, 0);
    app.stop().await;
}

#[tokio::test]
async fn an_empty_event_id_is_refused_wherever_it_comes_from_and_nothing_is_stored() {
    let app = TestApp::spawn_with(Options {
        extra_config: "[sources.shop]\nkind = \"generic\"\nscheme = \"header-token\"\n\
                       secrets = [\"shop-token\"]\naccount = \"acme\"\nevent = \"order\"\n\
                       subject_pointer = \"/order\"\nid_header = \"X-Event-Id\"\n"
            .into(),
        ..Options::default()
    })
    .await;
    let expect_refused = |what: &str, (status, problem): (StatusCode, Value)| {
        assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {problem}");
        assert_eq!(problem["_problem"], true, "{what}");
        assert_eq!(
            problem["type"], "urn:hookwise:problem:empty-event-id",
            "{what}: {problem}"
        );
    };
    // Standard Webhooks: the signed webhook-id.
    expect_refused("webhook-id", app.send("happyfox", &ticket(1), "").await);
    // GitHub: X-GitHub-Delivery (not signed, but still the id when sent).
    let push = br#"{"repository": "acme/widgets"}"#;
    expect_refused("x-github-delivery", app.send("gh", push, "").await);
    // id_pointer: a blank string where the id should be.
    let invoice =
        json!({"id": "  ", "type": "invoice.paid", "data": {"object": {"customer": "cus_1"}}});
    expect_refused(
        "id_pointer",
        app.send("billing", invoice.to_string().as_bytes(), "x")
            .await,
    );
    // id_header: present and blank.
    let shop = |id: &'static str| {
        app.client
            .post(format!("{}/webhooks/shop", app.url))
            .header("content-type", "application/json")
            .header("x-hookwise-token", "shop-token")
            .header("x-event-id", id)
            .body(r#"{"order": "o-1"}"#)
    };
    expect_refused("id_header", read(shop(" ").send().await.unwrap()).await);
    assert_eq!(app.count_events().await, 0);

    // The same requests with an id are stored.
    let (status, ack) = read(shop("evt-1").send().await.unwrap()).await;
    assert_eq!(
        (status, &ack["event_id"]),
        (StatusCode::ACCEPTED, &json!("evt-1"))
    );
    let (status, _) = app.send("happyfox", &ticket(1), "msg-1").await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(app.count_events().await, 2);
    app.stop().await;
}

#[tokio::test]
async fn no_input_produces_a_server_error() {
    let app = TestApp::spawn().await;
    let mut rng = fastrand::Rng::with_seed(7);
    let sources = [
        "happyfox", "planhat", "truto", "billing", "gh", "nope", "%ff", "a/b",
    ];
    let header_names = [
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "x-hub-signature-256",
        "stripe-signature",
        "x-truto-signature",
        "x-hookwise-token",
        "content-type",
    ];
    for i in 0..300 {
        let source = sources[rng.usize(..sources.len())];
        let len = rng.usize(..64);
        let body: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
        let mut request = app
            .client
            .post(format!("{}/webhooks/{source}", app.url))
            .body(body);
        for _ in 0..rng.usize(..4) {
            let name = header_names[rng.usize(..header_names.len())];
            let value: String = (0..rng.usize(..40)).map(|_| rng.alphanumeric()).collect();
            let value = match rng.u8(..4) {
                0 => format!("v1,{value}"),
                1 => format!("t=1,v1={value}"),
                2 => format!("sha256={value}"),
                _ => value,
            };
            request = request.header(name, value);
        }
        let status = request.send().await.unwrap().status();
        assert!(!status.is_server_error(), "case {i} to {source}: {status}");
    }
    app.stop().await;
}

#[tokio::test]
async fn health_and_readiness() {
    let app = TestApp::spawn().await;
    let health = app
        .client
        .get(format!("{}/healthz", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let ready = app
        .client
        .get(format!("{}/readyz", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    assert!(ready.headers().contains_key("x-request-id"));
    app.stop().await;
}
