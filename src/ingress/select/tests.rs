use super::Reads;
use serde_json::{Value, json};

#[test]
fn what_is_read_is_found_as_in_the_full_parse_and_the_rest_is_left_out() {
    let body = r#"{"ticket": {"id": 7, "subject": "long text", "updates": [
        {"update_id": 1, "by": {"type": "user", "id": 3}, "message": "hello"},
        {"update_id": 2, "by": {"type": "staff", "id": "9"}}]},
        "event": "ticket_created", "other": [1, 2, {"deep": true}]}"#;
    let full: Value = serde_json::from_str(body).unwrap();
    let kept = Reads::patterns(&["/ticket/id", "/ticket/updates/*/by", "/event", "/missing/x"])
        .parse(body)
        .unwrap();
    assert_eq!(
        kept,
        json!({"ticket": {"id": 7, "updates": [
            {"by": {"type": "user", "id": 3}},
            {"by": {"type": "staff", "id": "9"}}]},
            "event": "ticket_created"})
    );
    for p in [
        "/ticket/id",
        "/ticket/updates/1/by/id",
        "/event",
        "/missing",
    ] {
        assert_eq!(kept.pointer(p), full.pointer(p), "{p}");
    }
    assert_eq!(Reads::everything().parse(body).unwrap(), full);
}

#[test]
fn array_elements_keep_their_index_and_the_array_its_length() {
    let body = r#"{"a": [10, {"x": 1, "y": 2}, 30]}"#;
    let kept = Reads::patterns(&["/a/1/x"]).parse(body).unwrap();
    assert_eq!(kept, json!({"a": [null, {"x": 1}, null]}));
    // "01" is not an index for a JSON pointer, so it reads nothing here, as in the full parse.
    let kept = Reads::patterns(&["/a/01"]).parse(body).unwrap();
    assert_eq!(kept, json!({"a": [null, null, null]}));
}

#[test]
fn an_element_named_and_matched_by_a_star_keeps_what_both_read() {
    let body = r#"{"updates": [
        {"update_id": 1, "by": {"id": 3}, "body": "first"},
        {"update_id": 2, "by": {"id": 4}, "body": "second"}]}"#;
    let expected = json!({"updates": [
        {"update_id": 1, "by": {"id": 3}, "body": "first"},
        {"update_id": 2, "by": {"id": 4}}]});
    // In either order, and when the two come from sets merged together.
    let mut a = Reads::patterns(&["/updates/*/by", "/updates/*/update_id"]);
    a.pointer("/updates/0/body");
    assert_eq!(a.parse(body).unwrap(), expected);
    let mut b = Reads::nothing();
    b.pointer("/updates/0/body");
    b.pattern("/updates/*/by").pattern("/updates/*/update_id");
    assert_eq!(b.parse(body).unwrap(), expected);
    let mut c = Reads::nothing();
    c.pointer("/updates/0/body");
    c.merge(&Reads::patterns(&["/updates/*/by", "/updates/*/update_id"]));
    assert_eq!(c.parse(body).unwrap(), expected);
}

#[test]
fn a_scalar_where_an_object_was_expected_is_kept_as_it_is() {
    let kept = Reads::patterns(&["/ticket/id"])
        .parse(r#"{"ticket": "t-1"}"#)
        .unwrap();
    assert_eq!(kept, json!({"ticket": "t-1"}));
    let kept = Reads::patterns(&["/x"]).parse("[1, 2]").unwrap();
    assert_eq!(kept, json!([null, null]));
}

#[test]
fn pointers_are_unescaped_and_a_star_in_a_users_pointer_is_a_name() {
    let body = r#"{"a/b": 1, "m~n": 2, "*": 3, "z": 4}"#;
    let mut r = Reads::nothing();
    r.pointer("/a~1b").pointer("/m~0n").pointer("/*");
    assert_eq!(r.parse(body).unwrap(), json!({"a/b": 1, "m~n": 2, "*": 3}));
    assert_eq!(
        Reads::patterns(&["/*"]).parse(body).unwrap(),
        json!({"a/b": 1, "m~n": 2, "*": 3, "z": 4})
    );
}

#[test]
fn sets_merge_and_a_pointer_to_the_root_reads_everything() {
    let mut a = Reads::patterns(&["/a/x"]);
    a.merge(&Reads::patterns(&["/a/y", "/b"]));
    let body = r#"{"a": {"x": 1, "y": 2, "z": 3}, "b": [1], "c": 0}"#;
    assert_eq!(
        a.parse(body).unwrap(),
        json!({"a": {"x": 1, "y": 2}, "b": [1]})
    );
    a.pointer("");
    assert!(a.is_everything());
}

#[test]
fn a_body_is_refused_exactly_where_the_full_parse_refuses_it() {
    let deep = format!("{{\"skipped\": {}{}}}", "[".repeat(200), "]".repeat(200));
    let cases = [
        deep.as_str(),
        r#"{"skipped": "\ud800"}"#,
        r#"{"skipped": "\x"}"#,
        "{\"skipped\": \"a\u{1}b\"}",
        r#"{"skipped": 1} trailing"#,
        r#"{"skipped": [1,]}"#,
        r#"{"skipped": 01}"#,
        r#"{"read": 1e999}"#,
        "",
        "\u{feff}{}",
        r#"{"a": 1, "a": 2, "skipped": {"b": null}}"#,
        r#"{"skipped": "\ud83d\ude00", "read": "\u00e9"}"#,
        r#"  [ {"read": -0.0} ]  "#,
    ];
    let r = Reads::patterns(&["/read", "/a", "/0/read"]);
    for body in cases {
        let full = serde_json::from_str::<Value>(body);
        let kept = r.parse(body);
        assert_eq!(
            full.as_ref().map_err(ToString::to_string).err(),
            kept.as_ref().map_err(ToString::to_string).err(),
            "{body}"
        );
        if let (Ok(full), Ok(kept)) = (full, kept) {
            for p in ["/read", "/a", "/0/read"] {
                assert_eq!(full.pointer(p), kept.pointer(p));
            }
        }
    }
}
