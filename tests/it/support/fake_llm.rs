//! A scripted fake LLM provider: an axum server on a loopback port that answers each request with
//! the next scripted reply and records what it received, so a test can assert on the exact
//! headers and body a client sent. It speaks whatever wire format the script is written in.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// One scripted answer.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Value,
    /// Sent verbatim instead of `body` (as `application/json`): a truncated or broken answer.
    pub raw: Option<String>,
    /// Held this long before it is sent (a slow model; a window to kill a client in).
    pub delay: std::time::Duration,
}

impl Reply {
    pub fn ok(body: Value) -> Self {
        Self::status(200, body)
    }

    pub fn status(status: u16, body: Value) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body,
            raw: None,
            delay: std::time::Duration::ZERO,
        }
    }

    /// A 200 whose body is `text` exactly, whatever it is.
    pub fn raw(text: &str) -> Self {
        Self {
            raw: Some(text.to_string()),
            ..Self::status(200, Value::Null)
        }
    }

    pub fn delayed(mut self, delay: std::time::Duration) -> Self {
        self.delay = delay;
        self
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
}

/// One request as the fake saw it.
#[derive(Clone, Debug)]
pub struct Received {
    pub method: Method,
    /// Path and query, e.g. `/v1/chat/completions`.
    pub uri: String,
    pub headers: HeaderMap,
    pub body: Value,
    /// On tokio's clock, so a paused test measures virtual waits between requests.
    pub at: Instant,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

/// Answers a request from its body once the script is used up (see `FakeLlm::respond_with`).
pub type Responder = Arc<dyn Fn(&Value) -> Reply + Send + Sync>;

#[derive(Default)]
struct Script {
    replies: VecDeque<Reply>,
    received: Vec<Received>,
    responder: Option<Responder>,
    /// While set, every request gets this and the script waits: a provider outage.
    outage: Option<Reply>,
}

pub struct FakeLlm {
    /// `http://127.0.0.1:PORT`: an IP, so no resolver thread runs (a paused clock would jump
    /// while the runtime waits for one).
    pub url: String,
    script: Arc<Mutex<Script>>,
    server: JoinHandle<()>,
}

impl FakeLlm {
    pub async fn start(replies: Vec<Reply>) -> FakeLlm {
        hookwise::init_tls();
        let script = Arc::new(Mutex::new(Script {
            replies: replies.into(),
            received: Vec::new(),
            responder: None,
            outage: None,
        }));
        let app = axum::Router::new()
            .fallback(answer)
            .with_state(script.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FakeLlm {
            url,
            script,
            server,
        }
    }

    pub fn received(&self) -> Vec<Received> {
        self.script.lock().unwrap().received.clone()
    }

    /// Adds a reply after the scripted ones (what a retried run will be told).
    pub fn push(&self, reply: Reply) {
        self.script.lock().unwrap().replies.push_back(reply);
    }

    /// Past the script, answers each request with what `responder` makes of its body: for runs
    /// of many jobs at once, whose requests arrive in no fixed order.
    pub fn respond_with(&self, responder: impl Fn(&Value) -> Reply + Send + Sync + 'static) {
        self.script.lock().unwrap().responder = Some(Arc::new(responder));
    }

    /// From now on every request is answered with `reply` (a 503, say), however many come,
    /// until `recover`; the scripted replies wait meanwhile.
    pub fn outage(&self, reply: Reply) {
        self.script.lock().unwrap().outage = Some(reply);
    }

    /// The outage is over: requests get the scripted replies again.
    pub fn recover(&self) {
        self.script.lock().unwrap().outage = None;
    }

    /// Scripted replies nobody asked for: a test that expects no retry checks this stayed full.
    pub fn unused(&self) -> usize {
        self.script.lock().unwrap().replies.len()
    }
}

impl Drop for FakeLlm {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn answer(
    State(script): State<Arc<Mutex<Script>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (response, delay) = next_reply(&script, method, uri, headers, body);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    response
}

fn next_reply(
    script: &Arc<Mutex<Script>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (Response, std::time::Duration) {
    let mut script = script.lock().unwrap();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let responder = script.responder.clone();
    // During an outage every request gets the outage's answer and the script waits. Past the
    // script (and without a responder) the answer is a 418 no client retries, so a retry bug
    // cannot loop.
    let outage = script.outage.clone();
    let reply = outage
        .or_else(|| script.replies.pop_front())
        .unwrap_or_else(|| match responder {
            Some(respond) => respond(&body),
            None => Reply::status(
                418,
                json!({"error": {"message": "fake: unscripted request"}}),
            ),
        });
    script.received.push(Received {
        method,
        uri: uri.to_string(),
        headers,
        body,
        at: Instant::now(),
    });
    let status = StatusCode::from_u16(reply.status).unwrap();
    let mut response = match reply.raw {
        Some(text) => (status, [("content-type", "application/json")], text).into_response(),
        None => (status, axum::Json(reply.body)).into_response(),
    };
    for (name, value) in reply.headers {
        response.headers_mut().insert(name, value.parse().unwrap());
    }
    (response, reply.delay)
}

/// An OpenAI Chat Completions answer calling tools: (call id, wire name, raw arguments text).
pub fn openai_calls(list: &[(&str, &str, &str)]) -> Reply {
    let tool_calls: Vec<Value> = list
        .iter()
        .map(|(id, name, args)| json!({"id": id, "type": "function", "function": {"name": name, "arguments": args}}))
        .collect();
    Reply::ok(json!({
        "id": "chatcmpl-test", "object": "chat.completion", "created": 1, "model": "test-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": null, "tool_calls": tool_calls},
                     "finish_reason": "tool_calls"}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}
    }))
}

/// An OpenAI Chat Completions answer in words, without a tool call: the run is done.
pub fn openai_text(answer: &str) -> Reply {
    Reply::ok(json!({
        "id": "chatcmpl-test", "object": "chat.completion", "created": 1, "model": "test-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 50, "completion_tokens": 10, "total_tokens": 60}
    }))
}

/// The `[llm]` table that points hookwise at this fake.
pub fn llm_table(url: &str) -> String {
    format!(
        "[llm]\nprovider = \"openai\"\nbase_url = \"{url}/v1\"\napi_key = \"test-key\"\nmodel = \"test-model\"\n"
    )
}
