//! The embedded store: one SQLite file in WAL mode.
//!
//! Writes open with `BEGIN IMMEDIATE` so a transaction takes the write lock up front and waits for
//! it (busy_timeout) instead of failing half-way when another writer got there first.
//! `synchronous = FULL`: an acknowledged event survives a power cut, not only a process crash;
//! group commit pays that fsync once per batch.

use super::migrate::{Migration, SQLITE};
use super::{EventFilter, IngestItem, IngestOutcome, Store, StoreError, StoredEvent};
use crate::event::{EventId, SourceName};
use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, Row};
use std::str::FromStr;
use std::time::Duration;

pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Open {
                url: url.to_string(),
                reason: e.to_string(),
            })?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(|e| StoreError::Open {
                url: url.to_string(),
                reason: e.to_string(),
            })?;
        Ok(Self { pool })
    }
}

fn event_from_row(row: &SqliteRow) -> Result<StoredEvent, sqlx::Error> {
    Ok(StoredEvent {
        seq: row.try_get("seq")?,
        source: SourceName::new(row.try_get::<String, _>("source")?),
        event_id: EventId::new(row.try_get::<String, _>("event_id")?),
        kind: row.try_get("kind")?,
        account: row.try_get("account")?,
        subject: row.try_get("subject")?,
        occurred_at_ms: row.try_get("occurred_at")?,
        received_at_ms: row.try_get("received_at")?,
        status: row.try_get("status")?,
        status_reason: row.try_get("status_reason")?,
        payload: row.try_get("payload")?,
    })
}

#[async_trait]
impl Store for SqliteStore {
    async fn migrate(&self) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        sqlx::raw_sql(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)",
        )
        .execute(&mut *conn)
        .await?;
        for Migration { version, name, sql } in SQLITE {
            let mut tx = sqlx::Connection::begin_with(&mut *conn, "BEGIN IMMEDIATE").await?;
            let applied: Option<i64> =
                sqlx::query_scalar("SELECT version FROM schema_migrations WHERE version = ?")
                    .bind(version)
                    .fetch_optional(&mut *tx)
                    .await?;
            if applied.is_some() {
                continue;
            }
            sqlx::raw_sql(AssertSqlSafe(*sql))
                .execute(&mut *tx)
                .await
                .map_err(|e| StoreError::Migration {
                    version: *version,
                    name,
                    reason: e.to_string(),
                })?;
            sqlx::query(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
            )
            .bind(version)
            .bind(*name)
            .bind(chrono::Utc::now().timestamp_millis())
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            tracing::info!(version, name, "applied migration");
        }
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn ingest(&self, batch: &[IngestItem]) -> Result<Vec<IngestOutcome>, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let mut outcomes = Vec::with_capacity(batch.len());
        for IngestItem { event, ignore } in batch {
            let inserted: Option<i64> = sqlx::query_scalar(
                "INSERT INTO events (source, event_id, kind, account, subject, occurred_at,
                    received_at, actor_kind, actor_id, status, status_reason, payload)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                 ON CONFLICT (source, event_id) DO NOTHING
                 RETURNING seq",
            )
            .bind(event.source.as_str())
            .bind(event.id.as_str())
            .bind(&event.kind)
            .bind(event.account.as_str())
            .bind(&event.subject)
            .bind(event.occurred_at.timestamp_millis())
            .bind(event.received_at.timestamp_millis())
            .bind(event.actor.as_ref().map(|a| a.kind.as_str()))
            .bind(event.actor.as_ref().map(|a| a.id.as_str()))
            .bind(if ignore.is_some() {
                "ignored"
            } else {
                "routed"
            })
            .bind(ignore.as_deref())
            .bind(&event.payload)
            .fetch_optional(&mut *tx)
            .await?;
            outcomes.push(IngestOutcome {
                event_id: event.id.clone(),
                duplicate: inserted.is_none(),
            });
        }
        tx.commit().await?;
        Ok(outcomes)
    }

    async fn get_event(
        &self,
        source: &SourceName,
        id: &EventId,
    ) -> Result<Option<StoredEvent>, StoreError> {
        let row = sqlx::query("SELECT * FROM events WHERE source = ? AND event_id = ?")
            .bind(source.as_str())
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(event_from_row).transpose()?)
    }

    async fn list_events(&self, filter: &EventFilter) -> Result<Vec<StoredEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM events
             WHERE (?1 IS NULL OR source = ?1) AND (?2 IS NULL OR account = ?2)
               AND (?3 IS NULL OR kind = ?3) AND (?4 IS NULL OR seq < ?4)
             ORDER BY seq DESC LIMIT ?5",
        )
        .bind(filter.source.as_deref())
        .bind(filter.account.as_deref())
        .bind(filter.kind.as_deref())
        .bind(filter.before_seq)
        .bind(i64::from(filter.limit.max(1)))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(event_from_row).collect::<Result<_, _>>()?)
    }
}
