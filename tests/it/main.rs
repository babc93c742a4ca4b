//! hookwise's integration tests: one binary, real HTTP on loopback, real SQLite files, and a real
//! PostgreSQL when `HOOKWISE_TEST_POSTGRES_URL` is set.

mod agent;
mod api;
mod approvals;
mod boundary;
mod cases;
mod check;
mod crash;
mod dashboard;
mod drain;
mod handlers;
mod happyfox;
mod ingest;
mod jobs;
mod layering;
mod llm;
mod llm_faults;
mod log_safety;
mod metrics;
mod openapi;
mod paging;
mod planhat;
mod prune;
mod real_llm;
mod replay;
mod replicas;
mod rolling_restart;
mod runs;
mod scopes;
mod secrets;
mod store_contract;
mod store_open;
mod support;
mod traces;
mod truto;
mod upstream;
