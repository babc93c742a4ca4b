//! The HappyFox connector against the fake HappyFox: each tool's exact request and trimmed result,
//! refusals (inside 2xx, validation shapes, credentials, missing bot id, rate limit), the live
//! custom-field schema, and the bundled triage handler end to end in dry-run.

mod agent;
mod fields;
mod reads;
mod writes;

use crate::support::fake_happyfox::{BOT_STAFF_ID, FakeHappyfox, Limits};
use hookwise::app::App;
use hookwise::config::Config;
use hookwise::kernel::event::AccountId;
use hookwise::store::JobId;
use hookwise::tools::{Entry, ToolContext, ToolError, ToolRegistry};
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The connector's tools, built from a configuration whose accounts point at a fake HappyFox:
/// `acme` (writes as the bot), `acme2` (the same instance, a second account), `nobot` (no
/// `bot_staff_id`) and `wrongkey` (an auth code HappyFox refuses).
pub struct Hf {
    pub fake: FakeHappyfox,
    registry: Arc<ToolRegistry>,
    calls: AtomicU64,
    _dir: tempfile::TempDir,
}

impl Hf {
    pub async fn start() -> Hf {
        Self::start_with(Limits::default()).await
    }

    pub async fn start_with(limits: Limits) -> Hf {
        let fake = FakeHappyfox::start_with(limits).await;
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "store = \"sqlite://{}\"\n{}{}{}{}",
            dir.path().join("hookwise.db").display(),
            fake.account_toml("acme", Some(BOT_STAFF_ID), ""),
            fake.account_toml("acme2", Some(BOT_STAFF_ID), ""),
            fake.account_toml("nobot", None, ""),
            fake.account_toml(
                "wrongkey",
                Some(BOT_STAFF_ID),
                "auth_code = \"not-the-code\""
            ),
        );
        let config = Config::parse(Path::new("test.toml"), &text, &|_| None).unwrap();
        let registry = App::assemble(config).await.unwrap().tools;
        Hf {
            fake,
            registry,
            calls: AtomicU64::new(0),
            _dir: dir,
        }
    }

    /// A context as the agent builds it, with a fresh idempotency key per call.
    pub fn ctx(&self, account: &str, subject: &str) -> ToolContext {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        ToolContext {
            account: AccountId::new(account),
            job: JobId(1),
            subject: subject.to_string(),
            idempotency_key: format!("job-1/step-{n}/call-0"),
        }
    }

    /// The tool's entry with its static schema.
    pub fn entry(&self, name: &str) -> Arc<Entry> {
        let scoped = self.registry.scoped(&[name.to_string()]);
        assert!(scoped.missing.is_empty(), "no tool {name}");
        scoped.get(&name.replace('.', "__")).unwrap().clone()
    }

    /// The tool's entry with the live schema of a run on `account` about `subject`, and the notes
    /// the run would record (a live schema that could not be built).
    pub async fn live_entry(
        &self,
        name: &str,
        account: &str,
        subject: &str,
    ) -> (Arc<Entry>, Vec<String>) {
        let mut scoped = self.registry.scoped(&[name.to_string()]);
        let notes = scoped.resolve_live(&self.ctx(account, subject)).await;
        (scoped.get(&name.replace('.', "__")).unwrap().clone(), notes)
    }

    /// Calls a tool for `acme` as the agent would, after checking the arguments against its
    /// static schema (a test whose arguments do not fit fails here, not upstream).
    pub async fn call(&self, name: &str, args: Value) -> Result<Value, ToolError> {
        self.call_as("acme", name, args).await
    }

    pub async fn call_as(
        &self,
        account: &str,
        name: &str,
        args: Value,
    ) -> Result<Value, ToolError> {
        let entry = self.entry(name);
        let violations = entry.violations(&args);
        assert!(violations.is_empty(), "{name} {args}: {violations:?}");
        entry.tool.call(&self.ctx(account, "142"), args).await
    }
}

/// The message of a refusal (hookwise's `Rejected` or the upstream's `Refused`); panics on anything else.
pub fn rejected(result: Result<Value, ToolError>) -> String {
    match result {
        Err(ToolError::Rejected(message)) => message,
        Err(e @ ToolError::Refused { .. }) => e.to_string(),
        other => panic!("expected Rejected, got {other:?}"),
    }
}
