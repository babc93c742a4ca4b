//! `ToolArguments::parse`: a model's tool-call argument text, whatever it wrote.

#![no_main]

use hookwise::llm::ToolArguments;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data).into_owned();
    match ToolArguments::parse(text.clone()) {
        ToolArguments::Json { value, raw } => {
            // The text is kept exactly as written (OpenAI gets it back on replay).
            assert_eq!(raw, text);
            if text.trim().is_empty() {
                assert_eq!(value, serde_json::json!({}));
            }
            // The parsed value survives a round trip through its own serialization.
            let again = ToolArguments::from_value(value.clone());
            let ToolArguments::Json { value: v2, raw: r2 } = again else {
                panic!("from_value is always Json");
            };
            assert_eq!(v2, value);
            assert_eq!(
                serde_json::from_str::<serde_json::Value>(&r2).unwrap(),
                value
            );
        }
        ToolArguments::Invalid { raw, error } => {
            assert_eq!(raw, text);
            assert!(!error.is_empty());
        }
    }
});
