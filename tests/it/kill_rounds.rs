//! Proof under SIGKILL: the real binary killed at random moments, round after round, while
//! events arrive and jobs make real writes to the fake HappyFox and Planhat. On SQLite one
//! process is killed and started again on the same file; on PostgreSQL two replicas share a
//! schema, a random one is killed each round, and every other round the replicas' database
//! connections are terminated under them (`pg_terminate_backend`, mid-transaction when it
//! lands there).
//!
//! After the rounds the survivors finish the backlog, and the invariants are checked:
//! - every acknowledged event is stored exactly once;
//! - every job is done (or merged into one), or dead with a reason;
//! - no write reached an upstream twice (by content: each job writes text naming itself), and
//!   every write the journal recorded as answered is at the upstream;
//! - no two runs of one account were ever in flight together (seen by the fake model);
//! - no process logged a panic.
//!
//! `cargo test` runs 3 rounds per store; `HOOKWISE_KILL_ROUNDS=100 cargo test --test it
//! kill_rounds -- --test-threads 1` is the long form (README, Development).

use crate::store_contract::TestSchema;
use crate::support::fake_happyfox::FakeHappyfox;
use crate::support::fake_planhat::{self, FakePlanhat};
use crate::support::process::*;
use crate::support::*;
use hookwise::store::{JobFilter, JobRecord, JobState, SharedStore};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Planhat's Northwind Logistics in `testdata/planhat/tenant.json`: every task is filed there.
const NORTHWIND: &str = "64b7e2f09a1c3d5e7f802a11";
/// HappyFox tickets the notes go to, one per subject.
const FIRST_TICKET: u64 = 5000;
const SUBJECTS: u64 = 6;
const ACCOUNTS: [&str; 4] = ["hf-1", "hf-2", "ph-1", "ph-2"];
/// Events per round: some repeat a subject within the debounce period (one job), some are
/// delivered twice (one event).
const EVENTS_PER_ROUND: usize = 16;
/// How long the fake model holds each answer, so kills land inside runs.
const HOLD: Duration = Duration::from_millis(120);

fn rounds() -> usize {
    std::env::var("HOOKWISE_KILL_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
}

/// What the fake model saw: runs in flight per account, the most ever at once, answers given.
#[derive(Default)]
struct Observed {
    in_flight: HashMap<String, u32>,
    max_in_flight: u32,
    answers: u64,
}

/// Counts a request out of `in_flight` however it ends (a killed process drops its connection,
/// and with it this request's future).
struct InFlight {
    observed: Arc<Mutex<Observed>>,
    account: String,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(n) = self
            .observed
            .lock()
            .unwrap()
            .in_flight
            .get_mut(&self.account)
        {
            *n -= 1;
        }
    }
}

/// A model that decides from the conversation alone, so a restarted process gets the same
/// answers: first one write for the job (a HappyFox note or a Planhat task, by account), then,
/// once a tool result (or refusal) is in the conversation, a final answer.
async fn stateless_model() -> (String, Arc<Mutex<Observed>>) {
    let observed = Arc::new(Mutex::new(Observed::default()));
    let state = observed.clone();
    let answer = move |axum::Json(body): axum::Json<Value>| {
        let observed = state.clone();
        async move {
            let messages = body["messages"].as_array().cloned().unwrap_or_default();
            // "Job 12 for handler work on account hf-1, subject 5003.": words 1, 7 and 9.
            let context = messages
                .iter()
                .filter_map(|m| m["content"].as_str())
                .find(|c| c.starts_with("Job "))
                .unwrap_or_default()
                .to_string();
            let words: Vec<&str> = context.split_whitespace().collect();
            let job = words.get(1).copied().unwrap_or("?").to_string();
            let account = words
                .get(7)
                .unwrap_or(&"?")
                .trim_end_matches(',')
                .to_string();
            let subject = words
                .get(9)
                .unwrap_or(&"?")
                .trim_end_matches('.')
                .to_string();
            {
                let mut o = observed.lock().unwrap();
                let n = o.in_flight.entry(account.clone()).or_default();
                *n += 1;
                let n = *n;
                o.max_in_flight = o.max_in_flight.max(n);
            }
            let _in_flight = InFlight {
                observed: observed.clone(),
                account: account.clone(),
            };
            tokio::time::sleep(HOLD).await;
            let answered = messages.iter().any(|m| m["role"] == "tool");
            let message = if answered {
                json!({"role": "assistant", "content": "Done."})
            } else {
                let (name, arguments) = if account.starts_with("hf-") {
                    (
                        "happyfox__add_private_note",
                        json!({"ticket_id": subject.parse::<u64>().unwrap_or(0), "html": write_text(&job)}),
                    )
                } else {
                    (
                        "planhat__create_task",
                        json!({"mainType": "task", "companyId": NORTHWIND, "action": write_text(&job)}),
                    )
                };
                json!({"role": "assistant", "content": null, "tool_calls": [{
                    "id": "c1", "type": "function",
                    "function": {"name": name, "arguments": arguments.to_string()}
                }]})
            };
            observed.lock().unwrap().answers += 1;
            axum::Json(json!({
                "id": "chatcmpl-kill", "object": "chat.completion", "created": 1, "model": "fake",
                "choices": [{"index": 0, "message": message, "finish_reason": if answered { "stop" } else { "tool_calls" }}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
            }))
        }
    };
    let app = axum::Router::new().route("/v1/chat/completions", axum::routing::post(answer));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, observed)
}

/// The text job `job` writes upstream: unique per job, the same on every attempt of it.
fn write_text(job: &str) -> String {
    format!("Checked by job {job}.")
}

/// The fakes and the configuration every process of one test shares.
struct World {
    dir: tempfile::TempDir,
    config: PathBuf,
    happyfox: FakeHappyfox,
    planhat: FakePlanhat,
    observed: Arc<Mutex<Observed>>,
}

async fn world(store_url: &str) -> World {
    hookwise::init_tls();
    let (llm_url, observed) = stateless_model().await;
    let happyfox = FakeHappyfox::start().await;
    let template: Value = serde_json::from_slice(
        &std::fs::read(repo_path("fixtures/happyfox/ticket_created.json")).unwrap(),
    )
    .unwrap();
    for id in FIRST_TICKET..FIRST_TICKET + SUBJECTS {
        let mut ticket = template.clone();
        ticket["id"] = json!(id);
        happyfox.put_ticket(ticket);
    }
    let planhat = FakePlanhat::start().await;
    let dir = tempfile::tempdir().unwrap();
    let handlers = dir.path().join("handlers");
    std::fs::create_dir(&handlers).unwrap();
    std::fs::write(
        handlers.join("work.toml"),
        r#"name = "work"
on = ["multi.work"]
mode = "live"
max_attempts = 6
[debounce]
period = "300ms"
max_wait = "3s"
[agent]
prompt = "Record that the ticket or the company was checked."
tools = ["happyfox.add_private_note", "planhat.create_task"]
max_steps = 4
deadline = "20s"
"#,
    )
    .unwrap();
    let mut accounts = String::new();
    for account in ACCOUNTS {
        if account.starts_with("hf-") {
            accounts.push_str(&happyfox.account_toml(account, Some(7), ""));
        } else {
            accounts.push_str(&format!(
                "[accounts.{account}]\nconnector = \"planhat\"\nbase_url = \"{}\"\ntoken = \"{}\"\n\n",
                planhat.url,
                fake_planhat::TOKEN
            ));
        }
    }
    let extra = format!(
        "[scheduler]\npoll_interval = \"50ms\"\nlease = \"2s\"\nretry_base = \"200ms\"\n\n\
         [llm]\nprovider = \"openai\"\nbase_url = \"{llm_url}\"\napi_key = \"k\"\nmodel = \"fake\"\nmax_retries = 2\n\n{accounts}"
    );
    let config = dir.path().join("hookwise.toml");
    std::fs::write(&config, config_text(store_url, &handlers, &extra)).unwrap();
    World {
        dir,
        config,
        happyfox,
        planhat,
        observed,
    }
}

impl World {
    fn log(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.log"))
    }

    /// Every log line that reports a panic, from every process so far.
    fn panics(&self) -> Vec<String> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(self.dir.path()).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "log") {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                found.extend(
                    text.lines()
                        .filter(|l| l.contains("panicked"))
                        .map(|l| format!("{}: {l}", path.display())),
                );
            }
        }
        found
    }
}

/// A running `hookwise serve` that can be killed and started again on its port.
struct Replica {
    name: String,
    port: u16,
    proc: Option<Proc>,
    starts: usize,
}

impl Replica {
    fn new(name: &str) -> Self {
        Self {
            name: name.into(),
            port: free_port(),
            proc: None,
            starts: 0,
        }
    }

    async fn start(&mut self, world: &World, env: &[(&str, &str)]) {
        let mut all = vec![("HOOKWISE_LOG", "warn")];
        all.extend_from_slice(env);
        self.proc = Some(spawn_hookwise_with(
            &world.config,
            self.port,
            &world.log(&format!("{}-{}", self.name, self.starts)),
            &all,
        ));
        self.starts += 1;
        let client = reqwest::Client::new();
        wait_ready(&client, &format!("http://127.0.0.1:{}/readyz", self.port)).await;
    }

    fn kill(&mut self) {
        if let Some(mut proc) = self.proc.take() {
            proc.0.kill().unwrap();
            proc.0.wait().unwrap();
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/webhooks/multi", self.port)
    }
}

/// The events of round `round`: bodies distinct across rounds, over every account; every
/// fourth repeats the previous event's account and subject (folded into its job if that has
/// not started), every fifth is delivered twice (one event).
fn round_events(round: usize) -> Vec<(String, usize)> {
    (0..EVENTS_PER_ROUND)
        .map(|i| {
            let key = if i % 4 == 3 { i - 1 } else { i };
            let account = ACCOUNTS[key % ACCOUNTS.len()];
            let subject = FIRST_TICKET + (round + key) as u64 % SUBJECTS;
            let body =
                json!({"account": account, "subject": subject.to_string(), "round": round, "n": i})
                    .to_string();
            (body, if i % 5 == 0 { 2 } else { 1 })
        })
        .collect()
}

/// Delivers like a sender: every copy until some replica acknowledges it (2xx), trying the
/// replicas in turn and waiting between attempts (one may be down). Returns the bodies acked.
async fn deliver_all(urls: Vec<String>, events: Vec<(String, usize)>) -> Vec<String> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let sends = events
        .into_iter()
        .enumerate()
        .flat_map(|(i, (body, copies))| (0..copies).map(move |c| (i + c, body.clone())));
    let tasks = sends.map(|(i, body)| {
        let (client, urls) = (client.clone(), urls.clone());
        async move {
            let start = Instant::now();
            let mut attempt = i;
            loop {
                let sent = client
                    .post(&urls[attempt % urls.len()])
                    .header("content-type", "application/json")
                    .header("x-hookwise-token", "multi-token")
                    .body(body.clone())
                    .send()
                    .await;
                if let Ok(r) = sent
                    && r.status().is_success()
                {
                    return body;
                }
                assert!(
                    start.elapsed() < Duration::from_secs(60),
                    "never acknowledged: {body}"
                );
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    futures::future::join_all(tasks).await
}

/// Waits (bounded) until no job is pending or running, and returns every job.
async fn settled(store: &SharedStore, world: &World) -> Vec<JobRecord> {
    let start = Instant::now();
    loop {
        let jobs = store
            .list_jobs(&JobFilter {
                limit: 10_000,
                ..Default::default()
            })
            .await
            .unwrap();
        let open = jobs
            .iter()
            .filter(|j| matches!(j.state, JobState::Pending | JobState::Running))
            .count();
        if open == 0 {
            return jobs;
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "{open} jobs still open after 90 s: {:?}\npanics: {:?}",
            jobs.iter()
                .filter(|j| matches!(j.state, JobState::Pending | JobState::Running))
                .map(|j| (j.id, j.state, j.attempts, j.last_error.clone()))
                .collect::<Vec<_>>(),
            world.panics()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The invariants of the module docs, over what the store and the fakes hold now.
async fn check_invariants(
    store: &SharedStore,
    world: &World,
    acked: &HashSet<String>,
) -> Vec<JobRecord> {
    // Every acknowledged event stored once (events only come from this test).
    let events = store
        .list_events(&hookwise::store::EventFilter {
            limit: 10_000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        events.len(),
        acked.len(),
        "each acknowledged event stored once"
    );
    let stored: HashSet<Value> = events
        .iter()
        .map(|e| serde_json::from_str(&e.payload).unwrap())
        .collect();
    for body in acked {
        let body: Value = serde_json::from_str(body).unwrap();
        assert!(stored.contains(&body), "acknowledged, not stored: {body}");
    }

    let jobs = settled(store, world).await;
    let mut answered_writes = 0;
    for job in &jobs {
        match job.state {
            // Merged: put back to pending while its key had a pending job, and folded into it.
            JobState::Done | JobState::Merged => {}
            JobState::Dead => assert!(
                job.last_error.as_deref().is_some_and(|e| !e.is_empty()),
                "job {} dead without a reason",
                job.id
            ),
            other => panic!("job {} ended {other:?}", job.id),
        }
        // The journal's answered writes are at the upstream, once.
        let text = write_text(&job.id.to_string());
        let at_upstream = upstream_writes(world)
            .iter()
            .filter(|w| w.contains(&text))
            .count();
        assert!(at_upstream <= 1, "job {} wrote {at_upstream} times", job.id);
        let actions = store.list_actions(job.id).await.unwrap();
        assert!(actions.len() <= 1, "one write per job: {actions:?}");
        if actions.iter().any(|a| a.state == "done") {
            answered_writes += 1;
            assert_eq!(
                at_upstream, 1,
                "job {}'s answered write is upstream",
                job.id
            );
        }
    }
    // No write upstream twice, whoever sent it; and none that no job journaled.
    let writes = upstream_writes(world);
    let distinct: HashSet<&String> = writes.iter().collect();
    assert_eq!(
        distinct.len(),
        writes.len(),
        "a write reached an upstream twice"
    );
    assert!(writes.len() >= answered_writes);
    assert_eq!(
        world.observed.lock().unwrap().max_in_flight,
        1,
        "two runs of one account were in flight together"
    );
    let panics = world.panics();
    assert!(panics.is_empty(), "{panics:#?}");
    jobs
}

/// The content of every write either fake received: HappyFox notes and Planhat tasks.
fn upstream_writes(world: &World) -> Vec<String> {
    let notes = world
        .happyfox
        .writes()
        .into_iter()
        .filter(|w| w.path.ends_with("/staff_pvtnote/"))
        .map(|w| format!("{} {}", w.path, w.body["html"]));
    let tasks = world
        .planhat
        .writes()
        .into_iter()
        .filter(|w| w.path.starts_with("/tasks"))
        .map(|w| format!("task {}", w.body["action"]));
    notes.chain(tasks).collect()
}

/// Waits (bounded) until some job is running, then a random while more (under 400 ms): the
/// moment a kill lands inside a run (reading context, waiting for the model, or writing).
/// Returns the lease owners of the jobs running when it waited long enough.
async fn inside_a_run(store: &SharedStore) -> Vec<String> {
    let start = Instant::now();
    loop {
        let running = store
            .list_jobs(&JobFilter {
                state: Some(JobState::Running),
                limit: 10_000,
                ..Default::default()
            })
            .await
            .unwrap();
        if !running.is_empty() {
            tokio::time::sleep(Duration::from_millis(fastrand::u64(0..400))).await;
            return running.into_iter().filter_map(|j| j.lease_owner).collect();
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no job started running"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Figures of one test, printed and checked: the kills must have cut runs short.
fn report(store_name: &str, jobs: &[JobRecord], acked: usize, world: &World, extra: &str) {
    let rerun = jobs.iter().filter(|j| j.attempts > 1).count();
    let dead = jobs.iter().filter(|j| j.state == JobState::Dead).count();
    eprintln!(
        "kill_rounds {store_name}: {} rounds, {acked} events acked, {} jobs ({rerun} run again after a kill, {dead} dead), {} model answers, {} writes upstream{extra}",
        rounds(),
        jobs.len(),
        world.observed.lock().unwrap().answers,
        upstream_writes(world).len()
    );
    assert!(rerun > 0, "no kill landed inside a run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_killed_at_random_moments_loses_nothing_and_writes_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hookwise.db");
    let url = format!("sqlite://{}", db.display());
    let world = world(&url).await;
    fastrand::seed(31);
    let mut server = Replica::new("serve");
    server.start(&world, &[]).await;
    let store = hookwise::store::open(&url).await.unwrap();
    let mut acked = HashSet::new();
    for round in 0..rounds() {
        let deliveries = tokio::spawn(deliver_all(vec![server.url()], round_events(round)));
        inside_a_run(&store).await;
        server.kill();
        server.start(&world, &[]).await;
        acked.extend(deliveries.await.unwrap());
    }
    let jobs = check_invariants(&store, &world, &acked).await;
    report("sqlite", &jobs, acked.len(), &world, "");
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_replicas_killed_and_cut_off_lose_nothing_and_write_once() {
    let test = "kill_rounds::postgres_replicas_killed_and_cut_off";
    let Some(schema) = TestSchema::create(test).await else {
        return;
    };
    // Named connections, so only this test's are terminated.
    let app_name = format!("kill_{}", schema.name);
    let world = world(&schema.url(&format!("application_name={app_name}"))).await;
    let store = schema.open_store().await;
    fastrand::seed(37);
    let mut replicas = [Replica::new("a"), Replica::new("b")];
    for r in &mut replicas {
        r.start(&world, &[]).await;
    }
    let mut acked = HashSet::new();
    let mut terminated = 0;
    for round in 0..rounds() {
        let urls = replicas.iter().map(Replica::url).collect();
        let deliveries = tokio::spawn(deliver_all(urls, round_events(round)));
        if round % 2 == 1 {
            inside_a_run(&store).await;
            terminated += terminate_backends(&schema, &app_name).await;
        }
        // The replica holding a lease, if one still does after the wait.
        let owners = inside_a_run(&store).await;
        let victim = replicas
            .iter()
            .position(|r| {
                let pid = r.proc.as_ref().map(Proc::pid).unwrap_or(0);
                owners
                    .iter()
                    .any(|o| o.starts_with(&format!("hookwise-{pid}-")))
            })
            .unwrap_or_else(|| fastrand::usize(..replicas.len()));
        replicas[victim].kill();
        replicas[victim].start(&world, &[]).await;
        acked.extend(deliveries.await.unwrap());
    }
    let jobs = check_invariants(&store, &world, &acked).await;
    report(
        "postgres",
        &jobs,
        acked.len(),
        &world,
        &format!(", {terminated} connections terminated"),
    );
    drop(replicas);
    schema.drop().await;
}

/// Terminates every connection the replicas hold (named `app_name`), wherever it is: idle, in a
/// statement or inside a transaction. Returns how many were cut.
async fn terminate_backends(schema: &TestSchema, app_name: &str) -> i64 {
    let mut conn = schema.connect().await;
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name = $1 AND pid <> pg_backend_pid()) t",
    )
    .bind(app_name)
    .fetch_one(&mut conn)
    .await
    .unwrap()
}
