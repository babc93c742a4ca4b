//! The LLM provider's circuit breaker as pure code: a provider's row and what happened go in, the
//! row to write and what changed come out. Both stores execute these steps (read the row under a
//! lock, `step`, write the result), so replicas sharing a store share one breaker per provider.
//!
//! ```text
//! closed ──`threshold` consecutive provider failures──▶ open (until now + cool-down)
//!   ▲  └─ a success resets the count                      │ time passes
//!   │                                                     ▼
//!   └──────────── the probe (or any run) succeeds ─── half-open: one replica takes the probe
//!                                                         │ a provider failure
//!                                     open again, the cool-down doubled (up to its cap) ◀┘
//! ```
//!
//! Only provider failures (5xx, 529, timeouts, dropped connections) count; the caller decides
//! which errors those are. A success from any run closes the breaker, whatever state it is in:
//! the provider answered.

/// One provider's breaker row. A provider with no row is closed with no failures.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BreakerRow {
    /// Provider failures since the last success.
    pub failures: u32,
    /// Openings since it last closed: the cool-down doubles with each.
    pub trips: u32,
    /// Set while open or half-open (Unix ms): no job is claimed before it.
    pub open_until_ms: Option<i64>,
    /// The replica running the half-open probe, and until when its claim on it holds.
    pub probe_owner: Option<String>,
    pub probe_until_ms: Option<i64>,
    /// The provider failure that was counted last.
    pub last_error: Option<String>,
}

/// When the breaker opens and for how long; from `[llm.breaker]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerPolicy {
    /// Consecutive provider failures that open it (at least 1).
    pub threshold: u32,
    pub cool_down_ms: i64,
    /// The longest cool-down after repeated failed probes.
    pub max_cool_down_ms: i64,
}

impl BreakerPolicy {
    /// The cool-down of the opening after `trips` earlier ones: doubled each time, capped.
    pub fn cool_down_after(&self, trips: u32) -> i64 {
        let factor = 1i64.checked_shl(trips.min(30)).unwrap_or(i64::MAX);
        self.cool_down_ms
            .saturating_mul(factor)
            .min(self.max_cool_down_ms)
    }
}

/// What happened to a provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BreakerEvent {
    /// A request got an answer from the provider.
    Success,
    /// A request failed because of the provider (5xx, 529, timeout, connection).
    Failure {
        error: String,
        policy: BreakerPolicy,
    },
    /// `owner` wants to send the half-open probe, holding it until `until_ms`.
    TakeProbe { owner: String, until_ms: i64 },
    /// `owner`'s probe run ended without deciding (it never reached the provider).
    ReleaseProbe { owner: String },
}

/// Where a breaker stands at some instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    /// No claims before `until_ms`.
    Open {
        until_ms: i64,
    },
    /// One claim may go through as the probe; `probe` is whoever holds it, if its hold is live.
    HalfOpen {
        probe: Option<String>,
    },
}

impl BreakerRow {
    pub fn state(&self, now: i64) -> BreakerState {
        match self.open_until_ms {
            None => BreakerState::Closed,
            Some(until) if now < until => BreakerState::Open { until_ms: until },
            Some(_) => BreakerState::HalfOpen {
                probe: self
                    .probe_owner
                    .clone()
                    .filter(|_| self.probe_until_ms.is_some_and(|u| u > now)),
            },
        }
    }
}

/// What a step changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerChange {
    /// Nothing to write.
    Unchanged,
    /// A failure was counted; still closed.
    Counted,
    /// Closed (or half-open after a failed probe) → open until `until_ms`.
    Opened {
        until_ms: i64,
    },
    /// A failure while already open (a run that was in flight): counted, the cool-down unchanged.
    StillOpen {
        until_ms: i64,
    },
    /// Open or half-open → closed.
    Closed,
    /// The failure count went back to 0; it was closed already.
    Reset,
    ProbeTaken,
    /// Not half-open, or another replica holds a live probe.
    ProbeRefused,
    ProbeReleased,
}

/// The row to write (None: leave it as it is) and what changed. `row` is None when the provider
/// has none yet.
pub fn step(
    row: Option<&BreakerRow>,
    event: &BreakerEvent,
    now: i64,
) -> (Option<BreakerRow>, BreakerChange) {
    let current = row.cloned().unwrap_or_default();
    match event {
        BreakerEvent::Success => {
            if current == BreakerRow::default() {
                return (None, BreakerChange::Unchanged);
            }
            let change = if current.open_until_ms.is_some() {
                BreakerChange::Closed
            } else {
                BreakerChange::Reset
            };
            (Some(BreakerRow::default()), change)
        }
        BreakerEvent::Failure { error, policy } => {
            let failures = current.failures.saturating_add(1);
            let counted = BreakerRow {
                failures,
                last_error: Some(error.clone()),
                ..current.clone()
            };
            let open = |row: BreakerRow| {
                let until_ms = now.saturating_add(policy.cool_down_after(row.trips));
                let opened = BreakerRow {
                    trips: row.trips.saturating_add(1),
                    open_until_ms: Some(until_ms),
                    probe_owner: None,
                    probe_until_ms: None,
                    ..row
                };
                (Some(opened), BreakerChange::Opened { until_ms })
            };
            match current.state(now) {
                BreakerState::Closed if failures >= policy.threshold.max(1) => open(counted),
                BreakerState::Closed => (Some(counted), BreakerChange::Counted),
                BreakerState::Open { until_ms } => {
                    (Some(counted), BreakerChange::StillOpen { until_ms })
                }
                // The probe (or a run that slipped through) failed: wait longer.
                BreakerState::HalfOpen { .. } => open(counted),
            }
        }
        BreakerEvent::TakeProbe { owner, until_ms } => match current.state(now) {
            BreakerState::HalfOpen { probe }
                if probe.is_none() || probe.as_ref() == Some(owner) =>
            {
                let taken = BreakerRow {
                    probe_owner: Some(owner.clone()),
                    probe_until_ms: Some(*until_ms),
                    ..current
                };
                (Some(taken), BreakerChange::ProbeTaken)
            }
            _ => (None, BreakerChange::ProbeRefused),
        },
        BreakerEvent::ReleaseProbe { owner } => {
            if current.probe_owner.as_ref() != Some(owner) {
                return (None, BreakerChange::Unchanged);
            }
            let released = BreakerRow {
                probe_owner: None,
                probe_until_ms: None,
                ..current
            };
            (Some(released), BreakerChange::ProbeReleased)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_700_000_000_000;
    const POLICY: BreakerPolicy = BreakerPolicy {
        threshold: 3,
        cool_down_ms: 60_000,
        max_cool_down_ms: 300_000,
    };

    fn fail(row: Option<&BreakerRow>, now: i64) -> (BreakerRow, BreakerChange) {
        let (row, change) = step(
            row,
            &BreakerEvent::Failure {
                error: "HTTP 503".into(),
                policy: POLICY,
            },
            now,
        );
        (row.expect("a failure is always written"), change)
    }

    /// Opened at T0 after three failures.
    fn opened() -> BreakerRow {
        let (row, _) = fail(None, T0);
        let (row, _) = fail(Some(&row), T0);
        let (row, change) = fail(Some(&row), T0);
        assert_eq!(
            change,
            BreakerChange::Opened {
                until_ms: T0 + 60_000
            }
        );
        row
    }

    #[test]
    fn consecutive_failures_open_it_and_a_success_between_them_resets_the_count() {
        let (row, change) = fail(None, T0);
        assert_eq!(change, BreakerChange::Counted);
        let (row, change) = fail(Some(&row), T0 + 1);
        assert_eq!((row.failures, change), (2, BreakerChange::Counted));
        assert_eq!(row.state(T0 + 1), BreakerState::Closed);

        let (reset, change) = step(Some(&row), &BreakerEvent::Success, T0 + 2);
        assert_eq!(change, BreakerChange::Reset);
        let reset = reset.unwrap();
        assert_eq!(reset.failures, 0);
        let (row, change) = fail(Some(&reset), T0 + 3);
        assert_eq!((row.failures, change), (1, BreakerChange::Counted));

        let row = opened();
        assert_eq!(row.failures, 3);
        assert_eq!(row.trips, 1);
        assert_eq!(row.last_error.as_deref(), Some("HTTP 503"));
        assert_eq!(
            row.state(T0 + 59_999),
            BreakerState::Open {
                until_ms: T0 + 60_000
            }
        );
        assert_eq!(
            row.state(T0 + 60_000),
            BreakerState::HalfOpen { probe: None }
        );
    }

    #[test]
    fn a_success_on_a_closed_breaker_without_failures_writes_nothing() {
        assert_eq!(
            step(None, &BreakerEvent::Success, T0),
            (None, BreakerChange::Unchanged)
        );
        assert_eq!(
            step(Some(&BreakerRow::default()), &BreakerEvent::Success, T0),
            (None, BreakerChange::Unchanged)
        );
    }

    #[test]
    fn failures_while_open_are_counted_without_extending_the_cool_down() {
        let (row, change) = fail(Some(&opened()), T0 + 10_000);
        assert_eq!(
            change,
            BreakerChange::StillOpen {
                until_ms: T0 + 60_000
            }
        );
        assert_eq!(row.open_until_ms, Some(T0 + 60_000));
        assert_eq!(row.failures, 4);
        assert_eq!(row.trips, 1);
    }

    #[test]
    fn half_open_lets_one_probe_through_until_its_hold_expires() {
        let row = opened();
        let half = T0 + 60_000;
        // Still open: nobody probes.
        let (none, refused) = step(
            Some(&row),
            &BreakerEvent::TakeProbe {
                owner: "a".into(),
                until_ms: T0 + 1,
            },
            T0 + 1,
        );
        assert_eq!((none, refused), (None, BreakerChange::ProbeRefused));

        let take = |row: &BreakerRow, owner: &str, now| {
            step(
                Some(row),
                &BreakerEvent::TakeProbe {
                    owner: owner.into(),
                    until_ms: now + 30_000,
                },
                now,
            )
        };
        let (taken, change) = take(&row, "a", half);
        assert_eq!(change, BreakerChange::ProbeTaken);
        let taken = taken.unwrap();
        assert_eq!(
            taken.state(half),
            BreakerState::HalfOpen {
                probe: Some("a".into())
            }
        );
        assert_eq!(take(&taken, "b", half + 1).1, BreakerChange::ProbeRefused);
        // The holder may take it again (a second loop of its scheduler).
        assert_eq!(take(&taken, "a", half + 1).1, BreakerChange::ProbeTaken);
        // A holder that went silent loses it when the hold runs out.
        assert_eq!(
            take(&taken, "b", half + 30_000).1,
            BreakerChange::ProbeTaken
        );

        // Released by its holder only.
        assert_eq!(
            step(
                Some(&taken),
                &BreakerEvent::ReleaseProbe { owner: "b".into() },
                half
            ),
            (None, BreakerChange::Unchanged)
        );
        let (released, change) = step(
            Some(&taken),
            &BreakerEvent::ReleaseProbe { owner: "a".into() },
            half,
        );
        assert_eq!(change, BreakerChange::ProbeReleased);
        assert_eq!(
            released.unwrap().state(half),
            BreakerState::HalfOpen { probe: None }
        );
    }

    #[test]
    fn a_failed_probe_reopens_for_longer_up_to_the_cap_and_a_success_closes() {
        let mut row = opened();
        let mut now = T0;
        let mut cool_downs = Vec::new();
        for _ in 0..4 {
            now = row.open_until_ms.unwrap();
            let (next, change) = fail(Some(&row), now);
            let BreakerChange::Opened { until_ms } = change else {
                panic!("a failed probe reopens: {change:?}");
            };
            assert_eq!(next.probe_owner, None);
            cool_downs.push(until_ms - now);
            row = next;
        }
        assert_eq!(cool_downs, [120_000, 240_000, 300_000, 300_000]);

        let (closed, change) = step(
            Some(&row),
            &BreakerEvent::Success,
            row.open_until_ms.unwrap(),
        );
        assert_eq!(change, BreakerChange::Closed);
        let closed = closed.unwrap();
        assert_eq!(closed, BreakerRow::default());
        assert_eq!(closed.state(now), BreakerState::Closed);
        // After closing, the first opening has the base cool-down again.
        let (row, _) = fail(Some(&closed), now);
        let (row, _) = fail(Some(&row), now);
        assert_eq!(
            fail(Some(&row), now).1,
            BreakerChange::Opened {
                until_ms: now + 60_000
            }
        );
    }

    #[test]
    fn a_cool_down_longer_than_its_cap_is_the_cap() {
        let policy = BreakerPolicy {
            threshold: 1,
            cool_down_ms: 10_000,
            max_cool_down_ms: 10_000,
        };
        assert_eq!(policy.cool_down_after(0), 10_000);
        assert_eq!(policy.cool_down_after(40), 10_000);
        let long = BreakerPolicy {
            max_cool_down_ms: i64::MAX,
            ..policy
        };
        assert_eq!(long.cool_down_after(3), 80_000);
        // Many failed probes without a cap: long, but no overflow.
        assert_eq!(long.cool_down_after(100), 10_000 << 30);
    }
}
