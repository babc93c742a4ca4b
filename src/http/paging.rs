//! Lists page by key, newest first: at most `limit` rows whose key is below `before`. The body is
//! the bare JSON array clients already read; a full page also answers
//! `Link: </api/...?...&before=KEY>; rel="next"`, the same query with `before` set to the last
//! row's key, so a client follows links until one is missing.

use super::problem::ApiError;
use axum::Json;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Rows per page when the query does not say.
pub const DEFAULT_LIMIT: u32 = 50;
/// The most rows one page holds; a larger `limit` is served as this (the `Link` goes on).
pub const MAX_LIMIT: u32 = 1000;

/// The page size a request asked for: the default when unset, at most `MAX_LIMIT`. Zero asks
/// for nothing and is refused.
pub fn page_size(limit: Option<u32>) -> Result<u32, ApiError> {
    match limit {
        None => Ok(DEFAULT_LIMIT),
        Some(0) => Err(ApiError::InvalidQuery(
            "limit: must be at least 1 (follow the Link header for more pages)".into(),
        )),
        Some(n) => Ok(n.min(MAX_LIMIT)),
    }
}

/// One page of a list, answered as a JSON array, with a `Link` to the next page when it is full.
pub struct Page<T> {
    rows: Vec<T>,
    next: Option<String>,
}

impl<T> Page<T> {
    /// `rows` as the store returned them for `limit` at `path`. A full page may have more below
    /// it: the next one starts at the last row's key, and `query(key)` is the request's query
    /// with `before` set to that key (every other filter kept).
    pub fn new<Q: Serialize>(
        path: &str,
        rows: Vec<T>,
        limit: u32,
        key: impl Fn(&T) -> i64,
        query: impl FnOnce(i64) -> Q,
    ) -> Result<Self, ApiError> {
        let next = match rows.last() {
            Some(last) if rows.len() >= limit as usize => {
                let query = serde_urlencoded::to_string(query(key(last)))
                    .map_err(|e| ApiError::Internal(format!("the next page's query: {e}")))?;
                Some(format!("<{path}?{query}>; rel=\"next\""))
            }
            _ => None,
        };
        Ok(Page { rows, next })
    }
}

impl<T: Serialize> IntoResponse for Page<T> {
    fn into_response(self) -> Response {
        let mut response = Json(self.rows).into_response();
        // The query was percent-encoded, so the value is plain ASCII.
        if let Some(link) = self.next.and_then(|l| HeaderValue::from_str(&l).ok()) {
            response.headers_mut().insert(header::LINK, link);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Query {
        source: Option<String>,
        kind: Option<String>,
        before: Option<i64>,
        limit: Option<u32>,
    }

    fn link<T>(page: &Page<T>) -> Option<&str> {
        page.next.as_deref()
    }

    #[test]
    fn a_full_page_links_to_the_rows_below_its_last_key_keeping_the_filters() {
        let query = |before| Query {
            source: Some("help desk & co".into()),
            kind: None,
            before: Some(before),
            limit: Some(3),
        };
        let full = Page::new("/api/events", vec![9, 7, 4], 3, |k| *k, query).unwrap();
        assert_eq!(
            link(&full),
            Some("</api/events?source=help+desk+%26+co&before=4&limit=3>; rel=\"next\"")
        );
        let short = Page::new("/api/events", vec![3, 1], 3, |k| *k, query).unwrap();
        assert_eq!(link(&short), None);
        let empty = Page::new("/api/events", Vec::<i64>::new(), 3, |k| *k, query).unwrap();
        assert_eq!(link(&empty), None);
    }

    #[test]
    fn page_sizes_default_cap_and_refuse_zero() {
        assert_eq!(page_size(None).unwrap(), DEFAULT_LIMIT);
        assert_eq!(page_size(Some(7)).unwrap(), 7);
        assert_eq!(page_size(Some(50_000)).unwrap(), MAX_LIMIT);
        assert!(matches!(page_size(Some(0)), Err(ApiError::InvalidQuery(_))));
    }
}
