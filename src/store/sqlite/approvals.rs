//! Approval statements for the SQLite store. Every transition is one conditional UPDATE on the
//! store's single connection, so two deciders are serialized and only one sees the row pending.

use crate::store::approval::{approval_state, json_text, json_value};
use crate::store::{
    Approval, ApprovalCreated, ApprovalFilter, ApprovalState, Decided, Decision,
    EXECUTION_LEASE_MS, Execution, JobId, NewApproval, StoreError,
};
use rusqlite::{Connection, OptionalExtension, params};

const COLUMNS: &str = "id, job_id, attempt, call_id, handler, account, subject, tool, arguments,
    idempotency_key, state, decided_by, decided_at, reason, result, error, created_at, updated_at";

/// A row as stored; JSON columns and the state are parsed by `stored`, outside rusqlite's error
/// type, so a bad value is reported as corrupt rather than as a driver error.
struct Row {
    approval: Approval,
    arguments: String,
    state: String,
    result: Option<String>,
}

fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    Ok(Row {
        approval: Approval {
            id: r.get(0)?,
            request: NewApproval {
                job: JobId(r.get(1)?),
                attempt: r.get(2)?,
                call_id: r.get(3)?,
                handler: r.get(4)?,
                account: r.get(5)?,
                subject: r.get(6)?,
                tool: r.get(7)?,
                arguments: serde_json::Value::Null,
                idempotency_key: r.get(9)?,
                created_at_ms: r.get(16)?,
            },
            state: ApprovalState::Pending,
            decided_by: r.get(11)?,
            decided_at_ms: r.get(12)?,
            reason: r.get(13)?,
            result: None,
            error: r.get(15)?,
            updated_at_ms: r.get(17)?,
        },
        arguments: r.get(8)?,
        state: r.get(10)?,
        result: r.get(14)?,
    })
}

fn stored(row: Row) -> Result<Approval, StoreError> {
    let mut a = row.approval;
    a.request.arguments = json_value(a.id, "arguments", &row.arguments)?;
    a.state = approval_state(&row.state)?;
    a.result = row
        .result
        .map(|text| json_value(a.id, "result", &text))
        .transpose()?;
    Ok(a)
}

fn by(
    conn: &Connection,
    clause: &str,
    key: &dyn rusqlite::ToSql,
) -> Result<Option<Approval>, StoreError> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM approvals WHERE {clause}"))?
        .query_row([key], from_row)
        .optional()?
        .map(stored)
        .transpose()
}

pub fn get(conn: &Connection, id: i64) -> Result<Option<Approval>, StoreError> {
    by(conn, "id = ?1", &id)
}

/// Expects to run in a transaction: the insert and the read of an existing row see one state.
pub fn create(conn: &Connection, a: &NewApproval) -> Result<ApprovalCreated, StoreError> {
    let arguments = json_text("approval arguments", &a.arguments)?;
    let id: Option<i64> = conn
        .prepare_cached(
            "INSERT INTO approvals (job_id, attempt, call_id, handler, account, subject, tool,
                arguments, idempotency_key, state, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'pending', ?10, ?10)
             ON CONFLICT (idempotency_key) DO NOTHING
             RETURNING id",
        )?
        .query_row(
            params![
                a.job.0,
                a.attempt,
                a.call_id,
                a.handler,
                a.account,
                a.subject,
                a.tool,
                arguments,
                a.idempotency_key,
                a.created_at_ms,
            ],
            |r| r.get(0),
        )
        .optional()?;
    match id {
        Some(id) => Ok(ApprovalCreated::New(get(conn, id)?.ok_or_else(|| {
            StoreError::Corrupt(format!("approval {id} vanished"))
        })?)),
        None => by(conn, "idempotency_key = ?1", &a.idempotency_key)?
            .map(ApprovalCreated::Existing)
            .ok_or_else(|| StoreError::Corrupt("approval key conflict without a row".into())),
    }
}

/// Newest first from `?4` down (exclusive): a range on the primary key, never an offset.
pub(super) fn list_sql() -> String {
    format!(
        "SELECT {COLUMNS} FROM approvals
         WHERE (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR account = ?2)
           AND (?3 IS NULL OR handler = ?3) AND id < ?4
         ORDER BY id DESC LIMIT ?5"
    )
}

pub fn list(conn: &Connection, filter: &ApprovalFilter) -> Result<Vec<Approval>, StoreError> {
    let rows: Vec<Row> = conn
        .prepare_cached(&list_sql())?
        .query_map(
            params![
                filter.state.map(ApprovalState::as_str),
                filter.account,
                filter.handler,
                crate::store::before_key(filter.before_id),
                crate::store::page_limit(filter.limit)
            ],
            from_row,
        )?
        .collect::<Result<_, _>>()?;
    rows.into_iter().map(stored).collect()
}

/// Expects to run in a transaction: the conditional update and the read that explains a refusal
/// see one state.
pub fn decide(
    conn: &Connection,
    id: i64,
    decision: &Decision,
    now: i64,
) -> Result<Decided, StoreError> {
    let changed = match decision {
        // A claim whose executor went silent past the lease may be taken over (see
        // EXECUTION_LEASE_MS); a rejection may not: the write may already have been sent.
        Decision::Execute { by } => conn
            .prepare_cached(
                "UPDATE approvals SET state = 'executing', decided_by = ?2, decided_at = ?3,
                    updated_at = ?3
                 WHERE id = ?1 AND (state = 'pending'
                    OR (state = 'executing' AND decided_at <= ?3 - ?4))",
            )?
            .execute(params![id, by, now, EXECUTION_LEASE_MS])?,
        Decision::Reject { by, reason } => conn
            .prepare_cached(
                "UPDATE approvals SET state = 'rejected', decided_by = ?2, decided_at = ?3,
                    reason = ?4, updated_at = ?3
                 WHERE id = ?1 AND state = 'pending'",
            )?
            .execute(params![id, by, now, reason])?,
    };
    let Some(approval) = get(conn, id)? else {
        return Ok(Decided::NotFound);
    };
    Ok(match (changed, decision) {
        (0, _) => Decided::NotPending(approval.state),
        (_, Decision::Execute { .. }) => Decided::Claimed(approval),
        (_, Decision::Reject { .. }) => Decided::Rejected(approval),
    })
}

/// Expects to run in a transaction, like `decide`.
pub fn finish(
    conn: &Connection,
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
    let changed = conn
        .prepare_cached(
            "UPDATE approvals SET state = ?4, result = ?5, error = ?6, updated_at = ?7,
                decided_by = CASE WHEN ?4 = 'pending' THEN NULL ELSE decided_by END,
                decided_at = CASE WHEN ?4 = 'pending' THEN NULL ELSE decided_at END
             WHERE id = ?1 AND state = 'executing' AND decided_by IS ?2 AND decided_at IS ?3",
        )?
        .execute(params![
            claim.id,
            claim.decided_by,
            claim.decided_at_ms,
            state,
            result,
            error,
            now
        ])?;
    if changed == 0 {
        return Ok(None);
    }
    get(conn, claim.id)
}
