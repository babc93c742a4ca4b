//! The dashboard's reads for the PostgreSQL store: the overview and an event with its jobs.

use super::jobs;
use crate::store::{
    EventWithJobs, HandlerRuns, JobId, Overview, OverviewRows, RunSummary, StoreError,
};
use sqlx::Row;
use sqlx::postgres::PgConnection;

pub async fn overview(
    conn: &mut PgConnection,
    now: i64,
    since: i64,
    failures: u32,
) -> Result<Overview, StoreError> {
    let counts = sqlx::query_as(
        "SELECT account, state, COUNT(*) FROM jobs
         WHERE state IN ('pending', 'running', 'dead') GROUP BY account, state",
    )
    .fetch_all(&mut *conn)
    .await?;
    let next_runs = sqlx::query_as(
        "SELECT account, MIN(run_at) FROM jobs WHERE state = 'pending' GROUP BY account",
    )
    .fetch_all(&mut *conn)
    .await?;
    let pauses = sqlx::query_as(
        "SELECT account, paused_until, reason FROM account_pauses WHERE paused_until > $1",
    )
    .bind(now)
    .fetch_all(&mut *conn)
    .await?;
    let slots = sqlx::query_as("SELECT account, bucket, tat FROM rate_budgets WHERE tat > $1")
        .bind(now)
        .fetch_all(&mut *conn)
        .await?;
    let handlers = sqlx::query(
        "SELECT handler, outcome, COUNT(*), SUM(input_tokens)::bigint, SUM(output_tokens)::bigint
         FROM runs WHERE started_at >= $1 GROUP BY handler, outcome ORDER BY handler, outcome",
    )
    .bind(since)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|r| {
        Ok(HandlerRuns {
            handler: r.try_get(0)?,
            outcome: r.try_get(1)?,
            runs: r.try_get(2)?,
            input_tokens: r.try_get(3)?,
            output_tokens: r.try_get(4)?,
        })
    })
    .collect::<Result<_, sqlx::Error>>()?;
    let failures = sqlx::query(
        "SELECT id, job_id, handler, account, outcome, error, started_at FROM runs
         WHERE outcome NOT IN ('done', 'running') ORDER BY id DESC LIMIT $1",
    )
    .bind(i64::from(failures))
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|r| {
        Ok(RunSummary {
            id: r.try_get(0)?,
            job: JobId(r.try_get(1)?),
            handler: r.try_get(2)?,
            account: r.try_get(3)?,
            outcome: r.try_get(4)?,
            error: r.try_get(5)?,
            started_at_ms: r.try_get(6)?,
        })
    })
    .collect::<Result<_, sqlx::Error>>()?;
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

pub async fn event_with_jobs(
    conn: &mut PgConnection,
    seq: i64,
) -> Result<Option<EventWithJobs>, StoreError> {
    let Some(row) = sqlx::query("SELECT * FROM events WHERE seq = $1")
        .bind(seq)
        .fetch_optional(&mut *conn)
        .await?
    else {
        return Ok(None);
    };
    let event = super::event_from_row(&row)?;
    let jobs = jobs::of_event(conn, seq).await?;
    Ok(Some(EventWithJobs { event, jobs }))
}
