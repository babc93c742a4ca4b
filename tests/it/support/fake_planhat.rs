//! A fake Planhat REST API on a loopback port, serving the synthetic tenant in
//! `testdata/planhat/tenant.json` with the documented behaviour (../shared/reference/planhat.md):
//! Bearer auth (401 with a text body on a wrong token), bare JSON arrays for lists with
//! `limit`/`offset`/`sort`, the list filters the reference lists (`companyId` on tasks, tickets
//! and endusers; `email` on endusers and tickets; nothing on NPS or issues), `extid-`/`srcid-`
//! company ids, error bodies that are an object or a string, and the 200-per-minute quota
//! answering 429 with `RateLimit-Limit/-Remaining/-Reset` (Reset in delta seconds).
//! Every request is recorded so tests assert exact paths and bodies.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub const TOKEN: &str = "ph-test-token-9f2c";

/// One request as the fake saw it.
#[derive(Clone, Debug)]
pub struct Received {
    pub method: Method,
    /// The path without the query: `/companies/64b7e2f09a1c3d5e7f802a11`.
    pub path: String,
    /// Query pairs in the order sent.
    pub query: Vec<(String, String)>,
    pub headers: HeaderMap,
    pub body: Value,
    /// What the fake answered.
    pub status: u16,
}

impl Received {
    /// `METHOD /path?query` as sent, for exact assertions.
    pub fn line(&self) -> String {
        let query: Vec<String> = self.query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        if query.is_empty() {
            format!("{} {}", self.method, self.path)
        } else {
            format!("{} {}?{}", self.method, self.path, query.join("&"))
        }
    }
}

/// A canned failure for the next request matching method and path.
#[derive(Clone, Debug)]
pub struct Failure {
    pub method: Method,
    pub path: String,
    pub status: u16,
    /// A JSON value is sent as JSON; a `Value::String` is sent as plain text.
    pub body: Value,
}

struct Tenant {
    /// Records by model path segment (`companies`, `nps`, ...).
    models: Map<String, Value>,
    received: Vec<Received>,
    failures: VecDeque<Failure>,
    quota: u32,
    window: Duration,
    window_start: Option<Instant>,
    used: u32,
    next_id: u64,
}

pub struct FakePlanhat {
    pub url: String,
    tenant: Arc<Mutex<Tenant>>,
    server: JoinHandle<()>,
}

impl FakePlanhat {
    /// The tenant fixture with Planhat's documented quota (200 calls a minute).
    pub async fn start() -> FakePlanhat {
        Self::with_quota(200, Duration::from_secs(60)).await
    }

    pub async fn with_quota(quota: u32, window: Duration) -> FakePlanhat {
        let text =
            std::fs::read_to_string(super::repo_path("testdata/planhat/tenant.json")).unwrap();
        let mut models: Map<String, Value> = serde_json::from_str(&text).unwrap();
        models.remove("_comment");
        let tenant = Arc::new(Mutex::new(Tenant {
            models,
            received: Vec::new(),
            failures: VecDeque::new(),
            quota,
            window,
            window_start: None,
            used: 0,
            next_id: 1,
        }));
        let app = axum::Router::new()
            .fallback(answer)
            .with_state(tenant.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FakePlanhat {
            url,
            tenant,
            server,
        }
    }

    pub fn received(&self) -> Vec<Received> {
        self.tenant.lock().unwrap().received.clone()
    }

    /// Every request as `METHOD /path?query`.
    pub fn lines(&self) -> Vec<String> {
        self.received().iter().map(Received::line).collect()
    }

    /// Requests that would change something.
    pub fn writes(&self) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.method != Method::GET)
            .collect()
    }

    /// The writes that changed the tenant (answered 2xx), for `invariants::check`.
    pub fn applied_writes(&self) -> Vec<super::invariants::Write> {
        self.writes()
            .into_iter()
            .filter(|r| (200..300).contains(&r.status))
            .map(|r| super::invariants::Write {
                method: r.method.to_string(),
                path: r.path,
                body: r.body,
            })
            .collect()
    }

    pub fn fail_next(&self, failure: Failure) {
        self.tenant.lock().unwrap().failures.push_back(failure);
    }

    /// The records of a model now (e.g. after a create).
    pub fn records(&self, model: &str) -> Vec<Value> {
        self.tenant.lock().unwrap().models[model]
            .as_array()
            .unwrap()
            .clone()
    }
}

impl Drop for FakePlanhat {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// The decoded query pairs of a request, in order (shared with the Truto fake).
pub fn query_pairs(uri: &Uri) -> Vec<(String, String)> {
    let url = reqwest::Url::parse(&format!("http://fake{uri}")).unwrap();
    url.query_pairs().into_owned().collect()
}

fn text(status: StatusCode, body: &str) -> Response {
    (status, body.to_string()).into_response()
}

fn json_answer(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

async fn answer(
    State(tenant): State<Arc<Mutex<Tenant>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut t = tenant.lock().unwrap();
    let query = query_pairs(&uri);
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let path = uri.path().to_string();

    // The quota counts every call, as Planhat's does.
    let now = Instant::now();
    let start = *t.window_start.get_or_insert(now);
    if now.duration_since(start) >= t.window {
        t.window_start = Some(now);
        t.used = 0;
    }
    t.used += 1;
    let reset = t
        .window
        .saturating_sub(now.duration_since(t.window_start.unwrap()))
        .as_secs_f64()
        .ceil() as u64;
    let (quota, used) = (t.quota, t.used);

    let mut response = if used > quota {
        text(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many requests, please slow down",
        )
    } else if headers.get("authorization").and_then(|v| v.to_str().ok())
        != Some(&format!("Bearer {TOKEN}"))
    {
        text(StatusCode::UNAUTHORIZED, "Unauthorized")
    } else if let Some(at) = t
        .failures
        .iter()
        .position(|f| f.method == method && f.path == path)
    {
        let f = t.failures.remove(at).unwrap();
        let status = StatusCode::from_u16(f.status).unwrap();
        match f.body {
            Value::String(s) => text(status, &s),
            other => json_answer(status, other),
        }
    } else {
        route(&mut t, &method, &path, &query, &body)
    };
    let headers_out = response.headers_mut();
    headers_out.insert("ratelimit-limit", quota.into());
    headers_out.insert("ratelimit-remaining", quota.saturating_sub(used).into());
    headers_out.insert("ratelimit-reset", reset.into());
    t.received.push(Received {
        method,
        path,
        query,
        headers,
        body,
        status: response.status().as_u16(),
    });
    response
}

fn is_object_id(s: &str) -> bool {
    s.len() == 24 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn route(
    t: &mut Tenant,
    method: &Method,
    path: &str,
    query: &[(String, String)],
    body: &Value,
) -> Response {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let not_found = || text(StatusCode::NOT_FOUND, &format!("Cannot {method} {path}"));
    let Some(records) = t.models.get(parts[0]).and_then(Value::as_array).cloned() else {
        return not_found();
    };
    match (method.as_str(), parts.as_slice()) {
        ("GET", [model]) => json_answer(StatusCode::OK, Value::Array(list(model, records, query))),
        ("GET", [model, id]) => match find(model, &records, id) {
            Ok(Some(r)) => json_answer(StatusCode::OK, r.clone()),
            Ok(None) => text(StatusCode::NOT_FOUND, "Item not found"),
            Err(e) => json_answer(StatusCode::BAD_REQUEST, json!({"message": e})),
        },
        ("POST", ["tasks" | "churn"]) => create(t, parts[0], body),
        ("PUT", ["opportunities", id]) => match find("opportunities", &records, id) {
            Ok(Some(_)) => update(t, "opportunities", id, body),
            Ok(None) => text(StatusCode::NOT_FOUND, "Item not found"),
            Err(e) => json_answer(StatusCode::BAD_REQUEST, json!({"message": e})),
        },
        _ => not_found(),
    }
}

/// The record `id` names; Err is the cast error Planhat answers for an id that is no ObjectId.
fn find<'a>(model: &str, records: &'a [Value], id: &str) -> Result<Option<&'a Value>, String> {
    let (field, value) = match id.split_once('-') {
        Some(("extid", v)) if model == "companies" => ("externalId", v),
        Some(("srcid", v)) if model == "companies" => ("sourceId", v),
        _ if is_object_id(id) => ("_id", id),
        _ => {
            return Err(format!(
                "Cast to ObjectId failed for value \"{id}\" at path \"_id\""
            ));
        }
    };
    Ok(records.iter().find(|r| r[field] == value))
}

/// The documented list behaviour: server filters where the reference lists one, `sort` on one
/// field, then `offset` and `limit` (default 100).
fn list(model: &str, mut records: Vec<Value>, query: &[(String, String)]) -> Vec<Value> {
    let get = |k: &str| query.iter().find(|(q, _)| q == k).map(|(_, v)| v.as_str());
    let filters: &[&str] = match model {
        "tasks" => &["companyId"],
        "tickets" => &["companyId", "email"],
        "endusers" => &["companyId", "email"],
        _ => &[],
    };
    for f in filters {
        if let Some(wanted) = get(f) {
            let wanted: Vec<&str> = wanted.split(',').collect();
            records.retain(|r| r[*f].as_str().is_some_and(|v| wanted.contains(&v)));
        }
    }
    if let Some(sort) = get("sort") {
        let (field, desc) = match sort.strip_prefix('-') {
            Some(f) => (f, true),
            None => (sort, false),
        };
        records.sort_by(|a, b| {
            let o = a[field].to_string().cmp(&b[field].to_string());
            if desc { o.reverse() } else { o }
        });
    }
    let offset: usize = get("offset").and_then(|v| v.parse().ok()).unwrap_or(0);
    let limit: usize = get("limit").and_then(|v| v.parse().ok()).unwrap_or(100);
    records.into_iter().skip(offset).take(limit).collect()
}

fn create(t: &mut Tenant, model: &str, body: &Value) -> Response {
    let company = body["companyId"].as_str().unwrap_or_default();
    let missing = match model {
        "tasks" => {
            !matches!(body["mainType"].as_str(), Some("task" | "event")) || company.is_empty()
        }
        _ => company.is_empty(),
    };
    if missing {
        return json_answer(
            StatusCode::BAD_REQUEST,
            json!({"error": "Missing required key (mainType, companyId)"}),
        );
    }
    let company_name = t.models["companies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["_id"] == company)
        .map(|c| c["name"].clone())
        .unwrap_or(Value::Null);
    let mut record = body.clone();
    record["_id"] = Value::String(format!("6800{:020x}", t.next_id));
    t.next_id += 1;
    record["companyName"] = company_name;
    record["createdAt"] = json!("2024-11-07T07:00:00.000Z");
    record["__v"] = json!(0);
    t.models[model].as_array_mut().unwrap().push(record.clone());
    json_answer(StatusCode::OK, record)
}

fn update(t: &mut Tenant, model: &str, id: &str, body: &Value) -> Response {
    let records = t.models[model].as_array_mut().unwrap();
    let record = records.iter_mut().find(|r| r["_id"] == id).unwrap();
    for (k, v) in body.as_object().into_iter().flatten() {
        if k == "custom" {
            // Planhat merges `custom`: only the keys sent change.
            for (ck, cv) in v.as_object().into_iter().flatten() {
                record["custom"][ck] = cv.clone();
            }
        } else {
            record[k] = v.clone();
        }
    }
    json_answer(StatusCode::OK, record.clone())
}
