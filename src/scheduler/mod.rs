//! The scheduler: claims due jobs under a lease, runs each through a `JobRunner`, and records the
//! outcome: done, retried with backoff, or dead with its reason.
//!
//! Invariant: at most one running job per account. The store enforces it (a claim condition in
//! SQLite, a unique index everywhere), not this process's memory, so it holds across replicas.
//! A replica that dies loses nothing: its leases expire and another claim picks the jobs up.
//!
//! With an LLM breaker (`breaker`), nothing is claimed while the provider's breaker is open, and
//! one job at a time, as the probe, while it is half-open.

pub mod breaker;

use crate::config::SchedulerConfig;
use crate::handler::{Handler, HandlerSet};
use crate::kernel::clock::SharedClock;
use crate::store::batcher::JobFinisher;
use crate::store::{JobFinish, JobRecord, JobWithEvents, SharedStore, StoredEvent};
use crate::telemetry::metrics::SharedMetrics;
use crate::telemetry::trace::{self, otel_span};
use async_trait::async_trait;
use breaker::{Gate, LlmBreaker};
use futures::FutureExt;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// What a job run gets: the job, its handler, and every event it coalesced (the last one is the
/// latest state). The account comes from here, never from model output.
pub struct RunContext<'a> {
    pub job: &'a JobRecord,
    pub handler: &'a Handler,
    pub events: &'a [StoredEvent],
}

/// Why a run did not succeed; the scheduler's retry policy branches on it.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Worth another attempt later (upstream 5xx, timeout, provider overload).
    #[error("{0}")]
    Retryable(String),
    /// Will fail the same way again (bad handler, refused credentials): dead at once.
    #[error("{0}")]
    Permanent(String),
    /// Nothing failed, but the account must wait (an upstream rate limit): run again at
    /// `until_ms` without spending an attempt.
    #[error("{reason}")]
    Deferred { until_ms: i64, reason: String },
}

/// Executes one job. The agent implements it; tests use recording fakes.
#[async_trait]
pub trait JobRunner: Send + Sync + 'static {
    async fn run(&self, ctx: RunContext<'_>) -> Result<(), RunError>;
}

struct Inner {
    store: SharedStore,
    runner: Arc<dyn JobRunner>,
    /// The loaded handlers: a job names its handler.
    handlers: Arc<HandlerSet>,
    clock: SharedClock,
    config: SchedulerConfig,
    /// This process's name on the leases it holds.
    owner: String,
    metrics: SharedMetrics,
    /// The LLM provider's breaker, asked before each claim; None: always claim.
    breaker: Option<Arc<LlmBreaker>>,
}

pub struct Scheduler {
    inner: Arc<Inner>,
    wake: Arc<Notify>,
}

impl Scheduler {
    pub fn new(
        store: SharedStore,
        runner: Arc<dyn JobRunner>,
        handlers: Arc<HandlerSet>,
        clock: SharedClock,
        config: SchedulerConfig,
        metrics: SharedMetrics,
    ) -> Self {
        let owner = format!("hookwise-{}-{:08x}", std::process::id(), fastrand::u32(..));
        Self {
            inner: Arc::new(Inner {
                store,
                runner,
                handlers,
                clock,
                config,
                owner,
                metrics,
                breaker: None,
            }),
            wake: Arc::new(Notify::new()),
        }
    }

    /// Claims only what `breaker` lets through. Call before `run`.
    pub fn with_breaker(mut self, breaker: Option<Arc<LlmBreaker>>) -> Self {
        let inner = Arc::get_mut(&mut self.inner).expect("only `run` shares the scheduler's state");
        if let Some(breaker) = &breaker {
            breaker.claim_as(&inner.owner);
        }
        inner.breaker = breaker;
        self
    }

    /// Notify this after committing new jobs, so they do not wait for the next poll.
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Claims and runs jobs until `shutdown`; then stops claiming, gives running jobs
    /// `shutdown_grace` to finish, and releases the rest back to pending.
    pub async fn run(self, shutdown: CancellationToken) {
        let inner = self.inner;
        // Commits finished jobs in batches; ends once the last worker's handle is dropped.
        let (finisher, _writer) = JobFinisher::start(inner.store.clone(), inner.owner.clone());
        let abort = CancellationToken::new();
        let mut running = JoinSet::new();
        tracing::info!(owner = %inner.owner, workers = inner.config.workers, "scheduler started");
        loop {
            let mut free = inner.config.workers.saturating_sub(running.len());
            let mut wait = inner.config.poll_interval;
            let lease = inner.config.lease.as_millis() as i64;
            let mut probe = false;
            if let (Some(breaker), true) = (&inner.breaker, free > 0) {
                match breaker.gate(&inner.owner, lease).await {
                    Gate::Claim => {}
                    Gate::Probe => {
                        free = 1;
                        probe = true;
                    }
                    Gate::Open { until_ms } => {
                        free = 0;
                        let until = until_ms - inner.clock.now().timestamp_millis();
                        wait = wait.min(Duration::from_millis(until.max(1) as u64));
                    }
                    Gate::ProbeOut => free = 0,
                }
            }
            if free > 0 {
                let now = inner.clock.now().timestamp_millis();
                match inner.store.claim_jobs(&inner.owner, now, free, lease).await {
                    Ok(jobs) => {
                        inner.metrics.claimed(jobs.len());
                        let full = jobs.len() == free;
                        if probe && jobs.is_empty() {
                            // Nothing due to probe with: let whoever has a job probe.
                            release_probe(&inner).await;
                        }
                        for job in jobs {
                            let span = tracing::info_span!(
                                "job",
                                job = %job.job.id,
                                handler = %job.job.handler,
                                account = %job.job.account,
                                attempt = job.job.attempts
                            );
                            let run = run_span(&job);
                            let task = execute(inner.clone(), finisher.clone(), job, abort.clone());
                            let inner = inner.clone();
                            running.spawn(
                                async move {
                                    task.await;
                                    if probe {
                                        release_probe(&inner).await;
                                    }
                                }
                                .instrument(run)
                                .instrument(span),
                            );
                        }
                        if full {
                            // More may be due: look again as soon as a worker frees up.
                            wait = Duration::ZERO;
                        } else if let Ok(Some(due)) = inner.store.next_due_ms().await {
                            // A due time in the past means a job whose account is busy: it can
                            // only become claimable when a run ends (join_next wakes us) or another
                            // replica finishes one (the poll), so it must not shorten the wait.
                            let until = due - inner.clock.now().timestamp_millis();
                            if until > 0 {
                                wait = wait.min(Duration::from_millis(until as u64));
                            }
                        }
                    }
                    Err(e) => {
                        if probe {
                            release_probe(&inner).await;
                        }
                        tracing::error!(error = %e, "claiming jobs failed; retrying after the poll interval")
                    }
                }
            }
            if wait.is_zero() && running.len() < inner.config.workers {
                continue;
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.wake.notified() => {}
                Some(done) = running.join_next(), if !running.is_empty() => {
                    log_join(done);
                    // Runs that ended together (their outcomes share a commit) free their
                    // workers together, so the next claim takes a job for each in one go.
                    while let Some(done) = running.try_join_next() {
                        log_join(done);
                    }
                }
                _ = tokio::time::sleep(wait), if !wait.is_zero() => {}
            }
        }

        tracing::info!(running = running.len(), "scheduler stopping: no new claims");
        let drained = tokio::time::timeout(inner.config.shutdown_grace, async {
            while let Some(done) = running.join_next().await {
                log_join(done);
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                running = running.len(),
                "shutdown grace over: releasing unfinished jobs"
            );
            abort.cancel();
            while let Some(done) = running.join_next().await {
                log_join(done);
            }
        }
        tracing::info!("scheduler stopped");
    }
}

async fn release_probe(inner: &Inner) {
    if let Some(breaker) = &inner.breaker {
        breaker.release_probe(&inner.owner).await;
    }
}

fn log_join(done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done {
        // A panic in the run itself is a failed attempt (`execute`); this is one outside it, e.g.
        // while recording the outcome. Its heartbeat died with it, so the lease runs out.
        tracing::error!(error = %e, "a job task panicked; the job runs again once its lease expires");
    }
}

/// Aborts the task when dropped: a heartbeat lives exactly as long as the run it serves, however
/// that run ends (returns, panics, or is dropped at shutdown).
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The text of a panic payload: `panic!` makes a `&'static str` or a `String`.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&'static str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a panic without a message")
}

/// Runs one claimed job to an outcome, heartbeating its lease meanwhile.
/// The trace span of one attempt at a job: a child of the request that delivered its first event,
/// linked to those of the events folded into it.
fn run_span(claimed: &JobWithEvents) -> tracing::Span {
    let job = &claimed.job;
    let span = otel_span!(
        "run",
        otel.name = format!("invoke_agent {}", job.handler),
        gen_ai.operation.name = "invoke_agent",
        gen_ai.agent.name = %job.handler,
        hookwise.job.id = job.id.0,
        hookwise.job.attempt = i64::from(job.attempts),
        hookwise.account = %job.account,
        hookwise.job.events = claimed.events.len() as i64,
        hookwise.job.outcome = tracing::field::Empty,
        error.type = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    );
    trace::follow(
        &span,
        claimed
            .events
            .iter()
            .filter_map(|e| e.trace_context.as_deref()),
    );
    span
}

async fn execute(
    inner: Arc<Inner>,
    finisher: JobFinisher,
    claimed: JobWithEvents,
    abort: CancellationToken,
) {
    let job = &claimed.job;

    let Some(handler) = inner.handlers.get(&job.handler) else {
        let error = format!(
            "handler {:?} is not loaded (renamed or removed?)",
            job.handler
        );
        finish(&inner, &finisher, job, JobFinish::Dead { error }).await;
        return;
    };

    let lost = CancellationToken::new();
    let heartbeat = {
        let (inner, lost, id) = (inner.clone(), lost.clone(), job.id);
        AbortOnDrop(tokio::spawn(async move {
            let every = inner.config.lease / 3;
            loop {
                tokio::time::sleep(every).await;
                let until =
                    inner.clock.now().timestamp_millis() + inner.config.lease.as_millis() as i64;
                match inner.store.extend_lease(id, &inner.owner, until).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!(job = %id, "lease lost: another worker owns this job now");
                        lost.cancel();
                        return;
                    }
                    Err(e) => tracing::warn!(job = %id, error = %e, "lease heartbeat failed"),
                }
            }
        }))
    };

    let ctx = RunContext {
        job,
        handler,
        events: &claimed.events,
    };
    let started = std::time::Instant::now();
    let ran = |outcome| {
        inner
            .metrics
            .run_finished(&job.handler, outcome, started.elapsed());
        let span = tracing::Span::current();
        span.record("hookwise.job.outcome", outcome);
        if !matches!(outcome, "done" | "deferred" | "released") {
            span.record("error.type", outcome);
            span.record("otel.status_code", "ERROR");
        }
    };
    // A panic in the runner (a tool, the agent) is a failed attempt like any other, retried with
    // backoff: left to unwind, it would end this task with the job still `running`.
    let run = AssertUnwindSafe(inner.runner.run(ctx)).catch_unwind();
    let outcome = tokio::select! {
        r = tokio::time::timeout(handler.agent.deadline, run) => match r {
            Ok(Ok(r)) => Some(r),
            Ok(Err(panic)) => Some(Err(RunError::Retryable(format!(
                "the run panicked: {}", panic_message(&*panic)
            )))),
            Err(_) => Some(Err(RunError::Retryable(format!(
                "run exceeded the handler's deadline of {:?}", handler.agent.deadline
            )))),
        },
        _ = lost.cancelled() => None,
        _ = abort.cancelled() => {
            drop(heartbeat);
            ran("released");
            finish(&inner, &finisher, job, JobFinish::Release).await;
            return;
        }
    };
    drop(heartbeat);
    if outcome.is_none() {
        ran("lease_lost");
    }

    let finish_as = match outcome {
        None => return, // the new owner records the outcome
        Some(Ok(())) => JobFinish::Done,
        Some(Err(RunError::Permanent(error))) => JobFinish::Dead { error },
        Some(Err(RunError::Deferred { until_ms, reason })) => JobFinish::Defer {
            at_ms: until_ms,
            error: reason,
        },
        Some(Err(RunError::Retryable(error))) if job.attempts >= job.max_attempts => {
            JobFinish::Dead {
                error: format!("gave up after {} attempts: {error}", job.attempts),
            }
        }
        Some(Err(RunError::Retryable(error))) => JobFinish::Retry {
            at_ms: inner.clock.now().timestamp_millis()
                + backoff(&inner.config, job.attempts).as_millis() as i64,
            error,
        },
    };
    ran(match finish_as {
        JobFinish::Done => "done",
        JobFinish::Retry { .. } => "retry",
        JobFinish::Dead { .. } => "dead",
        JobFinish::Defer { .. } => "deferred",
        JobFinish::Release => "released",
    });
    finish(&inner, &finisher, job, finish_as).await;
}

async fn finish(inner: &Inner, finisher: &JobFinisher, job: &JobRecord, finish: JobFinish) {
    let now = inner.clock.now().timestamp_millis();
    match &finish {
        JobFinish::Done => {
            tracing::info!(job = %job.id, handler = %job.handler, account = %job.account, "job done")
        }
        JobFinish::Retry { error, .. } => {
            tracing::warn!(job = %job.id, attempt = job.attempts, error, "job failed; will retry")
        }
        JobFinish::Dead { error } => {
            tracing::error!(job = %job.id, handler = %job.handler, error, "job dead")
        }
        JobFinish::Release => tracing::info!(job = %job.id, "job released at shutdown"),
        JobFinish::Defer { at_ms, error } => {
            tracing::info!(job = %job.id, at_ms, error, "job deferred")
        }
    }
    match finisher.finish(job.id, now, finish).await {
        Ok(true) => {}
        Ok(false) => {
            tracing::warn!(job = %job.id, "job was reclaimed by another worker; outcome not recorded")
        }
        Err(e) => {
            tracing::error!(job = %job.id, error = %e, "recording the job outcome failed; its lease will expire and it will run again")
        }
    }
}

/// Exponential backoff from `retry_base`, doubling per attempt, capped at `retry_max`, with ±20%
/// jitter so a burst of failures does not retry in lockstep.
pub fn backoff(config: &SchedulerConfig, attempt: u32) -> Duration {
    let exp = config.retry_base.saturating_mul(
        1u32.checked_shl(attempt.saturating_sub(1).min(20))
            .unwrap_or(u32::MAX),
    );
    let capped = exp.min(config.retry_max);
    capped.mul_f64(0.8 + fastrand::f64() * 0.4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let config = SchedulerConfig {
            retry_base: Duration::from_secs(10),
            retry_max: Duration::from_secs(60),
            ..SchedulerConfig::default()
        };
        for _ in 0..100 {
            let first = backoff(&config, 1).as_secs_f64();
            let third = backoff(&config, 3).as_secs_f64();
            let tenth = backoff(&config, 10).as_secs_f64();
            assert!((8.0..=12.0).contains(&first), "{first}");
            assert!((32.0..=48.0).contains(&third), "{third}");
            assert!((48.0..=72.0).contains(&tenth), "{tenth}");
        }
    }
}
