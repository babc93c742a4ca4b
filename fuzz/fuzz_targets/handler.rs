//! Handler files: `parse_handler` on arbitrary text (TOML, `on` kind patterns, `when`
//! conditions, debounce, agent), then `when` evaluated against an arbitrary event by
//! `Handler::matches` / `Handler::mismatch`, and `debounce_subject`.
//!
//! Input: the handler file, a NUL byte, the event kind, a NUL byte, the payload JSON.

#![no_main]

use hookwise::handler::parse_handler;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |b| *b == 0);
    let text = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let kind = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let payload = parts.next().unwrap_or_default();
    let Ok(handler) = parse_handler(Path::new("handlers/fuzz.toml"), &text) else {
        return;
    };
    let payload: serde_json::Value = serde_json::from_slice(payload).unwrap_or_default();
    let matches = handler.matches(&kind, &payload);
    let mismatch = handler.mismatch(&kind, &payload);
    assert_eq!(matches, mismatch.is_none(), "{mismatch:?}");
    for c in &handler.when {
        // Every condition prints (mismatch names it) and evaluates alone.
        let _ = (c.to_string(), c.holds(&payload));
    }
    let _ = handler.debounce_subject("subject", &payload);
});
