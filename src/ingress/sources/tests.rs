//! The adapters' shared reading helpers and the checks every payload passes.

use super::*;
use serde_json::json;

#[test]
fn non_objects_are_rejected() {
    for body in [json!([1, 2]), json!("x"), json!(null)] {
        assert!(normalize(&Generic, &body, &AdapterOptions::default()).is_err());
    }
}

#[test]
fn times_in_every_form_senders_use() {
    let t = |v: Value| parse_time(&v).map(|t| t.timestamp_millis());
    assert_eq!(t(json!("2026-03-02 14:05:11")), Some(1_772_460_311_000));
    assert_eq!(t(json!("2026-03-02T14:05:11Z")), Some(1_772_460_311_000));
    assert_eq!(t(json!(1_772_460_311)), Some(1_772_460_311_000));
    assert_eq!(t(json!(1_772_460_311_000_i64)), Some(1_772_460_311_000));
    assert_eq!(t(json!("yesterday")), None);
}

#[test]
fn dotted_names() {
    assert_eq!(dotted("Ticket Created"), "ticket.created");
    assert_eq!(dotted("record:updated"), "record.updated");
    assert_eq!(dotted("nps.created"), "nps.created");
    assert_eq!(dotted("  "), "");
}
