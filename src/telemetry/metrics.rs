//! The service's metrics: one registry per `App`, rendered at `GET /metrics`.
//!
//! Counters and histograms are moved where things happen (ingest, the scheduler, the agent, the LLM
//! client, the upstream client). Queue gauges are not kept here: they are read from the store at
//! scrape time (`Metrics::set_queue`), so on PostgreSQL every replica reports the same queue.
//!
//! Labels are bounded sets only: configured source, account and handler names, connector and
//! provider kinds, models, status classes, outcomes. Never an event id, a ticket or a message.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

pub type SharedMetrics = Arc<Metrics>;

/// The content type of `Metrics::render`'s output (OpenMetrics text, which Prometheus scrapes).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

type FloatCounter = Counter<f64, AtomicU64>;
type FloatGauge = Gauge<f64, AtomicU64>;
type Labeled<L, M = Counter> = Family<L, M>;
type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceOutcome {
    source: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AccountState {
    account: String,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HandlerOutcome {
    handler: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HandlerLabel {
    handler: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Refusal {
    handler: String,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GenAiOperation {
    gen_ai_operation_name: &'static str,
    gen_ai_provider_name: &'static str,
    gen_ai_request_model: String,
    /// Empty on success; the error's kind otherwise (the OpenTelemetry `error.type`).
    error_type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GenAiTokens {
    gen_ai_operation_name: &'static str,
    gen_ai_provider_name: &'static str,
    gen_ai_request_model: String,
    gen_ai_token_type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamCall {
    account: String,
    connector: &'static str,
    method: &'static str,
    status_class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AccountConnector {
    account: String,
    connector: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AccountLabel {
    account: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderLabel {
    provider: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ScopeLabel {
    scope: &'static str,
}

/// Every metric hookwise exports. Cheap to share (`SharedMetrics`); recording is a few atomic
/// operations and, the first time a label set is seen, one map insert.
pub struct Metrics {
    registry: Registry,
    /// One scrape at a time: the queue gauges are cleared and set, then rendered.
    scrape: std::sync::Mutex<()>,
    webhooks: Labeled<SourceOutcome>,
    ingest_seconds: Histogram,
    batch_size: Histogram,
    jobs: Labeled<AccountState, Gauge>,
    oldest_due_lag: FloatGauge,
    approvals_pending: Gauge,
    folds: Counter,
    claims: Counter,
    lease_losses: Counter,
    runs: Labeled<HandlerOutcome>,
    run_seconds: Histograms<HandlerLabel>,
    steps: Labeled<HandlerLabel>,
    refusals: Labeled<Refusal>,
    llm_seconds: Histograms<GenAiOperation>,
    llm_tokens: Histograms<GenAiTokens>,
    upstream_calls: Labeled<UpstreamCall>,
    upstream_429: Labeled<AccountConnector>,
    paused_seconds: Labeled<AccountLabel, FloatCounter>,
    slot_wait: Histograms<AccountLabel>,
    journal: Labeled<OutcomeLabel>,
    pruned: Labeled<KindLabel>,
    runtime_tasks: Gauge,
    budget_deferrals: Labeled<ScopeLabel>,
    breaker_state: Labeled<ProviderLabel, Gauge>,
    breaker_openings: Labeled<ProviderLabel>,
}

fn seconds_histogram() -> Histogram {
    // 1 ms .. ~65 s
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

fn tokens_histogram() -> Histogram {
    // The OpenTelemetry GenAI advice for gen_ai.client.token.usage: 1, 4, 16, ... 4^13.
    Histogram::new(exponential_buckets(1.0, 4.0, 14))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let webhooks = Labeled::<SourceOutcome>::default();
        registry.register(
            "hookwise_webhooks_received",
            "Webhook requests by source and outcome (accepted, duplicate, bad_signature, stale, \
             bad_body, too_large, unsupported_media_type, unknown_source, unavailable)",
            webhooks.clone(),
        );
        let ingest_seconds = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        registry.register_with_unit(
            "hookwise_ingest_duration",
            "From a webhook request's arrival to the commit of its event (accepted and duplicate)",
            Unit::Seconds,
            ingest_seconds.clone(),
        );
        let batch_size = Histogram::new(exponential_buckets(1.0, 2.0, 10));
        registry.register(
            "hookwise_ingest_batch_size",
            "Events committed together by one group commit",
            batch_size.clone(),
        );
        let jobs = Labeled::<AccountState, Gauge>::default();
        registry.register(
            "hookwise_jobs",
            "Jobs by account and state (pending, running, dead; done jobs are not counted), read \
             from the store at scrape time",
            jobs.clone(),
        );
        let oldest_due_lag = FloatGauge::default();
        registry.register_with_unit(
            "hookwise_jobs_oldest_due_lag",
            "How long the oldest pending job has been due without being claimed (0 when none is)",
            Unit::Seconds,
            oldest_due_lag.clone(),
        );
        let approvals_pending = Gauge::default();
        registry.register(
            "hookwise_approvals_pending",
            "Writes held for a person's decision",
            approvals_pending.clone(),
        );
        let folds = Counter::default();
        registry.register(
            "hookwise_debounce_folds",
            "Events that joined a job already pending instead of creating one",
            folds.clone(),
        );
        let claims = Counter::default();
        registry.register(
            "hookwise_job_claims",
            "Jobs this process leased to run",
            claims.clone(),
        );
        let lease_losses = Counter::default();
        registry.register(
            "hookwise_job_lease_losses",
            "Runs whose lease another process took over (the run's outcome was not recorded here)",
            lease_losses.clone(),
        );
        let runs = Labeled::<HandlerOutcome>::default();
        registry.register(
            "hookwise_runs",
            "Finished runs by handler and what became of the job (done, retry, dead, deferred, \
             released, lease_lost)",
            runs.clone(),
        );
        let run_seconds: Histograms<HandlerLabel> =
            Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.05, 2.0, 14)));
        registry.register_with_unit(
            "hookwise_run_duration",
            "Wall time of one run, by handler",
            Unit::Seconds,
            run_seconds.clone(),
        );
        let steps = Labeled::<HandlerLabel>::default();
        registry.register(
            "hookwise_agent_steps",
            "Model turns taken by the agent, by handler",
            steps.clone(),
        );
        let refusals = Labeled::<Refusal>::default();
        registry.register(
            "hookwise_tool_refusals",
            "Tool calls refused before they ran, by handler and reason (out_of_scope, \
             invalid_arguments)",
            refusals.clone(),
        );
        let llm_seconds: Histograms<GenAiOperation> =
            Family::new_with_constructor(seconds_histogram);
        registry.register_with_unit(
            "gen_ai_client_operation_duration",
            "GenAI operation duration (OpenTelemetry gen_ai.client.operation.duration): one model \
             request, retries counted separately; error_type set when it failed",
            Unit::Seconds,
            llm_seconds.clone(),
        );
        let llm_tokens: Histograms<GenAiTokens> = Family::new_with_constructor(tokens_histogram);
        registry.register(
            "gen_ai_client_token_usage",
            "Tokens per model request by type, input or output (OpenTelemetry \
             gen_ai.client.token.usage)",
            llm_tokens.clone(),
        );
        let upstream_calls = Labeled::<UpstreamCall>::default();
        registry.register(
            "hookwise_upstream_calls",
            "HTTP requests to vendors' APIs by account, connector, method and status class (2xx, \
             4xx, 5xx, or error when no answer came)",
            upstream_calls.clone(),
        );
        let upstream_429 = Labeled::<AccountConnector>::default();
        registry.register(
            "hookwise_upstream_rate_limited",
            "429 answers from vendors' APIs",
            upstream_429.clone(),
        );
        let paused_seconds = Labeled::<AccountLabel, FloatCounter>::default();
        registry.register_with_unit(
            "hookwise_upstream_paused",
            "Time an account's calls were paused by a rate limit (a 429 or an exhausted quota)",
            Unit::Seconds,
            paused_seconds.clone(),
        );
        let slot_wait: Histograms<AccountLabel> = Family::new_with_constructor(seconds_histogram);
        registry.register_with_unit(
            "hookwise_upstream_slot_wait",
            "How long a call waited for its slot in the account's rate budget",
            Unit::Seconds,
            slot_wait.clone(),
        );
        let journal = Labeled::<OutcomeLabel>::default();
        registry.register(
            "hookwise_journal_writes",
            "Writes through the action journal: sent, replayed (answered from the journal, not \
             sent again), in_doubt (not sent: an earlier attempt may have applied it)",
            journal.clone(),
        );
        let pruned = Labeled::<KindLabel>::default();
        registry.register(
            "hookwise_pruned",
            "Rows removed by retention, by kind (events, jobs, runs, actions, approvals)",
            pruned.clone(),
        );
        let runtime_tasks = Gauge::default();
        registry.register(
            "hookwise_runtime_tasks",
            "Tasks alive in this process's async runtime, read at scrape time: flat under a steady \
             load (connections, runs in flight and the background loops)",
            runtime_tasks.clone(),
        );
        let budget_deferrals = Labeled::<ScopeLabel>::default();
        registry.register(
            "hookwise_budget_deferrals",
            "Jobs put back until the next UTC day because a [budgets] limit was spent, by scope \
             (account, handler): before their run started, or after the step that spent it",
            budget_deferrals.clone(),
        );
        let breaker_state = Labeled::<ProviderLabel, Gauge>::default();
        registry.register(
            "hookwise_llm_breaker_state",
            "The LLM provider's circuit breaker as this process last saw it: 0 closed, 1 open (no \
             job is claimed), 2 half-open (one probe may go through)",
            breaker_state.clone(),
        );
        let breaker_openings = Labeled::<ProviderLabel>::default();
        registry.register(
            "hookwise_llm_breaker_openings",
            "Times this process opened the LLM provider's circuit breaker (a failed probe \
             opens it again)",
            breaker_openings.clone(),
        );
        Self {
            registry,
            scrape: std::sync::Mutex::new(()),
            webhooks,
            ingest_seconds,
            batch_size,
            jobs,
            oldest_due_lag,
            approvals_pending,
            folds,
            claims,
            lease_losses,
            runs,
            run_seconds,
            steps,
            refusals,
            llm_seconds,
            llm_tokens,
            upstream_calls,
            upstream_429,
            paused_seconds,
            slot_wait,
            journal,
            pruned,
            runtime_tasks,
            budget_deferrals,
            breaker_state,
            breaker_openings,
        }
    }

    /// Sets the queue gauges to what the store says now and renders everything.
    pub fn scrape(&self, queue: &QueueGauges) -> String {
        let _one = self.scrape.lock().unwrap_or_else(|e| e.into_inner());
        self.set_queue(queue);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            self.runtime_tasks
                .set(runtime.metrics().num_alive_tasks() as i64);
        }
        self.render()
    }

    /// The OpenMetrics text of every metric (`CONTENT_TYPE`).
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }

    pub fn webhook(&self, source: &str, outcome: &'static str) {
        self.webhooks
            .get_or_create(&SourceOutcome {
                source: source.to_owned(),
                outcome,
            })
            .inc();
    }

    pub fn ingest_committed(&self, took: Duration) {
        self.ingest_seconds.observe(took.as_secs_f64());
    }

    pub fn batch_committed(&self, events: usize, folds: usize) {
        self.batch_size.observe(events as f64);
        self.folds.inc_by(folds as u64);
    }

    /// Replaces the queue gauges with what the store says now.
    fn set_queue(&self, queue: &QueueGauges) {
        self.jobs.clear();
        for (account, state, count) in &queue.jobs {
            self.jobs
                .get_or_create(&AccountState {
                    account: account.clone(),
                    state,
                })
                .set(*count);
        }
        self.oldest_due_lag.set(queue.oldest_due_lag.as_secs_f64());
        self.approvals_pending.set(queue.approvals_pending);
    }

    pub fn claimed(&self, jobs: usize) {
        self.claims.inc_by(jobs as u64);
    }

    pub fn run_finished(&self, handler: &str, outcome: &'static str, took: Duration) {
        let label = HandlerLabel {
            handler: handler.to_owned(),
        };
        if outcome == "lease_lost" {
            self.lease_losses.inc();
        }
        self.runs
            .get_or_create(&HandlerOutcome {
                handler: handler.to_owned(),
                outcome,
            })
            .inc();
        self.run_seconds
            .get_or_create(&label)
            .observe(took.as_secs_f64());
    }

    pub fn agent_step(&self, handler: &str) {
        self.steps
            .get_or_create(&HandlerLabel {
                handler: handler.to_owned(),
            })
            .inc();
    }

    pub fn tool_refused(&self, handler: &str, reason: &'static str) {
        self.refusals
            .get_or_create(&Refusal {
                handler: handler.to_owned(),
                reason,
            })
            .inc();
    }

    /// One model request: its duration, and its tokens when it succeeded (`error_type` empty).
    pub fn llm_request(
        &self,
        provider: &'static str,
        model: &str,
        took: Duration,
        error_type: &'static str,
        tokens: Option<(u64, u64)>,
    ) {
        const OPERATION: &str = "chat";
        self.llm_seconds
            .get_or_create(&GenAiOperation {
                gen_ai_operation_name: OPERATION,
                gen_ai_provider_name: provider,
                gen_ai_request_model: model.to_owned(),
                error_type,
            })
            .observe(took.as_secs_f64());
        if let Some((input, output)) = tokens {
            for (kind, count) in [("input", input), ("output", output)] {
                self.llm_tokens
                    .get_or_create(&GenAiTokens {
                        gen_ai_operation_name: OPERATION,
                        gen_ai_provider_name: provider,
                        gen_ai_request_model: model.to_owned(),
                        gen_ai_token_type: kind,
                    })
                    .observe(count as f64);
            }
        }
    }

    /// The provider's breaker state as last seen: 0 closed, 1 open, 2 half-open.
    pub fn llm_breaker_state(&self, provider: &'static str, state: i64) {
        self.breaker_state
            .get_or_create(&ProviderLabel { provider })
            .set(state);
    }

    /// This process opened the provider's breaker.
    pub fn llm_breaker_opened(&self, provider: &'static str) {
        self.breaker_openings
            .get_or_create(&ProviderLabel { provider })
            .inc();
    }

    /// One HTTP exchange with a vendor's API; `status` None when no answer came.
    pub fn upstream_call(
        &self,
        account: &str,
        connector: &'static str,
        method: &str,
        status: Option<u16>,
    ) {
        let method = match method {
            "GET" => "GET",
            "POST" => "POST",
            "PUT" => "PUT",
            "PATCH" => "PATCH",
            "DELETE" => "DELETE",
            _ => "other",
        };
        let status_class = match status {
            None => "error",
            Some(200..=299) => "2xx",
            Some(300..=399) => "3xx",
            Some(400..=499) => "4xx",
            Some(500..=599) => "5xx",
            Some(_) => "other",
        };
        self.upstream_calls
            .get_or_create(&UpstreamCall {
                account: account.to_owned(),
                connector,
                method,
                status_class,
            })
            .inc();
        if status == Some(429) {
            self.upstream_429
                .get_or_create(&AccountConnector {
                    account: account.to_owned(),
                    connector,
                })
                .inc();
        }
    }

    pub fn upstream_paused(&self, account: &str, pause: Duration) {
        self.paused_seconds
            .get_or_create(&AccountLabel {
                account: account.to_owned(),
            })
            .inc_by(pause.as_secs_f64());
    }

    pub fn slot_waited(&self, account: &str, wait: Duration) {
        self.slot_wait
            .get_or_create(&AccountLabel {
                account: account.to_owned(),
            })
            .observe(wait.as_secs_f64());
    }

    /// `outcome`: sent, replayed or in_doubt.
    pub fn journal(&self, outcome: &'static str) {
        self.journal.get_or_create(&OutcomeLabel { outcome }).inc();
    }

    /// `kind`: events, jobs, runs, actions, approvals.
    pub fn budget_deferred(&self, scope: &'static str) {
        self.budget_deferrals
            .get_or_create(&ScopeLabel { scope })
            .inc();
    }

    pub fn pruned(&self, kind: &'static str, rows: u64) {
        if rows > 0 {
            self.pruned.get_or_create(&KindLabel { kind }).inc_by(rows);
        }
    }
}

/// The queue as the store sees it, for the gauges.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueueGauges {
    /// (account, state, jobs) for every account and state with at least one job.
    pub jobs: Vec<(String, &'static str, i64)>,
    pub oldest_due_lag: Duration,
    pub approvals_pending: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
        text.lines().find(|l| l.starts_with(prefix))
    }

    #[test]
    fn names_follow_prometheus_conventions_and_labels_are_the_ones_given() {
        let m = Metrics::new();
        m.webhook("happyfox", "accepted");
        m.webhook("happyfox", "accepted");
        m.webhook("happyfox", "bad_signature");
        m.ingest_committed(Duration::from_millis(3));
        m.llm_request(
            "openai",
            "gpt-4o-mini",
            Duration::from_millis(800),
            "",
            Some((120, 30)),
        );
        m.upstream_call("acme", "happyfox", "POST", Some(429));
        m.upstream_paused("acme", Duration::from_millis(1500));
        let text = m.render();
        assert_eq!(
            line(
                &text,
                "hookwise_webhooks_received_total{source=\"happyfox\",outcome=\"accepted\"}"
            ),
            Some("hookwise_webhooks_received_total{source=\"happyfox\",outcome=\"accepted\"} 2")
        );
        assert!(
            text.contains("hookwise_ingest_duration_seconds_count 1"),
            "{text}"
        );
        assert!(
            text.contains(
                "gen_ai_client_token_usage_sum{gen_ai_operation_name=\"chat\",gen_ai_provider_name=\"openai\",gen_ai_request_model=\"gpt-4o-mini\",gen_ai_token_type=\"input\"} 120.0"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "hookwise_upstream_rate_limited_total{account=\"acme\",connector=\"happyfox\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("hookwise_upstream_paused_seconds_total{account=\"acme\"} 1.5"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn queue_gauges_are_replaced_not_accumulated() {
        let m = Metrics::new();
        let first = m.scrape(&QueueGauges {
            jobs: vec![("acme".into(), "pending", 3), ("beta".into(), "dead", 1)],
            oldest_due_lag: Duration::from_secs(2),
            approvals_pending: 4,
        });
        assert!(
            first.contains("hookwise_jobs_oldest_due_lag_seconds 2.0"),
            "{first}"
        );
        let text = m.scrape(&QueueGauges {
            jobs: vec![("acme".into(), "pending", 1)],
            ..QueueGauges::default()
        });
        assert!(
            text.contains("hookwise_jobs{account=\"acme\",state=\"pending\"} 1"),
            "{text}"
        );
        assert!(
            !text.contains("account=\"beta\""),
            "a drained account disappears: {text}"
        );
        assert!(text.contains("hookwise_approvals_pending 0"), "{text}");
    }
}
