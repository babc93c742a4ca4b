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

/// Every fixture body, as it is and in the envelopes the adapters look into, and each with one
/// top-level member left out: payloads of every shape the adapters meet.
fn bodies() -> Vec<Value> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let mut bodies = Vec::new();
    for dir in std::fs::read_dir(&root).unwrap() {
        for file in std::fs::read_dir(dir.unwrap().path()).unwrap() {
            let path = file.unwrap().path();
            if path.extension().is_some_and(|e| e == "json") {
                let text = std::fs::read_to_string(&path).unwrap();
                bodies.push(serde_json::from_str::<Value>(&text).unwrap());
            }
        }
    }
    let mut all = Vec::new();
    for body in bodies {
        all.push(json!({"ticket": body.clone(), "event": "Ticket Updated"}));
        all.push(json!({"object": body.clone(), "event": "company.updated", "model": "Company"}));
        all.push(json!({"payload": body.clone(), "event": "integrated_account:created"}));
        if let Some(members) = body.as_object() {
            for key in members.keys() {
                let mut less = members.clone();
                less.remove(key);
                all.push(Value::Object(less));
            }
        }
        all.push(body);
    }
    all
}

#[test]
fn every_adapter_finds_what_it_reads_in_a_payload_parsed_only_as_far_as_it_declares() {
    let bodies = bodies();
    assert!(bodies.len() > 100, "{} bodies", bodies.len());
    for kind in ["happyfox", "planhat", "truto", "generic"] {
        let adapter = crate::connectors::adapter(kind).unwrap();
        let mut reads = crate::ingress::select::Reads::nothing();
        for pattern in adapter
            .reads()
            .expect("every bundled adapter declares its reads")
        {
            reads.pattern(pattern);
        }
        assert!(!reads.is_everything());
        let options = AdapterOptions {
            source: "s".into(),
            ..AdapterOptions::default()
        };
        for body in &bodies {
            let text = serde_json::to_string(body).unwrap();
            let kept = reads.parse(&text).unwrap();
            assert_eq!(
                normalize(adapter, &kept, &options),
                normalize(adapter, body, &options),
                "{kind}: {body}"
            );
        }
    }
}
