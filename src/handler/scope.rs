//! Argument scopes: a handler narrows a tool it allows to some of its arguments, and to values it
//! may give them (`[agent.scopes."tool"]`). This module reads them from the file and checks a
//! call's arguments against them; turning a scope into the schema the model sees is the tool
//! layer's (`tools::scope`), since only it knows the tool's schema.

use std::collections::BTreeMap;
use std::fmt;

use regex::Regex;
use serde_json::Value;
use toml::Table;

use super::build::toml_to_json;
use super::walk::{Walk, join};

const SCOPE_KEYS: &[&str] = &["allow", "args"];
const RULE_KEYS: &[&str] = &["equals", "one_of", "max_length", "pattern"];

/// One allowed tool, narrowed. Arguments the model gives are checked against it before anything
/// else happens to the call, in every mode.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolScope {
    /// The only arguments the model may set; `None` leaves every argument of the tool.
    pub allow: Option<Vec<String>>,
    /// Rules for the values of some arguments, by argument name.
    pub args: BTreeMap<String, ArgRule>,
}

/// What one argument's value may be, when the argument is given. Whether it must be given is the
/// tool's schema's business.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ArgRule {
    /// The only value it may take.
    pub equals: Option<Value>,
    /// The values it may take.
    pub one_of: Option<Vec<Value>>,
    /// For a string: at most this many characters.
    pub max_length: Option<u64>,
    /// For a string: matches this regular expression (unanchored, Rust `regex` syntax).
    pub pattern: Option<Pattern>,
}

/// A compiled regular expression that remembers its source (for the schema and for messages).
#[derive(Debug, Clone)]
pub struct Pattern {
    pub source: String,
    regex: Regex,
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Pattern {
    pub fn parse(source: &str) -> Result<Self, String> {
        Regex::new(source)
            .map(|regex| Self {
                source: source.to_string(),
                regex,
            })
            .map_err(|e| format!("expected a regular expression, found {source:?}: {e}"))
    }

    pub fn is_match(&self, text: &str) -> bool {
        self.regex.is_match(text)
    }
}

impl ToolScope {
    /// Every way `args` leaves the scope, one line each; empty when the call is in scope. Only an
    /// object's own keys are judged: a call that is not an object is the schema's to refuse.
    pub fn violations(&self, args: &Value) -> Vec<String> {
        let Some(args) = args.as_object() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        if let Some(allow) = &self.allow {
            for key in args.keys().filter(|k| !allow.contains(k)) {
                out.push(format!(
                    "argument `{key}` may not be set by this handler (it may set: {})",
                    if allow.is_empty() {
                        "none".to_string()
                    } else {
                        allow.join(", ")
                    }
                ));
            }
        }
        for (key, rule) in &self.args {
            if let Some(value) = args.get(key)
                && let Some(why) = rule.refusal(value)
            {
                out.push(format!("argument `{key}` {why}"));
            }
        }
        out
    }
}

impl ArgRule {
    /// Why `value` breaks the rule, if it does.
    fn refusal(&self, value: &Value) -> Option<String> {
        if let Some(fixed) = &self.equals
            && !same(fixed, value)
        {
            return Some(format!("must be {fixed}, found {value}"));
        }
        if let Some(values) = &self.one_of
            && !values.iter().any(|v| same(v, value))
        {
            return Some(format!("must be one of {}, found {value}", list(values)));
        }
        if self.max_length.is_none() && self.pattern.is_none() {
            return None;
        }
        let Some(text) = value.as_str() else {
            return Some(format!("must be a string, found {value}"));
        };
        if let Some(max) = self.max_length {
            let length = text.chars().count() as u64;
            if length > max {
                return Some(format!("must be at most {max} characters, found {length}"));
            }
        }
        if let Some(pattern) = &self.pattern
            && !pattern.is_match(text)
        {
            return Some(format!("must match the pattern {:?}", pattern.source));
        }
        None
    }
}

/// Equal as JSON values, numbers by value (`3` and `3.0` are the same priority id).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

fn list(values: &[Value]) -> String {
    let items: Vec<String> = values.iter().map(Value::to_string).collect();
    format!("[{}]", items.join(", "))
}

/// `agent.scopes."happyfox.update_ticket"`: the key of one tool's scope, as errors name it.
pub fn scope_key(tool: &str) -> String {
    format!("agent.scopes.{}", Quoted(tool))
}

/// A TOML key, quoted when it needs to be (tool names have a dot).
struct Quoted<'a>(&'a str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bare = !self.0.is_empty()
            && self
                .0
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if bare {
            f.write_str(self.0)
        } else {
            write!(f, "{:?}", self.0)
        }
    }
}

impl Walk<'_> {
    /// `[agent.scopes."tool"]` tables, each for a tool of `tools`.
    pub(super) fn scopes(
        &mut self,
        agent: &Table,
        tools: &[String],
    ) -> BTreeMap<String, ToolScope> {
        let mut scopes = BTreeMap::new();
        let Some(value) = agent.get("scopes") else {
            return scopes;
        };
        let Some(table) = value.as_table() else {
            self.error(
                "agent.scopes",
                format!(
                    "expected a table of tools ([agent.scopes.\"happyfox.update_ticket\"]), found {value}"
                ),
            );
            return scopes;
        };
        for (tool, value) in table {
            let prefix = scope_key(tool);
            if !tools.contains(tool) {
                self.error(
                    &prefix,
                    format!(
                        "{tool:?} is not in agent.tools; a scope narrows a tool the handler \
                         allows, so list it there first"
                    ),
                );
                continue;
            }
            let Some(table) = value.as_table() else {
                self.error(
                    &prefix,
                    format!("expected a table with `allow` and/or `args`, found {value}"),
                );
                continue;
            };
            if let Some(scope) = self.scope(table, &prefix) {
                scopes.insert(tool.clone(), scope);
            }
        }
        scopes
    }

    fn scope(&mut self, table: &Table, prefix: &str) -> Option<ToolScope> {
        let errors = self.errors.len();
        self.unknown_keys(table, prefix, SCOPE_KEYS, &[]);
        let allow = self.allow(table, prefix);
        let mut args = BTreeMap::new();
        match table.get("args") {
            None => {}
            Some(toml::Value::Table(rules)) => {
                for (arg, value) in rules {
                    let key = join(&join(prefix, "args"), &Quoted(arg).to_string());
                    if let Some(allow) = &allow
                        && !allow.contains(arg)
                    {
                        self.error(
                            &key,
                            format!(
                                "constrains `{arg}`, which `allow` leaves out; add it to `allow` \
                                 or drop the rule"
                            ),
                        );
                        continue;
                    }
                    match value.as_table() {
                        Some(rule) => {
                            if let Some(rule) = self.rule(rule, &key) {
                                args.insert(arg.clone(), rule);
                            }
                        }
                        None => self.error(
                            &key,
                            format!(
                                "expected a table with {}, found {value}",
                                RULE_KEYS.join(", ")
                            ),
                        ),
                    }
                }
            }
            Some(other) => self.error(
                &join(prefix, "args"),
                format!("expected a table of arguments (args.NAME), found {other}"),
            ),
        }
        if allow.is_none() && args.is_empty() && self.errors.len() == errors {
            self.error(
                prefix,
                "expected `allow` or at least one `args` rule; an empty scope narrows nothing",
            );
        }
        (self.errors.len() == errors).then_some(ToolScope { allow, args })
    }

    fn allow(&mut self, table: &Table, prefix: &str) -> Option<Vec<String>> {
        let listed = self.strings(table, prefix, "allow")?;
        let mut allow: Vec<String> = Vec::new();
        for (i, arg) in listed {
            if allow.contains(&arg) {
                self.error(
                    &format!("{}[{i}]", join(prefix, "allow")),
                    format!("duplicate argument {arg:?}, it is already listed"),
                );
            } else {
                allow.push(arg);
            }
        }
        Some(allow)
    }

    fn rule(&mut self, table: &Table, prefix: &str) -> Option<ArgRule> {
        let errors = self.errors.len();
        self.unknown_keys(table, prefix, RULE_KEYS, &[]);
        let mut rule = ArgRule::default();
        if let Some(value) = table.get("equals") {
            rule.equals = self.check(&join(prefix, "equals"), toml_to_json(value));
        }
        if let Some(value) = table.get("one_of") {
            let key = join(prefix, "one_of");
            match toml_to_json(value) {
                Ok(Value::Array(values)) if !values.is_empty() => rule.one_of = Some(values),
                Ok(_) => self.error(
                    &key,
                    format!("expected a non-empty list of values, found {value}"),
                ),
                Err(e) => self.error(&key, e),
            }
        }
        if let Some(value) = table.get("max_length") {
            let max = value.as_integer().and_then(|n| u64::try_from(n).ok());
            match max {
                Some(max) if max >= 1 => rule.max_length = Some(max),
                _ => self.error(
                    &join(prefix, "max_length"),
                    format!("expected a positive number of characters, found {value}"),
                ),
            }
        }
        if let Some(value) = table.get("pattern") {
            let key = join(prefix, "pattern");
            match value.as_str() {
                Some(source) => rule.pattern = self.check(&key, Pattern::parse(source)),
                None => self.error(
                    &key,
                    format!("expected a regular expression, found {value}"),
                ),
            }
        }
        let fixed = table.contains_key("equals") || table.contains_key("one_of");
        let text = table.contains_key("max_length") || table.contains_key("pattern");
        if table.contains_key("equals") && table.contains_key("one_of") {
            self.error(
                prefix,
                "`equals` and `one_of` both fix the value: keep one (`one_of` with one value is `equals`)",
            );
        } else if fixed && text {
            self.error(
                prefix,
                "`equals`/`one_of` list the exact values already; `max_length` and `pattern` \
                 would add nothing: keep one kind",
            );
        } else if !fixed && !text && self.errors.len() == errors {
            self.error(
                prefix,
                format!("expected at least one of {}", RULE_KEYS.join(", ")),
            );
        }
        (self.errors.len() == errors).then_some(rule)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn scope(allow: Option<&[&str]>, args: &[(&str, ArgRule)]) -> ToolScope {
        ToolScope {
            allow: allow.map(|a| a.iter().map(ToString::to_string).collect()),
            args: args
                .iter()
                .map(|(k, r)| (k.to_string(), r.clone()))
                .collect(),
        }
    }

    #[test]
    fn arguments_left_out_of_allow_are_refused_by_name() {
        let s = scope(Some(&["ticket_id", "priority"]), &[]);
        assert!(
            s.violations(&json!({"ticket_id": 1, "priority": 3}))
                .is_empty()
        );
        let v =
            s.violations(&json!({"ticket_id": 1, "priority": 3, "assignee": null, "status": 2}));
        assert_eq!(v.len(), 2, "{v:?}");
        assert!(
            v[0].contains("`assignee`") && v[0].contains("ticket_id, priority"),
            "{v:?}"
        );
        assert!(v[1].contains("`status`"), "{v:?}");
    }

    #[test]
    fn value_rules_apply_to_given_arguments_only() {
        let s = scope(
            None,
            &[
                (
                    "priority",
                    ArgRule {
                        one_of: Some(vec![json!(3), json!(4)]),
                        ..ArgRule::default()
                    },
                ),
                (
                    "mainType",
                    ArgRule {
                        equals: Some(json!("task")),
                        ..ArgRule::default()
                    },
                ),
                (
                    "action",
                    ArgRule {
                        max_length: Some(10),
                        pattern: Some(Pattern::parse("^Risk").unwrap()),
                        ..ArgRule::default()
                    },
                ),
            ],
        );
        assert!(s.violations(&json!({})).is_empty(), "absent is not judged");
        assert!(
            s.violations(&json!({"priority": 4.0, "mainType": "task", "action": "Risk: hé"}))
                .is_empty()
        );
        let v = s.violations(&json!({"priority": 1}));
        assert_eq!(v, ["argument `priority` must be one of [3, 4], found 1"]);
        let v = s.violations(&json!({"mainType": "event"}));
        assert_eq!(v, ["argument `mainType` must be \"task\", found \"event\""]);
        let v = s.violations(&json!({"action": "Risk: far too long"}));
        assert_eq!(
            v,
            ["argument `action` must be at most 10 characters, found 18"]
        );
        let v = s.violations(&json!({"action": "Hello"}));
        assert_eq!(v, ["argument `action` must match the pattern \"^Risk\""]);
        let v = s.violations(&json!({"action": 7}));
        assert_eq!(v, ["argument `action` must be a string, found 7"]);
    }
}
