//! Data-driven tests for condition evaluation and for the shape checks made at load.

use super::{Condition, Op};
use serde_json::{Value, json};

fn payload() -> Value {
    json!({
        "object": {
            "score": 6,
            "score_str": "6",
            "ratio": 0.5,
            "name": "Acme Corp",
            "tags": ["vip", "churn-risk", 42],
            "created": "2024-05-01T10:00:00Z",
            "nothing": null,
            "active": true,
            "id": 9007199254740993u64,
            "id_str": "9007199254740993",
            "nested": {"a": 1, "b": [1, 2]},
            "a/b": "slash",
            "m~n": "tilde"
        }
    })
}

#[test]
fn op_table() {
    // (pointer, op, value, expected)
    let cases: Vec<(&str, &str, Option<Value>, bool)> = vec![
        // equals, with numeric tolerance in both directions
        ("/object/score", "equals", Some(json!(6)), true),
        ("/object/score", "==", Some(json!(6.0)), true),
        ("/object/score", "=", Some(json!(7)), false),
        ("/object/score_str", "equals", Some(json!(6)), true),
        ("/object/score_str", "equals", Some(json!(6.0)), true),
        ("/object/score", "equals", Some(json!("6")), true),
        ("/object/score_str", "equals", Some(json!("6")), true),
        ("/object/score_str", "equals", Some(json!("6.0")), false),
        ("/object/name", "equals", Some(json!("Acme Corp")), true),
        ("/object/name", "equals", Some(json!("acme corp")), false),
        ("/object/name", "equals", Some(json!(6)), false),
        ("/object/active", "equals", Some(json!(true)), true),
        ("/object/active", "equals", Some(json!("true")), false),
        (
            "/object/id",
            "equals",
            Some(json!(9007199254740993u64)),
            true,
        ),
        (
            "/object/id",
            "equals",
            Some(json!(9007199254740992u64)),
            false,
        ),
        (
            "/object/id_str",
            "equals",
            Some(json!(9007199254740993u64)),
            true,
        ),
        (
            "/object/id_str",
            "equals",
            Some(json!(9007199254740992u64)),
            false,
        ),
        (
            "/object/nested",
            "equals",
            Some(json!({"a": 1.0, "b": ["1", 2]})),
            true,
        ),
        ("/object/nested", "equals", Some(json!({"a": 1})), false),
        ("/object/a~1b", "equals", Some(json!("slash")), true),
        ("/object/m~0n", "equals", Some(json!("tilde")), true),
        ("/object/missing", "equals", Some(json!(6)), false),
        ("/object/nothing", "equals", Some(json!("")), false),
        // not_equals: false when there is nothing to compare
        ("/object/score", "not_equals", Some(json!(7)), true),
        ("/object/score_str", "!=", Some(json!(6)), false),
        ("/object/missing", "not_equals", Some(json!(6)), false),
        ("/object/nothing", "not_equals", Some(json!(6)), false),
        // ordering
        ("/object/score", "lte", Some(json!(6)), true),
        ("/object/score", "<=", Some(json!(5)), false),
        ("/object/score", "lt", Some(json!(6)), false),
        ("/object/score", "<", Some(json!(6.5)), true),
        ("/object/score", "gt", Some(json!(5)), true),
        ("/object/score", ">", Some(json!(6)), false),
        ("/object/score", "gte", Some(json!(6)), true),
        ("/object/score", ">=", Some(json!(7)), false),
        ("/object/score_str", "<=", Some(json!(6)), true),
        ("/object/score_str", ">", Some(json!(10)), false),
        ("/object/score", "<=", Some(json!("6")), true),
        ("/object/ratio", "lt", Some(json!(1)), true),
        ("/object/created", "gte", Some(json!("2024-01-01")), true),
        ("/object/created", "lt", Some(json!("2024-01-01")), false),
        ("/object/name", "lt", Some(json!(6)), false),
        ("/object/score", "lt", Some(json!("2024-01-01")), false),
        ("/object/name", "gt", Some(json!("6")), false),
        ("/object/active", "gt", Some(json!(0)), false),
        ("/object/missing", "lte", Some(json!(6)), false),
        ("/object/nothing", "lte", Some(json!(6)), false),
        // in
        ("/object/score", "in", Some(json!([1, 6, 9])), true),
        ("/object/score_str", "in", Some(json!([1, 6, 9])), true),
        ("/object/score", "in", Some(json!([1, 9])), false),
        (
            "/object/name",
            "in",
            Some(json!(["Acme Corp", "Other"])),
            true,
        ),
        ("/object/name", "in", Some(json!([])), false),
        ("/object/missing", "in", Some(json!([1])), false),
        // contains
        ("/object/name", "contains", Some(json!("Acme")), true),
        ("/object/name", "contains", Some(json!("acme")), false),
        ("/object/tags", "contains", Some(json!("vip")), true),
        ("/object/tags", "contains", Some(json!("VIP")), false),
        ("/object/tags", "contains", Some(json!("42")), true),
        ("/object/score", "contains", Some(json!(6)), false),
        ("/object/missing", "contains", Some(json!("x")), false),
        // exists
        ("/object/score", "exists", None, true),
        ("/object/score", "exists", Some(json!(true)), true),
        ("/object/score", "exists", Some(json!(false)), false),
        ("/object/missing", "exists", None, false),
        ("/object/missing", "exists", Some(json!(false)), true),
        ("/object/nothing", "exists", Some(json!(true)), false),
        ("/object/nothing", "exists", Some(json!(false)), true),
        ("", "exists", None, true),
        // matches (unanchored, as `Regex::is_match`)
        ("/object/name", "matches", Some(json!("^Acme")), true),
        ("/object/name", "matches", Some(json!("Corp$")), true),
        ("/object/name", "matches", Some(json!("^Corp")), false),
        ("/object/name", "matches", Some(json!("(?i)acme")), true),
        ("/object/score", "matches", Some(json!("6")), false),
        ("/object/missing", "matches", Some(json!(".*")), false),
    ];
    let doc = payload();
    for (pointer, op, value, expected) in cases {
        let label = format!("{pointer} {op} {value:?}");
        let op = Op::parse(op).unwrap_or_else(|e| panic!("{label}: {e}"));
        let cond = Condition::new(pointer, op, value).unwrap_or_else(|e| panic!("{label}: {e}"));
        assert_eq!(cond.holds(&doc), expected, "{label}");
    }
}

#[test]
fn shape_errors() {
    // (pointer, op, value, fragment of the message)
    let cases: Vec<(&str, Op, Option<Value>, &str)> = vec![
        (
            "object/score",
            Op::Equals,
            Some(json!(1)),
            "starts with \"/\"",
        ),
        (
            "/object/~2",
            Op::Equals,
            Some(json!(1)),
            "followed by 0 or 1",
        ),
        ("/x", Op::Equals, None, "expected a `value` for op `equals`"),
        (
            "/x",
            Op::In,
            Some(json!(1)),
            "expected an array of values for op `in`, found 1",
        ),
        (
            "/x",
            Op::Exists,
            Some(json!("yes")),
            "expected true or false for op `exists`",
        ),
        (
            "/x",
            Op::Lt,
            Some(json!([1])),
            "expected a number or a string for op `lt`",
        ),
        ("/x", Op::Matches, Some(json!(1)), "expected a regex string"),
        ("/x", Op::Matches, Some(json!("(")), "invalid regex \"(\""),
    ];
    for (pointer, op, value, fragment) in cases {
        let err = Condition::new(pointer, op, value).unwrap_err();
        assert!(err.contains(fragment), "{pointer} {op}: {err}");
    }
}

#[test]
fn op_names_round_trip_and_unknown_ops_fail() {
    for op in [
        Op::Equals,
        Op::NotEquals,
        Op::Lt,
        Op::Lte,
        Op::Gt,
        Op::Gte,
        Op::In,
        Op::Contains,
        Op::Exists,
        Op::Matches,
    ] {
        assert_eq!(Op::parse(op.as_str()), Ok(op));
    }
    assert!(Op::parse("~=").unwrap_err().contains("found \"~=\""));
}
