//! The Anthropic Messages response parser (body → `Completion`), tool_use inputs included.

#![no_main]

use hookwise::llm::ToolArguments;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(completion) = hookwise::llm::anthropic::parse_response(data) else {
        return;
    };
    for call in &completion.message.tool_calls {
        // Anthropic sends the input as an object: its serialization is the raw text.
        match &call.arguments {
            ToolArguments::Json { value, raw } => {
                assert_eq!(
                    &serde_json::from_str::<serde_json::Value>(raw).unwrap(),
                    value
                );
            }
            ToolArguments::Invalid { .. } => panic!("an input value is always JSON"),
        }
    }
});
