//! The embedded store: one SQLite file in WAL mode, owned by one thread.
//!
//! SQLite allows one writer at a time, so hookwise gives it exactly one connection on one thread
//! and sends it closures: statements never contend for the write lock inside a process, the page
//! cache stays warm, and a batch of inserts costs no thread hand-off per row. Other processes
//! (the CLI, a second `serve` by mistake) open their own connection and wait on busy_timeout.
//!
//! `synchronous = FULL`: an acknowledged event survives a power cut, not only a process crash;
//! group commit pays that fsync once per batch.

mod approvals;
mod breaker;
mod jobs;
mod overview;
mod retention;
mod runs;
mod upstream;
mod usage;

use super::migrate::{Migration, SQLITE};
use super::{
    ActionBegin, Approval, ApprovalCreated, ApprovalFilter, BreakerChange, BreakerEvent,
    BreakerRow, DayUsage, Decided, Decision, Disposition, EventFilter, EventStatus, EventWithJobs,
    Execution, IngestItem, IngestOutcome, JobFilter, JobFinish, JobId, JobRecord, JobWithEvents,
    NewApproval, PrunePolicy, PruneReport, RetryResult, RunFilter, RunRecord, Store, StoreError,
    StoredAction, StoredEvent, StoredRun, Usage,
};
use crate::kernel::event::{EventId, SourceName};
use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;
use tokio::sync::oneshot;

type Work = Box<dyn FnOnce(&mut Connection) + Send>;

pub struct SqliteStore {
    work: mpsc::Sender<Work>,
    path: PathBuf,
    /// `PATH.lock`, exclusively locked while this process serves the file (released by the
    /// kernel when the process ends, however it ends).
    serving: std::sync::Mutex<Option<std::fs::File>>,
    /// The rate governor's next free slot per (account, budget). In memory: SQLite serves one
    /// process, and a durable commit per upstream call would cost more than the call's slot.
    /// Pauses, which must outlive a restart (a 10-minute penalty), stay in `account_pauses`.
    budgets: std::sync::Mutex<std::collections::HashMap<(String, String), i64>>,
    /// Whether pruning already said, once per process, that this file cannot shrink (it predates
    /// `auto_vacuum = INCREMENTAL`).
    noted_no_vacuum: std::sync::atomic::AtomicBool,
}

impl SqliteStore {
    /// Opens (creating if needed) the database named by `sqlite://PATH` or `sqlite:PATH`. The
    /// directory must exist: a mistyped path is an error, not a new directory tree.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let path = path_of(url)?;
        let open_error = |reason: String| StoreError::Open {
            url: url.to_string(),
            reason,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
            && !dir.is_dir()
        {
            return Err(open_error(format!(
                "the directory {} does not exist: create it, or correct the path",
                dir.display()
            )));
        }
        let (ready_tx, ready_rx) = oneshot::channel();
        let (work, queue) = mpsc::channel::<Work>();
        let file = path.clone();
        std::thread::Builder::new()
            .name("hookwise-sqlite".into())
            .spawn(move || {
                let mut conn = match connect(&file) {
                    Ok(conn) => {
                        let _ = ready_tx.send(Ok(()));
                        conn
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                // Ends when the last SqliteStore handle is dropped.
                while let Ok(work) = queue.recv() {
                    work(&mut conn);
                }
            })
            .map_err(|e| open_error(e.to_string()))?;
        ready_rx
            .await
            .map_err(|_| open_error("the SQLite thread stopped".into()))?
            .map_err(|e| open_error(e.to_string()))?;
        Ok(Self {
            work,
            path,
            serving: Default::default(),
            budgets: Default::default(),
            noted_no_vacuum: Default::default(),
        })
    }

    /// Runs `f` on the store's thread and returns its result. A panic in `f` fails this call
    /// only: left to unwind, it would end the thread and every later call with it.
    async fn call<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<R, StoreError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        self.work
            .send(Box::new(move |conn| {
                let result = std::panic::catch_unwind(AssertUnwindSafe(|| f(conn))).unwrap_or_else(
                    |panic| {
                        // A `Transaction` rolls back as it unwinds, but a BEGIN issued by hand
                        // would stay open and swallow the next call's writes.
                        if !conn.is_autocommit()
                            && let Err(e) = conn.execute_batch("ROLLBACK")
                        {
                            tracing::error!(error = %e, "rolling back after a panic failed");
                        }
                        Err(StoreError::Panicked(panic_message(&*panic).to_owned()))
                    },
                );
                let _ = reply.send(result);
            }))
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }
}

/// The text of a panic payload: `panic!` makes a `&'static str` or a `String`.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&'static str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a panic without a message")
}

pub(super) fn path_of(url: &str) -> Result<PathBuf, StoreError> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or_default();
    let rest = rest.split('?').next().unwrap_or_default();
    if rest.is_empty() || rest.starts_with(":memory:") {
        return Err(StoreError::Open {
            url: url.to_string(),
            reason: "expected sqlite://PATH to a database file".into(),
        });
    }
    Ok(PathBuf::from(rest))
}

fn connect(path: &std::path::Path) -> Result<Connection, rusqlite::Error> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    // Before anything else touches the file: it only takes effect on a database without tables
    // yet (a new file). Pruning then hands freed pages back (`retention::reclaim_space`); an
    // older file keeps reusing them without shrinking, until a VACUUM converts it.
    conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // 64 MiB of page cache (the default is 2 MiB): the job indexes of a large backlog stay in
    // memory, so claims and finishes cost the same at 1M pending jobs as at 1k.
    conn.pragma_update(None, "cache_size", -65536)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

fn event_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoredEvent> {
    Ok(StoredEvent {
        seq: row.get("seq")?,
        source: SourceName::new(row.get::<_, String>("source")?),
        event_id: EventId::new(row.get::<_, String>("event_id")?),
        kind: row.get("kind")?,
        account: row.get("account")?,
        subject: row.get("subject")?,
        occurred_at_ms: row.get("occurred_at")?,
        received_at_ms: row.get("received_at")?,
        status: {
            let status: String = row.get("status")?;
            EventStatus::parse(&status).ok_or_else(|| {
                rusqlite::Error::FromSqlConversionFailure(
                    row.as_ref().column_index("status").unwrap_or_default(),
                    rusqlite::types::Type::Text,
                    format!("unknown event status {status:?}").into(),
                )
            })?
        },
        status_reason: row.get("status_reason")?,
        payload: row.get("payload")?,
        trace_context: row.get("trace_context")?,
    })
}

#[async_trait]
impl Store for SqliteStore {
    async fn migrate(&self) -> Result<(), StoreError> {
        self.call(|conn| {
            conn.execute_batch(
                "CREATE TABLE IF NOT EXISTS schema_migrations (
                    version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)",
            )?;
            for Migration { version, name, sql } in SQLITE {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let applied: Option<i64> = tx
                    .query_row(
                        "SELECT version FROM schema_migrations WHERE version = ?1",
                        [version],
                        |r| r.get(0),
                    )
                    .optional()?;
                if applied.is_some() {
                    continue;
                }
                tx.execute_batch(sql).map_err(|e| StoreError::Migration {
                    version: *version,
                    name,
                    reason: e.to_string(),
                })?;
                tx.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
                    params![version, name, chrono::Utc::now().timestamp_millis()],
                )?;
                tx.commit()?;
                tracing::info!(version, name, "applied migration");
            }
            Ok(())
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.call(|conn| Ok(conn.query_row("SELECT 1", [], |_| Ok(()))?))
            .await
    }

    async fn hold_for_serving(&self) -> Result<(), StoreError> {
        let mut name = self.path.clone().into_os_string();
        name.push(".lock");
        let lock = PathBuf::from(name);
        let error = |reason: String| StoreError::Open {
            url: format!("sqlite://{}", self.path.display()),
            reason,
        };
        let file = std::fs::File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock)
            .map_err(|e| error(format!("cannot open {}: {e}", lock.display())))?;
        match file.try_lock() {
            Ok(()) => {
                *self.serving.lock().unwrap_or_else(|e| e.into_inner()) = Some(file);
                Ok(())
            }
            Err(std::fs::TryLockError::WouldBlock) => Err(error(
                "another `hookwise serve` is already serving this file. SQLite serves one \
                 process (rate-limit slots live in its memory): stop the other one, or run \
                 several replicas on PostgreSQL"
                    .into(),
            )),
            Err(std::fs::TryLockError::Error(e)) => {
                Err(error(format!("cannot lock {}: {e}", lock.display())))
            }
        }
    }

    async fn ingest(&self, batch: Vec<IngestItem>) -> Result<Vec<IngestOutcome>, StoreError> {
        self.call(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut outcomes = Vec::with_capacity(batch.len());
            for IngestItem {
                event,
                disposition,
                trace_context,
            } in &batch
            {
                let (status, reason) = disposition.status();
                let inserted = tx
                    .prepare_cached(
                        "INSERT INTO events (source, event_id, kind, account, subject, occurred_at,
                            received_at, actor_kind, actor_id, status, status_reason, payload,
                            trace_context)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
                         ON CONFLICT (source, event_id) DO NOTHING",
                    )?
                    .execute(params![
                        event.source.as_str(),
                        event.id.as_str(),
                        event.kind,
                        event.account.as_str(),
                        event.subject,
                        event.occurred_at.timestamp_millis(),
                        event.received_at.timestamp_millis(),
                        event.actor.as_ref().map(|a| a.kind.as_str()),
                        event.actor.as_ref().map(|a| a.id.as_str()),
                        status.as_str(),
                        reason,
                        event.payload,
                        trace_context,
                    ])?;
                let mut jobs = Vec::new();
                let mut folded = 0;
                // A duplicate changes nothing: its jobs were decided when it first arrived.
                if inserted == 1
                    && let Disposition::Route(routes) = disposition
                {
                    let seq = tx.last_insert_rowid();
                    let now = event.received_at.timestamp_millis();
                    for route in routes {
                        let (job, joined) =
                            jobs::route_event(&tx, event.account.as_str(), seq, route, now)?;
                        jobs.push(job);
                        folded += usize::from(joined);
                    }
                }
                outcomes.push(IngestOutcome {
                    event_id: event.id.clone(),
                    duplicate: inserted == 0,
                    jobs,
                    folded,
                });
            }
            tx.commit()?;
            Ok(outcomes)
        })
        .await
    }

    async fn get_event(
        &self,
        source: &SourceName,
        id: &EventId,
    ) -> Result<Option<StoredEvent>, StoreError> {
        let (source, id) = (source.clone(), id.clone());
        self.call(move |conn| {
            Ok(conn
                .query_row(
                    "SELECT * FROM events WHERE source = ?1 AND event_id = ?2",
                    params![source.as_str(), id.as_str()],
                    event_from_row,
                )
                .optional()?)
        })
        .await
    }

    async fn list_events(&self, filter: &EventFilter) -> Result<Vec<StoredEvent>, StoreError> {
        let filter = filter.clone();
        self.call(move |conn| {
            let mut stmt = conn.prepare_cached(LIST_EVENTS)?;
            let rows = stmt.query_map(
                params![
                    filter.source,
                    filter.account,
                    filter.kind,
                    crate::store::before_key(filter.before_seq),
                    crate::store::page_limit(filter.limit),
                    filter.subject,
                    filter.status.map(EventStatus::as_str),
                    filter.since_ms,
                    filter.until_ms,
                ],
                event_from_row,
            )?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn get_event_with_jobs(&self, seq: i64) -> Result<Option<EventWithJobs>, StoreError> {
        self.call(move |conn| overview::event_with_jobs(conn, seq))
            .await
    }

    async fn claim_jobs(
        &self,
        owner: &str,
        now_ms: i64,
        limit: usize,
        lease_ms: i64,
    ) -> Result<Vec<JobWithEvents>, StoreError> {
        let owner = owner.to_string();
        self.call(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let claimed = jobs::claim(&tx, &owner, now_ms, limit, lease_ms)?;
            tx.commit()?;
            Ok(claimed)
        })
        .await
    }

    async fn extend_lease(
        &self,
        job: JobId,
        owner: &str,
        until_ms: i64,
    ) -> Result<bool, StoreError> {
        let owner = owner.to_string();
        self.call(move |conn| jobs::extend_lease(conn, job, &owner, until_ms))
            .await
    }

    async fn finish_job(
        &self,
        job: JobId,
        owner: &str,
        now_ms: i64,
        finish: JobFinish,
    ) -> Result<bool, StoreError> {
        let owner = owner.to_string();
        self.call(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let held = jobs::finish(&tx, job, &owner, now_ms, finish)?;
            tx.commit()?;
            Ok(held)
        })
        .await
    }

    async fn finish_jobs(
        &self,
        owner: &str,
        batch: Vec<(JobId, i64, JobFinish)>,
    ) -> Result<Vec<bool>, StoreError> {
        let owner = owner.to_string();
        self.call(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut held = Vec::with_capacity(batch.len());
            for (job, now_ms, finish) in batch {
                held.push(jobs::finish(&tx, job, &owner, now_ms, finish)?);
            }
            tx.commit()?;
            Ok(held)
        })
        .await
    }

    async fn next_due_ms(&self) -> Result<Option<i64>, StoreError> {
        self.call(|conn| jobs::next_due(conn)).await
    }

    async fn queue_gauges(&self, now_ms: i64) -> Result<crate::store::QueueGauges, StoreError> {
        self.call(move |conn| jobs::queue_gauges(conn, now_ms))
            .await
    }

    async fn overview(
        &self,
        now_ms: i64,
        since_ms: i64,
        failures: u32,
    ) -> Result<crate::store::Overview, StoreError> {
        // The call slots live in this process's memory, not in the database.
        let slots = {
            let budgets = self.budgets.lock().unwrap_or_else(|e| e.into_inner());
            budgets
                .iter()
                .map(|((account, bucket), next)| (account.clone(), bucket.clone(), *next))
                .collect()
        };
        self.call(move |conn| overview::overview(conn, slots, now_ms, since_ms, failures))
            .await
    }

    async fn list_jobs(&self, filter: &JobFilter) -> Result<Vec<JobRecord>, StoreError> {
        let filter = filter.clone();
        self.call(move |conn| jobs::list(conn, &filter)).await
    }

    async fn get_job(&self, id: JobId) -> Result<Option<JobWithEvents>, StoreError> {
        self.call(move |conn| jobs::get(conn, id)).await
    }

    async fn retry_job(&self, id: JobId, now_ms: i64) -> Result<RetryResult, StoreError> {
        self.call(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let result = jobs::retry(&tx, id, now_ms)?;
            tx.commit()?;
            Ok(result)
        })
        .await
    }

    async fn record_run(&self, run: &RunRecord) -> Result<i64, StoreError> {
        let steps = super::steps_text(&run.steps)?;
        let run = RunRecord {
            steps: serde_json::Value::Null,
            ..run.clone()
        };
        self.call(move |conn| runs::record(conn, &run, &steps))
            .await
    }

    async fn update_runs(&self, runs: Vec<(i64, RunRecord)>) -> Result<(), StoreError> {
        // Encoded here, off the store's one thread.
        let runs = runs
            .into_iter()
            .map(|(id, run)| {
                let steps = super::steps_text(&run.steps)?;
                let run = RunRecord {
                    steps: serde_json::Value::Null,
                    ..run
                };
                Ok((id, run, steps))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        self.call(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            runs::update(&tx, &runs)?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<StoredRun>, StoreError> {
        let filter = filter.clone();
        self.call(move |conn| runs::list(conn, &filter)).await
    }

    async fn get_run(&self, id: i64) -> Result<Option<StoredRun>, StoreError> {
        self.call(move |conn| runs::get(conn, id)).await
    }

    async fn add_usage(
        &self,
        day: &str,
        account: &str,
        handler: &str,
        spent: Usage,
    ) -> Result<DayUsage, StoreError> {
        let (day, account, handler) = (day.to_owned(), account.to_owned(), handler.to_owned());
        self.call(move |conn| usage::add(conn, &day, &account, &handler, spent))
            .await
    }

    async fn usage(&self, day: &str, account: &str, handler: &str) -> Result<DayUsage, StoreError> {
        let (day, account, handler) = (day.to_owned(), account.to_owned(), handler.to_owned());
        self.call(move |conn| usage::get(conn, &day, &account, &handler))
            .await
    }

    async fn create_approval(&self, approval: &NewApproval) -> Result<ApprovalCreated, StoreError> {
        let approval = approval.clone();
        self.call(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let created = approvals::create(&tx, &approval)?;
            tx.commit()?;
            Ok(created)
        })
        .await
    }

    async fn list_approvals(&self, filter: &ApprovalFilter) -> Result<Vec<Approval>, StoreError> {
        let filter = filter.clone();
        self.call(move |conn| approvals::list(conn, &filter)).await
    }

    async fn get_approval(&self, id: i64) -> Result<Option<Approval>, StoreError> {
        self.call(move |conn| approvals::get(conn, id)).await
    }

    async fn decide_approval(
        &self,
        id: i64,
        decision: &Decision,
        now_ms: i64,
    ) -> Result<Decided, StoreError> {
        let decision = decision.clone();
        self.call(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let decided = approvals::decide(&tx, id, &decision, now_ms)?;
            tx.commit()?;
            Ok(decided)
        })
        .await
    }

    async fn finish_approval(
        &self,
        claim: &Approval,
        execution: &Execution,
        now_ms: i64,
    ) -> Result<Option<Approval>, StoreError> {
        let (claim, execution) = (claim.clone(), execution.clone());
        self.call(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let finished = approvals::finish(&tx, &claim, &execution, now_ms)?;
            tx.commit()?;
            Ok(finished)
        })
        .await
    }

    async fn begin_action(
        &self,
        key: &str,
        job: JobId,
        account: &str,
        request: &str,
        now_ms: i64,
    ) -> Result<ActionBegin, StoreError> {
        let (key, account, request) = (key.to_owned(), account.to_owned(), request.to_owned());
        self.call(move |conn| upstream::begin_action(conn, &key, job, &account, &request, now_ms))
            .await
    }

    async fn finish_action(
        &self,
        key: &str,
        status: u16,
        response: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let (key, response) = (key.to_owned(), response.to_owned());
        self.call(move |conn| upstream::finish_action(conn, &key, status, &response, now_ms))
            .await
    }

    async fn abandon_action(&self, key: &str) -> Result<(), StoreError> {
        let key = key.to_owned();
        self.call(move |conn| upstream::abandon_action(conn, &key))
            .await
    }

    async fn list_actions(&self, job: JobId) -> Result<Vec<StoredAction>, StoreError> {
        self.call(move |conn| upstream::list_actions(conn, job))
            .await
    }

    async fn reserve_call(
        &self,
        account: &str,
        bucket: &str,
        now_ms: i64,
        interval_ms: i64,
        horizon_ms: i64,
    ) -> Result<(i64, bool), StoreError> {
        let paused = {
            let account = account.to_owned();
            self.call(move |conn| upstream::account_pause(conn, &account))
                .await?
                .map(|(until, _)| until)
        };
        let mut budgets = self.budgets.lock().unwrap_or_else(|e| e.into_inner());
        let key = (account.to_owned(), bucket.to_owned());
        let (wait, next) = super::reserve_slot(
            budgets.get(&key).copied(),
            paused,
            now_ms,
            interval_ms,
            horizon_ms,
        );
        if let Some(next) = next {
            budgets.insert(key, next);
        }
        Ok((wait, next.is_some()))
    }

    async fn pause_account(
        &self,
        account: &str,
        until_ms: i64,
        reason: &str,
    ) -> Result<(), StoreError> {
        let (account, reason) = (account.to_owned(), reason.to_owned());
        self.call(move |conn| upstream::pause_account(conn, &account, until_ms, &reason))
            .await
    }

    async fn account_pause(&self, account: &str) -> Result<Option<(i64, String)>, StoreError> {
        let account = account.to_owned();
        self.call(move |conn| upstream::account_pause(conn, &account))
            .await
    }

    async fn llm_breaker(&self, provider: &str) -> Result<Option<BreakerRow>, StoreError> {
        let provider = provider.to_owned();
        self.call(move |conn| breaker::read(conn, &provider)).await
    }

    async fn llm_breaker_step(
        &self,
        provider: &str,
        event: BreakerEvent,
        now_ms: i64,
    ) -> Result<(BreakerRow, BreakerChange), StoreError> {
        let provider = provider.to_owned();
        self.call(move |conn| breaker::step(conn, &provider, &event, now_ms))
            .await
    }

    async fn prune(&self, policy: &PrunePolicy, now_ms: i64) -> Result<PruneReport, StoreError> {
        let cutoffs = policy.cutoffs(now_ms);
        let (report, incremental) = self
            .call(move |conn| {
                let report = retention::prune(conn, &cutoffs)?;
                if report.is_empty() {
                    return Ok((report, true));
                }
                // Its own statement after the commit: a failure here loses no deletion.
                let incremental = retention::incremental(conn)?;
                let pages = retention::reclaim_space(conn)?;
                if pages > 0 {
                    tracing::debug!(pages, "handed free pages back to the file system");
                }
                Ok((report, incremental))
            })
            .await?;
        if !incremental
            && !self
                .noted_no_vacuum
                .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            tracing::info!(
                "this SQLite file predates auto_vacuum=INCREMENTAL: pruned space is reused but the \
                 file does not shrink (README, \"Retention\", says how to convert it)"
            );
        }
        Ok(report)
    }

    async fn prune_dry_run(
        &self,
        policy: &PrunePolicy,
        now_ms: i64,
    ) -> Result<PruneReport, StoreError> {
        let cutoffs = policy.cutoffs(now_ms);
        self.call(move |conn| retention::dry_run(conn, &cutoffs))
            .await
    }
}

/// Newest first from `?4` down (exclusive): a range on the primary key, never an offset.
const LIST_EVENTS: &str = "SELECT * FROM events
     WHERE (?1 IS NULL OR source = ?1) AND (?2 IS NULL OR account = ?2)
       AND (?3 IS NULL OR kind = ?3) AND seq < ?4
       AND (?6 IS NULL OR subject = ?6) AND (?7 IS NULL OR status = ?7)
       AND (?8 IS NULL OR received_at >= ?8) AND (?9 IS NULL OR received_at < ?9)
     ORDER BY seq DESC LIMIT ?5";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::event::{AccountId, Event};

    fn event(id: &str) -> IngestItem {
        let now = chrono::Utc::now();
        IngestItem {
            event: Event {
                id: EventId::new(id),
                source: SourceName::new("test"),
                kind: "test.kind".into(),
                account: AccountId::new("acme"),
                subject: "s".into(),
                occurred_at: now,
                received_at: now,
                actor: None,
                payload: "{}".into(),
            },
            disposition: Disposition::Route(Vec::new()),
            trace_context: None,
        }
    }

    #[tokio::test]
    async fn a_panicking_call_fails_alone_and_leaves_no_writes_behind() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("hookwise.db").display());
        let store = SqliteStore::open(&url).await.unwrap();
        store.migrate().await.unwrap();

        // A bug in a statement helper: a transaction opened by hand, a write, then a panic
        // before the commit.
        let error = store
            .call(|conn| -> Result<(), StoreError> {
                conn.execute_batch("BEGIN IMMEDIATE")?;
                conn.execute(
                    "INSERT INTO events (source, event_id, kind, account, subject, occurred_at,
                        received_at, payload) VALUES ('test', 'lost', 'k', 'acme', 's', 0, 0, '{}')",
                    [],
                )?;
                panic!("a helper indexed past the end");
            })
            .await
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "a store call panicked: a helper indexed past the end"
        );

        // The thread and its connection go on, outside any transaction, without the lost write.
        assert!(store.call(|conn| Ok(conn.is_autocommit())).await.unwrap());
        store.ingest(vec![event("after")]).await.unwrap();
        let events = store.list_events(&EventFilter::default()).await.unwrap();
        let ids: Vec<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
        assert_eq!(ids, ["after"]);
    }

    /// A new file hands pruned space back (auto_vacuum = INCREMENTAL); one that predates it
    /// keeps its size but reuses the freed pages, so it stops growing either way.
    #[tokio::test]
    async fn pruned_space_is_handed_back_on_a_new_file_and_reused_on_an_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let policy = PrunePolicy {
            events_ms: 1,
            jobs_ms: 1,
            dead_jobs_ms: 1,
            batch: 100_000,
        };
        let big = |prefix: &str| -> Vec<IngestItem> {
            (0..1_000)
                .map(|i| {
                    let mut item = event(&format!("{prefix}{i}"));
                    item.event.payload = format!("{{\"pad\":\"{}\"}}", "x".repeat(2_000));
                    item
                })
                .collect()
        };
        async fn pages(store: &SqliteStore) -> Result<(i64, i64), StoreError> {
            store
                .call(|conn| {
                    let count = |name| conn.pragma_query_value(None, name, |r| r.get::<_, i64>(0));
                    Ok((count("page_count")?, count("freelist_count")?))
                })
                .await
        }
        let later = chrono::Utc::now().timestamp_millis() + 1_000;

        let url = format!("sqlite://{}", dir.path().join("new.db").display());
        let store = SqliteStore::open(&url).await.unwrap();
        store.migrate().await.unwrap();
        assert!(
            store
                .call(|conn| retention::incremental(conn))
                .await
                .unwrap()
        );
        store.ingest(big("a")).await.unwrap();
        let (full, _) = pages(&store).await.unwrap();
        assert_eq!(store.prune(&policy, later).await.unwrap().events, 1_000);
        let (after, free) = pages(&store).await.unwrap();
        assert!(after < full / 2, "{full} pages before, {after} after");
        assert!(
            free <= (after - free) / 4 + 1,
            "free pages kept: at most a quarter of those in use: {free} of {after}"
        );

        // A file made before auto_vacuum was set: converting it needs a VACUUM, so it does not
        // shrink, but the next batch of events fits in the pages the pruned ones left.
        let path = dir.path().join("old.db");
        rusqlite::Connection::open(&path)
            .unwrap()
            .execute_batch("CREATE TABLE predates_incremental (x)")
            .unwrap();
        let store = SqliteStore::open(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        store.migrate().await.unwrap();
        assert!(
            !store
                .call(|conn| retention::incremental(conn))
                .await
                .unwrap()
        );
        store.ingest(big("a")).await.unwrap();
        assert_eq!(store.prune(&policy, later).await.unwrap().events, 1_000);
        let (full, free) = pages(&store).await.unwrap();
        assert!(
            free > full / 2,
            "the pages are free, not returned: {free} of {full}"
        );
        store.ingest(big("b")).await.unwrap();
        let (again, _) = pages(&store).await.unwrap();
        assert!(
            again <= full + full / 20,
            "reused: {full} pages, then {again}"
        );
    }

    /// Every list pages by key: each statement seeks into the primary key below `before`, so a
    /// deep page costs what the first one does (no scan past the newer rows, no OFFSET).
    #[tokio::test]
    async fn list_statements_seek_the_primary_key_below_before() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("hookwise.db").display());
        let store = SqliteStore::open(&url).await.unwrap();
        store.migrate().await.unwrap();
        let statements = [
            ("events", LIST_EVENTS.to_string()),
            ("jobs", jobs::list_sql()),
            ("runs", runs::list_sql()),
            ("approvals", approvals::list_sql()),
        ];
        for (table, sql) in statements {
            let plan = store
                .call(move |conn| {
                    use rusqlite::types::Value::{Integer, Null};
                    let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?;
                    // The common five (three filters, before, limit); any further filters unset.
                    let mut values = vec![Null, Null, Null, Integer(100), Integer(50)];
                    values.resize(stmt.parameter_count(), Null);
                    let rows = stmt.query_map(rusqlite::params_from_iter(values), |r| {
                        r.get::<_, String>(3)
                    })?;
                    Ok(rows.collect::<Result<Vec<_>, _>>()?.join("; "))
                })
                .await
                .unwrap();
            assert!(
                plan.contains("USING INTEGER PRIMARY KEY (rowid<?)") && !plan.contains("SCAN"),
                "{table}: {plan}"
            );
        }
    }
}
