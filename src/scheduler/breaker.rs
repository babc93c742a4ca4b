//! The LLM provider's circuit breaker at work: `Guarded` wraps the provider and reports each
//! request's outcome to the store's breaker row (`store::breaker` holds the transitions), and the
//! scheduler asks `LlmBreaker::gate` before it claims.
//!
//! While the breaker is open nothing is claimed (every handler uses the one provider), and a run
//! whose request finds it open, or opens it, ends `Deferred` until the cool-down ends: the job
//! waits without spending an attempt, so an hour's outage leaves a backlog, not dead letters.
//! When the cool-down is over one replica takes the probe and claims one job; its first request
//! closes the breaker or opens it again for longer.

use crate::kernel::clock::SharedClock;
use crate::llm::{Completion, CompletionRequest, LlmError, LlmProvider};
use crate::store::{
    BreakerChange, BreakerEvent, BreakerPolicy, BreakerRow, BreakerState, SharedStore,
};
use crate::telemetry::metrics::SharedMetrics;
use async_trait::async_trait;
use std::sync::Arc;

/// One provider's breaker, as this process uses it.
pub struct LlmBreaker {
    store: SharedStore,
    clock: SharedClock,
    metrics: SharedMetrics,
    /// The provider's kind (`openai`, `anthropic`): the metrics' label and the reason's words.
    kind: &'static str,
    base_url: String,
    /// Kind and base URL: the store's key, the same on every replica of one configuration.
    key: String,
    policy: BreakerPolicy,
    /// The scheduler's lease owner in this process, once one claims through this breaker:
    /// half-open, only the runs of the process holding the probe may call the provider.
    owner: std::sync::OnceLock<String>,
}

/// What the scheduler may claim now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gate {
    /// As many jobs as it has workers for.
    Claim,
    /// Nothing before `until_ms`.
    Open { until_ms: i64 },
    /// One job: this process holds the probe.
    Probe,
    /// Nothing: a probe is out (this process's or another's).
    ProbeOut,
}

impl LlmBreaker {
    pub fn new(
        store: SharedStore,
        clock: SharedClock,
        metrics: SharedMetrics,
        kind: &'static str,
        base_url: String,
        policy: BreakerPolicy,
    ) -> Self {
        Self {
            key: format!("{kind} {base_url}"),
            store,
            clock,
            metrics,
            kind,
            base_url,
            policy,
            owner: std::sync::OnceLock::new(),
        }
    }

    /// The scheduler of this process claims as `owner` (the name on its leases and probes).
    pub fn claim_as(&self, owner: &str) {
        let _ = self.owner.set(owner.to_string());
    }

    /// Half-open, whether this process's runs may call: those of the probe's holder may (its
    /// probe, and a run claimed just before the breaker opened); without a scheduler (`replay
    /// --local`) there is no probe to wait for.
    fn may_call(&self, probe: Option<&str>) -> bool {
        match self.owner.get() {
            Some(me) => probe == Some(me.as_str()),
            None => true,
        }
    }

    /// The breaker's key in the store.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// `inner` behind this breaker.
    pub fn guard(self: &Arc<Self>, inner: Arc<dyn LlmProvider>) -> Arc<dyn LlmProvider> {
        Arc::new(Guarded {
            inner,
            breaker: self.clone(),
        })
    }

    fn now(&self) -> i64 {
        self.clock.now().timestamp_millis()
    }

    /// The row, or None when the store cannot say (the breaker then stays out of the way: it
    /// saves the provider work, it must not stop hookwise when the store hiccups).
    async fn row(&self) -> Option<BreakerRow> {
        match self.store.llm_breaker(&self.key).await {
            Ok(row) => Some(row.unwrap_or_default()),
            Err(e) => {
                tracing::warn!(provider = self.kind, error = %e, "reading the LLM breaker failed");
                None
            }
        }
    }

    async fn apply(&self, event: BreakerEvent) -> Option<(BreakerRow, BreakerChange)> {
        match self
            .store
            .llm_breaker_step(&self.key, event, self.now())
            .await
        {
            Ok(step) => Some(step),
            Err(e) => {
                tracing::warn!(provider = self.kind, error = %e, "updating the LLM breaker failed");
                None
            }
        }
    }

    fn show(&self, state: &BreakerState) {
        let value = match state {
            BreakerState::Closed => 0,
            BreakerState::Open { .. } => 1,
            BreakerState::HalfOpen { .. } => 2,
        };
        self.metrics.llm_breaker_state(self.kind, value);
    }

    /// Before claiming: whether to, and how many. Half-open, this takes the probe for `owner`
    /// (held until `hold_ms` from now), unless a probe is out already.
    pub async fn gate(&self, owner: &str, hold_ms: i64) -> Gate {
        let Some(row) = self.row().await else {
            return Gate::Claim;
        };
        let now = self.now();
        let state = row.state(now);
        self.show(&state);
        match state {
            BreakerState::Closed => Gate::Claim,
            BreakerState::Open { until_ms } => Gate::Open { until_ms },
            BreakerState::HalfOpen { probe: Some(_) } => Gate::ProbeOut,
            BreakerState::HalfOpen { probe: None } => {
                let take = BreakerEvent::TakeProbe {
                    owner: owner.to_string(),
                    until_ms: now.saturating_add(hold_ms),
                };
                match self.apply(take).await {
                    Some((_, BreakerChange::ProbeTaken)) => {
                        tracing::info!(
                            provider = self.kind,
                            "LLM breaker half-open: claiming one job as the probe"
                        );
                        Gate::Probe
                    }
                    _ => Gate::ProbeOut,
                }
            }
        }
    }

    /// The probe run of `owner` is over. Its requests have closed or reopened the breaker
    /// already, unless it never reached the provider: then another may probe at once.
    pub async fn release_probe(&self, owner: &str) {
        self.apply(BreakerEvent::ReleaseProbe {
            owner: owner.to_string(),
        })
        .await;
    }

    /// What a run is told while the breaker is open: why, and when the probe may go (half-open:
    /// that one is under way, and the job may run again as soon as it closes the breaker).
    fn open_error(&self, row: &BreakerRow, until_ms: i64) -> LlmError {
        let now = self.now();
        let next = if until_ms > now {
            let at = chrono::DateTime::from_timestamp_millis(until_ms)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                .unwrap_or_else(|| until_ms.to_string());
            format!("next probe at {at}")
        } else {
            "a probe is under way".to_string()
        };
        let last = row
            .last_error
            .as_deref()
            .map(|e| format!(" (last: {e})"))
            .unwrap_or_default();
        LlmError::BreakerOpen {
            until_ms: until_ms.max(now),
            message: format!(
                "provider {} at {} unavailable: {} consecutive failures{last}; {next}",
                self.kind, self.base_url, row.failures
            ),
        }
    }

    /// A request failed because of the provider: counted; the error the run gets instead when
    /// the breaker is open now.
    async fn failed(&self, error: &LlmError) -> Option<LlmError> {
        let (row, change) = self
            .apply(BreakerEvent::Failure {
                error: error.to_string(),
                policy: self.policy,
            })
            .await?;
        match change {
            BreakerChange::Opened { until_ms } => {
                self.metrics.llm_breaker_opened(self.kind);
                self.show(&BreakerState::Open { until_ms });
                let open = self.open_error(&row, until_ms);
                tracing::warn!(
                    provider = self.kind,
                    base_url = %self.base_url,
                    failures = row.failures,
                    openings = row.trips,
                    error = %error,
                    "LLM breaker open: no job is claimed until the probe; {open}"
                );
                Some(open)
            }
            BreakerChange::StillOpen { until_ms } => Some(self.open_error(&row, until_ms)),
            _ => None,
        }
    }

    async fn succeeded(&self) {
        if let Some((_, BreakerChange::Closed)) = self.apply(BreakerEvent::Success).await {
            self.show(&BreakerState::Closed);
            tracing::info!(
                provider = self.kind,
                base_url = %self.base_url,
                "LLM breaker closed: the provider answers again"
            );
        }
    }
}

/// A provider behind its breaker: not called while the breaker is open, each outcome reported.
struct Guarded {
    inner: Arc<dyn LlmProvider>,
    breaker: Arc<LlmBreaker>,
}

#[async_trait]
impl LlmProvider for Guarded {
    async fn complete(&self, req: &CompletionRequest) -> Result<Completion, LlmError> {
        let breaker = &self.breaker;
        if let Some(row) = breaker.row().await {
            match row.state(breaker.now()) {
                BreakerState::Open { until_ms } => return Err(breaker.open_error(&row, until_ms)),
                BreakerState::HalfOpen { probe } if !breaker.may_call(probe.as_deref()) => {
                    return Err(breaker.open_error(&row, breaker.now()));
                }
                _ => {}
            }
        }
        let result = self.inner.complete(req).await;
        match &result {
            Ok(_) => breaker.succeeded().await,
            Err(e) if e.provider_failure() => {
                if let Some(open) = breaker.failed(e).await {
                    return Err(open);
                }
            }
            // The provider answered; the request (or the account) was at fault.
            Err(_) => {}
        }
        result
    }
}
