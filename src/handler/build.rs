//! Stage two of loading: the handler file's schema. Walks a parsed TOML table section by section
//! into a `Handler`, reporting every unknown key and every bad or inconsistent value.

use std::path::Path;
use std::time::Duration;

use toml::{Table, Value};

use super::condition::{self, Condition, Op};
use super::walk::{Walk, join};
use super::{
    AgentSpec, Debounce, DebounceKey, Handler, HandlerError, HandlerName, KindPattern, Mode,
};

const TOP_KEYS: &[&str] = &[
    "name",
    "description",
    "enabled",
    "on",
    "mode",
    "max_attempts",
    "when",
    "debounce",
    "agent",
];
const WHEN_KEYS: &[&str] = &["pointer", "op", "value"];
const DEBOUNCE_KEYS: &[&str] = &["period", "max_wait", "key"];
const AGENT_KEYS: &[&str] = &[
    "prompt",
    "model",
    "tools",
    "scopes",
    "max_steps",
    "deadline",
];

const DEFAULT_MAX_STEPS: u32 = 8;
const DEFAULT_DEADLINE: Duration = Duration::from_secs(120);
const MAX_WAIT_PERIODS: u32 = 10;

pub(super) fn build(file: &Path, root: &Table) -> Result<Handler, Vec<HandlerError>> {
    let mut w = Walk {
        file,
        errors: Vec::new(),
    };
    w.unknown_keys(root, "", TOP_KEYS, TOP_KEYS);
    let name = w.name(root);
    let description = w.field::<String>(root, "", "description");
    let enabled = w.field::<bool>(root, "", "enabled").unwrap_or(true);
    let on = w.on(root);
    let mode = w.field::<Mode>(root, "", "mode").unwrap_or(Mode::DryRun);
    let max_attempts = w.int(root, "", "max_attempts", 1..=50);
    let when = w.when(root);
    let debounce = w.debounce(root);
    let agent = w.agent(root);
    // Optional fields fall back to their default on error too; the error list decides.
    match (name, on, agent) {
        (Some(name), Some(on), Some(agent)) if w.errors.is_empty() => Ok(Handler {
            name,
            description,
            enabled,
            on,
            mode,
            max_attempts,
            when,
            debounce,
            agent,
            file: file.to_path_buf(),
        }),
        _ => {
            debug_assert!(
                !w.errors.is_empty(),
                "a required field failed without an error"
            );
            Err(w.errors)
        }
    }
}

impl Walk<'_> {
    fn name(&mut self, root: &Table) -> Option<HandlerName> {
        if root.contains_key("name") {
            let name = self.field::<String>(root, "", "name")?;
            return self.check("name", HandlerName::parse(&name));
        }
        let stem = self
            .file
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        let parsed = HandlerName::parse(stem)
            .map_err(|e| format!("no `name` given and the file name cannot be used: {e}"));
        self.check("name", parsed)
    }

    fn on(&mut self, root: &Table) -> Option<Vec<KindPattern>> {
        let expected = "a list of event kinds like [\"happyfox.ticket.created\"]";
        if !root.contains_key("on") {
            self.error("on", format!("missing required key, expected {expected}"));
            return None;
        }
        let kinds = self.strings(root, "", "on")?;
        if root["on"].as_array().is_some_and(Vec::is_empty) {
            self.error("on", format!("expected {expected}, found an empty list"));
            return None;
        }
        let patterns: Vec<Option<KindPattern>> = kinds
            .into_iter()
            .map(|(i, kind)| self.check(&format!("on[{i}]"), KindPattern::parse(&kind)))
            .collect();
        patterns.into_iter().collect()
    }

    fn when(&mut self, root: &Table) -> Vec<Condition> {
        let Some(value) = root.get("when") else {
            return Vec::new();
        };
        let Some(entries) = value.as_array() else {
            self.error(
                "when",
                format!("expected an array of tables ([[when]]), found {value}"),
            );
            return Vec::new();
        };
        let mut conditions = Vec::new();
        for (i, entry) in entries.iter().enumerate() {
            let prefix = format!("when[{i}]");
            match entry.as_table() {
                Some(table) => conditions.extend(self.condition(table, &prefix)),
                None => self.error(
                    &prefix,
                    format!("expected a table with pointer, op and value, found {entry}"),
                ),
            }
        }
        conditions
    }

    fn condition(&mut self, table: &Table, prefix: &str) -> Option<Condition> {
        self.unknown_keys(table, prefix, WHEN_KEYS, TOP_KEYS);
        let pointer_key = join(prefix, "pointer");
        let pointer = self
            .required::<String>(
                table,
                prefix,
                "pointer",
                "a JSON pointer like \"/ticket/status\"",
            )
            .and_then(|p| self.check(&pointer_key, condition::check_pointer(&p).map(|()| p)));
        let op = self
            .required::<String>(table, prefix, "op", "an operator like \"equals\" or \"<=\"")
            .and_then(|op| self.check(&join(prefix, "op"), Op::parse(&op)));
        let value_key = join(prefix, "value");
        let value = match table.get("value") {
            None => Some(None),
            Some(v) => self.check(&value_key, toml_to_json(v)).map(Some),
        };
        // Without a valid op the value's shape cannot be judged, so no second error for it.
        let (op, value) = (op?, value?);
        let (value, regex) = self.check(&value_key, condition::check_value(op, value))?;
        Some(Condition::from_checked(pointer?, op, value, regex))
    }

    fn debounce(&mut self, root: &Table) -> Option<Debounce> {
        let table = self.section(root, "debounce").ok()??;
        self.unknown_keys(table, "debounce", DEBOUNCE_KEYS, TOP_KEYS);
        if !table.contains_key("period") {
            self.error(
                "debounce.period",
                "missing required key, expected a duration like \"30s\" or \"5m\"",
            );
        }
        let period = self.duration(table, "debounce", "period");
        let max_wait = self.duration(table, "debounce", "max_wait");
        if let (Some(period), Some(max_wait)) = (period, max_wait)
            && max_wait < period
        {
            let message = format!("expected at least the period ({period:?}), found {max_wait:?}");
            self.error("debounce.max_wait", message);
        }
        let key = match self.field::<String>(table, "debounce", "key").as_deref() {
            None | Some("subject") => DebounceKey::Subject,
            Some("account") => DebounceKey::Account,
            Some(p) if p.starts_with('/') => {
                self.check("debounce.key", condition::check_pointer(p));
                DebounceKey::Pointer(p.to_string())
            }
            Some(other) => {
                let message = format!(
                    "expected \"subject\", \"account\" or a JSON pointer starting with \"/\", found {other:?}"
                );
                self.error("debounce.key", message);
                DebounceKey::Subject
            }
        };
        let period = period?;
        Some(Debounce {
            period,
            max_wait: max_wait.unwrap_or(period.saturating_mul(MAX_WAIT_PERIODS)),
            key,
        })
    }

    fn agent(&mut self, root: &Table) -> Option<AgentSpec> {
        let Some(table) = self.section(root, "agent").ok()? else {
            self.error(
                "agent",
                "missing required table [agent], expected at least `prompt`",
            );
            return None;
        };
        self.unknown_keys(table, "agent", AGENT_KEYS, TOP_KEYS);
        let prompt = self.required::<String>(table, "agent", "prompt", "the agent's system prompt");
        if prompt.as_deref().is_some_and(|p| p.trim().is_empty()) {
            self.error(
                "agent.prompt",
                "expected a non-empty system prompt, found an empty one",
            );
        }
        let model = self.field::<String>(table, "agent", "model");
        if model.as_deref().is_some_and(|m| m.trim().is_empty()) {
            self.error(
                "agent.model",
                "expected a model name (or no `model` for the configured default), found \"\"",
            );
        }
        let tools = self.tools(table);
        let scopes = self.scopes(table, &tools);
        let max_steps = self.int(table, "agent", "max_steps", 1..=50);
        let deadline = self.duration(table, "agent", "deadline");
        Some(AgentSpec {
            prompt: prompt?,
            model,
            tools,
            scopes,
            max_steps: max_steps.unwrap_or(DEFAULT_MAX_STEPS),
            deadline: deadline.unwrap_or(DEFAULT_DEADLINE),
        })
    }

    fn tools(&mut self, table: &Table) -> Vec<String> {
        let listed = self.strings(table, "agent", "tools").unwrap_or_default();
        let mut tools: Vec<String> = Vec::new();
        for (i, tool) in listed {
            let key = format!("agent.tools[{i}]");
            if !is_tool_name(&tool) {
                let message = format!(
                    "expected a tool name \"connector.tool_name\" like \"happyfox.get_ticket\" \
                     (each part [a-z0-9_]+), found {tool:?}"
                );
                self.error(&key, message);
            } else if tools.contains(&tool) {
                self.error(
                    &key,
                    format!("duplicate tool {tool:?}, it is already listed"),
                );
            } else {
                tools.push(tool);
            }
        }
        tools
    }
}

fn is_tool_name(s: &str) -> bool {
    let part_ok = |p: &str| {
        !p.is_empty()
            && p.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    };
    s.split_once('.')
        .is_some_and(|(connector, tool)| part_ok(connector) && part_ok(tool))
}

/// Condition values are compared against JSON payloads, so they become JSON here. TOML dates
/// become their text, which orders correctly against ISO 8601 strings in payloads.
pub(super) fn toml_to_json(value: &Value) -> Result<serde_json::Value, String> {
    Ok(match value {
        Value::String(s) => serde_json::Value::String(s.clone()),
        Value::Integer(i) => serde_json::Value::from(*i),
        Value::Float(f) => serde_json::Number::from_f64(*f)
            .map(serde_json::Value::Number)
            .ok_or_else(|| format!("expected a finite number, found {f}"))?,
        Value::Boolean(b) => serde_json::Value::Bool(*b),
        Value::Datetime(d) => serde_json::Value::String(d.to_string()),
        Value::Array(items) => {
            serde_json::Value::Array(items.iter().map(toml_to_json).collect::<Result<_, _>>()?)
        }
        Value::Table(table) => serde_json::Value::Object(
            table
                .iter()
                .map(|(k, v)| Ok((k.clone(), toml_to_json(v)?)))
                .collect::<Result<_, String>>()?,
        ),
    })
}
