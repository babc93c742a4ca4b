//! The rate-limit header parsers: `read_headers` (RateLimit-*, X-RateLimit-*, the structured
//! `RateLimit` field, `RateLimit-Policy`, Retry-After), `retry_after`, `reset_delta` and the
//! configured `Quota`.
//!
//! Input: the first line is a `Quota` text and, read as a number, a reset value; then header
//! lines (`name: value`); the clock is fixed.

#![no_main]

#[path = "../common/mod.rs"]
mod common;

use hookwise::upstream::ratelimit::{Quota, read_headers, reset_delta, retry_after};
use libfuzzer_sys::fuzz_target;
use std::time::{Duration, UNIX_EPOCH};

/// 2026-01-01T00:00:00Z.
const NOW: u64 = 1_767_225_600;
/// Every wait is capped at a day, plus a margin of well under a minute.
const MAX_WAIT: Duration = Duration::from_secs(86_400 + 60);

fuzz_target!(|data: &[u8]| {
    let now = UNIX_EPOCH + Duration::from_secs(NOW);
    let end = data.iter().position(|b| *b == b'\n').unwrap_or(data.len());
    let first = String::from_utf8_lossy(&data[..end]);
    if let Ok(q) = Quota::parse(&first) {
        assert!(q.calls > 0 && !q.window.is_zero());
        let _ = q.interval();
    }
    if let Some(d) = retry_after(first.trim(), now) {
        assert!(d <= MAX_WAIT, "retry_after({first:?}) = {d:?}");
    }
    if let Ok(n) = first.trim().parse::<f64>()
        && n.is_finite()
        && n >= 0.0
    {
        assert!(reset_delta(n, now) <= MAX_WAIT);
    }

    let (headers, _) = common::headers(data.get(end + 1..).unwrap_or_default());
    let hint = read_headers(&headers, now);
    for d in [
        hint.reset,
        hint.retry_after,
        hint.pause(),
        hint.pause_after_429(),
    ]
    .into_iter()
    .flatten()
    {
        assert!(d <= MAX_WAIT, "{hint:?}");
    }
});
