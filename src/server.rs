//! Starting and stopping the service: everything `serve` does, callable from tests with a listener
//! bound to port 0 and a cancellation token.

use crate::app::{App, Options};
use crate::config::Config;
use crate::http::{AppState, router};
use crate::kernel::clock::SharedClock;
use crate::scheduler::{JobRunner, Scheduler};
use crate::store::{self, SharedStore, batcher::IngestQueue};
use crate::tools::ToolRegistry;
use anyhow::Context;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// A prepared service: the assembled `App`, and what tests may put in place of its parts.
pub struct Server {
    pub app: App,
    /// Overrides the agent (tests, embedding applications).
    runner: Option<Arc<dyn JobRunner>>,
}

impl Server {
    pub async fn prepare(config: Config) -> anyhow::Result<Self> {
        Ok(Self {
            app: App::assemble(config).await?,
            runner: None,
        })
    }

    pub async fn prepare_with_clock(config: Config, clock: SharedClock) -> anyhow::Result<Self> {
        let options = Options {
            clock,
            ..Options::default()
        };
        Ok(Self {
            app: App::assemble_with(config, options).await?,
            runner: None,
        })
    }

    /// The store the service uses.
    pub fn store(&self) -> SharedStore {
        self.app.store.clone()
    }

    /// Jobs are executed by `runner` instead of the agent.
    pub fn with_runner(mut self, runner: Arc<dyn JobRunner>) -> Self {
        self.runner = Some(runner);
        self
    }

    /// The tools the agent may offer to handlers.
    pub fn with_tools(mut self, tools: ToolRegistry) -> Self {
        self.app.tools = Arc::new(tools);
        self
    }

    /// Serves until `shutdown` is cancelled, then finishes in-flight requests, commits everything
    /// already queued, and lets running jobs finish (within `scheduler.shutdown_grace`). The
    /// pruner (`[retention]`) runs beside them and stops at once (a round in flight
    /// commits or rolls back whole).
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let app = self.app;
        let (queue, writer) = IngestQueue::start(app.store.clone(), app.metrics.clone());
        let runner = self.runner.or_else(|| app.job_runner());
        if app.sources.is_empty() {
            tracing::warn!("no [sources] configured: every webhook will get 404");
        }
        let (jobs_added, scheduler) = match runner {
            Some(runner) => {
                let scheduler = Scheduler::new(
                    app.store.clone(),
                    runner,
                    app.handlers.clone(),
                    app.clock.clone(),
                    app.config.scheduler.clone(),
                    app.metrics.clone(),
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
        let pruner = app
            .pruner()
            .map(|pruner| tokio::spawn(pruner.run(shutdown.clone())));
        let state = Arc::new(AppState {
            approvals: app.approvals(),
            sources: app.sources,
            routing: app.router,
            jobs_added,
            queue,
            store: app.store,
            clock: app.clock,
            max_body_bytes: app.config.max_body_bytes,
            metrics: app.metrics,
            metrics_public: app.config.telemetry.metrics_public,
            api_token: app.config.api_token.clone(),
        });
        let addr = listener.local_addr()?;
        if app.config.api_token.is_none() && !addr.ip().is_loopback() {
            tracing::warn!(%addr, "no api_token is set and the address is not loopback: anyone who can reach /api/ can read events and send approved writes");
        }
        tracing::info!(%addr, store = %store::redact(&app.config.store), "hookwise listening");
        axum::serve(listener, router(state))
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
            .context("serving HTTP")?;
        // The router (and with it the last queue handle) is gone: the writer drains and stops.
        writer.await.context("ingest writer")?;
        if let Some(scheduler) = scheduler {
            scheduler.await.context("scheduler")?;
        }
        if let Some(pruner) = pruner {
            pruner.await.context("pruner")?;
        }
        tracing::info!("hookwise stopped");
        Ok(())
    }
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
