//! The HTTP boundary as a careless or hostile client meets it: slow headers, idle and surplus
//! connections. Slow clients are raw TCP, the timeouts set to a second or so by configuration, so
//! each test is bounded to a few seconds.

use crate::support::*;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const FAST_HTTP: &str = "[http]\nheader_read_timeout = \"1s\"\n";

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
