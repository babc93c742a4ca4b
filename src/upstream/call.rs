//! The context and the failure of one upstream call.

use crate::kernel::event::AccountId;
use crate::store::JobId;

/// Who an upstream call is for: built from the job (or by hookwise itself), never from model
/// output. Tools receive it as `tools::ToolContext`.
#[derive(Debug, Clone)]
pub struct CallContext {
    pub account: AccountId,
    pub job: JobId,
    /// The job's subject (a ticket id, a company id): what the run is about.
    pub subject: String,
    /// `job-<id>/step-<n>/call-<m>`: the same on a re-run of the same step, so a write journaled
    /// under it is not repeated.
    pub idempotency_key: String,
}

impl CallContext {
    /// A context for calls hookwise makes on an account's behalf outside any job (loading a Truto
    /// account's tool list at start-up). Only for reads: its idempotency key names no job step.
    pub fn for_account(account: &str, purpose: &str) -> Self {
        Self {
            account: AccountId::new(account),
            job: JobId(0),
            subject: String::new(),
            idempotency_key: format!("account-{account}/{purpose}"),
        }
    }
}

/// How an upstream call failed, by what the caller should do next. Tools return it as
/// `tools::ToolError`.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// hookwise refused the call before sending it (an argument that names no such record, a
    /// write already in doubt): the message goes back to the model so it can correct itself.
    #[error("{0}")]
    Rejected(String),
    /// The upstream answered with a 4xx about this request (an unknown id, a field it refused):
    /// like `Rejected`, the message goes back to the model. `status` and `body` (at most 500
    /// characters of it) are kept apart so a connector can explain them in its own words.
    #[error("{upstream} answered {status}: {body}")]
    Refused {
        upstream: &'static str,
        status: u16,
        body: String,
    },
    /// A transient failure (upstream down, rate limited past patience): the run is retried later.
    #[error("{0}")]
    Unavailable(String),
    /// The account's upstream budget is exhausted until `until_ms` (a 429, an exhausted quota)
    /// and waiting here would take too long: the job runs again then, no attempt spent.
    #[error("{reason}")]
    RateLimited { until_ms: i64, reason: String },
    /// Will fail the same way on every attempt (credentials refused, account not configured):
    /// the job is dead with this reason.
    #[error("{0}")]
    Permanent(String),
}
