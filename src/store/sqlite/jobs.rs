//! Job statements for the SQLite store: plain functions over a connection or transaction, run on
//! the store's thread. Every function that writes expects to be inside a transaction.

use crate::store::{
    JobFilter, JobFinish, JobId, JobRecord, JobState, JobWithEvents, RetryResult, Route,
    StoreError, StoredEvent,
};
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::HashSet;

/// How far past `limit` a claim looks for jobs of accounts that are not busy. Bounds the cost of a
/// claim when the oldest due jobs all belong to accounts already running something.
const CLAIM_SCAN_FACTOR: usize = 16;

/// Creates the route's job, or folds the event into the pending job of its key (trailing
/// debounce: run_at moves to now + period, never past first_seen + max_wait).
pub fn route_event(
    conn: &Connection,
    account: &str,
    event_seq: i64,
    route: &Route,
    now: i64,
) -> Result<JobId, StoreError> {
    let id: i64 = conn
        .prepare_cached(
            "INSERT INTO jobs (handler, account, subject, state, run_at, first_seen, deadline_at,
                attempts, max_attempts, created_at, updated_at)
             VALUES (?1, ?2, ?3, 'pending', ?4 + ?5, ?4, ?4 + ?6, 0, ?7, ?4, ?4)
             ON CONFLICT (handler, account, subject) WHERE state = 'pending'
             DO UPDATE SET run_at = MAX(run_at, MIN(excluded.run_at, deadline_at)),
                           updated_at = excluded.updated_at
             RETURNING id",
        )?
        .query_row(
            params![
                route.handler,
                account,
                route.subject,
                now,
                route.period_ms,
                route.max_wait_ms.max(route.period_ms),
                route.max_attempts
            ],
            |r| r.get(0),
        )?;
    conn.prepare_cached("INSERT OR IGNORE INTO job_events (job_id, event_seq) VALUES (?1, ?2)")?
        .execute(params![id, event_seq])?;
    Ok(JobId(id))
}

pub fn claim(
    conn: &Connection,
    owner: &str,
    now: i64,
    limit: usize,
    lease_ms: i64,
) -> Result<Vec<JobWithEvents>, StoreError> {
    reap_expired_leases(conn, now)?;
    // Accounts running a job, and accounts an upstream told to wait: none of their jobs is due.
    let mut busy: HashSet<String> = conn
        .prepare_cached(
            "SELECT account FROM jobs WHERE state = 'running'
             UNION SELECT account FROM account_pauses WHERE paused_until > ?1",
        )?
        .query_map([now], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let candidates: Vec<(i64, String)> = conn
        .prepare_cached(
            "SELECT id, account FROM jobs INDEXED BY jobs_due
             WHERE state = 'pending' AND run_at <= ?1 ORDER BY run_at, id LIMIT ?2",
        )?
        .query_map(params![now, (limit * CLAIM_SCAN_FACTOR) as i64], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?
        .collect::<Result<_, _>>()?;
    let mut claimed = Vec::new();
    for (id, account) in candidates {
        if claimed.len() == limit {
            break;
        }
        // One running job per account: the first due job of each idle account wins.
        if !busy.insert(account) {
            continue;
        }
        conn.prepare_cached(
            "UPDATE jobs SET state = 'running', attempts = attempts + 1, lease_owner = ?2,
                lease_until = ?3, updated_at = ?4 WHERE id = ?1",
        )?
        .execute(params![id, owner, now + lease_ms, now])?;
        claimed.push(JobId(id));
    }
    claimed
        .into_iter()
        .map(|id| with_events(conn, id))
        .collect()
}

/// A job whose worker stopped heartbeating (crashed, killed, partitioned) counts as a failed
/// attempt and is requeued, or dead when it has none left.
fn reap_expired_leases(conn: &Connection, now: i64) -> Result<(), StoreError> {
    let expired: Vec<(i64, u32, u32)> = conn
        .prepare_cached(
            "SELECT id, attempts, max_attempts FROM jobs WHERE state = 'running' AND lease_until < ?1",
        )?
        .query_map([now], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    for (id, attempts, max_attempts) in expired {
        let error = "lease expired: the worker stopped without finishing the run".to_string();
        if attempts >= max_attempts {
            tracing::warn!(
                job = id,
                attempts,
                "lease expired; no attempts left, job dead"
            );
            set_dead(conn, id, now, &error)?;
        } else {
            tracing::warn!(job = id, attempts, "lease expired; job requeued");
            requeue(conn, id, now, now, Some(&error), false)?;
        }
    }
    Ok(())
}

pub fn extend_lease(
    conn: &Connection,
    job: JobId,
    owner: &str,
    until: i64,
) -> Result<bool, StoreError> {
    let n = conn
        .prepare_cached(
            "UPDATE jobs SET lease_until = ?3 WHERE id = ?1 AND lease_owner = ?2 AND state = 'running'",
        )?
        .execute(params![job.0, owner, until])?;
    Ok(n == 1)
}

pub fn finish(
    conn: &Connection,
    job: JobId,
    owner: &str,
    now: i64,
    finish: JobFinish,
) -> Result<bool, StoreError> {
    // Fencing: a worker whose lease was reclaimed must not overwrite the new owner's state.
    let held: Option<i64> = conn
        .prepare_cached(
            "SELECT id FROM jobs WHERE id = ?1 AND lease_owner = ?2 AND state = 'running'",
        )?
        .query_row(params![job.0, owner], |r| r.get(0))
        .optional()?;
    if held.is_none() {
        return Ok(false);
    }
    match finish {
        JobFinish::Done => {
            conn.prepare_cached(
                "UPDATE jobs SET state = 'done', lease_owner = NULL, lease_until = NULL,
                    updated_at = ?2, finished_at = ?2 WHERE id = ?1",
            )?
            .execute(params![job.0, now])?;
        }
        JobFinish::Dead { error } => set_dead(conn, job.0, now, &error)?,
        JobFinish::Retry { at_ms, error } => {
            requeue(conn, job.0, now, at_ms, Some(&error), false)?;
        }
        JobFinish::Release => {
            requeue(conn, job.0, now, now, None, true)?;
        }
        JobFinish::Defer { at_ms, error } => {
            requeue(conn, job.0, now, at_ms, Some(&error), true)?;
        }
    }
    Ok(true)
}

fn set_dead(conn: &Connection, id: i64, now: i64, error: &str) -> Result<(), StoreError> {
    conn.prepare_cached(
        "UPDATE jobs SET state = 'dead', last_error = ?3, lease_owner = NULL, lease_until = NULL,
            updated_at = ?2, finished_at = ?2 WHERE id = ?1",
    )?
    .execute(params![id, now, error])?;
    Ok(())
}

/// Puts a job back to pending at `run_at`. If its key already has a pending job (events arrived
/// while it ran), the two become one: the pending job takes this job's events and attempt count,
/// and this job is marked merged, so nothing is lost and the retry budget is not reset.
fn requeue(
    conn: &Connection,
    id: i64,
    now: i64,
    run_at: i64,
    error: Option<&str>,
    uncount_attempt: bool,
) -> Result<Option<JobId>, StoreError> {
    let (handler, account, subject, attempts): (String, String, String, u32) = conn
        .prepare_cached("SELECT handler, account, subject, attempts FROM jobs WHERE id = ?1")?
        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
    let attempts = if uncount_attempt {
        attempts.saturating_sub(1)
    } else {
        attempts
    };
    let pending: Option<i64> = conn
        .prepare_cached(
            "SELECT id FROM jobs WHERE handler = ?1 AND account = ?2 AND subject = ?3 AND state = 'pending'",
        )?
        .query_row(params![handler, account, subject], |r| r.get(0))
        .optional()?;
    match pending {
        Some(other) if other != id => {
            conn.prepare_cached(
                "INSERT OR IGNORE INTO job_events (job_id, event_seq)
                 SELECT ?1, event_seq FROM job_events WHERE job_id = ?2",
            )?
            .execute(params![other, id])?;
            conn.prepare_cached(
                "UPDATE jobs SET attempts = MAX(attempts, ?2), run_at = MAX(run_at, ?3),
                    last_error = COALESCE(?4, last_error), updated_at = ?5 WHERE id = ?1",
            )?
            .execute(params![other, attempts, run_at, error, now])?;
            conn.prepare_cached(
                "UPDATE jobs SET state = 'merged', attempts = ?2, last_error = ?3, lease_owner = NULL,
                    lease_until = NULL, updated_at = ?4, finished_at = ?4 WHERE id = ?1",
            )?
            .execute(params![id, attempts, format!("merged into job {other}"), now])?;
            Ok(Some(JobId(other)))
        }
        _ => {
            conn.prepare_cached(
                "UPDATE jobs SET state = 'pending', run_at = ?2, attempts = ?3,
                    last_error = COALESCE(?4, last_error), lease_owner = NULL, lease_until = NULL,
                    updated_at = ?5 WHERE id = ?1",
            )?
            .execute(params![id, run_at, attempts, error, now])?;
            Ok(None)
        }
    }
}

pub fn retry(conn: &Connection, id: JobId, now: i64) -> Result<RetryResult, StoreError> {
    let state: Option<String> = conn
        .prepare_cached("SELECT state FROM jobs WHERE id = ?1")?
        .query_row([id.0], |r| r.get(0))
        .optional()?;
    let Some(state) = state else {
        return Ok(RetryResult::NotFound);
    };
    let state = crate::store::job_state(&state)?;
    if state != JobState::Dead {
        return Ok(RetryResult::NotDead(state));
    }
    conn.prepare_cached("UPDATE jobs SET attempts = 0, finished_at = NULL WHERE id = ?1")?
        .execute([id.0])?;
    Ok(match requeue(conn, id.0, now, now, None, false)? {
        Some(other) => RetryResult::MergedInto(other),
        None => RetryResult::Requeued(id),
    })
}

pub fn next_due(conn: &Connection) -> Result<Option<i64>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT MIN(t) FROM (
                SELECT MIN(run_at) AS t FROM jobs INDEXED BY jobs_due WHERE state = 'pending'
                UNION ALL SELECT MIN(lease_until) FROM jobs WHERE state = 'running')",
        )?
        .query_row([], |r| r.get(0))?)
}

const JOB_COLUMNS: &str = "j.id, j.handler, j.account, j.subject, j.state, j.run_at, j.first_seen,
    j.deadline_at, j.attempts, j.max_attempts, j.lease_owner, j.lease_until, j.last_error,
    j.created_at, j.updated_at, j.finished_at,
    (SELECT COUNT(*) FROM job_events je WHERE je.job_id = j.id) AS events";

fn job_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<JobRecord> {
    let state: String = r.get(4)?;
    Ok(JobRecord {
        id: JobId(r.get(0)?),
        handler: r.get(1)?,
        account: r.get(2)?,
        subject: r.get(3)?,
        state: JobState::parse(&state).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                4,
                rusqlite::types::Type::Text,
                format!("unknown job state {state:?}").into(),
            )
        })?,
        run_at_ms: r.get(5)?,
        first_seen_ms: r.get(6)?,
        deadline_at_ms: r.get(7)?,
        attempts: r.get(8)?,
        max_attempts: r.get(9)?,
        lease_owner: r.get(10)?,
        lease_until_ms: r.get(11)?,
        last_error: r.get(12)?,
        created_at_ms: r.get(13)?,
        updated_at_ms: r.get(14)?,
        finished_at_ms: r.get(15)?,
        events: r.get(16)?,
    })
}

pub fn with_events(conn: &Connection, id: JobId) -> Result<JobWithEvents, StoreError> {
    let job = conn
        .prepare_cached(&format!("SELECT {JOB_COLUMNS} FROM jobs j WHERE j.id = ?1"))?
        .query_row([id.0], job_from_row)?;
    let events: Vec<StoredEvent> = conn
        .prepare_cached(
            "SELECT e.* FROM job_events je JOIN events e ON e.seq = je.event_seq
             WHERE je.job_id = ?1 ORDER BY e.seq",
        )?
        .query_map([id.0], super::event_from_row)?
        .collect::<Result<_, _>>()?;
    Ok(JobWithEvents { job, events })
}

pub fn get(conn: &Connection, id: JobId) -> Result<Option<JobWithEvents>, StoreError> {
    let exists: Option<i64> = conn
        .prepare_cached("SELECT id FROM jobs WHERE id = ?1")?
        .query_row([id.0], |r| r.get(0))
        .optional()?;
    exists.map(|_| with_events(conn, id)).transpose()
}

pub fn list(conn: &Connection, filter: &JobFilter) -> Result<Vec<JobRecord>, StoreError> {
    let rows = conn
        .prepare_cached(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs j
             WHERE (?1 IS NULL OR j.state = ?1) AND (?2 IS NULL OR j.account = ?2)
               AND (?3 IS NULL OR j.handler = ?3) AND (?4 IS NULL OR j.id < ?4)
             ORDER BY j.id DESC LIMIT ?5"
        ))?
        .query_map(
            params![
                filter.state.map(JobState::as_str),
                filter.account,
                filter.handler,
                filter.before_id,
                crate::store::page_limit(filter.limit)
            ],
            job_from_row,
        )?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}
