//! A handler's argument scope applied to a tool's JSON Schema: `narrow` is the schema the model is
//! offered (arguments left out removed, value rules as `const`/`enum`/`maxLength`/`pattern`);
//! `problems` is what `hookwise check` (and start-up, for tools known only then) says of a scope
//! that does not fit the schema. The call-time check is `ToolScope::violations`, which needs no
//! schema, so a scope holds even where the schema cannot express it.

use crate::handler::{ArgRule, ToolScope};
use serde_json::{Map, Value, json};

/// The schema the model sees under `scope`.
pub fn narrow(schema: &Value, scope: &ToolScope) -> Value {
    let mut schema = schema.clone();
    let Some(object) = schema.as_object_mut() else {
        return schema;
    };
    if let Some(allow) = &scope.allow {
        if let Some(Value::Object(properties)) = object.get_mut("properties") {
            properties.retain(|name, _| allow.contains(name));
        }
        object.insert("additionalProperties".into(), Value::Bool(false));
    }
    if let Some(Value::Object(properties)) = object.get_mut("properties") {
        for (name, rule) in &scope.args {
            if let Some(Value::Object(property)) = properties.get_mut(name) {
                narrow_property(property, rule);
            }
        }
    }
    schema
}

fn narrow_property(property: &mut Map<String, Value>, rule: &ArgRule) {
    if let Some(fixed) = &rule.equals {
        property.insert("const".into(), fixed.clone());
    }
    if let Some(values) = &rule.one_of {
        // A live enum (the account's priorities) keeps only what the scope also allows, in its
        // own order; without one, the scope's values are the enum.
        let values = match property.get("enum").and_then(Value::as_array) {
            Some(offered) => offered
                .iter()
                .filter(|v| values.iter().any(|w| same(v, w)))
                .cloned()
                .collect(),
            None => values.clone(),
        };
        property.insert("enum".into(), Value::Array(values));
    }
    if let Some(max) = rule.max_length {
        let max = property
            .get("maxLength")
            .and_then(Value::as_u64)
            .map_or(max, |m| m.min(max));
        property.insert("maxLength".into(), json!(max));
    }
    if let Some(pattern) = &rule.pattern {
        if property.contains_key("pattern") {
            // One `pattern` per schema object: the tool's stays, the scope's joins it.
            let all = property
                .entry("allOf")
                .or_insert_with(|| Value::Array(Vec::new()));
            if let Value::Array(all) = all {
                all.push(json!({"pattern": pattern.source}));
            }
        } else {
            property.insert("pattern".into(), json!(pattern.source));
        }
    }
}

fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

/// What in `scope` does not fit the tool's `schema`, as (key below the scope's own key, message):
/// an argument the tool does not have, a required argument `allow` leaves out (the tool could
/// never be called), a value its schema refuses, a string rule on an argument that is no string.
/// A schema without `properties` says nothing of its arguments, so nothing is judged.
pub fn problems(schema: &Value, scope: &ToolScope) -> Vec<(String, String)> {
    let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
        return Vec::new();
    };
    let names = || properties.keys().map(String::as_str);
    let unknown = |arg: &str| {
        let hint = crate::kernel::did_you_mean(arg, names());
        if hint.is_empty() {
            let all: Vec<&str> = names().collect();
            format!(
                "the tool has no argument `{arg}`; its arguments are {}",
                all.join(", ")
            )
        } else {
            format!("the tool has no argument `{arg}`{hint}")
        }
    };
    let mut out = Vec::new();
    if let Some(allow) = &scope.allow {
        for (i, arg) in allow.iter().enumerate() {
            if !properties.contains_key(arg) {
                out.push((format!("allow[{i}]"), unknown(arg)));
            }
        }
        let required = schema.get("required").and_then(Value::as_array);
        for name in required.into_iter().flatten().filter_map(Value::as_str) {
            if !allow.iter().any(|a| a == name) {
                out.push((
                    "allow".to_string(),
                    format!(
                        "leaves out `{name}`, which the tool requires: it could never be called"
                    ),
                ));
            }
        }
    }
    for (arg, rule) in &scope.args {
        let key = format!("args.{arg}");
        let Some(property) = properties.get(arg) else {
            out.push((key, unknown(arg)));
            continue;
        };
        out.extend(
            rule_problems(property, rule)
                .into_iter()
                .map(|(k, m)| (format!("{key}.{k}"), m)),
        );
    }
    if out.is_empty()
        && let Err(e) = jsonschema::validator_for(&narrow(schema, scope))
    {
        out.push((
            String::new(),
            format!("the narrowed schema is not valid: {e}"),
        ));
    }
    out
}

fn rule_problems(property: &Value, rule: &ArgRule) -> Vec<(String, String)> {
    let mut out = Vec::new();
    // A subschema that refers elsewhere in the tool's schema cannot be compiled alone: its
    // values are then left to the call-time check.
    if let Ok(validator) = jsonschema::validator_for(property) {
        let misfit = |value: &Value| {
            validator
                .iter_errors(value)
                .next()
                .map(|e| format!("{value} is not a value the argument takes ({e})"))
        };
        if let Some(value) = &rule.equals
            && let Some(message) = misfit(value)
        {
            out.push(("equals".to_string(), message));
        }
        for (i, value) in rule.one_of.iter().flatten().enumerate() {
            if let Some(message) = misfit(value) {
                out.push((format!("one_of[{i}]"), message));
            }
        }
    }
    if rule.max_length.is_some() || rule.pattern.is_some() {
        let key = if rule.max_length.is_some() {
            "max_length"
        } else {
            "pattern"
        };
        if let Some(types) = types(property)
            && !types.iter().any(|t| t == "string")
        {
            out.push((
                key.to_string(),
                format!(
                    "applies to strings, but the argument is {}",
                    types.join(" or ")
                ),
            ));
        }
    }
    out
}

/// The JSON types a property schema admits, when it says (`type`, or every `anyOf`/`oneOf`
/// branch's); None when it does not.
fn types(property: &Value) -> Option<Vec<String>> {
    match property.get("type") {
        Some(Value::String(t)) => return Some(vec![t.clone()]),
        Some(Value::Array(ts)) => {
            return Some(
                ts.iter()
                    .filter_map(Value::as_str)
                    .map(String::from)
                    .collect(),
            );
        }
        _ => {}
    }
    let branches = property
        .get("anyOf")
        .or_else(|| property.get("oneOf"))?
        .as_array()?;
    let mut all = Vec::new();
    for branch in branches {
        all.extend(types(branch)?);
    }
    Some(all)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handler::Pattern;

    fn update_ticket() -> Value {
        json!({
            "type": "object",
            "properties": {
                "ticket_id": {"type": "integer", "minimum": 1},
                "status": {"type": "integer", "enum": [1, 2, 3]},
                "priority": {"type": "integer", "enum": [1, 2, 3, 4]},
                "assignee": {"type": ["integer", "null"]},
                "note": {"type": "string", "maxLength": 2000, "pattern": "\\S"},
                "alert": {"anyOf": [{"type": "string", "enum": ["subscribers", "category"]}, {"type": "integer"}]}
            },
            "required": ["ticket_id"],
            "additionalProperties": false
        })
    }

    fn scope(allow: &[&str], args: &[(&str, ArgRule)]) -> ToolScope {
        ToolScope {
            allow: Some(allow.iter().map(ToString::to_string).collect()),
            args: args
                .iter()
                .map(|(k, r)| (k.to_string(), r.clone()))
                .collect(),
        }
    }

    fn one_of(values: Value) -> ArgRule {
        ArgRule {
            one_of: Some(values.as_array().unwrap().clone()),
            ..ArgRule::default()
        }
    }

    #[test]
    fn narrowing_removes_what_allow_leaves_out_and_adds_the_value_rules() {
        let s = scope(
            &["ticket_id", "priority", "note"],
            &[
                ("priority", one_of(json!([4, 3, 9]))),
                (
                    "note",
                    ArgRule {
                        max_length: Some(80),
                        pattern: Some(Pattern::parse("^Risk").unwrap()),
                        ..ArgRule::default()
                    },
                ),
            ],
        );
        let narrowed = narrow(&update_ticket(), &s);
        let properties = narrowed["properties"].as_object().unwrap();
        let mut names: Vec<&String> = properties.keys().collect();
        names.sort();
        assert_eq!(names, ["note", "priority", "ticket_id"]);
        // The live enum's order, without the value the account does not have.
        assert_eq!(narrowed["properties"]["priority"]["enum"], json!([3, 4]));
        assert_eq!(narrowed["properties"]["note"]["maxLength"], 80);
        assert_eq!(narrowed["properties"]["note"]["pattern"], "\\S");
        assert_eq!(
            narrowed["properties"]["note"]["allOf"],
            json!([{"pattern": "^Risk"}])
        );
        assert_eq!(narrowed["additionalProperties"], false);
        assert_eq!(narrowed["required"], json!(["ticket_id"]));

        let validator = jsonschema::validator_for(&narrowed).unwrap();
        assert!(validator.is_valid(&json!({"ticket_id": 1, "priority": 4, "note": "Risk high"})));
        assert!(!validator.is_valid(&json!({"ticket_id": 1, "priority": 2})));
        assert!(!validator.is_valid(&json!({"ticket_id": 1, "status": 3})));
        assert!(!validator.is_valid(&json!({"ticket_id": 1, "note": "No risk"})));
    }

    #[test]
    fn equals_becomes_const_and_a_scope_without_allow_keeps_every_argument() {
        let s = ToolScope {
            allow: None,
            args: [(
                "alert".to_string(),
                ArgRule {
                    equals: Some(json!("category")),
                    ..ArgRule::default()
                },
            )]
            .into(),
        };
        let narrowed = narrow(&update_ticket(), &s);
        assert_eq!(narrowed["properties"].as_object().unwrap().len(), 6);
        assert_eq!(narrowed["properties"]["alert"]["const"], "category");
        let validator = jsonschema::validator_for(&narrowed).unwrap();
        assert!(validator.is_valid(&json!({"ticket_id": 1, "alert": "category"})));
        assert!(!validator.is_valid(&json!({"ticket_id": 1, "alert": 12})));
    }

    #[test]
    fn problems_name_unknown_arguments_missing_required_ones_and_type_misfits() {
        let s = scope(
            &["priorty", "status", "note", "alert"],
            &[
                ("status", one_of(json!([2, "urgent"]))),
                (
                    "alert",
                    ArgRule {
                        max_length: Some(8),
                        ..ArgRule::default()
                    },
                ),
                (
                    "note",
                    ArgRule {
                        equals: Some(json!(5)),
                        ..ArgRule::default()
                    },
                ),
            ],
        );
        let found = problems(&update_ticket(), &s);
        let keys: Vec<&str> = found.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "allow[0]",
                "allow",
                "args.note.equals",
                "args.status.one_of[1]"
            ],
            "{found:?}"
        );
        assert!(found[0].1.contains("did you mean `priority`"), "{found:?}");
        assert!(found[1].1.contains("`ticket_id`"), "{found:?}");

        let s = scope(
            &["ticket_id", "priority"],
            &[(
                "priority",
                ArgRule {
                    max_length: Some(2),
                    ..ArgRule::default()
                },
            )],
        );
        let found = problems(&update_ticket(), &s);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, "args.priority.max_length");
        assert!(found[0].1.contains("integer"), "{found:?}");
    }
}
