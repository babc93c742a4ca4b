//! The dashboard at `/ui`: server-rendered pages (maud) over the same store and decide paths as
//! `/api/` and the CLI, with its stylesheet and script embedded in the binary. Forms post back
//! to `/ui/...` with a CSRF token; every list pages by key (`before`), never by offset.
//!
//! Access is `super::access`'s: with `api_token` set, `/ui/login` asks for it once and sets a
//! session cookie; without one, only this machine is answered (unless `[http] admin_access`).

mod approvals;
mod jobs;
mod pages;
mod transcript;

use super::AppState;
use super::access::{self, SESSION_COOKIE};
use super::extract::read_body;
use super::problem::ApiError;
use axum::Router;
use axum::body::Body;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header, request::Parts};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::{DOCTYPE, Markup, html};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::sync::Arc;

/// Rows per page of every list.
const PAGE: u32 = 50;

/// A dashboard form's body is a few fields: anything near this is not one.
const MAX_FORM_BYTES: usize = 64 * 1024;

const STYLE: &str = include_str!("assets/ui.css");
const SCRIPT: &str = include_str!("assets/ui.js");

pub fn routes(state: Arc<AppState>) -> Router<Arc<AppState>> {
    Router::new()
        .route("/ui", get(pages::overview))
        .route("/ui/", get(|| async { Redirect::permanent("/ui") }))
        .route("/ui/events", get(pages::events))
        .route("/ui/events/{seq}", get(pages::event))
        .route("/ui/jobs", get(jobs::list))
        .route("/ui/jobs/{id}", get(jobs::show))
        .route("/ui/jobs/{id}/retry", post(jobs::retry))
        .route("/ui/dead", get(jobs::dead))
        .route(
            "/ui/dead/retry",
            get(jobs::confirm_retry_all).post(jobs::retry_all),
        )
        .route("/ui/approvals", get(approvals::list))
        .route("/ui/approvals/{id}", get(approvals::show))
        .route("/ui/approvals/{id}/approve", post(approvals::approve))
        .route("/ui/approvals/{id}/reject", post(approvals::reject))
        .route("/ui/handlers", get(pages::handlers))
        .route("/ui/login", get(login_form).post(login))
        .route("/ui/logout", post(logout))
        .route(
            "/ui/assets/ui.css",
            get(|| asset("text/css; charset=utf-8", STYLE)),
        )
        .route(
            "/ui/assets/ui.js",
            get(|| asset("text/javascript; charset=utf-8", SCRIPT)),
        )
        .route_layer(axum::middleware::from_fn_with_state(state, guard))
}

async fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// What every page knows about the request: the CSRF token its forms carry, and whether the
/// person signed in with a token (so a sign-out button makes sense).
#[derive(Clone)]
pub struct Ctx {
    pub csrf: String,
    pub session: Option<String>,
    pub signed_in: bool,
}

impl<S: Send + Sync> FromRequestParts<S> for Ctx {
    type Rejection = UiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, UiError> {
        parts
            .extensions
            .get::<Ctx>()
            .cloned()
            .ok_or_else(|| UiError(ApiError::Internal("the dashboard guard did not run".into())))
    }
}

/// Admits a dashboard request: cross-site state changes are refused; with a token, a valid
/// session is needed (else to the sign-in page); without one, the request must come from this
/// machine. Security headers go on every answer.
async fn guard(
    State(app): State<Arc<AppState>>,
    mut request: Request,
    next: axum::middleware::Next,
) -> Response {
    let mut response = match admit(&app, &mut request) {
        Ok(()) => next.run(request).await,
        Err(refusal) => *refusal,
    };
    let headers = response.headers_mut();
    for (name, value) in [
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "same-origin"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

fn admit(app: &AppState, request: &mut Request) -> Result<(), Box<Response>> {
    let headers = request.headers();
    access::refuse_cross_site(request.method(), headers)
        .map_err(|e| Box::new(UiError(e).into_response()))?;
    let path = request.uri().path();
    let public = path == "/ui/login" || path.starts_with("/ui/assets/");
    let session = access::cookie(headers, SESSION_COOKIE).map(str::to_string);
    let now = app.clock.now().timestamp_millis();
    let signed_in = if app.access.token_required() {
        let valid = session
            .as_deref()
            .is_some_and(|s| app.access.session_valid(s, now));
        if !valid && !public {
            let next = request.uri().path_and_query().map_or("/ui", |p| p.as_str());
            let to = format!("/ui/login?next={}", encode(next));
            return Err(Box::new(Redirect::to(&to).into_response()));
        }
        valid
    } else {
        app.access
            .admit_without_token(headers, access::peer(request.extensions()))
            .map_err(|e| Box::new(UiError(e).into_response()))?;
        false
    };
    let session = session.filter(|_| signed_in);
    let csrf = app.access.csrf_token(session.as_deref());
    request.extensions_mut().insert(Ctx {
        csrf,
        session,
        signed_in,
    });
    Ok(())
}

/// Reads a posted form and checks its CSRF token: a form from a page of another session, or
/// none, changes nothing.
pub async fn read_form<T: DeserializeOwned>(
    app: &AppState,
    ctx: &Ctx,
    headers: &HeaderMap,
    body: Body,
) -> Result<T, UiError> {
    #[derive(Deserialize)]
    struct Token {
        #[serde(default)]
        csrf: String,
    }
    let body = read_body(headers, body, MAX_FORM_BYTES, app.body_read_timeout).await?;
    let token: Token = serde_urlencoded::from_bytes(&body)
        .map_err(|e| ApiError::BadRequest(format!("form: {e}")))?;
    if !app.access.csrf_valid(ctx.session.as_deref(), &token.csrf) {
        return Err(UiError(ApiError::Forbidden {
            slug: "csrf",
            detail: "the form's CSRF token is missing or belongs to another session: reload the \
                     page and try again"
                .into(),
        }));
    }
    serde_urlencoded::from_bytes(&body)
        .map_err(|e| UiError(ApiError::BadRequest(format!("form: {e}"))))
}

/// A form that carries nothing but its CSRF token (a button).
#[derive(Deserialize)]
pub struct NoFields {}

/// A refusal or failure shown as a page (with the status the API would answer).
#[derive(Debug)]
pub struct UiError(pub ApiError);

impl From<ApiError> for UiError {
    fn from(e: ApiError) -> Self {
        UiError(e)
    }
}

impl From<crate::store::StoreError> for UiError {
    fn from(e: crate::store::StoreError) -> Self {
        UiError(ApiError::StoreUnavailable(e))
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let message = self.0.to_string();
        // The API's answer decides the status (and logs an internal error); its body is replaced.
        let api = self.0.into_response();
        let status = api.status();
        let shown = if status.is_server_error() && status != StatusCode::SERVICE_UNAVAILABLE {
            "something went wrong inside hookwise; the server log has the details".to_string()
        } else {
            message
        };
        let title = status.canonical_reason().unwrap_or("Error");
        let page = bare_page(
            title,
            html! {
                h1 { (status.as_u16()) " " (title) }
                p.error { (shown) }
                p { a href="/ui" { "Back to the overview" } }
            },
        );
        let mut response = (status, page).into_response();
        if let Some(v) = api.headers().get(header::WWW_AUTHENTICATE) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, v.clone());
        }
        response
    }
}

/// The pages in the navigation bar.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Overview,
    Events,
    Jobs,
    Dead,
    Approvals,
    Handlers,
}

const NAV: [(Nav, &str, &str); 6] = [
    (Nav::Overview, "/ui", "Overview"),
    (Nav::Events, "/ui/events", "Events"),
    (Nav::Jobs, "/ui/jobs", "Jobs"),
    (Nav::Dead, "/ui/dead", "Dead letters"),
    (Nav::Approvals, "/ui/approvals", "Approvals"),
    (Nav::Handlers, "/ui/handlers", "Handlers"),
];

/// Whether a page refreshes itself (lists that change while one watches them).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Live {
    Yes,
    No,
}

/// A page with the navigation bar. A live page's `<main>` is refreshed every few seconds by
/// the script (paused while a form field has focus or the tab is hidden).
pub fn page(ctx: &Ctx, nav: Nav, title: &str, live: Live, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · hookwise" }
                link rel="stylesheet" href="/ui/assets/ui.css";
                script src="/ui/assets/ui.js" defer {}
            }
            body {
                header.top {
                    a.brand href="/ui" { "hookwise" }
                    nav {
                        @for (item, href, label) in NAV {
                            a href=(href) class=[(item == nav).then_some("active")] { (label) }
                        }
                    }
                    @if live == Live::Yes {
                        span #live.live title="This page refreshes itself every 5 seconds" { "live" }
                    }
                    @if ctx.signed_in {
                        form.inline method="post" action="/ui/logout" {
                            input type="hidden" name="csrf" value=(ctx.csrf);
                            button.link type="submit" { "Sign out" }
                        }
                    }
                }
                main #main data-live=[(live == Live::Yes).then_some("5")] {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// A page without navigation (sign-in, errors before the guard admitted anyone).
fn bare_page(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · hookwise" }
                link rel="stylesheet" href="/ui/assets/ui.css";
            }
            body {
                header.top { a.brand href="/ui" { "hookwise" } }
                main { (body) }
            }
        }
    }
}

#[derive(Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

async fn login_form(
    State(app): State<Arc<AppState>>,
    super::extract::Query(q): super::extract::Query<LoginQuery>,
) -> Response {
    if !app.access.token_required() {
        return Redirect::to("/ui").into_response();
    }
    login_page(StatusCode::OK, &safe_next(q.next.as_deref()), None)
}

fn login_page(status: StatusCode, next: &str, error: Option<&str>) -> Response {
    let body = html! {
        h1 { "Sign in" }
        p { "This hookwise has an " code { "api_token" } ". Enter it once; this browser keeps a \
             session for 12 hours." }
        @if let Some(error) = error { p.error { (error) } }
        form.login method="post" action="/ui/login" {
            input type="hidden" name="next" value=(next);
            label { "API token " input #token type="password" name="token" autocomplete="current-password" required autofocus; }
            button type="submit" { "Sign in" }
        }
    };
    (status, bare_page("Sign in", body)).into_response()
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
    next: Option<String>,
}

/// Checks the token and starts a session: an HttpOnly, SameSite=Strict cookie that scripts
/// cannot read and other sites' pages cannot send.
async fn login(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, UiError> {
    let body = read_body(&headers, body, MAX_FORM_BYTES, app.body_read_timeout).await?;
    let form: LoginForm = serde_urlencoded::from_bytes(&body)
        .map_err(|e| ApiError::BadRequest(format!("form: {e}")))?;
    let next = safe_next(form.next.as_deref());
    if !app.access.token_matches(&form.token) {
        return Ok(login_page(
            StatusCode::UNAUTHORIZED,
            &next,
            Some("That is not this hookwise's api_token."),
        ));
    }
    let session = app.access.new_session(app.clock.now().timestamp_millis());
    let cookie = format!(
        "{SESSION_COOKIE}={session}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={}",
        access::SESSION_TTL_MS / 1000
    );
    let mut response = Redirect::to(&next).into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie).expect("cookie is ASCII"),
    );
    Ok(response)
}

async fn logout(
    State(app): State<Arc<AppState>>,
    ctx: Ctx,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, UiError> {
    let _: NoFields = read_form(&app, &ctx, &headers, body).await?;
    let mut response = Redirect::to("/ui/login").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "hookwise_session=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0",
        ),
    );
    Ok(response)
}

/// Where to go after signing in: a dashboard path only, never another site.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with("/ui") && !n.starts_with("//") && !n.contains('\\') => {
            n.to_string()
        }
        _ => "/ui".to_string(),
    }
}

/// Percent-encodes a query value.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A query string from the filters that are set (`?a=1&b=2`, or empty).
pub fn query(pairs: &[(&str, Option<String>)]) -> String {
    let set: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| {
            v.as_ref()
                .filter(|v| !v.is_empty())
                .map(|v| format!("{k}={}", encode(v)))
        })
        .collect();
    if set.is_empty() {
        String::new()
    } else {
        format!("?{}", set.join("&"))
    }
}

/// A filter value from a form: empty means "any".
pub fn set(v: &Option<String>) -> Option<String> {
    v.as_ref()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// A time for people: UTC, labelled.
pub fn time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| ms.to_string())
}

/// A time relative to now: "in 4s", "3m ago".
pub fn relative(ms: i64, now_ms: i64) -> String {
    let d = (ms - now_ms) / 1000;
    let span = |s: i64| match s {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        s => format!("{}d", s / 86_400),
    };
    if d >= 0 {
        format!("in {}", span(d))
    } else {
        format!("{} ago", span(-d))
    }
}

/// A `<time>` element: UTC text, the exact instant in `datetime`, relative time in the tooltip.
pub fn when(ms: i64, now_ms: i64) -> Markup {
    let iso = chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339())
        .unwrap_or_default();
    html! { time datetime=(iso) title=(relative(ms, now_ms)) { (time(ms)) } }
}

/// Text cut to `max` characters for a table cell (the full text in the tooltip).
pub fn clip(s: &str, max: usize) -> Markup {
    match s.char_indices().nth(max) {
        None => html! { (s) },
        Some((at, _)) => html! { span title=(s) { (&s[..at]) "…" } },
    }
}

/// JSON for people: pretty-printed when it parses, as it is otherwise.
pub fn pretty_json(text: &str) -> String {
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| text.to_string())
}

/// The hidden CSRF field every form carries.
pub fn csrf_field(ctx: &Ctx) -> Markup {
    html! { input type="hidden" name="csrf" value=(ctx.csrf); }
}

/// "Older →" when the page was full: the next page starts before the last row's key.
pub fn older_link(
    base: &str,
    filters: &[(&str, Option<String>)],
    rows: usize,
    last_key: Option<i64>,
) -> Markup {
    html! {
        @if rows >= PAGE as usize {
            @if let Some(key) = last_key {
                @let pairs = [filters, &[("before", Some(key.to_string()))]].concat();
                p.pager { a rel="next" href={ (base) (query(&pairs)) } { "Older →" } }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_in_only_returns_to_dashboard_paths() {
        assert_eq!(
            safe_next(Some("/ui/jobs?state=dead")),
            "/ui/jobs?state=dead"
        );
        for bad in [
            "https://evil.example",
            "//evil.example",
            "/api/jobs",
            "/ui\\..",
            "",
        ] {
            assert_eq!(safe_next(Some(bad)), "/ui", "{bad}");
        }
        assert_eq!(safe_next(None), "/ui");
    }

    #[test]
    fn query_strings_keep_only_set_filters_and_encode_them() {
        assert_eq!(query(&[("a", None), ("b", Some(String::new()))]), "");
        assert_eq!(
            query(&[
                ("account", Some("acme co".into())),
                ("kind", Some("t&x".into()))
            ]),
            "?account=acme%20co&kind=t%26x"
        );
    }

    #[test]
    fn relative_times_read_naturally() {
        assert_eq!(relative(5_000, 0), "in 5s");
        assert_eq!(relative(0, 180_000), "3m ago");
        assert_eq!(relative(3_900_000, 0), "in 1h05m");
    }
}
