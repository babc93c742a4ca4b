//! hookwise: signed webhooks from helpdesk and customer-success platforms, verified, stored once,
//! and turned into safe, rate-limited LLM agent runs. See `src/ARCHITECTURE.md` for the code map.

pub mod agent;
pub mod approvals;
pub mod cli;
pub mod clock;
pub mod config;
pub mod event;
pub mod fixture;
pub mod handler;
pub mod http;
pub mod ingress;
pub mod scheduler;
mod server;
pub mod store;
pub mod tools;
pub mod upstream;

pub use server::{Server, serve};

/// reqwest is built without a default TLS provider (it would compile aws-lc, ~50 s of C on two
/// cores); ring is installed once, before any client is built.
pub fn init_tls() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
