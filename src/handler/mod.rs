//! Handler files: the model of `handlers/*.toml` (which events a handler reacts to, its filters,
//! debounce and agent settings) and the pure matching used at ingest. All I/O happens at load.

mod build;
mod condition;
mod kind;
mod load;
mod scope;
mod walk;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

pub use crate::kernel::ConfigError as HandlerError;
pub use condition::{Condition, Op};
pub use kind::KindPattern;
pub use load::{load_dir, load_file, parse_handler};
pub use scope::{ArgRule, Pattern, ToolScope, scope_key};

/// The loaded handlers, looked up by name: the router matches events against them, the
/// scheduler finds a job's handler in them.
#[derive(Debug, Clone, Default)]
pub struct HandlerSet {
    handlers: Vec<Handler>,
}

impl HandlerSet {
    pub fn new(handlers: Vec<Handler>) -> Self {
        Self { handlers }
    }

    pub fn get(&self, name: &str) -> Option<&Handler> {
        self.handlers.iter().find(|h| h.name.as_str() == name)
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Handler> {
        self.handlers.iter()
    }

    pub fn len(&self) -> usize {
        self.handlers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.handlers.is_empty()
    }
}

/// One handler file, fully validated: every value here has passed the checks in `build`.
#[derive(Debug, Clone)]
pub struct Handler {
    pub name: HandlerName,
    pub description: Option<String>,
    /// Disabled handlers still load (and are checked) so that switching one off needs no other edit.
    pub enabled: bool,
    pub on: Vec<KindPattern>,
    pub mode: Mode,
    /// `None` leaves the retry budget to the scheduler's configured default.
    pub max_attempts: Option<u32>,
    /// All must hold (AND); an empty list always holds.
    pub when: Vec<Condition>,
    /// `None` means run as soon as possible, without coalescing events.
    pub debounce: Option<Debounce>,
    pub agent: AgentSpec,
    /// Where the handler came from, so later errors (and `hookwise check`) can point at it.
    pub file: PathBuf,
}

impl Handler {
    /// Does this handler react to an event of this kind with this payload?
    pub fn matches(&self, kind: &str, payload: &serde_json::Value) -> bool {
        self.enabled
            && self.on.iter().any(|p| p.matches(kind))
            && self.when.iter().all(|c| c.holds(payload))
    }

    /// Why this handler does not react to an event of this kind with this payload; None when
    /// it does (`replay --local --no-llm` tells a handler author which test failed).
    pub fn mismatch(&self, kind: &str, payload: &serde_json::Value) -> Option<String> {
        if !self.enabled {
            return Some("disabled (enabled = false)".into());
        }
        if !self.on.iter().any(|p| p.matches(kind)) {
            let on: Vec<String> = self.on.iter().map(ToString::to_string).collect();
            return Some(format!("kind {kind} is not in on = [{}]", on.join(", ")));
        }
        let (i, failed) = self
            .when
            .iter()
            .enumerate()
            .find(|(_, c)| !c.holds(payload))?;
        Some(format!("when[{i}] does not hold: {failed}"))
    }

    /// The JSON pointers routing reads of a payload for this handler: its `[[when]]` targets and
    /// its debounce pointer. Accepting an event parses only what some reader declares
    /// (`crate::ingress::select`).
    pub fn payload_pointers(&self) -> impl Iterator<Item = &str> {
        let debounce = match self.debounce.as_ref().map(|d| &d.key) {
            Some(DebounceKey::Pointer(p)) => Some(p.as_str()),
            _ => None,
        };
        self.when.iter().map(Condition::pointer).chain(debounce)
    }

    /// The subject part of the debounce key for this event.
    ///
    /// A missing or null pointer target falls back to the subject, so an event without the
    /// field is debounced on its own rather than lumped together with every other such event.
    pub fn debounce_subject(&self, subject: &str, payload: &serde_json::Value) -> String {
        let key = self.debounce.as_ref().map(|d| &d.key);
        match key {
            None | Some(DebounceKey::Subject) => subject.to_string(),
            Some(DebounceKey::Account) => "*".to_string(),
            Some(DebounceKey::Pointer(p)) => match payload.pointer(p) {
                None | Some(serde_json::Value::Null) => subject.to_string(),
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
            },
        }
    }
}

/// A handler's name: `^[a-z0-9][a-z0-9_-]{0,62}$`. It appears in job keys, logs and URLs,
/// so it is kept to characters that need no escaping anywhere.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HandlerName(String);

impl HandlerName {
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut chars = s.chars();
        let first_ok = chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        let rest_ok =
            chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
        if first_ok && rest_ok && s.len() <= 63 {
            Ok(Self(s.to_string()))
        } else {
            Err(format!(
                "expected a handler name of 1 to 63 characters a-z, 0-9, '_' or '-' \
                 starting with a letter or digit, found {s:?}"
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for HandlerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What happens to the writes an agent run makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Writes are sent upstream.
    Live,
    /// Writes are recorded, not sent: the default, so a new handler cannot act by accident.
    DryRun,
    /// Writes wait for a person to approve them.
    Approve,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Live => "live",
            Mode::DryRun => "dry-run",
            Mode::Approve => "approve",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Trailing debounce: each event pushes the run `period` later, but never past `max_wait`
/// after the first event, so a steady stream of updates still gets handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Debounce {
    pub period: Duration,
    pub max_wait: Duration,
    pub key: DebounceKey,
}

/// Which events fold into the same pending job (always within one handler and one account).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DebounceKey {
    /// One job per subject (ticket, company): the default.
    Subject,
    /// One job per account: every subject coalesces.
    Account,
    /// The payload value at this JSON pointer replaces the subject.
    Pointer(String),
}

/// How the agent runs for this handler.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentSpec {
    pub prompt: String,
    /// `None` uses the model from the service configuration.
    pub model: Option<String>,
    /// The only tools that exist for the model in this handler's runs (`connector.tool_name`).
    pub tools: Vec<String>,
    /// Narrowings of some of those tools (`[agent.scopes."tool"]`), by tool name: which
    /// arguments the model may set and what values they may take.
    pub scopes: BTreeMap<String, ToolScope>,
    pub max_steps: u32,
    pub deadline: Duration,
}
