//! Every transition of the job state machine, without a database: the contract tests in
//! `tests/it/store_contract/` check that both backends execute them.

use super::*;

const T0: i64 = 1_700_000_000_000;
const NOW: i64 = T0 + 60_000;
const LEASE_END: i64 = T0 + 30_000;

/// A job claimed by `w1` at T0 (its second attempt of three), lease until LEASE_END.
fn running() -> JobSnapshot {
    JobSnapshot {
        id: JobId(7),
        handler: "triage".into(),
        account: "acme".into(),
        subject: "t1".into(),
        state: JobState::Running,
        run_at_ms: T0 - 5_000,
        attempts: 2,
        max_attempts: 3,
        lease_owner: Some("w1".into()),
        lease_until_ms: Some(LEASE_END),
        last_error: Some("first attempt failed".into()),
        updated_at_ms: T0,
        finished_at_ms: None,
    }
}

/// The key's pending job, created by an event that arrived while job 7 ran.
fn pending() -> JobSnapshot {
    JobSnapshot {
        id: JobId(9),
        state: JobState::Pending,
        run_at_ms: NOW + 10_000,
        attempts: 0,
        lease_owner: None,
        lease_until_ms: None,
        last_error: None,
        updated_at_ms: T0 + 1,
        ..running()
    }
}

fn finished(job: &JobSnapshot, finish: JobFinish) -> Result<Transition, Refused> {
    transition(
        job,
        JobEvent::Finished {
            owner: "w1",
            finish,
        },
        NOW,
    )
}

fn written(t: Result<Transition, Refused>) -> JobSnapshot {
    match t {
        Ok(Transition::Write(row)) => row,
        other => panic!("expected a plain write, got {other:?}"),
    }
}

/// The requeue's result when the key has no other pending job.
fn requeued(t: Result<Transition, Refused>) -> JobSnapshot {
    match t.map(|t| placed(t, None)) {
        Ok(Placement::Pending(row)) => row,
        other => panic!("expected pending again, got {other:?}"),
    }
}

fn placed(t: Transition, pending: Option<JobSnapshot>) -> Placement {
    match t {
        Transition::Requeue(requeue) => requeue.place(pending),
        other => panic!("expected a requeue, got {other:?}"),
    }
}

#[test]
fn done_drops_the_lease_and_finishes() {
    let row = written(finished(&running(), JobFinish::Done));
    assert_eq!(
        row,
        JobSnapshot {
            state: JobState::Done,
            lease_owner: None,
            lease_until_ms: None,
            updated_at_ms: NOW,
            finished_at_ms: Some(NOW),
            ..running()
        }
    );
}

#[test]
fn dead_records_the_error_and_finishes() {
    let error = "permanent: no such ticket".to_string();
    let row = written(finished(&running(), JobFinish::Dead { error }));
    assert_eq!(
        row,
        JobSnapshot {
            state: JobState::Dead,
            last_error: Some("permanent: no such ticket".into()),
            lease_owner: None,
            lease_until_ms: None,
            updated_at_ms: NOW,
            finished_at_ms: Some(NOW),
            ..running()
        }
    );
}

#[test]
fn a_finish_is_refused_unless_the_caller_holds_the_running_job() {
    let finishes = [
        JobFinish::Done,
        JobFinish::Dead { error: "x".into() },
        JobFinish::Retry {
            at_ms: NOW,
            error: "x".into(),
        },
        JobFinish::Release,
        JobFinish::Defer {
            at_ms: NOW,
            error: "x".into(),
        },
    ];
    let reclaimed = JobSnapshot {
        lease_owner: Some("w2".into()),
        ..running()
    };
    // Reaped, finished or never claimed: even a lease owner left on the row would not count.
    let not_running = [
        JobState::Pending,
        JobState::Done,
        JobState::Dead,
        JobState::Merged,
    ]
    .map(|state| JobSnapshot { state, ..running() });
    for finish in finishes {
        for job in std::iter::once(&reclaimed).chain(&not_running) {
            assert_eq!(
                finished(job, finish.clone()),
                Err(Refused::NotHeld),
                "{finish:?} on {job:?}"
            );
        }
        let unleased = JobSnapshot {
            lease_owner: None,
            ..running()
        };
        assert_eq!(finished(&unleased, finish), Err(Refused::NotHeld));
    }
}

#[test]
fn retry_requeues_at_its_time_counting_the_attempt() {
    let retry = JobFinish::Retry {
        at_ms: NOW + 4_000,
        error: "timeout".into(),
    };
    let row = requeued(finished(&running(), retry));
    assert_eq!(
        row,
        JobSnapshot {
            state: JobState::Pending,
            run_at_ms: NOW + 4_000,
            attempts: 2,
            last_error: Some("timeout".into()),
            lease_owner: None,
            lease_until_ms: None,
            updated_at_ms: NOW,
            ..running()
        }
    );
}

#[test]
fn retry_past_max_attempts_is_still_requeued_the_scheduler_decides() {
    let spent = JobSnapshot {
        attempts: 5,
        ..running()
    };
    let retry = JobFinish::Retry {
        at_ms: NOW,
        error: "timeout".into(),
    };
    let row = requeued(finished(&spent, retry));
    assert_eq!((row.state, row.attempts), (JobState::Pending, 5));
}

#[test]
fn release_gives_the_attempt_back_now_and_keeps_the_last_error() {
    let row = requeued(finished(&running(), JobFinish::Release));
    assert_eq!(
        row,
        JobSnapshot {
            state: JobState::Pending,
            run_at_ms: NOW,
            attempts: 1,
            lease_owner: None,
            lease_until_ms: None,
            updated_at_ms: NOW,
            ..running()
        }
    );
    assert_eq!(row.last_error.as_deref(), Some("first attempt failed"));
}

#[test]
fn defer_gives_the_attempt_back_and_records_why() {
    let defer = JobFinish::Defer {
        at_ms: NOW + 600_000,
        error: "rate limited".into(),
    };
    let row = requeued(finished(&running(), defer));
    assert_eq!(
        (
            row.state,
            row.run_at_ms,
            row.attempts,
            row.last_error.as_deref()
        ),
        (JobState::Pending, NOW + 600_000, 1, Some("rate limited"))
    );
    // The claim counted the attempt; deferring undoes exactly that, so a job deferred forever
    // never runs out of attempts.
    let mut job = running();
    for _ in 0..10 {
        job.attempts += 1;
        let defer = JobFinish::Defer {
            at_ms: NOW,
            error: "rate limited".into(),
        };
        job = JobSnapshot {
            state: JobState::Running,
            lease_owner: Some("w1".into()),
            ..requeued(finished(&job, defer))
        };
    }
    assert_eq!(job.attempts, 2);
}

#[test]
fn giving_an_attempt_back_stops_at_zero() {
    let never_counted = JobSnapshot {
        attempts: 0,
        ..running()
    };
    assert_eq!(
        requeued(finished(&never_counted, JobFinish::Release)).attempts,
        0
    );
}

#[test]
fn an_expired_lease_requeues_now_counting_the_attempt() {
    let row = requeued(transition(&running(), JobEvent::LeaseExpired, NOW));
    assert_eq!(
        row,
        JobSnapshot {
            state: JobState::Pending,
            run_at_ms: NOW,
            attempts: 2,
            last_error: Some(LEASE_EXPIRED.into()),
            lease_owner: None,
            lease_until_ms: None,
            updated_at_ms: NOW,
            ..running()
        }
    );
}

#[test]
fn an_expired_lease_with_no_attempts_left_is_dead() {
    for attempts in [3, 4] {
        let last = JobSnapshot {
            attempts,
            ..running()
        };
        let row = written(transition(&last, JobEvent::LeaseExpired, NOW));
        assert_eq!(
            row,
            JobSnapshot {
                state: JobState::Dead,
                last_error: Some(LEASE_EXPIRED.into()),
                lease_owner: None,
                lease_until_ms: None,
                updated_at_ms: NOW,
                finished_at_ms: Some(NOW),
                ..last
            }
        );
    }
}

#[test]
fn a_lease_holds_through_its_last_instant_and_only_on_running_jobs() {
    let job = running();
    assert_eq!(
        transition(&job, JobEvent::LeaseExpired, LEASE_END),
        Err(Refused::Unexpired)
    );
    assert!(transition(&job, JobEvent::LeaseExpired, LEASE_END + 1).is_ok());
    assert_eq!(reap(&job, LEASE_END), None);
    assert!(reap(&job, LEASE_END + 1).is_some());
    for state in [
        JobState::Pending,
        JobState::Done,
        JobState::Dead,
        JobState::Merged,
    ] {
        let job = JobSnapshot { state, ..running() };
        assert_eq!(
            transition(&job, JobEvent::LeaseExpired, NOW),
            Err(Refused::Unexpired)
        );
    }
}

fn dead_job() -> JobSnapshot {
    written(finished(
        &JobSnapshot {
            attempts: 3,
            ..running()
        },
        JobFinish::Dead {
            error: "gave up after 3 attempts: timeout".into(),
        },
    ))
}

#[test]
fn reviving_a_dead_job_resets_attempts_and_keeps_the_error() {
    let row = requeued(transition(&dead_job(), JobEvent::Revived, NOW + 5));
    assert_eq!(
        row,
        JobSnapshot {
            state: JobState::Pending,
            run_at_ms: NOW + 5,
            attempts: 0,
            last_error: Some("gave up after 3 attempts: timeout".into()),
            updated_at_ms: NOW + 5,
            finished_at_ms: None,
            ..dead_job()
        }
    );
}

#[test]
fn only_dead_jobs_are_revived() {
    for state in [
        JobState::Pending,
        JobState::Running,
        JobState::Done,
        JobState::Merged,
    ] {
        let job = JobSnapshot { state, ..running() };
        assert_eq!(
            transition(&job, JobEvent::Revived, NOW),
            Err(Refused::NotDead(state))
        );
    }
}

#[test]
fn a_requeue_merges_into_the_pending_job_of_its_key() {
    let retry = JobFinish::Retry {
        at_ms: NOW + 4_000,
        error: "timeout".into(),
    };
    let placement = placed(finished(&running(), retry).unwrap(), Some(pending()));
    assert_eq!(placement.merged_into(), Some(JobId(9)));
    assert_eq!(
        placement,
        Placement::Merged {
            job: JobSnapshot {
                state: JobState::Merged,
                last_error: Some("merged into job 9".into()),
                lease_owner: None,
                lease_until_ms: None,
                updated_at_ms: NOW,
                finished_at_ms: Some(NOW),
                ..running()
            },
            // The later run time (the pending job's debounce), the higher attempt count, the
            // newer error.
            into: JobSnapshot {
                attempts: 2,
                last_error: Some("timeout".into()),
                updated_at_ms: NOW,
                ..pending()
            },
        }
    );
}

#[test]
fn a_merge_never_lowers_the_pending_jobs_attempts_or_run_time_nor_drops_its_error() {
    let busy = JobSnapshot {
        run_at_ms: NOW - 1,
        attempts: 4,
        last_error: Some("older failure".into()),
        ..pending()
    };
    let retry_late = JobFinish::Retry {
        at_ms: NOW + 50_000,
        error: "timeout".into(),
    };
    let Placement::Merged { into, .. } = placed(
        finished(&running(), retry_late).unwrap(),
        Some(busy.clone()),
    ) else {
        panic!("expected a merge");
    };
    assert_eq!(
        (into.run_at_ms, into.attempts),
        (NOW + 50_000, 4),
        "the later run time wins, and the higher attempt count"
    );
    // A release carries no error: the pending job keeps its own.
    let Placement::Merged { job, into } = placed(
        finished(&running(), JobFinish::Release).unwrap(),
        Some(busy),
    ) else {
        panic!("expected a merge");
    };
    assert_eq!(
        job.attempts, 1,
        "the merged job records its attempts, given back"
    );
    assert_eq!(
        (into.run_at_ms, into.attempts, into.last_error.as_deref()),
        (NOW, 4, Some("older failure"))
    );
}

#[test]
fn a_revived_job_merges_without_touching_the_pending_jobs_budget() {
    let busy = JobSnapshot {
        attempts: 1,
        ..pending()
    };
    let placement = placed(
        transition(&dead_job(), JobEvent::Revived, NOW).unwrap(),
        Some(busy.clone()),
    );
    let Placement::Merged { job, into } = placement else {
        panic!("expected a merge");
    };
    assert_eq!(
        (job.state, job.attempts, job.finished_at_ms),
        (JobState::Merged, 0, Some(NOW))
    );
    assert_eq!(
        into,
        JobSnapshot {
            updated_at_ms: NOW,
            ..busy
        }
    );
}

#[test]
fn the_job_itself_is_not_another_pending_job() {
    let row = match placed(
        finished(&running(), JobFinish::Release).unwrap(),
        Some(running()),
    ) {
        Placement::Pending(row) => row,
        other => panic!("expected pending again, got {other:?}"),
    };
    assert_eq!(row.state, JobState::Pending);
}

fn route(period_ms: i64, max_wait_ms: i64) -> Route {
    Route {
        handler: "triage".into(),
        subject: "t1".into(),
        period_ms,
        max_wait_ms,
        max_attempts: 3,
    }
}

#[test]
fn a_new_job_runs_a_period_later_with_its_deadline_max_wait_after_it() {
    assert_eq!(
        NewJob::for_route(&route(5_000, 60_000), T0),
        NewJob {
            run_at_ms: T0 + 5_000,
            first_seen_ms: T0,
            deadline_at_ms: T0 + 60_000,
        }
    );
    // A max_wait shorter than the period would put the deadline before the first run.
    assert_eq!(
        NewJob::for_route(&route(5_000, 1_000), T0).deadline_at_ms,
        T0 + 5_000
    );
}

#[test]
fn debounce_pushes_the_run_a_period_past_each_event_up_to_the_deadline() {
    let NewJob {
        run_at_ms,
        deadline_at_ms,
        ..
    } = NewJob::for_route(&route(5_000, 12_000), T0);
    // The event that created the job leaves it as created.
    assert_eq!(debounce(run_at_ms, deadline_at_ms, T0, 5_000), run_at_ms);
    let run_at = debounce(run_at_ms, deadline_at_ms, T0 + 4_000, 5_000);
    assert_eq!(run_at, T0 + 9_000);
    let run_at = debounce(run_at, deadline_at_ms, T0 + 8_000, 5_000);
    assert_eq!(run_at, T0 + 12_000, "held at the deadline");
    assert_eq!(
        debounce(run_at, deadline_at_ms, T0 + 11_000, 5_000),
        T0 + 12_000
    );
    // An event with a shorter period never pulls the run earlier.
    assert_eq!(
        debounce(T0 + 9_000, deadline_at_ms, T0 + 1_000, 0),
        T0 + 9_000
    );
    // A run already past the deadline (a retry merged in) stays where it is.
    assert_eq!(
        debounce(T0 + 30_000, deadline_at_ms, T0 + 1_000, 5_000),
        T0 + 30_000
    );
}
