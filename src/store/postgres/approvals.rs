//! Approval statements for the PostgreSQL store: the SQLite store's `approvals.rs`, statement for
//! statement. Each transition is one conditional UPDATE: under READ COMMITTED a second decider
//! waits for the first's row lock, re-reads the row, finds it no longer pending and changes
//! nothing, so of two replicas approving at once exactly one sends the write.

use crate::store::approval::{approval_state, json_text, json_value};
use crate::store::{
    Approval, ApprovalCreated, ApprovalFilter, ApprovalState, Decided, Decision,
    EXECUTION_LEASE_MS, Execution, JobId, NewApproval, StoreError,
};
use sqlx::Row;
use sqlx::postgres::{PgConnection, PgRow};

const COLUMNS: &str = "id, job_id, attempt, call_id, handler, account, subject, tool, arguments,
    idempotency_key, state, decided_by, decided_at, reason, result, error, created_at, updated_at";

fn from_row(r: &PgRow) -> Result<Approval, StoreError> {
    let id: i64 = r.try_get(0)?;
    let arguments: String = r.try_get(8)?;
    let state: String = r.try_get(10)?;
    let result: Option<String> = r.try_get(14)?;
    Ok(Approval {
        id,
        request: NewApproval {
            job: JobId(r.try_get(1)?),
            attempt: r.try_get::<i32, _>(2)?.max(0).unsigned_abs(),
            call_id: r.try_get(3)?,
            handler: r.try_get(4)?,
            account: r.try_get(5)?,
            subject: r.try_get(6)?,
            tool: r.try_get(7)?,
            arguments: json_value(id, "arguments", &arguments)?,
            idempotency_key: r.try_get(9)?,
            created_at_ms: r.try_get(16)?,
        },
        state: approval_state(&state)?,
        decided_by: r.try_get(11)?,
        decided_at_ms: r.try_get(12)?,
        reason: r.try_get(13)?,
        result: result
            .map(|text| json_value(id, "result", &text))
            .transpose()?,
        error: r.try_get(15)?,
        updated_at_ms: r.try_get(17)?,
    })
}

pub async fn get(conn: &mut PgConnection, id: i64) -> Result<Option<Approval>, StoreError> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM approvals WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    row.as_ref().map(from_row).transpose()
}

pub async fn create(
    conn: &mut PgConnection,
    a: &NewApproval,
) -> Result<ApprovalCreated, StoreError> {
    let arguments = json_text("approval arguments", &a.arguments)?;
    let inserted = sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO approvals (job_id, attempt, call_id, handler, account, subject, tool,
            arguments, idempotency_key, state, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'pending', $10, $10)
         ON CONFLICT (idempotency_key) DO NOTHING
         RETURNING {COLUMNS}"
    )))
    .bind(a.job.0)
    // INTEGER, like the runs' attempt numbers.
    .bind(i32::try_from(a.attempt).unwrap_or(i32::MAX))
    .bind(&a.call_id)
    .bind(&a.handler)
    .bind(&a.account)
    .bind(&a.subject)
    .bind(&a.tool)
    .bind(arguments)
    .bind(&a.idempotency_key)
    .bind(a.created_at_ms)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(row) = inserted {
        return Ok(ApprovalCreated::New(from_row(&row)?));
    }
    // The conflicting row was committed before our insert gave up on it: a new statement sees it.
    let existing = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM approvals WHERE idempotency_key = $1"
    )))
    .bind(&a.idempotency_key)
    .fetch_optional(&mut *conn)
    .await?;
    match existing {
        Some(row) => Ok(ApprovalCreated::Existing(from_row(&row)?)),
        None => Err(StoreError::Corrupt(
            "approval key conflict without a row".into(),
        )),
    }
}

/// Newest first from `$4` down (exclusive): a range on the primary key, never an offset.
pub(super) fn list_sql() -> String {
    format!(
        "SELECT {COLUMNS} FROM approvals
         WHERE ($1::text IS NULL OR state = $1) AND ($2::text IS NULL OR account = $2)
           AND ($3::text IS NULL OR handler = $3) AND id < $4
         ORDER BY id DESC LIMIT $5"
    )
}

pub async fn list(
    conn: &mut PgConnection,
    filter: &ApprovalFilter,
) -> Result<Vec<Approval>, StoreError> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(list_sql()))
        .bind(filter.state.map(ApprovalState::as_str))
        .bind(&filter.account)
        .bind(&filter.handler)
        .bind(crate::store::before_key(filter.before_id))
        .bind(crate::store::page_limit(filter.limit))
        .fetch_all(&mut *conn)
        .await?;
    rows.iter().map(from_row).collect()
}

pub async fn decide(
    conn: &mut PgConnection,
    id: i64,
    decision: &Decision,
    now: i64,
) -> Result<Decided, StoreError> {
    let changed = match decision {
        // A claim whose executor went silent past the lease may be taken over (see
        // EXECUTION_LEASE_MS); a rejection may not: the write may already have been sent.
        Decision::Execute { by } => {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE approvals SET state = 'executing', decided_by = $2, decided_at = $3,
                    updated_at = $3
                 WHERE id = $1 AND (state = 'pending'
                    OR (state = 'executing' AND decided_at <= $3 - $4))
                 RETURNING {COLUMNS}"
            )))
            .bind(id)
            .bind(by)
            .bind(now)
            .bind(EXECUTION_LEASE_MS)
            .fetch_optional(&mut *conn)
            .await?
        }
        Decision::Reject { by, reason } => {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE approvals SET state = 'rejected', decided_by = $2, decided_at = $3,
                    reason = $4, updated_at = $3
                 WHERE id = $1 AND state = 'pending'
                 RETURNING {COLUMNS}"
            )))
            .bind(id)
            .bind(by)
            .bind(now)
            .bind(reason)
            .fetch_optional(&mut *conn)
            .await?
        }
    };
    if let Some(row) = changed {
        let approval = from_row(&row)?;
        return Ok(match decision {
            Decision::Execute { .. } => Decided::Claimed(approval),
            Decision::Reject { .. } => Decided::Rejected(approval),
        });
    }
    Ok(match get(conn, id).await? {
        None => Decided::NotFound,
        Some(a) => Decided::NotPending(a.state),
    })
}

pub async fn finish(
    conn: &mut PgConnection,
    claim: &Approval,
    execution: &Execution,
    now: i64,
) -> Result<Option<Approval>, StoreError> {
    let (state, result, error) = match execution {
        Execution::Sent { result } => (
            "approved",
            Some(json_text("approval result", result)?),
            None,
        ),
        Execution::Failed { error } => ("failed", None, Some(error.as_str())),
        Execution::Retry { error } => ("pending", None, Some(error.as_str())),
    };
    // Back to pending forgets who claimed it: the next approver's claim is a new decision.
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE approvals SET state = $4, result = $5, error = $6, updated_at = $7,
            decided_by = CASE WHEN $4 = 'pending' THEN NULL ELSE decided_by END,
            decided_at = CASE WHEN $4 = 'pending' THEN NULL ELSE decided_at END
         WHERE id = $1 AND state = 'executing'
           AND decided_by IS NOT DISTINCT FROM $2 AND decided_at IS NOT DISTINCT FROM $3
         RETURNING {COLUMNS}"
    )))
    .bind(claim.id)
    .bind(&claim.decided_by)
    .bind(claim.decided_at_ms)
    .bind(state)
    .bind(result)
    .bind(error)
    .bind(now)
    .fetch_optional(&mut *conn)
    .await?;
    row.as_ref().map(from_row).transpose()
}
