//! Any other JSON sender: the event name, id, account and subject come from the source's config.

use super::{AdapterOptions, Normalized, dotted, id_string};
use serde_json::Value;

pub fn normalize(payload: &Value, options: &AdapterOptions) -> Result<Normalized, String> {
    let name = match (&options.event, &options.event_pointer) {
        (Some(fixed), _) => fixed.clone(),
        (None, Some(pointer)) => payload
            .pointer(pointer)
            .and_then(id_string)
            .ok_or_else(|| format!("no event name at {pointer}"))?,
        (None, None) => "event".into(),
    };
    let name = dotted(&name);
    if name.is_empty() {
        return Err("the event name is empty".into());
    }
    Ok(Normalized {
        kind: format!("{}.{name}", options.source),
        ..Normalized::default()
    })
}
