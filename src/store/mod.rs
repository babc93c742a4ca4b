//! Durable state behind one trait. SQL lives only in this module; SQLite is the embedded default,
//! PostgreSQL serves several replicas, and the same contract tests run against both.

mod approval;
pub mod batcher;
pub mod breaker;
mod job_machine;
mod migrate;
pub mod postgres;
pub mod retention;
pub mod sqlite;

pub use approval::{
    Approval, ApprovalCreated, ApprovalFilter, ApprovalState, Decided, Decision,
    EXECUTION_LEASE_MS, Execution, NewApproval,
};
pub use postgres::PostgresStore;
pub use retention::{PrunePolicy, PruneReport, Pruner};
pub use sqlite::SqliteStore;

use crate::kernel::event::{Event, EventId, SourceName};
pub use crate::telemetry::metrics::QueueGauges;
use async_trait::async_trait;
pub use breaker::{BreakerChange, BreakerEvent, BreakerPolicy, BreakerRow, BreakerState};
use serde::Serialize;
use std::sync::Arc;
use utoipa::ToSchema;

/// One event to commit, with what routing decided for it.
#[derive(Debug, Clone)]
pub struct IngestItem {
    pub event: Event,
    pub disposition: Disposition,
    /// The W3C `traceparent` of the request that delivered it, when traces are exported.
    pub trace_context: Option<String>,
}

/// What the ingest transaction does with an event besides storing it.
#[derive(Debug, Clone)]
pub enum Disposition {
    /// Start or join these jobs (none: stored as `unrouted`).
    Route(Vec<Route>),
    /// Stored as `ignored` with this reason, never routed (e.g. our own echo).
    Ignore(String),
}

impl Disposition {
    /// The event's stored `status` and `status_reason`.
    pub fn status(&self) -> (EventStatus, Option<&str>) {
        match self {
            Disposition::Ignore(reason) => (EventStatus::Ignored, Some(reason.as_str())),
            Disposition::Route(routes) if routes.is_empty() => (EventStatus::Unrouted, None),
            Disposition::Route(_) => (EventStatus::Routed, None),
        }
    }
}

/// What ingest did with an event, as stored in `events.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum EventStatus {
    /// Started or joined jobs.
    Routed,
    /// No handler matched.
    Unrouted,
    /// Kept, never routed; `status_reason` says why.
    Ignored,
}

impl EventStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            EventStatus::Routed => "routed",
            EventStatus::Unrouted => "unrouted",
            EventStatus::Ignored => "ignored",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Routed, Self::Unrouted, Self::Ignored]
            .into_iter()
            .find(|st| st.as_str() == s)
    }
}

impl std::fmt::Display for EventStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// One matching handler's job for an event: created, or folded into the pending job of its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub handler: String,
    /// The debounce key's subject part: the event's subject unless the handler keys otherwise.
    pub subject: String,
    /// Trailing debounce: each event pushes the run this far into the future...
    pub period_ms: i64,
    /// ...but never later than this after the job's first event.
    pub max_wait_ms: i64,
    pub max_attempts: u32,
}

/// A job's lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Pending,
    Running,
    Done,
    /// Gave up after its attempts, or failed permanently; `jobs retry` revives it.
    Dead,
    /// Folded into another pending job of the same key, which carries its events on.
    Merged,
}

/// The job states the queue gauges count (`done` and `merged` grow without bound and say
/// nothing about what is waiting).
pub const QUEUE_STATES: [JobState; 3] = [JobState::Pending, JobState::Running, JobState::Dead];

/// Builds the gauges from the rows both stores read: (account, state, jobs), the oldest due
/// pending `run_at`, and the pending approvals.
fn queue_gauges(
    rows: Vec<(String, String, i64)>,
    oldest_due_ms: Option<i64>,
    approvals_pending: i64,
    now_ms: i64,
) -> QueueGauges {
    let jobs = rows
        .into_iter()
        .filter_map(|(account, state, n)| {
            let state = JobState::parse(&state).filter(|s| QUEUE_STATES.contains(s))?;
            Some((account, state.as_str(), n))
        })
        .collect();
    let lag_ms = oldest_due_ms.map_or(0, |due| (now_ms - due).max(0));
    QueueGauges {
        jobs,
        oldest_due_lag: std::time::Duration::from_millis(lag_ms as u64),
        approvals_pending,
    }
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Dead => "dead",
            JobState::Merged => "merged",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Pending,
            Self::Running,
            Self::Done,
            Self::Dead,
            Self::Merged,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }
}

/// Newtype for job ids: they are not event sequence numbers.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    serde::Deserialize,
    ToSchema,
)]
#[serde(transparent)]
pub struct JobId(pub i64);

impl std::fmt::Display for JobId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A job as stored.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct JobRecord {
    pub id: JobId,
    pub handler: String,
    pub account: String,
    pub subject: String,
    pub state: JobState,
    pub run_at_ms: i64,
    pub first_seen_ms: i64,
    pub deadline_at_ms: i64,
    pub attempts: u32,
    pub max_attempts: u32,
    pub lease_owner: Option<String>,
    pub lease_until_ms: Option<i64>,
    pub last_error: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub finished_at_ms: Option<i64>,
    /// How many events the job has coalesced.
    pub events: i64,
}

/// A job with every event it coalesced, oldest first (the last is the latest state).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct JobWithEvents {
    pub job: JobRecord,
    pub events: Vec<StoredEvent>,
}

/// How a run ended, as the scheduler reports it.
#[derive(Debug, Clone, PartialEq)]
pub enum JobFinish {
    Done,
    /// Try again at this time (requeued; merged into a newer pending job of the key if one exists).
    Retry {
        at_ms: i64,
        error: String,
    },
    Dead {
        error: String,
    },
    /// Shutdown: back to pending now, this attempt not counted.
    Release,
    /// The upstream asked the account to wait (a rate limit): back to pending at `at_ms`, this
    /// attempt not counted, since nothing failed.
    Defer {
        at_ms: i64,
        error: String,
    },
}

/// What `jobs retry` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case", tag = "result", content = "job")]
pub enum RetryResult {
    /// The job is pending again.
    Requeued(JobId),
    /// A pending job of the same key existed; the dead job's events were folded into it.
    MergedInto(JobId),
    NotFound,
    /// Only dead jobs can be retried.
    NotDead(JobState),
}

/// Which jobs to list, newest first.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    pub state: Option<JobState>,
    pub account: Option<String>,
    pub handler: Option<String>,
    pub before_id: Option<i64>,
    pub limit: u32,
}

/// What happened to one submitted event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IngestOutcome {
    pub event_id: EventId,
    /// Already stored before: nothing changed.
    pub duplicate: bool,
    /// The jobs this event created or joined.
    pub jobs: Vec<JobId>,
    /// How many of `jobs` the event joined (folded into a job already pending) rather than
    /// created.
    pub folded: usize,
}

/// An event as stored.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct StoredEvent {
    /// The event's key: `before` pages by it.
    pub seq: i64,
    #[schema(value_type = String)]
    pub source: SourceName,
    /// The sender's delivery or event id; unique per source.
    #[schema(value_type = String)]
    pub event_id: EventId,
    pub kind: String,
    pub account: String,
    pub subject: String,
    pub occurred_at_ms: i64,
    pub received_at_ms: i64,
    pub status: EventStatus,
    pub status_reason: Option<String>,
    /// The body as the sender posted it (JSON text, in a string).
    pub payload: String,
    /// The W3C `traceparent` of the request that delivered it, when traces were exported.
    pub trace_context: Option<String>,
}

/// Which events to list, newest first.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub source: Option<String>,
    pub account: Option<String>,
    pub kind: Option<String>,
    pub subject: Option<String>,
    pub status: Option<EventStatus>,
    /// Only events received at or after this time (Unix ms).
    pub since_ms: Option<i64>,
    /// Only events received before this time (Unix ms).
    pub until_ms: Option<i64>,
    /// Only events with a smaller `seq` (paging backwards).
    pub before_seq: Option<i64>,
    pub limit: u32,
}

/// An event and the jobs it started or joined.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventWithJobs {
    pub event: StoredEvent,
    pub jobs: Vec<JobRecord>,
}

/// What the dashboard's overview shows, read in one call.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Overview {
    /// Every account with a pending, running or dead job, a pause, or a reserved call slot.
    pub accounts: Vec<AccountQueue>,
    /// Runs started since the overview's `since`, per handler and outcome.
    pub handlers: Vec<HandlerRuns>,
    /// The most recent runs that did not end `done` (nor are `running`), newest first.
    pub failures: Vec<RunSummary>,
}

/// One account's queue and rate-limit state.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AccountQueue {
    pub account: String,
    pub pending: i64,
    pub running: i64,
    pub dead: i64,
    /// The earliest `run_at` of its pending jobs.
    pub next_run_at_ms: Option<i64>,
    /// Set while the upstream told it to wait: until when, and what said so.
    pub paused_until_ms: Option<i64>,
    pub pause_reason: Option<String>,
    /// The rate governor's next free call slot per bucket (a slot in the future means calls are
    /// booked until then); only slots still ahead of now.
    pub call_slots: Vec<CallSlot>,
}

/// How far ahead one rate bucket of an account is booked.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallSlot {
    pub bucket: String,
    pub next_free_ms: i64,
}

/// Runs of one handler with one outcome in the overview's window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HandlerRuns {
    pub handler: String,
    pub outcome: String,
    pub runs: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
}

/// A run without its transcript.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunSummary {
    pub id: i64,
    pub job: JobId,
    pub handler: String,
    pub account: String,
    pub outcome: String,
    pub error: Option<String>,
    pub started_at_ms: i64,
}

/// The rows both stores read for the overview.
pub(crate) struct OverviewRows {
    /// (account, state, jobs) for pending, running and dead jobs.
    pub counts: Vec<(String, String, i64)>,
    /// (account, earliest pending run_at).
    pub next_runs: Vec<(String, i64)>,
    /// (account, paused_until, reason) for pauses still in force.
    pub pauses: Vec<(String, i64, String)>,
    /// (account, bucket, next free slot) for slots still ahead of now.
    pub slots: Vec<(String, String, i64)>,
    pub handlers: Vec<HandlerRuns>,
    pub failures: Vec<RunSummary>,
}

impl OverviewRows {
    /// Folds the per-account rows into one `AccountQueue` per account, sorted by name.
    pub(crate) fn into_overview(self) -> Overview {
        let mut rows: std::collections::BTreeMap<String, AccountQueue> = Default::default();
        for (account, state, n) in self.counts {
            let a = rows
                .entry(account.clone())
                .or_insert_with(|| named(account));
            match JobState::parse(&state) {
                Some(JobState::Pending) => a.pending = n,
                Some(JobState::Running) => a.running = n,
                Some(JobState::Dead) => a.dead = n,
                _ => {}
            }
        }
        for (account, at) in self.next_runs {
            rows.entry(account.clone())
                .or_insert_with(|| named(account))
                .next_run_at_ms = Some(at);
        }
        for (account, until, reason) in self.pauses {
            let a = rows
                .entry(account.clone())
                .or_insert_with(|| named(account));
            a.paused_until_ms = Some(until);
            a.pause_reason = Some(reason);
        }
        for (account, bucket, next_free_ms) in self.slots {
            rows.entry(account.clone())
                .or_insert_with(|| named(account))
                .call_slots
                .push(CallSlot {
                    bucket,
                    next_free_ms,
                });
        }
        Overview {
            accounts: rows.into_values().collect(),
            handlers: self.handlers,
            failures: self.failures,
        }
    }
}

fn named(account: String) -> AccountQueue {
    AccountQueue {
        account,
        ..AccountQueue::default()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("SQLite error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("cannot open store {url}: {reason}")]
    Open { url: String, reason: String },
    #[error("migration {version} ({name}) failed: {reason}")]
    Migration {
        version: i64,
        name: &'static str,
        reason: String,
    },
    /// A batch this request was part of failed; the request's event was not stored.
    #[error("store write failed: {0}")]
    Batch(Arc<str>),
    #[error("the store is shutting down")]
    Closed,
    /// The call's code panicked; the call failed, the store goes on.
    #[error("a store call panicked: {0}")]
    Panicked(String),
    /// A stored value this version cannot read (e.g. a job state written by a newer version).
    #[error("unreadable stored value: {0}")]
    Corrupt(String),
}

/// The row count a list query uses: 0 (unset) means the default page of 50; at most 10,000, so one
/// call never loads a whole table. Callers that want more page by key (`before`): the HTTP API
/// answers at most 1,000 with a `Link` to the next page, the CLI reads pages of `cli::pages`.
pub(crate) fn page_limit(limit: u32) -> i64 {
    if limit == 0 {
        50
    } else {
        i64::from(limit.min(10_000))
    }
}

/// The exclusive upper bound a list query pages from: `key < before`, newest first. Without
/// `before` it is the largest key, rather than `(? IS NULL OR key < ?)`: that form hides the range
/// from the planner (SQLite scans the table, a PostgreSQL generic plan filters), while a plain
/// range on the primary key seeks straight to the page however deep it is.
pub(crate) fn before_key(before: Option<i64>) -> i64 {
    before.unwrap_or(i64::MAX)
}

/// Reads a stored job state; an unknown one is an error, never silently another state.
pub(crate) fn job_state(s: &str) -> Result<JobState, StoreError> {
    JobState::parse(s).ok_or_else(|| StoreError::Corrupt(format!("job state {s:?}")))
}

/// A run's steps as stored: JSON text in both backends, so they read back exactly as written.
/// What an interrupted run's `error` says.
pub(crate) const INTERRUPTED: &str = "interrupted: the run ended without recording how (its process was killed or crashed, it panicked, it passed the handler's deadline, or the process shut down); the job's state says what happened next";

pub(crate) fn steps_text(steps: &serde_json::Value) -> Result<String, StoreError> {
    serde_json::to_string(steps).map_err(|e| StoreError::Corrupt(format!("run steps: {e}")))
}

/// Parses stored steps; text that is not JSON is an error naming the run, never an empty transcript.
pub(crate) fn steps_value(run: i64, text: &str) -> Result<serde_json::Value, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("steps of run {run}: {e}")))
}

/// Token counts are signed 64-bit columns; a count past i64::MAX (never seen in practice) is
/// stored as the largest one rather than failing the record of a run that already happened.
pub(crate) fn tokens_column(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// One agent run of a job, as the agent reports it: who, when, how it ended, and the transcript.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, ToSchema)]
pub struct RunRecord {
    pub job: JobId,
    pub handler: String,
    pub account: String,
    /// The job's attempt number this run was.
    pub attempt: u32,
    /// The handler's mode: `live`, `dry-run` or `approve`.
    pub mode: String,
    pub model: String,
    pub started_at_ms: i64,
    pub finished_at_ms: i64,
    /// `running` while it runs; then `done`, `failed`, `deferred`, `budget_exceeded` (stopped
    /// after the step that spent a `[budgets]` limit; the job waits for the next day),
    /// `max_steps` or `deadline`;
    /// `interrupted` when it ended without recording how (its process died and the lease expired,
    /// or it was dropped at the deadline, at shutdown, or by a panic), with the steps it had taken.
    pub outcome: String,
    pub error: Option<String>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// What the run's tokens cost in USD by `[llm.prices]`; null when its model has no price.
    #[serde(default)]
    pub cost_usd: Option<f64>,
    /// The transcript: a JSON array of steps (model messages, tool calls with arguments and
    /// results, refusals, intended actions), in order.
    pub steps: serde_json::Value,
}

/// Tokens and cost spent, by one model step or over a budget window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Usage {
    /// Input and output tokens together.
    pub tokens: u64,
    /// USD, by the price table; steps of a model without a price add nothing.
    pub cost_usd: f64,
}

/// One day's usage of a run's account and of its handler.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct DayUsage {
    pub account: Usage,
    pub handler: Usage,
}

/// Reads the (scope, tokens, cost) rows both stores return into a `DayUsage`.
pub(crate) fn usage_of(rows: Vec<(String, i64, f64)>) -> DayUsage {
    let mut usage = DayUsage::default();
    for (scope, tokens, cost_usd) in rows {
        let spent = Usage {
            tokens: tokens.max(0).unsigned_abs(),
            cost_usd,
        };
        match scope.as_str() {
            "account" => usage.account = spent,
            "handler" => usage.handler = spent,
            _ => {}
        }
    }
    usage
}

/// A stored run.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct StoredRun {
    pub id: i64,
    #[serde(flatten)]
    pub run: RunRecord,
}

/// Which runs to list, newest first.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub job: Option<JobId>,
    pub handler: Option<String>,
    pub account: Option<String>,
    pub before_id: Option<i64>,
    pub limit: u32,
}

/// What the journal holds for a write's idempotency key when a tool is about to send it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionBegin {
    /// No earlier attempt: the key is now recorded as sent; send the write.
    Fresh,
    /// An earlier attempt sent it and recorded the answer: return that, send nothing.
    Done {
        status: u16,
        response: String,
        /// The request as that attempt sent it.
        request: String,
    },
    /// An earlier attempt sent it but its answer was never recorded (a crash, a timeout): it may
    /// have taken effect, so it is not sent again.
    InDoubt { request: String },
}

/// Reads a journal row that already existed when a write began.
pub(crate) fn action_begin(
    state: String,
    status: Option<u16>,
    response: Option<String>,
    request: String,
) -> ActionBegin {
    match (state.as_str(), status) {
        ("done", Some(status)) => ActionBegin::Done {
            status,
            response: response.unwrap_or_default(),
            request,
        },
        _ => ActionBegin::InDoubt { request },
    }
}

/// One journaled write.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredAction {
    pub key: String,
    pub job: JobId,
    pub account: String,
    pub request: String,
    /// `sent` (no answer recorded yet, or in doubt) or `done`.
    pub state: String,
    pub status: Option<u16>,
    pub response: Option<String>,
    pub created_at_ms: i64,
    pub finished_at_ms: Option<i64>,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Applies pending migrations; safe to call on every start and from several processes.
    async fn migrate(&self) -> Result<(), StoreError>;
    /// Cheap round trip for readiness checks.
    async fn ping(&self) -> Result<(), StoreError>;
    /// Claims the store for this `serve` process. SQLite serves one process (its rate slots live
    /// in that process's memory), so a second `serve` on the same file is refused; PostgreSQL
    /// is shared by replicas and claims nothing.
    async fn hold_for_serving(&self) -> Result<(), StoreError> {
        Ok(())
    }
    /// Commits a batch in ONE transaction: dedupe on (source, event id), then routing.
    /// Outcomes are in the order of `batch`. Either all are committed or none.
    async fn ingest(&self, batch: Vec<IngestItem>) -> Result<Vec<IngestOutcome>, StoreError>;
    async fn get_event(
        &self,
        source: &SourceName,
        id: &EventId,
    ) -> Result<Option<StoredEvent>, StoreError>;
    async fn list_events(&self, filter: &EventFilter) -> Result<Vec<StoredEvent>, StoreError>;
    /// One event by its `seq`, with the jobs it started or joined.
    async fn get_event_with_jobs(&self, seq: i64) -> Result<Option<EventWithJobs>, StoreError>;

    /// Reaps expired leases, then leases up to `limit` due jobs to `owner`: never two running
    /// jobs of one account, across every process sharing the store.
    async fn claim_jobs(
        &self,
        owner: &str,
        now_ms: i64,
        limit: usize,
        lease_ms: i64,
    ) -> Result<Vec<JobWithEvents>, StoreError>;
    /// Heartbeat: keeps a running job ours. False if the lease was lost (expired and reclaimed).
    async fn extend_lease(
        &self,
        job: JobId,
        owner: &str,
        until_ms: i64,
    ) -> Result<bool, StoreError>;
    /// Records how a run ended. False if `owner` no longer holds the job (nothing changed).
    async fn finish_job(
        &self,
        job: JobId,
        owner: &str,
        now_ms: i64,
        finish: JobFinish,
    ) -> Result<bool, StoreError>;
    /// Records how several runs ended, as `finish_job` would one by one, in one transaction
    /// where the store can (one commit for many finished jobs). An error means none of them is
    /// known to be recorded; their leases expire and they run again.
    async fn finish_jobs(
        &self,
        owner: &str,
        batch: Vec<(JobId, i64, JobFinish)>,
    ) -> Result<Vec<bool>, StoreError> {
        let mut held = Vec::with_capacity(batch.len());
        for (job, now_ms, finish) in batch {
            held.push(self.finish_job(job, owner, now_ms, finish).await?);
        }
        Ok(held)
    }
    /// The earliest time something may become claimable: a pending run_at or a lease expiry.
    async fn next_due_ms(&self) -> Result<Option<i64>, StoreError>;
    /// The queue for the metrics: jobs per account in `QUEUE_STATES`, how long the oldest due
    /// pending job has waited at `now_ms`, pending approvals. The same for every replica.
    async fn queue_gauges(&self, now_ms: i64) -> Result<QueueGauges, StoreError>;
    /// The dashboard's overview at `now_ms`: every account's queue and rate state, runs started
    /// since `since_ms` per handler and outcome, and the last `failures` runs that failed.
    async fn overview(
        &self,
        now_ms: i64,
        since_ms: i64,
        failures: u32,
    ) -> Result<Overview, StoreError>;
    async fn list_jobs(&self, filter: &JobFilter) -> Result<Vec<JobRecord>, StoreError>;
    async fn get_job(&self, id: JobId) -> Result<Option<JobWithEvents>, StoreError>;
    /// Dead → pending (attempts reset), for a person who fixed the cause.
    async fn retry_job(&self, id: JobId, now_ms: i64) -> Result<RetryResult, StoreError>;

    /// Keeps one run's record and transcript; returns its id. The agent records a run when it
    /// starts (outcome `running`) and updates it as it goes (`update_runs`).
    async fn record_run(&self, run: &RunRecord) -> Result<i64, StoreError>;
    /// Replaces the outcome, tokens and transcript of recorded runs, all in one transaction.
    async fn update_runs(&self, runs: Vec<(i64, RunRecord)>) -> Result<(), StoreError>;
    /// Runs newest first; `steps` is included (callers that only list can ignore it).
    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<StoredRun>, StoreError>;
    async fn get_run(&self, id: i64) -> Result<Option<StoredRun>, StoreError>;

    /// Adds one model step's tokens and cost to `day`'s usage (a UTC date, `YYYY-MM-DD`) of
    /// `account` and of `handler`, in one statement, and returns both totals after it: what every
    /// process sharing the store has spent that day.
    async fn add_usage(
        &self,
        day: &str,
        account: &str,
        handler: &str,
        spent: Usage,
    ) -> Result<DayUsage, StoreError>;
    /// `day`'s usage of `account` and of `handler` (zero where nothing was spent).
    async fn usage(&self, day: &str, account: &str, handler: &str) -> Result<DayUsage, StoreError>;

    /// Holds a write for a person's decision, as `pending`. Idempotent on the approval's key: a
    /// second create with the same key inserts nothing and returns the first.
    async fn create_approval(&self, approval: &NewApproval) -> Result<ApprovalCreated, StoreError>;
    /// Approvals newest first.
    async fn list_approvals(&self, filter: &ApprovalFilter) -> Result<Vec<Approval>, StoreError>;
    async fn get_approval(&self, id: i64) -> Result<Option<Approval>, StoreError>;
    /// Applies a decision to a pending approval in one atomic step: of two people deciding at
    /// once, one gets `Claimed`/`Rejected` and the other `NotPending`, so a write is sent once.
    async fn decide_approval(
        &self,
        id: i64,
        decision: &Decision,
        now_ms: i64,
    ) -> Result<Decided, StoreError>;
    /// Records how sending a claimed approval ended. Only the claim that `decide_approval`
    /// returned may finish it (same `decided_by` and `decided_at_ms`); None, with nothing
    /// changed, if that claim was taken over after `EXECUTION_LEASE_MS` or never existed.
    async fn finish_approval(
        &self,
        claim: &Approval,
        execution: &Execution,
        now_ms: i64,
    ) -> Result<Option<Approval>, StoreError>;

    /// The action journal, before a write is sent: records `key` as sent, or says what an
    /// earlier attempt left under it. Atomic: two callers with one key never both get `Fresh`.
    async fn begin_action(
        &self,
        key: &str,
        job: JobId,
        account: &str,
        request: &str,
        now_ms: i64,
    ) -> Result<ActionBegin, StoreError>;
    /// Records the upstream's answer to a write begun with `begin_action`.
    async fn finish_action(
        &self,
        key: &str,
        status: u16,
        response: &str,
        now_ms: i64,
    ) -> Result<(), StoreError>;
    /// Forgets a write the upstream certainly did not apply (refused it, or it never left), so a
    /// later attempt may send it.
    async fn abandon_action(&self, key: &str) -> Result<(), StoreError>;
    /// A job's journaled writes, oldest first.
    async fn list_actions(&self, job: JobId) -> Result<Vec<StoredAction>, StoreError>;

    /// The rate governor's reservation, shared by every process. Unless the account is paused,
    /// reserves the budget's next free slot (slots are `interval_ms` apart) and returns the ms
    /// until it and `true`: the caller sleeps that long, then sends. A slot further away than
    /// `horizon_ms` is not reserved (the caller will not wait that long). While paused, returns
    /// the ms until the pause ends and `false`: nothing is reserved.
    async fn reserve_call(
        &self,
        account: &str,
        bucket: &str,
        now_ms: i64,
        interval_ms: i64,
        horizon_ms: i64,
    ) -> Result<(i64, bool), StoreError>;
    /// Holds every call and every claim of `account` until `until_ms` (a later pause wins).
    async fn pause_account(
        &self,
        account: &str,
        until_ms: i64,
        reason: &str,
    ) -> Result<(), StoreError>;
    /// The account's pause (until, reason), if one was ever set.
    async fn account_pause(&self, account: &str) -> Result<Option<(i64, String)>, StoreError>;

    /// The circuit breaker row of an LLM provider (`breaker`), if it ever had one.
    async fn llm_breaker(&self, provider: &str) -> Result<Option<BreakerRow>, StoreError>;
    /// Applies `event` to the provider's breaker at `now_ms` (`breaker::step`) under a lock, so
    /// replicas reporting at once are applied one after another; returns the row as it is now
    /// and what changed. Of two replicas taking the probe at once, one gets `ProbeTaken`.
    async fn llm_breaker_step(
        &self,
        provider: &str,
        event: BreakerEvent,
        now_ms: i64,
    ) -> Result<(BreakerRow, BreakerChange), StoreError>;

    /// One retention round in one short transaction: deletes up to `policy.batch` of the oldest
    /// prunable jobs (with their runs, journal, approvals and event links), then up to
    /// `policy.batch` of the oldest prunable events, by the rules in `store::retention`. Returns
    /// the rows deleted per kind. PostgreSQL: one replica at a time; a caller that does not get
    /// the lock gets `skipped` and nothing changes.
    async fn prune(&self, policy: &PrunePolicy, now_ms: i64) -> Result<PruneReport, StoreError>;
    /// Counts what pruning at `now_ms` would delete over every round (not one batch), by the
    /// same rules; changes nothing.
    async fn prune_dry_run(
        &self,
        policy: &PrunePolicy,
        now_ms: i64,
    ) -> Result<PruneReport, StoreError>;
}

/// The reservation step both backends apply inside their transaction: given the budget's next
/// free slot (if any) and the account's pause, the wait in ms and the next free slot to store
/// (None: nothing reserved). Reserving ahead, rather than on arrival, keeps a caller that comes a
/// little late to its slot from pushing every later slot back.
pub(crate) fn reserve_slot(
    next_free: Option<i64>,
    paused_until: Option<i64>,
    now: i64,
    interval: i64,
    horizon: i64,
) -> (i64, Option<i64>) {
    if let Some(until) = paused_until.filter(|u| *u > now) {
        return (until - now, None);
    }
    let slot = next_free.unwrap_or(now).max(now);
    let wait = slot - now;
    if wait > horizon {
        (wait, None)
    } else {
        (wait, Some(slot + interval))
    }
}

pub type SharedStore = Arc<dyn Store>;

/// Opens the store named by a URL: `sqlite://PATH` or `postgres://...` (also `postgresql://`;
/// `?schema=NAME` keeps the tables in that schema).
/// Opens an existing store for a command that reads (or prunes) it: a SQLite file that does not
/// exist is an error naming it, not a new empty store.
pub async fn open_existing(url: &str) -> Result<SharedStore, StoreError> {
    if url.starts_with("sqlite:") {
        let path = sqlite::path_of(url)?;
        if !path.exists() {
            return Err(StoreError::Open {
                url: url.to_string(),
                reason: format!(
                    "there is no store at {}: `hookwise serve` or `hookwise migrate` creates it \
                     (is this the directory, or the --config, you meant?)",
                    path.display()
                ),
            });
        }
    }
    open(url).await
}

/// Opens the store, creating a SQLite file (not its directory) or the PostgreSQL schema's
/// tables on first use (`migrate`).
pub async fn open(url: &str) -> Result<SharedStore, StoreError> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(sqlite::SqliteStore::open(url).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(postgres::PostgresStore::open(url).await?))
    } else {
        Err(StoreError::Open {
            url: redact(url),
            reason: "expected sqlite://PATH or postgres://...".into(),
        })
    }
}

/// A store URL safe to print: any password is replaced.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let creds = &url[scheme_end + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}
