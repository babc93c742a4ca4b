//! A rate-limited fake upstream: an axum server on a loopback port that counts calls in fixed
//! windows like HappyFox and Planhat do, answers 429 past the limit (optionally for a penalty
//! period), advertises the budget in `RateLimit-*` headers with the reset as delta seconds or as
//! a Unix time (whole seconds, rounded up or down), and records every request. Its windows can be
//! set to end mid-second of Unix time, where a floored reset is a second early. Scripted answers and a response delay let tests
//! stage outages and crashes. Used by the governor tests and by `benches/governor.rs`.

#![allow(dead_code)] // the bench uses a part of it

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// How the fake states when its window resets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResetStyle {
    /// `RateLimit-Reset: <seconds left>` (IETF drafts, Zendesk).
    Delta,
    /// `X-RateLimit-Reset: <Unix time>` (GitHub, GitLab, Intercom).
    Unix,
    /// No rate-limit headers at all (HappyFox documents none).
    None,
}

/// How the fake turns a wait or an instant into the whole seconds its headers carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rounding {
    /// Up: the stated time is at or after the true one.
    Up,
    /// Down (truncated, as `as_secs()` does): up to a second before the true one.
    Down,
}

impl Rounding {
    fn apply(self, secs: f64) -> u64 {
        match self {
            Rounding::Up => secs.ceil() as u64,
            Rounding::Down => secs.floor() as u64,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Limits {
    pub calls: u32,
    pub window: Duration,
    pub reset: ResetStyle,
    /// How the reset and `Retry-After` are rounded to whole seconds.
    pub rounding: Rounding,
    /// After a call over the limit, every call gets 429 for this long (HappyFox: 10 minutes).
    pub penalty: Duration,
    /// Send `Retry-After` (seconds) on 429s.
    pub retry_after: bool,
}

/// One request as the fake saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: Method,
    pub uri: String,
    pub authorization: Option<String>,
    pub body: String,
    pub status: u16,
    pub at: Instant,
}

/// A scripted answer, used before the normal ones.
#[derive(Clone, Debug)]
pub struct Scripted {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

#[derive(Default)]
struct Window {
    /// The first request: windows are counted from it, like a per-minute counter.
    origin: Option<Instant>,
    /// Which window `used` counts.
    index: u32,
    used: u32,
    penalty_until: Option<Instant>,
}

struct Inner {
    limits: Limits,
    token: String,
    window: Mutex<Window>,
    seen: Mutex<Vec<Seen>>,
    script: Mutex<VecDeque<Scripted>>,
    /// Holds answers this long after counting the request (a slow upstream, a crash window).
    delay: Mutex<Duration>,
    /// Notified whenever a write (non-GET) arrives.
    write_arrived: Notify,
    started: Instant,
}

#[derive(Clone)]
pub struct FakeUpstream {
    pub url: String,
    inner: Arc<Inner>,
    task: Arc<JoinHandle<()>>,
}

impl FakeUpstream {
    /// Accepts `Authorization: Bearer <token>` or Basic auth whose password is `token`.
    pub async fn spawn(limits: Limits, token: &str) -> Self {
        let inner = Arc::new(Inner {
            limits,
            token: token.to_string(),
            window: Mutex::new(Window::default()),
            seen: Mutex::new(Vec::new()),
            script: Mutex::new(VecDeque::new()),
            delay: Mutex::new(Duration::ZERO),
            write_arrived: Notify::new(),
            started: Instant::now(),
        });
        let app = axum::Router::new()
            .fallback(answer)
            .with_state(inner.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            url,
            inner,
            task: Arc::new(task),
        }
    }

    pub fn script(&self, status: u16, headers: Vec<(&'static str, String)>, body: &str) {
        self.inner.script.lock().unwrap().push_back(Scripted {
            status,
            headers,
            body: body.to_string(),
        });
    }

    pub fn set_delay(&self, delay: Duration) {
        *self.inner.delay.lock().unwrap() = delay;
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.inner.seen.lock().unwrap().clone()
    }

    pub fn count(&self, status: u16) -> usize {
        self.seen().iter().filter(|s| s.status == status).count()
    }

    /// Resolves when the next write arrives (counted, before it is answered).
    pub async fn next_write(&self) {
        self.inner.write_arrived.notified().await
    }

    pub fn started(&self) -> Instant {
        self.inner.started
    }

    /// Places the windows so that each ends `fraction` past a whole second of Unix time (the
    /// window must be whole seconds long), as an upstream counting from a moment of its own
    /// does. Call before the first request.
    pub fn end_windows_at(&self, fraction: Duration) {
        assert!(self.inner.limits.window.subsec_nanos() == 0 && fraction < Duration::from_secs(1));
        let (now, unix) = (
            Instant::now(),
            SystemTime::now().duration_since(UNIX_EPOCH).unwrap(),
        );
        // The last instant before now at `fraction` past a second, less one whole window: a
        // window boundary in the past, so every request falls in a window at or after it.
        let into_second = Duration::from_nanos(u64::from(unix.subsec_nanos()));
        let back = if into_second >= fraction {
            into_second - fraction
        } else {
            into_second + Duration::from_secs(1) - fraction
        };
        let origin = now - back - self.inner.limits.window;
        self.inner.window.lock().unwrap().origin = Some(origin);
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        if Arc::strong_count(&self.task) == 1 {
            self.task.abort();
        }
    }
}

async fn answer(
    State(inner): State<Arc<Inner>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let (status, extra, text) = decide(&inner, authorization.as_deref());
    inner.seen.lock().unwrap().push(Seen {
        method: method.clone(),
        uri: uri.to_string(),
        authorization,
        body: String::from_utf8_lossy(&body).into_owned(),
        status,
        at: Instant::now(),
    });
    if method != Method::GET {
        inner.write_arrived.notify_waiters();
    }
    let delay = *inner.delay.lock().unwrap();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let mut response = (
        StatusCode::from_u16(status).unwrap(),
        [("content-type", "application/json")],
        text,
    )
        .into_response();
    for (k, v) in extra {
        response.headers_mut().insert(k, v.parse().unwrap());
    }
    response
}

fn authorized(inner: &Inner, authorization: Option<&str>) -> bool {
    use base64::Engine;
    let Some(value) = authorization else {
        return false;
    };
    if let Some(token) = value.strip_prefix("Bearer ") {
        return token == inner.token;
    }
    value
        .strip_prefix("Basic ")
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|pair| pair.split_once(':').map(|(_, p)| p == inner.token))
        .unwrap_or(false)
}

/// Status, headers and body for one request, counting it against the window.
fn decide(
    inner: &Inner,
    authorization: Option<&str>,
) -> (u16, Vec<(&'static str, String)>, String) {
    if !authorized(inner, authorization) {
        return (401, Vec::new(), r#"{"error":"invalid credentials"}"#.into());
    }
    let limits = &inner.limits;
    let now = Instant::now();
    let mut w = inner.window.lock().unwrap();
    let origin = *w.origin.get_or_insert(now);
    let index = ((now - origin).as_nanos() / limits.window.as_nanos()) as u32;
    if index != w.index {
        w.index = index;
        w.used = 0;
    }
    let current = origin + limits.window * index;
    let reset_in = (current + limits.window).saturating_duration_since(now);
    let in_penalty = w.penalty_until.is_some_and(|p| now < p);
    let over = !in_penalty && w.used >= limits.calls;
    if !in_penalty && !over {
        w.used += 1;
    }
    let remaining = limits.calls.saturating_sub(w.used);
    let mut headers = Vec::new();
    if limits.reset != ResetStyle::None {
        let wait = if in_penalty {
            w.penalty_until.unwrap().saturating_duration_since(now)
        } else {
            reset_in
        };
        let secs = limits.rounding.apply(wait.as_secs_f64());
        match limits.reset {
            ResetStyle::Delta => {
                headers.push(("ratelimit-limit", limits.calls.to_string()));
                headers.push(("ratelimit-remaining", remaining.to_string()));
                headers.push(("ratelimit-reset", secs.to_string()));
            }
            ResetStyle::Unix => {
                let unix = SystemTime::now().duration_since(UNIX_EPOCH).unwrap() + wait;
                headers.push(("x-ratelimit-limit", limits.calls.to_string()));
                headers.push(("x-ratelimit-remaining", remaining.to_string()));
                let unix = limits.rounding.apply(unix.as_secs_f64());
                headers.push(("x-ratelimit-reset", unix.to_string()));
            }
            ResetStyle::None => {}
        }
    }
    if in_penalty || over {
        if over && !limits.penalty.is_zero() {
            w.penalty_until = Some(now + limits.penalty);
        }
        if limits.retry_after {
            let until = w
                .penalty_until
                .filter(|p| *p > now)
                .map_or(reset_in, |p| p - now);
            headers.push((
                "retry-after",
                limits.rounding.apply(until.as_secs_f64()).to_string(),
            ));
        }
        return (429, headers, r#"{"error":"rate limit exceeded"}"#.into());
    }
    drop(w);
    if let Some(s) = inner.script.lock().unwrap().pop_front() {
        let mut all = headers;
        all.extend(s.headers);
        return (s.status, all, s.body);
    }
    (
        200,
        headers,
        format!(
            r#"{{"ok":true,"call":{}}}"#,
            inner.seen.lock().unwrap().len() + 1
        ),
    )
}
