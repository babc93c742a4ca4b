//! The agent: runs a handler as an LLM conversation with tool calls. So far the provider layer
//! (`llm`); the loop itself comes next.

pub mod llm;
