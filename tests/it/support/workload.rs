//! A workload against the real binary, shared by the suites that try to break it (kill rounds,
//! the soak): a stateless fake model that has each job write once upstream (a HappyFox private
//! note or a Planhat task, by account, with text naming the job), the fakes it writes to, the
//! configuration, processes that can be killed and started again, a sender that retries until
//! acknowledged, and the invariants checked afterwards.

use super::fake_happyfox::{FakeHappyfox, Limits};
use super::fake_planhat::{self, FakePlanhat};
use super::inflight::run_of;
use super::invariants::{self, Figures};
use super::process::*;
use super::*;
use hookwise::store::{JobFilter, JobRecord, JobState, SharedStore};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Planhat's Northwind Logistics in `testdata/planhat/tenant.json`: every task is filed there.
pub const NORTHWIND: &str = "64b7e2f09a1c3d5e7f802a11";
/// HappyFox tickets the notes go to, one per subject.
pub const FIRST_TICKET: u64 = 5000;
pub const SUBJECTS: u64 = 6;
pub const ACCOUNTS: [&str; 4] = ["hf-1", "hf-2", "ph-1", "ph-2"];
/// How long the fake model holds each answer, so kills land inside runs.
pub const HOLD: Duration = Duration::from_millis(120);

/// What the fake model saw: runs in flight per account, the most ever at once, answers given.
#[derive(Default)]
pub struct Observed {
    in_flight: HashMap<String, u32>,
    pub max_in_flight: u32,
    pub answers: u64,
    /// Every request's run: (job, account, subject).
    pub requests: Vec<(i64, String, String)>,
}

/// Counts a request out of `in_flight` however it ends (a killed process drops its connection,
/// and with it this request's future).
pub struct InFlight {
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

/// Records a model request as in flight for its account (until the guard drops) and returns
/// the run it belongs to.
pub fn observe(observed: &Arc<Mutex<Observed>>, body: &Value) -> (InFlight, (i64, String, String)) {
    let run = run_of(body);
    let mut o = observed.lock().unwrap();
    let n = o.in_flight.entry(run.1.clone()).or_default();
    *n += 1;
    let n = *n;
    o.max_in_flight = o.max_in_flight.max(n);
    o.requests.push(run.clone());
    let guard = InFlight {
        observed: observed.clone(),
        account: run.1.clone(),
    };
    (guard, run)
}

/// A model that decides from the conversation alone, so a restarted process gets the same
/// answers: first one write for the job (a HappyFox note or a Planhat task, by account), then,
/// once a tool result (or refusal) is in the conversation, a final answer.
pub async fn stateless_model() -> (String, Arc<Mutex<Observed>>) {
    let observed = Arc::new(Mutex::new(Observed::default()));
    let state = observed.clone();
    let answer = move |axum::Json(body): axum::Json<Value>| {
        let observed = state.clone();
        async move {
            let messages = body["messages"].as_array().cloned().unwrap_or_default();
            let (_in_flight, (job, account, subject)) = observe(&observed, &body);
            tokio::time::sleep(HOLD).await;
            let answered = messages.iter().any(|m| m["role"] == "tool");
            let message = if answered {
                json!({"role": "assistant", "content": "Done."})
            } else {
                let (name, arguments) = if account.starts_with("hf-") {
                    (
                        "happyfox__add_private_note",
                        json!({"ticket_id": subject.parse::<u64>().unwrap_or(0), "html": write_text(job)}),
                    )
                } else {
                    (
                        "planhat__create_task",
                        json!({"mainType": "task", "companyId": NORTHWIND, "action": write_text(job)}),
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
fn write_text(job: impl std::fmt::Display) -> String {
    format!("Checked by job {job}.")
}

/// The fakes and the configuration every process of one test shares.
pub struct World {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub happyfox: FakeHappyfox,
    pub planhat: FakePlanhat,
    pub observed: Arc<Mutex<Observed>>,
    /// The fixture ticket new tickets are copies of.
    ticket: Value,
}

pub async fn world(store_url: &str, extra_config: &str) -> World {
    hookwise::init_tls();
    let (llm_url, observed) = stateless_model().await;
    // Rate limits far above what the workloads send: these suites are about kills and leaks,
    // tests/it/upstream.rs is about rate limits.
    let happyfox = FakeHappyfox::start_with(Limits {
        get: 100_000,
        post: 100_000,
        ..Limits::default()
    })
    .await;
    let template: Value = serde_json::from_slice(
        &std::fs::read(repo_path("fixtures/happyfox/ticket_created.json")).unwrap(),
    )
    .unwrap();
    for id in FIRST_TICKET..FIRST_TICKET + SUBJECTS {
        open_ticket(&happyfox, &template, id);
    }
    let planhat = FakePlanhat::with_quota(100_000, Duration::from_secs(60)).await;
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
         [llm]\nprovider = \"openai\"\nbase_url = \"{llm_url}\"\napi_key = \"k\"\nmodel = \"fake\"\nmax_retries = 2\n\n{accounts}{extra_config}"
    );
    let config = dir.path().join("hookwise.toml");
    std::fs::write(&config, config_text(store_url, &handlers, &extra)).unwrap();
    World {
        dir,
        config,
        happyfox,
        planhat,
        observed,
        ticket: template,
    }
}

fn open_ticket(happyfox: &FakeHappyfox, template: &Value, id: u64) {
    let mut ticket = template.clone();
    ticket["id"] = json!(id);
    happyfox.put_ticket(ticket);
}

impl World {
    /// A new ticket `id` at the fake HappyFox (a copy of the fixture ticket), so notes to it
    /// are accepted.
    pub fn open_ticket(&self, id: u64) {
        open_ticket(&self.happyfox, &self.ticket, id);
    }

    pub fn log(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.log"))
    }

    /// What every process so far logged, one after the other.
    pub fn logs(&self) -> String {
        let mut logs = String::new();
        for entry in std::fs::read_dir(self.dir.path()).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "log") {
                logs.push_str(&std::fs::read_to_string(&path).unwrap_or_default());
            }
        }
        logs
    }
}

/// A running `hookwise serve` that can be killed and started again on its port.
pub struct Replica {
    name: String,
    port: u16,
    pub proc: Option<Proc>,
    starts: usize,
}

impl Replica {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.into(),
            port: free_port(),
            proc: None,
            starts: 0,
        }
    }

    pub async fn start(&mut self, world: &World, env: &[(&str, &str)]) {
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

    pub fn kill(&mut self) {
        if let Some(mut proc) = self.proc.take() {
            proc.0.kill().unwrap();
            proc.0.wait().unwrap();
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/webhooks/multi", self.port)
    }
}

/// Delivers like a sender: every copy until some replica acknowledges it (2xx), trying the
/// replicas in turn and waiting between attempts (one may be down). Returns the acknowledged
/// events as (source, event id).
pub async fn deliver_all(urls: Vec<String>, events: Vec<(String, usize)>) -> Vec<(String, String)> {
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
                    && let Ok(ack) = r.json::<Value>().await
                {
                    return (
                        "multi".to_string(),
                        ack["event_id"].as_str().unwrap().to_string(),
                    );
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
pub async fn settled(store: &SharedStore) -> Vec<JobRecord> {
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
            "{open} jobs still open after 90 s: {:?}",
            jobs.iter()
                .filter(|j| matches!(j.state, JobState::Pending | JobState::Running))
                .map(|j| (j.id, j.state, j.attempts, j.last_error.clone()))
                .collect::<Vec<_>>(),
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Once the backlog has settled, `invariants::check` over the store, every write the fakes
/// applied and every process's log (`acked`: the events acknowledged), and the model's view:
/// never two runs of one account in flight at once, killed ones included. With `pruned`
/// (retention took jobs and their journal: stop the server first, so no more go meanwhile),
/// no write may have been applied twice, and the journal checks cover the writes of the jobs
/// still stored. Returns the figures, and the settled jobs.
pub async fn check_invariants(
    store: &SharedStore,
    world: &World,
    acked: &[(String, String)],
    pruned: bool,
) -> (Figures, Vec<JobRecord>) {
    let jobs = settled(store).await;
    let mut applied = world.happyfox.applied_writes();
    applied.extend(world.planhat.applied_writes());
    if pruned {
        let mut seen = std::collections::HashSet::new();
        for w in &applied {
            assert!(
                seen.insert((w.path.clone(), w.body.to_string())),
                "applied twice: {} {} {}",
                w.method,
                w.path,
                w.body
            );
        }
        let kept: Vec<String> = jobs.iter().map(|j| write_text(j.id)).collect();
        applied.retain(|w| kept.iter().any(|t| w.body.to_string().contains(t.as_str())));
    }
    let figures = invariants::check(store, acked, &applied, &world.logs()).await;
    assert_eq!(
        world.observed.lock().unwrap().max_in_flight,
        1,
        "two runs of one account were in flight together"
    );
    (figures, jobs)
}
