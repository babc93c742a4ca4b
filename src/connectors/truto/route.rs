//! One Truto tool definition as this account executes it: the strict schema the model sees, and
//! the proxy call its arguments become.

use crate::tools::{ToolError, path_segment as segment};
use crate::upstream::Request;
use reqwest::Method;
use serde_json::{Map, Value, json};

/// Records of a list answer passed to the model, and the longest answer in characters.
const MAX_ITEMS: usize = 25;
const MAX_CHARS: usize = 20_000;

/// How one account executes one tool.
pub(super) struct Route {
    pub(super) integrated_account_id: String,
    pub(super) resource: String,
    pub(super) method: String,
    pub(super) description: String,
    pub(super) query_keys: Vec<String>,
    pub(super) body_keys: Vec<String>,
    /// get, update and delete address one record by `id` in the path.
    pub(super) individual: bool,
    pub(super) writes: bool,
    pub(super) schema: Value,
}

impl Route {
    pub(super) fn from_listed(
        integrated_account_id: &str,
        def: &Value,
    ) -> Result<(String, Self), String> {
        let text = |k: &str| def.get(k).and_then(Value::as_str).unwrap_or_default();
        let raw = text("name");
        let name =
            super::tool_name(raw).ok_or_else(|| format!("tool without a usable name: {def}"))?;
        let (resource, method) = (text("resource"), text("method"));
        if resource.is_empty() || method.is_empty() {
            return Err(format!("{raw}: no resource or method"));
        }
        let individual = matches!(method, "get" | "update" | "delete");
        let mut properties = Map::new();
        let mut required: Vec<String> = def
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|r| r.as_str().map(str::to_string))
            .collect();
        let mut take = |schema: Option<&Value>, keys: &mut Vec<String>| {
            let props = schema
                .and_then(|s| s.get("properties"))
                .and_then(Value::as_object);
            for (k, v) in props.into_iter().flatten() {
                if individual && k == "id" {
                    continue;
                }
                let mut v = v.clone();
                // Some definitions mark a property `"required": true` (not JSON Schema).
                if let Some(o) = v.as_object_mut()
                    && let Some(Value::Bool(flag)) = o.get("required").cloned()
                {
                    o.remove("required");
                    if flag {
                        required.push(k.clone());
                    }
                }
                properties.entry(k.clone()).or_insert(v);
                keys.push(k.clone());
            }
        };
        let (mut query_keys, mut body_keys) = (Vec::new(), Vec::new());
        take(def.get("query_schema"), &mut query_keys);
        take(def.get("body_schema"), &mut body_keys);
        if method == "list" {
            for (k, s) in [
                (
                    "limit",
                    json!({"type": "integer", "minimum": 1, "maximum": 100}),
                ),
                (
                    "next_cursor",
                    json!({"type": "string", "description": "From the previous page's `next_cursor`."}),
                ),
            ] {
                if !properties.contains_key(k) {
                    properties.insert(k.into(), s);
                    query_keys.push(k.into());
                }
            }
        }
        if individual {
            properties.insert(
                "id".into(),
                json!({"type": ["string", "integer"], "description": "The record's id."}),
            );
            required.push("id".into());
        }
        required.retain(|r| properties.contains_key(r));
        required.sort();
        required.dedup();
        let mut schema = json!({"type": "object", "properties": properties,
                                "required": required, "additionalProperties": false});
        if jsonschema::validator_for(&schema).is_err() {
            // Keep the tool usable with names and descriptions only.
            tracing::warn!(
                tool = raw,
                "a Truto tool's schema does not compile; its argument types are not checked"
            );
            for v in schema["properties"]
                .as_object_mut()
                .into_iter()
                .flat_map(|p| p.values_mut())
            {
                let description = v.get("description").cloned();
                *v = json!({});
                if let Some(d) = description {
                    v["description"] = d;
                }
            }
        }
        let route = Route {
            integrated_account_id: integrated_account_id.to_string(),
            resource: resource.to_string(),
            method: method.to_string(),
            description: match text("description") {
                "" => format!("{raw} ({method} {resource}, through Truto)"),
                d => d.to_string(),
            },
            query_keys,
            body_keys,
            individual,
            writes: !matches!(method, "list" | "get"),
            schema,
        };
        Ok((name, route))
    }

    /// The proxy call for `args` (already valid against `schema`).
    pub(super) fn request(&self, args: &Map<String, Value>) -> Result<Request, ToolError> {
        let mut path = format!(
            "/proxy/{}",
            self.resource
                .split('/')
                .map(segment)
                .collect::<Vec<_>>()
                .join("/")
        );
        if self.individual {
            let id = match args.get("id") {
                Some(Value::String(s)) if !s.is_empty() => s.clone(),
                Some(Value::Number(n)) => n.to_string(),
                _ => return Err(ToolError::Rejected("`id` is required".into())),
            };
            path = format!("{path}/{}", segment(&id));
        }
        let method = match self.method.as_str() {
            "list" | "get" => Method::GET,
            "create" => Method::POST,
            "update" => Method::PATCH,
            "delete" => Method::DELETE,
            custom => {
                path = format!("{path}/{}", segment(custom));
                Method::POST
            }
        };
        let mut query = Vec::new();
        for k in &self.query_keys {
            if let Some(v) = args.get(k) {
                flatten(k, v, &mut query);
            }
        }
        // Last, and from the account: a model-supplied value cannot redirect the call.
        query.retain(|(k, _)| k != "integrated_account_id");
        query.push((
            "integrated_account_id".into(),
            self.integrated_account_id.clone(),
        ));
        let body = (method == Method::POST || method == Method::PATCH).then(|| {
            let picked: Map<String, Value> = self
                .body_keys
                .iter()
                .filter_map(|k| args.get(k).map(|v| (k.clone(), v.clone())))
                .collect();
            Value::Object(picked)
        });
        Ok(Request {
            method,
            path,
            query,
            body,
            bucket: "api",
            write: self.writes,
        })
    }
}

/// Query parameters the way Truto's SDKs encode them (`qs`): `a[0]=x`, `a[b]=y`.
fn flatten(key: &str, value: &Value, out: &mut Vec<(String, String)>) {
    match value {
        Value::Null => {}
        Value::String(s) => out.push((key.to_string(), s.clone())),
        Value::Bool(_) | Value::Number(_) => out.push((key.to_string(), value.to_string())),
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                flatten(&format!("{key}[{i}]"), v, out);
            }
        }
        Value::Object(o) => {
            for (k, v) in o {
                flatten(&format!("{key}[{k}]"), v, out);
            }
        }
    }
}

/// A list's first records and a size cap, so one answer cannot fill the model's context.
pub(super) fn trimmed(body: Value) -> Value {
    let mut body = body;
    if let Some(result) = body.get_mut("result").and_then(Value::as_array_mut)
        && result.len() > MAX_ITEMS
    {
        let more = result.len() - MAX_ITEMS;
        result.truncate(MAX_ITEMS);
        body["omitted_records"] = more.into();
    }
    let text = body.to_string();
    if text.len() <= MAX_CHARS {
        return body;
    }
    let cut: String = text.chars().take(MAX_CHARS).collect();
    json!({"truncated": true, "json_prefix": cut})
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn query_values_are_encoded_like_truto_sdks_do() {
        let mut out = Vec::new();
        flatten(
            "filter",
            &json!({"status": ["open", "pending"], "n": 3, "skip": null}),
            &mut out,
        );
        assert_eq!(
            out,
            [
                ("filter[n]".to_string(), "3".to_string()),
                ("filter[status][0]".to_string(), "open".to_string()),
                ("filter[status][1]".to_string(), "pending".to_string()),
            ]
        );
    }

    #[test]
    fn a_definition_becomes_a_strict_schema_and_a_proxy_call() {
        let def = json!({
            "name": "update_a_happy_fox_ticket_by_id", "resource": "tickets", "method": "update",
            "description": "Update a ticket",
            "query_schema": {"properties": {"id": {"type": "string"}, "notify": {"type": "boolean", "required": true}}},
            "body_schema": {"properties": {"status": {"type": "integer"}, "integrated_account_id": {"type": "string"}}},
            "required": ["status", "missing"]
        });
        let (name, route) = Route::from_listed("ia-1", &def).unwrap();
        assert_eq!(name, "truto.update_a_happy_fox_ticket_by_id");
        assert!(route.writes);
        assert_eq!(route.schema["required"], json!(["id", "notify", "status"]));
        assert_eq!(route.schema["additionalProperties"], false);
        let args =
            json!({"id": 142, "notify": false, "status": 3, "integrated_account_id": "other"});
        let request = route.request(args.as_object().unwrap()).unwrap();
        assert_eq!(request.method, Method::PATCH);
        assert_eq!(request.path, "/proxy/tickets/142");
        assert_eq!(
            request.query,
            [
                ("notify".to_string(), "false".to_string()),
                ("integrated_account_id".to_string(), "ia-1".to_string()),
            ]
        );
        assert_eq!(
            request.body,
            Some(json!({"status": 3, "integrated_account_id": "other"}))
        );

        let custom = json!({"name": "send", "resource": "emails", "method": "send_now"});
        let (_, route) = Route::from_listed("ia-1", &custom).unwrap();
        let request = route.request(&Map::new()).unwrap();
        assert_eq!(
            (request.method, request.path.as_str()),
            (Method::POST, "/proxy/emails/send_now")
        );
        assert!(request.write);
    }

    #[test]
    fn long_lists_are_cut_for_the_model() {
        let body = json!({"result": (0..40).collect::<Vec<_>>(), "next_cursor": "c2"});
        let t = trimmed(body);
        assert_eq!(t["result"].as_array().unwrap().len(), MAX_ITEMS);
        assert_eq!(t["omitted_records"], 15);
        assert_eq!(t["next_cursor"], "c2");
        let huge = json!({"text": "x".repeat(MAX_CHARS * 2)});
        assert_eq!(trimmed(huge)["truncated"], true);
    }
}
