//! Job statements for the PostgreSQL store: the SQLite store's `jobs.rs` with the row locks that
//! several replicas need. The transitions themselves are `store::job_machine`'s. Every function
//! that writes expects to be inside a transaction.

use crate::store::job_machine::{self, JobEvent, JobSnapshot, NewJob, Placement, Transition};
use crate::store::{
    JobFilter, JobFinish, JobId, JobRecord, JobState, JobWithEvents, RetryResult, Route,
    StoreError, StoredEvent,
};
use sqlx::Row;
use sqlx::postgres::{PgConnection, PgRow};
use std::collections::HashMap;

/// How far past `limit` a claim looks for jobs of accounts that are not busy (as in SQLite):
/// bounds the cost of a claim when the oldest due jobs all belong to accounts running something.
const CLAIM_SCAN_FACTOR: usize = 16;

/// Creates the route's job, or folds the events into the pending job of its key (trailing
/// debounce, `job_machine::debounce`: run_at moves to now + period, never past the deadline).
/// `events` are one batch's events for this route's key, in order, as (event seq, received at);
/// for each, whether it was folded into a job already pending. One key costs the same three
/// statements however many of the batch's events it has: the upsert for the first, then one
/// update (the run time debounced through every event, the folds counted) and one insert of every
/// event's link, so a burst on one ticket does not rewrite its job row once per event.
///
/// Two replicas routing to the same key at once: the second insert waits for the first
/// transaction and then takes the `DO UPDATE` branch; if the pending row meanwhile left the
/// `state = 'pending'` predicate (claimed), PostgreSQL retries the insert, which then succeeds.
/// Either way the row returned is locked until this transaction ends, so the debounced run time
/// is written over the run time it was computed from.
pub async fn route_events(
    conn: &mut PgConnection,
    account: &str,
    route: &Route,
    events: &[(i64, i64)],
) -> Result<(JobId, Vec<bool>), StoreError> {
    // Never empty: the caller groups a batch's events by key.
    let (_, first_now) = events[0];
    let new = NewJob::for_route(route, first_now);
    let (id, run_at, deadline_at, folds): (i64, i64, i64, i64) = sqlx::query_as(
        "INSERT INTO jobs (handler, account, subject, state, run_at, first_seen, deadline_at,
            attempts, max_attempts, created_at, updated_at)
         VALUES ($1, $2, $3, 'pending', $4, $5, $6, 0, $7, $5, $5)
         ON CONFLICT (handler, account, subject) WHERE state = 'pending'
         DO UPDATE SET updated_at = EXCLUDED.updated_at,
             folded_events = jobs.folded_events + 1
         RETURNING id, run_at, deadline_at, folded_events",
    )
    .bind(&route.handler)
    .bind(account)
    .bind(&route.subject)
    .bind(new.run_at_ms)
    .bind(new.first_seen_ms)
    .bind(new.deadline_at_ms)
    .bind(count(route.max_attempts))
    .fetch_one(&mut *conn)
    .await?;
    // A job the first event created already runs when it should; a folded one may move, and
    // every later event of the batch folds into it, each moving it as it would alone.
    let mut folded = Vec::with_capacity(events.len());
    folded.push(folds > 0);
    let mut debounced = job_machine::debounce(run_at, deadline_at, first_now, route.period_ms);
    for &(_, now) in &events[1..] {
        debounced = job_machine::debounce(debounced, deadline_at, now, route.period_ms);
        folded.push(true);
    }
    let later = events.len() as i64 - 1;
    if debounced != run_at || later > 0 {
        let last_now = events[events.len() - 1].1;
        sqlx::query(
            "UPDATE jobs SET run_at = $2, folded_events = folded_events + $3,
                 updated_at = $4
             WHERE id = $1",
        )
        .bind(id)
        .bind(debounced)
        .bind(later)
        .bind(last_now)
        .execute(&mut *conn)
        .await?;
    }
    let seqs: Vec<i64> = events.iter().map(|&(seq, _)| seq).collect();
    sqlx::query(
        "INSERT INTO job_events (job_id, event_seq) SELECT $1, unnest($2::bigint[])
         ON CONFLICT DO NOTHING",
    )
    .bind(id)
    .bind(&seqs)
    .execute(&mut *conn)
    .await?;
    Ok((JobId(id), folded))
}

/// The first due job of every account with nothing running, oldest first, looking at no more
/// than the `$2` oldest due jobs (an index range scan on `jobs_due`, however many are pending).
const CANDIDATES: &str = "
    SELECT id FROM (
        SELECT DISTINCT ON (due.account) due.id, due.run_at
        FROM (SELECT id, account, run_at FROM jobs
              WHERE state = 'pending' AND run_at <= $1
              ORDER BY run_at, id LIMIT $2) due
        WHERE NOT EXISTS (SELECT 1 FROM jobs r WHERE r.account = due.account AND r.state = 'running')
          AND NOT EXISTS (SELECT 1 FROM account_pauses p
                          WHERE p.account = due.account AND p.paused_until > $1)
        ORDER BY due.account, due.run_at, due.id
    ) firsts
    ORDER BY run_at, id";

/// Leases one candidate if it is still pending and due and not locked by another transaction
/// (SKIP LOCKED: a replica claiming it, or an ingest extending it), and its account has no
/// running job that was committed when this statement started.
const CLAIM_ONE: &str = "
    UPDATE jobs SET state = 'running', attempts = attempts + 1, lease_owner = $2,
        lease_until = $3, updated_at = $4
    WHERE id = (SELECT id FROM jobs WHERE id = $1 AND state = 'pending' AND run_at <= $4
                FOR UPDATE SKIP LOCKED)
      AND NOT EXISTS (SELECT 1 FROM jobs r WHERE r.account = jobs.account AND r.state = 'running')
    RETURNING id";

/// Reaps expired leases, then leases the first due job of up to `limit` idle accounts.
///
/// Two replicas usually pick the same first job per account, and SKIP LOCKED sends the second
/// one past it. When they pick different jobs of one account (their snapshots differ by a commit),
/// both may pass the NOT EXISTS check; the unique index `jobs_one_running_per_account` then
/// rejects the later UPDATE. That UPDATE runs under a savepoint, so the job is skipped and the
/// rest of the claim stands.
pub async fn claim(
    conn: &mut PgConnection,
    owner: &str,
    now: i64,
    limit: usize,
    lease_ms: i64,
) -> Result<Vec<JobWithEvents>, StoreError> {
    reap_expired_leases(conn, now).await?;
    let scan = i64::try_from(limit.saturating_mul(CLAIM_SCAN_FACTOR)).unwrap_or(i64::MAX);
    let candidates: Vec<i64> = sqlx::query_scalar(CANDIDATES)
        .bind(now)
        .bind(scan)
        .fetch_all(&mut *conn)
        .await?;
    let mut claimed = Vec::new();
    for id in candidates {
        if claimed.len() == limit {
            break;
        }
        sqlx::raw_sql("SAVEPOINT claim_one")
            .execute(&mut *conn)
            .await?;
        let leased: Result<Option<i64>, sqlx::Error> = sqlx::query_scalar(CLAIM_ONE)
            .bind(id)
            .bind(owner)
            .bind(now + lease_ms)
            .bind(now)
            .fetch_optional(&mut *conn)
            .await;
        match leased {
            Ok(leased) => {
                sqlx::raw_sql("RELEASE SAVEPOINT claim_one")
                    .execute(&mut *conn)
                    .await?;
                claimed.extend(leased.map(JobId));
            }
            // Another replica leased a job of this account first (unique violation), or the
            // wait for it crossed another claim's wait (deadlock): that account is taken.
            Err(e) if super::sqlstate(&e).is_some_and(|c| c == "23505" || c == "40P01") => {
                tracing::debug!(job = id, error = %e, "account claimed concurrently; skipped");
                sqlx::raw_sql("ROLLBACK TO SAVEPOINT claim_one")
                    .execute(&mut *conn)
                    .await?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    load(conn, &claimed).await
}

/// A job whose worker stopped heartbeating (crashed, killed, partitioned) counts as a failed
/// attempt and is requeued, or dead when it has none left. SKIP LOCKED: a lease another replica
/// is reaping, or its owner is finishing right now, is not ours to touch.
async fn reap_expired_leases(conn: &mut PgConnection, now: i64) -> Result<(), StoreError> {
    let expired = sqlx::query(sqlx::AssertSqlSafe(format!(
        "{SNAPSHOT} WHERE state = 'running' AND lease_until < $1 ORDER BY id FOR UPDATE SKIP LOCKED"
    )))
    .bind(now)
    .fetch_all(&mut *conn)
    .await?;
    for row in &expired {
        let job = snapshot_from_row(row)?;
        if let Some(transition) = job_machine::reap(&job, now) {
            apply(conn, transition).await?;
            super::runs::interrupt(conn, job.id, now).await?;
        }
    }
    Ok(())
}

pub async fn extend_lease(
    conn: &mut PgConnection,
    job: JobId,
    owner: &str,
    until: i64,
) -> Result<bool, StoreError> {
    let n = sqlx::query(
        "UPDATE jobs SET lease_until = $3 WHERE id = $1 AND lease_owner = $2 AND state = 'running'",
    )
    .bind(job.0)
    .bind(owner)
    .bind(until)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(n == 1)
}

pub async fn finish(
    conn: &mut PgConnection,
    job: JobId,
    owner: &str,
    now: i64,
    finish: JobFinish,
) -> Result<bool, StoreError> {
    // The row lock keeps a reaper on another replica from changing the job between the fencing
    // check and the writes.
    let Some(job) = snapshot(conn, job).await? else {
        return Ok(false);
    };
    // Fencing: a worker whose lease was reclaimed must not overwrite the new owner's state.
    match job_machine::transition(&job, JobEvent::Finished { owner, finish }, now) {
        Ok(transition) => {
            apply(conn, transition).await?;
            // A run that ended without recording its end (dropped at the deadline or at
            // shutdown, panicked) is closed with the job; a run that recorded it is untouched.
            super::runs::interrupt(conn, job.id, now).await?;
            Ok(true)
        }
        Err(_) => Ok(false),
    }
}

pub async fn retry(
    conn: &mut PgConnection,
    id: JobId,
    now: i64,
) -> Result<RetryResult, StoreError> {
    let Some(job) = snapshot(conn, id).await? else {
        return Ok(RetryResult::NotFound);
    };
    match job_machine::transition(&job, JobEvent::Revived, now) {
        Ok(transition) => Ok(match apply(conn, transition).await? {
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

fn snapshot_from_row(r: &PgRow) -> Result<JobSnapshot, StoreError> {
    Ok(JobSnapshot {
        id: JobId(r.try_get(0)?),
        handler: r.try_get(1)?,
        account: r.try_get(2)?,
        subject: r.try_get(3)?,
        state: crate::store::job_state(r.try_get(4)?)?,
        run_at_ms: r.try_get(5)?,
        attempts: r.try_get::<i32, _>(6)?.max(0).unsigned_abs(),
        max_attempts: r.try_get::<i32, _>(7)?.max(0).unsigned_abs(),
        lease_owner: r.try_get(8)?,
        lease_until_ms: r.try_get(9)?,
        last_error: r.try_get(10)?,
        updated_at_ms: r.try_get(11)?,
        finished_at_ms: r.try_get(12)?,
    })
}

/// The job, locked until the transaction ends.
async fn snapshot(conn: &mut PgConnection, id: JobId) -> Result<Option<JobSnapshot>, StoreError> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "{SNAPSHOT} WHERE id = $1 FOR UPDATE"
    )))
    .bind(id.0)
    .fetch_optional(&mut *conn)
    .await?
    .as_ref()
    .map(snapshot_from_row)
    .transpose()
}

/// Writes what a transition decided (the caller holds the job's row lock). For a requeue, the
/// key's pending job decides between pending again and merged; returns the job merged into.
///
/// If an ingest creates the key's pending job after the lookup below, making this job pending
/// violates `jobs_one_pending_per_key`; the caller's transaction is retried and then merges.
async fn apply(
    conn: &mut PgConnection,
    transition: Transition,
) -> Result<Option<JobId>, StoreError> {
    let requeue = match transition {
        Transition::Write(row) => return write(conn, &row).await.map(|()| None),
        Transition::Requeue(requeue) => requeue,
    };
    let key = requeue.job();
    let pending = sqlx::query(sqlx::AssertSqlSafe(format!(
        "{SNAPSHOT} WHERE handler = $1 AND account = $2 AND subject = $3 AND state = 'pending'
         FOR UPDATE"
    )))
    .bind(&key.handler)
    .bind(&key.account)
    .bind(&key.subject)
    .fetch_optional(&mut *conn)
    .await?
    .as_ref()
    .map(snapshot_from_row)
    .transpose()?;
    let placement = requeue.place(pending);
    match &placement {
        Placement::Pending(row) => write(conn, row).await?,
        Placement::Merged { job, into } => {
            sqlx::query(
                "INSERT INTO job_events (job_id, event_seq)
                 SELECT $1, event_seq FROM job_events WHERE job_id = $2
                 ON CONFLICT DO NOTHING",
            )
            .bind(into.id.0)
            .bind(job.id.0)
            .execute(&mut *conn)
            .await?;
            write(conn, into).await?;
            write(conn, job).await?;
        }
    }
    Ok(placement.merged_into())
}

/// Stores every column a transition may change.
async fn write(conn: &mut PgConnection, row: &JobSnapshot) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE jobs SET state = $2, run_at = $3, attempts = $4, last_error = $5, lease_owner = $6,
            lease_until = $7, updated_at = $8, finished_at = $9 WHERE id = $1",
    )
    .bind(row.id.0)
    .bind(row.state.as_str())
    .bind(row.run_at_ms)
    .bind(count(row.attempts))
    .bind(&row.last_error)
    .bind(&row.lease_owner)
    .bind(row.lease_until_ms)
    .bind(row.updated_at_ms)
    .bind(row.finished_at_ms)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub async fn next_due(conn: &mut PgConnection) -> Result<Option<i64>, StoreError> {
    // LEAST ignores NULLs: either kind of deadline alone is the answer.
    Ok(sqlx::query_scalar(
        "SELECT LEAST((SELECT MIN(run_at) FROM jobs WHERE state = 'pending'),
                      (SELECT MIN(lease_until) FROM jobs WHERE state = 'running'))",
    )
    .fetch_one(&mut *conn)
    .await?)
}

/// The rows of `Store::queue_gauges`.
pub async fn queue_gauges(
    conn: &mut PgConnection,
    now: i64,
) -> Result<crate::store::QueueGauges, StoreError> {
    let rows: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT account, state, COUNT(*) FROM jobs
         WHERE state IN ('pending', 'running', 'dead') GROUP BY account, state",
    )
    .fetch_all(&mut *conn)
    .await?;
    let (oldest, approvals): (Option<i64>, i64) = sqlx::query_as(
        "SELECT (SELECT MIN(run_at) FROM jobs WHERE state = 'pending' AND run_at <= $1),
                (SELECT COUNT(*) FROM approvals WHERE state = 'pending')",
    )
    .bind(now)
    .fetch_one(&mut *conn)
    .await?;
    Ok(super::super::queue_gauges(rows, oldest, approvals, now))
}

const JOB_COLUMNS: &str = "j.id, j.handler, j.account, j.subject, j.state, j.run_at, j.first_seen,
    j.deadline_at, j.attempts, j.max_attempts, j.lease_owner, j.lease_until, j.last_error,
    j.created_at, j.updated_at, j.finished_at,
    (SELECT COUNT(*) FROM job_events je WHERE je.job_id = j.id) AS events";

/// Attempt counts are INTEGER columns; the API speaks u32.
fn count(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

fn job_from_row(r: &PgRow) -> Result<JobRecord, sqlx::Error> {
    let state: String = r.try_get(4)?;
    Ok(JobRecord {
        id: JobId(r.try_get(0)?),
        handler: r.try_get(1)?,
        account: r.try_get(2)?,
        subject: r.try_get(3)?,
        state: JobState::parse(&state)
            .ok_or_else(|| sqlx::Error::Decode(format!("unknown job state {state:?}").into()))?,
        run_at_ms: r.try_get(5)?,
        first_seen_ms: r.try_get(6)?,
        deadline_at_ms: r.try_get(7)?,
        attempts: r.try_get::<i32, _>(8)?.max(0).unsigned_abs(),
        max_attempts: r.try_get::<i32, _>(9)?.max(0).unsigned_abs(),
        lease_owner: r.try_get(10)?,
        lease_until_ms: r.try_get(11)?,
        last_error: r.try_get(12)?,
        created_at_ms: r.try_get(13)?,
        updated_at_ms: r.try_get(14)?,
        finished_at_ms: r.try_get(15)?,
        events: r.try_get(16)?,
    })
}

/// The jobs `ids` with their events, in the order of `ids`: two queries however many jobs.
async fn load(conn: &mut PgConnection, ids: &[JobId]) -> Result<Vec<JobWithEvents>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let raw: Vec<i64> = ids.iter().map(|id| id.0).collect();
    let jobs = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {JOB_COLUMNS} FROM jobs j WHERE j.id = ANY($1)"
    )))
    .bind(&raw)
    .fetch_all(&mut *conn)
    .await?;
    let mut jobs: HashMap<i64, JobWithEvents> = jobs
        .iter()
        .map(|row| {
            let job = job_from_row(row)?;
            Ok((
                job.id.0,
                JobWithEvents {
                    job,
                    events: Vec::new(),
                },
            ))
        })
        .collect::<Result<_, sqlx::Error>>()?;
    let events = sqlx::query(
        "SELECT je.job_id, e.* FROM job_events je JOIN events e ON e.seq = je.event_seq
         WHERE je.job_id = ANY($1) ORDER BY je.job_id, e.seq",
    )
    .bind(&raw)
    .fetch_all(&mut *conn)
    .await?;
    for row in &events {
        let job_id: i64 = row.try_get("job_id")?;
        let event: StoredEvent = super::event_from_row(row)?;
        if let Some(job) = jobs.get_mut(&job_id) {
            job.events.push(event);
        }
    }
    Ok(ids.iter().filter_map(|id| jobs.remove(&id.0)).collect())
}

pub async fn get(conn: &mut PgConnection, id: JobId) -> Result<Option<JobWithEvents>, StoreError> {
    Ok(load(conn, &[id]).await?.pop())
}

/// The jobs an event started or joined, oldest first.
pub async fn of_event(conn: &mut PgConnection, seq: i64) -> Result<Vec<JobRecord>, StoreError> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {JOB_COLUMNS} FROM jobs j
         WHERE j.id IN (SELECT job_id FROM job_events WHERE event_seq = $1) ORDER BY j.id"
    )))
    .bind(seq)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.iter().map(job_from_row).collect::<Result<_, _>>()?)
}

/// Newest first from `$4` down (exclusive): a range on the primary key, never an offset.
pub(super) fn list_sql() -> String {
    format!(
        "SELECT {JOB_COLUMNS} FROM jobs j
         WHERE ($1::text IS NULL OR j.state = $1) AND ($2::text IS NULL OR j.account = $2)
           AND ($3::text IS NULL OR j.handler = $3) AND j.id < $4
         ORDER BY j.id DESC LIMIT $5"
    )
}

pub async fn list(
    conn: &mut PgConnection,
    filter: &JobFilter,
) -> Result<Vec<JobRecord>, StoreError> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(list_sql()))
        .bind(filter.state.map(JobState::as_str))
        .bind(&filter.account)
        .bind(&filter.handler)
        .bind(crate::store::before_key(filter.before_id))
        .bind(crate::store::page_limit(filter.limit))
        .fetch_all(&mut *conn)
        .await?;
    Ok(rows.iter().map(job_from_row).collect::<Result<_, _>>()?)
}
