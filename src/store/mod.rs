//! Durable state behind one trait. SQL lives only in this module; SQLite is the embedded default,
//! PostgreSQL serves several replicas, and the same contract tests run against both.

pub mod batcher;
mod migrate;
pub mod sqlite;

use crate::event::{Event, EventId, SourceName};
use async_trait::async_trait;
use serde::Serialize;
use std::sync::Arc;

/// One event to commit, with what routing decided for it.
#[derive(Debug, Clone)]
pub struct IngestItem {
    pub event: Event,
    /// Why the event is stored but not routed (e.g. our own echo); None means route it.
    pub ignore: Option<String>,
}

/// What happened to one submitted event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IngestOutcome {
    pub event_id: EventId,
    /// Already stored before: nothing changed.
    pub duplicate: bool,
}

/// An event as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredEvent {
    pub seq: i64,
    pub source: SourceName,
    pub event_id: EventId,
    pub kind: String,
    pub account: String,
    pub subject: String,
    pub occurred_at_ms: i64,
    pub received_at_ms: i64,
    pub status: String,
    pub status_reason: Option<String>,
    pub payload: String,
}

/// Which events to list, newest first.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub source: Option<String>,
    pub account: Option<String>,
    pub kind: Option<String>,
    /// Only events with a smaller `seq` (paging backwards).
    pub before_seq: Option<i64>,
    pub limit: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("SQLite error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("cannot open store {url}: {reason}")]
    Open { url: String, reason: String },
    #[error("migration {version} ({name}) failed: {reason}")]
    Migration {
        version: i64,
        name: &'static str,
        reason: String,
    },
    /// A batch this request was part of failed; the request's event was not stored.
    #[error("store write failed: {0}")]
    Batch(Arc<str>),
    #[error("the store is shutting down")]
    Closed,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Applies pending migrations; safe to call on every start and from several processes.
    async fn migrate(&self) -> Result<(), StoreError>;
    /// Cheap round trip for readiness checks.
    async fn ping(&self) -> Result<(), StoreError>;
    /// Commits a batch in ONE transaction: dedupe on (source, event id), then routing.
    /// Outcomes are in the order of `batch`. Either all are committed or none.
    async fn ingest(&self, batch: Vec<IngestItem>) -> Result<Vec<IngestOutcome>, StoreError>;
    async fn get_event(
        &self,
        source: &SourceName,
        id: &EventId,
    ) -> Result<Option<StoredEvent>, StoreError>;
    async fn list_events(&self, filter: &EventFilter) -> Result<Vec<StoredEvent>, StoreError>;
}

pub type SharedStore = Arc<dyn Store>;

/// Opens the store named by a URL: `sqlite://PATH` or `postgres://...`.
pub async fn open(url: &str) -> Result<SharedStore, StoreError> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(sqlite::SqliteStore::open(url).await?))
    } else {
        Err(StoreError::Open {
            url: redact(url),
            reason: "PostgreSQL support is not built yet; use sqlite://PATH".into(),
        })
    }
}

/// A store URL safe to print: any password is replaced.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let creds = &url[scheme_end + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}
