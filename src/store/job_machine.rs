//! The job state machine as pure code: a job's row and what happened to it go in, the rows to
//! write come out. Both stores execute these transitions; they differ only in the SQL that reads
//! a row, locks it and writes the result, so a rule changed here changes in both at once.
//!
//! ```text
//! pending ──claim──▶ running ──Done──────────────────────────────────────▶ done
//!    ▲                  ├──Dead, or lease expired with no attempts left──▶ dead
//!    │                  └──Retry, Release, Defer, lease expired──┐           │ Revived
//!    └─── requeue: pending again, or merged into the key's ◀─────┴───────────┘
//!         pending job (this one then ends as merged)
//! ```
//!
//! Claiming (pending → running) and extending a lease stay single conditional statements in each
//! backend: they are what several replicas race on, and one atomic UPDATE is their lock.

use super::{JobFinish, JobId, JobState, Route};

/// The error a reaped job keeps.
pub const LEASE_EXPIRED: &str = "lease expired: the worker stopped without finishing the run";

/// One job's row as a transition reads and writes it. The backend reads it under whatever lock
/// it needs and writes every field back (only the key and `max_attempts` never change).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSnapshot {
    pub id: JobId,
    /// The debounce key, with `account` and `subject`: at most one pending job per key.
    pub handler: String,
    pub account: String,
    pub subject: String,
    pub state: JobState,
    pub run_at_ms: i64,
    pub attempts: u32,
    pub max_attempts: u32,
    pub lease_owner: Option<String>,
    pub lease_until_ms: Option<i64>,
    pub last_error: Option<String>,
    pub updated_at_ms: i64,
    pub finished_at_ms: Option<i64>,
}

impl JobSnapshot {
    /// Running under `owner`'s lease: only then may `owner` record how the run ended.
    pub fn held_by(&self, owner: &str) -> bool {
        self.state == JobState::Running && self.lease_owner.as_deref() == Some(owner)
    }

    /// This row with the lease dropped and the change stamped at `now`.
    fn unleased(&self, state: JobState, now: i64) -> JobSnapshot {
        JobSnapshot {
            state,
            lease_owner: None,
            lease_until_ms: None,
            updated_at_ms: now,
            ..self.clone()
        }
    }
}

/// What happened to a job.
#[derive(Debug, Clone, PartialEq)]
pub enum JobEvent<'a> {
    /// The reaper found the job's lease run out: its worker stopped heartbeating.
    LeaseExpired,
    /// `owner` reports how its run ended.
    Finished { owner: &'a str, finish: JobFinish },
    /// `jobs retry`: a person who fixed the cause revives a dead job.
    Revived,
}

/// What an event does to a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// Write this row; nothing else changes.
    Write(JobSnapshot),
    /// Back to pending, unless the key already has a pending job: the backend looks that job up
    /// (locking it) and writes what [`Requeue::place`] returns.
    Requeue(Requeue),
}

/// Why an event does not apply to a job; nothing is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// Fencing: the caller's lease was reaped (and perhaps the job claimed again), or the job is
    /// not running at all.
    #[error("the job is not running under this owner's lease")]
    NotHeld,
    /// Reaping a job whose lease still holds, or that is not running.
    #[error("the job is not running on an expired lease")]
    Unexpired,
    /// Only dead jobs are revived.
    #[error("the job is {0:?}, not dead")]
    NotDead(JobState),
}

/// Applies `event` to `job` at `now_ms`.
pub fn transition(
    job: &JobSnapshot,
    event: JobEvent<'_>,
    now_ms: i64,
) -> Result<Transition, Refused> {
    let now = now_ms;
    match event {
        // Expiry counts as a failed attempt: the claim counted it, and nothing gives it back.
        JobEvent::LeaseExpired => {
            let expired = job.state == JobState::Running
                && job.lease_until_ms.is_some_and(|until| until < now);
            if !expired {
                return Err(Refused::Unexpired);
            }
            Ok(if job.attempts >= job.max_attempts {
                Transition::Write(dead(job, now, LEASE_EXPIRED.to_string()))
            } else {
                requeue(
                    job.clone(),
                    now,
                    now,
                    Some(LEASE_EXPIRED.to_string()),
                    Attempt::Counted,
                )
            })
        }
        JobEvent::Finished { owner, finish } => {
            if !job.held_by(owner) {
                return Err(Refused::NotHeld);
            }
            // Whether a failure is retried or dead is the scheduler's decision (it knows the
            // error's kind); the store records it, even past max_attempts.
            Ok(match finish {
                JobFinish::Done => Transition::Write(JobSnapshot {
                    finished_at_ms: Some(now),
                    ..job.unleased(JobState::Done, now)
                }),
                JobFinish::Dead { error } => Transition::Write(dead(job, now, error)),
                JobFinish::Retry { at_ms, error } => {
                    requeue(job.clone(), now, at_ms, Some(error), Attempt::Counted)
                }
                JobFinish::Release => requeue(job.clone(), now, now, None, Attempt::GivenBack),
                JobFinish::Defer { at_ms, error } => {
                    requeue(job.clone(), now, at_ms, Some(error), Attempt::GivenBack)
                }
            })
        }
        JobEvent::Revived => {
            if job.state != JobState::Dead {
                return Err(Refused::NotDead(job.state));
            }
            // A fresh retry budget; the last error stays until a run replaces it.
            let revived = JobSnapshot {
                attempts: 0,
                finished_at_ms: None,
                ..job.clone()
            };
            Ok(requeue(revived, now, now, None, Attempt::Counted))
        }
    }
}

/// The reaper's step for one job its query found running on an expired lease: the transition,
/// logged. None (never, while the query and `transition` agree) if the job is not.
pub fn reap(job: &JobSnapshot, now_ms: i64) -> Option<Transition> {
    let transition = transition(job, JobEvent::LeaseExpired, now_ms).ok()?;
    let (id, attempts) = (job.id.0, job.attempts);
    match &transition {
        Transition::Write(_) => {
            tracing::warn!(
                job = id,
                attempts,
                "lease expired; no attempts left, job dead"
            )
        }
        Transition::Requeue(_) => tracing::warn!(job = id, attempts, "lease expired; job requeued"),
    }
    Some(transition)
}

fn dead(job: &JobSnapshot, now: i64, error: String) -> JobSnapshot {
    JobSnapshot {
        last_error: Some(error),
        finished_at_ms: Some(now),
        ..job.unleased(JobState::Dead, now)
    }
}

/// What a requeue does with the attempt the claim counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attempt {
    /// It stands: the run failed (or, for a revived job, the count was just reset).
    Counted,
    /// Nothing failed (a release at shutdown, a deferral for a rate limit): it is taken back.
    GivenBack,
}

fn requeue(
    mut job: JobSnapshot,
    now: i64,
    run_at_ms: i64,
    error: Option<String>,
    attempt: Attempt,
) -> Transition {
    if attempt == Attempt::GivenBack {
        job.attempts = job.attempts.saturating_sub(1);
    }
    Transition::Requeue(Requeue {
        job,
        run_at_ms,
        error,
        now,
    })
}

/// A job on its way back to pending, its attempts already settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requeue {
    job: JobSnapshot,
    run_at_ms: i64,
    /// Replaces the job's last error; None keeps it.
    error: Option<String>,
    now: i64,
}

/// Where a requeued job went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// The key had no other pending job: this one is pending again.
    Pending(JobSnapshot),
    /// Events arrived while the job ran, so the key has a pending job already (and the index
    /// allows one): that job takes this one's events (the backend copies them), its attempt
    /// count, its run time if later and its error; this one is marked merged. Nothing is lost
    /// and the retry budget is not reset.
    Merged { job: JobSnapshot, into: JobSnapshot },
}

impl Requeue {
    /// The job being requeued: its key is what the backend looks the pending job up by.
    pub fn job(&self) -> &JobSnapshot {
        &self.job
    }

    /// Given the key's pending job as the backend found it (if any), the rows to write.
    pub fn place(self, pending: Option<JobSnapshot>) -> Placement {
        let Requeue {
            job,
            run_at_ms,
            error,
            now,
        } = self;
        match pending.filter(|p| p.id != job.id) {
            Some(into) => {
                let merged = JobSnapshot {
                    last_error: Some(format!("merged into job {}", into.id)),
                    finished_at_ms: Some(now),
                    ..job.unleased(JobState::Merged, now)
                };
                let into = JobSnapshot {
                    attempts: into.attempts.max(job.attempts),
                    run_at_ms: into.run_at_ms.max(run_at_ms),
                    last_error: error.or(into.last_error),
                    updated_at_ms: now,
                    ..into
                };
                Placement::Merged { job: merged, into }
            }
            None => Placement::Pending(JobSnapshot {
                run_at_ms,
                last_error: error.or_else(|| job.last_error.clone()),
                ..job.unleased(JobState::Pending, now)
            }),
        }
    }
}

impl Placement {
    /// The job that carries the events on, if not the requeued one.
    pub fn merged_into(&self) -> Option<JobId> {
        match self {
            Placement::Pending(_) => None,
            Placement::Merged { into, .. } => Some(into.id),
        }
    }
}

/// A route's first event makes a job with these times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewJob {
    pub run_at_ms: i64,
    pub first_seen_ms: i64,
    /// Fixed at creation: no later event moves the run past it.
    pub deadline_at_ms: i64,
}

impl NewJob {
    /// Runs a period after the event; the deadline is `max_wait` after it, but never before the
    /// first run.
    pub fn for_route(route: &Route, now_ms: i64) -> NewJob {
        NewJob {
            run_at_ms: now_ms.saturating_add(route.period_ms),
            first_seen_ms: now_ms,
            deadline_at_ms: now_ms.saturating_add(route.max_wait_ms.max(route.period_ms)),
        }
    }
}

/// Trailing debounce, for an event of a key that has a pending job: the run moves to a period
/// after this event, but never past the job's deadline, and never earlier than it already was.
/// For a job this event just created (`NewJob::for_route` at the same `now_ms`), it is the run
/// time the job already has.
pub fn debounce(run_at_ms: i64, deadline_at_ms: i64, now_ms: i64, period_ms: i64) -> i64 {
    run_at_ms.max(now_ms.saturating_add(period_ms).min(deadline_at_ms))
}

#[cfg(test)]
mod tests;
