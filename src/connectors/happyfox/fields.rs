//! Ticket custom fields: which exist for a category, the JSON Schema the model gets for them, and
//! the same rules checked again when a write names a ticket (the model may name another ticket
//! than the one the schema was built for).
//!
//! Definitions apply to the categories listed in their `categories[]`, ordered by that entry's
//! `order`. Values are written as `t-cf-<id>`: text as a string, a number, a date as
//! `yyyy-mm-dd`, a dropdown as one choice id, a multiple choice as a list of choice ids. Only
//! `text` and `choice` type names are documented; the others are recognised by likely names and
//! anything unknown accepts a string or a number (see README, "HappyFox tools").

use super::model::{FieldDef, FieldValue, Id, Ticket};
use serde_json::{Map, Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Number,
    Date,
    Choice,
    MultiChoice,
    Other,
}

pub fn kind(def: &FieldDef) -> Kind {
    let name = def.kind.as_deref().unwrap_or_default().to_ascii_lowercase();
    match name.as_str() {
        n if n.contains("multi") => Kind::MultiChoice,
        "choice" | "dropdown" | "select" | "radio" => Kind::Choice,
        "number" | "numeric" | "decimal" | "integer" | "float" => Kind::Number,
        n if n.contains("date") => Kind::Date,
        "text" | "textarea" | "string" | "email" | "url" | "phone" => Kind::Text,
        _ if !def.choices.is_empty() => Kind::Choice,
        _ => Kind::Other,
    }
}

/// The definitions that apply to `category`, in its form's order.
pub fn for_category<'a>(defs: &'a [FieldDef], category: &Id) -> Vec<&'a FieldDef> {
    let mut found: Vec<(i64, &FieldDef)> = defs
        .iter()
        .filter(|d| d.id.is_some())
        .filter_map(|d| d.order_in(category).map(|order| (order, d)))
        .collect();
    found.sort_by_key(|(order, _)| *order);
    found.into_iter().map(|(_, d)| d).collect()
}

fn current<'a>(ticket: &'a Ticket, def: &FieldDef) -> Option<&'a FieldValue> {
    ticket
        .custom_fields
        .iter()
        .find(|f| f.id.is_some() && f.id == def.id)
}

/// A field the write must include: mandatory (`required`) and empty on the ticket. Fields that
/// are only compulsory on completion or on a move are described, not required: this write does
/// neither.
fn must_fill(def: &FieldDef, ticket: &Ticket) -> bool {
    def.required == Some(true) && current(ticket, def).is_none_or(FieldValue::is_empty)
}

fn key(def: &FieldDef) -> String {
    def.id.as_ref().map(Id::to_string).unwrap_or_default()
}

fn label(def: &FieldDef) -> String {
    format!(
        "{} ({})",
        key(def),
        def.name.as_deref().unwrap_or("unnamed")
    )
}

fn choices_text(def: &FieldDef) -> String {
    def.choices
        .iter()
        .filter_map(|c| {
            Some(format!(
                "{} = {}",
                c.id.as_ref()?,
                c.text.as_deref().unwrap_or("")
            ))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// What the model reads about one field.
fn description(def: &FieldDef, ticket: &Ticket) -> String {
    let name = def.name.as_deref().unwrap_or("unnamed field");
    let mut text = match kind(def) {
        Kind::Text => format!("{name} (text)."),
        Kind::Number => format!("{name} (number, at most 2 decimals)."),
        Kind::Date => format!("{name} (date, yyyy-mm-dd)."),
        Kind::Choice => format!("{name} (dropdown: one choice id; {}).", choices_text(def)),
        Kind::MultiChoice => format!(
            "{name} (multiple choice: a list of choice ids; {}).",
            choices_text(def)
        ),
        Kind::Other => format!(
            "{name} (type {:?}).",
            def.kind.as_deref().unwrap_or("unknown")
        ),
    };
    match current(ticket, def) {
        Some(v) if !v.is_empty() => text.push_str(&format!(
            " Current value: {}.",
            v.value.clone().unwrap_or_default()
        )),
        _ => text.push_str(" Empty now."),
    }
    if must_fill(def, ticket) {
        text.push_str(" Mandatory: must be filled.");
    }
    if def.compulsory_on_completed == Some(true) {
        text.push_str(" Must be filled before the ticket is completed.");
    }
    if def.visible_to_staff_only == Some(true) {
        text.push_str(" Visible to staff only.");
    }
    text
}

fn choice_ids(def: &FieldDef) -> Vec<Value> {
    def.choices
        .iter()
        .filter_map(|c| c.id.as_ref())
        .map(|id| json!(id))
        .collect()
}

fn value_schema(def: &FieldDef, ticket: &Ticket) -> Value {
    let ids = choice_ids(def);
    let one_choice = || {
        let mut s = json!({});
        if ids.iter().all(Value::is_u64) {
            s["type"] = json!("integer");
        }
        if !ids.is_empty() {
            s["enum"] = json!(ids);
        }
        s
    };
    let mut schema = match kind(def) {
        Kind::Text => json!({"type": "string"}),
        Kind::Number => json!({"type": "number"}),
        Kind::Date => json!({"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"}),
        Kind::Choice => one_choice(),
        Kind::MultiChoice => {
            json!({"type": "array", "items": one_choice(), "uniqueItems": true, "minItems": 1})
        }
        Kind::Other => json!({"type": ["string", "number"]}),
    };
    schema["description"] = json!(description(def, ticket));
    schema
}

/// The `fields` object's schema for `ticket` with its category's definitions: exactly those
/// fields, with their value types and choices, and the mandatory empty ones required.
pub fn fields_schema(ticket: &Ticket, defs: &[&FieldDef]) -> Value {
    let mut properties = Map::new();
    let mut required = Vec::new();
    for def in defs {
        properties.insert(key(def), value_schema(def, ticket));
        if must_fill(def, ticket) {
            required.push(json!(key(def)));
        }
    }
    let category = ticket
        .category
        .as_ref()
        .and_then(|c| c.name.clone())
        .unwrap_or_default();
    let description = if defs.is_empty() {
        format!("The ticket's category {category} has no custom fields: nothing can be set.")
    } else {
        format!(
            "Field id -> new value, for the custom fields of category {category}. Send only the \
             fields you change (and every mandatory empty one)."
        )
    };
    json!({
        "type": "object",
        "description": description,
        "properties": properties,
        "required": required,
        "additionalProperties": false,
        "minProperties": 1,
    })
}

/// Checks `values` against `ticket`'s category definitions; every problem is listed, with what
/// would be valid, so the model can correct the call in one go.
pub fn check(
    ticket: &Ticket,
    defs: &[&FieldDef],
    values: &Map<String, Value>,
) -> Result<(), String> {
    let ticket_id = ticket.id.as_ref().map(Id::to_string).unwrap_or_default();
    let category = match &ticket.category {
        Some(c) => format!(
            "{} ({})",
            c.name.as_deref().unwrap_or("unnamed"),
            c.id.as_ref().map(Id::to_string).unwrap_or_default()
        ),
        None => "none".to_string(),
    };
    let mut problems = Vec::new();
    for (name, value) in values {
        let Some(def) = defs.iter().find(|d| key(d) == *name) else {
            let valid: Vec<String> = defs.iter().map(|d| label(d)).collect();
            problems.push(format!(
                "field {name} does not exist in category {category} of ticket {ticket_id}; its fields are: {}",
                if valid.is_empty() { "none".to_string() } else { valid.join(", ") }
            ));
            continue;
        };
        if let Err(expected) = check_value(def, value) {
            problems.push(format!(
                "field {} takes {expected}, found {value}",
                label(def)
            ));
        }
    }
    for def in defs {
        if must_fill(def, ticket) && !values.contains_key(&key(def)) {
            problems.push(format!(
                "field {} is mandatory and empty on ticket {ticket_id}: include it",
                label(def)
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// Ok, or what the field would take.
fn check_value(def: &FieldDef, value: &Value) -> Result<(), String> {
    let ids = choice_ids(def);
    let is_choice = |v: &Value| ids.iter().any(|id| id == v);
    let ok = match kind(def) {
        Kind::Text => value.is_string(),
        Kind::Number => value.is_number(),
        Kind::Date => value.as_str().is_some_and(is_date),
        Kind::Choice => is_choice(value),
        Kind::MultiChoice => value
            .as_array()
            .is_some_and(|items| !items.is_empty() && items.iter().all(is_choice)),
        Kind::Other => value.is_string() || value.is_number(),
    };
    if ok {
        return Ok(());
    }
    Err(match kind(def) {
        Kind::Text => "a string".to_string(),
        Kind::Number => "a number".to_string(),
        Kind::Date => "a date as yyyy-mm-dd".to_string(),
        Kind::Choice => format!("one choice id of: {}", choices_text(def)),
        Kind::MultiChoice => format!("a list of choice ids of: {}", choices_text(def)),
        Kind::Other => "a string or a number".to_string(),
    })
}

fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
}

/// The write's body entries, `t-cf-<id>`, and what the model is told was set (labels for choices).
pub fn body_and_summary(
    defs: &[&FieldDef],
    values: &Map<String, Value>,
) -> (Map<String, Value>, Vec<Value>) {
    let mut body = Map::new();
    let mut summary = Vec::new();
    for (name, value) in values {
        body.insert(format!("t-cf-{name}"), value.clone());
        let def = defs.iter().find(|d| key(d) == *name);
        let label_of = |v: &Value| {
            def.and_then(|d| {
                d.choices
                    .iter()
                    .find(|c| c.id.as_ref().is_some_and(|id| json!(id) == *v))
            })
            .and_then(|c| c.text.clone())
        };
        let shown = match value {
            Value::Array(items) => json!(
                items
                    .iter()
                    .map(|v| label_of(v).map_or(v.clone(), Value::String))
                    .collect::<Vec<_>>()
            ),
            v => label_of(v).map_or(v.clone(), Value::String),
        };
        summary.push(json!({
            "id": def.and_then(|d| d.id.clone()),
            "name": def.and_then(|d| d.name.clone()),
            "value": shown,
        }));
    }
    (body, summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defs() -> Vec<FieldDef> {
        serde_json::from_value(json!([
            {"id": 21, "name": "Order Number", "type": "text", "categories": [{"category": 3, "order": 1}]},
            {"id": 22, "name": "Billing Issue Type", "type": "choice", "compulsory_on_completed": true,
             "choices": [{"id": 31, "text": "Refund"}, {"id": 32, "text": "Duplicate charge"}],
             "categories": [{"category": 3, "order": 2}]},
            {"id": 24, "name": "Product Area", "type": "choice", "required": true,
             "choices": [{"id": 41, "text": "Mobile app"}], "categories": [{"category": 5, "order": 1}]},
            {"id": 25, "name": "Ref", "type": "text", "categories": [{"category": 5, "order": 2}, {"category": 3, "order": 3}]},
            {"id": 26, "name": "Seen on", "type": "date", "categories": [{"category": 5, "order": 3}]},
        ]))
        .unwrap()
    }

    fn ticket(category: u64, values: Value) -> Ticket {
        serde_json::from_value(
            json!({"id": 7, "category": {"id": category, "name": "C"}, "custom_fields": values}),
        )
        .unwrap()
    }

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn a_category_gets_its_own_fields_in_form_order() {
        let all = defs();
        let ids: Vec<String> = for_category(&all, &Id::from(5))
            .iter()
            .map(|d| key(d))
            .collect();
        assert_eq!(ids, ["24", "25", "26"]);
        let ids: Vec<String> = for_category(&all, &Id::from(3))
            .iter()
            .map(|d| key(d))
            .collect();
        assert_eq!(ids, ["21", "22", "25"]);
    }

    #[test]
    fn the_schema_offers_choices_and_requires_empty_mandatory_fields() {
        let all = defs();
        let t = ticket(5, json!([{"id": 24, "value": null}]));
        let s = fields_schema(&t, &for_category(&all, &Id::from(5)));
        assert_eq!(s["required"], json!(["24"]));
        assert_eq!(s["properties"]["24"]["enum"], json!([41]));
        assert_eq!(s["additionalProperties"], json!(false));
        let filled = ticket(
            5,
            json!([{"id": 24, "value": "Mobile app", "value_id": 41}]),
        );
        let s = fields_schema(&filled, &for_category(&all, &Id::from(5)));
        assert_eq!(
            s["required"],
            json!([]),
            "already filled: not required again"
        );
    }

    #[test]
    fn checks_list_every_problem_with_what_is_valid() {
        let all = defs();
        let t = ticket(5, json!([]));
        let cat = for_category(&all, &Id::from(5));
        let err = check(&t, &cat, &map(json!({"22": 31, "26": "March 3rd"}))).unwrap_err();
        assert!(err.contains("field 22 does not exist in category C (5) of ticket 7; its fields are: 24 (Product Area), 25 (Ref), 26 (Seen on)"), "{err}");
        assert!(
            err.contains("field 26 (Seen on) takes a date as yyyy-mm-dd"),
            "{err}"
        );
        assert!(
            err.contains("field 24 (Product Area) is mandatory"),
            "{err}"
        );
        assert!(check(&t, &cat, &map(json!({"24": 41, "26": "2026-03-03"}))).is_ok());
        let err = check(&t, &cat, &map(json!({"24": 42}))).unwrap_err();
        assert!(err.contains("one choice id of: 41 = Mobile app"), "{err}");
    }

    #[test]
    fn the_body_uses_t_cf_keys_and_the_summary_labels() {
        let all = defs();
        let cat = for_category(&all, &Id::from(3));
        let (body, summary) = body_and_summary(&cat, &map(json!({"22": 32, "21": "SO-1"})));
        assert_eq!(
            Value::Object(body),
            json!({"t-cf-21": "SO-1", "t-cf-22": 32})
        );
        assert_eq!(
            summary[1],
            json!({"id": 22, "name": "Billing Issue Type", "value": "Duplicate charge"})
        );
    }
}
