//! Who may use the admin surface: `/api/`, `/ui` and (unless public) `/metrics`.
//!
//! - With `api_token` set, `/api/` needs `Authorization: Bearer <token>`; the dashboard asks for
//!   the token once and keeps a session in an HttpOnly, SameSite=Strict cookie.
//! - Without a token, both answer only requests from this machine (a loopback peer that no proxy
//!   header names as someone else), unless `[http] admin_access = "anywhere"`.
//! - A state change (any method but GET/HEAD/OPTIONS) from another site's page is refused
//!   whatever the credentials (`Sec-Fetch-Site`, else `Origin` against `Host`), and every form of
//!   the dashboard carries a CSRF token bound to its session.

use super::problem::ApiError;
use crate::kernel::Secret;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Method, header};
use hmac::{KeyInit, Mac};
use std::net::SocketAddr;
use subtle::ConstantTimeEq;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// The dashboard's session cookie.
pub const SESSION_COOKIE: &str = "hookwise_session";

/// How long a dashboard session lasts before the token is asked for again.
pub const SESSION_TTL_MS: i64 = 12 * 60 * 60 * 1000;

/// The admin surface's credentials and keys.
pub struct AdminAccess {
    token: Option<Secret>,
    /// Without a token, answer requests from anywhere (`[http] admin_access = "anywhere"`).
    anywhere: bool,
    /// Signs session cookies and CSRF tokens: derived from the token, so every replica behind a
    /// load balancer accepts the others' sessions; random per process without one.
    key: [u8; 32],
}

impl AdminAccess {
    pub fn new(token: Option<Secret>, anywhere: bool) -> Self {
        let key = match &token {
            Some(token) => {
                let mut mac = HmacSha256::new_from_slice(token.expose().as_bytes())
                    .expect("HMAC takes a key of any length");
                mac.update(b"hookwise dashboard keys");
                mac.finalize().into_bytes().into()
            }
            None => {
                let mut key = [0u8; 32];
                getrandom::fill(&mut key).expect("the operating system gives random bytes");
                key
            }
        };
        Self {
            token,
            anywhere,
            key,
        }
    }

    /// Whether the dashboard asks for the token (and `/api/` needs it).
    pub fn token_required(&self) -> bool {
        self.token.is_some()
    }

    /// The admission rule for `/api/` and `/metrics`: a cross-site state change is refused; then
    /// the bearer token when one is configured, else the request must come from this machine.
    pub fn admit_api(
        &self,
        method: &Method,
        headers: &HeaderMap,
        peer: Option<SocketAddr>,
    ) -> Result<(), ApiError> {
        refuse_cross_site(method, headers)?;
        match &self.token {
            Some(token) => {
                let given = headers
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer "))
                    .ok_or(ApiError::Unauthorized(
                        "send Authorization: Bearer <api_token>",
                    ))?;
                if !bool::from(given.as_bytes().ct_eq(token.expose().as_bytes())) {
                    return Err(ApiError::Unauthorized("the API token does not match"));
                }
                Ok(())
            }
            None => self.admit_without_token(headers, peer),
        }
    }

    /// Without a token: from this machine, or from anywhere when so configured.
    pub fn admit_without_token(
        &self,
        headers: &HeaderMap,
        peer: Option<SocketAddr>,
    ) -> Result<(), ApiError> {
        if self.anywhere || from_this_machine(headers, peer) {
            Ok(())
        } else {
            Err(ApiError::Forbidden {
                slug: "loopback-only",
                detail: "no api_token is set, so /api/ and /ui answer only on this machine: set \
                         api_token (or [http] admin_access = \"anywhere\" on a trusted network)"
                    .into(),
            })
        }
    }

    /// Whether `given` is the configured token (constant time); false without one.
    pub fn token_matches(&self, given: &str) -> bool {
        self.token
            .as_ref()
            .is_some_and(|t| bool::from(given.as_bytes().ct_eq(t.expose().as_bytes())))
    }

    /// A new session cookie value: its expiry and a MAC over it.
    pub fn new_session(&self, now_ms: i64) -> String {
        let expires = now_ms + SESSION_TTL_MS;
        format!(
            "{expires}.{}",
            hex::encode(self.mac(&[b"session", expires.to_string().as_bytes()]))
        )
    }

    /// Whether a session cookie value was made by `new_session` (here or on a replica with the
    /// same token) and has not expired.
    pub fn session_valid(&self, session: &str, now_ms: i64) -> bool {
        let Some((expires, mac)) = session.split_once('.') else {
            return false;
        };
        let Ok(at) = expires.parse::<i64>() else {
            return false;
        };
        let expected = hex::encode(self.mac(&[b"session", expires.as_bytes()]));
        at > now_ms && bool::from(mac.as_bytes().ct_eq(expected.as_bytes()))
    }

    /// The CSRF token a page's forms carry, bound to the session (or to this process's key when
    /// there is no session).
    pub fn csrf_token(&self, session: Option<&str>) -> String {
        hex::encode(self.mac(&[b"csrf", session.unwrap_or_default().as_bytes()]))
    }

    pub fn csrf_valid(&self, session: Option<&str>, given: &str) -> bool {
        bool::from(given.as_bytes().ct_eq(self.csrf_token(session).as_bytes()))
    }

    fn mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut mac =
            HmacSha256::new_from_slice(&self.key).expect("HMAC takes a key of any length");
        for part in parts {
            mac.update(part);
            mac.update(&[0]);
        }
        mac.finalize().into_bytes().into()
    }
}

/// The request's peer address, as the connection loop recorded it.
pub fn peer(extensions: &axum::http::Extensions) -> Option<SocketAddr> {
    extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0)
}

/// Headers a proxy adds to name the client it forwards for.
const PROXY_HEADERS: [&str; 3] = ["forwarded", "x-forwarded-for", "x-real-ip"];

/// The peer is a loopback address and no proxy header says it forwards someone else's request.
pub fn from_this_machine(headers: &HeaderMap, peer: Option<SocketAddr>) -> bool {
    let loopback = peer.is_some_and(|p| match p.ip() {
        std::net::IpAddr::V4(ip) => ip.is_loopback(),
        std::net::IpAddr::V6(ip) => {
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    });
    loopback && !PROXY_HEADERS.iter().any(|h| headers.contains_key(*h))
}

/// Refuses a state change that a browser says comes from another site's page. Browsers send
/// `Sec-Fetch-Site` on every request: anything but `same-origin` or `none` (a typed URL) is
/// refused, and it alone decides (a proxy that rewrites `Host` cannot make a same-origin form
/// look foreign). Older browsers without it send `Origin` on cross-origin POSTs: refused unless it
/// names this host. Clients that are not browsers send neither and are unaffected.
pub fn refuse_cross_site(method: &Method, headers: &HeaderMap) -> Result<(), ApiError> {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    let refused = |why: String| ApiError::Forbidden {
        slug: "cross-site",
        detail: format!("a state change from another site is refused: {why}"),
    };
    if let Some(site) = headers.get("sec-fetch-site") {
        let site = site.to_str().unwrap_or_default();
        return match site {
            "same-origin" | "none" => Ok(()),
            _ => Err(refused(format!("Sec-Fetch-Site is {site:?}"))),
        };
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or_default();
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default();
        let authority = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"));
        if authority != Some(host) || host.is_empty() {
            return Err(refused(format!(
                "Origin {origin:?} is not this host ({host:?})"
            )));
        }
    }
    Ok(())
}

/// A cookie's value from the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn sessions_are_accepted_by_replicas_with_the_same_token_until_they_expire() {
        let a = AdminAccess::new(Some(Secret::new("s3cret")), false);
        let b = AdminAccess::new(Some(Secret::new("s3cret")), false);
        let other = AdminAccess::new(Some(Secret::new("another")), false);
        let session = a.new_session(1_000);
        assert!(b.session_valid(&session, 2_000));
        assert!(!other.session_valid(&session, 2_000));
        assert!(!b.session_valid(&session, 1_000 + SESSION_TTL_MS));
        let (expires, mac) = session.split_once('.').unwrap();
        let stretched = format!("{}.{mac}", expires.parse::<i64>().unwrap() + 1);
        assert!(!b.session_valid(&stretched, 2_000));
        assert!(!b.session_valid("garbage", 2_000));
    }

    #[test]
    fn csrf_tokens_are_bound_to_their_session() {
        let a = AdminAccess::new(Some(Secret::new("s3cret")), false);
        let one = a.new_session(1_000);
        let two = a.new_session(2_000);
        let token = a.csrf_token(Some(&one));
        assert!(a.csrf_valid(Some(&one), &token));
        assert!(!a.csrf_valid(Some(&two), &token));
        assert!(!a.csrf_valid(None, &token));
    }

    #[test]
    fn only_loopback_peers_without_proxy_headers_are_this_machine() {
        let local: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let local6: SocketAddr = "[::1]:5000".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:5000".parse().unwrap();
        let remote: SocketAddr = "192.0.2.7:5000".parse().unwrap();
        for peer in [local, local6, mapped] {
            assert!(from_this_machine(&HeaderMap::new(), Some(peer)), "{peer}");
        }
        assert!(!from_this_machine(&HeaderMap::new(), Some(remote)));
        assert!(!from_this_machine(&HeaderMap::new(), None));
        for proxy in PROXY_HEADERS {
            let h = headers(&[(proxy, "192.0.2.7")]);
            assert!(!from_this_machine(&h, Some(local)), "{proxy}");
        }
    }

    #[test]
    fn cross_site_state_changes_are_refused_and_reads_and_non_browsers_are_not() {
        let post = Method::POST;
        assert!(refuse_cross_site(&post, &HeaderMap::new()).is_ok());
        assert!(refuse_cross_site(&post, &headers(&[("sec-fetch-site", "same-origin")])).is_ok());
        assert!(refuse_cross_site(&post, &headers(&[("sec-fetch-site", "cross-site")])).is_err());
        assert!(refuse_cross_site(&post, &headers(&[("sec-fetch-site", "same-site")])).is_err());
        let same = headers(&[
            ("origin", "http://127.0.0.1:8080"),
            ("host", "127.0.0.1:8080"),
        ]);
        assert!(refuse_cross_site(&post, &same).is_ok());
        let other = headers(&[
            ("origin", "http://evil.example"),
            ("host", "127.0.0.1:8080"),
        ]);
        assert!(refuse_cross_site(&post, &other).is_err());
        assert!(refuse_cross_site(&post, &headers(&[("origin", "null"), ("host", "h")])).is_err());
        assert!(refuse_cross_site(&Method::GET, &other).is_ok());
        // Behind a proxy that rewrites Host, a modern browser's same-origin form still passes.
        let proxied = headers(&[
            ("sec-fetch-site", "same-origin"),
            ("origin", "https://hookwise.example.com"),
            ("host", "127.0.0.1:8080"),
        ]);
        assert!(refuse_cross_site(&post, &proxied).is_ok());
    }

    #[test]
    fn cookies_are_found_among_several() {
        let h = headers(&[("cookie", "a=1; hookwise_session=xyz; b=2")]);
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("xyz"));
        assert_eq!(cookie(&h, "c"), None);
    }
}
