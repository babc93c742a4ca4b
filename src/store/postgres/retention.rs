//! Retention statements for the PostgreSQL store: the SQLite store's `retention.rs` with the
//! locks several replicas need. One replica prunes at a time (a transaction-level advisory lock
//! it only tries for); the jobs it deletes are locked `FOR UPDATE SKIP LOCKED`, so a `jobs retry`
//! racing it either waits and finds the job gone, or wins and the job is no longer prunable.

use crate::store::StoreError;
use crate::store::retention::{Cutoffs, PruneReport};
use sqlx::postgres::PgConnection;

/// Advisory lock namespace for pruning (two-key form, like migrations and ingest); the second
/// key is the schema's hash, so deployments sharing a database in separate schemas do not wait
/// on each other.
const PRUNE_LOCK_CLASS: i32 = 0x686b_7703;

/// A job that may go, as a condition on `j` ($1: the done/merged cutoff, $2: the dead one).
/// Never NULL, as in SQLite: the dry run's `NOT (...)` relies on it.
const PRUNABLE_JOB: &str = "(j.finished_at IS NOT NULL
    AND ((j.state IN ('done', 'merged') AND j.finished_at < $1)
         OR (j.state = 'dead' AND j.finished_at < $2))
    AND NOT EXISTS (SELECT 1 FROM approvals a
                    WHERE a.job_id = j.id AND a.state IN ('pending', 'executing')))";

/// A job's rows that go with it, children first (runs, approvals and job_events reference jobs).
const JOB_CHILDREN: [&str; 4] = ["actions", "runs", "approvals", "job_events"];

/// One round, inside the caller's transaction; `skipped` if another replica holds the lock.
pub async fn prune(conn: &mut PgConnection, c: &Cutoffs) -> Result<PruneReport, StoreError> {
    let locked: bool = sqlx::query_scalar(
        "SELECT pg_try_advisory_xact_lock($1, hashtext(COALESCE(current_schema(), '')))",
    )
    .bind(PRUNE_LOCK_CLASS)
    .fetch_one(&mut *conn)
    .await?;
    if !locked {
        return Ok(PruneReport {
            skipped: true,
            ..PruneReport::default()
        });
    }
    let jobs: Vec<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT j.id FROM jobs j
         WHERE j.finished_at < $3 AND {PRUNABLE_JOB}
         ORDER BY j.finished_at LIMIT $4
         FOR UPDATE SKIP LOCKED"
    )))
    .bind(c.jobs_before_ms)
    .bind(c.dead_jobs_before_ms)
    .bind(c.any_job_before_ms)
    .bind(c.batch)
    .fetch_all(&mut *conn)
    .await?;
    let mut report = PruneReport::default();
    if !jobs.is_empty() {
        let mut deleted = [0u64; 4];
        for (n, table) in deleted.iter_mut().zip(JOB_CHILDREN) {
            *n = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE job_id = ANY($1)"
            )))
            .bind(&jobs)
            .execute(&mut *conn)
            .await?
            .rows_affected();
        }
        [report.actions, report.runs, report.approvals, _] = deleted;
        report.jobs = sqlx::query("DELETE FROM jobs WHERE id = ANY($1)")
            .bind(&jobs)
            .execute(&mut *conn)
            .await?
            .rows_affected();
    }
    report.events = sqlx::query(
        "DELETE FROM events WHERE seq IN (
            SELECT e.seq FROM events e
            WHERE e.received_at < $1
              AND NOT EXISTS (SELECT 1 FROM job_events je WHERE je.event_seq = e.seq)
            ORDER BY e.received_at LIMIT $2
            FOR UPDATE SKIP LOCKED)",
    )
    .bind(c.events_before_ms)
    .bind(c.batch)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(report)
}

pub async fn dry_run(conn: &mut PgConnection, c: &Cutoffs) -> Result<PruneReport, StoreError> {
    let children = |table: &str| {
        format!(
            "(SELECT COUNT(*) FROM {table} x JOIN jobs j ON j.id = x.job_id WHERE {PRUNABLE_JOB})"
        )
    };
    let sql = format!(
        "SELECT (SELECT COUNT(*) FROM jobs j WHERE {PRUNABLE_JOB}), {}, {}, {},
            (SELECT COUNT(*) FROM events e
             WHERE e.received_at < $3
               AND NOT EXISTS (SELECT 1 FROM job_events je JOIN jobs j ON j.id = je.job_id
                               WHERE je.event_seq = e.seq AND NOT {PRUNABLE_JOB}))",
        children("runs"),
        children("actions"),
        children("approvals"),
    );
    let (jobs, runs, actions, approvals, events): (i64, i64, i64, i64, i64) =
        sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(c.jobs_before_ms)
            .bind(c.dead_jobs_before_ms)
            .bind(c.events_before_ms)
            .fetch_one(&mut *conn)
            .await?;
    Ok(PruneReport {
        events: events.unsigned_abs(),
        jobs: jobs.unsigned_abs(),
        runs: runs.unsigned_abs(),
        actions: actions.unsigned_abs(),
        approvals: approvals.unsigned_abs(),
        skipped: false,
    })
}
