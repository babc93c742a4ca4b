//! Upstream statements for the PostgreSQL store: the SQLite store's `upstream.rs`, statement for
//! statement. The journal's primary key settles two replicas beginning one write; budgets are
//! read `FOR UPDATE`, so replicas reserve calls one after another.

use crate::store::{ActionBegin, JobId, StoreError, StoredAction};
use sqlx::Row;
use sqlx::postgres::PgConnection;

pub async fn begin_action(
    conn: &mut PgConnection,
    key: &str,
    job: JobId,
    account: &str,
    request: &str,
    now: i64,
) -> Result<ActionBegin, StoreError> {
    let inserted = sqlx::query(
        "INSERT INTO actions (key, job_id, account, request, state, created_at)
         VALUES ($1, $2, $3, $4, 'sent', $5) ON CONFLICT (key) DO NOTHING",
    )
    .bind(key)
    .bind(job.0)
    .bind(account)
    .bind(request)
    .bind(now)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if inserted == 1 {
        return Ok(ActionBegin::Fresh);
    }
    let row = sqlx::query("SELECT state, status, response, request FROM actions WHERE key = $1")
        .bind(key)
        .fetch_one(&mut *conn)
        .await?;
    let status: Option<i32> = row.try_get(1)?;
    Ok(crate::store::action_begin(
        row.try_get(0)?,
        status.and_then(|s| u16::try_from(s).ok()),
        row.try_get(2)?,
        row.try_get(3)?,
    ))
}

pub async fn finish_action(
    conn: &mut PgConnection,
    key: &str,
    status: u16,
    response: &str,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE actions SET state = 'done', status = $2, response = $3, finished_at = $4
         WHERE key = $1",
    )
    .bind(key)
    .bind(i32::from(status))
    .bind(response)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub async fn abandon_action(conn: &mut PgConnection, key: &str) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM actions WHERE key = $1 AND state = 'sent'")
        .bind(key)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

pub async fn list_actions(
    conn: &mut PgConnection,
    job: JobId,
) -> Result<Vec<StoredAction>, StoreError> {
    let rows = sqlx::query(
        "SELECT key, job_id, account, request, state, status, response, created_at, finished_at
         FROM actions WHERE job_id = $1 ORDER BY created_at, key",
    )
    .bind(job.0)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|r| {
            let status: Option<i32> = r.try_get(5)?;
            Ok(StoredAction {
                key: r.try_get(0)?,
                job: JobId(r.try_get(1)?),
                account: r.try_get(2)?,
                request: r.try_get(3)?,
                state: r.try_get(4)?,
                status: status.and_then(|s| u16::try_from(s).ok()),
                response: r.try_get(6)?,
                created_at_ms: r.try_get(7)?,
                finished_at_ms: r.try_get(8)?,
            })
        })
        .collect()
}

/// Runs inside a transaction: the budget row is created if missing, then locked, so concurrent
/// reservations for one budget queue up instead of both reading the same tat.
pub async fn reserve_call(
    conn: &mut PgConnection,
    account: &str,
    bucket: &str,
    now: i64,
    interval: i64,
    horizon: i64,
) -> Result<(i64, bool), StoreError> {
    sqlx::query(
        "INSERT INTO rate_budgets (account, bucket, tat) VALUES ($1, $2, $3)
         ON CONFLICT (account, bucket) DO NOTHING",
    )
    .bind(account)
    .bind(bucket)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    let tat: i64 = sqlx::query_scalar(
        "SELECT tat FROM rate_budgets WHERE account = $1 AND bucket = $2 FOR UPDATE",
    )
    .bind(account)
    .bind(bucket)
    .fetch_one(&mut *conn)
    .await?;
    let paused: Option<i64> =
        sqlx::query_scalar("SELECT paused_until FROM account_pauses WHERE account = $1")
            .bind(account)
            .fetch_optional(&mut *conn)
            .await?;
    let (wait, new_tat) = crate::store::reserve_slot(Some(tat), paused, now, interval, horizon);
    if let Some(new_tat) = new_tat {
        sqlx::query("UPDATE rate_budgets SET tat = $3 WHERE account = $1 AND bucket = $2")
            .bind(account)
            .bind(bucket)
            .bind(new_tat)
            .execute(&mut *conn)
            .await?;
    }
    Ok((wait, new_tat.is_some()))
}

pub async fn pause_account(
    conn: &mut PgConnection,
    account: &str,
    until: i64,
    reason: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO account_pauses (account, paused_until, reason) VALUES ($1, $2, $3)
         ON CONFLICT (account) DO UPDATE SET paused_until = excluded.paused_until,
             reason = excluded.reason
         WHERE excluded.paused_until > account_pauses.paused_until",
    )
    .bind(account)
    .bind(until)
    .bind(reason)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub async fn account_pause(
    conn: &mut PgConnection,
    account: &str,
) -> Result<Option<(i64, String)>, StoreError> {
    Ok(
        sqlx::query_as("SELECT paused_until, reason FROM account_pauses WHERE account = $1")
            .bind(account)
            .fetch_optional(&mut *conn)
            .await?,
    )
}
