//! Group commit for the ack path: requests queue their event, one writer task commits whatever is
//! queued in a single transaction, then answers every request in it. The scheduler's finished
//! jobs are committed the same way (`JobFinisher`).
//!
//! There is deliberately no wait to fill a batch: under light load a batch is one event and the
//! latency is one commit; under heavy load batches grow by themselves while a commit is running.

use super::{IngestItem, IngestOutcome, JobFinish, JobId, RunRecord, SharedStore, StoreError};
use crate::telemetry::metrics::SharedMetrics;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// Upper bound on one transaction, so one slow batch cannot hold every request.
const MAX_BATCH: usize = 512;

struct Pending {
    item: IngestItem,
    reply: oneshot::Sender<Result<IngestOutcome, StoreError>>,
}

/// The handle requests use. Cloning is cheap; the writer stops once every handle is dropped and
/// the queue is drained, so nothing accepted into the queue is abandoned at shutdown.
#[derive(Clone)]
pub struct IngestQueue {
    tx: mpsc::Sender<Pending>,
}

impl IngestQueue {
    pub fn start(store: SharedStore, metrics: SharedMetrics) -> (Self, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(MAX_BATCH * 8);
        let writer = tokio::spawn(run(store, metrics, rx));
        (Self { tx }, writer)
    }

    /// Resolves once the event is committed (or known to be a duplicate).
    pub async fn submit(&self, item: IngestItem) -> Result<IngestOutcome, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Pending { item, reply })
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }
}

async fn run(store: SharedStore, metrics: SharedMetrics, mut rx: mpsc::Receiver<Pending>) {
    let mut queued = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut queued, MAX_BATCH).await > 0 {
        // Requests woken by the previous commit are usually one scheduling turn away from
        // queueing their events: let them run, then take whatever became ready. Under light load
        // this costs nothing (nothing else is runnable); it is not a timed wait.
        while queued.len() < MAX_BATCH {
            tokio::task::yield_now().await;
            let before = queued.len();
            while queued.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(p) => queued.push(p),
                    Err(_) => break,
                }
            }
            if queued.len() == before {
                break;
            }
        }
        let (items, replies): (Vec<_>, Vec<_>) =
            queued.drain(..).map(|p| (p.item, p.reply)).unzip();
        let size = items.len();
        tracing::debug!(batch = size, "committing ingest batch");
        match store.ingest(items).await {
            Ok(outcomes) => {
                metrics.batch_committed(size, outcomes.iter().map(|o| o.folded).sum());
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    // A requester that went away still had its event committed; the sender retries
                    // and gets `duplicate: true`.
                    let _ = reply.send(Ok(outcome));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, batch = size, "ingest batch failed; nothing in it was stored");
                let shared: Arc<str> = e.to_string().into();
                for reply in replies {
                    let _ = reply.send(Err(StoreError::Batch(shared.clone())));
                }
            }
        }
    }
}

/// Records finished jobs for one scheduler (one lease owner): each worker queues its job's
/// outcome and waits for it; one task commits whatever is queued in one transaction
/// (`Store::finish_jobs`), so jobs that end together share a commit instead of paying one each.
/// No wait to fill a batch, as for ingest.
#[derive(Clone)]
pub struct JobFinisher {
    tx: mpsc::Sender<Finished>,
}

struct Finished {
    job: JobId,
    now_ms: i64,
    finish: JobFinish,
    reply: oneshot::Sender<Result<bool, StoreError>>,
}

impl JobFinisher {
    pub fn start(store: SharedStore, owner: String) -> (Self, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(MAX_BATCH);
        let writer = tokio::spawn(finish_loop(store, owner, rx));
        (Self { tx }, writer)
    }

    /// Resolves once the outcome is committed: what `Store::finish_job` would answer.
    pub async fn finish(
        &self,
        job: JobId,
        now_ms: i64,
        finish: JobFinish,
    ) -> Result<bool, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Finished {
                job,
                now_ms,
                finish,
                reply,
            })
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }
}

async fn finish_loop(store: SharedStore, owner: String, mut rx: mpsc::Receiver<Finished>) {
    let mut queued = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut queued, MAX_BATCH).await > 0 {
        // As for ingest: workers that finished meanwhile are a scheduling turn away.
        tokio::task::yield_now().await;
        while queued.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(f) => queued.push(f),
                Err(_) => break,
            }
        }
        let (batch, replies): (Vec<_>, Vec<_>) = queued
            .drain(..)
            .map(|f| ((f.job, f.now_ms, f.finish), f.reply))
            .unzip();
        match store.finish_jobs(&owner, batch).await {
            Ok(held) => {
                for (reply, held) in replies.into_iter().zip(held) {
                    let _ = reply.send(Ok(held));
                }
            }
            Err(e) => {
                let shared: Arc<str> = e.to_string().into();
                for reply in replies {
                    let _ = reply.send(Err(StoreError::Batch(shared.clone())));
                }
            }
        }
    }
}

/// Writes runs' transcripts as they go, so a run whose process dies mid-way leaves the steps it
/// took. Progress is not waited for: updates queue here and one task writes them in batches, one
/// transaction for every run that moved meanwhile, keeping only each run's newest state. A run's
/// final state is waited for, and is written after any progress queued before it.
#[derive(Clone)]
pub struct RunWriter {
    tx: mpsc::UnboundedSender<RunUpdate>,
}

struct RunUpdate {
    id: i64,
    run: RunRecord,
    /// Set for a run's final state: answered once it is committed.
    done: Option<oneshot::Sender<Result<(), StoreError>>>,
}

impl RunWriter {
    /// Starts the writer task; it ends when every `RunWriter` is dropped.
    pub fn start(store: SharedStore) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(write_runs(store, rx));
        Self { tx }
    }

    /// Queues the run's state so far; a failure to write it is logged, not returned.
    pub fn progress(&self, id: i64, run: RunRecord) {
        let _ = self.tx.send(RunUpdate {
            id,
            run,
            done: None,
        });
    }

    /// Writes the run's final state and waits for the commit.
    pub async fn finish(&self, id: i64, run: RunRecord) -> Result<(), StoreError> {
        let (done, answer) = oneshot::channel();
        self.tx
            .send(RunUpdate {
                id,
                run,
                done: Some(done),
            })
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }
}

async fn write_runs(store: SharedStore, mut rx: mpsc::UnboundedReceiver<RunUpdate>) {
    let mut queued = Vec::new();
    while rx.recv_many(&mut queued, MAX_BATCH).await > 0 {
        // The newest state of each run; a later update replaces an earlier one in place.
        let mut latest: Vec<(i64, RunRecord)> = Vec::new();
        let mut waiting = Vec::new();
        for update in queued.drain(..) {
            match latest.iter_mut().find(|(id, _)| *id == update.id) {
                Some(slot) => slot.1 = update.run,
                None => latest.push((update.id, update.run)),
            }
            waiting.extend(update.done);
        }
        let size = latest.len();
        let failed: Option<Arc<str>> = match store.update_runs(latest).await {
            Ok(()) => None,
            Err(e) => {
                tracing::error!(error = %e, runs = size, "writing run transcripts failed");
                Some(e.to_string().into())
            }
        };
        for done in waiting {
            let _ = done.send(match &failed {
                None => Ok(()),
                Some(e) => Err(StoreError::Batch(e.clone())),
            });
        }
    }
}
