//! Cassettes: a case's model answers and upstream reads, recorded once and replayed offline.
//!
//! `<case>.cassette.json` holds every request hookwise sent the model with the answer it got
//! (provider-neutral, so one recording serves OpenAI and Anthropic alike), and every tool
//! result the run read. On replay, the n-th request must equal the n-th recorded one: a prompt,
//! a tool or an upstream answer that changed makes a different conversation, and the case
//! fails with a diff of the two requests instead of feeding the model's old answers to a
//! conversation they no longer fit.

use super::standin::ToolRecord;
use crate::llm::{Completion, CompletionRequest, LlmError, LlmProvider, Message, ToolArguments};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// The file's format version.
const FORMAT: u32 = 1;

/// A case's recording. In memory every exchange holds its whole request; on disk
/// (`StoredCassette`) each request says only what changed since the one before (usually just the
/// messages added), so the file grows with the conversation, not with its square, and a changed
/// prompt is one hunk in review.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(into = "StoredCassette", try_from = "StoredCassette")]
pub struct Cassette {
    /// The model's answers, in order.
    pub exchanges: Vec<Exchange>,
    /// The upstream answers the run's tools got (reads, pre-write checks, live schemas).
    pub upstream: Vec<ToolRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Exchange {
    pub request: CompletionRequest,
    pub response: Completion,
}

#[derive(Serialize, Deserialize)]
struct StoredCassette {
    format: u32,
    exchanges: Vec<StoredExchange>,
    #[serde(default)]
    upstream: Vec<ToolRecord>,
}

/// A request as the change from the one before; the first states everything.
#[derive(Serialize, Deserialize)]
struct StoredExchange {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    /// The system prompt, when it changed (null: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    system: Option<Option<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tools: Option<Vec<crate::llm::ToolSpec>>,
    /// Appended to the previous request's messages...
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    added_messages: Vec<Message>,
    /// ...or, when they are not a continuation of them, all of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    messages: Option<Vec<Message>>,
    response: Completion,
}

impl From<Cassette> for StoredCassette {
    fn from(cassette: Cassette) -> Self {
        let mut previous: Option<&CompletionRequest> = None;
        let mut exchanges = Vec::new();
        for e in &cassette.exchanges {
            let r = &e.request;
            let changed = |same: bool| !same || previous.is_none();
            let continues = previous.filter(|p| r.messages.starts_with(&p.messages));
            exchanges.push(StoredExchange {
                model: changed(previous.is_some_and(|p| p.model == r.model))
                    .then(|| r.model.clone()),
                max_tokens: changed(previous.is_some_and(|p| p.max_tokens == r.max_tokens))
                    .then_some(r.max_tokens),
                system: changed(previous.is_some_and(|p| p.system == r.system))
                    .then(|| r.system.clone()),
                tools: changed(previous.is_some_and(|p| p.tools == r.tools))
                    .then(|| r.tools.clone()),
                added_messages: continues
                    .map(|p| r.messages[p.messages.len()..].to_vec())
                    .unwrap_or_default(),
                messages: continues.is_none().then(|| r.messages.clone()),
                response: e.response.clone(),
            });
            previous = Some(r);
        }
        StoredCassette {
            format: FORMAT,
            exchanges,
            upstream: cassette.upstream,
        }
    }
}

impl TryFrom<StoredCassette> for Cassette {
    type Error = String;

    fn try_from(stored: StoredCassette) -> Result<Self, String> {
        if stored.format != FORMAT {
            return Err(format!(
                "cassette format {} (this hookwise reads {FORMAT}); record it again with --record",
                stored.format
            ));
        }
        let mut exchanges: Vec<Exchange> = Vec::new();
        for (n, e) in stored.exchanges.into_iter().enumerate() {
            let mut request = match exchanges.last() {
                Some(previous) => previous.request.clone(),
                None => CompletionRequest {
                    model: e.model.clone().ok_or("the first exchange names no model")?,
                    system: None,
                    messages: Vec::new(),
                    tools: Vec::new(),
                    max_tokens: e
                        .max_tokens
                        .ok_or("the first exchange gives no max_tokens")?,
                },
            };
            if let Some(model) = e.model {
                request.model = model;
            }
            if let Some(max_tokens) = e.max_tokens {
                request.max_tokens = max_tokens;
            }
            if let Some(system) = e.system {
                request.system = system;
            }
            if let Some(tools) = e.tools {
                request.tools = tools;
            }
            match e.messages {
                Some(messages) => request.messages = messages,
                None if n == 0 || !e.added_messages.is_empty() => {}
                None => return Err(format!("exchange {} adds no message", n + 1)),
            }
            request.messages.extend(e.added_messages);
            exchanges.push(Exchange {
                request,
                response: e.response,
            });
        }
        Ok(Cassette {
            exchanges,
            upstream: stored.upstream,
        })
    }
}

impl Cassette {
    pub fn load(path: &Path) -> Result<Option<Cassette>, String> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("{}: cannot read: {e}", path.display())),
        };
        let cassette: Cassette = serde_json::from_str(&text)
            .map_err(|e| format!("{}: not a cassette: {e}", path.display()))?;
        Ok(Some(cassette))
    }

    pub fn save(&self, path: &Path) -> Result<(), String> {
        let mut text = serde_json::to_string_pretty(self).expect("a cassette serializes");
        text.push('\n');
        std::fs::write(path, text).map_err(|e| format!("{}: cannot write: {e}", path.display()))
    }

    /// The model named by the recording, and its `max_tokens`: what a run without `[llm]` asks.
    pub fn model(&self) -> Option<(String, u32)> {
        self.exchanges
            .first()
            .map(|e| (e.request.model.clone(), e.request.max_tokens))
    }
}

/// Where the model's answers come from.
pub enum Answers {
    /// From the cassette; each request must be the recorded one.
    Replay(Vec<Exchange>),
    /// From the real provider; each exchange is kept for the new cassette.
    Record(Arc<dyn LlmProvider>),
    /// From the real provider, nothing compared or kept (`--live-model`).
    Live(Arc<dyn LlmProvider>),
}

/// The provider a case's agent talks to.
pub struct CassetteLlm {
    answers: Answers,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    asked: usize,
    recorded: Vec<Exchange>,
    /// Why replay stopped: the first request that differed from the recording.
    mismatch: Option<String>,
}

impl CassetteLlm {
    pub fn new(answers: Answers) -> Self {
        Self {
            answers,
            state: Mutex::default(),
        }
    }

    /// What went wrong replaying, if anything: a request that differed (with the diff), or the
    /// run asking fewer or more questions than were recorded.
    pub fn mismatch(&self) -> Option<String> {
        let state = self.state.lock().expect("cassette lock");
        if let Some(m) = &state.mismatch {
            return Some(m.clone());
        }
        match &self.answers {
            Answers::Replay(recorded) if state.asked < recorded.len() => Some(format!(
                "the run asked the model {} time(s); the cassette holds {} answers: the conversation \
                 changed (record it again with --record)",
                state.asked,
                recorded.len()
            )),
            _ => None,
        }
    }

    pub fn asked(&self) -> usize {
        self.state.lock().expect("cassette lock").asked
    }

    /// The exchanges recorded (`Answers::Record`).
    pub fn take_recorded(&self) -> Vec<Exchange> {
        std::mem::take(&mut self.state.lock().expect("cassette lock").recorded)
    }
}

#[async_trait]
impl LlmProvider for CassetteLlm {
    async fn complete(&self, req: &CompletionRequest) -> Result<Completion, LlmError> {
        let real = match &self.answers {
            Answers::Replay(recorded) => {
                let mut state = self.state.lock().expect("cassette lock");
                let n = state.asked;
                state.asked += 1;
                let problem = match recorded.get(n) {
                    None => format!(
                        "the run asked the model {} time(s); the cassette holds only {} answer(s): \
                         the conversation changed (record it again with --record)",
                        n + 1,
                        recorded.len()
                    ),
                    Some(exchange) if exchange.request == *req => {
                        return Ok(exchange.response.clone());
                    }
                    Some(exchange) => format!(
                        "request {} to the model differs from the cassette (record it again with \
                         --record if the change is intended):\n{}",
                        n + 1,
                        diff(&render(&exchange.request), &render(req))
                    ),
                };
                state.mismatch.get_or_insert(problem);
                return Err(LlmError::BadRequest(
                    "the cassette does not match this conversation".into(),
                ));
            }
            Answers::Record(real) | Answers::Live(real) => real,
        };
        let completion = real.complete(req).await?;
        let mut state = self.state.lock().expect("cassette lock");
        state.asked += 1;
        if matches!(self.answers, Answers::Record(_)) {
            state.recorded.push(Exchange {
                request: req.clone(),
                response: completion.clone(),
            });
        }
        Ok(completion)
    }
}

/// A request as lines a person can compare: the prompt and each message on their own lines,
/// schemas pretty-printed.
pub fn render(req: &CompletionRequest) -> String {
    let mut out = format!("model: {}\nmax_tokens: {}\n", req.model, req.max_tokens);
    if let Some(system) = &req.system {
        out.push_str("--- system prompt\n");
        push_text(&mut out, system);
    }
    for tool in &req.tools {
        out.push_str(&format!("--- tool {}\n", crate::tools::dotted(&tool.name)));
        push_text(&mut out, &tool.description);
        let schema = serde_json::to_string_pretty(&tool.parameters).unwrap_or_default();
        push_text(&mut out, &schema);
    }
    for message in &req.messages {
        match message {
            Message::System { text } => {
                out.push_str("--- system\n");
                push_text(&mut out, text);
            }
            Message::User { text } => {
                out.push_str("--- user\n");
                push_text(&mut out, text);
            }
            Message::Assistant(a) => {
                out.push_str("--- assistant\n");
                if let Some(text) = &a.text {
                    push_text(&mut out, text);
                }
                for call in &a.tool_calls {
                    let args = match &call.arguments {
                        ToolArguments::Json { value, .. } => value.to_string(),
                        ToolArguments::Invalid { raw, .. } => raw.clone(),
                    };
                    out.push_str(&format!(
                        "calls {} ({}) {args}\n",
                        crate::tools::dotted(&call.name),
                        call.id
                    ));
                }
            }
            Message::ToolResult(r) => {
                let what = if r.is_error {
                    "tool error"
                } else {
                    "tool result"
                };
                out.push_str(&format!("--- {what} for {}\n", r.call_id));
                push_text(&mut out, &r.content);
            }
        }
    }
    out
}

fn push_text(out: &mut String, text: &str) {
    for line in text.lines() {
        out.push_str(line);
        out.push('\n');
    }
}

/// A unified diff, `-` the cassette and `+` this run, with three lines of context.
pub fn diff(recorded: &str, now: &str) -> String {
    similar::TextDiff::from_lines(recorded, now)
        .unified_diff()
        .context_radius(3)
        .header("cassette", "this run")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::{AssistantMessage, Finish, ToolSpec, Usage};

    fn request(prompt: &str) -> CompletionRequest {
        CompletionRequest {
            model: "m".into(),
            system: Some(format!("You triage tickets.\n{prompt}\nBe brief.")),
            messages: vec![Message::user("ticket 7")],
            tools: vec![ToolSpec {
                name: "happyfox__add_private_note".into(),
                description: "Adds a note".into(),
                parameters: serde_json::json!({"type": "object"}).into(),
            }],
            max_tokens: 100,
        }
    }

    fn answer() -> Completion {
        Completion {
            message: AssistantMessage {
                text: Some("done".into()),
                tool_calls: vec![],
            },
            finish: Finish::Stop,
            usage: Usage::default(),
        }
    }

    #[tokio::test]
    async fn replay_answers_the_recorded_request_and_diffs_a_changed_one() {
        let exchanges = vec![Exchange {
            request: request("Set the priority."),
            response: answer(),
        }];
        let llm = CassetteLlm::new(Answers::Replay(exchanges.clone()));
        assert_eq!(
            llm.complete(&request("Set the priority.")).await.unwrap(),
            answer()
        );
        assert_eq!(llm.mismatch(), None);

        let llm = CassetteLlm::new(Answers::Replay(exchanges));
        let err = llm
            .complete(&request("Never set the priority."))
            .await
            .unwrap_err();
        assert!(!err.retryable());
        let mismatch = llm.mismatch().unwrap();
        assert!(
            mismatch.contains("-Set the priority.\n+Never set the priority.\n"),
            "{mismatch}"
        );
        assert!(
            mismatch.contains(" You triage tickets.\n"),
            "context lines: {mismatch}"
        );
        assert!(
            !mismatch.contains("model: m\n"),
            "only the hunk: {mismatch}"
        );
    }

    #[test]
    fn a_cassette_is_stored_as_changes_and_read_back_whole() {
        let first = request("Set the priority.");
        let mut second = first.clone();
        second.messages.push(Message::Assistant(answer().message));
        second.messages.push(Message::tool_result("c1", "{}"));
        let mut third = second.clone();
        third.system = Some("Another prompt".into());
        third.messages = vec![Message::user("restarted")];
        let cassette = Cassette {
            exchanges: [first, second, third]
                .into_iter()
                .map(|request| Exchange {
                    request,
                    response: answer(),
                })
                .collect(),
            upstream: Vec::new(),
        };
        let text = serde_json::to_string(&cassette).unwrap();
        assert_eq!(text.matches("You triage tickets").count(), 1, "{text}");
        assert_eq!(text.matches("\"added_messages\"").count(), 1, "{text}");
        let back: Cassette = serde_json::from_str(&text).unwrap();
        let requests = |c: &Cassette| {
            c.exchanges
                .iter()
                .map(|e| e.request.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(requests(&back), requests(&cassette));

        let stale = text.replace("\"format\":1", "\"format\":0");
        let e = serde_json::from_str::<Cassette>(&stale).unwrap_err();
        assert!(
            e.to_string().contains("record it again with --record"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn a_conversation_shorter_than_the_recording_is_a_mismatch() {
        let exchange = Exchange {
            request: request("x"),
            response: answer(),
        };
        let llm = CassetteLlm::new(Answers::Replay(vec![exchange.clone(), exchange]));
        llm.complete(&request("x")).await.unwrap();
        assert!(
            llm.mismatch()
                .unwrap()
                .contains("asked the model 1 time(s); the cassette holds 2")
        );
    }
}
