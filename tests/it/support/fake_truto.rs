//! A fake Truto API on a loopback port: `GET /integrated-account/{id}/tools` (paged with
//! `next_cursor`) listing the definitions in `testdata/truto/happyfox_tools.json`, and the proxy
//! API (`/proxy/{resource}[/{id}|/{method}]?integrated_account_id=`) answering in Truto's shapes
//! (`{result, next_cursor}` for lists, the record for one, an error envelope otherwise). Bearer
//! auth with the API key; every request is recorded.

use super::fake_planhat::query_pairs;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub const API_KEY: &str = "truto-test-key-41d7";

#[derive(Clone, Debug)]
pub struct Received {
    pub method: Method,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Received {
    pub fn line(&self) -> String {
        let query: Vec<String> = self.query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        if query.is_empty() {
            format!("{} {}", self.method, self.path)
        } else {
            format!("{} {}?{}", self.method, self.path, query.join("&"))
        }
    }
}

struct Shared {
    /// Tool definitions by integrated account id.
    accounts: BTreeMap<String, Vec<Value>>,
    /// Tools per page of the tool list.
    page_size: usize,
    received: Vec<Received>,
}

pub struct FakeTruto {
    pub url: String,
    state: Arc<Mutex<Shared>>,
    server: JoinHandle<()>,
}

/// The bundled HappyFox tool definitions.
pub fn happyfox_tools() -> Vec<Value> {
    let text =
        std::fs::read_to_string(super::repo_path("testdata/truto/happyfox_tools.json")).unwrap();
    let file: Value = serde_json::from_str(&text).unwrap();
    file["tools"].as_array().unwrap().clone()
}

impl FakeTruto {
    /// Integrated accounts by id, each with its tool definitions; the tool list is served in
    /// pages of `page_size`.
    pub async fn start(accounts: Vec<(&str, Vec<Value>)>, page_size: usize) -> FakeTruto {
        let state = Arc::new(Mutex::new(Shared {
            accounts: accounts
                .into_iter()
                .map(|(id, tools)| (id.to_string(), tools))
                .collect(),
            page_size,
            received: Vec::new(),
        }));
        let app = axum::Router::new()
            .fallback(answer)
            .with_state(state.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FakeTruto { url, state, server }
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }

    pub fn lines(&self) -> Vec<String> {
        self.received().iter().map(Received::line).collect()
    }
}

impl Drop for FakeTruto {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn envelope(status: StatusCode, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"statusCode": status.as_u16(), "message": message, "details": {}})),
    )
        .into_response()
}

async fn answer(
    State(state): State<Arc<Mutex<Shared>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut s = state.lock().unwrap();
    let query = query_pairs(&uri);
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let path = uri.path().to_string();
    s.received.push(Received {
        method: method.clone(),
        path: path.clone(),
        query: query.clone(),
        headers: headers.clone(),
        body: body.clone(),
    });
    if headers.get("authorization").and_then(|v| v.to_str().ok())
        != Some(&format!("Bearer {API_KEY}"))
    {
        return envelope(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    let get = |k: &str| query.iter().find(|(q, _)| q == k).map(|(_, v)| v.clone());
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let mut response = match (method.as_str(), parts.as_slice()) {
        ("GET", ["integrated-account", id, "tools"]) => match s.accounts.get(*id) {
            None => envelope(StatusCode::NOT_FOUND, "Integrated account not found"),
            Some(tools) => {
                let from: usize = get("next_cursor").and_then(|c| c.parse().ok()).unwrap_or(0);
                let page: Vec<Value> = tools.iter().skip(from).take(s.page_size).cloned().collect();
                let next =
                    (from + s.page_size < tools.len()).then(|| (from + s.page_size).to_string());
                axum::Json(json!({"result": page, "next_cursor": next})).into_response()
            }
        },
        (_, ["proxy", resource, rest @ ..]) => {
            let Some(account) = get("integrated_account_id").filter(|a| s.accounts.contains_key(a))
            else {
                return envelope(StatusCode::NOT_FOUND, "Integrated account not found");
            };
            proxy(&method, resource, rest, &account, &body)
        }
        _ => envelope(StatusCode::NOT_FOUND, "Not found"),
    };
    let h = response.headers_mut();
    h.insert("ratelimit-limit", 100u32.into());
    h.insert("ratelimit-remaining", 99u32.into());
    h.insert("ratelimit-reset", 60u32.into());
    response
}

/// The proxy API over a fixed HappyFox-like data set.
fn proxy(method: &Method, resource: &str, rest: &[&str], account: &str, body: &Value) -> Response {
    let ticket = |id: &str| {
        json!({"id": id, "subject": "Cannot log in after password reset", "status": {"id": 1, "name": "New"},
               "account": account})
    };
    match (method.as_str(), resource, rest) {
        ("GET", "tickets", []) => axum::Json(json!({
            "result": [ticket("143"), ticket("144")], "next_cursor": null
        }))
        .into_response(),
        ("GET", "tickets", [id]) => axum::Json(ticket(id)).into_response(),
        ("POST", "private_notes", []) => {
            let mut note = body.clone();
            note["id"] = json!("note-1");
            axum::Json(note).into_response()
        }
        ("PATCH", "tickets", [id]) => {
            let mut t = ticket(id);
            t["status"] = body["status"].clone();
            axum::Json(t).into_response()
        }
        ("DELETE", "tickets", [id]) => axum::Json(json!({"id": id})).into_response(),
        _ => envelope(StatusCode::NOT_FOUND, "Resource not found"),
    }
}
