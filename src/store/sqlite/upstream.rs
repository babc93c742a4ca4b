//! Upstream statements for the SQLite store: the action journal and account pauses (the rate
//! governor's budgets are kept in memory, see `SqliteStore::budgets`).

use crate::store::{ActionBegin, JobId, StoreError, StoredAction};
use rusqlite::{Connection, OptionalExtension, params};

pub fn begin_action(
    conn: &Connection,
    key: &str,
    job: JobId,
    account: &str,
    request: &str,
    now: i64,
) -> Result<ActionBegin, StoreError> {
    let inserted = conn
        .prepare_cached(
            "INSERT INTO actions (key, job_id, account, request, state, created_at)
             VALUES (?1, ?2, ?3, ?4, 'sent', ?5) ON CONFLICT (key) DO NOTHING",
        )?
        .execute(params![key, job.0, account, request, now])?;
    if inserted == 1 {
        return Ok(ActionBegin::Fresh);
    }
    let (state, status, response, request): (String, Option<u16>, Option<String>, String) = conn
        .prepare_cached("SELECT state, status, response, request FROM actions WHERE key = ?1")?
        .query_row([key], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
    Ok(crate::store::action_begin(state, status, response, request))
}

pub fn finish_action(
    conn: &Connection,
    key: &str,
    status: u16,
    response: &str,
    now: i64,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "UPDATE actions SET state = 'done', status = ?2, response = ?3, finished_at = ?4
         WHERE key = ?1",
    )?
    .execute(params![key, status, response, now])?;
    Ok(())
}

pub fn abandon_action(conn: &Connection, key: &str) -> Result<(), StoreError> {
    conn.prepare_cached("DELETE FROM actions WHERE key = ?1 AND state = 'sent'")?
        .execute([key])?;
    Ok(())
}

pub fn list_actions(conn: &Connection, job: JobId) -> Result<Vec<StoredAction>, StoreError> {
    let rows = conn
        .prepare_cached(
            "SELECT key, job_id, account, request, state, status, response, created_at, finished_at
             FROM actions WHERE job_id = ?1 ORDER BY created_at, key",
        )?
        .query_map([job.0], |r| {
            Ok(StoredAction {
                key: r.get(0)?,
                job: JobId(r.get(1)?),
                account: r.get(2)?,
                request: r.get(3)?,
                state: r.get(4)?,
                status: r.get(5)?,
                response: r.get(6)?,
                created_at_ms: r.get(7)?,
                finished_at_ms: r.get(8)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

pub fn pause_account(
    conn: &Connection,
    account: &str,
    until: i64,
    reason: &str,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO account_pauses (account, paused_until, reason) VALUES (?1, ?2, ?3)
         ON CONFLICT (account) DO UPDATE SET paused_until = excluded.paused_until,
             reason = excluded.reason
         WHERE excluded.paused_until > account_pauses.paused_until",
    )?
    .execute(params![account, until, reason])?;
    Ok(())
}

pub fn account_pause(
    conn: &Connection,
    account: &str,
) -> Result<Option<(i64, String)>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT paused_until, reason FROM account_pauses WHERE account = ?1")?
        .query_row([account], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?)
}
