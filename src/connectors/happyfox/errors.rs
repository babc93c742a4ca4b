//! HappyFox's ways of saying no, turned into messages a model can act on.
//!
//! Validation errors come as `{"error": [{"field": "category", "errors": ["..."]}]}` or as
//! `{"error": {"t-cf-2": "..."}}`, sometimes with a 4xx status and sometimes (the keyed form's
//! status is undocumented) with a 2xx one: any 2xx body whose only key is a non-empty `error` is a
//! failure (reference/happyfox.md §6).

use crate::tools::ToolError;
use serde_json::Value;

/// The `error` of a 2xx body that is really a refusal.
pub fn in_body(body: &Value) -> Option<&Value> {
    let map = body.as_object()?;
    if map.len() != 1 {
        return None;
    }
    let error = map.get("error")?;
    let empty = match error {
        Value::Null | Value::Bool(false) => true,
        Value::String(s) => s.trim().is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    };
    (!empty).then_some(error)
}

/// `field: message; field: message`, naming custom fields (`t-cf-22`) by `name_of` when known.
pub fn describe(error: &Value, name_of: &dyn Fn(&str) -> Option<String>) -> String {
    let field = |key: &str| match name_of(key) {
        Some(name) => format!("{key} ({name})"),
        None => key.to_string(),
    };
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_string))
            .collect::<Vec<_>>()
            .join(" "),
        other => other.to_string(),
    };
    match error {
        Value::String(s) => s.clone(),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| format!("{}: {}", field(k), text(v)))
            .collect::<Vec<_>>()
            .join("; "),
        Value::Array(items) => items
            .iter()
            .map(|item| {
                let name = item.get("field").and_then(Value::as_str);
                let errors = item.get("errors").or_else(|| item.get("error"));
                match (name, errors) {
                    (Some(n), Some(e)) => format!("{}: {}", field(n), text(e)),
                    _ => text(item),
                }
            })
            .collect::<Vec<_>>()
            .join("; "),
        other => other.to_string(),
    }
}

/// Rewrites HappyFox's 4xx refusals into what HappyFox said, for `what` ("ticket 142", "the move
/// of ticket 142"). Other errors pass unchanged.
pub fn explain(err: ToolError, what: &str, name_of: &dyn Fn(&str) -> Option<String>) -> ToolError {
    let ToolError::Refused { status, body, .. } = err else {
        return err;
    };
    if status == 404 {
        return ToolError::Rejected(format!("HappyFox found no {what} (404)"));
    }
    match serde_json::from_str::<Value>(&body) {
        Ok(Value::Object(map)) if map.contains_key("error") => ToolError::Rejected(format!(
            "HappyFox refused {what} ({status}): {}",
            describe(&map["error"], name_of)
        )),
        _ => ToolError::Rejected(format!("HappyFox refused {what} ({status}): {body}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn refused(status: u16, body: &str) -> ToolError {
        ToolError::Refused {
            upstream: "happyfox",
            status,
            body: body.into(),
        }
    }

    fn names(key: &str) -> Option<String> {
        (key == "t-cf-22").then(|| "Billing Issue Type".to_string())
    }

    #[test]
    fn only_a_lone_non_empty_error_is_a_refusal() {
        assert!(in_body(&json!({"error": {"t-cf-2": "fill it"}})).is_some());
        assert!(in_body(&json!({"error": "Invalid staff"})).is_some());
        assert!(in_body(&json!({"error": null})).is_none());
        assert!(in_body(&json!({"error": []})).is_none());
        assert!(
            in_body(&json!({"error": "x", "id": 1})).is_none(),
            "a ticket with an error key"
        );
        assert!(in_body(&json!([{"error": "x"}])).is_none());
    }

    #[test]
    fn both_documented_shapes_name_their_fields() {
        let list = json!([{"field": "category", "errors": ["This field is required.", "Really."]}]);
        assert_eq!(
            describe(&list, &names),
            "category: This field is required. Really."
        );
        let keyed = json!({"t-cf-22": "This field should be filled before marking this ticket as completed"});
        assert_eq!(
            describe(&keyed, &names),
            "t-cf-22 (Billing Issue Type): This field should be filled before marking this ticket as completed"
        );
    }

    #[test]
    fn upstream_refusals_are_rewritten_and_others_pass() {
        let e = explain(
            refused(
                400,
                r#"{"error": [{"field": "staff", "errors": ["Invalid staff."]}]}"#,
            ),
            "the note on ticket 142",
            &names,
        );
        assert_eq!(
            e.to_string(),
            "HappyFox refused the note on ticket 142 (400): staff: Invalid staff."
        );
        let e = explain(refused(404, "<h1>Not Found</h1>"), "ticket 9", &names);
        assert_eq!(e.to_string(), "HappyFox found no ticket 9 (404)");
        let e = explain(
            ToolError::Unavailable("happyfox answered 503: busy".into()),
            "x",
            &names,
        );
        assert!(matches!(e, ToolError::Unavailable(_)));
    }
}
