//! Rate budgets: configured quotas (`500/1m`) and what a response's headers say about the budget
//! left, in every form upstreams send it.
//!
//! Header forms read: `RateLimit-Limit/-Remaining/-Reset` (also `X-RateLimit-*` and
//! `X-Rate-Limit-*`; reset as delta seconds, or as a Unix time when it is that large), the
//! structured `RateLimit` field (`limit=, remaining=, reset=` and the newer `"name";r=;t=`),
//! `RateLimit-Policy` (`100;w=60` and `"name";q=100;w=60`), and `Retry-After` (seconds or an HTTP
//! date). Malformed values are ignored, never an error: these headers are advice.

use http::HeaderMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A configured budget: `calls` per `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub calls: u32,
    pub window: Duration,
}

impl Quota {
    /// `"500/1m"`, `"200/60s"`, `"5/1s"`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || format!("expected CALLS/WINDOW such as \"500/1m\", found {text:?}");
        let (calls, window) = text.split_once('/').ok_or_else(bad)?;
        let calls: u32 = calls.trim().parse().map_err(|_| bad())?;
        let window = crate::kernel::parse_duration(window.trim()).map_err(|_| bad())?;
        if calls == 0 || window.is_zero() {
            return Err(format!(
                "a budget needs at least one call in a non-empty window, found {text:?}"
            ));
        }
        Ok(Self { calls, window })
    }

    /// The even spacing between calls that spends the budget exactly over its window.
    pub fn interval(&self) -> Duration {
        self.window / self.calls
    }
}

/// What one response said about the budget. Every field is optional: most upstreams send some.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Hint {
    pub limit: Option<u64>,
    pub remaining: Option<u64>,
    /// How long until the budget refills (from a reset header).
    pub reset: Option<Duration>,
    /// The server's explicit wait (Retry-After); it takes precedence over `reset`.
    pub retry_after: Option<Duration>,
    /// The window of the policy, when stated.
    pub window: Option<Duration>,
}

impl Hint {
    /// How long to hold every call of the account: the server's explicit wait, else the reset
    /// when nothing remains. None when the budget is not exhausted.
    pub fn pause(&self) -> Option<Duration> {
        self.retry_after
            .or_else(|| (self.remaining == Some(0)).then_some(self.reset).flatten())
    }
}

/// Reads every rate-limit header form in `headers`, at wall-clock `now` (for Unix-time resets and
/// HTTP dates).
pub fn read_headers(headers: &HeaderMap, now: SystemTime) -> Hint {
    let mut hint = Hint::default();
    let get = |names: &[&str]| {
        names
            .iter()
            .find_map(|n| headers.get(*n).and_then(|v| v.to_str().ok()))
            .map(str::trim)
    };
    hint.limit = get(&["ratelimit-limit", "x-ratelimit-limit", "x-rate-limit-limit"])
        .and_then(first_number)
        .map(|n| n as u64);
    hint.remaining = get(&[
        "ratelimit-remaining",
        "x-ratelimit-remaining",
        "x-rate-limit-remaining",
    ])
    .and_then(first_number)
    .map(|n| n as u64);
    hint.reset = get(&["ratelimit-reset", "x-ratelimit-reset", "x-rate-limit-reset"])
        .and_then(first_number)
        .map(|n| reset_delta(n, now));
    if let Some(field) = get(&["ratelimit"]) {
        structured(field, now, &mut hint);
    }
    if let Some(policy) = get(&["ratelimit-policy"]) {
        policy_fields(policy, &mut hint);
    }
    hint.retry_after = get(&["retry-after"]).and_then(|v| retry_after(v, now));
    hint
}

/// The first number of a value such as `100`, `100, 100;w=60` or `0.5`.
fn first_number(v: &str) -> Option<f64> {
    let head = v.split([',', ';']).next()?.trim();
    head.parse::<f64>()
        .ok()
        .filter(|n| n.is_finite() && *n >= 0.0)
}

/// A reset value as a delay: delta seconds, or a Unix time (seconds above 10^9, milliseconds
/// above 10^12) turned into the time left until it.
pub fn reset_delta(n: f64, now: SystemTime) -> Duration {
    let now_s = now
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    let delta = if n > 1e12 {
        n / 1000.0 - now_s
    } else if n > 1e9 {
        n - now_s
    } else {
        n
    };
    Duration::from_secs_f64(delta.clamp(0.0, 86_400.0))
}

/// `Retry-After`: delay seconds or an HTTP date.
pub fn retry_after(v: &str, now: SystemTime) -> Option<Duration> {
    if let Ok(secs) = v.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0)
            .then(|| Duration::from_secs_f64(secs.min(86_400.0)));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(now).unwrap_or_default())
}

/// The `RateLimit` field: `limit=100, remaining=50, reset=5` (draft 07) or
/// `"default";r=50;t=30` (drafts 08+). With several policies, the most constrained one counts.
fn structured(field: &str, now: SystemTime, hint: &mut Hint) {
    for item in field.split(',') {
        let mut remaining = None;
        let mut reset = None;
        for part in item.split(';') {
            let Some((k, v)) = part.trim().split_once('=') else {
                continue;
            };
            let n = v.trim().trim_matches('"').parse::<f64>().ok();
            match k.trim() {
                "limit" => hint.limit = n.map(|n| n as u64).or(hint.limit),
                "remaining" | "r" => remaining = n,
                "reset" | "t" => reset = n.map(|n| reset_delta(n, now)),
                _ => {}
            }
        }
        if let Some(r) = remaining {
            let r = r as u64;
            if hint.remaining.is_none_or(|cur| r <= cur) {
                hint.remaining = Some(r);
                hint.reset = reset.or(hint.reset);
            }
        } else if reset.is_some() && hint.reset.is_none() {
            hint.reset = reset;
        }
    }
}

/// `RateLimit-Policy`: `100;w=60` or `"burst";q=100;w=60`; the first policy's quota and window.
fn policy_fields(policy: &str, hint: &mut Hint) {
    let Some(first) = policy.split(',').next() else {
        return;
    };
    for (i, part) in first.split(';').enumerate() {
        let part = part.trim();
        match part.split_once('=') {
            Some(("q", v)) => hint.limit = hint.limit.or(v.parse().ok()),
            Some(("w", v)) => hint.window = v.parse().ok().map(Duration::from_secs),
            None if i == 0 => hint.limit = hint.limit.or(part.parse().ok()),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    const NOW: u64 = 1_767_225_600; // 2026-01-01T00:00:00Z

    #[test]
    fn quotas_parse_and_space_calls_evenly() {
        let q = Quota::parse("500/1m").unwrap();
        assert_eq!(q.calls, 500);
        assert_eq!(q.interval(), Duration::from_millis(120));
        assert_eq!(
            Quota::parse("5/1s").unwrap().interval(),
            Duration::from_millis(200)
        );
        for bad in ["500", "0/1m", "5/0s", "x/1m", "5/minute"] {
            assert!(Quota::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn reset_is_delta_seconds_or_a_unix_time_when_that_large() {
        let h = headers(&[
            ("RateLimit-Limit", "200"),
            ("RateLimit-Remaining", "0"),
            ("RateLimit-Reset", "42"),
        ]);
        let hint = read_headers(&h, at(NOW));
        assert_eq!(hint.limit, Some(200));
        assert_eq!(hint.remaining, Some(0));
        assert_eq!(hint.reset, Some(Duration::from_secs(42)));
        assert_eq!(hint.pause(), Some(Duration::from_secs(42)));

        let unix = (NOW + 17).to_string();
        let h = headers(&[("X-RateLimit-Remaining", "0"), ("X-RateLimit-Reset", &unix)]);
        assert_eq!(
            read_headers(&h, at(NOW)).reset,
            Some(Duration::from_secs(17))
        );

        let millis = ((NOW + 3) * 1000).to_string();
        let h = headers(&[("x-rate-limit-reset", &millis)]);
        assert_eq!(
            read_headers(&h, at(NOW)).reset,
            Some(Duration::from_secs(3))
        );

        // A Unix time in the past means "now", never a huge or negative wait.
        let h = headers(&[("ratelimit-reset", "1700000000")]);
        assert_eq!(read_headers(&h, at(NOW)).reset, Some(Duration::ZERO));
    }

    #[test]
    fn structured_fields_of_both_draft_generations() {
        let h = headers(&[("RateLimit", "limit=100, remaining=0, reset=5")]);
        let hint = read_headers(&h, at(NOW));
        assert_eq!((hint.limit, hint.remaining), (Some(100), Some(0)));
        assert_eq!(hint.reset, Some(Duration::from_secs(5)));

        let h = headers(&[
            ("RateLimit", "\"burst\";r=40;t=2, \"daily\";r=3;t=3600"),
            (
                "RateLimit-Policy",
                "\"burst\";q=100;w=60, \"daily\";q=1000;w=86400",
            ),
        ]);
        let hint = read_headers(&h, at(NOW));
        assert_eq!(
            hint.remaining,
            Some(3),
            "the most constrained policy counts"
        );
        assert_eq!(hint.reset, Some(Duration::from_secs(3600)));
        assert_eq!(hint.limit, Some(100));
        assert_eq!(hint.window, Some(Duration::from_secs(60)));

        let h = headers(&[("RateLimit-Policy", "100;w=10")]);
        let hint = read_headers(&h, at(NOW));
        assert_eq!(
            (hint.limit, hint.window),
            (Some(100), Some(Duration::from_secs(10)))
        );
    }

    #[test]
    fn retry_after_takes_precedence_in_both_forms() {
        let h = headers(&[
            ("Retry-After", "120"),
            ("RateLimit-Remaining", "0"),
            ("RateLimit-Reset", "5"),
        ]);
        assert_eq!(
            read_headers(&h, at(NOW)).pause(),
            Some(Duration::from_secs(120))
        );

        let date = httpdate::fmt_http_date(at(NOW + 30));
        let h = headers(&[("Retry-After", &date)]);
        assert_eq!(
            read_headers(&h, at(NOW)).pause(),
            Some(Duration::from_secs(30))
        );
    }

    #[test]
    fn malformed_or_absent_headers_say_nothing() {
        let h = headers(&[
            ("RateLimit-Remaining", "lots"),
            ("RateLimit-Reset", "-5"),
            ("Retry-After", "soon"),
            ("RateLimit", "garbage"),
        ]);
        let hint = read_headers(&h, at(NOW));
        assert_eq!(hint, Hint::default());
        assert_eq!(hint.pause(), None);
        let h = headers(&[("RateLimit-Remaining", "3"), ("RateLimit-Reset", "5")]);
        assert_eq!(
            read_headers(&h, at(NOW)).pause(),
            None,
            "budget left: no pause"
        );
    }
}
