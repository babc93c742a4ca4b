//! The LLM provider clients against fake providers on loopback that speak the exact wire formats
//! of `shared/reference/llm.md`: tool-call round trips, error classification and retry waits
//! (on a paused clock, so a 2 s `retry-after` costs no real time).

mod anthropic;
mod openai;

use hookwise::llm::{CompletionRequest, Message, ToolSpec};
use serde_json::json;

/// The tool every scenario offers: the helpdesk lookup of the reference examples.
pub fn get_ticket() -> ToolSpec {
    ToolSpec {
        name: "get_ticket".into(),
        description: "Fetch a helpdesk ticket by id".into(),
        parameters: json!({
            "type": "object",
            "properties": {"ticket_id": {"type": "integer"}},
            "required": ["ticket_id"]
        })
        .into(),
    }
}

pub fn ticket_question(model: &str) -> CompletionRequest {
    CompletionRequest {
        model: model.into(),
        system: Some("You are a helpdesk agent.".into()),
        messages: vec![Message::user("What is the status of ticket 4711?")],
        tools: vec![get_ticket()],
        max_tokens: 256,
    }
}
