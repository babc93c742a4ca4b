//! hookwise's integration tests: one binary, real HTTP on loopback, real SQLite files.

mod handlers;
mod ingest;
mod jobs;
mod replay;
mod support;
