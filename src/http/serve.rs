//! The connection loop: accepts at most `max_connections` connections at once and serves each
//! with HTTP/1.1, closing one whose client takes longer than `header_read_timeout` to send the
//! headers of its next request (slow headers and idle keep-alive alike). On stop, the listener
//! closes first, then every connection finishes the request it has begun and closes.
//!
//! HTTP/1.1 only: a connection's time to its first request is bounded only when hyper owns it
//! from its first byte, which protocol sniffing (HTTP/2 prior knowledge) would not allow. TLS
//! and HTTP/2 belong to the proxy in front.

use crate::config::HttpConfig;
use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// Serves `router` on `listener` until `stop` is cancelled, then waits for every connection to
/// finish its request in flight.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    config: &HttpConfig,
    stop: CancellationToken,
) {
    let mut builder = Builder::new(TokioExecutor::new()).http1_only();
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout);
    // A slot per connection, taken before accepting: at the cap, new connections wait in the
    // kernel's backlog instead of being accepted and starved.
    let slots = Arc::new(Semaphore::new(config.max_connections));
    let connections = TaskTracker::new();
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            _ = stop.cancelled() => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    on_accept_error(e).await;
                    continue;
                }
            },
            _ = stop.cancelled() => break,
        };
        let (stream, peer) = stream;
        // The peer address, for the admin surface's "this machine only" rule.
        let service = TowerToHyperService::new(router.clone().map_request(
            move |mut request: axum::http::Request<_>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                request
            },
        ));
        let (builder, stop) = (builder.clone(), stop.clone());
        connections.spawn(async move {
            let _slot = slot;
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            let result = tokio::select! {
                result = conn.as_mut() => result,
                _ = stop.cancelled() => {
                    // Idle: closed now; a request in flight is answered first.
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

/// A connection that failed between the kernel and `accept` is the client's business; anything
/// else (out of file descriptors) is ours: logged, and accepting pauses briefly so the loop
/// does not spin.
async fn on_accept_error(e: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "cannot accept connections");
    tokio::time::sleep(Duration::from_millis(100)).await;
}
