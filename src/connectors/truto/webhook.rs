//! Truto webhook deliveries: `{id, event, payload, environment_id, webhook_id, created_at}`.
//! `record:*` events relay a third-party change for one integrated account; the shape of their
//! `payload` is not documented, so the account and record ids are looked for in several places.

use crate::ingress::sources::{Adapter, AdapterOptions, Normalized, dotted, first_id, first_time};
use serde_json::Value;

pub fn normalize(payload: &Value) -> Result<Normalized, String> {
    let event = payload
        .get("event")
        .or_else(|| payload.get("event_type"))
        .and_then(Value::as_str)
        .map(dotted)
        .filter(|e| !e.is_empty())
        .ok_or("expected a Truto delivery with an `event` such as \"record:created\"")?;

    let account = first_id(
        payload,
        &[
            "/payload/integrated_account_id",
            "/payload/integrated_account/id",
            "/integrated_account_id",
        ],
    )
    .or_else(|| {
        // integrated_account:* events carry the account itself as the payload.
        event
            .starts_with("integrated_account.")
            .then(|| first_id(payload, &["/payload/id"]))
            .flatten()
    });

    let subject = first_id(
        payload,
        &[
            "/payload/record/id",
            "/payload/record_id",
            "/payload/data/id",
            "/payload/id",
        ],
    )
    .or_else(|| account.clone());

    Ok(Normalized {
        kind: format!("truto.{event}"),
        id: first_id(payload, &["/id"]),
        account,
        subject,
        occurred_at: first_time(payload, &["/created_at"]),
        actor: None,
    })
}

/// The adapter `kind = "truto"` sources use.
pub struct Webhooks;

impl Adapter for Webhooks {
    fn kind(&self) -> &'static str {
        "truto"
    }
    fn normalize(&self, payload: &Value, _options: &AdapterOptions) -> Result<Normalized, String> {
        normalize(payload)
    }
    fn account_in_payload(&self) -> bool {
        true
    }
    fn reads(&self) -> Option<&'static [&'static str]> {
        Some(&[
            "/id",
            "/event",
            "/event_type",
            "/created_at",
            "/integrated_account_id",
            "/payload/id",
            "/payload/integrated_account_id",
            "/payload/integrated_account/id",
            "/payload/record/id",
            "/payload/record_id",
            "/payload/data/id",
        ])
    }
}
