//! The LLM provider breakers for the PostgreSQL store: the SQLite store's `breaker.rs` with the row
//! read `FOR UPDATE`, so replicas reporting at once (or racing for the probe) are applied one
//! after the other.

use crate::store::StoreError;
use crate::store::breaker::{self, BreakerChange, BreakerEvent, BreakerRow};
use sqlx::Row;
use sqlx::postgres::PgConnection;

const SELECT: &str = "SELECT failures, trips, open_until, probe_owner, probe_until, last_error
                      FROM llm_breakers WHERE provider = $1";

async fn select(
    conn: &mut PgConnection,
    provider: &str,
    lock: bool,
) -> Result<Option<BreakerRow>, StoreError> {
    let sql = if lock {
        sqlx::AssertSqlSafe(format!("{SELECT} FOR UPDATE"))
    } else {
        sqlx::AssertSqlSafe(SELECT.to_string())
    };
    let row = sqlx::query(sql)
        .bind(provider)
        .fetch_optional(&mut *conn)
        .await?;
    row.map(|r| {
        let failures: i32 = r.try_get(0)?;
        let trips: i32 = r.try_get(1)?;
        Ok(BreakerRow {
            failures: u32::try_from(failures).unwrap_or(0),
            trips: u32::try_from(trips).unwrap_or(0),
            open_until_ms: r.try_get(2)?,
            probe_owner: r.try_get(3)?,
            probe_until_ms: r.try_get(4)?,
            last_error: r.try_get(5)?,
        })
    })
    .transpose()
}

pub async fn read(
    conn: &mut PgConnection,
    provider: &str,
) -> Result<Option<BreakerRow>, StoreError> {
    select(conn, provider, false).await
}

/// Runs inside a transaction.
pub async fn step(
    conn: &mut PgConnection,
    provider: &str,
    event: &BreakerEvent,
    now: i64,
) -> Result<(BreakerRow, BreakerChange), StoreError> {
    let mut row = select(conn, provider, true).await?;
    if row.is_none() && breaker::step(None, event, now).0.is_some() {
        // No row to lock yet: create it (a concurrent creator wins, harmlessly), then lock it,
        // so two first failures are both counted.
        sqlx::query(
            "INSERT INTO llm_breakers (provider, failures, trips, updated_at)
             VALUES ($1, 0, 0, $2) ON CONFLICT (provider) DO NOTHING",
        )
        .bind(provider)
        .bind(now)
        .execute(&mut *conn)
        .await?;
        row = select(conn, provider, true).await?;
    }
    let (write, change) = breaker::step(row.as_ref(), event, now);
    let Some(new) = write else {
        return Ok((row.unwrap_or_default(), change));
    };
    sqlx::query(
        "UPDATE llm_breakers SET failures = $2, trips = $3, open_until = $4, probe_owner = $5,
             probe_until = $6, last_error = $7, updated_at = $8
         WHERE provider = $1",
    )
    .bind(provider)
    .bind(i32::try_from(new.failures).unwrap_or(i32::MAX))
    .bind(i32::try_from(new.trips).unwrap_or(i32::MAX))
    .bind(new.open_until_ms)
    .bind(&new.probe_owner)
    .bind(new.probe_until_ms)
    .bind(&new.last_error)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok((new, change))
}
