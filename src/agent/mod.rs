//! The agent: runs a handler as an LLM conversation with tool calls. So far the provider layer
//! (`llm`) and its configuration (`config`); the loop itself comes next.

pub mod config;
pub mod llm;
