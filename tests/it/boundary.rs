//! The HTTP boundary as a careless or hostile client meets it: slow and oversized bodies, slow
//! headers, idle and surplus connections, bad paths and query strings. Slow clients are raw TCP,
//! the timeouts set to a second or so by configuration, so each test is bounded to a few seconds.

use crate::support::*;
use reqwest::StatusCode;
use serde_json::Value;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const FAST_HTTP: &str = "[http]\nheader_read_timeout = \"1s\"\nbody_read_timeout = \"1s\"\n";

async fn spawn_fast(extra: &str) -> TestApp {
    TestApp::spawn_with(Options {
        extra_config: format!("{FAST_HTTP}{extra}"),
        ..Options::default()
    })
    .await
}

fn addr(app: &TestApp) -> String {
    app.url.trim_start_matches("http://").to_string()
}

/// Everything the server sends until it closes the connection, or panics after `limit`.
async fn read_until_closed(stream: &mut tokio::net::tcp::OwnedReadHalf, limit: Duration) -> String {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => panic!(
                "the connection was still open after {limit:?}; received {:?}",
                String::from_utf8_lossy(&received)
            ),
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&received).into_owned()
}

/// The JSON body of a raw HTTP/1.1 response (not chunked: problems are sent whole).
fn body_of(response: &str) -> Value {
    let (_, body) = response.split_once("\r\n\r\n").expect("a whole response");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {response}"))
}

async fn metric(app: &TestApp, series: &str) -> Option<f64> {
    let text = app
        .client
        .get(format!("{}/metrics", app.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.parse().unwrap())
}

#[tokio::test]
async fn a_slow_body_gets_408_problem_json_and_is_counted() {
    let app = spawn_fast("").await;
    let body = ticket(7);
    let signed = app
        .source("happyfox")
        .verifier
        .sign(&body, "msg-slow", app.now());
    let mut head = format!(
        "POST /webhooks/happyfox HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in signed.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let (mut reader, mut writer) = TcpStream::connect(addr(&app)).await.unwrap().into_split();
    let started = Instant::now();
    writer.write_all(head.as_bytes()).await.unwrap();
    // One byte every 100 ms: the whole body would take seconds.
    let dribble = tokio::spawn(async move {
        for byte in body {
            if writer.write_all(&[byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let response = read_until_closed(&mut reader, Duration::from_secs(5)).await;
    dribble.abort();
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    assert!(
        response
            .to_ascii_lowercase()
            .contains("content-type: application/problem+json"),
        "{response}"
    );
    assert_eq!(
        body_of(&response)["type"],
        "urn:hookwise:problem:body-timeout"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "not before body_read_timeout"
    );
    assert_eq!(app.count_events().await, 0);
    assert_eq!(
        metric(
            &app,
            "hookwise_webhooks_received_total{source=\"happyfox\",outcome=\"timeout\"}"
        )
        .await,
        Some(1.0)
    );
    app.stop().await;
}

#[tokio::test]
async fn a_declared_length_over_the_limit_gets_413_at_once_without_100_continue() {
    // Timeouts at their defaults (20 s for a body): an answer within 2 s is not a timeout.
    let app = TestApp::spawn().await;
    let limit = app.config.max_body_bytes;
    for (name, head, sent) in [
        (
            "ten gigabytes declared, a little sent",
            "Content-Length: 10000000000\r\n".to_string(),
            vec![b'{'; 1000],
        ),
        (
            "Expect: 100-continue",
            format!("Content-Length: {}\r\nExpect: 100-continue\r\n", limit * 8),
            vec![],
        ),
    ] {
        let (mut reader, mut writer) = TcpStream::connect(addr(&app)).await.unwrap().into_split();
        writer
            .write_all(
                format!(
                    "POST /webhooks/happyfox HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{head}\r\n"
                )
                .as_bytes(),
            )
            .await
            .unwrap();
        writer.write_all(&sent).await.unwrap();
        let response = read_until_closed(&mut reader, Duration::from_secs(2)).await;
        assert!(response.starts_with("HTTP/1.1 413"), "{name}: {response}");
        assert!(!response.contains("100 Continue"), "{name}: {response}");
        assert_eq!(
            body_of(&response)["type"],
            "urn:hookwise:problem:payload-too-large",
            "{name}"
        );
    }
    assert_eq!(app.count_events().await, 0);
    app.stop().await;
}

#[tokio::test]
async fn source_names_that_are_no_source_get_404_problems_that_echo_little() {
    let app = TestApp::spawn().await;
    let long = "a".repeat(40_000);
    for path in ["%FF", "%C0%AE%C0%AE", long.as_str()] {
        let (status, problem) = read(
            app.client
                .post(format!("{}/webhooks/{path}", app.url))
                .header("content-type", "application/json")
                .body("{}")
                .send()
                .await
                .unwrap(),
        )
        .await;
        let shown = &path[..path.len().min(20)];
        assert_eq!(status, StatusCode::NOT_FOUND, "{shown}: {problem}");
        assert_eq!(
            problem["type"], "urn:hookwise:problem:unknown-source",
            "{shown}"
        );
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.len() < 200, "{shown}: echoed {} bytes", detail.len());
    }
    app.stop().await;
}

#[tokio::test]
async fn every_refusal_is_a_problem_with_a_stable_type() {
    let app = TestApp::spawn().await;
    let base = &app.url;
    let big = vec![b' '; 3 * 1024 * 1024];
    let cases: Vec<(&str, reqwest::RequestBuilder, StatusCode, &str)> = vec![
        (
            "negative limit",
            app.client.get(format!("{base}/api/events?limit=-1")),
            StatusCode::BAD_REQUEST,
            "invalid-query",
        ),
        (
            "before not a number",
            app.client.get(format!("{base}/api/jobs?before=x")),
            StatusCode::BAD_REQUEST,
            "invalid-query",
        ),
        (
            "unknown query key",
            app.client.get(format!("{base}/api/runs?colour=red")),
            StatusCode::BAD_REQUEST,
            "invalid-query",
        ),
        (
            "job id not a number",
            app.client.get(format!("{base}/api/jobs/abc")),
            StatusCode::BAD_REQUEST,
            "invalid-path",
        ),
        (
            "job id past i64",
            app.client
                .get(format!("{base}/api/jobs/99999999999999999999")),
            StatusCode::BAD_REQUEST,
            "invalid-path",
        ),
        (
            "retry of a bad id",
            app.client.post(format!("{base}/api/jobs/abc/retry")),
            StatusCode::BAD_REQUEST,
            "invalid-path",
        ),
        (
            "approval id",
            app.client.get(format!("{base}/api/approvals/x")),
            StatusCode::BAD_REQUEST,
            "invalid-path",
        ),
        (
            "3 MB decision",
            app.client
                .post(format!("{base}/api/approvals/1/approve"))
                .body(big),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload-too-large",
        ),
        (
            "GET a webhook",
            app.client.get(format!("{base}/webhooks/happyfox")),
            StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
        ),
        (
            "DELETE a job",
            app.client.delete(format!("{base}/api/jobs/1")),
            StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
        ),
        (
            "no such route",
            app.client.get(format!("{base}/nowhere")),
            StatusCode::NOT_FOUND,
            "not-found",
        ),
    ];
    for (name, request, status, kind) in cases {
        let response = request.send().await.unwrap();
        let allow = response.headers().get("allow").cloned();
        let (got, problem) = read(response).await;
        assert_eq!(got, status, "{name}: {problem}");
        assert_eq!(problem["_problem"], true, "{name}: {problem}");
        assert_eq!(
            problem["type"],
            format!("urn:hookwise:problem:{kind}"),
            "{name}"
        );
        assert_eq!(problem["status"], status.as_u16(), "{name}");
        if status == StatusCode::METHOD_NOT_ALLOWED {
            assert!(allow.is_some(), "{name}: 405 names the allowed methods");
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn slow_headers_and_idle_connections_are_closed() {
    let app = spawn_fast("").await;
    let started = Instant::now();
    // Headers that never end: one line every 300 ms.
    let (mut slow_reader, mut slow_writer) =
        TcpStream::connect(addr(&app)).await.unwrap().into_split();
    let dribble = tokio::spawn(async move {
        let _ = slow_writer
            .write_all(b"POST /webhooks/happyfox HTTP/1.1\r\nHost: x\r\n")
            .await;
        for i in 0.. {
            tokio::time::sleep(Duration::from_millis(300)).await;
            if slow_writer
                .write_all(format!("X-Pad-{i}: y\r\n").as_bytes())
                .await
                .is_err()
            {
                break;
            }
        }
    });
    // A connection that never sends anything.
    let (mut silent, _silent_writer) = TcpStream::connect(addr(&app)).await.unwrap().into_split();
    // A keep-alive connection after its answer.
    let (mut idle, mut idle_writer) = TcpStream::connect(addr(&app)).await.unwrap().into_split();
    idle_writer
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();

    let slow = read_until_closed(&mut slow_reader, Duration::from_secs(4)).await;
    assert!(slow.is_empty() || slow.starts_with("HTTP/1.1 4"), "{slow}");
    assert!(
        read_until_closed(&mut silent, Duration::from_secs(4))
            .await
            .is_empty()
    );
    let answered = read_until_closed(&mut idle, Duration::from_secs(4)).await;
    assert!(
        answered.starts_with("HTTP/1.1 200") && answered.ends_with("ok"),
        "{answered}"
    );
    dribble.abort();
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "closed by header_read_timeout, not at once"
    );
    app.stop().await;
}

#[tokio::test]
async fn connections_over_the_cap_wait_for_one_to_close() {
    let app = TestApp::spawn_with(Options {
        extra_config: "[http]\nmax_connections = 2\n".into(),
        ..Options::default()
    })
    .await;
    let first = TcpStream::connect(addr(&app)).await.unwrap();
    let second = TcpStream::connect(addr(&app)).await.unwrap();
    // The third is queued by the kernel, not served.
    let (mut third, mut third_writer) = TcpStream::connect(addr(&app)).await.unwrap().into_split();
    third_writer
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    assert!(
        tokio::time::timeout(Duration::from_millis(500), third.read(&mut buf))
            .await
            .is_err(),
        "answered while two connections were open"
    );
    drop(first);
    let answer = read_until_closed(&mut third, Duration::from_secs(3)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    drop(second);
    app.stop().await;
}
