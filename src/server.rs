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
use std::time::Duration;
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
        Self::prepare_with_clock(config, Options::default().clock).await
    }

    pub async fn prepare_with_clock(config: Config, clock: SharedClock) -> anyhow::Result<Self> {
        let options = Options {
            clock,
            ..Options::default()
        };
        let app = App::assemble_with(config, options).await?;
        app.store.hold_for_serving().await?;
        Ok(Self { app, runner: None })
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

    /// Serves until `shutdown` says stop (a plain `CancellationToken` stops at once), then stops
    /// accepting, answers every in-flight request (an ingest after its commit), and lets running
    /// jobs finish within `scheduler.shutdown_grace`. While it drains, `/readyz` answers 503.
    /// The pruner (`[retention]`) runs beside them and stops when the drain ends (a round in
    /// flight commits or rolls back whole).
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: impl Into<Shutdown>,
    ) -> anyhow::Result<()> {
        let shutdown = shutdown.into();
        let app = self.app;
        let (queue, writer) = IngestQueue::start(app.store.clone(), app.metrics.clone());
        let runner = self.runner.or_else(|| app.job_runner());
        let addr = listener.local_addr()?;
        log_summary(&app, addr);
        let (jobs_added, scheduler) = match runner {
            Some(runner) => {
                let scheduler = Scheduler::new(
                    app.store.clone(),
                    runner,
                    app.handlers.clone(),
                    app.clock.clone(),
                    app.config.scheduler.clone(),
                    app.metrics.clone(),
                )
                .with_breaker(app.llm.as_ref().and_then(|llm| llm.breaker.clone()));
                let wake = scheduler.waker();
                (
                    wake,
                    Some(tokio::spawn(scheduler.run(shutdown.stop.clone()))),
                )
            }
            None => {
                tracing::warn!(
                    "no [llm] is configured: events are stored and jobs wait as `pending` until one is (see the [llm] example in hookwise.toml)"
                );
                (Arc::new(Notify::new()), None)
            }
        };
        let pruner = app
            .pruner()
            .map(|pruner| tokio::spawn(pruner.run(shutdown.stop.clone())));
        let state = Arc::new(AppState {
            approvals: app.approvals(),
            sources: app.sources,
            routing: app.router,
            jobs_added,
            queue,
            store: app.store,
            clock: app.clock,
            max_body_bytes: app.config.max_body_bytes,
            body_read_timeout: app.config.http.body_read_timeout,
            metrics: app.metrics,
            rejections: crate::http::RejectionLog::new(crate::http::REJECTION_LOG_INTERVAL),
            metrics_public: app.config.telemetry.metrics_public,
            access: crate::http::access::AdminAccess::new(
                app.config.api_token.clone(),
                app.config.http.admin_access == crate::config::http::AdminAccessFrom::Anywhere,
            ),
            handlers: app.handlers.clone(),
            warnings: app
                .config
                .warnings()
                .iter()
                .map(ToString::to_string)
                .collect(),
            draining: shutdown.draining.clone(),
        });
        if app.config.api_token.is_none() && !addr.ip().is_loopback() {
            match app.config.http.admin_access {
                crate::config::http::AdminAccessFrom::Loopback => {
                    tracing::info!(%addr, "no api_token is set: /api/ and /ui answer only requests from this machine")
                }
                crate::config::http::AdminAccessFrom::Anywhere => {
                    tracing::warn!(%addr, "no api_token is set and [http] admin_access = \"anywhere\": anyone who can reach /api/ or /ui can read events and send approved writes")
                }
            }
        }
        tracing::info!(%addr, store = %store::redact(&app.config.store), "hookwise listening");
        crate::http::serve(
            listener,
            router(state),
            &app.config.http,
            shutdown.stop.clone(),
        )
        .await;
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

/// What this process serves, said once at start-up: each source's URL, each handler with its
/// tools, and the tools there are (whether an LLM runs them is logged beside).
fn log_summary(app: &App, addr: std::net::SocketAddr) {
    if app.sources.is_empty() {
        tracing::warn!("no [sources] configured: every webhook will get 404");
    }
    let mut sources: Vec<_> = app.sources.values().collect();
    sources.sort_by(|a, b| a.name.as_str().cmp(b.name.as_str()));
    for source in sources {
        tracing::info!(
            source = %source.name,
            kind = source.adapter.kind(),
            scheme = source.scheme.as_str(),
            "serving webhooks: POST http://{addr}/webhooks/{}",
            source.name
        );
    }
    if app.handlers.is_empty() {
        tracing::warn!(dir = %app.config.handlers_dir.display(), "no handlers loaded: events are stored, no job is created");
    }
    for handler in app.handlers.iter() {
        let on: Vec<String> = handler.on.iter().map(ToString::to_string).collect();
        tracing::info!(
            handler = %handler.name,
            mode = %handler.mode,
            enabled = handler.enabled,
            on = %on.join(", "),
            tools = %handler.agent.tools.join(", "),
            "handler loaded"
        );
    }
    let mut per_connector = std::collections::BTreeMap::<&str, usize>::new();
    let names = app.tools.names();
    for name in &names {
        let connector = name.split_once('.').map_or(name.as_str(), |(c, _)| c);
        *per_connector.entry(connector).or_default() += 1;
    }
    let counts: Vec<String> = per_connector
        .iter()
        .map(|(c, n)| format!("{c} {n}"))
        .collect();
    tracing::info!(tools = %counts.join(", "), "tools available to handlers");
}

/// How a running server is told to stop, in two steps. Draining: `/readyz` answers 503 so load
/// balancers stop sending, while every request is still served as usual. Stopping: no new
/// connections; in-flight requests are answered (an ingest after its commit) and running jobs get
/// `scheduler.shutdown_grace`.
#[derive(Clone, Debug)]
pub struct Shutdown {
    /// Cancelled when draining begins; also whenever `stop` is (a child of it).
    draining: CancellationToken,
    /// Cancelled when the server should stop accepting and finish.
    stop: CancellationToken,
}

impl Default for Shutdown {
    fn default() -> Self {
        CancellationToken::new().into()
    }
}

/// A plain token stops without a drain: what tests and embedding applications that do their own
/// draining want.
impl From<CancellationToken> for Shutdown {
    fn from(stop: CancellationToken) -> Self {
        Self {
            draining: stop.child_token(),
            stop,
        }
    }
}

impl Shutdown {
    /// Begins draining, then stops once `delay` has passed or `sooner` resolves, whichever comes
    /// first (or at once, if something else stops the server meanwhile).
    pub async fn drain_then_stop(&self, delay: Duration, sooner: impl Future<Output = ()>) {
        self.draining.cancel();
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = sooner => {}
            _ = self.stop.cancelled() => {}
        }
        self.stop.cancel();
    }

    /// Stops without draining.
    pub fn stop(&self) {
        self.stop.cancel();
    }

    pub fn is_draining(&self) -> bool {
        self.draining.is_cancelled()
    }

    pub fn is_stopping(&self) -> bool {
        self.stop.is_cancelled()
    }
}

/// Binds `config.listen` and serves until SIGINT/SIGTERM: the first signal drains for
/// `drain_delay`, a second one during the drain stops at once.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    // A host name is resolved here, so `localhost:8080` works as it does for any client.
    let listener = TcpListener::bind((config.listen.host.as_str(), config.listen.port))
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} ({})",
                config.listen,
                config.origin("listen")
            )
        })?;
    let drain_delay = config.drain_delay;
    let server = Server::prepare(config).await?;
    // Only now: until here a signal ends the process at once (nothing was accepted yet), even
    // when start-up hangs on an unreachable store.
    let signals = Signals::listen().context("listening for SIGTERM/SIGINT")?;
    let shutdown = Shutdown::default();
    tokio::spawn(on_signals(signals, shutdown.clone(), drain_delay));
    server.run(listener, shutdown).await
}

async fn on_signals(mut signals: Signals, shutdown: Shutdown, drain_delay: Duration) {
    signals.next().await;
    tracing::info!(
        ?drain_delay,
        "shutdown requested: draining (/readyz answers 503, requests are still served); a second signal stops at once"
    );
    let second = async {
        signals.next().await;
        tracing::info!("second signal: ending the drain now");
    };
    shutdown.drain_then_stop(drain_delay, second).await;
    tracing::info!("drain over: no new connections; finishing in-flight requests and jobs");
}

/// SIGTERM and SIGINT (Ctrl-C), as many times as they come.
struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn listen() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                term: signal(SignalKind::terminate())?,
                int: signal(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    async fn next(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_drain_lasts_its_delay_unless_cut_short() {
        let shutdown = Shutdown::default();
        let draining = tokio::spawn({
            let shutdown = shutdown.clone();
            async move {
                shutdown
                    .drain_then_stop(Duration::from_secs(5), std::future::pending())
                    .await
            }
        });
        tokio::time::sleep(Duration::from_millis(4_900)).await;
        assert!(shutdown.is_draining() && !shutdown.is_stopping());
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(shutdown.is_stopping());
        draining.await.unwrap();

        let shutdown = Shutdown::default();
        let (cut, cut_short) = tokio::sync::oneshot::channel::<()>();
        let draining = tokio::spawn({
            let shutdown = shutdown.clone();
            async move {
                let sooner = async {
                    let _ = cut_short.await;
                };
                shutdown
                    .drain_then_stop(Duration::from_secs(5), sooner)
                    .await
            }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(shutdown.is_draining() && !shutdown.is_stopping());
        cut.send(()).unwrap();
        draining.await.unwrap();
        assert!(shutdown.is_stopping(), "stopped before the delay was over");
    }

    #[test]
    fn a_plain_token_stops_and_fails_readiness_at_once() {
        let token = CancellationToken::new();
        let shutdown = Shutdown::from(token.clone());
        assert!(!shutdown.is_draining());
        token.cancel();
        assert!(shutdown.is_draining() && shutdown.is_stopping());
    }
}
