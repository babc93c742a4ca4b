//! The rate governor: paces every call of an account from its configured budgets and from what
//! the upstream's answers say, shared by every replica through the store.
//!
//! - Pacing: each budget (`get`, `post`, `api`) is a schedule of call slots in the store, spaced
//!   a little wider than `window / calls`; every call reserves the next free slot, so replicas
//!   together stay under the quota without a burst at a window's edge.
//! - Learning: a response saying the budget is exhausted (`remaining = 0` with a reset, or a
//!   `Retry-After`) pauses the account for everyone until then (past the end of a whole second
//!   and a margin: see `ratelimit`).
//! - 429: pauses the account (the server's wait, else its reset whatever `remaining` says, else
//!   the vendor's documented penalty) with a little jitter, then sends the same call again; the
//!   run is not restarted.
//! - 5xx, 408 and dropped connections: reads back off exponentially; a write is only retried
//!   when it certainly never reached the server, since none of these upstreams take an
//!   idempotency key.

use super::CallError;
use super::{Account, Answer, Broken, Call, Upstream, ratelimit};
use std::time::{Duration, SystemTime};

/// A call that did not get an answer worth returning.
pub(super) struct Failure {
    pub error: CallError,
    /// The request may have reached the upstream and taken effect (a write stays in doubt).
    pub maybe_applied: bool,
}

impl Failure {
    fn unsent(error: CallError) -> Self {
        Self {
            error,
            maybe_applied: false,
        }
    }
}

/// Makes one call (`attempt`, run again for each retry) within the account's budget and returns
/// the final status and body: 2xx, or a 4xx other than 429 and 408. Everything else is retried
/// or becomes a `Failure`. The transport is the caller's: an HTTP request, or a tool call over an
/// MCP session.
pub(super) async fn exchange<F, Fut>(
    up: &Upstream,
    account: &Account,
    call: &Call,
    mut attempt: F,
) -> Result<(u16, String), Failure>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Answer, Broken>>,
{
    let Some(quota) = account.limits.get(call.bucket) else {
        return Err(Failure::unsent(CallError::Permanent(format!(
            "no budget named {:?} for account {}",
            call.bucket, account.name
        ))));
    };
    let what = &call.what;
    let mut waited = Duration::ZERO;
    let mut failures = 0u32;
    loop {
        acquire(up, account, call.bucket, quota, &mut waited).await?;
        match attempt().await {
            Ok(Answer {
                status,
                headers,
                text,
            }) => {
                let hint =
                    ratelimit::read_headers(&headers, SystemTime::from(up.inner.clock.now()));
                if let Some(pause) = pause_for(status, &hint, account.penalty) {
                    let reason = if status == 429 {
                        format!("429 on {what}")
                    } else {
                        "the upstream's budget is used up".to_string()
                    };
                    pause_account(up, account, pause, &reason).await;
                }
                if status == 429 {
                    continue;
                }
                if status == 408 || status >= 500 {
                    let error = format!(
                        "{} answered {status} to {what}: {}",
                        account.connector.as_str(),
                        super::excerpt(&text)
                    );
                    if call.write {
                        return Err(Failure {
                            error: CallError::Unavailable(format!(
                                "{error}; a write is not sent again, since it may have been applied"
                            )),
                            maybe_applied: true,
                        });
                    }
                    failures += 1;
                    if failures > up.inner.max_retries {
                        return Err(Failure::unsent(CallError::Unavailable(error)));
                    }
                    tokio::time::sleep(backoff(failures)).await;
                    continue;
                }
                return Ok((status, text));
            }
            Err(Broken { message, unsent }) => {
                let error = format!("{what}: {message}");
                if call.write && !unsent {
                    return Err(Failure {
                        error: CallError::Unavailable(format!(
                            "{error}; a write is not sent again, since it may have been applied"
                        )),
                        maybe_applied: true,
                    });
                }
                failures += 1;
                if failures > up.inner.max_retries {
                    return Err(Failure::unsent(CallError::Unavailable(error)));
                }
                tokio::time::sleep(backoff(failures)).await;
            }
        }
    }
}

/// A transport failure in words an operator can act on. reqwest's own text ("error sending
/// request for url (...)") is the same for a timeout, a refused connection and an answer cut off
/// halfway, so the causes it wraps are added, and a timeout says which limit it met.
pub(super) fn transport_error(e: &reqwest::Error, timeout: Duration) -> String {
    let mut text = with_causes(e);
    if e.is_timeout() {
        text.push_str(&format!(
            " (no answer within the account's timeout of {timeout:?})"
        ));
    }
    text
}

/// An error's text followed by each cause it wraps that adds something.
pub fn with_causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let shown = c.to_string();
        if !text.contains(&shown) {
            text.push_str(": ");
            text.push_str(&shown);
        }
        cause = c.source();
    }
    text
}

/// How long an answer holds every call of the account. A 429 always pauses: for the server's
/// wait, else until its reset (a `remaining` beside a 429 may count another window; the reset is
/// still the server's word on when calls are welcome), else for the vendor's penalty. Any other
/// answer pauses only when it says the budget is used up.
fn pause_for(status: u16, hint: &ratelimit::Hint, penalty: Duration) -> Option<Duration> {
    if status == 429 {
        Some(hint.pause_after_429().unwrap_or(penalty))
    } else {
        hint.pause()
    }
}

/// Reserves the call's slot in the budget and sleeps until it. Gives up once waiting would
/// exceed `max_wait` (the job is then deferred until the budget frees up, no attempt spent).
async fn acquire(
    up: &Upstream,
    account: &Account,
    bucket: &str,
    quota: &ratelimit::Quota,
    waited: &mut Duration,
) -> Result<(), Failure> {
    let interval = pacing_interval(quota).as_millis().max(1) as i64;
    let mut slept = Duration::ZERO;
    loop {
        let now = up.now_ms();
        let horizon = account.max_wait.saturating_sub(*waited).as_millis() as i64;
        let (wait, reserved) = up
            .inner
            .store
            .reserve_call(&account.name, bucket, now, interval, horizon)
            .await
            .map_err(|e| {
                Failure::unsent(CallError::Unavailable(format!("the rate governor: {e}")))
            })?;
        if wait > horizon {
            let until_ms = now + wait;
            let why = match up.inner.store.account_pause(&account.name).await {
                Ok(Some((until, reason))) if until > now => reason,
                _ => format!(
                    "the {bucket} budget, {} calls per {:?}",
                    quota.calls, quota.window
                ),
            };
            return Err(Failure::unsent(CallError::RateLimited {
                until_ms,
                reason: format!(
                    "account {} must wait {:.1}s for its upstream budget ({why}); the job runs again then",
                    account.name,
                    wait as f64 / 1000.0
                ),
            }));
        }
        if wait > 0 {
            tokio::time::sleep(Duration::from_millis(wait as u64)).await;
            *waited += Duration::from_millis(wait as u64);
            slept += Duration::from_millis(wait as u64);
        }
        if reserved {
            up.inner.metrics.slot_waited(&account.name, slept);
            return Ok(());
        }
        // It was a pause: now over, reserve a slot.
    }
}

/// The spacing between calls: the quota's window over slightly fewer calls than it allows (2%,
/// and at least one), so calls that leave a little late or early still land under the limit in
/// the upstream's own windows.
fn pacing_interval(quota: &ratelimit::Quota) -> Duration {
    let calls = f64::from(quota.calls);
    let effective = (calls * 0.98).min(calls - 1.0).max(1.0);
    quota.window.div_f64(effective)
}

/// Holds every call and claim of the account, across replicas, with a little jitter so waiting
/// replicas do not all come back at the same millisecond.
async fn pause_account(up: &Upstream, account: &Account, pause: Duration, reason: &str) {
    let jitter_cap = (pause.as_millis() as u64 / 10).min(1000);
    let jitter = Duration::from_millis(fastrand::u64(0..=jitter_cap));
    let until = up.now_ms() + (pause + jitter).as_millis() as i64;
    tracing::warn!(account = %account.name, pause_ms = (pause + jitter).as_millis() as u64, reason, "pausing the account's upstream calls");
    up.inner
        .metrics
        .upstream_paused(&account.name, pause + jitter);
    if let Err(e) = up
        .inner
        .store
        .pause_account(&account.name, until, reason)
        .await
    {
        tracing::error!(account = %account.name, error = %e, "recording the pause failed");
    }
}

/// 0.5 s doubling per failure, at most 8 s, with ±20% jitter.
fn backoff(failures: u32) -> Duration {
    let base = Duration::from_millis(500)
        .saturating_mul(1 << failures.saturating_sub(1).min(4))
        .min(Duration::from_secs(8));
    base.mul_f64(0.8 + fastrand::f64() * 0.4)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;
    use std::time::UNIX_EPOCH;

    const PENALTY: Duration = Duration::from_secs(600);

    fn answer(pairs: &[(&str, String)], now: SystemTime) -> ratelimit::Hint {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        ratelimit::read_headers(&h, now)
    }

    /// The upstream's window ends at `end` (mid-second); its answer, read at `now`, states the
    /// end as a Unix time rounded each way. Calls must not resume before `end`.
    #[test]
    fn a_floored_or_rounded_up_unix_reset_never_resumes_before_the_window_ends() {
        let end = UNIX_EPOCH + Duration::from_millis(1_767_225_605_600);
        let now = end - Duration::from_millis(4_300);
        let secs = end.duration_since(UNIX_EPOCH).unwrap().as_secs();
        for (rounding, stated) in [("floored", secs), ("rounded up", secs + 1)] {
            for (status, remaining) in [(200, "0"), (429, "0"), (429, "10")] {
                let hint = answer(
                    &[
                        ("x-ratelimit-remaining", remaining.into()),
                        ("x-ratelimit-reset", stated.to_string()),
                    ],
                    now,
                );
                let pause = pause_for(status, &hint, PENALTY)
                    .unwrap_or_else(|| panic!("{rounding}, {status}: no pause"));
                assert!(
                    now + pause > end,
                    "{rounding} reset, {status} with remaining {remaining}: resumes {:?} early",
                    end.duration_since(now + pause).unwrap_or_default()
                );
                assert!(
                    pause < PENALTY,
                    "{rounding}, {status} with remaining {remaining}: the reset, not the penalty"
                );
            }
        }
    }

    #[test]
    fn a_429_without_a_usable_hint_pauses_for_the_penalty_and_a_2xx_with_budget_left_not_at_all() {
        let now = SystemTime::now();
        assert_eq!(pause_for(429, &answer(&[], now), PENALTY), Some(PENALTY));
        let junk = answer(&[("retry-after", "soon".into())], now);
        assert_eq!(pause_for(429, &junk, PENALTY), Some(PENALTY));
        let left = answer(
            &[
                ("ratelimit-remaining", "10".into()),
                ("ratelimit-reset", "30".into()),
            ],
            now,
        );
        assert_eq!(pause_for(200, &left, PENALTY), None);
        assert_eq!(pause_for(503, &answer(&[], now), PENALTY), None);
    }
}
