//! Rate budgets: configured quotas (`500/1m`) and what a response's headers say about the budget
//! left, in every form upstreams send it.
//!
//! Header forms read: `RateLimit-Limit/-Remaining/-Reset` (also `X-RateLimit-*` and
//! `X-Rate-Limit-*`; reset as delta seconds, or as a Unix time when it is that large), the
//! structured `RateLimit` field (`limit=, remaining=, reset=` and the newer `"name";r=;t=`),
//! `RateLimit-Policy` (`100;w=60` and `"name";q=100;w=60`), and `Retry-After` (seconds or an HTTP
//! date). Malformed values are ignored, never an error: these headers are advice.
//!
//! Every wait read here is when calls may *safely* resume, not the instant the header names: a
//! value in whole seconds (delta seconds, a Unix time in seconds, an HTTP date) names a second,
//! and a sender may have floored the true end into it (the window then ends up to a second
//! after the value) or rounded it up. Resuming at the end of that second plus `RESUME_MARGIN`
//! is safe in both directions; it costs at most about two seconds when the sender rounded up,
//! against a 429 and a penalty window (HappyFox: 10 minutes) when it rounded down.

use http::HeaderMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Added to every reset and `Retry-After`: the upstream's clock may be a little ahead of ours
/// (Unix times, HTTP dates), and its window may be counted from when it received the response's
/// request rather than when it answered (delta seconds).
pub const RESUME_MARGIN: Duration = Duration::from_millis(250);

/// The longest wait a header is believed for.
const MAX_WAIT_SECS: f64 = 86_400.0;

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
    /// How long until the budget has certainly refilled (from a reset header, taken to the end
    /// of a whole second and past `RESUME_MARGIN`).
    pub reset: Option<Duration>,
    /// The server's explicit wait (Retry-After, read like `reset`); it takes precedence over
    /// `reset`.
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

    /// How long to hold the account after a 429: the server's explicit wait, else the reset,
    /// whatever `remaining` says (a 429 is the budget's answer, and a `remaining` beside it may
    /// count another window or another budget). None when the answer states no wait at all.
    pub fn pause_after_429(&self) -> Option<Duration> {
        self.retry_after.or(self.reset)
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

/// A reset value as the wait before calls may resume: delta seconds, or a Unix time (seconds
/// above 10^9, milliseconds above 10^12) turned into the time left until it. A value in whole
/// seconds counts to the end of its second; every value gets `RESUME_MARGIN`.
pub fn reset_delta(n: f64, now: SystemTime) -> Duration {
    if n > 1e12 {
        // Milliseconds: already finer than any margin needs.
        resume_after(n / 1000.0 - unix_secs(now))
    } else if n > 1e9 {
        resume_after(end_of_second(n) - unix_secs(now))
    } else {
        resume_after(end_of_second(n))
    }
}

/// `Retry-After`: delay seconds or an HTTP date, read like a reset (an HTTP date is always a
/// whole second).
pub fn retry_after(v: &str, now: SystemTime) -> Option<Duration> {
    if let Ok(secs) = v.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| resume_after(end_of_second(secs)));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    let at = at.duration_since(UNIX_EPOCH).ok()?.as_secs_f64();
    Some(resume_after(end_of_second(at) - unix_secs(now)))
}

fn unix_secs(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

/// A value with one-second resolution stands for the whole second it names; the end of that
/// second is the latest instant the sender can have meant, whether it floored, rounded or
/// rounded up the true one. A value with a fraction is taken as stated.
fn end_of_second(secs: f64) -> f64 {
    if secs.fract() == 0.0 {
        secs + 1.0
    } else {
        secs
    }
}

/// `secs` from now (none if already past), plus the margin, within a day.
fn resume_after(secs: f64) -> Duration {
    Duration::from_secs_f64(secs.clamp(0.0, MAX_WAIT_SECS)) + RESUME_MARGIN
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
            // As `first_number`: "nan", "inf" and negatives parse as f64 but are no count or
            // wait (NaN reached `Duration::from_secs_f64` and panicked).
            let n = v
                .trim()
                .trim_matches('"')
                .parse::<f64>()
                .ok()
                .filter(|n| n.is_finite() && *n >= 0.0);
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

    /// Found by the `ratelimit` fuzz target: `reset=nan` in the structured field panicked in
    /// `Duration::from_secs_f64`; non-finite and negative values are now no value, as in the
    /// other header forms.
    #[test]
    fn structured_field_ignores_nan_infinite_and_negative_values() {
        let now = at(NOW);
        for field in [
            "reset=NaN",
            "limit=100, remaining=0, reset=nan",
            "\"default\";r=0;t=inf",
            "\"default\";r=-1;t=-5",
        ] {
            let hint = read_headers(&headers(&[("ratelimit", field)]), now);
            assert_eq!(hint.reset, None, "{field}");
            assert_eq!(hint.pause(), None, "{field}");
        }
        let hint = read_headers(&headers(&[("ratelimit", "limit=nan, remaining=nan")]), now);
        assert_eq!((hint.limit, hint.remaining), (None, None));
    }

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

    /// The wait `read_headers` should return: `secs` plus the margin.
    fn resume(secs: f64) -> Option<Duration> {
        Some(Duration::from_secs_f64(secs) + RESUME_MARGIN)
    }

    /// `wait` is `resume(secs)` to the millisecond (Unix times lose nanoseconds in an f64).
    fn assert_resumes(wait: Option<Duration>, secs: f64) {
        let (wait, want) = (wait.unwrap(), resume(secs).unwrap());
        assert!(
            wait.abs_diff(want) < Duration::from_millis(1),
            "{wait:?} vs {want:?}"
        );
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
        // 42 whole seconds: until the end of the 42nd.
        assert_eq!(hint.reset, resume(43.0));
        assert_eq!(hint.pause(), resume(43.0));

        let unix = (NOW + 17).to_string();
        let h = headers(&[("X-RateLimit-Remaining", "0"), ("X-RateLimit-Reset", &unix)]);
        assert_eq!(read_headers(&h, at(NOW)).reset, resume(18.0));

        // Milliseconds are taken as stated.
        let millis = ((NOW + 3) * 1000 + 400).to_string();
        let h = headers(&[("x-rate-limit-reset", &millis)]);
        assert_resumes(read_headers(&h, at(NOW)).reset, 3.4);

        // A Unix time in the past means "now" (after the margin), never a huge or negative wait.
        let h = headers(&[("ratelimit-reset", "1700000000")]);
        assert_eq!(read_headers(&h, at(NOW)).reset, resume(0.0));
    }

    /// The bug this guards: a window ending at 5.6 s announced as a floored Unix second (5 s)
    /// resumed calls 0.6 s early, into a 429 and the upstream's penalty.
    #[test]
    fn whole_second_resets_resume_after_the_window_whichever_way_the_sender_rounded() {
        // Read at NOW + 0.3 s; the window truly ends at NOW + 5.6 s, 5.3 s later.
        let now = at(NOW) + Duration::from_millis(300);
        let true_end = Duration::from_millis(5300);
        let unix = |secs: u64| (NOW + secs).to_string();
        let senders = [
            ("Unix time, floored", "x-ratelimit-reset", unix(5)),
            ("Unix time, rounded up", "x-ratelimit-reset", unix(6)),
            ("delta, floored", "ratelimit-reset", "5".to_string()),
            ("delta, rounded up", "ratelimit-reset", "6".to_string()),
            ("Retry-After, floored", "retry-after", "5".to_string()),
            ("Retry-After, rounded up", "retry-after", "6".to_string()),
        ];
        for (sender, header, value) in senders {
            let h = headers(&[("x-ratelimit-remaining", "0"), (header, &value)]);
            let pause = read_headers(&h, now).pause().expect(sender);
            assert!(
                pause >= true_end + RESUME_MARGIN,
                "{sender}: resumes {pause:?} from now, the window ends in {true_end:?}"
            );
            // Rounding up costs at most a second and the margin more than it needs.
            assert!(
                pause <= true_end + Duration::from_secs(2) + RESUME_MARGIN,
                "{sender}: {pause:?}"
            );
        }

        // A value with a fraction already says which instant it means.
        let h = headers(&[("ratelimit-remaining", "0"), ("ratelimit-reset", "5.3")]);
        assert_eq!(read_headers(&h, now).pause(), resume(5.3));
    }

    #[test]
    fn structured_fields_of_both_draft_generations() {
        let h = headers(&[("RateLimit", "limit=100, remaining=0, reset=5")]);
        let hint = read_headers(&h, at(NOW));
        assert_eq!((hint.limit, hint.remaining), (Some(100), Some(0)));
        assert_eq!(hint.reset, resume(6.0));

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
        assert_eq!(hint.reset, resume(3601.0));
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
        assert_eq!(read_headers(&h, at(NOW)).pause(), resume(121.0));

        let date = httpdate::fmt_http_date(at(NOW + 30));
        let h = headers(&[("Retry-After", &date)]);
        assert_eq!(read_headers(&h, at(NOW)).pause(), resume(31.0));
        // Read mid-second, the date still counts to the end of its second.
        let h = headers(&[("Retry-After", &date)]);
        assert_resumes(
            read_headers(&h, at(NOW) + Duration::from_millis(600)).pause(),
            30.4,
        );
    }

    #[test]
    fn a_429_pauses_until_its_reset_whatever_remaining_says() {
        // The second 429 of the bug: a reset, beside a `Remaining` that counts another window.
        let h = headers(&[
            ("X-RateLimit-Remaining", "10"),
            ("X-RateLimit-Reset", &(NOW + 2).to_string()),
        ]);
        let hint = read_headers(&h, at(NOW));
        assert_eq!(hint.pause(), None, "a 2xx with budget left pauses nothing");
        assert_eq!(hint.pause_after_429(), resume(3.0));

        let h = headers(&[("Retry-After", "7"), ("RateLimit-Reset", "2")]);
        assert_eq!(
            read_headers(&h, at(NOW)).pause_after_429(),
            resume(8.0),
            "the explicit wait first"
        );
        assert_eq!(Hint::default().pause_after_429(), None);
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
