//! Traces, as a collector receives them: the real binary with `[telemetry] otlp_endpoint`
//! pointing at a small OTLP/HTTP receiver in the test, two HappyFox fixtures replayed with
//! `hookwise replay` and folded into one job whose agent writes a note. The spans are decoded
//! with the OpenTelemetry protobuf types and checked for names, attributes and structure.

use crate::support::fake_happyfox::FakeHappyfox;
use crate::support::fake_llm::{FakeLlm, openai_calls, openai_text};
use crate::support::process::{free_port, spawn_hookwise_with, wait_ready};
use crate::support::*;
use axum::body::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::{Span, span::SpanKind};
use prost::Message;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const NOTE_TEXT: &str = "Customer asks for a refund of the duplicate charge.";

/// An OTLP/HTTP receiver: every `POST /v1/traces` body, decoded.
struct Collector {
    url: String,
    requests: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
}

impl Collector {
    async fn start() -> Collector {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let kept = requests.clone();
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |headers: axum::http::HeaderMap, body: Bytes| {
                let kept = kept.clone();
                async move {
                    assert_eq!(headers["content-type"], "application/x-protobuf");
                    let request = ExportTraceServiceRequest::decode(body).expect("OTLP protobuf");
                    kept.lock().unwrap().push(request);
                    // An empty ExportTraceServiceResponse: everything accepted.
                    (
                        [("content-type", "application/x-protobuf")],
                        Vec::<u8>::new(),
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Collector { url, requests }
    }

    /// Every span received, with the resource attributes of its batch.
    fn spans(&self) -> Vec<(Vec<KeyValue>, Span)> {
        let mut spans = Vec::new();
        for request in self.requests.lock().unwrap().iter() {
            for rs in &request.resource_spans {
                let resource = rs.resource.clone().unwrap_or_default().attributes;
                for ss in &rs.scope_spans {
                    for span in &ss.spans {
                        spans.push((resource.clone(), span.clone()));
                    }
                }
            }
        }
        spans
    }
}

fn attr<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v: &AnyValue| v.value.as_ref())
}

fn text<'a>(span: &'a Span, key: &str) -> &'a str {
    match attr(&span.attributes, key) {
        Some(any_value::Value::StringValue(s)) => s,
        other => panic!("span {:?}: {key} is {other:?}", span.name),
    }
}

fn int(span: &Span, key: &str) -> i64 {
    match attr(&span.attributes, key) {
        Some(any_value::Value::IntValue(n)) => *n,
        other => panic!("span {:?}: {key} is {other:?}", span.name),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn named<'a>(spans: &'a [Span], name: &str) -> Vec<&'a Span> {
    spans.iter().filter(|s| s.name == name).collect()
}

/// One deployment: a note-writing handler on HappyFox tickets, debounced so that the two
/// fixtures of ticket 142 make one job, and the exporter pointed at `collector`.
struct Run {
    spans: Vec<Span>,
    resource: Vec<KeyValue>,
    /// The server's log lines (JSON).
    log: Vec<serde_json::Value>,
}

async fn replay_two_fixtures(dir: &Path, trace_content: bool) -> Run {
    let collector = Collector::start().await;
    let hf = FakeHappyfox::start().await;
    let ticket = std::fs::read(repo_path("fixtures/happyfox/ticket_created.json")).unwrap();
    hf.put_ticket(serde_json::from_slice(&ticket).unwrap());
    let note = format!(r#"{{"ticket_id": 142, "html": "<p>{NOTE_TEXT}</p>"}}"#);
    let llm = FakeLlm::start(vec![
        openai_calls(&[("call_note", "happyfox__add_private_note", &note)]),
        openai_text("Noted."),
    ])
    .await;
    let handlers = dir.join("handlers");
    std::fs::create_dir_all(&handlers).unwrap();
    std::fs::write(
        handlers.join("note.toml"),
        r#"name = "note"
on = ["happyfox.ticket.created", "happyfox.ticket.updated"]
mode = "live"
[debounce]
period = "1s"
max_wait = "10s"
[agent]
prompt = "Add a private note to the ticket."
tools = ["happyfox.add_private_note"]
max_steps = 4
deadline = "30s"
"#,
    )
    .unwrap();
    let db = dir.join("hookwise.db");
    let config = dir.join("hookwise.toml");
    let port = free_port();
    std::fs::write(
        &config,
        config_text(
            &format!("sqlite://{}", db.display()),
            &handlers,
            &format!(
                "[telemetry]\notlp_endpoint = \"{}\"\ntrace_content = {trace_content}\n\n\
                 [scheduler]\npoll_interval = \"50ms\"\n\n\
                 [llm]\nprovider = \"openai\"\nbase_url = \"{}/v1\"\napi_key = \"k\"\nmodel = \"m\"\n\n{}",
                collector.url,
                llm.url,
                hf.account_toml("acme", Some(7), "")
            ),
        ),
    )
    .unwrap();
    let mut server = spawn_hookwise_with(
        &config,
        port,
        &dir.join("serve.log"),
        &[
            ("HOOKWISE_DRAIN_DELAY", "0s"),
            ("HOOKWISE_LOG_FORMAT", "json"),
        ],
    );
    let ready = format!("http://127.0.0.1:{port}/readyz");
    wait_ready(&reqwest::Client::new(), &ready).await;

    let replay = Command::new(env!("CARGO_BIN_EXE_hookwise"))
        .arg("--config")
        .arg(&config)
        .args(["replay", "--url", &format!("http://127.0.0.1:{port}")])
        .arg(repo_path("fixtures/happyfox/ticket_created.json"))
        .arg(repo_path("fixtures/happyfox/ticket_updated.json"))
        .output()
        .unwrap();
    assert!(
        replay.status.success(),
        "replay failed: {}",
        String::from_utf8_lossy(&replay.stderr)
    );

    let started = Instant::now();
    while !(hf.writes().len() == 1 && llm.received().len() == 2 && job_done(&db).await) {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the run did not finish: {}",
            std::fs::read_to_string(dir.join("serve.log")).unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A clean stop flushes what the batch exporter still holds.
    server.signal("TERM");
    assert!(
        server
            .exited_within(Duration::from_secs(20))
            .await
            .success()
    );
    let (resource, spans): (Vec<_>, Vec<_>) = collector.spans().into_iter().unzip();
    let log = std::fs::read_to_string(dir.join("serve.log")).unwrap();
    Run {
        spans,
        resource: resource.into_iter().next().unwrap_or_default(),
        log: log
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON log line"))
            .collect(),
    }
}

async fn job_done(db: &Path) -> bool {
    let store = hookwise::store::open(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let jobs = store
        .list_jobs(&hookwise::store::JobFilter::default())
        .await
        .unwrap();
    jobs.len() == 1 && jobs[0].state == hookwise::store::JobState::Done
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_fixture_is_one_trace_from_the_request_to_the_upstream_write() {
    hookwise::init_tls();
    let dir = tempfile::tempdir().unwrap();
    let Run {
        spans,
        resource,
        log,
    } = replay_two_fixtures(dir.path(), false).await;
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();

    match attr(&resource, "service.name") {
        Some(any_value::Value::StringValue(name)) => assert_eq!(name, "hookwise"),
        other => panic!("service.name is {other:?}"),
    }

    // One server span per delivery, each answered 202 and naming its stored event.
    let requests = named(&spans, "POST /webhooks/{source}");
    assert_eq!(requests.len(), 2, "spans: {names:?}");
    for request in &requests {
        assert_eq!(request.kind, SpanKind::Server as i32);
        assert_eq!(text(request, "http.request.method"), "POST");
        assert_eq!(text(request, "http.route"), "/webhooks/{source}");
        assert_eq!(text(request, "hookwise.source"), "happyfox");
        assert_eq!(text(request, "hookwise.outcome"), "accepted");
        assert_eq!(int(request, "http.response.status_code"), 202);
        assert!(!text(request, "hookwise.event_id").is_empty());
    }
    let (first, folded) = if requests[0].start_time_unix_nano < requests[1].start_time_unix_nano {
        (requests[0], requests[1])
    } else {
        (requests[1], requests[0])
    };

    // The run continues the first request's trace and links to the request folded into it.
    let runs = named(&spans, "invoke_agent note");
    assert_eq!(runs.len(), 1, "spans: {names:?}");
    let run = runs[0];
    assert_eq!(run.trace_id, first.trace_id);
    assert_eq!(run.parent_span_id, first.span_id);
    assert_eq!(text(run, "gen_ai.operation.name"), "invoke_agent");
    assert_eq!(text(run, "gen_ai.agent.name"), "note");
    assert_eq!(text(run, "hookwise.account"), "acme");
    assert_eq!(text(run, "hookwise.job.outcome"), "done");
    assert_eq!(int(run, "hookwise.job.events"), 2);
    let links: Vec<(&[u8], &[u8])> = run
        .links
        .iter()
        .map(|l| (l.trace_id.as_slice(), l.span_id.as_slice()))
        .collect();
    assert_eq!(
        links,
        [(folded.trace_id.as_slice(), folded.span_id.as_slice())]
    );

    // Two model calls inside the run, with the GenAI attributes and the fake's token counts.
    let chats = named(&spans, "chat m");
    assert_eq!(chats.len(), 2, "spans: {names:?}");
    let mut reasons = Vec::new();
    for chat in &chats {
        assert_eq!(chat.parent_span_id, run.span_id);
        assert_eq!(chat.trace_id, run.trace_id);
        assert_eq!(chat.kind, SpanKind::Client as i32);
        assert_eq!(text(chat, "gen_ai.operation.name"), "chat");
        assert_eq!(text(chat, "gen_ai.provider.name"), "openai");
        assert_eq!(text(chat, "gen_ai.request.model"), "m");
        let tokens = (
            int(chat, "gen_ai.usage.input_tokens"),
            int(chat, "gen_ai.usage.output_tokens"),
        );
        let Some(any_value::Value::ArrayValue(list)) =
            attr(&chat.attributes, "gen_ai.response.finish_reasons")
        else {
            panic!("no finish reasons on {chat:?}");
        };
        let reason = match list.values[0].value.as_ref() {
            Some(any_value::Value::StringValue(s)) => s.clone(),
            other => panic!("finish reason {other:?}"),
        };
        reasons.push((reason, tokens));
    }
    reasons.sort();
    assert_eq!(
        reasons,
        [
            ("stop".to_string(), (50, 10)),
            ("tool_calls".to_string(), (100, 20))
        ]
    );

    // The tool call, and under it the HTTP exchange that wrote the note to HappyFox.
    let tools = named(&spans, "execute_tool happyfox.add_private_note");
    assert_eq!(tools.len(), 1, "spans: {names:?}");
    let tool = tools[0];
    assert_eq!(tool.parent_span_id, run.span_id);
    assert_eq!(text(tool, "gen_ai.operation.name"), "execute_tool");
    assert_eq!(text(tool, "gen_ai.tool.name"), "happyfox.add_private_note");
    assert_eq!(text(tool, "gen_ai.tool.call.id"), "call_note");
    assert_eq!(text(tool, "hookwise.tool.outcome"), "tool_result");
    let writes: Vec<&Span> = spans
        .iter()
        .filter(|s| s.parent_span_id == tool.span_id && s.name == "POST")
        .collect();
    assert_eq!(writes.len(), 1, "spans: {names:?}");
    let write = writes[0];
    assert_eq!(write.kind, SpanKind::Client as i32);
    assert_eq!(write.trace_id, first.trace_id);
    assert_eq!(text(write, "http.request.method"), "POST");
    assert_eq!(text(write, "hookwise.account"), "acme");
    assert_eq!(text(write, "hookwise.connector"), "happyfox");
    assert_eq!(text(write, "server.address"), "127.0.0.1");
    assert!((200..300).contains(&int(write, "http.response.status_code")));

    // The log lines of the run carry its trace id, beside the job's fields.
    let done = log
        .iter()
        .find(|l| l["message"] == "job done")
        .expect("a `job done` log line");
    assert_eq!(done["handler"], "note");
    assert_eq!(done["trace_id"], hex(&run.trace_id));
    let accepted: Vec<&serde_json::Value> = log
        .iter()
        .filter(|l| l["message"] == "webhook accepted")
        .collect();
    assert_eq!(accepted.len(), 2);
    assert!(
        accepted
            .iter()
            .any(|l| l["trace_id"] == hex(&first.trace_id))
    );

    // Message content stays out of traces unless asked for.
    for span in &spans {
        for kv in &span.attributes {
            let value = format!("{:?}", kv.value);
            assert!(
                !value.contains("duplicate charge") && !kv.key.starts_with("gen_ai.input"),
                "content on span {:?}: {} = {value}",
                span.name,
                kv.key
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_trace_content_on_spans_carry_the_conversation_and_tool_arguments() {
    hookwise::init_tls();
    let dir = tempfile::tempdir().unwrap();
    let Run { spans, .. } = replay_two_fixtures(dir.path(), true).await;
    let tool = named(&spans, "execute_tool happyfox.add_private_note")[0];
    assert!(text(tool, "gen_ai.tool.call.arguments").contains(NOTE_TEXT));
    let result: serde_json::Value =
        serde_json::from_str(text(tool, "gen_ai.tool.call.result")).expect("the result as JSON");
    assert!(result.is_object(), "tool result {result}");
    let chats = named(&spans, "chat m");
    assert!(
        chats
            .iter()
            .all(|c| text(c, "gen_ai.system_instructions").contains("Add a private note"))
    );
    assert!(
        chats
            .iter()
            .any(|c| text(c, "gen_ai.output.messages").contains(NOTE_TEXT))
    );
}

#[test]
fn check_refuses_an_otlp_endpoint_that_is_not_an_http_url() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("hookwise.toml"),
        "[telemetry]\notlp_endpoint = \"collector:4318\"\n",
    )
    .unwrap();
    for command in ["check", "serve"] {
        let out = Command::new(env!("CARGO_BIN_EXE_hookwise"))
            .current_dir(dir.path())
            .arg(command)
            .env("HOOKWISE_LISTEN", format!("127.0.0.1:{}", free_port()))
            .output()
            .unwrap();
        assert!(!out.status.success(), "{command} accepted it");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(
                "hookwise.toml: key `telemetry.otlp_endpoint`: expected an http:// or https:// URL"
            ),
            "{command}: {stderr}"
        );
    }
}
