//! hookwise: signed webhooks from helpdesk and customer-success platforms, verified, stored once,
//! and turned into safe, rate-limited LLM agent runs. See `src/ARCHITECTURE.md` for the code map.

pub mod agent;
pub mod app;
pub mod approvals;
pub mod cases;
pub mod cli;
pub mod config;
pub mod connectors;
pub mod fixture;
pub mod handler;
pub mod http;
pub mod ingress;
pub mod kernel;
pub mod llm;
pub mod scheduler;
mod server;
pub mod store;
pub mod telemetry;
pub mod tools;
pub mod upstream;

pub use server::{Server, Shutdown, serve};

pub use kernel::init_tls;
