//! Ingress: from the raw bytes of a webhook request to a verified, normalized `Event`.
//!
//! The order is fixed and deliberate: the signature is checked over the raw bytes before anything
//! is parsed, so unauthenticated input is never interpreted.

pub mod route;
pub mod select;
pub mod sources;
pub mod verify;

use crate::config::{AlgorithmName, EncodingName, SchemeName, SourceConfig};
use crate::kernel::ConfigError;
use crate::kernel::event::{AccountId, Event, EventId, SourceName};
use chrono::{DateTime, Utc};
use http::HeaderMap;
use select::Reads;
use serde_json::Value;
use sha2::{Digest, Sha256};
use sources::{Adapter, AdapterOptions, id_string};
use std::path::Path;
use verify::{Encoding, HmacAlgorithm, Scheme, Verifier, VerifyError};

/// A configured webhook endpoint, ready to accept requests.
pub struct Source {
    pub name: SourceName,
    /// The adapter that reads this source's payloads (`kind`).
    pub adapter: &'static dyn Adapter,
    pub scheme: SchemeName,
    pub verifier: Verifier,
    account: AccountRule,
    subject_pointer: Option<String>,
    id_pointer: Option<String>,
    id_header: Option<http::HeaderName>,
    options: AdapterOptions,
    /// What this source itself reads of a payload: its adapter's fields and its pointers.
    own_reads: Reads,
    /// What `accept` parses: everything, until `routed_by` says what routing reads as well.
    reads: Reads,
}

enum AccountRule {
    Fixed(AccountId),
    Pointer(String),
    /// Truto names the integrated account in the payload itself.
    FromPayload,
}

/// Why a request was not turned into an event. Each maps to one HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum IngressError {
    #[error("{0}")]
    Signature(#[from] VerifyError),
    #[error("content type {0:?} is not JSON; send application/json")]
    UnsupportedMediaType(String),
    #[error("body is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("{0}")]
    Unmappable(String),
    /// The request names its event id, and the name is empty: stored, it would make every later
    /// event with an empty id a duplicate of this one.
    #[error("{0}")]
    EmptyEventId(String),
}

impl Source {
    /// Compiles one `[sources.NAME]` table, read by `adapter` (the one its `kind` names); every
    /// problem names its key.
    pub fn build(
        file: &Path,
        name: &str,
        cfg: &SourceConfig,
        adapter: &'static dyn Adapter,
    ) -> Result<Source, Vec<ConfigError>> {
        let key = |k: &str| format!("sources.{name}.{k}");
        let mut errors = Vec::new();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        {
            errors.push(ConfigError::new(
                file,
                format!("sources.{name}"),
                "source names may use lower-case letters, digits, - and _ (they become /webhooks/NAME)",
            ));
        }
        // Keys that only mean something for one scheme are an error elsewhere: a typo'd scheme
        // must not silently ignore the user's settings.
        let only =
            |present: bool, k: &str, schemes: &[SchemeName], errors: &mut Vec<ConfigError>| {
                if present && !schemes.contains(&cfg.scheme) {
                    let names: Vec<_> = schemes
                        .iter()
                        .map(|s| format!("{:?}", s.as_str()))
                        .collect();
                    errors.push(ConfigError::new(
                        file,
                        key(k),
                        format!("only used with scheme = {}", names.join(" or ")),
                    ));
                }
            };
        only(
            cfg.header.is_some(),
            "header",
            &[SchemeName::Hmac, SchemeName::HeaderToken],
            &mut errors,
        );
        only(
            cfg.algorithm.is_some(),
            "algorithm",
            &[SchemeName::Hmac],
            &mut errors,
        );
        only(
            cfg.encoding.is_some(),
            "encoding",
            &[SchemeName::Hmac],
            &mut errors,
        );
        only(
            cfg.prefix.is_some(),
            "prefix",
            &[SchemeName::Hmac],
            &mut errors,
        );
        only(
            cfg.param.is_some(),
            "param",
            &[SchemeName::UrlToken],
            &mut errors,
        );

        for (k, pointer) in [
            ("account_pointer", &cfg.account_pointer),
            ("subject_pointer", &cfg.subject_pointer),
            ("id_pointer", &cfg.id_pointer),
            ("event_pointer", &cfg.event_pointer),
        ] {
            if let Some(p) = pointer
                && !p.starts_with('/')
            {
                errors.push(ConfigError::new(
                    file,
                    key(k),
                    format!("expected a JSON pointer starting with \"/\", found {p:?}"),
                ));
            }
        }
        if !adapter.is_generic() && (cfg.event.is_some() || cfg.event_pointer.is_some()) {
            let k = if cfg.event.is_some() {
                "event"
            } else {
                "event_pointer"
            };
            errors.push(ConfigError::new(
                file,
                key(k),
                format!(
                    "only used with kind = \"generic\"; {} events are named by their adapter",
                    cfg.kind
                ),
            ));
        }
        if adapter.is_generic() && cfg.subject_pointer.is_none() {
            errors.push(ConfigError::new(
                file,
                key("subject_pointer"),
                "required for kind = \"generic\": where the subject (what the event is about) is in the payload",
            ));
        }

        let account = match (&cfg.account, &cfg.account_pointer) {
            (Some(_), Some(_)) => {
                errors.push(ConfigError::new(
                    file,
                    key("account"),
                    "give either account or account_pointer, not both",
                ));
                None
            }
            (Some(a), None) if a.trim().is_empty() => {
                errors.push(ConfigError::new(file, key("account"), "must not be empty"));
                None
            }
            (Some(a), None) => Some(AccountRule::Fixed(AccountId::new(a.trim()))),
            (None, Some(p)) => Some(AccountRule::Pointer(p.clone())),
            (None, None) if adapter.account_in_payload() => Some(AccountRule::FromPayload),
            (None, None) => {
                errors.push(ConfigError::new(
                    file,
                    key("account"),
                    "required: the account these events belong to (or account_pointer = \"/json/pointer\")",
                ));
                None
            }
        };

        let header_name = |k: &str, value: &str, errors: &mut Vec<ConfigError>| {
            http::HeaderName::try_from(value.to_ascii_lowercase())
                .map_err(|_| {
                    errors.push(ConfigError::new(
                        file,
                        key(k),
                        format!("{value:?} is not a valid HTTP header name"),
                    ))
                })
                .ok()
        };
        let id_header = cfg
            .id_header
            .as_deref()
            .and_then(|h| header_name("id_header", h, &mut errors));

        let scheme = match cfg.scheme {
            SchemeName::StandardWebhooks => Some(Scheme::StandardWebhooks),
            SchemeName::Github => Some(Scheme::Github),
            SchemeName::Stripe => Some(Scheme::Stripe),
            SchemeName::Truto => Some(Scheme::Truto),
            SchemeName::Hmac => match cfg.header.as_deref() {
                None => {
                    errors.push(ConfigError::new(
                        file,
                        key("header"),
                        "required with scheme = \"hmac\": the header carrying the signature",
                    ));
                    None
                }
                Some(h) => header_name("header", h, &mut errors).map(|header| Scheme::Hmac {
                    header,
                    algorithm: match cfg.algorithm.unwrap_or(AlgorithmName::Sha256) {
                        AlgorithmName::Sha256 => HmacAlgorithm::Sha256,
                        AlgorithmName::Sha1 => HmacAlgorithm::Sha1,
                    },
                    encoding: match cfg.encoding.unwrap_or(EncodingName::Hex) {
                        EncodingName::Hex => Encoding::Hex,
                        EncodingName::Base64 => Encoding::Base64,
                    },
                    prefix: cfg.prefix.clone().filter(|p| !p.is_empty()),
                }),
            },
            SchemeName::HeaderToken => {
                let h = cfg.header.as_deref().unwrap_or("x-hookwise-token");
                header_name("header", h, &mut errors).map(|header| Scheme::HeaderToken { header })
            }
            SchemeName::UrlToken => Some(Scheme::UrlToken {
                param: cfg.param.clone().unwrap_or_else(|| "token".into()),
            }),
        };
        let verifier = scheme.and_then(|scheme| {
            Verifier::new(scheme, cfg.secrets.clone(), cfg.tolerance_secs)
                .map_err(|e| errors.push(ConfigError::new(file, key("secrets"), e.to_string())))
                .ok()
        });

        let mut own_reads = adapter
            .reads()
            .map_or_else(Reads::everything, Reads::patterns);
        for pointer in [
            &cfg.account_pointer,
            &cfg.subject_pointer,
            &cfg.id_pointer,
            &cfg.event_pointer,
        ]
        .into_iter()
        .flatten()
        {
            own_reads.pointer(pointer);
        }

        match (verifier, account) {
            (Some(verifier), Some(account)) if errors.is_empty() => Ok(Source {
                name: SourceName::new(name),
                adapter,
                scheme: cfg.scheme,
                verifier,
                account,
                subject_pointer: cfg.subject_pointer.clone(),
                id_pointer: cfg.id_pointer.clone(),
                id_header,
                options: AdapterOptions {
                    source: name.replace('-', "_"),
                    event: cfg.event.clone(),
                    event_pointer: cfg.event_pointer.clone(),
                },
                own_reads,
                reads: Reads::everything(),
            }),
            _ => Err(errors),
        }
    }

    /// From now on `accept` parses only what this source and `router` read of a payload: the
    /// `Value` it returns is complete for them (`select`), and for no one else. Without this call
    /// it parses the whole payload.
    pub fn routed_by(&mut self, router: &route::EventRouter) {
        let mut reads = self.own_reads.clone();
        reads.merge(&router.reads());
        self.reads = reads;
    }

    /// Verifies and normalizes one request. Returns the event and its payload as far as this
    /// source and its router read it (`routed_by`; the whole payload otherwise): routing needs
    /// it, and parsing it twice would double the most expensive step of the ack path.
    pub fn accept(
        &self,
        headers: &HeaderMap,
        query: Option<&str>,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<(Event, Value), IngressError> {
        let verified = self
            .verifier
            .verify(headers, query, body, now.timestamp())?;

        if let Some(ct) = headers.get(http::header::CONTENT_TYPE) {
            let ct = ct.to_str().unwrap_or_default();
            if !is_json(ct) {
                return Err(IngressError::UnsupportedMediaType(ct.to_string()));
            }
        }
        // JSON is UTF-8 by definition (RFC 8259 §8.1), so the body is text before it is JSON.
        let text = std::str::from_utf8(verified.body()).map_err(|e| {
            IngressError::InvalidJson(format!(
                "body is not UTF-8 (byte {} is not part of a valid character)",
                e.valid_up_to()
            ))
        })?;
        let payload: Value = self
            .reads
            .parse(text)
            .map_err(|e| IngressError::InvalidJson(e.to_string()))?;
        let normalized = sources::normalize(self.adapter, &payload, &self.options)
            .map_err(IngressError::Unmappable)?;

        let account = match &self.account {
            AccountRule::Fixed(a) => a.clone(),
            AccountRule::Pointer(p) => AccountId::new(
                payload
                    .pointer(p)
                    .and_then(id_string)
                    .ok_or_else(|| IngressError::Unmappable(format!("no account at {p}")))?,
            ),
            AccountRule::FromPayload => AccountId::new(normalized.account.clone().ok_or_else(|| {
                IngressError::Unmappable(
                    "no integrated account id in the payload; set account or account_pointer for this source".into(),
                )
            })?),
        };
        let subject = match &self.subject_pointer {
            Some(p) => payload
                .pointer(p)
                .and_then(id_string)
                .ok_or_else(|| IngressError::Unmappable(format!("no subject at {p}")))?,
            None => normalized.subject.clone().ok_or_else(|| {
                IngressError::Unmappable("no subject (ticket or company id) in the payload".into())
            })?,
        };

        // The sender's own delivery id wins: it is what stays the same across its retries. An
        // id that is given but blank is refused, wherever it comes from.
        let empty = |what: String| IngressError::EmptyEventId(format!("{what} is empty"));
        let header_id = match self.id_header.as_ref().map(|h| (h, headers.get(h))) {
            Some((h, Some(v))) => Some(
                v.to_str()
                    .ok()
                    .map(str::trim)
                    .filter(|v| !v.is_empty())
                    .ok_or_else(|| empty(format!("the event id header {h}")))?
                    .to_string(),
            ),
            _ => None,
        };
        let message_id = match verified.message_id() {
            Some(id) if id.trim().is_empty() => {
                return Err(empty(format!(
                    "the delivery id of scheme {}",
                    self.scheme.as_str()
                )));
            }
            id => id.map(str::to_string),
        };
        let pointer_id = match self.id_pointer.as_deref() {
            Some(p) => match payload.pointer(p) {
                Some(Value::String(s)) if s.trim().is_empty() => {
                    return Err(empty(format!("the event id at {p}")));
                }
                value => value.and_then(id_string),
            },
            None => None,
        };
        let id = header_id
            .or(message_id)
            .or(pointer_id)
            .or(normalized.id)
            .unwrap_or_else(|| format!("sha256:{}", hex::encode(Sha256::digest(body))));

        let event = Event {
            id: EventId::new(id),
            source: self.name.clone(),
            kind: normalized.kind,
            account,
            subject,
            occurred_at: normalized.occurred_at.unwrap_or(now),
            received_at: now,
            actor: normalized.actor,
            // Stored exactly as it was signed.
            payload: text.to_owned(),
        };
        Ok((event, payload))
    }
}

/// `application/json`, `application/something+json`, with or without parameters.
fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

#[cfg(test)]
mod tests {
    use super::is_json;

    #[test]
    fn json_content_types() {
        assert!(is_json("application/json"));
        assert!(is_json("Application/JSON; charset=utf-8"));
        assert!(is_json("application/cloudevents+json"));
        assert!(!is_json("text/plain"));
        assert!(!is_json("multipart/form-data; boundary=x"));
        assert!(!is_json("application/x-www-form-urlencoded"));
    }
}
