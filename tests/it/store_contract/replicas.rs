//! PostgreSQL only: several replicas (store instances with their own pools) on one database.
//! SQLite has one writer per file, so these races cannot happen there.

use super::*;
use hookwise::store::{JobFilter, JobFinish, JobState};
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const ACCOUNTS: usize = 50;
const JOBS_PER_ACCOUNT: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_claim_every_job_once_and_never_two_of_one_account() {
    in_schema(
        concat!(
            module_path!(),
            "::two_replicas_claim_every_job_once_and_never_two_of_one_account"
        ),
        |schema| async move {
            let replicas = [schema.open_store().await, schema.open_store().await];
            let mut all = Vec::new();
            for k in 0..JOBS_PER_ACCOUNT {
                let batch = (0..ACCOUNTS)
                    .map(|a| {
                        let id = format!("a{a}-{k}");
                        // Interleaved due times, so the oldest jobs span many accounts.
                        let due = T0 + (k * ACCOUNTS + a) as i64;
                        let subject = format!("t{k}");
                        routed(
                            event(&id, &format!("acct{a:02}"), &subject, due),
                            vec![immediate("triage", &subject, 3)],
                        )
                    })
                    .collect();
                for outcome in replicas[0].ingest(batch).await.unwrap() {
                    all.extend(outcome.jobs);
                }
            }
            assert_eq!(all.len(), ACCOUNTS * JOBS_PER_ACCOUNT);

            // Accounts with a run in progress, as the workers see it: marked after a claim
            // returns and cleared before the finish is sent, so the window is inside the
            // job's real running time and an overlap here is an overlap in the store.
            let running: Arc<Mutex<HashSet<String>>> = Arc::default();
            let claimed: Arc<Mutex<Vec<(usize, i64)>>> = Arc::default();
            let mut workers = tokio::task::JoinSet::new();
            for (r, store) in replicas.iter().enumerate() {
                for w in 0..3 {
                    let (store, running, claimed) =
                        (store.clone(), running.clone(), claimed.clone());
                    workers.spawn(async move {
                        let owner = format!("replica{r}-worker{w}");
                        let started = Instant::now();
                        let now = T0 + 1_000_000;
                        loop {
                            let jobs = store.claim_jobs(&owner, now, 4, 600_000).await.unwrap();
                            if jobs.is_empty() {
                                if claimed.lock().unwrap().len() == ACCOUNTS * JOBS_PER_ACCOUNT {
                                    return;
                                }
                                assert!(started.elapsed() < Duration::from_secs(60), "stuck");
                                tokio::time::sleep(Duration::from_millis(1)).await;
                                continue;
                            }
                            for j in &jobs {
                                assert!(
                                    running.lock().unwrap().insert(j.job.account.clone()),
                                    "two running jobs of {}",
                                    j.job.account
                                );
                                claimed.lock().unwrap().push((r, j.job.id.0));
                            }
                            // The "run": give the other workers a turn to claim meanwhile.
                            tokio::task::yield_now().await;
                            for j in jobs {
                                running.lock().unwrap().remove(&j.job.account);
                                let done = store
                                    .finish_job(j.job.id, &owner, now, JobFinish::Done)
                                    .await
                                    .unwrap();
                                assert!(done, "{owner} lost job {}", j.job.id);
                            }
                        }
                    });
                }
            }
            while let Some(done) = workers.join_next().await {
                done.unwrap();
            }

            let claimed = claimed.lock().unwrap().clone();
            let mut per_replica = [0; 2];
            let mut seen = HashMap::new();
            for (r, id) in &claimed {
                per_replica[*r] += 1;
                *seen.entry(*id).or_insert(0) += 1;
            }
            assert!(seen.values().all(|&n| n == 1), "a job was claimed twice");
            let mut expected: Vec<i64> = all.iter().map(|j| j.0).collect();
            let mut got: Vec<i64> = seen.into_keys().collect();
            expected.sort();
            got.sort();
            assert_eq!(got, expected, "every job claimed exactly once");
            let done = replicas[1]
                .list_jobs(&JobFilter {
                    state: Some(JobState::Done),
                    limit: 1_000,
                    ..JobFilter::default()
                })
                .await
                .unwrap();
            assert_eq!(done.len(), ACCOUNTS * JOBS_PER_ACCOUNT);
            let _ = writeln!(
                std::io::stderr(),
                "claims per replica: {per_replica:?} (of {})",
                claimed.len()
            );
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_ingesting_the_same_events_store_each_once() {
    in_schema(
        concat!(
            module_path!(),
            "::two_replicas_ingesting_the_same_events_store_each_once"
        ),
        |schema| async move {
            let (a, b) = (schema.open_store().await, schema.open_store().await);
            let batch: Vec<IngestItem> = (0..100)
                .map(|n| {
                    let subject = format!("t{}", n % 3);
                    routed(
                        event(&format!("e{n}"), &format!("acct{}", n % 10), &subject, T0),
                        vec![route("triage", &subject)],
                    )
                })
                .collect();
            // Opposite orders: locking rows in batch order, the two transactions would deadlock.
            let reversed: Vec<IngestItem> = batch.iter().rev().cloned().collect();
            let (from_a, from_b) = tokio::join!(a.ingest(batch), b.ingest(reversed));
            let (from_a, mut from_b) = (from_a.unwrap(), from_b.unwrap());
            from_b.reverse();
            for (x, y) in from_a.iter().zip(&from_b) {
                assert_eq!(x.event_id, y.event_id);
                assert!(
                    x.duplicate != y.duplicate,
                    "stored exactly once: {x:?} {y:?}"
                );
                let stored = if x.duplicate { y } else { x };
                assert_eq!(stored.jobs.len(), 1);
            }
            // 10 accounts × 3 subjects share 30 keys: 30 jobs holding the 100 events.
            let jobs = a
                .list_jobs(&JobFilter {
                    limit: 1_000,
                    ..JobFilter::default()
                })
                .await
                .unwrap();
            assert_eq!(jobs.len(), 30);
            assert_eq!(jobs.iter().map(|j| j.events).sum::<i64>(), 100);
        },
    )
    .await;
}

#[tokio::test]
async fn a_claim_that_loses_an_account_to_a_concurrent_claim_skips_it() {
    in_schema(
        concat!(
            module_path!(),
            "::a_claim_that_loses_an_account_to_a_concurrent_claim_skips_it"
        ),
        |schema| async move {
            // Named, so the test can see this store's connection wait in pg_stat_activity.
            let app = format!("{}_claim", schema.name);
            let store = hookwise::store::open(&schema.url(&format!("application_name={app}")))
                .await
                .unwrap();
            store.migrate().await.unwrap();
            let a1 = due_job(&store, "a1", "acme", "t1", T0).await;
            let a2 = due_job(&store, "a2", "acme", "t2", T0 + 1).await;
            let b1 = due_job(&store, "b1", "bolt", "t1", T0 + 2).await;

            // Another replica has leased acme's second job and not committed yet: the claim
            // below cannot see it, picks a1, and its UPDATE waits on the unique index.
            let mut other = schema.connect().await;
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "BEGIN; UPDATE jobs SET state = 'running', attempts = 1, lease_owner = 'other',
                     lease_until = {} WHERE id = {}",
                T0 + 60_000,
                a2.0
            )))
            .execute(&mut other)
            .await
            .unwrap();
            let claim = tokio::spawn({
                let store = store.clone();
                async move { store.claim_jobs("w1", T0 + 5, 10, 30_000).await }
            });
            let mut watch = schema.connect().await;
            let started = Instant::now();
            loop {
                let waiting: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM pg_stat_activity
                     WHERE application_name = $1 AND wait_event_type = 'Lock'",
                )
                .bind(&app)
                .fetch_one(&mut watch)
                .await
                .unwrap();
                if waiting > 0 {
                    break;
                }
                assert!(
                    started.elapsed() < Duration::from_secs(10),
                    "claim never waited"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            sqlx::raw_sql("COMMIT").execute(&mut other).await.unwrap();

            let claimed = claim.await.unwrap().expect("losing a race is not an error");
            assert_eq!(ids(&claimed), [b1]);
            assert_eq!(job(&store, a1).await.job.state, JobState::Pending);
            let a2 = job(&store, a2).await.job;
            assert_eq!(
                (a2.state, a2.lease_owner.as_deref()),
                (JobState::Running, Some("other"))
            );
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_starting_at_once_migrate_once() {
    in_schema(
        concat!(
            module_path!(),
            "::three_replicas_starting_at_once_migrate_once"
        ),
        |schema| async move {
            // Each open also creates the schema if missing: that races too.
            let (x, y, z) = tokio::join!(
                schema.open_store(),
                schema.open_store(),
                schema.open_store()
            );
            for store in [&x, &y, &z] {
                store.ping().await.unwrap();
            }
            let mut conn = schema.connect().await;
            let versions: Vec<i64> =
                sqlx::query_scalar("SELECT version FROM schema_migrations ORDER BY version")
                    .fetch_all(&mut conn)
                    .await
                    .unwrap();
            assert_eq!(versions, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
        },
    )
    .await;
}

/// The rate governor's call slots are shared: replicas reserving for one budget at the same
/// instant get distinct slots, each `interval` after the previous, and a journal key begun by
/// both replicas at once is `Fresh` for exactly one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_share_call_slots_and_begin_a_write_once() {
    in_schema(
        concat!(
            module_path!(),
            "::replicas_share_call_slots_and_begin_a_write_once"
        ),
        |schema| async move {
            let replicas = [schema.open_store().await, schema.open_store().await];
            let mut tasks = tokio::task::JoinSet::new();
            for store in &replicas {
                for _ in 0..20 {
                    let store = store.clone();
                    tasks.spawn(async move {
                        store
                            .reserve_call("acme", "post", T0, 200, 60_000)
                            .await
                            .unwrap()
                    });
                }
            }
            let mut waits = Vec::new();
            while let Some(r) = tasks.join_next().await {
                let (wait, reserved) = r.unwrap();
                assert!(reserved);
                waits.push(wait);
            }
            waits.sort_unstable();
            let expected: Vec<i64> = (0..40).map(|i| i * 200).collect();
            assert_eq!(waits, expected, "40 distinct slots, 200 ms apart");

            let begins = futures::future::join_all(replicas.iter().map(|s| {
                s.begin_action("job-1/step-0/call-0", JobId(1), "acme", "POST /x {}", T0)
            }))
            .await;
            let fresh = begins
                .iter()
                .filter(|b| matches!(b, Ok(hookwise::store::ActionBegin::Fresh)))
                .count();
            assert_eq!(fresh, 1, "{begins:?}");
        },
    )
    .await;
}

/// The LLM breaker is one row for every replica: failures reported by both at once are all
/// counted (none lost to a race), and of many claimants racing for the half-open probe on two
/// replicas exactly one gets it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_count_breaker_failures_together_and_one_takes_the_probe() {
    use hookwise::store::{BreakerChange, BreakerEvent, BreakerPolicy};
    in_schema(
        concat!(
            module_path!(),
            "::replicas_count_breaker_failures_together_and_one_takes_the_probe"
        ),
        |schema| async move {
            const PROVIDER: &str = "anthropic https://api.anthropic.com";
            let replicas = [schema.open_store().await, schema.open_store().await];
            let policy = BreakerPolicy {
                threshold: 20,
                cool_down_ms: 60_000,
                max_cool_down_ms: 600_000,
            };
            let mut tasks = tokio::task::JoinSet::new();
            for store in &replicas {
                for _ in 0..10 {
                    let store = store.clone();
                    tasks.spawn(async move {
                        let failure = BreakerEvent::Failure {
                            error: "provider unavailable: 529".into(),
                            policy,
                        };
                        store
                            .llm_breaker_step(PROVIDER, failure, T0)
                            .await
                            .unwrap()
                            .1
                    });
                }
            }
            let changes = tasks.join_all().await;
            let opened = changes
                .iter()
                .filter(|c| matches!(c, BreakerChange::Opened { .. }))
                .count();
            assert_eq!(opened, 1, "the 20th failure opens it, once: {changes:?}");
            let row = replicas[1].llm_breaker(PROVIDER).await.unwrap().unwrap();
            assert_eq!(row.failures, 20);
            assert_eq!(row.open_until_ms, Some(T0 + 60_000));

            let half = T0 + 60_000;
            let mut tasks = tokio::task::JoinSet::new();
            for (r, store) in replicas.iter().enumerate() {
                for n in 0..10 {
                    let store = store.clone();
                    tasks.spawn(async move {
                        let take = BreakerEvent::TakeProbe {
                            owner: format!("replica-{r}-worker-{n}"),
                            until_ms: half + 30_000,
                        };
                        store
                            .llm_breaker_step(PROVIDER, take, half)
                            .await
                            .unwrap()
                            .1
                    });
                }
            }
            let taken = tasks
                .join_all()
                .await
                .into_iter()
                .filter(|c| *c == BreakerChange::ProbeTaken)
                .count();
            assert_eq!(taken, 1, "exactly one probe");
        },
    )
    .await;
}
