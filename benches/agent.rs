//! The agent loop's own overhead per step: the same conversation (a tool call per step, then a
//! final answer) run twice in one process, against an in-process provider that answers at once
//! and a no-op tool. The baseline makes exactly the provider and tool calls, with nothing else;
//! the agent adds scoping, JSON Schema validation, the transcript and storing the run (SQLite).
//!
//!   cargo bench --bench agent

use async_trait::async_trait;
use hookwise::agent::run::AgentRunner;
use hookwise::handler;
use hookwise::kernel::clock::SystemClock;
use hookwise::kernel::event::{EventId, SourceName};
use hookwise::llm::{
    AssistantMessage, Completion, CompletionRequest, Finish, LlmError, LlmProvider, Message,
    RetryPolicy, ToolArguments, ToolCall, Usage,
};
use hookwise::scheduler::{JobRunner, RunContext};
use hookwise::store::{self, EventStatus, JobId, JobRecord, JobState, StoredEvent};
use hookwise::tools::{Tool, ToolContext, ToolError, ToolRegistry};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const STEPS: u32 = 8;
const RUNS: u32 = 300;

/// Calls the tool until `STEPS - 1` calls were made, then answers.
struct Scripted(AtomicU32);

#[async_trait]
impl LlmProvider for Scripted {
    async fn complete(&self, _: &CompletionRequest) -> Result<Completion, LlmError> {
        let n = self.0.fetch_add(1, Ordering::Relaxed) % STEPS;
        let tool_calls = if n + 1 < STEPS {
            vec![ToolCall {
                id: format!("call_{n}"),
                name: "bench__lookup".into(),
                arguments: ToolArguments::parse(
                    r#"{"ticket_id": 142, "fields": ["status", "priority"]}"#,
                ),
            }]
        } else {
            Vec::new()
        };
        Ok(Completion {
            message: AssistantMessage {
                text: tool_calls.is_empty().then(|| "done".to_string()),
                tool_calls,
            },
            finish: Finish::Stop,
            usage: Usage {
                input_tokens: 100,
                output_tokens: 10,
            },
        })
    }
}

struct Lookup;

#[async_trait]
impl Tool for Lookup {
    fn name(&self) -> &str {
        "bench.lookup"
    }
    fn description(&self) -> &str {
        "look up a ticket"
    }
    fn parameters(&self) -> Value {
        json!({"type": "object", "additionalProperties": false, "required": ["ticket_id"],
               "properties": {"ticket_id": {"type": "integer"}, "fields": {"type": "array", "items": {"type": "string"}}}})
    }
    fn writes(&self) -> bool {
        false
    }
    async fn call(&self, _: &ToolContext, args: Value) -> Result<Value, ToolError> {
        Ok(json!({"id": args["ticket_id"], "status": "New", "priority": "High"}))
    }
}

fn job() -> JobRecord {
    JobRecord {
        id: JobId(1),
        handler: "bench".into(),
        account: "acme".into(),
        subject: "142".into(),
        state: JobState::Running,
        run_at_ms: 0,
        first_seen_ms: 0,
        deadline_at_ms: 0,
        attempts: 1,
        max_attempts: 3,
        lease_owner: None,
        lease_until_ms: None,
        last_error: None,
        created_at_ms: 0,
        updated_at_ms: 0,
        finished_at_ms: None,
        events: 1,
    }
}

fn event() -> StoredEvent {
    let payload = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/happyfox/ticket_updated.json"
    ))
    .unwrap();
    StoredEvent {
        seq: 1,
        source: SourceName::new("happyfox"),
        event_id: EventId::new("msg_bench"),
        kind: "happyfox.ticket.updated".into(),
        account: "acme".into(),
        subject: "142".into(),
        occurred_at_ms: 0,
        received_at_ms: 0,
        status: EventStatus::Routed,
        status_reason: None,
        payload,
        trace_context: None,
    }
}

fn main() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let store = store::open(&format!("sqlite://{}", dir.path().join("agent.db").display())).await.unwrap();
        store.migrate().await.unwrap();
        let handler = handler::parse_handler(
            Path::new("bench.toml"),
            "name = \"bench\"\non = [\"happyfox.ticket.updated\"]\nmode = \"live\"\n[agent]\nprompt = \"Look the ticket up.\"\ntools = [\"bench.lookup\"]\nmax_steps = 10\ndeadline = \"60s\"\n",
        )
        .unwrap();
        let (job, events) = (job(), vec![event()]);
        let provider = Arc::new(Scripted(AtomicU32::new(0)));
        let mut tools = ToolRegistry::new();
        tools.register(Arc::new(Lookup)).unwrap();
        let runner = AgentRunner {
            llm: provider.clone(),
            retry: RetryPolicy::default(),
            tools: Arc::new(tools),
            store: store.clone(),
            clock: Arc::new(SystemClock),
            model: "bench".into(),
            max_tokens: 256,
            metrics: Default::default(),
            runs: store::batcher::RunWriter::start(store.clone()),
            budgets: Default::default(),
        };

        // Baseline: the same provider and tool calls, nothing around them.
        let request = CompletionRequest {
            model: "bench".into(), system: Some("x".into()), messages: vec![Message::user("x")],
            tools: Vec::new(), max_tokens: 256,
        };
        let ctx = ToolContext { account: hookwise::kernel::event::AccountId::new("acme"), job: JobId(1), subject: "1".into(), idempotency_key: "k".into() };
        let measure_baseline = || async {
            let start = Instant::now();
            for _ in 0..RUNS {
                for _ in 0..STEPS {
                    let c = provider.complete(&request).await.unwrap();
                    for call in c.message.tool_calls {
                        Lookup.call(&ctx, call.arguments.value().unwrap().clone()).await.unwrap();
                    }
                }
            }
            start.elapsed()
        };
        let measure_agent = || async {
            let start = Instant::now();
            for _ in 0..RUNS {
                runner.run(RunContext { job: &job, handler: &handler, events: &events }).await.unwrap();
            }
            start.elapsed()
        };
        measure_agent().await; // warm-up (statement cache, allocator)
        let mut baseline = Vec::new();
        let mut agent = Vec::new();
        for _ in 0..3 {
            baseline.push(measure_baseline().await);
            agent.push(measure_agent().await);
        }
        baseline.sort();
        agent.sort();
        let per_step = |d: Duration| d.as_secs_f64() * 1e6 / f64::from(RUNS * STEPS);
        let (b, a) = (per_step(baseline[1]), per_step(agent[1]));
        println!("\nagent loop, {STEPS} steps per run, {RUNS} runs, median of 3 (µs per step)");
        println!("baseline (provider + tool calls only): {b:>8.1}");
        println!("agent (scope, validation, transcript, stored run): {a:>8.1}");
        println!("agent overhead per step: {:.1} µs ({:.1}x the baseline)", a - b, a / b);
    });
}
