//! Run statements for the SQLite store: agent runs and their transcripts, written once when a run
//! ends and read by the CLI and the API.

use crate::store::{JobId, RunFilter, RunRecord, StoreError, StoredRun};
use rusqlite::{Connection, OptionalExtension, params};

const RUN_COLUMNS: &str = "id, job_id, handler, account, attempt, mode, model, started_at,
    finished_at, outcome, error, input_tokens, output_tokens, steps, cost_usd";

/// `steps` is the run's steps already serialized (`steps_text`), so the store's one thread does
/// not spend its time encoding a long transcript.
pub fn record(conn: &Connection, run: &RunRecord, steps: &str) -> Result<i64, StoreError> {
    let id = conn
        .prepare_cached(
            "INSERT INTO runs (job_id, handler, account, attempt, mode, model, started_at,
                finished_at, outcome, error, input_tokens, output_tokens, steps, cost_usd)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
             RETURNING id",
        )?
        .query_row(
            params![
                run.job.0,
                run.handler,
                run.account,
                run.attempt,
                run.mode,
                run.model,
                run.started_at_ms,
                run.finished_at_ms,
                run.outcome,
                run.error,
                crate::store::tokens_column(run.input_tokens),
                crate::store::tokens_column(run.output_tokens),
                steps,
                run.cost_usd,
            ],
            |r| r.get(0),
        )?;
    Ok(id)
}

/// Rewrites the changing parts of recorded runs (the caller's transaction). A final state always
/// applies. Progress (outcome `running`) fills in the steps and tokens of a run that has not
/// recorded its end, and never changes how a run ended: a checkpoint that lands after its run
/// was closed as `interrupted` (it was queued before a panic) adds its steps, nothing else.
pub fn update(conn: &Connection, runs: &[(i64, RunRecord, String)]) -> Result<(), StoreError> {
    let mut statement = conn.prepare_cached(
        "UPDATE runs SET input_tokens = ?5, output_tokens = ?6, steps = ?7, cost_usd = ?8,
            finished_at = CASE WHEN ?3 = 'running' AND outcome <> 'running' THEN finished_at ELSE ?2 END,
            error = CASE WHEN ?3 = 'running' AND outcome <> 'running' THEN error ELSE ?4 END,
            outcome = CASE WHEN ?3 = 'running' AND outcome <> 'running' THEN outcome ELSE ?3 END
         WHERE id = ?1 AND (?3 <> 'running' OR outcome IN ('running', 'interrupted'))",
    )?;
    for (id, run, steps) in runs {
        statement.execute(params![
            id,
            run.finished_at_ms,
            run.outcome,
            run.error,
            crate::store::tokens_column(run.input_tokens),
            crate::store::tokens_column(run.output_tokens),
            steps,
            run.cost_usd,
        ])?;
    }
    Ok(())
}

/// Runs of `job` still `running` are `interrupted`: the job was reaped or finished without them.
pub fn interrupt(conn: &Connection, job: JobId, now: i64) -> Result<(), StoreError> {
    conn.prepare_cached(
        "UPDATE runs SET outcome = 'interrupted', finished_at = ?2, error = ?3
         WHERE job_id = ?1 AND outcome = 'running'",
    )?
    .execute(params![job.0, now, crate::store::INTERRUPTED])?;
    Ok(())
}

/// A row as stored; `steps` is parsed by the caller, outside rusqlite's error type.
struct Row {
    id: i64,
    run: RunRecord,
    steps: String,
}

fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    Ok(Row {
        id: r.get(0)?,
        run: RunRecord {
            job: JobId(r.get(1)?),
            handler: r.get(2)?,
            account: r.get(3)?,
            attempt: r.get(4)?,
            mode: r.get(5)?,
            model: r.get(6)?,
            started_at_ms: r.get(7)?,
            finished_at_ms: r.get(8)?,
            outcome: r.get(9)?,
            error: r.get(10)?,
            input_tokens: r.get::<_, i64>(11)?.max(0).unsigned_abs(),
            output_tokens: r.get::<_, i64>(12)?.max(0).unsigned_abs(),
            cost_usd: r.get(14)?,
            steps: serde_json::Value::Null,
        },
        steps: r.get(13)?,
    })
}

fn stored(row: Row) -> Result<StoredRun, StoreError> {
    let mut run = row.run;
    run.steps = crate::store::steps_value(row.id, &row.steps)?;
    Ok(StoredRun { id: row.id, run })
}

pub fn get(conn: &Connection, id: i64) -> Result<Option<StoredRun>, StoreError> {
    conn.prepare_cached(&format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = ?1"))?
        .query_row([id], from_row)
        .optional()?
        .map(stored)
        .transpose()
}

/// Newest first from `?4` down (exclusive): a range on the primary key, never an offset.
pub(super) fn list_sql() -> String {
    format!(
        "SELECT {RUN_COLUMNS} FROM runs
         WHERE (?1 IS NULL OR job_id = ?1) AND (?2 IS NULL OR handler = ?2)
           AND (?3 IS NULL OR account = ?3) AND id < ?4
         ORDER BY id DESC LIMIT ?5"
    )
}

pub fn list(conn: &Connection, filter: &RunFilter) -> Result<Vec<StoredRun>, StoreError> {
    let rows: Vec<Row> = conn
        .prepare_cached(&list_sql())?
        .query_map(
            params![
                filter.job.map(|j| j.0),
                filter.handler,
                filter.account,
                crate::store::before_key(filter.before_id),
                crate::store::page_limit(filter.limit)
            ],
            from_row,
        )?
        .collect::<Result<_, _>>()?;
    rows.into_iter().map(stored).collect()
}
