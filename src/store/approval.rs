//! Approvals as the store keeps them: a write an `approve`-mode run asked for, waiting for a
//! person, and the states it moves through. Both backends implement the same transitions; the
//! rules that are not SQL (how a stored row is read back) live here.

use super::{JobId, StoreError};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

/// How long an approval may stay `executing` before another approver may take it over: its
/// executor is presumed dead (a crashed CLI, a replica killed mid-call). Longer than any one
/// tool call with its retries; the write is re-sent under the same idempotency key, which the
/// upstream journal turns into a no-op if the first attempt got through.
pub const EXECUTION_LEASE_MS: i64 = 15 * 60 * 1000;

/// Where an approval is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ApprovalState {
    /// Waiting for a person.
    Pending,
    /// A person approved it and one process is sending it now; nobody else may.
    Executing,
    /// Approved and sent: `result` is what the tool returned.
    Approved,
    /// Approved, but the upstream refused it: `error` says why. Not retried.
    Failed,
    /// A person decided it must not be sent.
    Rejected,
}

impl ApprovalState {
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalState::Pending => "pending",
            ApprovalState::Executing => "executing",
            ApprovalState::Approved => "approved",
            ApprovalState::Failed => "failed",
            ApprovalState::Rejected => "rejected",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Pending,
            Self::Executing,
            Self::Approved,
            Self::Failed,
            Self::Rejected,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }
}

/// A write held for approval, as the agent records it. The account, subject and key come from
/// the job; only `tool`'s arguments came from the model, and they passed its schema.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, ToSchema)]
pub struct NewApproval {
    pub job: JobId,
    /// The job's attempt whose run asked for the write: with `job`, it finds the run.
    pub attempt: u32,
    /// The model's tool call id in that run's transcript.
    pub call_id: String,
    pub handler: String,
    pub account: String,
    pub subject: String,
    /// Dotted tool name: `happyfox.add_private_note`.
    pub tool: String,
    pub arguments: Value,
    /// `job-N/step-S/call-C`: the write is sent under this key, whoever approves it and however
    /// often, so the upstream journal sends it at most once.
    pub idempotency_key: String,
    pub created_at_ms: i64,
}

/// A stored approval.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Approval {
    pub id: i64,
    #[serde(flatten)]
    pub request: NewApproval,
    pub state: ApprovalState,
    pub decided_by: Option<String>,
    /// When it was claimed for sending (approved, failed, executing) or rejected.
    pub decided_at_ms: Option<i64>,
    /// Why it was rejected, if the person said.
    pub reason: Option<String>,
    /// What the tool returned (approved).
    pub result: Option<Value>,
    /// Why sending failed (failed), or the last transient failure (back to pending).
    pub error: Option<String>,
    pub updated_at_ms: i64,
}

/// What `create_approval` did.
#[derive(Debug, Clone, PartialEq)]
pub enum ApprovalCreated {
    New(Approval),
    /// An approval with this idempotency key already existed (a re-run of the job reached the
    /// same step): it is returned unchanged and nothing was inserted.
    Existing(Approval),
}

/// A person's decision on a pending approval.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// pending → executing: the caller sends the write next and reports with `finish_approval`.
    /// An approval left `executing` for longer than `EXECUTION_LEASE_MS` may be claimed again.
    Execute { by: String },
    /// pending → rejected: never sent.
    Reject { by: String, reason: Option<String> },
}

/// What `decide_approval` did. Exactly one caller gets `Claimed` for a pending approval.
#[derive(Debug, Clone, PartialEq)]
pub enum Decided {
    /// Now `executing`, claimed by this caller: send it, then `finish_approval`.
    Claimed(Approval),
    Rejected(Approval),
    NotFound,
    /// Someone decided first (or it is being sent right now): nothing changed.
    NotPending(ApprovalState),
}

/// How sending an approved write ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Execution {
    /// executing → approved.
    Sent { result: Value },
    /// executing → failed: the upstream refused the write; sending it again would not help.
    Failed { error: String },
    /// executing → pending: a transient failure (upstream down); a person may approve it again.
    Retry { error: String },
}

/// Which approvals to list, newest first.
#[derive(Debug, Clone, Default)]
pub struct ApprovalFilter {
    pub state: Option<ApprovalState>,
    pub account: Option<String>,
    pub handler: Option<String>,
    pub before_id: Option<i64>,
    pub limit: u32,
}

/// Reads a stored approval state; an unknown one is an error, never silently another state.
pub(crate) fn approval_state(s: &str) -> Result<ApprovalState, StoreError> {
    ApprovalState::parse(s).ok_or_else(|| StoreError::Corrupt(format!("approval state {s:?}")))
}

/// JSON stored as text (arguments, result): the same in both backends, read back as written.
pub(crate) fn json_text(what: &str, value: &Value) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

/// Parses stored JSON text; text that is not JSON is an error naming the approval.
pub(crate) fn json_value(id: i64, what: &str, text: &str) -> Result<Value, StoreError> {
    serde_json::from_str(text)
        .map_err(|e| StoreError::Corrupt(format!("{what} of approval {id}: {e}")))
}
