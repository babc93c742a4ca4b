//! A fake HappyFox Help Desk (API v1.1) on a loopback port, for connector and end-to-end tests.
//!
//! It serves the documented paths under `/api/1.1/json/` (trailing slash required, as documented)
//! from the response fixtures in `testdata/happyfox/`, keeps tickets as state that writes change,
//! checks Basic auth (401 otherwise), answers validation errors in both documented shapes
//! (including the keyed one inside a 200), and enforces HappyFox's rate limit: GET and POST
//! budgets per window, and past either, 429 for every request during the penalty window
//! (500 GET + 300 POST per minute and 10 minutes by default; `Limits` makes them small for
//! tests). Every request is recorded, refused ones included, so tests assert exact paths and
//! bodies. Its clock only matters for the rate limit and can be moved with `advance`.
//! `inject` makes the next writes fail the way a network or an overloaded server does: a 429
//! storm (with `Retry-After` or without), an answer slower than the client waits, a connection
//! dropped halfway through the answer, a 5xx after the write was applied.

mod api;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub const API_KEY: &str = "hf-test-api-key";
pub const AUTH_CODE: &str = "hf-test-auth-code";
/// The staff member the test accounts write as (`staff_response.json`).
pub const BOT_STAFF_ID: u64 = 7;
const PREFIX: &str = "/api/1.1/json";

/// HappyFox's rate limit (KB 1148), configurable so tests can reach it.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub get: u32,
    pub post: u32,
    pub window: Duration,
    /// How long every request gets 429 after a budget was exceeded.
    pub penalty: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            get: 500,
            post: 300,
            window: Duration::from_secs(60),
            penalty: Duration::from_secs(600),
        }
    }
}

/// One request as the fake saw it, with what it answered.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: Method,
    /// Below `/api/1.1/json`, e.g. `/ticket/142/`.
    pub path: String,
    /// Query pairs in order, decoded.
    pub query: Vec<(String, String)>,
    pub authorization: Option<String>,
    pub body: Value,
    pub status: u16,
    /// The request changed the fake's state (a write answered 2xx, or applied before a fault).
    pub applied: bool,
    /// The fault injected into this request's answer.
    pub fault: Option<WriteFault>,
}

/// How the fake mistreats a write (a POST) that `FakeHappyfox::inject` armed it for.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteFault {
    /// 429, nothing applied; `retry_after` (seconds) adds that header.
    TooMany { retry_after: Option<u64> },
    /// Applied, then answered only after this long (past the client's timeout).
    Slow(Duration),
    /// Applied, then the status line, the headers (the full `Content-Length`) and half the body,
    /// then the connection is dropped.
    ResetMidBody,
    /// Applied, then answered with this status (500, 502, 503) instead of its real answer.
    ErrorAfterApply(u16),
}

impl WriteFault {
    fn applies(&self) -> bool {
        !matches!(self, WriteFault::TooMany { .. })
    }
}

impl Received {
    pub fn param(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

struct Budget {
    window_start: Option<Instant>,
    gets: u32,
    posts: u32,
    penalty_until: Option<Instant>,
}

struct Fake {
    limits: Limits,
    /// Added to the real clock: `advance` moves time for the rate limit only.
    offset: Duration,
    budget: Budget,
    received: Vec<Received>,
    data: api::Data,
    /// Writes are applied and recorded at once but answered only after this long: the window
    /// in which a crash leaves a write sent and its answer unknown.
    hold_writes: Duration,
    /// Faults for the next writes, in order.
    faults: std::collections::VecDeque<WriteFault>,
}

type Shared = Arc<Mutex<Fake>>;

pub struct FakeHappyfox {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    state: Shared,
    server: JoinHandle<()>,
}

impl FakeHappyfox {
    pub async fn start() -> FakeHappyfox {
        Self::start_with(Limits::default()).await
    }

    pub async fn start_with(limits: Limits) -> FakeHappyfox {
        hookwise::init_tls();
        let state = Arc::new(Mutex::new(Fake {
            limits,
            offset: Duration::ZERO,
            budget: Budget {
                window_start: None,
                gets: 0,
                posts: 0,
                penalty_until: None,
            },
            received: Vec::new(),
            data: api::Data::load(),
            hold_writes: Duration::ZERO,
            faults: Default::default(),
        }));
        let app = axum::Router::new()
            .fallback(answer)
            .with_state(state.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FakeHappyfox { url, state, server }
    }

    /// The API root an account's `base_url` names.
    pub fn base_url(&self) -> String {
        format!("{}{PREFIX}", self.url)
    }

    /// An `[accounts.NAME]` table for this fake, writing as `bot` (None: no `bot_staff_id`);
    /// `extra` adds keys, or replaces `api_key` / `auth_code` when it sets them.
    pub fn account_toml(&self, name: &str, bot: Option<u64>, extra: &str) -> String {
        let sets = |key: &str| extra.lines().any(|l| l.trim_start().starts_with(key));
        let mut table = format!(
            "[accounts.{name}]\nconnector = \"happyfox\"\nbase_url = \"{}\"\n",
            self.base_url()
        );
        if let Some(bot) = bot {
            table.push_str(&format!("bot_staff_id = {bot}\n"));
        }
        if !sets("api_key") {
            table.push_str(&format!("api_key = \"{API_KEY}\"\n"));
        }
        if !sets("auth_code") {
            table.push_str(&format!("auth_code = \"{AUTH_CODE}\"\n"));
        }
        format!("{table}{extra}\n")
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }

    /// The POSTs received (what would change HappyFox).
    pub fn writes(&self) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.method == Method::POST)
            .collect()
    }

    /// `METHOD path` of every request, for asserting the exact sequence.
    pub fn calls(&self) -> Vec<String> {
        self.received()
            .iter()
            .map(|r| format!("{} {}", r.method, r.path))
            .collect()
    }

    pub fn ticket(&self, id: u64) -> Value {
        self.state.lock().unwrap().data.tickets[&id].clone()
    }

    /// Adds or replaces a ticket (by its `id`, a number or a numeric string).
    pub fn put_ticket(&self, ticket: Value) {
        let id = (ticket["id"].as_u64())
            .or_else(|| ticket["id"].as_str()?.parse().ok())
            .expect("a ticket with a numeric id");
        self.state.lock().unwrap().data.tickets.insert(id, ticket);
    }

    /// From now on a GET of a ticket the fake does not hold answers a copy of ticket `like` under
    /// the asked id instead of 404. Writes to unknown tickets are still refused.
    pub fn answer_unknown_tickets_like(&self, like: u64) {
        let mut state = self.state.lock().unwrap();
        assert!(state.data.tickets.contains_key(&like), "no ticket {like}");
        state.data.stand_in = Some(like);
    }

    /// Replaces a reference list (`categories`, `ticket_custom_fields`, `statuses`, ...).
    pub fn put_list(&self, name: &str, list: Value) {
        self.state
            .lock()
            .unwrap()
            .data
            .lists
            .insert(name.into(), list);
    }

    /// Answers every later write only after `hold` (it is applied and recorded at once).
    pub fn hold_writes(&self, hold: Duration) {
        self.state.lock().unwrap().hold_writes = hold;
    }

    /// The next `times` writes (POSTs, whatever they change) each get `fault`, after any faults
    /// armed before.
    pub fn inject(&self, fault: WriteFault, times: usize) {
        let mut state = self.state.lock().unwrap();
        state.faults.extend(std::iter::repeat_n(fault, times));
    }

    /// Faults armed and not yet spent.
    pub fn faults_left(&self) -> usize {
        self.state.lock().unwrap().faults.len()
    }

    /// The writes that changed the fake's state, as the invariants compare them with the journal.
    pub fn applied_writes(&self) -> Vec<super::invariants::Write> {
        self.received()
            .into_iter()
            .filter(|r| r.applied)
            .map(|r| super::invariants::Write {
                method: r.method.to_string(),
                path: r.path,
                body: r.body,
            })
            .collect()
    }

    /// Moves the fake's clock forward (rate-limit windows and penalty).
    pub fn advance(&self, by: Duration) {
        self.state.lock().unwrap().offset += by;
    }
}

impl Drop for FakeHappyfox {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn expected_authorization() -> String {
    use base64::Engine;
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{API_KEY}:{AUTH_CODE}"));
    format!("Basic {token}")
}

async fn answer(
    State(state): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (response, hold, fault) = record(&state, method, uri, headers, body);
    if !hold.is_zero() {
        tokio::time::sleep(hold).await;
    }
    match fault {
        Some(WriteFault::ResetMidBody) => reset_mid_body(response).await,
        _ => response,
    }
}

/// `response` with its full `Content-Length` but only half its body: the stream then fails, and
/// hyper drops the connection.
async fn reset_mid_body(response: Response) -> Response {
    let (mut parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let half = bytes.slice(..bytes.len() / 2);
    // The failure comes a moment after the first half, so hyper has sent the head and that half.
    let chunks = futures::stream::iter([Some(half), None]).then(|chunk| async move {
        match chunk {
            Some(bytes) => Ok(bytes),
            None => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Err(std::io::Error::other("fake: connection dropped mid-body"))
            }
        }
    });
    parts.headers.insert(
        axum::http::header::CONTENT_LENGTH,
        bytes.len().to_string().parse().unwrap(),
    );
    Response::from_parts(parts, axum::body::Body::from_stream(chunks))
}

/// Answers and records one request; the answer is sent after the returned hold, mistreated by
/// the returned fault.
fn record(
    state: &Shared,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (Response, Duration, Option<WriteFault>) {
    let mut state = state.lock().unwrap();
    let query: Vec<(String, String)> = uri
        .query()
        .map(|q| {
            reqwest::Url::parse(&format!("http://fake/?{q}"))
                .map(|u| {
                    u.query_pairs()
                        .map(|(k, v)| (k.into_owned(), v.into_owned()))
                        .collect()
                })
                .unwrap_or_default()
        })
        .unwrap_or_default();
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let path = uri
        .path()
        .strip_prefix(PREFIX)
        .unwrap_or(uri.path())
        .to_string();

    let fault = if method == Method::POST {
        state.faults.pop_front()
    } else {
        None
    };
    let (status, response) = if authorization.as_deref() != Some(&expected_authorization()) {
        let mut r = (StatusCode::UNAUTHORIZED, "Authorization Required").into_response();
        r.headers_mut().insert(
            "www-authenticate",
            "Basic realm=\"HappyFox\"".parse().unwrap(),
        );
        (401, r)
    } else if let Some(limited) = state.spend(&method) {
        (429, limited)
    } else if !uri.path().starts_with(PREFIX) {
        (404, api::not_found())
    } else if let Some(fault @ WriteFault::TooMany { .. }) = fault.as_ref() {
        let mut r = (StatusCode::TOO_MANY_REQUESTS, "Too Many Requests").into_response();
        if let WriteFault::TooMany {
            retry_after: Some(s),
        } = fault
        {
            r.headers_mut()
                .insert("retry-after", s.to_string().parse().unwrap());
        }
        (429, r)
    } else {
        let r = api::dispatch(&mut state.data, &method, &path, &query, &body);
        (r.status().as_u16(), r)
    };
    let applied = method == Method::POST
        && (200..300).contains(&status)
        && fault.as_ref().is_none_or(WriteFault::applies);
    let (status, response) = match &fault {
        // Applied above; the answer says otherwise.
        Some(WriteFault::ErrorAfterApply(code)) if applied => (
            *code,
            (
                StatusCode::from_u16(*code).unwrap(),
                "<html><body>Server Error</body></html>",
            )
                .into_response(),
        ),
        _ => (status, response),
    };
    let mut hold = if method == Method::POST {
        state.hold_writes
    } else {
        Duration::ZERO
    };
    if let Some(WriteFault::Slow(d)) = fault {
        hold = d;
    }
    state.received.push(Received {
        method,
        path,
        query,
        authorization,
        body,
        status,
        applied,
        fault: fault.clone(),
    });
    (response, hold, fault)
}

impl Fake {
    /// Spends one call of the method's budget; the 429 answer when over it or penalized.
    fn spend(&mut self, method: &Method) -> Option<Response> {
        let now = Instant::now() + self.offset;
        let limits = self.limits;
        let b = &mut self.budget;
        let too_many = || (StatusCode::TOO_MANY_REQUESTS, "Too Many Requests").into_response();
        if b.penalty_until.is_some_and(|until| now < until) {
            return Some(too_many());
        }
        if b.window_start
            .is_none_or(|start| now.duration_since(start) >= limits.window)
        {
            *b = Budget {
                window_start: Some(now),
                gets: 0,
                posts: 0,
                penalty_until: None,
            };
        }
        let (used, limit) = if method == Method::GET {
            (&mut b.gets, limits.get)
        } else {
            (&mut b.posts, limits.post)
        };
        *used += 1;
        if *used > limit {
            b.penalty_until = Some(now + limits.penalty);
            return Some(too_many());
        }
        None
    }
}
