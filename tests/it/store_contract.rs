//! The `Store` contract: every scenario runs against SQLite (a temp file) and PostgreSQL (a fresh
//! schema, when `HOOKWISE_TEST_POSTGRES_URL` is set; skipped loudly otherwise, see `support::gate`),
//! through the trait only, at fixed times.
//!
//! `contract!` turns each scenario `name` into the tests `store_contract::name::sqlite` and
//! `store_contract::name::postgres`, so `cargo test store_contract::name` runs both backends and
//! `cargo test postgres` runs every PostgreSQL variant.

mod approvals;
mod breaker;
mod dashboard;
mod ingest;
mod jobs;
mod replicas;
mod retention;
mod runs;
mod upstream;
mod usage;

use crate::support::gate;
use chrono::{DateTime, TimeZone, Utc};
use hookwise::kernel::event::{AccountId, Event, EventId, SourceName};
use hookwise::store::{
    Disposition, IngestItem, IngestOutcome, JobId, JobWithEvents, Route, SharedStore,
};
use std::future::Future;

/// 2026-01-01T00:00:00Z: every scenario's clock starts here.
pub const T0: i64 = 1_767_225_600_000;

macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        $(
            // Module and function share the name: modules live in the type namespace.
            mod $name {
                #[tokio::test]
                async fn sqlite() {
                    crate::store_contract::on_sqlite(super::$name).await;
                }

                #[tokio::test]
                async fn postgres() {
                    crate::store_contract::on_postgres(
                        concat!(module_path!(), "::postgres"),
                        super::$name,
                    )
                    .await;
                }
            }
        )*
    };
}
pub(crate) use contract;

/// Runs `scenario` on a migrated SQLite store in a fresh temp file.
pub async fn on_sqlite<F, Fut>(scenario: F)
where
    F: FnOnce(SharedStore) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("contract.db").display());
    let store = hookwise::store::open(&url).await.unwrap();
    store.migrate().await.unwrap();
    scenario(store).await;
}

/// Runs `scenario` on a migrated PostgreSQL store in a schema of its own.
pub async fn on_postgres<F, Fut>(test: &str, scenario: F)
where
    F: FnOnce(SharedStore) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    in_schema(test, |schema| async move {
        let store = schema.open_store().await;
        scenario(store).await;
    })
    .await;
}

/// Runs `scenario` with a fresh PostgreSQL schema, dropped afterwards even when the scenario
/// panics. Without the URL it is skipped (`support::gate`).
pub async fn in_schema<F, Fut>(test: &str, scenario: F)
where
    F: FnOnce(TestSchema) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(schema) = TestSchema::create(test).await else {
        return;
    };
    let outcome = tokio::spawn(scenario(schema.clone())).await;
    schema.drop().await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// A fresh PostgreSQL schema for one test.
#[derive(Clone)]
pub struct TestSchema {
    base_url: String,
    pub name: String,
}

impl TestSchema {
    /// None (after saying so, or a panic under `HOOKWISE_TEST_REQUIRE_ALL=1`) when no
    /// PostgreSQL is configured.
    pub async fn create(test: &str) -> Option<Self> {
        let base_url = gate::var(gate::POSTGRES_URL_VAR, test, gate::POSTGRES_HOW)?;
        let name = format!("hw_test_{:016x}", fastrand::u64(..));
        Some(Self { base_url, name })
    }

    /// The store URL for this schema, with `extra` query parameters (`key=value&...`).
    pub fn url(&self, extra: &str) -> String {
        let sep = if self.base_url.contains('?') {
            '&'
        } else {
            '?'
        };
        let extra = if extra.is_empty() {
            String::new()
        } else {
            format!("&{extra}")
        };
        format!("{}{sep}schema={}{extra}", self.base_url, self.name)
    }

    /// Another "replica": its own pool on the same schema, migrated (which is a no-op after the
    /// first).
    pub async fn open_store(&self) -> SharedStore {
        let store = hookwise::store::open(&self.url("")).await.unwrap();
        store.migrate().await.unwrap();
        store
    }

    /// A plain connection with this schema on its search path, for what the trait cannot do.
    pub async fn connect(&self) -> sqlx::PgConnection {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&self.base_url).await.unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "SET search_path TO {}",
            self.name
        )))
        .execute(&mut conn)
        .await
        .unwrap();
        conn
    }

    pub async fn drop(&self) {
        let mut conn = self.connect().await;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA IF EXISTS {} CASCADE",
            self.name
        )))
        .execute(&mut conn)
        .await
        .unwrap();
    }
}

pub fn at(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).unwrap()
}

/// A HappyFox ticket event received at `received_ms`.
pub fn event(id: &str, account: &str, subject: &str, received_ms: i64) -> Event {
    Event {
        id: EventId::new(id),
        source: SourceName::new("happyfox"),
        kind: "happyfox.ticket.updated".into(),
        account: AccountId::new(account),
        subject: subject.into(),
        occurred_at: at(received_ms - 1_000),
        received_at: at(received_ms),
        actor: None,
        payload: format!(r#"{{"id":"{id}"}}"#),
    }
}

/// A route with a 60 s debounce, a 5 min cap and three attempts.
pub fn route(handler: &str, subject: &str) -> Route {
    Route {
        handler: handler.into(),
        subject: subject.into(),
        period_ms: 60_000,
        max_wait_ms: 300_000,
        max_attempts: 3,
    }
}

/// A route without debounce: its job is due when the event arrives.
pub fn immediate(handler: &str, subject: &str, max_attempts: u32) -> Route {
    Route {
        period_ms: 0,
        max_wait_ms: 0,
        max_attempts,
        ..route(handler, subject)
    }
}

pub fn routed(event: Event, routes: Vec<Route>) -> IngestItem {
    IngestItem {
        event,
        disposition: Disposition::Route(routes),
        trace_context: None,
    }
}

pub async fn ingest_one(store: &SharedStore, event: Event, routes: Vec<Route>) -> IngestOutcome {
    let mut outcomes = store.ingest(vec![routed(event, routes)]).await.unwrap();
    assert_eq!(outcomes.len(), 1);
    outcomes.remove(0)
}

/// A job of `triage` for (account, subject) due at `run_at`, with one event named `id`.
pub async fn due_job(
    store: &SharedStore,
    id: &str,
    account: &str,
    subject: &str,
    run_at: i64,
) -> JobId {
    let outcome = ingest_one(
        store,
        event(id, account, subject, run_at),
        vec![immediate("triage", subject, 3)],
    )
    .await;
    assert_eq!(outcome.jobs.len(), 1, "{outcome:?}");
    outcome.jobs[0]
}

pub async fn job(store: &SharedStore, id: JobId) -> JobWithEvents {
    store
        .get_job(id)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("job {id} exists"))
}

pub fn ids(jobs: &[JobWithEvents]) -> Vec<JobId> {
    jobs.iter().map(|j| j.job.id).collect()
}

pub fn event_ids(job: &JobWithEvents) -> Vec<&str> {
    job.events.iter().map(|e| e.event_id.as_str()).collect()
}
