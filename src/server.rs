//! Starting and stopping the service: everything `serve` does, callable from tests with a listener
//! bound to port 0 and a cancellation token.

use crate::agent::llm::LlmProvider;
use crate::agent::run::AgentRunner;
use crate::approvals::Approvals;
use crate::clock::{SharedClock, SystemClock};
use crate::config::Config;
use crate::handler::{self, Handler};
use crate::http::{AppState, router};
use crate::ingress::Source;
use crate::scheduler::route::EventRouter;
use crate::scheduler::{JobRunner, Scheduler};
use crate::store::{self, SharedStore, batcher::IngestQueue};
use crate::tools::ToolRegistry;
use crate::upstream::Upstream;
use anyhow::{Context, anyhow};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// A prepared service: store opened and migrated, sources compiled, handlers loaded.
pub struct Server {
    pub config: Config,
    pub store: SharedStore,
    pub clock: SharedClock,
    pub router: Arc<EventRouter>,
    sources: HashMap<String, Source>,
    /// The agent's LLM, when `[llm]` is configured.
    llm: Option<Arc<dyn LlmProvider>>,
    /// Tools the agent may offer to handlers (each handler sees only its allow-list); the API
    /// sends approved writes with the same registry.
    tools: Arc<ToolRegistry>,
    /// Overrides the agent (tests, embedding applications).
    runner: Option<Arc<dyn JobRunner>>,
}

impl Server {
    pub async fn prepare(config: Config) -> anyhow::Result<Self> {
        Self::prepare_with_clock(config, Arc::new(SystemClock)).await
    }

    pub async fn prepare_with_clock(config: Config, clock: SharedClock) -> anyhow::Result<Self> {
        let file = config.file_label();
        let mut sources = HashMap::new();
        for (name, source) in &config.sources {
            let built = Source::build(&file, name, source)
                .map_err(|e| anyhow::Error::new(crate::config::ConfigErrors(e)))?;
            sources.insert(name.clone(), built);
        }
        let handlers = load_handlers(&config)?;
        let router = Arc::new(EventRouter::new(
            Arc::new(handlers),
            &config.accounts,
            config.scheduler.max_attempts,
        ));
        let store = store::open(&config.store)
            .await
            .with_context(|| format!("opening store {}", store::redact(&config.store)))?;
        store.migrate().await.context("migrating the store")?;
        let llm = match &config.llm {
            Some(llm) => {
                let provider = llm.build().map_err(|e| anyhow!("[llm] {e}"))?;
                tracing::info!(provider = ?llm.provider, model = %llm.model, "LLM provider configured");
                Some(provider)
            }
            None => None,
        };
        let upstream = Upstream::new(&config, store.clone(), clock.clone())
            .map_err(|e| anyhow!("{}: {e}", config.file_label().display()))?;
        let tools = crate::tools::build_registry(&upstream)
            .await
            .map_err(|e| anyhow!("loading tools: {e}"))?;
        Ok(Self {
            config,
            store,
            clock,
            router,
            sources,
            llm,
            tools: Arc::new(tools),
            runner: None,
        })
    }

    /// Jobs are executed by `runner` instead of the agent.
    pub fn with_runner(mut self, runner: Arc<dyn JobRunner>) -> Self {
        self.runner = Some(runner);
        self
    }

    /// The tools the agent may offer to handlers.
    pub fn with_tools(mut self, tools: ToolRegistry) -> Self {
        self.tools = Arc::new(tools);
        self
    }

    /// The runner jobs go through: an explicit one, else the agent if an LLM is configured.
    fn job_runner(&mut self) -> Option<Arc<dyn JobRunner>> {
        if let Some(runner) = self.runner.take() {
            return Some(runner);
        }
        let llm = self.config.llm.as_ref()?;
        Some(Arc::new(AgentRunner {
            llm: self.llm.clone()?,
            retry: llm.retry_policy(),
            tools: self.tools.clone(),
            store: self.store.clone(),
            clock: self.clock.clone(),
            model: llm.model.clone(),
            max_tokens: llm.max_tokens,
        }))
    }

    /// Serves until `shutdown` is cancelled, then finishes in-flight requests, commits everything
    /// already queued, and lets running jobs finish (within `scheduler.shutdown_grace`).
    pub async fn run(
        mut self,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let (queue, writer) = IngestQueue::start(self.store.clone());
        let runner = self.job_runner();
        if self.sources.is_empty() {
            tracing::warn!("no [sources] configured: every webhook will get 404");
        }
        let (jobs_added, scheduler) = match runner {
            Some(runner) => {
                let scheduler = Scheduler::new(
                    self.store.clone(),
                    runner,
                    self.router.clone(),
                    self.clock.clone(),
                    self.config.scheduler.clone(),
                );
                let wake = scheduler.waker();
                (wake, Some(tokio::spawn(scheduler.run(shutdown.clone()))))
            }
            None => {
                tracing::warn!(
                    "no [llm] is configured: events are stored and jobs wait as `pending` until one is"
                );
                (Arc::new(Notify::new()), None)
            }
        };
        let state = Arc::new(AppState {
            sources: self.sources,
            router: self.router,
            jobs_added,
            queue,
            approvals: Approvals {
                store: self.store.clone(),
                tools: self.tools,
                clock: self.clock.clone(),
            },
            store: self.store,
            clock: self.clock,
            max_body_bytes: self.config.max_body_bytes,
            api_token: self.config.api_token.clone(),
        });
        let addr = listener.local_addr()?;
        if self.config.api_token.is_none() && !addr.ip().is_loopback() {
            tracing::warn!(%addr, "no api_token is set and the address is not loopback: anyone who can reach /api/ can read events and send approved writes");
        }
        tracing::info!(%addr, store = %store::redact(&self.config.store), "hookwise listening");
        axum::serve(listener, router(state))
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
            .context("serving HTTP")?;
        // The router (and with it the last queue handle) is gone: the writer drains and stops.
        writer.await.context("ingest writer")?;
        if let Some(scheduler) = scheduler {
            scheduler.await.context("scheduler")?;
        }
        tracing::info!("hookwise stopped");
        Ok(())
    }
}

/// Loads every handler file; any problem stops start-up with all of them listed.
pub(crate) fn load_handlers(config: &Config) -> anyhow::Result<Vec<Handler>> {
    let dir = &config.handlers_dir;
    if !dir.exists() {
        tracing::warn!(dir = %dir.display(), "handlers directory does not exist: no handlers will run");
        return Ok(Vec::new());
    }
    let handlers = handler::load_dir(dir).map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        anyhow!("invalid handler files:\n{}", lines.join("\n"))
    })?;
    tracing::info!(dir = %dir.display(), handlers = handlers.len(), "handlers loaded");
    Ok(handlers)
}

/// Binds `config.listen` and serves until SIGINT/SIGTERM.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let server = Server::prepare(config).await?;
    let shutdown = CancellationToken::new();
    tokio::spawn(signal_shutdown(shutdown.clone()));
    server.run(listener, shutdown).await
}

async fn signal_shutdown(token: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown requested");
    token.cancel();
}
