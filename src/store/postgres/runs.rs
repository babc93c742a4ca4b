//! Run statements for the PostgreSQL store: the SQLite store's `runs.rs`, statement for
//! statement. A run is inserted when it starts and updated as it goes.

use crate::store::{JobId, RunFilter, RunRecord, StoreError, StoredRun};
use sqlx::Row;
use sqlx::postgres::{PgConnection, PgRow};

const RUN_COLUMNS: &str = "id, job_id, handler, account, attempt, mode, model, started_at,
    finished_at, outcome, error, input_tokens, output_tokens, steps, cost_usd";

pub async fn record(conn: &mut PgConnection, run: &RunRecord) -> Result<i64, StoreError> {
    let steps = crate::store::steps_text(&run.steps)?;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO runs (job_id, handler, account, attempt, mode, model, started_at,
            finished_at, outcome, error, input_tokens, output_tokens, steps, cost_usd)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
         RETURNING id",
    )
    .bind(run.job.0)
    .bind(&run.handler)
    .bind(&run.account)
    // INTEGER, like the jobs' attempt counts.
    .bind(i32::try_from(run.attempt).unwrap_or(i32::MAX))
    .bind(&run.mode)
    .bind(&run.model)
    .bind(run.started_at_ms)
    .bind(run.finished_at_ms)
    .bind(&run.outcome)
    .bind(&run.error)
    .bind(crate::store::tokens_column(run.input_tokens))
    .bind(crate::store::tokens_column(run.output_tokens))
    .bind(steps)
    .bind(run.cost_usd)
    .fetch_one(&mut *conn)
    .await?;
    Ok(id)
}

/// Rewrites the changing parts of recorded runs (the caller's transaction). A final state always
/// applies. Progress (outcome `running`) fills in the steps and tokens of a run that has not
/// recorded its end, and never changes how a run ended: a checkpoint that lands after its run
/// was closed as `interrupted` (it was queued before a panic) adds its steps, nothing else.
pub async fn update(conn: &mut PgConnection, runs: &[(i64, RunRecord)]) -> Result<(), StoreError> {
    for (id, run) in runs {
        sqlx::query(
            "UPDATE runs SET input_tokens = $5, output_tokens = $6, steps = $7, cost_usd = $8,
                finished_at = CASE WHEN $3 = 'running' AND outcome <> 'running' THEN finished_at ELSE $2 END,
                error = CASE WHEN $3 = 'running' AND outcome <> 'running' THEN error ELSE $4 END,
                outcome = CASE WHEN $3 = 'running' AND outcome <> 'running' THEN outcome ELSE $3 END
             WHERE id = $1 AND ($3 <> 'running' OR outcome IN ('running', 'interrupted'))",
        )
        .bind(id)
        .bind(run.finished_at_ms)
        .bind(&run.outcome)
        .bind(&run.error)
        .bind(crate::store::tokens_column(run.input_tokens))
        .bind(crate::store::tokens_column(run.output_tokens))
        .bind(crate::store::steps_text(&run.steps)?)
        .bind(run.cost_usd)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Runs of `job` still `running` are `interrupted`: the job was reaped or finished without them.
pub async fn interrupt(conn: &mut PgConnection, job: JobId, now: i64) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE runs SET outcome = 'interrupted', finished_at = $2, error = $3
         WHERE job_id = $1 AND outcome = 'running'",
    )
    .bind(job.0)
    .bind(now)
    .bind(crate::store::INTERRUPTED)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

fn from_row(r: &PgRow) -> Result<StoredRun, StoreError> {
    let id: i64 = r.try_get(0)?;
    let steps: String = r.try_get(13)?;
    Ok(StoredRun {
        id,
        run: RunRecord {
            job: JobId(r.try_get(1)?),
            handler: r.try_get(2)?,
            account: r.try_get(3)?,
            attempt: r.try_get::<i32, _>(4)?.max(0).unsigned_abs(),
            mode: r.try_get(5)?,
            model: r.try_get(6)?,
            started_at_ms: r.try_get(7)?,
            finished_at_ms: r.try_get(8)?,
            outcome: r.try_get(9)?,
            error: r.try_get(10)?,
            input_tokens: r.try_get::<i64, _>(11)?.max(0).unsigned_abs(),
            output_tokens: r.try_get::<i64, _>(12)?.max(0).unsigned_abs(),
            cost_usd: r.try_get(14)?,
            steps: crate::store::steps_value(id, &steps)?,
        },
    })
}

pub async fn get(conn: &mut PgConnection, id: i64) -> Result<Option<StoredRun>, StoreError> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {RUN_COLUMNS} FROM runs WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    row.as_ref().map(from_row).transpose()
}

/// Newest first from `$4` down (exclusive): a range on the primary key, never an offset.
pub(super) fn list_sql() -> String {
    format!(
        "SELECT {RUN_COLUMNS} FROM runs
         WHERE ($1::bigint IS NULL OR job_id = $1) AND ($2::text IS NULL OR handler = $2)
           AND ($3::text IS NULL OR account = $3) AND id < $4
         ORDER BY id DESC LIMIT $5"
    )
}

pub async fn list(
    conn: &mut PgConnection,
    filter: &RunFilter,
) -> Result<Vec<StoredRun>, StoreError> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(list_sql()))
        .bind(filter.job.map(|j| j.0))
        .bind(&filter.handler)
        .bind(&filter.account)
        .bind(crate::store::before_key(filter.before_id))
        .bind(crate::store::page_limit(filter.limit))
        .fetch_all(&mut *conn)
        .await?;
    rows.iter().map(from_row).collect()
}
