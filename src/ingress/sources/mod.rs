//! Source adapters: what each sender's payload means, as the fields of a normalized `Event`.
//! The `Adapter` trait is implemented here for `generic` sources and by each connector that
//! sends webhooks (`crate::connectors::*::webhook`), with the shared reading helpers below.
//!
//! Adapters are pure functions over the parsed payload. They read tolerantly (ids may be numbers or
//! strings, unknown fields are ignored) because these payloads are partly undocumented and drift.

mod generic;

use crate::kernel::event::Actor;
use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use serde_json::Value;

/// What an adapter could read from a payload. Missing parts are filled in by the source's config
/// (fixed account, pointers) or by the ingress (body hash as id, receive time).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Normalized {
    pub kind: String,
    pub id: Option<String>,
    pub account: Option<String>,
    pub subject: Option<String>,
    pub occurred_at: Option<DateTime<Utc>>,
    pub actor: Option<Actor>,
}

/// Per-source settings the adapters need (only `generic` uses them today).
#[derive(Debug, Default, Clone)]
pub struct AdapterOptions {
    /// The source's name; generic kinds are prefixed with it so they cannot pose as another sender.
    pub source: String,
    pub event: Option<String>,
    pub event_pointer: Option<String>,
}

/// Reads one kind of sender's payloads.
pub trait Adapter: Send + Sync + 'static {
    /// The `kind` of `[sources.NAME]` this adapter reads: `generic`, `happyfox`...
    fn kind(&self) -> &'static str;
    /// The payload's meaning; the error says what was expected. `payload` is a JSON object.
    fn normalize(&self, payload: &Value, options: &AdapterOptions) -> Result<Normalized, String>;
    /// What `normalize` reads of a payload, as JSON pointers where `*` stands for every member
    /// or element (`/ticket/updates/*/by`): accepting an event parses only these, the source's
    /// pointers and what routing reads (`crate::ingress::select`). A place missing here reads as
    /// absent. `None`, the default, parses the whole payload.
    fn reads(&self) -> Option<&'static [&'static str]> {
        None
    }
    /// Events name their account in the payload (Truto's integrated account), so a source of
    /// this kind needs neither `account` nor `account_pointer`.
    fn account_in_payload(&self) -> bool {
        false
    }
    /// The generic adapter: events are named by `event`/`event_pointer` and the subject is found
    /// by `subject_pointer`, rather than by the adapter.
    fn is_generic(&self) -> bool {
        false
    }
}

/// Any JSON sender, read through the source's pointers.
pub struct Generic;

impl Adapter for Generic {
    fn kind(&self) -> &'static str {
        "generic"
    }
    fn normalize(&self, payload: &Value, options: &AdapterOptions) -> Result<Normalized, String> {
        generic::normalize(payload, options)
    }
    fn reads(&self) -> Option<&'static [&'static str]> {
        // Only the source's own pointers (`event_pointer` among them), which it adds itself.
        Some(&[])
    }
    fn is_generic(&self) -> bool {
        true
    }
}

/// Reads a payload with `adapter`. The error says what was expected.
pub fn normalize(
    adapter: &dyn Adapter,
    payload: &Value,
    options: &AdapterOptions,
) -> Result<Normalized, String> {
    if !payload.is_object() {
        return Err("expected a JSON object".into());
    }
    adapter.normalize(payload, options)
}

/// An id-like value as text: strings as they are, integers in decimal; anything else is not an id.
pub fn id_string(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The first pointer that leads to an id-like value.
pub fn first_id(payload: &Value, pointers: &[&str]) -> Option<String> {
    pointers
        .iter()
        .find_map(|p| payload.pointer(p).and_then(id_string))
}

/// Timestamps as senders write them: RFC 3339, HappyFox's `YYYY-MM-DD HH:MM:SS` (UTC), or Unix
/// seconds / milliseconds as a number.
pub fn parse_time(value: &Value) -> Option<DateTime<Utc>> {
    match value {
        Value::String(s) => {
            let s = s.trim();
            DateTime::parse_from_rfc3339(s)
                .map(|t| t.with_timezone(&Utc))
                .ok()
                .or_else(|| {
                    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S")
                        .ok()
                        .map(|n| n.and_utc())
                })
        }
        Value::Number(n) => {
            let n = n.as_i64()?;
            // Larger than any plausible seconds value: milliseconds.
            if n > 100_000_000_000 {
                Utc.timestamp_millis_opt(n).single()
            } else {
                Utc.timestamp_opt(n, 0).single()
            }
        }
        _ => None,
    }
}

/// The first pointer that leads to a readable timestamp.
pub fn first_time(payload: &Value, pointers: &[&str]) -> Option<DateTime<Utc>> {
    pointers
        .iter()
        .find_map(|p| payload.pointer(p).and_then(parse_time))
}

/// Lower-case dotted form of a sender's event name: `Ticket Created`, `ticket_created` and
/// `ticket:created` all become `ticket.created`.
pub fn dotted(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.trim().chars() {
        match c {
            'a'..='z' | '0'..='9' | '_' => out.push(c),
            'A'..='Z' => out.push(c.to_ascii_lowercase()),
            _ => {
                if !out.is_empty() && !out.ends_with('.') {
                    out.push('.');
                }
            }
        }
    }
    out.trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests;
