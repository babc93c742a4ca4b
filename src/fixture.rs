//! Fixture files: a webhook body as a sender would post it, plus an optional `.headers` file with
//! the sender's static headers. Signatures are never stored: they are computed at send time.
//!
//! `fixtures/happyfox/ticket_created.json` belongs to source `happyfox` (its directory) unless a
//! source is named explicitly; `ticket_created.headers` beside it holds `Name: value` lines.

use crate::ingress::Source;
use crate::ingress::verify::Signed;
use crate::kernel::event::Event;
use anyhow::{Context, bail};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Fixture {
    pub path: PathBuf,
    pub body: Vec<u8>,
    pub headers: Vec<(String, String)>,
}

impl Fixture {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let body = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_slice::<serde_json::Value>(&body)
            .with_context(|| format!("{} is not valid JSON", path.display()))?;
        let headers_path = path.with_extension("headers");
        let headers = if headers_path.exists() {
            parse_headers(&headers_path)?
        } else {
            vec![("Content-Type".into(), "application/json".into())]
        };
        Ok(Self {
            path: path.to_path_buf(),
            body,
            headers,
        })
    }

    /// The source a fixture belongs to: its parent directory's name.
    pub fn default_source(&self) -> Option<String> {
        self.path
            .parent()
            .and_then(Path::file_name)
            .and_then(|n| n.to_str())
            .map(str::to_string)
    }

    /// A delivery id that is the same every time this body is sent, like a sender's retry.
    pub fn stable_id(&self) -> String {
        let digest = Sha256::digest(&self.body);
        format!("msg_{}", &hex::encode(digest)[..24])
    }

    /// The fixture's headers plus what `source` would add to sign it now.
    pub fn sign(&self, source: &Source, msg_id: &str, now: i64) -> (Vec<(String, String)>, Signed) {
        let signed = source.verifier.sign(&self.body, msg_id, now);
        let mut headers = self.headers.clone();
        headers.extend(signed.headers.iter().cloned());
        (headers, signed)
    }

    /// Signs this fixture for `source` as its sender would at `now` and accepts it as
    /// `POST /webhooks/{source}` does: verified, adapted, normalized.
    pub fn accept(
        &self,
        source: &Source,
        msg_id: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> anyhow::Result<(Event, serde_json::Value)> {
        let (headers, signed) = self.sign(source, msg_id, now.timestamp());
        let mut map = http::HeaderMap::new();
        for (name, value) in &headers {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes())
                    .with_context(|| format!("header name {name:?}"))?,
                http::HeaderValue::from_str(value)
                    .with_context(|| format!("value of header {name}"))?,
            );
        }
        // The query string exactly as an HTTP client would encode it.
        let query = signed.query.as_ref().map(|(param, value)| {
            let mut url = reqwest::Url::parse("http://replay.invalid/").expect("a valid URL");
            url.query_pairs_mut().append_pair(param, value);
            url.query().unwrap_or_default().to_string()
        });
        Ok(source.accept(&map, query.as_deref(), &self.body, now)?)
    }
}

fn parse_headers(path: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut headers = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            bail!(
                "{}:{}: expected `Name: value`, found {line:?}",
                path.display(),
                n + 1
            );
        };
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    Ok(headers)
}
