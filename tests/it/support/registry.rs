//! The real tool registry for a given `[accounts]` configuration, called the way the agent calls
//! it (schema validation first, the account from a context the model cannot write), without a
//! server or an LLM: for testing connectors tool by tool against fake upstreams.

use hookwise::app::App;
use hookwise::config::Config;
use hookwise::store::JobId;
use hookwise::tools::{ToolContext, ToolError, ToolRegistry};
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

pub struct Tools {
    pub registry: Arc<ToolRegistry>,
    // Last: the SQLite file outlives the store using it.
    _dir: tempfile::TempDir,
}

/// A context as the agent builds it for a job of `account`: every call is a new step, so the
/// action journal treats each write as a new one.
pub fn context(account: &str) -> ToolContext {
    static STEP: AtomicU64 = AtomicU64::new(0);
    let step = STEP.fetch_add(1, Ordering::Relaxed);
    ToolContext {
        account: hookwise::kernel::event::AccountId::new(account),
        job: JobId(7),
        subject: "subject".into(),
        idempotency_key: format!("job-7/step-{step}/call-0"),
    }
}

impl Tools {
    /// Builds everything `serve` builds for tools from `accounts` (TOML `[accounts.*]` tables).
    pub async fn new(accounts: &str) -> Tools {
        hookwise::init_tls();
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "store = \"sqlite://{}\"\n{accounts}",
            dir.path().join("hookwise.db").display()
        );
        let config = Config::parse(Path::new("test.toml"), &text, &|_| None).unwrap();
        let registry = App::assemble(config).await.unwrap().tools;
        Tools {
            registry,
            _dir: dir,
        }
    }

    pub fn names(&self) -> Vec<String> {
        self.registry.names()
    }

    /// Schema violations of `args` for `tool` (empty when valid).
    pub fn violations(&self, tool: &str, args: &Value) -> Vec<String> {
        let scoped = self.registry.scoped(&[tool.to_string()]);
        let entry = scoped.get(&tool.replace('.', "__")).expect("tool exists");
        entry.violations(args)
    }

    /// Calls `tool` for a job of `account`; the arguments must be schema-valid.
    pub async fn call_as(
        &self,
        account: &str,
        tool: &str,
        args: Value,
    ) -> Result<Value, ToolError> {
        let violations = self.violations(tool, &args);
        assert!(violations.is_empty(), "{tool} {args}: {violations:?}");
        let scoped = self.registry.scoped(&[tool.to_string()]);
        let entry = scoped.get(&tool.replace('.', "__")).unwrap();
        entry.tool.call(&context(account), args).await
    }

    /// The write check dry-run and approve modes run before recording.
    pub async fn check_as(&self, account: &str, tool: &str, args: Value) -> Result<(), ToolError> {
        let scoped = self.registry.scoped(&[tool.to_string()]);
        let entry = scoped.get(&tool.replace('.', "__")).expect("tool exists");
        entry.tool.check(&context(account), &args).await
    }
}
