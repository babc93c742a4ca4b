//! Retention: how long events, finished jobs and dead jobs are kept, what one pruning round
//! deleted, and the background `Pruner` that runs rounds through `Store::prune`.
//!
//! What may go (both backends execute the same rules, `Store::prune`):
//!
//! - a **job** that finished (`done` or `merged`) more than `jobs_ms` ago, or died (`dead`) more
//!   than `dead_jobs_ms` ago, and has no approval still `pending` or `executing`; with it go its
//!   runs, its action journal, its decided approvals and its links to events. A pending or
//!   running job is never pruned, so neither is its journal;
//! - an **event** received more than `events_ms` ago that no remaining job refers to. Once it is
//!   gone, a re-delivery with the same id is accepted as a new event: `events_ms` is the dedupe
//!   horizon.
//!
//! Rows go oldest first, `batch` jobs and `batch` events per round, each round one short
//! transaction, so ingest (SQLite's one writer) never waits long behind it.

use super::{SharedStore, StoreError};
use crate::kernel::clock::SharedClock;
use crate::telemetry::metrics::SharedMetrics;
use serde::Serialize;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long each kind of row is kept, in ms, and how many rows a round deletes per table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrunePolicy {
    /// Events received longer ago than this may go (once no remaining job refers to them).
    pub events_ms: i64,
    /// Done and merged jobs, with their runs, journal and approvals, once finished this long.
    pub jobs_ms: i64,
    /// Dead jobs: kept longer, so a person can still `jobs retry` them.
    pub dead_jobs_ms: i64,
    /// Jobs and events per round (a job's runs, journal and approvals go along with it).
    pub batch: u32,
}

/// A policy's cutoffs at one instant: rows older than these (Unix ms) may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cutoffs {
    pub events_before_ms: i64,
    pub jobs_before_ms: i64,
    pub dead_jobs_before_ms: i64,
    /// The later of the two job cutoffs: no prunable job finished after it.
    pub any_job_before_ms: i64,
    pub batch: i64,
}

impl PrunePolicy {
    pub fn cutoffs(&self, now_ms: i64) -> Cutoffs {
        let jobs = now_ms.saturating_sub(self.jobs_ms);
        let dead = now_ms.saturating_sub(self.dead_jobs_ms);
        Cutoffs {
            events_before_ms: now_ms.saturating_sub(self.events_ms),
            jobs_before_ms: jobs,
            dead_jobs_before_ms: dead,
            any_job_before_ms: jobs.max(dead),
            batch: i64::from(self.batch.max(1)),
        }
    }
}

/// Rows deleted by pruning (or, from `Store::prune_dry_run`, that would be), per kind. The
/// metrics count these (`hookwise_events_pruned_total` and its siblings).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PruneReport {
    pub events: u64,
    pub jobs: u64,
    pub runs: u64,
    /// Action-journal entries (writes sent upstream).
    pub actions: u64,
    pub approvals: u64,
    /// PostgreSQL: another replica held the prune lock, so this call did nothing.
    pub skipped: bool,
}

impl PruneReport {
    /// Nothing deleted.
    pub fn is_empty(&self) -> bool {
        self.events + self.jobs + self.runs + self.actions + self.approvals == 0
    }

    /// A round that filled its batch of jobs or events may have left more behind.
    pub fn may_have_more(&self, policy: &PrunePolicy) -> bool {
        let batch = u64::from(policy.batch.max(1));
        !self.skipped && (self.jobs >= batch || self.events >= batch)
    }

    /// Adds another round's counts.
    pub fn add(&mut self, other: &PruneReport) {
        self.events += other.events;
        self.jobs += other.jobs;
        self.runs += other.runs;
        self.actions += other.actions;
        self.approvals += other.approvals;
        self.skipped |= other.skipped;
    }

    /// (kind, count) in the order people read them.
    pub fn kinds(&self) -> [(&'static str, u64); 5] {
        [
            ("events", self.events),
            ("jobs", self.jobs),
            ("runs", self.runs),
            ("actions", self.actions),
            ("approvals", self.approvals),
        ]
    }
}

/// Runs pruning rounds: on a timer in the background (`run`), or until done (`prune_all`, the CLI).
pub struct Pruner {
    pub store: SharedStore,
    pub clock: SharedClock,
    pub policy: PrunePolicy,
    /// Time between pruning passes.
    pub interval: Duration,
    /// Time between two rounds of one pass: the ingest path's turn at the store.
    pub pause: Duration,
    /// Counts what each round deleted (`hookwise_pruned_total`).
    pub metrics: SharedMetrics,
}

impl Pruner {
    /// Rounds until one leaves nothing behind (or another replica holds the lock), each at the
    /// clock's current time; the rounds' counts added up.
    pub async fn prune_all(&self) -> Result<PruneReport, StoreError> {
        let mut total = PruneReport::default();
        loop {
            let now = self.clock.now().timestamp_millis();
            let round = self.store.prune(&self.policy, now).await?;
            for (kind, rows) in round.kinds() {
                self.metrics.pruned(kind, rows);
            }
            total.add(&round);
            if !round.may_have_more(&self.policy) {
                return Ok(total);
            }
            if !self.pause.is_zero() {
                tokio::time::sleep(self.pause).await;
            }
        }
    }

    /// What `prune_all` would delete now; changes nothing.
    pub async fn dry_run(&self) -> Result<PruneReport, StoreError> {
        let now = self.clock.now().timestamp_millis();
        self.store.prune_dry_run(&self.policy, now).await
    }

    /// Prunes every `interval` until `shutdown`, which stops a pass at once (a round in flight is
    /// one transaction: committed or rolled back whole). A failed pass is logged and tried again at the next interval.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(self.interval) => {}
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                result = self.prune_all() => match result {
                    Ok(report) if report.skipped => {
                        tracing::debug!("another replica is pruning; skipped this pass")
                    }
                    Ok(report) if report.is_empty() => {}
                    Ok(report) => tracing::info!(
                        events = report.events,
                        jobs = report.jobs,
                        runs = report.runs,
                        actions = report.actions,
                        approvals = report.approvals,
                        "pruned old rows"
                    ),
                    Err(e) => tracing::warn!(error = %e, "pruning failed; trying again next interval"),
                },
            }
        }
    }
}
