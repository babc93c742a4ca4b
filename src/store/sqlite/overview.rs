//! The dashboard's reads for the SQLite store: the overview and an event with its jobs.

use super::jobs;
use crate::store::{EventWithJobs, HandlerRuns, JobId, OverviewRows, RunSummary, StoreError};
use rusqlite::{Connection, OptionalExtension};

pub fn overview(
    conn: &Connection,
    slots: Vec<(String, String, i64)>,
    now: i64,
    since: i64,
    failures: u32,
) -> Result<crate::store::Overview, StoreError> {
    let counts = conn
        .prepare_cached(
            "SELECT account, state, COUNT(*) FROM jobs
             WHERE state IN ('pending', 'running', 'dead') GROUP BY account, state",
        )?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    let next_runs = conn
        .prepare_cached(
            "SELECT account, MIN(run_at) FROM jobs INDEXED BY jobs_due
             WHERE state = 'pending' GROUP BY account",
        )?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let pauses = conn
        .prepare_cached(
            "SELECT account, paused_until, reason FROM account_pauses WHERE paused_until > ?1",
        )?
        .query_map([now], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    let handlers = conn
        .prepare_cached(
            "SELECT handler, outcome, COUNT(*), SUM(input_tokens), SUM(output_tokens) FROM runs
             WHERE started_at >= ?1 GROUP BY handler, outcome ORDER BY handler, outcome",
        )?
        .query_map([since], |r| {
            Ok(HandlerRuns {
                handler: r.get(0)?,
                outcome: r.get(1)?,
                runs: r.get(2)?,
                input_tokens: r.get(3)?,
                output_tokens: r.get(4)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    let failures = conn
        .prepare_cached(
            "SELECT id, job_id, handler, account, outcome, error, started_at FROM runs
             WHERE outcome NOT IN ('done', 'running') ORDER BY id DESC LIMIT ?1",
        )?
        .query_map([failures], |r| {
            Ok(RunSummary {
                id: r.get(0)?,
                job: JobId(r.get(1)?),
                handler: r.get(2)?,
                account: r.get(3)?,
                outcome: r.get(4)?,
                error: r.get(5)?,
                started_at_ms: r.get(6)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    let slots = slots
        .into_iter()
        .filter(|(_, _, next)| *next > now)
        .collect();
    Ok(OverviewRows {
        counts,
        next_runs,
        pauses,
        slots,
        handlers,
        failures,
    }
    .into_overview())
}

pub fn event_with_jobs(conn: &Connection, seq: i64) -> Result<Option<EventWithJobs>, StoreError> {
    let Some(event) = conn
        .prepare_cached("SELECT * FROM events WHERE seq = ?1")?
        .query_row([seq], super::event_from_row)
        .optional()?
    else {
        return Ok(None);
    };
    let jobs = jobs::of_event(conn, seq)?;
    Ok(Some(EventWithJobs { event, jobs }))
}
