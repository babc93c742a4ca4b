//! Tools the agent may call: the `Tool` trait, a registry of every tool hookwise has, and the
//! scoped view one handler's run sees (only its allow-list exists for the model, each tool
//! narrowed by the handler's argument scope: `scope.rs`).
//!
//! A tool knows nothing of who calls it: the account and the idempotency key come in a
//! `ToolContext` built from the job, never from model output. Arguments are validated against the
//! tool's JSON Schema before `call` runs, so a tool only ever sees schema-valid input.

pub mod scope;

use crate::handler::ToolScope;
use crate::llm::ToolSpec;
use async_trait::async_trait;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

/// The tool layer calls the upstream's call context and error by the names the agent uses: a
/// tool call is one upstream call context, and its failures are the upstream's.
pub use crate::upstream::{CallContext as ToolContext, CallError as ToolError};

#[async_trait]
pub trait Tool: Send + Sync + 'static {
    /// Dotted name used in handler files: `happyfox.add_private_note`.
    fn name(&self) -> &str;
    fn description(&self) -> &str;
    /// JSON Schema of the arguments object.
    fn parameters(&self) -> Value;
    /// The schema for this run when it depends on live upstream data (HappyFox custom fields
    /// depend on the ticket's category): replaces `parameters` for the model and for validation.
    /// None keeps `parameters`. Called once per run, before the first model call.
    async fn live_parameters(&self, _ctx: &ToolContext) -> Result<Option<Value>, ToolError> {
        Ok(None)
    }
    /// Whether the tool changes anything upstream: dry-run and approve modes record these calls
    /// instead of executing them.
    fn writes(&self) -> bool;
    /// Checks a write's schema-valid arguments against live upstream state without changing
    /// anything (the ids it references exist and are of the right kind, custom field keys are
    /// defined). The agent runs it before recording a write in dry-run or approve mode, so a
    /// recorded action is one that would have been sent; `call` must run the same checks itself.
    async fn check(&self, _ctx: &ToolContext, _args: &Value) -> Result<(), ToolError> {
        Ok(())
    }
    async fn call(&self, ctx: &ToolContext, args: Value) -> Result<Value, ToolError>;
}

/// A registered tool with its compiled argument validator.
pub struct Entry {
    pub tool: Arc<dyn Tool>,
    /// The schema the model sees and `validator` checks: the tool's own, or this run's live one.
    pub parameters: Arc<Value>,
    validator: jsonschema::Validator,
    /// The name the model sees: providers allow `[a-zA-Z0-9_-]`, so dots become `__`.
    pub wire_name: String,
    /// The handler's narrowing of this tool, already applied to `parameters`; checked again on
    /// every call (`out_of_scope`). None in the registry and for tools a handler leaves whole.
    pub scope: Option<Arc<ToolScope>>,
}

impl Entry {
    fn new(tool: Arc<dyn Tool>, parameters: Value) -> Result<Self, String> {
        Self::scoped(tool, parameters, None)
    }

    /// The entry for `parameters` (the tool's own or a live schema) narrowed by `scope`.
    fn scoped(
        tool: Arc<dyn Tool>,
        parameters: Value,
        scope: Option<Arc<ToolScope>>,
    ) -> Result<Self, String> {
        let name = tool.name().to_string();
        let parameters = match &scope {
            Some(scope) => scope::narrow(&parameters, scope),
            None => parameters,
        };
        let validator = jsonschema::validator_for(&parameters)
            .map_err(|e| format!("tool {name:?}: invalid JSON Schema: {e}"))?;
        Ok(Self {
            wire_name: wire(&name),
            tool,
            parameters: Arc::new(parameters),
            validator,
            scope,
        })
    }

    /// Every way `args` leaves the handler's scope for this tool; empty when in scope (or when
    /// the handler does not narrow it). Judged from the scope itself, not from the schema.
    pub fn out_of_scope(&self, args: &Value) -> Vec<String> {
        self.scope
            .as_ref()
            .map(|s| s.violations(args))
            .unwrap_or_default()
    }

    /// Every way `args` breaks the schema, as `path: message` lines; empty when valid.
    pub fn violations(&self, args: &Value) -> Vec<String> {
        self.validator
            .iter_errors(args)
            .map(|e| {
                let path = e.instance_path().to_string();
                if path.is_empty() {
                    e.to_string()
                } else {
                    format!("{path}: {e}")
                }
            })
            .collect()
    }
}

/// Every tool this process can run, by dotted name: those registered at start-up, and the
/// live sets whose tools come and go while it runs (an MCP server's, listed again on an interval).
#[derive(Default)]
pub struct ToolRegistry {
    tools: BTreeMap<String, Arc<Entry>>,
    live: Vec<Arc<LiveTools>>,
    /// Entries already narrowed by a scope, so a run reuses them instead of compiling its own
    /// validator (a scope's patterns included): each costs tens of KiB and a few hundred
    /// microseconds, for every run of a handler with scopes.
    narrowed: Mutex<Vec<Narrowed>>,
}

/// `entry` is `base` narrowed by `scope`; valid while `base` is the registry's entry of its name.
struct Narrowed {
    base: Arc<Entry>,
    scope: ToolScope,
    entry: Arc<Entry>,
}

/// Tools a connector replaces while the process runs. A run takes the tools of its allow-list
/// when it starts (`ToolRegistry::scoped_by`) and keeps them to its end.
pub struct LiveTools {
    /// The connector's name: the tools are `<prefix>.<tool>`.
    prefix: String,
    entries: RwLock<BTreeMap<String, Arc<Entry>>>,
    /// Why some of the connector's tools may be missing now (a server that does not answer);
    /// a run allow-listing one that is not here gets this note.
    note: RwLock<Option<String>>,
}

impl LiveTools {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_string(),
            entries: RwLock::default(),
            note: RwLock::default(),
        }
    }

    /// Sets (or clears) why tools of this connector may be missing.
    pub fn set_note(&self, note: Option<String>) {
        *self.note.write().unwrap_or_else(|e| e.into_inner()) = note;
    }

    fn note_for(&self, name: &str) -> Option<String> {
        let (prefix, _) = name.split_once('.')?;
        if prefix != self.prefix {
            return None;
        }
        self.note.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Makes `tools` the set, in place of the previous one. A tool whose name or schema is not
    /// usable is left out; the returned problems say which and why.
    pub fn replace(&self, tools: Vec<Arc<dyn Tool>>) -> Vec<String> {
        let mut entries = BTreeMap::new();
        let mut problems = Vec::new();
        for tool in tools {
            let name = tool.name().to_string();
            let compiled = valid_name(&name).and_then(|()| {
                let parameters = tool.parameters();
                Entry::new(tool, parameters)
            });
            match compiled {
                Ok(entry) => {
                    entries.insert(name, Arc::new(entry));
                }
                Err(e) => problems.push(e),
            }
        }
        *self.entries.write().unwrap_or_else(|e| e.into_inner()) = entries;
        problems
    }

    fn get(&self, name: &str) -> Option<Arc<Entry>> {
        self.read().get(name).cloned()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<Entry>>> {
        self.entries.read().unwrap_or_else(|e| e.into_inner())
    }
}

/// A tool name must be `connector.tool`, lower-case letters, digits and `_`.
fn valid_name(name: &str) -> Result<(), String> {
    let valid = name.split_once('.').is_some_and(|(c, t)| {
        !c.is_empty()
            && !t.is_empty()
            && name
                .chars()
                .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_' || ch == '.')
    });
    if valid {
        Ok(())
    } else {
        Err(format!("tool name {name:?}: expected connector.tool_name"))
    }
}

impl ToolRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a tool; its schema must compile and its name must be `connector.tool`.
    pub fn register(&mut self, tool: Arc<dyn Tool>) -> Result<(), String> {
        let name = tool.name().to_string();
        valid_name(&name)?;
        if self.tools.contains_key(&name) {
            return Err(format!("tool {name:?} is registered twice"));
        }
        let parameters = tool.parameters();
        let entry = Entry::new(tool, parameters)?;
        self.tools.insert(name, Arc::new(entry));
        Ok(())
    }

    /// Adds a live set: its tools are looked up after the registered ones, as they are now.
    pub fn add_live(&mut self, live: Arc<LiveTools>) {
        self.live.push(live);
    }

    /// Every tool this process has now: the registered ones by name, then each live set's.
    pub fn tools(&self) -> Vec<Arc<dyn Tool>> {
        let mut all: Vec<Arc<dyn Tool>> = self.tools.values().map(|e| e.tool.clone()).collect();
        for live in &self.live {
            all.extend(live.read().values().map(|e| e.tool.clone()));
        }
        all
    }

    /// The names of `tools`.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.tools.keys().cloned().collect();
        for live in &self.live {
            names.extend(live.read().keys().cloned());
        }
        names
    }

    /// The tool called `name` now, with its own schema.
    pub fn get(&self, name: &str) -> Option<Arc<Entry>> {
        self.tools
            .get(name)
            .cloned()
            .or_else(|| self.live.iter().find_map(|live| live.get(name)))
    }

    /// The tools of an allow-list, whole (no argument scopes).
    pub fn scoped(&self, allow: &[String]) -> ScopedTools {
        self.scoped_by(allow, &BTreeMap::new())
    }

    /// The tools one handler may use, each narrowed by its scope in `scopes`. Allow-listed names
    /// this process does not have are listed in `missing` (the run says so; the model never sees
    /// them); a tool whose narrowed schema does not compile is left out too, with a note.
    pub fn scoped_by(&self, allow: &[String], scopes: &BTreeMap<String, ToolScope>) -> ScopedTools {
        let mut entries = Vec::new();
        let mut missing = Vec::new();
        let mut notes = Vec::new();
        for name in allow {
            let Some(entry) = self.get(name) else {
                missing.push(name.clone());
                if let Some(why) = self.live.iter().find_map(|live| live.note_for(name)) {
                    notes.push(format!("{name} is not available now: {why}"));
                }
                continue;
            };
            let Some(scope) = scopes.get(name) else {
                entries.push(entry);
                continue;
            };
            match self.narrow(name, entry, scope) {
                Ok(narrowed) => entries.push(narrowed),
                Err(e) => notes.push(format!("{name} is not offered: its scope: {e}")),
            }
        }
        ScopedTools {
            entries,
            missing,
            notes,
        }
    }

    /// `base` (the entry of `name` now) narrowed by `scope`: compiled once, then shared by every
    /// run that asks for the same. A live set's new entry for `name` replaces the ones of the old.
    fn narrow(
        &self,
        name: &str,
        base: Arc<Entry>,
        scope: &ToolScope,
    ) -> Result<Arc<Entry>, String> {
        let mut cache = self.narrowed.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(hit) = cache
            .iter()
            .find(|n| Arc::ptr_eq(&n.base, &base) && n.scope == *scope)
        {
            return Ok(hit.entry.clone());
        }
        let entry = Arc::new(Entry::scoped(
            base.tool.clone(),
            Value::clone(&base.parameters),
            Some(Arc::new(scope.clone())),
        )?);
        cache.retain(|n| n.base.tool.name() != name || Arc::ptr_eq(&n.base, &base));
        cache.push(Narrowed {
            base,
            scope: scope.clone(),
            entry: entry.clone(),
        });
        Ok(entry)
    }
}

/// A handler's view: exactly its allow-list, narrowed by its scopes; nothing else exists.
pub struct ScopedTools {
    entries: Vec<Arc<Entry>>,
    pub missing: Vec<String>,
    /// Why an allow-listed tool was left out although this process has it (for the transcript).
    pub notes: Vec<String>,
}

impl ScopedTools {
    /// What the model is offered.
    pub fn specs(&self) -> Vec<ToolSpec> {
        self.entries
            .iter()
            .map(|e| ToolSpec {
                name: e.wire_name.clone(),
                description: e.tool.description().to_string(),
                parameters: e.parameters.clone(),
            })
            .collect()
    }

    /// Replaces the schema of every tool whose schema depends on live upstream data with this
    /// run's, narrowed by the same scope. A tool whose live schema cannot be read stays offered
    /// with its static schema; the returned notes say which and why (for the transcript).
    pub async fn resolve_live(&mut self, ctx: &ToolContext) -> Vec<String> {
        let mut notes = Vec::new();
        for entry in &mut self.entries {
            match entry.tool.live_parameters(ctx).await {
                Ok(None) => {}
                Ok(Some(schema)) => {
                    match Entry::scoped(entry.tool.clone(), schema, entry.scope.clone()) {
                        Ok(live) => *entry = Arc::new(live),
                        Err(e) => notes.push(e),
                    }
                }
                Err(e) => notes.push(format!(
                    "{}: live schema unavailable, using the static one: {e}",
                    entry.tool.name()
                )),
            }
        }
        notes
    }

    /// The entry the model named (by wire name), if it is in scope.
    pub fn get(&self, wire_name: &str) -> Option<&Arc<Entry>> {
        self.entries.iter().find(|e| e.wire_name == wire_name)
    }
}

/// The name the model sees for a dotted tool name: providers allow `[a-zA-Z0-9_-]`.
pub fn wire(dotted: &str) -> String {
    dotted.replace('.', "__")
}

/// An id or name as one URL path segment: everything but unreserved characters percent-encoded,
/// so an upstream id (or a model's argument) cannot add path segments or a query.
pub fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The dotted form of a wire name, for transcripts and refusals.
pub fn dotted(wire_name: &str) -> String {
    wire_name.replace("__", ".")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct Lookup(&'static str);

    #[async_trait]
    impl Tool for Lookup {
        fn name(&self) -> &str {
            self.0
        }
        fn description(&self) -> &str {
            "looks something up"
        }
        fn parameters(&self) -> Value {
            json!({"type": "object", "properties": {"id": {"type": "integer"}, "why": {"type": "string"}}})
        }
        fn writes(&self) -> bool {
            false
        }
        async fn call(&self, _ctx: &ToolContext, _args: Value) -> Result<Value, ToolError> {
            Ok(Value::Null)
        }
    }

    fn only_id() -> BTreeMap<String, ToolScope> {
        let scope = ToolScope {
            allow: Some(vec!["id".into()]),
            args: BTreeMap::new(),
        };
        BTreeMap::from([("crm.lookup".to_string(), scope)])
    }

    #[test]
    fn runs_of_one_scope_share_its_narrowed_tool_until_the_tool_is_replaced() {
        let live = Arc::new(LiveTools::new("crm"));
        assert!(
            live.replace(vec![Arc::new(Lookup("crm.lookup"))])
                .is_empty()
        );
        let mut registry = ToolRegistry::new();
        registry.add_live(live.clone());
        let allow = ["crm.lookup".to_string()];

        let first = registry.scoped_by(&allow, &only_id());
        let second = registry.scoped_by(&allow, &only_id());
        let (a, b) = (&first.entries[0], &second.entries[0]);
        assert!(Arc::ptr_eq(a, b), "the second run compiled its own copy");
        assert_eq!(
            a.parameters["properties"],
            json!({"id": {"type": "integer"}})
        );
        assert!(a.violations(&json!({"id": 7})).is_empty());
        assert_eq!(
            a.out_of_scope(&json!({"why": "x"})).len(),
            1,
            "the scope is checked"
        );

        // Another scope of the same tool is its own entry.
        let whole = registry.scoped(&allow);
        assert!(!Arc::ptr_eq(&whole.entries[0], a));
        assert!(
            whole.entries[0].parameters["properties"]
                .get("why")
                .is_some()
        );

        // The server lists its tools again: runs from now on narrow the new definition.
        live.replace(vec![Arc::new(Lookup("crm.lookup"))]);
        let third = registry.scoped_by(&allow, &only_id());
        assert!(
            !Arc::ptr_eq(&third.entries[0], a),
            "a replaced tool's narrowing was reused"
        );
        assert_eq!(
            registry.narrowed.lock().unwrap().len(),
            1,
            "the old narrowing is dropped"
        );
    }
}
