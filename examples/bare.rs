//! The baseline for the ingest benchmark: an axum route that reads the body and returns 200, on the
//! same runtime and framework as hookwise, so the ratio shows what verification, parsing and the
//! durable commit cost. Usage: `cargo run --release --example bare -- 127.0.0.1:18090`.

use axum::Router;
use axum::body::Bytes;
use axum::routing::post;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18090".into());
    let app = Router::new().route(
        "/webhooks/{source}",
        post(|body: Bytes| async move { if body.is_empty() { "empty" } else { "ok" } }),
    );
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    axum::serve(listener, app).await
}
