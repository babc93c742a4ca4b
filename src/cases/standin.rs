//! The upstream as a case sees it: every registered tool wrapped in a `StandIn` that answers
//! from the case's `[[upstream]]` results and the cassette's recorded ones, so a replayed case
//! needs no network. Recording (and `--live-model`) lets a call no one recorded go to the real
//! tool, through the upstream and its governor, and keeps the answer for the cassette.
//!
//! Runs are always in dry-run here, so a write's `call` is never made: only its pre-write
//! `check`, reads, and live schemas are answered.

use super::case::{Given, subset};
use crate::tools::{Tool, ToolContext, ToolError, ToolRegistry};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::{Arc, Mutex};

/// Which upstream question a record answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// A read's result.
    Call,
    /// A write's pre-write check (the ids it names exist).
    Check,
    /// The tool's schema for this run (HappyFox custom fields depend on the ticket).
    Schema,
}

/// One recorded upstream answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolRecord {
    pub tool: String,
    pub op: Op,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub arguments: Value,
    /// The result (`call`), the live schema or null (`schema`), null (`check` passed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<RecordedError>,
}

/// A tool failure as recorded: its kind decides what the run does with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedError {
    /// `rejected` (back to the model), `unavailable` (retried later), `permanent`, `rate_limited`.
    pub kind: String,
    pub message: String,
}

impl RecordedError {
    fn of(e: &ToolError) -> Self {
        let kind = match e {
            ToolError::Rejected(_) | ToolError::Refused { .. } => "rejected",
            ToolError::Unavailable(_) => "unavailable",
            ToolError::RateLimited { .. } => "rate_limited",
            ToolError::Permanent(_) => "permanent",
        };
        Self {
            kind: kind.into(),
            message: e.to_string(),
        }
    }

    fn to_error(&self) -> ToolError {
        let message = self.message.clone();
        match self.kind.as_str() {
            "rejected" => ToolError::Rejected(message),
            "unavailable" => ToolError::Unavailable(message),
            // A replayed run is not deferred to a recorded time: it fails as an outage would.
            "rate_limited" => ToolError::Unavailable(message),
            _ => ToolError::Permanent(message),
        }
    }
}

/// Whether a question no one recorded may reach the real upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Misses {
    /// Replay: an unrecorded read fails the run, and the case says which.
    Fail,
    /// Record, live model, eval: the real tool answers, and the answer is kept.
    Upstream,
    /// `eval --no-upstream`: an unanswered read is refused back to the model, which goes on
    /// without it; checks pass and schemas stay static, as in replay.
    Refuse,
}

/// The answers a case's tools give, and what they were asked that no one had answered.
pub struct Book {
    given: Vec<Given>,
    recorded: Vec<ToolRecord>,
    misses: Misses,
    state: Mutex<BookState>,
}

#[derive(Default)]
struct BookState {
    /// Answers from the real upstream, for the cassette.
    new: Vec<ToolRecord>,
    /// Reads replay could not answer.
    unanswered: Vec<String>,
}

impl Book {
    pub fn new(given: Vec<Given>, recorded: Vec<ToolRecord>, misses: Misses) -> Arc<Book> {
        Arc::new(Book {
            given,
            recorded,
            misses,
            state: Mutex::default(),
        })
    }

    /// Every tool of `registry`, answering from this book.
    pub fn wrap(self: &Arc<Self>, registry: &ToolRegistry) -> Result<ToolRegistry, String> {
        let mut wrapped = ToolRegistry::new();
        for tool in registry.tools() {
            wrapped.register(Arc::new(StandIn {
                inner: tool.clone(),
                book: self.clone(),
            }))?;
        }
        Ok(wrapped)
    }

    /// The records to save: the cassette's earlier ones that this run used are not repeated,
    /// so this is everything the real upstream answered during the run.
    pub fn take_new(&self) -> Vec<ToolRecord> {
        std::mem::take(&mut self.state.lock().expect("book lock").new)
    }

    pub fn unanswered(&self) -> Vec<String> {
        self.state.lock().expect("book lock").unanswered.clone()
    }

    fn given(&self, tool: &str, args: &Value) -> Option<Result<Value, ToolError>> {
        let given = self.given.iter().find(|g| {
            g.tool == tool && g.arguments.as_ref().is_none_or(|want| subset(want, args))
        })?;
        Some(match &given.outcome {
            Ok(result) => Ok(result.clone()),
            Err(message) => Err(ToolError::Rejected(message.clone())),
        })
    }

    fn recorded(&self, tool: &str, op: Op, args: &Value) -> Option<&ToolRecord> {
        self.recorded
            .iter()
            .find(|r| r.tool == tool && r.op == op && r.arguments == *args)
    }

    fn keep(&self, tool: &str, op: Op, args: &Value, outcome: Result<Value, &ToolError>) {
        let (result, error) = match outcome {
            Ok(v) => (Some(v), None),
            Err(e) => (None, Some(RecordedError::of(e))),
        };
        self.state.lock().expect("book lock").new.push(ToolRecord {
            tool: tool.to_string(),
            op,
            arguments: args.clone(),
            result,
            error,
        });
    }
}

struct StandIn {
    inner: Arc<dyn Tool>,
    book: Arc<Book>,
}

impl StandIn {
    fn replayed(&self, op: Op, args: &Value) -> Option<Result<Value, ToolError>> {
        let record = self.book.recorded(self.inner.name(), op, args)?;
        Some(match &record.error {
            Some(e) => Err(e.to_error()),
            None => Ok(record.result.clone().unwrap_or(Value::Null)),
        })
    }
}

#[async_trait]
impl Tool for StandIn {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn description(&self) -> &str {
        self.inner.description()
    }
    fn parameters(&self) -> Value {
        self.inner.parameters()
    }
    fn writes(&self) -> bool {
        self.inner.writes()
    }

    async fn live_parameters(&self, ctx: &ToolContext) -> Result<Option<Value>, ToolError> {
        if let Some(replayed) = self.replayed(Op::Schema, &Value::Null) {
            return replayed.map(|v| Some(v).filter(|v| !v.is_null()));
        }
        match self.book.misses {
            // Nothing recorded: the tool's own schema, as when its upstream needs no lookup.
            Misses::Fail | Misses::Refuse => Ok(None),
            Misses::Upstream => {
                let live = self.inner.live_parameters(ctx).await;
                let kept = live.as_ref().map(|v| v.clone().unwrap_or(Value::Null));
                self.book.keep(self.name(), Op::Schema, &Value::Null, kept);
                live
            }
        }
    }

    async fn check(&self, ctx: &ToolContext, args: &Value) -> Result<(), ToolError> {
        if let Some(replayed) = self.replayed(Op::Check, args) {
            return replayed.map(drop);
        }
        match self.book.misses {
            // Nothing recorded: the ids the write names are taken to exist.
            Misses::Fail | Misses::Refuse => Ok(()),
            Misses::Upstream => {
                let checked = self.inner.check(ctx, args).await;
                let kept = checked.as_ref().map(|()| Value::Null);
                self.book.keep(self.name(), Op::Check, args, kept);
                checked
            }
        }
    }

    async fn call(&self, ctx: &ToolContext, args: Value) -> Result<Value, ToolError> {
        if self.inner.writes() {
            // Cases run in dry-run: a write reaching here is a bug, and must not be sent.
            return Err(ToolError::Permanent(format!(
                "{}: a test case never sends a write",
                self.name()
            )));
        }
        if let Some(given) = self.book.given(self.name(), &args) {
            return given;
        }
        if let Some(replayed) = self.replayed(Op::Call, &args) {
            return replayed;
        }
        match self.book.misses {
            Misses::Fail | Misses::Refuse => {
                let what = format!("{} {args}", self.name());
                self.book
                    .state
                    .lock()
                    .expect("book lock")
                    .unanswered
                    .push(what.clone());
                Err(if self.book.misses == Misses::Refuse {
                    ToolError::Rejected(format!(
                        "{what}: not available in this evaluation (--no-upstream)"
                    ))
                } else {
                    ToolError::Permanent(format!(
                        "no recorded answer for the read {what}: add an [[upstream]] result to \
                         the case, or record the case again with --record"
                    ))
                })
            }
            Misses::Upstream => {
                let result = self.inner.call(ctx, args.clone()).await;
                self.book
                    .keep(self.name(), Op::Call, &args, result.as_ref().cloned());
                result
            }
        }
    }
}
