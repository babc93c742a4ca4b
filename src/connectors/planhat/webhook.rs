//! Planhat automation webhooks. Planhat has no fixed envelope: the automation's author writes the
//! body. hookwise documents a contract (README, "Pointing Planhat at hookwise"):
//! `{"event": "nps.created", "model": "NPS", "firedAt": ..., "idempotencyKey": ..., "object": {...}}`.

use crate::ingress::sources::{Adapter, AdapterOptions, Normalized, dotted, first_id, first_time};
use serde_json::Value;

pub fn normalize(payload: &Value) -> Result<Normalized, String> {
    let object = payload.get("object").filter(|o| o.is_object());
    let event = payload
        .get("event")
        .and_then(Value::as_str)
        .map(dotted)
        .or_else(|| {
            // A body with only a model name is taken as "a record of that model was created".
            payload
                .get("model")
                .and_then(Value::as_str)
                .map(|m| format!("{}.created", dotted(m)))
        })
        .filter(|e| !e.is_empty())
        .ok_or("expected a Planhat automation body with an `event` (e.g. \"nps.created\") or a `model`")?;

    let kind = match event.as_str() {
        "nps.created" | "nps.submitted" | "nps.answered" => "planhat.nps.submitted".to_string(),
        "company.updated" | "company.changed" => "planhat.company.changed".to_string(),
        "conversation.created" | "ticket.created" => "planhat.ticket.created".to_string(),
        "conversation.updated" | "ticket.updated" => "planhat.ticket.updated".to_string(),
        other => format!("planhat.{other}"),
    };

    let model = payload
        .get("model")
        .and_then(Value::as_str)
        .map(dotted)
        .unwrap_or_else(|| event.split('.').next().unwrap_or_default().to_string());

    // Work is serialized and debounced per company: NPS records name it `cId`, most models
    // `companyId`, a company record is itself the company.
    let mut subject_pointers = vec!["/object/cId", "/object/companyId", "/companyId", "/cId"];
    if model == "company" {
        subject_pointers.insert(0, "/object/_id");
    }
    subject_pointers.push("/object/_id");
    let subject = first_id(payload, &subject_pointers);

    // A key given but blank is a sender's mistake: every such delivery would share one id and
    // all but the first be dropped as duplicates.
    for key in ["idempotencyKey", "idempotency_key"] {
        if payload
            .get(key)
            .and_then(Value::as_str)
            .is_some_and(|k| k.trim().is_empty())
        {
            return Err(format!(
                "{key} is blank: give each delivery its own key, or leave it out"
            ));
        }
    }
    let id = first_id(payload, &["/idempotencyKey", "/idempotency_key"]).or_else(|| {
        let object = object?;
        let id = first_id(object, &["/_id"])?;
        let version = first_id(object, &["/updatedAt", "/createdAt"]).unwrap_or_default();
        Some(format!("{model}-{id}-{version}"))
    });

    Ok(Normalized {
        kind,
        id,
        account: None,
        subject,
        occurred_at: first_time(
            payload,
            &["/firedAt", "/object/updatedAt", "/object/createdAt"],
        ),
        actor: None,
    })
}

/// The adapter `kind = "planhat"` sources use.
pub struct Webhooks;

impl Adapter for Webhooks {
    fn kind(&self) -> &'static str {
        "planhat"
    }
    fn normalize(&self, payload: &Value, _options: &AdapterOptions) -> Result<Normalized, String> {
        normalize(payload)
    }
    fn reads(&self) -> Option<&'static [&'static str]> {
        Some(&[
            "/event",
            "/model",
            "/firedAt",
            "/idempotencyKey",
            "/idempotency_key",
            "/companyId",
            "/cId",
            "/object/_id",
            "/object/cId",
            "/object/companyId",
            "/object/updatedAt",
            "/object/createdAt",
        ])
    }
}
