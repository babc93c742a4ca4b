//! The agent: runs a handler as an LLM conversation with tool calls: the provider layer (`llm`),
//! its configuration (`config`), and the loop that turns a job into a run (`run`).

pub mod config;
pub mod llm;
pub mod run;
