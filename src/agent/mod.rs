//! The agent: runs a handler as an LLM conversation with tool calls (`run`): prompt, fenced
//! events, scoped tools, the loop, the transcript. The provider layer is `crate::llm`.

pub mod budget;
pub mod run;
