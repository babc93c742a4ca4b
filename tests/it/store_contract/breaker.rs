//! Contract: each LLM provider's circuit breaker is one row every process sees the same way:
//! consecutive failures open it, a success closes it, and once its cool-down is over exactly one
//! claimant takes the probe.

use super::*;
use hookwise::store::{BreakerChange, BreakerEvent, BreakerPolicy, BreakerRow, BreakerState};

contract!(
    consecutive_failures_open_the_breaker_and_a_success_closes_it,
    providers_have_breakers_of_their_own,
    one_claimant_takes_the_probe_until_it_ends_or_its_hold_runs_out,
    a_failed_probe_opens_the_breaker_for_longer,
);

const OPENAI: &str = "openai http://127.0.0.1:9/v1";
const POLICY: BreakerPolicy = BreakerPolicy {
    threshold: 3,
    cool_down_ms: 60_000,
    max_cool_down_ms: 600_000,
};

async fn fail(store: &SharedStore, provider: &str, now: i64) -> (BreakerRow, BreakerChange) {
    store
        .llm_breaker_step(
            provider,
            BreakerEvent::Failure {
                error: "provider unavailable: 503".into(),
                policy: POLICY,
            },
            now,
        )
        .await
        .unwrap()
}

async fn succeed(store: &SharedStore, provider: &str, now: i64) -> BreakerChange {
    store
        .llm_breaker_step(provider, BreakerEvent::Success, now)
        .await
        .unwrap()
        .1
}

async fn take(store: &SharedStore, owner: &str, now: i64) -> BreakerChange {
    store
        .llm_breaker_step(
            OPENAI,
            BreakerEvent::TakeProbe {
                owner: owner.into(),
                until_ms: now + 30_000,
            },
            now,
        )
        .await
        .unwrap()
        .1
}

async fn state(store: &SharedStore, now: i64) -> BreakerState {
    store
        .llm_breaker(OPENAI)
        .await
        .unwrap()
        .unwrap_or_default()
        .state(now)
}

/// Opened at T0 by three failures.
async fn open(store: &SharedStore) {
    fail(store, OPENAI, T0).await;
    fail(store, OPENAI, T0).await;
    let (_, change) = fail(store, OPENAI, T0).await;
    assert_eq!(
        change,
        BreakerChange::Opened {
            until_ms: T0 + 60_000
        }
    );
}

async fn consecutive_failures_open_the_breaker_and_a_success_closes_it(store: SharedStore) {
    assert_eq!(store.llm_breaker(OPENAI).await.unwrap(), None);
    // A success with nothing to reset writes nothing.
    assert_eq!(succeed(&store, OPENAI, T0).await, BreakerChange::Unchanged);
    assert_eq!(store.llm_breaker(OPENAI).await.unwrap(), None);

    assert_eq!(fail(&store, OPENAI, T0).await.1, BreakerChange::Counted);
    assert_eq!(fail(&store, OPENAI, T0).await.1, BreakerChange::Counted);
    // Not consecutive: a success in between starts the count again.
    assert_eq!(succeed(&store, OPENAI, T0).await, BreakerChange::Reset);
    assert_eq!(fail(&store, OPENAI, T0).await.1, BreakerChange::Counted);
    assert_eq!(state(&store, T0).await, BreakerState::Closed);
    succeed(&store, OPENAI, T0).await;

    open(&store).await;
    let row = store.llm_breaker(OPENAI).await.unwrap().unwrap();
    assert_eq!(row.failures, 3);
    assert_eq!(row.open_until_ms, Some(T0 + 60_000));
    assert_eq!(row.last_error.as_deref(), Some("provider unavailable: 503"));
    assert_eq!(
        state(&store, T0 + 59_999).await,
        BreakerState::Open {
            until_ms: T0 + 60_000
        }
    );
    // A run that was in flight fails too: counted, the cool-down unchanged.
    let (row, change) = fail(&store, OPENAI, T0 + 1_000).await;
    assert_eq!(
        change,
        BreakerChange::StillOpen {
            until_ms: T0 + 60_000
        }
    );
    assert_eq!(row.failures, 4);
    assert_eq!(
        state(&store, T0 + 60_000).await,
        BreakerState::HalfOpen { probe: None }
    );

    assert_eq!(
        succeed(&store, OPENAI, T0 + 60_000).await,
        BreakerChange::Closed
    );
    assert_eq!(state(&store, T0 + 60_000).await, BreakerState::Closed);
    assert_eq!(
        store.llm_breaker(OPENAI).await.unwrap().unwrap(),
        BreakerRow::default()
    );
}

async fn providers_have_breakers_of_their_own(store: SharedStore) {
    open(&store).await;
    let other = "openai https://api.openai.com/v1";
    assert_eq!(store.llm_breaker(other).await.unwrap(), None);
    assert_eq!(fail(&store, other, T0).await.1, BreakerChange::Counted);
    assert_eq!(
        state(&store, T0).await,
        BreakerState::Open {
            until_ms: T0 + 60_000
        }
    );
}

async fn one_claimant_takes_the_probe_until_it_ends_or_its_hold_runs_out(store: SharedStore) {
    // Closed, or still open: there is no probe to take.
    assert_eq!(take(&store, "a", T0).await, BreakerChange::ProbeRefused);
    open(&store).await;
    assert_eq!(take(&store, "a", T0 + 1).await, BreakerChange::ProbeRefused);

    let half = T0 + 60_000;
    assert_eq!(take(&store, "a", half).await, BreakerChange::ProbeTaken);
    assert_eq!(
        state(&store, half).await,
        BreakerState::HalfOpen {
            probe: Some("a".into())
        }
    );
    assert_eq!(
        take(&store, "b", half + 1).await,
        BreakerChange::ProbeRefused
    );

    // Released by its holder only; then the next claimant may probe.
    let release = |owner: &str| BreakerEvent::ReleaseProbe {
        owner: owner.into(),
    };
    let (_, change) = store
        .llm_breaker_step(OPENAI, release("b"), half + 2)
        .await
        .unwrap();
    assert_eq!(change, BreakerChange::Unchanged);
    let (_, change) = store
        .llm_breaker_step(OPENAI, release("a"), half + 2)
        .await
        .unwrap();
    assert_eq!(change, BreakerChange::ProbeReleased);
    assert_eq!(take(&store, "b", half + 3).await, BreakerChange::ProbeTaken);

    // A holder gone silent loses the probe when its hold (30 s) runs out.
    assert_eq!(
        take(&store, "c", half + 30_002).await,
        BreakerChange::ProbeRefused
    );
    assert_eq!(
        take(&store, "c", half + 30_003).await,
        BreakerChange::ProbeTaken
    );
}

async fn a_failed_probe_opens_the_breaker_for_longer(store: SharedStore) {
    open(&store).await;
    let half = T0 + 60_000;
    assert_eq!(take(&store, "a", half).await, BreakerChange::ProbeTaken);
    let (row, change) = fail(&store, OPENAI, half + 500).await;
    assert_eq!(
        change,
        BreakerChange::Opened {
            until_ms: half + 500 + 120_000
        }
    );
    assert_eq!(row.probe_owner, None);
    assert_eq!(row.trips, 2);
    assert_eq!(
        state(&store, half + 120_000).await,
        BreakerState::Open {
            until_ms: half + 120_500
        }
    );
    // The next probe succeeds: closed, and the next opening starts from the base cool-down.
    assert_eq!(
        take(&store, "b", half + 120_500).await,
        BreakerChange::ProbeTaken
    );
    assert_eq!(
        succeed(&store, OPENAI, half + 121_000).await,
        BreakerChange::Closed
    );
    let later = half + 200_000;
    fail(&store, OPENAI, later).await;
    fail(&store, OPENAI, later).await;
    assert_eq!(
        fail(&store, OPENAI, later).await.1,
        BreakerChange::Opened {
            until_ms: later + 60_000
        }
    );
}
