//! HTTP plumbing both clients share: sending the JSON request, reading the retry hints
//! (`retry-after-ms`, `retry-after` in seconds or as an HTTP date, `x-should-retry`), and turning
//! an error status into an `LlmError` the same way the official SDKs decide what to retry.

use super::LlmError;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use std::time::{Duration, Instant, SystemTime};

/// A client with the service's timeout. Connecting gets at most 10 s of it: a provider that does
/// not accept a connection by then is down, and the retry loop should try again.
pub(crate) fn client(timeout: Duration) -> Result<reqwest::Client, String> {
    crate::kernel::init_tls();
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// What came back, whatever the status.
pub(crate) struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: bytes::Bytes,
    /// The provider's id for the request (`x-request-id`, `request-id`): support asks for it.
    pub request_id: Option<String>,
}

/// Sends the request and reads the whole body; only a failure to get a response is an error here.
pub(crate) async fn send(
    provider: &'static str,
    request: reqwest::RequestBuilder,
) -> Result<Reply, LlmError> {
    let started = Instant::now();
    let response = request.send().await.map_err(|e| transport(provider, e))?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.bytes().await.map_err(|e| transport(provider, e))?;
    let request_id = ["x-request-id", "request-id"]
        .iter()
        .find_map(|h| headers.get(*h)?.to_str().ok())
        .map(str::to_owned);
    tracing::debug!(
        provider,
        status = status.as_u16(),
        request_id = request_id.as_deref().unwrap_or(""),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "LLM response"
    );
    Ok(Reply {
        status,
        headers,
        body,
        request_id,
    })
}

fn transport(provider: &str, e: reqwest::Error) -> LlmError {
    if e.is_builder() {
        // A URL that cannot be requested is configuration, not weather: no retry helps.
        return LlmError::BadRequest(format!("{provider}: cannot build the request: {e}"));
    }
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    LlmError::Transport(format!("{provider}: {what}: {e}"))
}

/// The error a provider reported, in the parts classification needs.
pub(crate) struct ApiError {
    /// OpenAI `error.type` / Anthropic `error.type`, e.g. `rate_limit_error`.
    pub kind: Option<String>,
    /// OpenAI `error.code`, e.g. `rate_limit_exceeded`, `insufficient_quota`.
    pub code: Option<String>,
    pub message: String,
    /// A 4xx that is a spent balance, not a passing limit (decided by the provider's client).
    pub quota: bool,
    /// The request id from the body (Anthropic puts it there too), for when no header had it.
    pub request_id: Option<String>,
}

/// Turns an error reply into an `LlmError`, following the SDKs: 408, 409, 429 and 5xx are
/// retried unless `x-should-retry: false`; others are not unless `x-should-retry: true`. Exhausted
/// quota and refused credentials are never retried, whatever the header says.
pub(crate) fn classify(
    provider: &str,
    reply: &Reply,
    error: ApiError,
    retry_after: Option<Duration>,
) -> LlmError {
    let status = reply.status.as_u16();
    let mut message = format!("{provider} {status}");
    for part in [&error.kind, &error.code].into_iter().flatten() {
        if !message.ends_with(part.as_str()) {
            message.push(' ');
            message.push_str(part);
        }
    }
    message.push_str(": ");
    message.push_str(&error.message);
    if let Some(id) = reply.request_id.as_ref().or(error.request_id.as_ref()) {
        message.push_str(&format!(" (request id {id})"));
    }
    if error.quota {
        return LlmError::QuotaExhausted(message);
    }
    if matches!(status, 401 | 403) {
        return LlmError::Auth(message);
    }
    let usual = matches!(status, 408 | 409 | 429) || status >= 500;
    if let Some(said) = should_retry(&reply.headers)
        && said != usual
    {
        return LlmError::Http {
            status,
            message: format!("{message} (x-should-retry: {said})"),
            retryable: said,
            retry_after,
        };
    }
    match status {
        429 => LlmError::RateLimited {
            retry_after,
            message,
        },
        500.. => LlmError::Overloaded {
            retry_after,
            message,
        },
        400 | 404 | 413 | 422 => LlmError::BadRequest(message),
        _ => LlmError::Http {
            status,
            message,
            retryable: usual,
            retry_after,
        },
    }
}

/// The error text of a body that is not the provider's error JSON (a proxy's HTML page, say),
/// shortened: enough to recognise, not a whole page in the logs.
pub(crate) fn body_excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return "(empty body)".into();
    }
    match text.char_indices().nth(200) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_owned(),
    }
}

/// `x-should-retry: true|false`, the server's explicit say on retrying.
pub(crate) fn should_retry(headers: &HeaderMap) -> Option<bool> {
    match headers.get("x-should-retry")?.to_str().ok()?.trim() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

/// The server's wait hint, in the SDKs' order: `retry-after-ms` (milliseconds), `retry-after` in
/// seconds (fractions allowed), `retry-after` as an HTTP date (relative to `now`). Zero, negative,
/// past and unreadable values are no hint. Not capped: that is the retry policy's call.
pub(crate) fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let header = |name: &str| headers.get(name)?.to_str().ok().map(str::trim);
    if let Some(ms) = header("retry-after-ms").and_then(|v| v.parse::<f64>().ok())
        && let Some(d) = positive_secs(ms / 1000.0)
    {
        return Some(d);
    }
    let value = header("retry-after")?;
    if let Ok(secs) = value.parse::<f64>() {
        return positive_secs(secs);
    }
    let at = httpdate::parse_http_date(value).ok()?;
    at.duration_since(now).ok().filter(|d| !d.is_zero())
}

fn positive_secs(secs: f64) -> Option<Duration> {
    // try_from also refuses NaN, infinities and values too large for a Duration.
    (secs > 0.0)
        .then(|| Duration::try_from_secs_f64(secs).ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderName, HeaderValue};

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    /// 2015-10-21 07:28:00 UTC, the date of RFC 9110's own Retry-After example.
    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480)
    }

    #[test]
    fn retry_after_in_seconds_whole_and_fractional() {
        let h = headers(&[("retry-after", "2")]);
        assert_eq!(retry_after(&h, now()), Some(Duration::from_secs(2)));
        let h = headers(&[("retry-after", " 0.25 ")]);
        assert_eq!(retry_after(&h, now()), Some(Duration::from_millis(250)));
    }

    #[test]
    fn retry_after_as_http_date_is_relative_to_now() {
        let h = headers(&[("retry-after", "Wed, 21 Oct 2015 07:28:30 GMT")]);
        assert_eq!(retry_after(&h, now()), Some(Duration::from_secs(30)));
        // A date already past is no hint (the backoff applies instead).
        let h = headers(&[("retry-after", "Wed, 21 Oct 2015 07:27:00 GMT")]);
        assert_eq!(retry_after(&h, now()), None);
    }

    #[test]
    fn retry_after_ms_wins_over_retry_after() {
        let h = headers(&[("retry-after-ms", "1500"), ("retry-after", "9")]);
        assert_eq!(retry_after(&h, now()), Some(Duration::from_millis(1500)));
        // An unusable ms header falls back to retry-after.
        let h = headers(&[("retry-after-ms", "soon"), ("retry-after", "9")]);
        assert_eq!(retry_after(&h, now()), Some(Duration::from_secs(9)));
        let h = headers(&[("retry-after-ms", "0"), ("retry-after", "3")]);
        assert_eq!(retry_after(&h, now()), Some(Duration::from_secs(3)));
    }

    #[test]
    fn zero_negative_and_garbage_are_no_hint() {
        for bad in [
            "0",
            "-5",
            "-0.5",
            "NaN",
            "inf",
            "1e300",
            "soon",
            "",
            "Wed, 99 Foo",
        ] {
            let h = headers(&[("retry-after", bad)]);
            assert_eq!(retry_after(&h, now()), None, "{bad:?}");
        }
        assert_eq!(retry_after(&HeaderMap::new(), now()), None);
        let h = headers(&[("retry-after-ms", "-100")]);
        assert_eq!(retry_after(&h, now()), None);
    }

    #[test]
    fn long_hints_are_reported_uncapped() {
        // The error carries what the server said; RetryPolicy::delay caps the wait.
        let h = headers(&[("retry-after", "3600")]);
        assert_eq!(retry_after(&h, now()), Some(Duration::from_secs(3600)));
    }

    fn reply(status: u16, pairs: &[(&str, &str)]) -> Reply {
        Reply {
            status: StatusCode::from_u16(status).unwrap(),
            headers: headers(pairs),
            body: bytes::Bytes::new(),
            request_id: Some("req_1".into()),
        }
    }

    fn api(kind: &str, quota: bool) -> ApiError {
        ApiError {
            kind: Some(kind.into()),
            code: None,
            message: "details".into(),
            quota,
            request_id: None,
        }
    }

    #[test]
    fn statuses_map_to_the_sdk_retry_decision() {
        let cases = [
            (429, true, "RateLimited"),
            (500, true, "Overloaded"),
            (529, true, "Overloaded"),
            (408, true, "Http"),
            (409, true, "Http"),
            (400, false, "BadRequest"),
            (404, false, "BadRequest"),
            (422, false, "BadRequest"),
            (401, false, "Auth"),
            (403, false, "Auth"),
            (418, false, "Http"),
        ];
        for (status, retryable, variant) in cases {
            let e = classify("p", &reply(status, &[]), api("t", false), None);
            assert_eq!(e.retryable(), retryable, "{status}: {e:?}");
            assert!(format!("{e:?}").starts_with(variant), "{status}: {e:?}");
        }
    }

    #[test]
    fn only_the_providers_own_failures_count_for_the_breaker() {
        let cases = [
            (500, true),
            (502, true),
            (503, true),
            (529, true),
            (408, true),
            // The provider is up: flow control, or the request's (or the account's) fault.
            (429, false),
            (400, false),
            (401, false),
            (403, false),
            (404, false),
            (409, false),
            (422, false),
        ];
        for (status, counts) in cases {
            let e = classify("p", &reply(status, &[]), api("t", false), None);
            assert_eq!(e.provider_failure(), counts, "{status}: {e:?}");
        }
        // Still the provider's failure when it says not to retry.
        let e = classify(
            "p",
            &reply(503, &[("x-should-retry", "false")]),
            api("t", false),
            None,
        );
        assert!(e.provider_failure(), "{e:?}");
        let quota = classify("p", &reply(429, &[]), api("insufficient_quota", true), None);
        assert!(!quota.provider_failure(), "{quota:?}");
        assert!(LlmError::Transport("timed out".into()).provider_failure());
        assert!(!LlmError::InvalidResponse("no choices".into()).provider_failure());
    }

    #[test]
    fn x_should_retry_overrides_either_way_but_not_quota_or_auth() {
        let e = classify(
            "p",
            &reply(429, &[("x-should-retry", "false")]),
            api("t", false),
            None,
        );
        assert!(!e.retryable(), "{e:?}");
        let e = classify(
            "p",
            &reply(400, &[("x-should-retry", "true")]),
            api("t", false),
            None,
        );
        assert!(e.retryable(), "{e:?}");
        let e = classify(
            "p",
            &reply(429, &[("x-should-retry", "true")]),
            api("insufficient_quota", true),
            None,
        );
        assert!(matches!(e, LlmError::QuotaExhausted(_)), "{e:?}");
        let e = classify(
            "p",
            &reply(401, &[("x-should-retry", "true")]),
            api("t", false),
            None,
        );
        assert!(matches!(e, LlmError::Auth(_)), "{e:?}");
    }

    #[test]
    fn messages_name_provider_status_type_and_request_id() {
        let e = classify("openai", &reply(429, &[]), api("requests", false), None);
        assert_eq!(
            e.to_string(),
            "rate limited: openai 429 requests: details (request id req_1)"
        );
    }

    #[test]
    fn body_excerpt_is_short_and_says_when_empty() {
        assert_eq!(body_excerpt(b"  "), "(empty body)");
        let long = "x".repeat(500);
        assert_eq!(body_excerpt(long.as_bytes()).len(), 203);
    }
}
