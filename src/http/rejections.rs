//! Log lines for refused unauthenticated webhooks, at most one WARN per source per interval.
//! Anyone can send those, so one line each would let an unsigned flood fill the logs; the count
//! stays exact in `hookwise_webhooks_received_total`, and each refusal is logged at debug.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// How often an unauthenticated refusal of one source is logged at WARN, at most.
pub const INTERVAL: Duration = Duration::from_secs(60);

pub struct RejectionLog {
    interval: Duration,
    /// Per configured source (a bounded set): when its last WARN was logged, and how many
    /// refusals were held back since.
    sources: Mutex<HashMap<String, Window>>,
}

struct Window {
    since: Instant,
    held_back: u64,
}

impl RejectionLog {
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            sources: Mutex::new(HashMap::new()),
        }
    }

    /// `Some(n)` when this refusal should be logged at WARN, `n` being the refusals of `source`
    /// held back since the previous WARN; `None` when it is held back (counted for the next).
    pub fn admit(&self, source: &str) -> Option<u64> {
        let now = Instant::now();
        let mut sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        match sources.get_mut(source) {
            Some(w) if now.duration_since(w.since) < self.interval => {
                w.held_back += 1;
                None
            }
            Some(w) => {
                let held_back = w.held_back;
                *w = Window {
                    since: now,
                    held_back: 0,
                };
                Some(held_back)
            }
            None => {
                sources.insert(
                    source.to_owned(),
                    Window {
                        since: now,
                        held_back: 0,
                    },
                );
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn one_line_per_source_per_interval_with_the_count_held_back() {
        let log = RejectionLog::new(Duration::from_secs(60));
        assert_eq!(log.admit("a"), Some(0));
        assert_eq!(log.admit("a"), None);
        assert_eq!(log.admit("a"), None);
        assert_eq!(log.admit("b"), Some(0), "sources are counted apart");
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(log.admit("a"), Some(2));
        assert_eq!(log.admit("a"), None);
    }
}
