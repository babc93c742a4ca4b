//! Deciding held writes: the one path by which an approved write is sent and a rejected one is
//! dropped. `hookwise approvals approve|reject` and `POST /api/approvals/{id}/approve|reject`
//! both come here, so the checks and the order of steps cannot differ between them.
//!
//! Approving: the tool must still exist, the handler that held the write must still allow it
//! with these arguments (its allow-list and argument scope as loaded now), and the stored
//! arguments must still match the tool's schema (all checked before anything changes: a refusal
//! leaves the approval pending), then the
//! store's claim makes this caller the only sender, then the tool is called with the job's
//! account and the key the agent computed, and the outcome is recorded by that claim.

use crate::handler::HandlerSet;
use crate::kernel::clock::SharedClock;
use crate::kernel::event::AccountId;
use crate::store::{
    Approval, ApprovalState, Decided, Decision, Execution, SharedStore, StoreError,
};
use crate::tools::{ToolContext, ToolError, ToolRegistry, wire};
use std::sync::Arc;

/// Why an approval was not decided as asked. Callers branch on it (HTTP status, exit code).
#[derive(Debug, thiserror::Error)]
pub enum DecideError {
    #[error("no approval {0}")]
    NotFound(i64),
    #[error("approval {id} is {}; only a pending approval can be approved or rejected", state.as_str())]
    NotPending { id: i64, state: ApprovalState },
    #[error(
        "approval {id} cannot be sent: this hookwise has no tool {tool} (is its connector or \
         account still configured?); it stays pending: fix that and approve again, or reject it"
    )]
    ToolMissing { id: i64, tool: String },
    #[error(
        "approval {id} cannot be sent: its arguments no longer match {tool}'s schema ({violations}); \
         it stays pending: reject it"
    )]
    InvalidArguments {
        id: i64,
        tool: String,
        violations: String,
    },
    /// The handler that held the write no longer allows it: gone, the tool off its allow-list,
    /// or the arguments outside its scope for the tool.
    #[error("approval {id} cannot be sent: {reason}; it stays pending: reject it")]
    OutOfScope { id: i64, reason: String },
    /// A transient failure (upstream down, rate limited past patience): pending again.
    #[error("approval {id} was not sent: {error}; it is pending again, approve it later")]
    Unavailable { id: i64, error: String },
    /// The claim outlived `EXECUTION_LEASE_MS` and another approver took it over: whatever this
    /// call did, the new claim's outcome is the one recorded (the same key makes it one write).
    #[error(
        "approval {0} took so long to send that another approver took it over; its outcome is \
         theirs to record"
    )]
    ClaimLost(i64),
    /// The task sending the write panicked (a bug in a tool): the approval stays `executing`
    /// until its lease passes.
    #[error("sending approval {id} failed unexpectedly: {error}")]
    Internal { id: i64, error: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Decides approvals against one store with the tools of this process.
#[derive(Clone)]
pub struct Approvals {
    pub store: SharedStore,
    pub tools: Arc<ToolRegistry>,
    /// The handlers as loaded now: a held write is sent only if its handler still allows it.
    pub handlers: Arc<HandlerSet>,
    pub clock: SharedClock,
}

impl Approvals {
    /// Sends an approved write. Returns the approval as recorded: `approved` with the tool's
    /// result, or `failed` with the upstream's refusal (final: the same call would be refused
    /// again).
    pub async fn approve(&self, id: i64, by: &str) -> Result<Approval, DecideError> {
        let held = self
            .store
            .get_approval(id)
            .await?
            .ok_or(DecideError::NotFound(id))?;
        // `executing` may be a claim whose sender died: the store decides whether it is stale.
        if !matches!(
            held.state,
            ApprovalState::Pending | ApprovalState::Executing
        ) {
            return Err(DecideError::NotPending {
                id,
                state: held.state,
            });
        }
        let request = &held.request;
        let ctx = ToolContext {
            account: AccountId::new(&request.account),
            job: request.job,
            subject: request.subject.clone(),
            idempotency_key: request.idempotency_key.clone(),
        };
        let Some(handler) = self.handlers.get(&request.handler) else {
            return Err(DecideError::OutOfScope {
                id,
                reason: format!(
                    "handler {} is not loaded here, so whether it still allows this write cannot be checked",
                    request.handler
                ),
            });
        };
        if !handler.agent.tools.contains(&request.tool) {
            return Err(DecideError::OutOfScope {
                id,
                reason: format!(
                    "handler {} no longer allows {} (agent.tools)",
                    handler.name, request.tool
                ),
            });
        }
        let mut scoped = self
            .tools
            .scoped_by(std::slice::from_ref(&request.tool), &handler.agent.scopes);
        // The schema the write is checked against is today's, live where the tool has one (a
        // HappyFox category's custom fields may have changed since the run).
        for note in scoped.resolve_live(&ctx).await {
            tracing::warn!(approval = id, tool = %request.tool, "{note}");
        }
        let Some(entry) = scoped.get(&wire(&request.tool)).cloned() else {
            return Err(DecideError::ToolMissing {
                id,
                tool: request.tool.clone(),
            });
        };
        let out = entry.out_of_scope(&request.arguments);
        if !out.is_empty() {
            return Err(DecideError::OutOfScope {
                id,
                reason: format!(
                    "its arguments are outside handler {}'s scope for {}: {}",
                    handler.name,
                    request.tool,
                    out.join("; ")
                ),
            });
        }
        let violations = entry.violations(&request.arguments);
        if !violations.is_empty() {
            return Err(DecideError::InvalidArguments {
                id,
                tool: request.tool.clone(),
                violations: violations.join("; "),
            });
        }

        let decision = Decision::Execute { by: by.to_string() };
        let claim = match self
            .store
            .decide_approval(id, &decision, self.now())
            .await?
        {
            Decided::Claimed(claim) => claim,
            Decided::NotFound => return Err(DecideError::NotFound(id)),
            Decided::NotPending(state) => return Err(DecideError::NotPending { id, state }),
            Decided::Rejected(_) => unreachable!("an Execute decision never rejects"),
        };
        tracing::info!(approval = id, tool = %request.tool, account = %request.account, by, "sending an approved write");
        // In its own task: a caller that goes away (an HTTP client timing out) must not abandon
        // the write between sending it and recording that it was sent.
        let this = self.clone();
        let args = claim.request.arguments.clone();
        tokio::spawn(async move {
            let execution = match entry.tool.call(&ctx, args).await {
                Ok(result) => Execution::Sent { result },
                Err(ToolError::Rejected(error) | ToolError::Permanent(error)) => {
                    Execution::Failed { error }
                }
                Err(refused @ ToolError::Refused { .. }) => Execution::Failed {
                    error: refused.to_string(),
                },
                Err(ToolError::Unavailable(error)) => Execution::Retry { error },
                // The account's budget is used up: nothing was sent; approve again later.
                Err(ToolError::RateLimited { reason, .. }) => Execution::Retry { error: reason },
            };
            this.finish(&claim, execution).await
        })
        .await
        .map_err(|e| DecideError::Internal {
            id,
            error: e.to_string(),
        })?
    }

    async fn finish(
        &self,
        claim: &Approval,
        execution: Execution,
    ) -> Result<Approval, DecideError> {
        let id = claim.id;
        let recorded = self
            .store
            .finish_approval(claim, &execution, self.now())
            .await
            .inspect_err(|e| {
                // The write went out (or was refused) and the store did not take the outcome: the
                // approval stays `executing` until its lease passes; approving it again then
                // resends under the same key, which the upstream journal answers from its record.
                tracing::error!(approval = id, error = %e, "recording the outcome of an approved write failed");
            })?
            .ok_or(DecideError::ClaimLost(id))?;
        match execution {
            Execution::Retry { error } => Err(DecideError::Unavailable { id, error }),
            Execution::Sent { .. } | Execution::Failed { .. } => Ok(recorded),
        }
    }

    /// Drops a held write for good.
    pub async fn reject(
        &self,
        id: i64,
        by: &str,
        reason: Option<String>,
    ) -> Result<Approval, DecideError> {
        let decision = Decision::Reject {
            by: by.to_string(),
            reason,
        };
        match self
            .store
            .decide_approval(id, &decision, self.now())
            .await?
        {
            Decided::Rejected(approval) => {
                tracing::info!(approval = id, by, "write rejected");
                Ok(approval)
            }
            Decided::NotFound => Err(DecideError::NotFound(id)),
            Decided::NotPending(state) => Err(DecideError::NotPending { id, state }),
            Decided::Claimed(_) => unreachable!("a Reject decision never claims"),
        }
    }

    fn now(&self) -> i64 {
        self.clock.now().timestamp_millis()
    }
}
