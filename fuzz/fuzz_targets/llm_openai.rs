//! The OpenAI Chat Completions response parser (body → `Completion`), tool-call arguments
//! included.

#![no_main]

use hookwise::llm::ToolArguments;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(completion) = hookwise::llm::openai::parse_response(data) else {
        return;
    };
    for call in &completion.message.tool_calls {
        if let ToolArguments::Json { value, raw } = &call.arguments
            && !raw.trim().is_empty()
        {
            // What the model wrote parses to the value kept beside it.
            assert_eq!(
                &serde_json::from_str::<serde_json::Value>(raw).unwrap(),
                value
            );
        }
    }
});
