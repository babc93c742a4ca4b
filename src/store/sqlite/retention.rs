//! Retention statements for the SQLite store: one pruning round in one short transaction, the
//! dry-run counts by the same conditions, and handing freed pages back to the file system. The
//! rules are `store::retention`'s.

use crate::store::StoreError;
use crate::store::retention::{Cutoffs, PruneReport};
use rusqlite::{Connection, TransactionBehavior, params};

/// A job that may go, as a condition on `j` (?1: the done/merged cutoff, ?2: the dead one).
/// Never NULL: `finished_at IS NOT NULL` settles pending and running jobs as false, which the
/// dry run's `NOT (...)` relies on.
const PRUNABLE_JOB: &str = "(j.finished_at IS NOT NULL
    AND ((j.state IN ('done', 'merged') AND j.finished_at < ?1)
         OR (j.state = 'dead' AND j.finished_at < ?2))
    AND NOT EXISTS (SELECT 1 FROM approvals a
                    WHERE a.job_id = j.id AND a.state IN ('pending', 'executing')))";

/// A job's rows that go with it, children first (runs, approvals and job_events reference jobs).
const JOB_CHILDREN: [&str; 4] = ["actions", "runs", "approvals", "job_events"];

/// Pages handed back per round at most: a long incremental vacuum would hold the one writer.
const MAX_VACUUM_PAGES: i64 = 2_000;

pub fn prune(conn: &mut Connection, c: &Cutoffs) -> Result<PruneReport, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let jobs: Vec<i64> = tx
        .prepare_cached(&format!(
            "SELECT j.id FROM jobs j INDEXED BY jobs_finished
             WHERE j.finished_at < ?3 AND {PRUNABLE_JOB}
             ORDER BY j.finished_at LIMIT ?4"
        ))?
        .query_map(
            params![
                c.jobs_before_ms,
                c.dead_jobs_before_ms,
                c.any_job_before_ms,
                c.batch
            ],
            |r| r.get(0),
        )?
        .collect::<Result<_, _>>()?;
    let mut report = PruneReport::default();
    if !jobs.is_empty() {
        // One JSON array parameter instead of a statement per job.
        let ids = serde_json::Value::from(jobs).to_string();
        let mut deleted = [0u64; 4];
        for (n, table) in deleted.iter_mut().zip(JOB_CHILDREN) {
            *n = tx
                .prepare_cached(&format!(
                    "DELETE FROM {table} WHERE job_id IN (SELECT value FROM json_each(?1))"
                ))?
                .execute([&ids])? as u64;
        }
        [report.actions, report.runs, report.approvals, _] = deleted;
        report.jobs = tx
            .prepare_cached("DELETE FROM jobs WHERE id IN (SELECT value FROM json_each(?1))")?
            .execute([&ids])? as u64;
    }
    report.events = tx
        .prepare_cached(
            "DELETE FROM events WHERE seq IN (
                SELECT e.seq FROM events e INDEXED BY events_by_received
                WHERE e.received_at < ?1
                  AND NOT EXISTS (SELECT 1 FROM job_events je WHERE je.event_seq = e.seq)
                ORDER BY e.received_at LIMIT ?2)",
        )?
        .execute(params![c.events_before_ms, c.batch])? as u64;
    tx.commit()?;
    Ok(report)
}

pub fn dry_run(conn: &Connection, c: &Cutoffs) -> Result<PruneReport, StoreError> {
    let children = |table: &str| {
        format!(
            "(SELECT COUNT(*) FROM {table} x JOIN jobs j ON j.id = x.job_id WHERE {PRUNABLE_JOB})"
        )
    };
    let sql = format!(
        "SELECT (SELECT COUNT(*) FROM jobs j WHERE {PRUNABLE_JOB}), {}, {}, {},
            (SELECT COUNT(*) FROM events e
             WHERE e.received_at < ?3
               AND NOT EXISTS (SELECT 1 FROM job_events je JOIN jobs j ON j.id = je.job_id
                               WHERE je.event_seq = e.seq AND NOT {PRUNABLE_JOB}))",
        children("runs"),
        children("actions"),
        children("approvals"),
    );
    let count = |r: &rusqlite::Row<'_>, i| r.get::<_, i64>(i).map(i64::unsigned_abs);
    Ok(conn.prepare_cached(&sql)?.query_row(
        params![c.jobs_before_ms, c.dead_jobs_before_ms, c.events_before_ms],
        |r| {
            Ok(PruneReport {
                jobs: count(r, 0)?,
                runs: count(r, 1)?,
                actions: count(r, 2)?,
                approvals: count(r, 3)?,
                events: count(r, 4)?,
                skipped: false,
            })
        },
    )?)
}

/// Whether the database hands freed pages back (`auto_vacuum = INCREMENTAL`, set on every new
/// file). One created before that reuses its freed pages but never shrinks.
pub fn incremental(conn: &Connection) -> Result<bool, StoreError> {
    let mode: i64 = conn.pragma_query_value(None, "auto_vacuum", |r| r.get(0))?;
    Ok(mode == 2)
}

/// After rows were deleted: hands free pages back beyond a quarter of the pages in use (those
/// are kept, so steady ingest reuses them instead of growing the file again), at most
/// `MAX_VACUUM_PAGES` a round.
/// Returns the pages handed back.
pub fn reclaim_space(conn: &Connection) -> Result<i64, StoreError> {
    if !incremental(conn)? {
        return Ok(0);
    }
    let free: i64 = conn.pragma_query_value(None, "freelist_count", |r| r.get(0))?;
    let pages: i64 = conn.pragma_query_value(None, "page_count", |r| r.get(0))?;
    let excess = (free - (pages - free) / 4).min(MAX_VACUUM_PAGES);
    if excess <= 0 {
        return Ok(0);
    }
    // Each step of the pragma frees one page: step it to the end.
    let mut stmt = conn.prepare(&format!("PRAGMA incremental_vacuum({excess})"))?;
    let mut rows = stmt.query([])?;
    while rows.next()?.is_some() {}
    Ok(excess)
}
