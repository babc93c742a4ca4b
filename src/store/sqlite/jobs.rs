//! Job statements for the SQLite store: plain functions over a connection or transaction, run on
//! the store's thread. The transitions themselves are `store::job_machine`'s: these functions
//! read a job's row, apply one, and write the result. Every function that writes expects to be
//! inside a transaction.

use crate::store::job_machine::{self, JobEvent, JobSnapshot, NewJob, Placement, Transition};
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
/// debounce, `job_machine::debounce`: run_at moves to now + period, never past the deadline).
/// True when the event was folded into a job already pending.
pub fn route_event(
    conn: &Connection,
    account: &str,
    event_seq: i64,
    route: &Route,
    now: i64,
) -> Result<(JobId, bool), StoreError> {
    let new = NewJob::for_route(route, now);
    let (id, run_at, deadline_at, folds): (i64, i64, i64, i64) = conn
        .prepare_cached(
            "INSERT INTO jobs (handler, account, subject, state, run_at, first_seen, deadline_at,
                attempts, max_attempts, created_at, updated_at)
             VALUES (?1, ?2, ?3, 'pending', ?4, ?5, ?6, 0, ?7, ?5, ?5)
             ON CONFLICT (handler, account, subject) WHERE state = 'pending'
             DO UPDATE SET updated_at = excluded.updated_at, folded_events = folded_events + 1
             RETURNING id, run_at, deadline_at, folded_events",
        )?
        .query_row(
            params![
                route.handler,
                account,
                route.subject,
                new.run_at_ms,
                new.first_seen_ms,
                new.deadline_at_ms,
                route.max_attempts
            ],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )?;
    // A job this event created already runs when it should; a folded one may move.
    let debounced = job_machine::debounce(run_at, deadline_at, now, route.period_ms);
    if debounced != run_at {
        conn.prepare_cached("UPDATE jobs SET run_at = ?2 WHERE id = ?1")?
            .execute(params![id, debounced])?;
    }
    conn.prepare_cached("INSERT OR IGNORE INTO job_events (job_id, event_seq) VALUES (?1, ?2)")?
        .execute(params![id, event_seq])?;
    Ok((JobId(id), folds > 0))
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
    let expired: Vec<JobSnapshot> = conn
        .prepare_cached(&format!(
            "{SNAPSHOT} WHERE state = 'running' AND lease_until < ?1"
        ))?
        .query_map([now], snapshot_from_row)?
        .collect::<Result<Result<_, _>, _>>()??;
    for job in &expired {
        if let Some(transition) = job_machine::reap(job, now) {
            apply(conn, transition)?;
            super::runs::interrupt(conn, job.id, now)?;
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
    let Some(job) = snapshot(conn, job)? else {
        return Ok(false);
    };
    // Fencing: a worker whose lease was reclaimed must not overwrite the new owner's state.
    match job_machine::transition(&job, JobEvent::Finished { owner, finish }, now) {
        Ok(transition) => {
            apply(conn, transition)?;
            // A run that ended without recording its end (dropped at the deadline or at
            // shutdown, panicked) is closed with the job; a run that recorded it is untouched.
            super::runs::interrupt(conn, job.id, now)?;
            Ok(true)
        }
        Err(_) => Ok(false),
    }
}

pub fn retry(conn: &Connection, id: JobId, now: i64) -> Result<RetryResult, StoreError> {
    let Some(job) = snapshot(conn, id)? else {
        return Ok(RetryResult::NotFound);
    };
    match job_machine::transition(&job, JobEvent::Revived, now) {
        Ok(transition) => Ok(match apply(conn, transition)? {
            Some(other) => RetryResult::MergedInto(other),
            None => RetryResult::Requeued(id),
        }),
        Err(_) => Ok(RetryResult::NotDead(job.state)),
    }
}

/// The columns of a `JobSnapshot`, in `snapshot_from_row`'s order.
const SNAPSHOT: &str =
    "SELECT id, handler, account, subject, state, run_at, attempts, max_attempts,
    lease_owner, lease_until, last_error, updated_at, finished_at FROM jobs";

fn snapshot_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<JobSnapshot, StoreError>> {
    let state = match crate::store::job_state(&r.get::<_, String>(4)?) {
        Ok(state) => state,
        Err(e) => return Ok(Err(e)),
    };
    Ok(Ok(JobSnapshot {
        id: JobId(r.get(0)?),
        handler: r.get(1)?,
        account: r.get(2)?,
        subject: r.get(3)?,
        state,
        run_at_ms: r.get(5)?,
        attempts: r.get(6)?,
        max_attempts: r.get(7)?,
        lease_owner: r.get(8)?,
        lease_until_ms: r.get(9)?,
        last_error: r.get(10)?,
        updated_at_ms: r.get(11)?,
        finished_at_ms: r.get(12)?,
    }))
}

fn snapshot(conn: &Connection, id: JobId) -> Result<Option<JobSnapshot>, StoreError> {
    conn.prepare_cached(&format!("{SNAPSHOT} WHERE id = ?1"))?
        .query_row([id.0], snapshot_from_row)
        .optional()?
        .transpose()
}

/// Writes what a transition decided. For a requeue, the key's pending job decides between
/// pending again and merged; returns the job merged into, if any.
fn apply(conn: &Connection, transition: Transition) -> Result<Option<JobId>, StoreError> {
    let requeue = match transition {
        Transition::Write(row) => return write(conn, &row).map(|()| None),
        Transition::Requeue(requeue) => requeue,
    };
    let key = requeue.job();
    let pending = conn
        .prepare_cached(&format!(
            "{SNAPSHOT} WHERE handler = ?1 AND account = ?2 AND subject = ?3 AND state = 'pending'"
        ))?
        .query_row(
            params![key.handler, key.account, key.subject],
            snapshot_from_row,
        )
        .optional()?
        .transpose()?;
    let placement = requeue.place(pending);
    match &placement {
        Placement::Pending(row) => write(conn, row)?,
        Placement::Merged { job, into } => {
            conn.prepare_cached(
                "INSERT OR IGNORE INTO job_events (job_id, event_seq)
                 SELECT ?1, event_seq FROM job_events WHERE job_id = ?2",
            )?
            .execute(params![into.id.0, job.id.0])?;
            write(conn, into)?;
            write(conn, job)?;
        }
    }
    Ok(placement.merged_into())
}

/// Stores every column a transition may change.
fn write(conn: &Connection, row: &JobSnapshot) -> Result<(), StoreError> {
    conn.prepare_cached(
        "UPDATE jobs SET state = ?2, run_at = ?3, attempts = ?4, last_error = ?5, lease_owner = ?6,
            lease_until = ?7, updated_at = ?8, finished_at = ?9 WHERE id = ?1",
    )?
    .execute(params![
        row.id.0,
        row.state.as_str(),
        row.run_at_ms,
        row.attempts,
        row.last_error,
        row.lease_owner,
        row.lease_until_ms,
        row.updated_at_ms,
        row.finished_at_ms,
    ])?;
    Ok(())
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

/// The rows of `Store::queue_gauges`: jobs per account and queue state, the oldest due pending
/// job, pending approvals.
pub fn queue_gauges(conn: &Connection, now: i64) -> Result<crate::store::QueueGauges, StoreError> {
    let rows = conn
        .prepare_cached(
            "SELECT account, state, COUNT(*) FROM jobs
             WHERE state IN ('pending', 'running', 'dead') GROUP BY account, state",
        )?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    let oldest: Option<i64> = conn
        .prepare_cached(
            "SELECT MIN(run_at) FROM jobs INDEXED BY jobs_due WHERE state = 'pending' AND run_at <= ?1",
        )?
        .query_row([now], |r| r.get(0))?;
    let approvals: i64 = conn
        .prepare_cached("SELECT COUNT(*) FROM approvals WHERE state = 'pending'")?
        .query_row([], |r| r.get(0))?;
    Ok(super::super::queue_gauges(rows, oldest, approvals, now))
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

/// The jobs an event started or joined, oldest first.
pub fn of_event(conn: &Connection, seq: i64) -> Result<Vec<JobRecord>, StoreError> {
    let rows = conn
        .prepare_cached(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs j
             WHERE j.id IN (SELECT job_id FROM job_events WHERE event_seq = ?1) ORDER BY j.id"
        ))?
        .query_map([seq], job_from_row)?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// Newest first from `?4` down (exclusive): a range on the primary key, never an offset.
pub(super) fn list_sql() -> String {
    format!(
        "SELECT {JOB_COLUMNS} FROM jobs j
         WHERE (?1 IS NULL OR j.state = ?1) AND (?2 IS NULL OR j.account = ?2)
           AND (?3 IS NULL OR j.handler = ?3) AND j.id < ?4
         ORDER BY j.id DESC LIMIT ?5"
    )
}

pub fn list(conn: &Connection, filter: &JobFilter) -> Result<Vec<JobRecord>, StoreError> {
    let rows = conn
        .prepare_cached(&list_sql())?
        .query_map(
            params![
                filter.state.map(JobState::as_str),
                filter.account,
                filter.handler,
                crate::store::before_key(filter.before_id),
                crate::store::page_limit(filter.limit)
            ],
            job_from_row,
        )?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}
