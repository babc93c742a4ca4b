//! Webhook authentication for ingress: verifies signatures/tokens over the raw body bytes, and signs the same way for the `sign`/`replay` CLI and tests.

use std::fmt;

use crate::kernel::Secret;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::general_purpose::STANDARD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use hmac::{Hmac, KeyInit, Mac};
use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderName};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Senders disagree on base64 padding, so both forms decode; encoding always pads. Non-zero
/// trailing bits are refused for signatures so that each tag has exactly one spelling.
const SIG_B64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);
/// Secrets decode like the Python reference library (padding optional, trailing bits ignored),
/// so unpadded `whsec_` secrets that work there work here too.
const SECRET_B64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);
const WEBHOOK_HEADERS: [&str; 3] = ["webhook-id", "webhook-timestamp", "webhook-signature"];
const SVIX_HEADERS: [&str; 3] = ["svix-id", "svix-timestamp", "svix-signature"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HmacAlgorithm {
    Sha256,
    Sha1,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Hex,
    Base64,
}

#[derive(Debug, Clone)]
pub enum Scheme {
    /// Standard Webhooks / Svix (`webhook-*` or `svix-*`): `{id}.{ts}.{body}`, HMAC-SHA256 keyed
    /// with the base64-decoded secret (optional `whsec_`), header lists `v1,<base64>` entries.
    StandardWebhooks,
    /// GitHub: `X-Hub-Signature-256: sha256=<hex>` over the body; id from `X-GitHub-Delivery`.
    Github,
    /// Stripe: `Stripe-Signature: t=<unix>,v1=<hex>...` over `{t}.{body}`; the secret is the
    /// literal key even when it starts with `whsec_`.
    Stripe,
    /// Truto: `x-truto-signature: [format=sha256,]v=<hex|base64>` over the body.
    Truto,
    /// One header carrying an HMAC of the body (Shopify, HappyFox, ...); `prefix` is stripped
    /// before decoding.
    Hmac {
        header: HeaderName,
        algorithm: HmacAlgorithm,
        encoding: Encoding,
        prefix: Option<String>,
    },
    /// Plain shared secret in a header; for `authorization` an optional `Bearer ` is stripped.
    HeaderToken { header: HeaderName },
    /// Plain shared secret in the query string parameter `param`.
    UrlToken { param: String },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifierConfigError {
    #[error("at least one secret is required")]
    NoSecrets,
    #[error("secret #{0} is empty")]
    EmptySecret(usize),
    #[error("secret #{index} is not a valid Standard Webhooks secret: {reason}")]
    InvalidStandardWebhooksSecret { index: usize, reason: &'static str },
    #[error("URL token parameter name is empty")]
    EmptyParam,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    #[error("missing header {0}")]
    MissingHeader(String),
    #[error("malformed header {header}: {reason}")]
    Malformed {
        header: String,
        reason: &'static str,
    },
    #[error("timestamp is older than the {0} s tolerance")]
    Stale(u64),
    #[error("timestamp is more than {0} s in the future")]
    Future(u64),
    #[error("no signature matched")]
    NoMatch,
    #[error("missing token")]
    MissingToken,
}

impl VerifyError {
    /// Stable slug for metrics and responses; Display text may change, these must not.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingHeader(_) => "missing-signature",
            Self::Malformed { .. } => "malformed-signature",
            Self::Stale(_) => "stale-timestamp",
            Self::Future(_) => "future-timestamp",
            Self::NoMatch => "signature-mismatch",
            Self::MissingToken => "missing-token",
        }
    }
}

/// Proof that a body passed verification: only `Verifier::verify` can build one.
#[derive(Debug)]
pub struct Verified<'a> {
    body: &'a [u8],
    message_id: Option<String>,
    timestamp: Option<i64>,
}

impl<'a> Verified<'a> {
    pub fn body(&self) -> &'a [u8] {
        self.body
    }
    /// Signed for StandardWebhooks; GitHub's delivery id is NOT covered by its signature.
    pub fn message_id(&self) -> Option<&str> {
        self.message_id.as_deref()
    }
    pub fn timestamp(&self) -> Option<i64> {
        self.timestamp
    }
}

/// Header names are lowercase; `query` is a raw (not percent-encoded) name/value pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    pub headers: Vec<(String, String)>,
    pub query: Option<(String, String)>,
}

pub struct Verifier {
    scheme: Scheme,
    /// HMAC keys (Standard Webhooks secrets decoded once here), or SHA-256 digests of tokens so
    /// that comparison time does not depend on the token length.
    keys: Vec<Vec<u8>>,
    signing_secret: Secret,
    tolerance: u64,
}

/// Hand-written so that key material never reaches logs.
impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("scheme", &self.scheme)
            .field("secrets", &self.keys.len())
            .field("tolerance", &self.tolerance)
            .finish()
    }
}

impl Verifier {
    pub fn new(
        scheme: Scheme,
        secrets: Vec<Secret>,
        tolerance_secs: u64,
    ) -> Result<Self, VerifierConfigError> {
        if matches!(&scheme, Scheme::UrlToken { param } if param.is_empty()) {
            return Err(VerifierConfigError::EmptyParam);
        }
        let keys = secrets.iter().enumerate().map(|(index, secret)| {
            let raw = secret.expose();
            match &scheme {
                _ if raw.is_empty() => Err(VerifierConfigError::EmptySecret(index)),
                Scheme::StandardWebhooks => decode_whsec(raw).map_err(|reason| {
                    VerifierConfigError::InvalidStandardWebhooksSecret { index, reason }
                }),
                Scheme::HeaderToken { .. } | Scheme::UrlToken { .. } => {
                    Ok(Sha256::digest(raw).to_vec())
                }
                _ => Ok(raw.as_bytes().to_vec()),
            }
        });
        let keys = keys.collect::<Result<Vec<_>, _>>()?;
        let signing_secret = secrets
            .into_iter()
            .next()
            .ok_or(VerifierConfigError::NoSecrets)?;
        Ok(Self {
            scheme,
            keys,
            signing_secret,
            tolerance: tolerance_secs,
        })
    }

    /// Error precedence: missing header → malformed header → timestamp window → signature. The
    /// window is checked before any HMAC work (as the reference libraries do), so a stale request
    /// with a bad signature is `Stale`. A signature value that does not decode (bad hex/base64,
    /// wrong length) is just a wrong signature: `NoMatch`, never `Malformed`.
    pub fn verify<'a>(
        &self,
        headers: &HeaderMap,
        query: Option<&str>,
        body: &'a [u8],
        now: i64,
    ) -> Result<Verified<'a>, VerifyError> {
        let sha256 = HmacAlgorithm::Sha256;
        let (mut message_id, mut timestamp) = (None, None);
        let matched = match &self.scheme {
            Scheme::StandardWebhooks => {
                // svix-* names only when no webhook-* header is present at all, so a missing
                // header is reported under the name the sender actually uses.
                let present = |names: [&str; 3]| names.iter().any(|n| headers.contains_key(*n));
                let svix = !present(WEBHOOK_HEADERS) && present(SVIX_HEADERS);
                let names = if svix { SVIX_HEADERS } else { WEBHOOK_HEADERS };
                let id = required(headers, names[0])?;
                let ts_raw = required(headers, names[1])?;
                let list = required(headers, names[2])?;
                timestamp = Some(self.check_window(names[1], ts_raw, now)?);
                message_id = Some(id.to_owned());
                // Entries of other versions (v1a, v2), without a comma, or with bad base64 are
                // skipped, so even a wholly unparseable list is NoMatch rather than Malformed.
                let tags = list
                    .split_ascii_whitespace()
                    .filter_map(|entry| SIG_B64.decode(entry.strip_prefix("v1,")?).ok());
                self.any_mac(sha256, &format!("{id}.{ts_raw}."), body, tags)
            }
            Scheme::Github => {
                const H: &str = "x-hub-signature-256";
                let sig = required(headers, H)?.strip_prefix("sha256=");
                let sig = sig.ok_or_else(|| malformed(H, "expected sha256= prefix"))?;
                message_id = optional(headers, "x-github-delivery")?.map(str::to_owned);
                self.any_mac(sha256, "", body, hex::decode(sig))
            }
            Scheme::Stripe => {
                const H: &str = "stripe-signature";
                let (mut t, mut tags) = (None, Vec::new());
                for item in required(headers, H)?.split(',') {
                    // Other schemes (test-mode v0 decoys) and junk are ignored, as Stripe does.
                    match item.trim().split_once('=') {
                        Some(("t", v)) if t.is_none() => t = Some(v),
                        Some(("v1", v)) => tags.extend(hex::decode(v)),
                        _ => {}
                    }
                }
                let t = t.ok_or_else(|| malformed(H, "no t= timestamp"))?;
                timestamp = Some(self.check_window(H, t, now)?);
                self.any_mac(sha256, &format!("{t}."), body, tags)
            }
            Scheme::Truto => {
                const H: &str = "x-truto-signature";
                let value = required(headers, H)?;
                let sig = value
                    .strip_prefix("format=sha256,")
                    .map_or(value, str::trim_start);
                let sig = sig
                    .strip_prefix("v=")
                    .ok_or_else(|| malformed(H, "expected v="))?;
                // Truto documents hex, a production integration saw base64: accept both. Base64
                // of 64 chars is never 32 bytes, so a 64-char value can only be hex.
                let tag = match sig.len() {
                    64 => hex::decode(sig).ok(),
                    _ => SIG_B64.decode(sig).ok(),
                };
                self.any_mac(sha256, "", body, tag)
            }
            Scheme::Hmac {
                header: h,
                algorithm,
                encoding,
                prefix,
            } => {
                let value = required(headers, h.as_str())?;
                let value = value.strip_prefix(prefix.as_deref().unwrap_or(""));
                let value = value.ok_or_else(|| malformed(h.as_str(), "missing prefix"))?;
                let tag = match encoding {
                    Encoding::Hex => hex::decode(value).ok(),
                    Encoding::Base64 => SIG_B64.decode(value).ok(),
                };
                self.any_mac(*algorithm, "", body, tag)
            }
            Scheme::HeaderToken { header } if *header == AUTHORIZATION => {
                self.token_ok(strip_bearer(required(headers, header.as_str())?).as_bytes())?
            }
            Scheme::HeaderToken { header } => {
                self.token_ok(required(headers, header.as_str())?.as_bytes())?
            }
            Scheme::UrlToken { param } => {
                let token = query.and_then(|q| query_param(q, param));
                self.token_ok(&token.unwrap_or_default())?
            }
        };
        if !matched {
            return Err(VerifyError::NoMatch);
        }
        Ok(Verified {
            body,
            message_id,
            timestamp,
        })
    }

    /// Any (tag, secret) pair may match: senders list several tags while rotating, and we hold
    /// several secrets while rotating ours. Slice `ct_eq` is false on a length mismatch.
    fn any_mac<I>(&self, alg: HmacAlgorithm, signed_prefix: &str, body: &[u8], tags: I) -> bool
    where
        I: IntoIterator<Item = Vec<u8>>,
    {
        let tags: Vec<Vec<u8>> = tags.into_iter().collect();
        self.keys.iter().any(|key| {
            let expected = mac(alg, key, signed_prefix, body);
            tags.iter().any(|tag| bool::from(expected.ct_eq(tag)))
        })
    }

    /// Both sides are SHA-256 digests, so timing reveals nothing about the token length.
    fn token_ok(&self, token: &[u8]) -> Result<bool, VerifyError> {
        if token.is_empty() {
            return Err(VerifyError::MissingToken);
        }
        let digest = Sha256::digest(token).to_vec();
        Ok(self.keys.iter().any(|k| bool::from(k.ct_eq(&digest))))
    }

    /// Timestamps must be plain decimal digits; tolerance applies in both directions.
    fn check_window(&self, header: &str, raw: &str, now: i64) -> Result<i64, VerifyError> {
        if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
            return Err(malformed(header, "timestamp is not a decimal integer"));
        }
        let ts: i64 = raw.parse().map_err(|_| malformed(header, "out of range"))?;
        let (age, tol) = (i128::from(now) - i128::from(ts), i128::from(self.tolerance));
        match () {
            _ if age > tol => Err(VerifyError::Stale(self.tolerance)),
            _ if -age > tol => Err(VerifyError::Future(self.tolerance)),
            _ => Ok(ts),
        }
    }

    /// What a sender would add, signed with the FIRST secret.
    pub fn sign(&self, body: &[u8], msg_id: &str, now: i64) -> Signed {
        let secret = self.signing_secret.expose();
        let sha256 = |prefix: &str| mac(HmacAlgorithm::Sha256, secret.as_bytes(), prefix, body);
        let pairs = match &self.scheme {
            Scheme::StandardWebhooks => {
                let sig = mac(
                    HmacAlgorithm::Sha256,
                    &self.keys[0],
                    &format!("{msg_id}.{now}."),
                    body,
                );
                vec![
                    ("webhook-id", msg_id.to_owned()),
                    ("webhook-timestamp", now.to_string()),
                    ("webhook-signature", format!("v1,{}", STANDARD.encode(sig))),
                ]
            }
            Scheme::Github => vec![
                (
                    "x-hub-signature-256",
                    format!("sha256={}", hex::encode(sha256(""))),
                ),
                ("x-github-delivery", msg_id.to_owned()),
            ],
            Scheme::Stripe => {
                let sig = hex::encode(sha256(&format!("{now}.")));
                vec![("stripe-signature", format!("t={now},v1={sig}"))]
            }
            Scheme::Truto => {
                let sig = hex::encode(sha256(""));
                vec![("x-truto-signature", format!("format=sha256,v={sig}"))]
            }
            Scheme::Hmac {
                header,
                algorithm,
                encoding,
                prefix,
            } => {
                let tag = mac(*algorithm, secret.as_bytes(), "", body);
                let tag = match encoding {
                    Encoding::Hex => hex::encode(tag),
                    Encoding::Base64 => STANDARD.encode(tag),
                };
                let value = format!("{}{tag}", prefix.as_deref().unwrap_or(""));
                vec![(header.as_str(), value)]
            }
            Scheme::HeaderToken { header } if *header == AUTHORIZATION => {
                vec![(header.as_str(), format!("Bearer {secret}"))]
            }
            Scheme::HeaderToken { header } => vec![(header.as_str(), secret.to_owned())],
            Scheme::UrlToken { param } => {
                let (headers, query) = (Vec::new(), Some((param.clone(), secret.to_owned())));
                return Signed { headers, query };
            }
        };
        let headers = pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        let query = None;
        Signed { headers, query }
    }
}

fn decode_whsec(secret: &str) -> Result<Vec<u8>, &'static str> {
    let b64 = secret.strip_prefix("whsec_").unwrap_or(secret);
    if b64.is_empty() {
        return Err("no key after the whsec_ prefix");
    }
    SECRET_B64.decode(b64).map_err(|_| "not valid base64")
}

fn mac(alg: HmacAlgorithm, key: &[u8], signed_prefix: &str, body: &[u8]) -> Vec<u8> {
    fn run<M: Mac + KeyInit>(key: &[u8], signed_prefix: &str, body: &[u8]) -> Vec<u8> {
        let mut mac = <M as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
        mac.update(signed_prefix.as_bytes());
        mac.update(body);
        mac.finalize().into_bytes().to_vec()
    }
    match alg {
        HmacAlgorithm::Sha256 => run::<Hmac<Sha256>>(key, signed_prefix, body),
        HmacAlgorithm::Sha1 => run::<Hmac<Sha1>>(key, signed_prefix, body),
    }
}

fn malformed(header: &str, reason: &'static str) -> VerifyError {
    VerifyError::Malformed {
        header: header.to_owned(),
        reason,
    }
}

/// First value only. Bytes outside 0x20..=0x7E (tab, obs-text) make the header Malformed.
fn optional<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h str>, VerifyError> {
    let Some(value) = headers.get(name) else {
        return Ok(None);
    };
    match std::str::from_utf8(value.as_bytes()) {
        Ok(s) if s.bytes().all(|b| (0x20..=0x7e).contains(&b)) => Ok(Some(s.trim())),
        _ => Err(malformed(name, "value is not visible ASCII")),
    }
}

fn required<'h>(headers: &'h HeaderMap, name: &str) -> Result<&'h str, VerifyError> {
    optional(headers, name)?.ok_or_else(|| VerifyError::MissingHeader(name.to_owned()))
}

/// Header values arrive trimmed, so a bare "Bearer" (empty token) has no trailing space.
fn strip_bearer(value: &str) -> &str {
    match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim_start(),
        _ if value.eq_ignore_ascii_case("bearer") => "",
        _ => value,
    }
}

/// application/x-www-form-urlencoded lookup: the first `param` wins, `+` is a space, `%XX` is
/// decoded, invalid escapes are kept literally, and a leading `?` is tolerated.
fn query_param(query: &str, param: &str) -> Option<Vec<u8>> {
    let query = query.strip_prefix('?').unwrap_or(query);
    query.split('&').find_map(|pair| {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        (form_decode(name) == param.as_bytes()).then(|| form_decode(value))
    })
}

fn form_decode(s: &str) -> Vec<u8> {
    let (b, mut out, mut i) = (s.as_bytes(), Vec::new(), 0);
    while i < b.len() {
        match (b[i], b.get(i + 1..i + 3).and_then(|h| hex::decode(h).ok())) {
            (b'%', Some(byte)) => {
                out.extend(byte);
                i += 2;
            }
            (b'+', _) => out.push(b' '),
            (c, _) => out.push(c),
        }
        i += 1;
    }
    out
}

#[cfg(test)]
#[path = "verify_tests.rs"]
mod tests;
