//! Custom field definitions (`GET /customfields`), cached per account, and the check every write
//! with a `custom` object passes: Planhat stores an unknown or mis-cased key with a 200 and binds
//! it to no field (invisible in the UI), so such keys are refused here with the valid ones listed.

use super::{Op, Planhat, items, shape};
use crate::tools::{ToolContext, ToolError};
use crate::upstream::Request;
use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// How long definitions are trusted: a field added in Planhat is usable after at most this long.
pub const FIELDS_TTL: Duration = Duration::from_secs(300);

/// Definitions are few (hundreds); 2,000 is the documented page maximum.
const PAGE: usize = 2000;
const MAX_PAGES: usize = 5;

/// An account's definitions as `GET /customfields` listed them (read tolerantly, as values).
type Definitions = Arc<Vec<Value>>;

/// Definitions by account name, with when they were read.
#[derive(Default)]
pub struct Cache(Mutex<HashMap<String, (Instant, Definitions)>>);

fn fresh(read_at: Instant, now: Instant) -> bool {
    now.saturating_duration_since(read_at) < FIELDS_TTL
}

/// The models that have custom fields, as the tools name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Model {
    Company,
    Enduser,
    Task,
    Churn,
    Opportunity,
    Nps,
    Issue,
    Conversation,
    Asset,
    Project,
    License,
    Invoice,
    Sale,
}

const MODELS: &[&str] = &[
    "company",
    "enduser",
    "task",
    "churn",
    "opportunity",
    "nps",
    "issue",
    "conversation",
    "asset",
    "project",
    "license",
    "invoice",
    "sale",
];

impl Model {
    fn name(self) -> &'static str {
        MODELS[self as usize]
    }

    /// Whether a definition's `parent` is this model. The exact `parent` values are unconfirmed
    /// (`company`? `Company`? `companies`?), so case, separators and plurals are ignored.
    fn owns(self, parent: &str) -> bool {
        let p: String = parent
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .collect::<String>()
            .to_ascii_lowercase();
        let name = self.name();
        let plural = match name {
            "company" => "companies".to_string(),
            "opportunity" => "opportunities".to_string(),
            "nps" => "nps".to_string(),
            other => format!("{other}s"),
        };
        p == name || p == plural || (self == Model::Conversation && p.starts_with("ticket"))
    }
}

impl Planhat {
    /// Every custom field definition of the account, from the cache while fresh.
    async fn definitions(&self, ctx: &ToolContext) -> Result<Definitions, ToolError> {
        let account = ctx.account.as_str().to_string();
        if let Some((at, defs)) = self.fields.0.lock().unwrap().get(&account)
            && fresh(*at, Instant::now())
        {
            return Ok(defs.clone());
        }
        let mut defs = Vec::new();
        for page in 0..MAX_PAGES {
            let request = Request::get("/customfields")
                .query("limit", PAGE)
                .query("offset", page * PAGE);
            let batch = items(self.get(ctx, request).await?, "/customfields")?;
            let short = batch.len() < PAGE;
            defs.extend(batch);
            if short {
                break;
            }
        }
        let defs = Arc::new(defs);
        self.fields
            .0
            .lock()
            .unwrap()
            .insert(account, (Instant::now(), defs.clone()));
        Ok(defs)
    }

    /// Refuses keys of `custom` that are not writable custom fields of `model`, listing the
    /// valid ones. Reads nothing when there is nothing to check.
    pub(super) async fn check_custom(
        &self,
        ctx: &ToolContext,
        model: Model,
        custom: Option<&Map<String, Value>>,
    ) -> Result<(), ToolError> {
        let Some(custom) = custom.filter(|c| !c.is_empty()) else {
            return Ok(());
        };
        let defs = self.definitions(ctx).await?;
        let own: Vec<&Value> = defs.iter().filter(|d| parent_is(d, model)).collect();
        let formula = |d: &Value| d.get("isFormula").and_then(Value::as_bool) == Some(true);
        let writable: Vec<String> = own
            .iter()
            .filter(|d| !formula(d))
            .filter_map(|d| shape::str_of(d, "name"))
            .collect();
        let computed: Vec<String> = own
            .iter()
            .filter(|d| formula(d))
            .filter_map(|d| shape::str_of(d, "name"))
            .collect();
        let mut problems = Vec::new();
        for key in custom.keys() {
            if computed.contains(key) {
                problems.push(format!("{key:?} is a formula field (computed, read-only)"));
            } else if !writable.contains(key) {
                problems.push(format!("{key:?} is not a custom field of {}", model.name()));
            }
        }
        if problems.is_empty() {
            return Ok(());
        }
        let valid = if writable.is_empty() {
            format!(
                "{} has no writable custom fields: leave `custom` out",
                model.name()
            )
        } else {
            let mut shown: Vec<String> =
                writable.iter().take(60).map(|k| format!("{k:?}")).collect();
            if writable.len() > 60 {
                shown.push(format!("and {} more", writable.len() - 60));
            }
            format!(
                "valid keys for {} (exact, case-sensitive): {}",
                model.name(),
                shown.join(", ")
            )
        };
        Err(ToolError::Rejected(format!(
            "refused before sending: {}. Planhat would keep such keys silently, bound to no field. {valid}",
            problems.join("; ")
        )))
    }
}

fn parent_is(def: &Value, model: Model) -> bool {
    shape::str_of(def, "parent").is_some_and(|p| model.owns(&p))
}

pub struct ListCustomFields;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListArgs {
    model: Option<Model>,
}

#[async_trait]
impl Op for ListCustomFields {
    type Args = ListArgs;
    const NAME: &'static str = "planhat.list_custom_fields";
    const DESCRIPTION: &'static str = "List Planhat custom field definitions: each field's exact `name` (the key in a record's `custom` object; case, spaces and symbols included), its `type`, the `model` it belongs to, and its choices for list fields. Writes that set `custom` accept only these names for the model written; formula fields are read-only.";
    const WRITES: bool = false;

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "model": {"type": "string", "enum": MODELS,
                          "description": "Only fields of this model; all models when omitted."}
            },
            "additionalProperties": false
        })
    }

    async fn run(ph: &Planhat, ctx: &ToolContext, args: ListArgs) -> Result<Value, ToolError> {
        let defs = ph.definitions(ctx).await?;
        let fields: Vec<Value> = defs
            .iter()
            .filter(|d| args.model.is_none_or(|m| parent_is(d, m)))
            .map(|d| {
                let mut f = shape::pick(
                    d,
                    &[
                        "name",
                        "type",
                        "isFormula",
                        "isHidden",
                        "isMandatory",
                        "listValues",
                    ],
                );
                if let Some(p) = shape::str_of(d, "parent") {
                    f["model"] = Value::String(p);
                }
                f
            })
            .collect();
        Ok(json!({"count": fields.len(), "fields": fields}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_match_whatever_their_spelling() {
        assert!(Model::Company.owns("company"));
        assert!(Model::Company.owns("Companies"));
        assert!(Model::Enduser.owns("EndUser"));
        assert!(Model::Enduser.owns("end_user"));
        assert!(Model::Opportunity.owns("opportunities"));
        assert!(Model::Conversation.owns("ticket"));
        assert!(!Model::Company.owns("enduser"));
        assert!(!Model::Task.owns("tasklist"));
    }

    #[test]
    fn model_names_follow_the_enum() {
        for (name, model) in [
            ("company", Model::Company),
            ("task", Model::Task),
            ("sale", Model::Sale),
        ] {
            assert_eq!(model.name(), name);
            let parsed: Model = serde_json::from_value(json!(name)).unwrap();
            assert_eq!(parsed, model);
        }
    }

    #[test]
    fn definitions_expire_after_the_ttl() {
        let read_at = Instant::now();
        assert!(fresh(
            read_at,
            read_at + FIELDS_TTL - Duration::from_secs(1)
        ));
        assert!(!fresh(read_at, read_at + FIELDS_TTL));
    }
}
