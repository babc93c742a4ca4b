//! `[retention]`: how long stored rows are kept and how often the pruner runs. Plain data; the
//! composition root turns it into `store::PrunePolicy` and a `Pruner`.

use super::duration;
use crate::kernel::ConfigError;
use serde::Deserialize;
use std::path::Path;
use std::time::Duration;

/// The longest a sender we know keeps retrying one delivery (Stripe: 3 days; the Standard
/// Webhooks example schedule ~75 h, Svix ~27.6 h). Events kept for less may be re-delivered
/// after they were pruned, and would then be processed again.
pub const LONGEST_SENDER_RETRY: Duration = Duration::from_secs(3 * 86_400);

/// The most rows one pruning statement may delete: a larger batch holds the store's one writer
/// (SQLite) or its row locks (PostgreSQL) for longer than an ingest should wait.
pub const MAX_BATCH: u32 = 100_000;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// false: nothing is ever pruned (the store grows forever) and `hookwise prune` refuses.
    pub enabled: bool,
    /// Events received longer ago than this are pruned once no remaining job refers to them.
    /// Also the dedupe horizon: a re-delivery of an event pruned is accepted as a new one.
    #[serde(deserialize_with = "duration")]
    pub events: Duration,
    /// Done (and merged) jobs, with their runs, action journal and decided approvals, are
    /// pruned this long after they finished.
    #[serde(deserialize_with = "duration")]
    pub jobs: Duration,
    /// Dead jobs are kept longer, so they can still be retried: this long after they died.
    #[serde(deserialize_with = "duration")]
    pub dead_jobs: Duration,
    /// How often the pruner runs in `serve`.
    #[serde(deserialize_with = "duration")]
    pub interval: Duration,
    /// Jobs and events deleted per statement; each batch is one short transaction.
    pub batch: u32,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        const DAY: u64 = 86_400;
        Self {
            enabled: true,
            events: Duration::from_secs(30 * DAY),
            jobs: Duration::from_secs(30 * DAY),
            dead_jobs: Duration::from_secs(90 * DAY),
            interval: Duration::from_secs(600),
            batch: 1_000,
        }
    }
}

impl RetentionConfig {
    pub(super) fn validate(&self, file: &Path, errors: &mut Vec<ConfigError>) {
        for (key, d) in [
            ("retention.events", self.events),
            ("retention.jobs", self.jobs),
            ("retention.dead_jobs", self.dead_jobs),
            ("retention.interval", self.interval),
        ] {
            if d.is_zero() {
                errors.push(ConfigError::new(
                    file,
                    key,
                    "must be greater than 0 (to keep everything, set retention.enabled = false)",
                ));
            }
        }
        if self.batch == 0 || self.batch > MAX_BATCH {
            errors.push(ConfigError::new(
                file,
                "retention.batch",
                format!("must be between 1 and {MAX_BATCH}, found {}", self.batch),
            ));
        }
    }

    /// Settings that work but are probably not meant: logged at start-up, printed by `check`.
    pub(super) fn warnings(&self, file: &Path) -> Vec<ConfigError> {
        let mut warnings = Vec::new();
        if self.enabled && !self.events.is_zero() && self.events < LONGEST_SENDER_RETRY {
            warnings.push(ConfigError::new(
                file,
                "retention.events",
                format!(
                    "{}h is shorter than the longest sender retry horizon we know (3 days, \
                     Stripe): a delivery retried after its event was pruned is processed again",
                    self.events.as_secs() / 3600
                ),
            ));
        }
        warnings
    }
}
