//! The composition root: the one place configuration becomes components. `serve`, `check`,
//! `replay --local`, `approvals` and the test support all come through here, so the wiring of
//! sources, handlers, routing, store, LLM, upstream and tools exists once.
//!
//! Two steps. `Plan::check` builds everything that needs no I/O (sources, handlers, the router,
//! the LLM client, the resolved accounts) and reports every problem with file and key: that is
//! `hookwise check`. `App::assemble` then opens and migrates the store and loads the tools.

use crate::agent::budget::Budgets;
use crate::agent::run::AgentRunner;
use crate::approvals::Approvals;
use crate::config::{Config, RetentionConfig};
use crate::connectors;
use crate::handler::{self, HandlerSet, Mode};
use crate::ingress::Source;
use crate::ingress::route::EventRouter;
use crate::kernel::clock::{SharedClock, SystemClock};
use crate::kernel::{ConfigError, ConfigErrors};
use crate::llm::{self, LlmProvider, Metered, RetryPolicy};
use crate::scheduler::JobRunner;
use crate::scheduler::breaker::LlmBreaker;
use crate::store::batcher::RunWriter;
use crate::store::{self, BreakerPolicy, PrunePolicy, Pruner, SharedStore};
use crate::telemetry::metrics::{Metrics, SharedMetrics};
use crate::tools::{self, ToolRegistry};
use crate::upstream::{Account, Upstream};
use anyhow::Context;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// The configured model provider and how the agent uses it.
#[derive(Clone)]
pub struct Llm {
    pub provider: Arc<dyn LlmProvider>,
    pub retry: RetryPolicy,
    /// The model for handlers that do not name one.
    pub model: String,
    pub max_tokens: u32,
    /// The provider's circuit breaker (`[llm.breaker]`), once the store is open; the provider
    /// above already reports to it. None before `App::assemble` or with `failures = 0`.
    pub breaker: Option<Arc<LlmBreaker>>,
}

/// Everything configuration describes that can be built without I/O, checked as a whole.
pub struct Plan {
    pub sources: HashMap<String, Source>,
    pub handlers: Arc<HandlerSet>,
    pub router: Arc<EventRouter>,
    pub llm: Option<Llm>,
    pub accounts: Vec<Account>,
    /// Valid but doubtful, each with file and key: `check` prints them, `serve` logs them.
    pub warnings: Vec<ConfigError>,
}

impl Plan {
    /// Builds every part, collecting every problem (configuration and handler files alike)
    /// before failing, so a user fixes them in one pass. Starts nothing.
    pub fn check(config: &Config) -> Result<Plan, ConfigErrors> {
        let file = config.file_label();
        let mut errors = config.validate().err().map(|e| e.0).unwrap_or_default();

        let mut sources = build_sources(config)
            .map_err(|mut e| errors.append(&mut e.0))
            .unwrap_or_default();

        let mut accounts = Vec::new();
        for (name, cfg) in &config.accounts {
            match connectors::resolve_account(name, cfg) {
                Ok(account) => accounts.push(account),
                Err(problems) => errors.extend(problems.into_iter().map(|(key, message)| {
                    let key = if key.is_empty() {
                        format!("accounts.{name}")
                    } else {
                        format!("accounts.{name}.{key}")
                    };
                    ConfigError::new(&file, key, message)
                })),
            }
        }

        let llm = match &config.llm {
            Some(cfg) => match llm::build(cfg) {
                Ok(provider) => Some(Llm {
                    provider,
                    retry: llm::retry_policy(cfg),
                    model: cfg.model.clone(),
                    max_tokens: cfg.max_tokens,
                    breaker: None,
                }),
                Err(e) => {
                    let key = if e.key.is_empty() {
                        "llm".to_string()
                    } else {
                        format!("llm.{}", e.key)
                    };
                    errors.push(ConfigError::new(&file, key, e.message));
                    None
                }
            },
            None => None,
        };

        let mut warnings = config.warnings();
        let handlers = match load_handlers(&config.handlers_dir) {
            Ok(handlers) => {
                check_tools(&handlers, &mut errors, &mut warnings);
                warn_unpriced(config, &handlers, &mut warnings);
                handlers
            }
            Err(mut e) => {
                errors.append(&mut e);
                Vec::new()
            }
        };

        if !errors.is_empty() {
            return Err(ConfigErrors(errors));
        }
        let (handlers, router) = route(config, handlers, &mut sources);
        Ok(Plan {
            sources,
            handlers,
            router,
            llm,
            accounts,
            warnings,
        })
    }
}

/// Handlers' `agent.tools` against the connectors' tools: a name its connector does not have is
/// an error (it could never run). A name of no connector is only a warning, since an application
/// may register tools of its own (`Server::with_tools`). Argument scopes of tools whose schema is
/// known without I/O are held against it (`check_scopes`).
fn check_tools(
    handlers: &[handler::Handler],
    errors: &mut Vec<ConfigError>,
    warnings: &mut Vec<ConfigError>,
) {
    for handler in handlers {
        for (i, tool) in handler.agent.tools.iter().enumerate() {
            let key = format!("agent.tools[{i}]");
            if let Some(message) = connectors::unknown_tool(tool) {
                errors.push(ConfigError::new(&handler.file, key, message));
            } else if tool
                .split_once('.')
                .is_none_or(|(c, _)| connectors::find(c).is_none())
            {
                warnings.push(ConfigError::new(
                    &handler.file,
                    key,
                    format!("{tool:?} is not a tool of any connector; it exists only if the application registers it"),
                ));
            }
        }
        check_scopes(handler, errors);
    }
}

/// With a cost budget set, every model a handler runs on needs a price, or its runs cost nothing
/// against the budget: a warning for the configured model and for each handler's own one.
fn warn_unpriced(config: &Config, handlers: &[handler::Handler], warnings: &mut Vec<ConfigError>) {
    let Some(llm) = config
        .llm
        .as_ref()
        .filter(|_| config.budgets.cost_limited())
    else {
        return;
    };
    let message = |model: &str| {
        format!(
            "model {model:?} has no price in [llm.prices]: its runs count no cost against the \
             cost budgets in [budgets] (add [llm.prices.{model:?}])"
        )
    };
    let default_used = handlers.iter().any(|h| h.agent.model.is_none());
    if default_used && !llm.prices.contains_key(&llm.model) {
        warnings.push(config.problem("llm.model", message(&llm.model)));
    }
    for handler in handlers {
        if let Some(model) = &handler.agent.model
            && !llm.prices.contains_key(model)
        {
            warnings.push(ConfigError::new(
                &handler.file,
                "agent.model",
                message(model),
            ));
        }
    }
}

/// A handler's `[agent.scopes."tool"]` against the tool's static schema, for the connectors that
/// know theirs without I/O: every problem is an error under the scope's key. Tools known only at
/// run time are checked when they are loaded (`warn_unoffered_tools`).
fn check_scopes(handler: &handler::Handler, errors: &mut Vec<ConfigError>) {
    for (tool, scope) in &handler.agent.scopes {
        let Some(schema) = static_schema(tool) else {
            continue;
        };
        for (key, message) in tools::scope::problems(&schema, scope) {
            let base = handler::scope_key(tool);
            let key = if key.is_empty() {
                base
            } else {
                format!("{base}.{key}")
            };
            errors.push(ConfigError::new(&handler.file, key, message));
        }
    }
}

/// The argument schema of `tool` when its connector knows it without I/O.
fn static_schema(tool: &str) -> Option<serde_json::Value> {
    let (prefix, _) = tool.split_once('.')?;
    connectors::find(prefix)?
        .tool_schemas()?
        .into_iter()
        .find_map(|(name, schema)| (name == tool).then_some(schema))
}

/// Handlers' tools of connectors known only at run time (`truto.*`) that no account offered at
/// start-up: logged, not refused, since an account may only be unreachable for now. Likewise a
/// scope that does not fit such a tool's schema as loaded: the vendor may change a definition
/// under a running configuration, and the scope is enforced at every call whatever the schema.
fn warn_unoffered_tools(handlers: &HandlerSet, tools: &ToolRegistry) {
    for handler in handlers.iter() {
        for (tool, scope) in &handler.agent.scopes {
            if static_schema(tool).is_some() {
                continue; // `check` held it against the schema already.
            }
            let Some(entry) = tools.get(tool) else {
                continue;
            };
            for (key, message) in tools::scope::problems(&entry.parameters, scope) {
                tracing::warn!(
                    handler = %handler.name,
                    file = %handler.file.display(),
                    key = %format!("{}.{key}", handler::scope_key(tool)).trim_end_matches('.'),
                    "{message}; the scope is still enforced at every call"
                );
            }
        }
        for tool in &handler.agent.tools {
            let Some((prefix, _)) = tool.split_once('.') else {
                continue;
            };
            let runtime_only = connectors::find(prefix).is_some_and(|c| c.tool_names().is_none());
            let names = tools.names();
            if !runtime_only || names.contains(tool) {
                continue;
            }
            let offered = names
                .iter()
                .map(String::as_str)
                .filter(|n| n.split_once('.').is_some_and(|(c, _)| c == prefix));
            let hint = crate::kernel::did_you_mean(tool, offered);
            tracing::warn!(
                handler = %handler.name,
                file = %handler.file.display(),
                tool = %tool,
                "no {prefix} account offers this tool{hint}; the handler's runs go without it"
            );
        }
    }
}

/// The handler set and its router; each source from then on parses of a payload only what it
/// and the router read.
fn route(
    config: &Config,
    handlers: Vec<handler::Handler>,
    sources: &mut HashMap<String, Source>,
) -> (Arc<HandlerSet>, Arc<EventRouter>) {
    let handlers = Arc::new(HandlerSet::new(handlers));
    let router = Arc::new(EventRouter::new(
        handlers.clone(),
        &config.accounts,
        config.scheduler.max_attempts,
    ));
    for source in sources.values_mut() {
        source.routed_by(&router);
    }
    (handlers, router)
}

/// The webhook sources of `config`, each with its adapter; every problem names its key. `sign`
/// and `replay` need only these.
pub fn build_sources(config: &Config) -> Result<HashMap<String, Source>, ConfigErrors> {
    let file = config.file_label();
    let mut errors = Vec::new();
    let mut sources = HashMap::new();
    for (name, cfg) in &config.sources {
        let adapter = match connectors::adapter(&cfg.kind) {
            Ok(adapter) => adapter,
            Err(message) => {
                errors.push(ConfigError::new(
                    &file,
                    format!("sources.{name}.kind"),
                    message,
                ));
                continue;
            }
        };
        match Source::build(&file, name, cfg, adapter) {
            Ok(source) => {
                sources.insert(name.clone(), source);
            }
            Err(mut e) => errors.append(&mut e),
        }
    }
    if errors.is_empty() {
        Ok(sources)
    } else {
        Err(ConfigErrors(errors))
    }
}

/// Every handler file in `dir`; a missing directory is no handlers (with a warning).
fn load_handlers(dir: &Path) -> Result<Vec<handler::Handler>, Vec<ConfigError>> {
    if !dir.exists() {
        tracing::warn!(dir = %dir.display(), "handlers directory does not exist: no handlers will run");
        return Ok(Vec::new());
    }
    let handlers = handler::load_dir(dir)?;
    tracing::info!(dir = %dir.display(), handlers = handlers.len(), "handlers loaded");
    Ok(handlers)
}

/// How a command wants the components assembled.
#[derive(Clone)]
pub struct Options {
    pub clock: SharedClock,
    /// A store URL used instead of `config.store` (`replay --local`'s scratch store).
    pub store: Option<String>,
    /// Every handler runs in dry-run mode: writes are recorded, not sent.
    pub dry_run: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            clock: Arc::new(SystemClock),
            store: None,
            dry_run: false,
        }
    }
}

/// The assembled service: what `serve` runs and the other commands use.
pub struct App {
    pub config: Config,
    pub clock: SharedClock,
    pub store: SharedStore,
    pub sources: HashMap<String, Source>,
    pub handlers: Arc<HandlerSet>,
    /// Which handlers an event starts or joins.
    pub router: Arc<EventRouter>,
    pub llm: Option<Llm>,
    pub upstream: Upstream,
    /// Every tool of every connector; each handler sees only its allow-list.
    pub tools: Arc<ToolRegistry>,
    /// What `/metrics` shows; every component counts into it.
    pub metrics: SharedMetrics,
    /// `[budgets]` and `[llm.prices]`.
    pub budgets: Arc<Budgets>,
}

impl App {
    /// Assembles with the system clock and the configured store.
    pub async fn assemble(config: Config) -> anyhow::Result<App> {
        Self::assemble_with(config, Options::default()).await
    }

    /// Checks the plan, opens and migrates the store, and loads the tools (Truto accounts list
    /// theirs over the network).
    pub async fn assemble_with(config: Config, options: Options) -> anyhow::Result<App> {
        let mut plan = Plan::check(&config)?;
        for warning in &plan.warnings {
            tracing::warn!("{warning}");
        }
        if options.dry_run {
            let mut handlers: Vec<_> = plan.handlers.iter().cloned().collect();
            for handler in &mut handlers {
                handler.mode = Mode::DryRun;
            }
            (plan.handlers, plan.router) = route(&config, handlers, &mut plan.sources);
        }
        let url = options.store.as_deref().unwrap_or(&config.store);
        let store = store::open(url).await.map_err(|e| match e {
            // Names the store (redacted) already.
            store::StoreError::Open { .. } => anyhow::Error::new(e),
            e => anyhow::Error::new(e).context(format!("opening store {}", store::redact(url))),
        })?;
        store.migrate().await.context("migrating the store")?;
        let metrics: SharedMetrics = Arc::new(Metrics::new());
        let upstream = Upstream::new(
            plan.accounts,
            store.clone(),
            options.clock.clone(),
            metrics.clone(),
        )
        .map_err(|e| anyhow::anyhow!("{}: {e}", config.file_label().display()))?;
        let tools = connectors::build_registry(&upstream)
            .await
            .map_err(|e| anyhow::anyhow!("loading tools: {e}"))?;
        warn_unoffered_tools(&plan.handlers, &tools);
        if let (Some(llm), Some(cfg)) = (&mut plan.llm, &config.llm) {
            tracing::info!(provider = cfg.provider.as_str(), model = %cfg.model, "LLM provider configured");
            llm.provider = Arc::new(Metered::new(
                llm.provider.clone(),
                cfg.provider.as_str(),
                metrics.clone(),
            ));
            if cfg.breaker.failures > 0 {
                let ms = |d: std::time::Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
                let breaker = Arc::new(LlmBreaker::new(
                    store.clone(),
                    options.clock.clone(),
                    metrics.clone(),
                    cfg.provider.as_str(),
                    cfg.base_url_or_default(),
                    BreakerPolicy {
                        threshold: cfg.breaker.failures,
                        cool_down_ms: ms(cfg.breaker.cool_down),
                        max_cool_down_ms: ms(cfg.breaker.max_cool_down),
                    },
                ));
                llm.provider = breaker.guard(llm.provider.clone());
                llm.breaker = Some(breaker);
            }
        }
        Ok(App {
            clock: options.clock,
            store,
            sources: plan.sources,
            handlers: plan.handlers,
            router: plan.router,
            llm: plan.llm,
            upstream,
            tools: Arc::new(tools),
            metrics,
            budgets: Arc::new(budgets(&config)),
            config,
        })
    }

    /// The agent, when `[llm]` is configured.
    pub fn agent(&self) -> Option<AgentRunner> {
        let llm = self.llm.as_ref()?;
        Some(AgentRunner {
            llm: llm.provider.clone(),
            retry: llm.retry.clone(),
            tools: self.tools.clone(),
            store: self.store.clone(),
            clock: self.clock.clone(),
            model: llm.model.clone(),
            max_tokens: llm.max_tokens,
            metrics: self.metrics.clone(),
            runs: RunWriter::start(self.store.clone()),
            budgets: self.budgets.clone(),
        })
    }

    /// The agent as the scheduler's runner.
    pub fn job_runner(&self) -> Option<Arc<dyn JobRunner>> {
        self.agent()
            .map(|agent| Arc::new(agent) as Arc<dyn JobRunner>)
    }

    /// The background pruner `serve` runs; None when `[retention] enabled = false`.
    pub fn pruner(&self) -> Option<Pruner> {
        pruner(
            &self.config.retention,
            self.store.clone(),
            self.clock.clone(),
            self.metrics.clone(),
        )
    }

    /// Approving and rejecting held writes with this process's tools.
    pub fn approvals(&self) -> Approvals {
        Approvals {
            store: self.store.clone(),
            tools: self.tools.clone(),
            handlers: self.handlers.clone(),
            clock: self.clock.clone(),
        }
    }
}

/// `[budgets]` with the price table of `[llm]`.
pub fn budgets(config: &Config) -> Budgets {
    Budgets {
        limits: config.budgets.clone(),
        prices: config
            .llm
            .as_ref()
            .map(|llm| llm.prices.clone())
            .unwrap_or_default(),
    }
}

/// The retention policy `[retention]` describes, in the store's terms.
pub fn prune_policy(config: &RetentionConfig) -> PrunePolicy {
    let ms = |d: std::time::Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    PrunePolicy {
        events_ms: ms(config.events),
        jobs_ms: ms(config.jobs),
        dead_jobs_ms: ms(config.dead_jobs),
        batch: config.batch,
    }
}

/// A pruner over `store` by `[retention]` (`serve` in the background, `hookwise prune` once);
/// None when retention is disabled.
pub fn pruner(
    config: &RetentionConfig,
    store: SharedStore,
    clock: SharedClock,
    metrics: SharedMetrics,
) -> Option<Pruner> {
    config.enabled.then(|| Pruner {
        store,
        clock,
        policy: prune_policy(config),
        interval: config.interval,
        // Between two rounds of one pass: long enough for queued webhooks to commit first.
        pause: std::time::Duration::from_millis(20),
        metrics,
    })
}

#[cfg(test)]
mod tests;
