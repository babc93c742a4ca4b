//! Shared input shapes of the fuzz targets: a selector byte, a header block, a body.

#![allow(dead_code)]

use http::{HeaderMap, HeaderName, HeaderValue};

/// Splits `data` at the first blank line (`\n\n`): the head before it, the body after. Without
/// one, everything is body.
pub fn split_head(data: &[u8]) -> (&[u8], &[u8]) {
    match data.windows(2).position(|w| w == b"\n\n") {
        Some(i) => (&data[..i], &data[i + 2..]),
        None => (&[], data),
    }
}

/// `name: value` lines as headers, appended in order (repeats kept); lines that are not a valid
/// header are skipped. A line starting with `?` is the query string (the last one wins).
pub fn headers(head: &[u8]) -> (HeaderMap, Option<String>) {
    let mut map = HeaderMap::new();
    let mut query = None;
    for line in head.split(|b| *b == b'\n') {
        if let Some(q) = line.strip_prefix(b"?") {
            query = Some(String::from_utf8_lossy(q).into_owned());
            continue;
        }
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        let value = value.strip_prefix(b" ").unwrap_or(value);
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
            map.append(n, v);
        }
    }
    (map, query)
}
