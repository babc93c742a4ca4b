//! Tests for loading handler files (one file, a directory) and for `Handler`'s matching helpers.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;

use super::{DebounceKey, Handler, HandlerError, Mode, load_dir, load_file, parse_handler};

/// A fresh directory under the system temp dir, removed on drop (no `tempfile` dependency).
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let path =
            std::env::temp_dir().join(format!("hookwise-handler-test-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

const MINIMAL: &str = r#"
on = ["planhat.nps.submitted"]
[agent]
prompt = "Triage."
"#;

fn parse(text: &str) -> Result<Handler, Vec<HandlerError>> {
    parse_handler(Path::new("handlers/x.toml"), text)
}

fn keys(errors: &[HandlerError]) -> Vec<&str> {
    errors.iter().map(|e| e.key.as_str()).collect()
}

#[test]
fn full_file_loads_every_field() {
    let dir = TempDir::new();
    let path = dir.write(
        "nps.toml",
        r#"
name = "nps-detractor"
description = "Triage NPS detractors"
enabled = false
on = ["planhat.nps.submitted", "happyfox.ticket.*"]
mode = "approve"
max_attempts = 5

[[when]]
pointer = "/object/score"
op = "<="
value = 6

[[when]]
pointer = "/object/comment"
op = "exists"

[debounce]
period = "30s"
max_wait = "5m"
key = "/object/companyId"

[agent]
prompt = """
You triage detractors.
"""
model = "gpt-4o-mini"
tools = ["happyfox.get_ticket", "planhat.create_task"]
max_steps = 12
deadline = "90s"
"#,
    );
    let h = load_file(&path).unwrap();
    assert_eq!(h.name.as_str(), "nps-detractor");
    assert_eq!(h.description.as_deref(), Some("Triage NPS detractors"));
    assert!(!h.enabled);
    let on: Vec<&str> = h.on.iter().map(|p| p.as_str()).collect();
    assert_eq!(on, ["planhat.nps.submitted", "happyfox.ticket.*"]);
    assert_eq!(h.mode, Mode::Approve);
    assert_eq!(h.max_attempts, Some(5));
    assert_eq!(h.when.len(), 2);
    assert_eq!(h.when[0].pointer(), "/object/score");
    assert_eq!(h.when[0].op(), super::Op::Lte);
    assert_eq!(h.when[0].value(), &json!(6));
    assert_eq!(h.when[1].value(), &json!(true));
    let d = h.debounce.as_ref().unwrap();
    assert_eq!(d.period, Duration::from_secs(30));
    assert_eq!(d.max_wait, Duration::from_secs(300));
    assert_eq!(d.key, DebounceKey::Pointer("/object/companyId".into()));
    assert_eq!(h.agent.prompt, "You triage detractors.\n");
    assert_eq!(h.agent.model.as_deref(), Some("gpt-4o-mini"));
    assert_eq!(
        h.agent.tools,
        ["happyfox.get_ticket", "planhat.create_task"]
    );
    assert_eq!(h.agent.max_steps, 12);
    assert_eq!(h.agent.deadline, Duration::from_secs(90));
    assert_eq!(h.file, path);
}

#[test]
fn defaults_are_applied() {
    let dir = TempDir::new();
    let path = dir.write(
        "nps-detractor.toml",
        &format!("{MINIMAL}\n[debounce]\nperiod = \"30s\"\n"),
    );
    let h = load_file(&path).unwrap();
    assert_eq!(h.name.as_str(), "nps-detractor");
    assert!(h.enabled);
    assert_eq!(h.mode, Mode::DryRun);
    assert_eq!(h.max_attempts, None);
    assert!(h.when.is_empty());
    assert_eq!(h.agent.model, None);
    assert!(h.agent.tools.is_empty());
    assert_eq!(h.agent.max_steps, 8);
    assert_eq!(h.agent.deadline, Duration::from_secs(120));
    let d = h.debounce.unwrap();
    assert_eq!(d.max_wait, Duration::from_secs(300));
    assert_eq!(d.key, DebounceKey::Subject);
    assert!(parse(MINIMAL).unwrap().debounce.is_none());
}

#[test]
fn three_independent_mistakes_give_three_errors() {
    let errors = parse(
        r#"
on = ["planhat.nps.submitted"]
[[when]]
pointer = "/object/comment"
op = "matches"
value = "(unclosed"
[debounce]
period = "soon"
[agent]
prompt = "Triage."
temperature = 0.2
"#,
    )
    .unwrap_err();
    assert_eq!(
        keys(&errors),
        ["when[0].value", "debounce.period", "agent.temperature"],
        "{errors:#?}"
    );
    assert!(
        errors[0].message.contains("invalid regex \"(unclosed\""),
        "{}",
        errors[0].message
    );
    assert!(
        errors[0].message.contains("unclosed group"),
        "{}",
        errors[0].message
    );
    assert_eq!(
        errors[1].to_string(),
        "handlers/x.toml: key `debounce.period`: expected a duration like \"30s\" or \"5m\", found \"soon\""
    );
    assert!(
        errors[2]
            .message
            .contains("prompt, model, tools, scopes, max_steps, deadline")
    );
}

#[test]
fn syntax_error_is_one_error_with_a_line() {
    let errors = parse("on = [\"a.b\"]\n[agent]\nprompt = \n").unwrap_err();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].key, "");
    assert!(
        errors[0].message.contains("line 3, column 10"),
        "{}",
        errors[0].message
    );
    assert!(
        errors[0]
            .to_string()
            .starts_with("handlers/x.toml: invalid TOML at line 3")
    );
}

#[test]
fn each_mistake_names_its_key() {
    let agent = "[agent]\nprompt = \"p\"\n";
    let on = "on = [\"a.b\"]\n";
    let when = |body: &str| format!("{on}[[when]]\n{body}\n{agent}");
    // (file text, expected key, fragment of the message); one case per line reads as a table.
    #[rustfmt::skip]
    let cases: Vec<(String, &str, &str)> = vec![
        (format!("on = []\n{agent}"), "on", "found an empty list"),
        (agent.to_string(), "on", "missing required key"),
        (format!("on = [\"a.b\", \"Happyfox.ticket\"]\n{agent}"), "on[1]", "found \"Happyfox.ticket\""),
        (format!("on = \"a.b\"\n{agent}"), "on", "expected a list of strings, found \"a.b\""),
        (format!("on = [\"a.b\", 7]\n{agent}"), "on[1]", "expected a string, found 7"),
        (format!("name = \"Bad Name\"\n{on}{agent}"), "name", "found \"Bad Name\""),
        (format!("mode = \"yolo\"\n{on}{agent}"), "mode", "expected one of `live`, `dry-run`, `approve`"),
        (format!("max_attempts = 0\n{on}{agent}"), "max_attempts", "from 1 to 50, found 0"),
        (format!("enabled = \"yes\"\n{on}{agent}"), "enabled", "expected a boolean"),
        (format!("colour = 1\n{on}{agent}"), "colour", "unknown key, expected one of: name,"),
        (on.to_string(), "agent", "missing required table [agent]"),
        (format!("{on}agent = 1\n"), "agent", "expected a table [agent]"),
        (format!("{on}[agent]\nprompt = \"  \"\n"), "agent.prompt", "non-empty"),
        (format!("{on}[agent]\nmodel = \"m\"\n"), "agent.prompt", "missing required key"),
        (format!("{on}{agent}model = \"\"\n"), "agent.model", "expected a model name"),
        (format!("{on}{agent}max_steps = 51\n"), "agent.max_steps", "from 1 to 50, found 51"),
        (format!("{on}{agent}deadline = 120\n"), "agent.deadline", "found 120"),
        (format!("{on}{agent}tools = [\"a.b\", 3]\n"), "agent.tools[1]", "expected a string, found 3"),
        (format!("{on}{agent}tools = [\"a.b\", \"happyfox\"]\n"), "agent.tools[1]", "connector.tool_name"),
        (format!("{on}{agent}tools = [\"a.b\", \"c.d\", \"a.b\"]\n"), "agent.tools[2]", "duplicate tool \"a.b\""),
        (format!("{on}{agent}[debounce]\nperiod = \"0s\"\n"), "debounce.period", "greater than zero"),
        (format!("{on}{agent}[debounce]\nmax_wait = \"1m\"\n"), "debounce.period", "missing required key"),
        (format!("{on}{agent}[debounce]\nperiod = \"5m\"\nmax_wait = \"1m\"\n"), "debounce.max_wait", "at least the period"),
        (format!("{on}{agent}[debounce]\nperiod = \"5m\"\nkey = \"ticket\"\n"), "debounce.key", "found \"ticket\""),
        (format!("{on}{agent}[debounce]\nperiod = \"5m\"\nwindow = 3\n"), "debounce.window", "period, max_wait, key"),
        (when("pointer = \"score\"\nop = \"==\"\nvalue = 1"), "when[0].pointer", "starts with \"/\""),
        (when("pointer = \"/s\"\nop = \"~=\"\nvalue = 1"), "when[0].op", "found \"~=\""),
        (when("pointer = \"/s\"\nop = \"==\""), "when[0].value", "expected a `value` for op `equals`"),
        (when("pointer = \"/s\"\nop = \"in\"\nvalue = 1"), "when[0].value", "an array of values"),
        (when("pointer = \"/s\"\nop = \"exists\"\nvalue = \"yes\""), "when[0].value", "true or false"),
        (when("pointer = \"/s\"\nop = \"matches\"\nvalue = \"[\""), "when[0].value", "invalid regex"),
        (when("pointer = \"/s\"\nop = \"<\"\nvalue = nan"), "when[0].value", "expected a finite number"),
        (when("op = \"exists\""), "when[0].pointer", "missing required key"),
        (when("pointer = \"/s\"\nop = \"exists\"\nvalu = true"), "when[0].valu", "pointer, op, value"),
        (format!("{on}when = {{ pointer = \"/s\", op = \"exists\" }}\n{agent}"), "when", "array of tables"),
        (format!("{on}when = [1]\n{agent}"), "when[0]", "expected a table"),
    ];
    for (text, key, fragment) in cases {
        let errors = parse(&text).unwrap_err();
        assert_eq!(keys(&errors), [key], "{text}\n{errors:#?}");
        assert!(
            errors[0].message.contains(fragment),
            "{text}\n{}",
            errors[0].message
        );
    }
}

#[test]
fn invalid_file_stem_needs_an_explicit_name() {
    let errors = parse_handler(Path::new("handlers/NPS Detractor.toml"), MINIMAL).unwrap_err();
    assert_eq!(keys(&errors), ["name"]);
    assert!(errors[0].message.contains("no `name` given"));
    let named = format!("name = \"nps\"\n{MINIMAL}");
    let h = parse_handler(Path::new("handlers/NPS Detractor.toml"), &named).unwrap();
    assert_eq!(h.name.as_str(), "nps");
}

#[test]
fn load_dir_sorts_skips_and_finds_duplicates() {
    let dir = TempDir::new();
    // Several files written out of order, so directory order is unlikely to be sorted by luck.
    for name in [
        "e-fifth", "b-second", "f-sixth", "a-first", "d-fourth", "c-third",
    ] {
        dir.write(&format!("{name}.toml"), MINIMAL);
    }
    dir.write("README.md", "not a handler");
    dir.write(".#a-first.toml", "editor lock file, not TOML");
    fs::create_dir(dir.0.join("nested.toml")).unwrap();
    let handlers = load_dir(&dir.0).unwrap();
    let names: Vec<&str> = handlers.iter().map(|h| h.name.as_str()).collect();
    let sorted = [
        "a-first", "b-second", "c-third", "d-fourth", "e-fifth", "f-sixth",
    ];
    assert_eq!(names, sorted);

    let first = dir.0.join("a-first.toml");
    let dup = dir.write("c-dup.toml", &format!("name = \"a-first\"\n{MINIMAL}"));
    let errors = load_dir(&dir.0).unwrap_err();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0].file, dup);
    assert_eq!(errors[0].key, "name");
    let shown = errors[0].to_string();
    assert!(
        shown.contains(&dup.display().to_string()) && shown.contains(&first.display().to_string()),
        "{shown}"
    );
}

#[test]
fn load_dir_reports_errors_of_every_file() {
    let dir = TempDir::new();
    dir.write("one.toml", "on = []\n[agent]\nprompt = \"p\"\n");
    dir.write("two.toml", "on = [\"a.b\"]\n");
    let errors = load_dir(&dir.0).unwrap_err();
    let files: Vec<_> = errors
        .iter()
        .map(|e| e.file.file_name().unwrap().to_str().unwrap())
        .collect();
    assert_eq!(files, ["one.toml", "two.toml"]);
}

#[test]
fn load_dir_missing_and_empty() {
    let dir = TempDir::new();
    assert!(load_dir(&dir.0).unwrap().is_empty());
    let missing = dir.0.join("nope");
    let errors = load_dir(&missing).unwrap_err();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].file, missing);
    assert!(
        errors[0]
            .to_string()
            .contains("cannot read handler directory"),
        "{}",
        errors[0]
    );
    let errors = load_file(&dir.0.join("gone.toml")).unwrap_err();
    assert!(errors[0].message.contains("cannot read handler file"));
}

#[test]
fn matches_needs_enabled_kind_and_every_condition() {
    let text = r#"
on = ["happyfox.ticket.*"]
[[when]]
pointer = "/priority"
op = "in"
value = ["high", "urgent"]
[[when]]
pointer = "/status"
op = "!="
value = "closed"
[agent]
prompt = "p"
"#;
    let h = parse(text).unwrap();
    let hit = json!({"priority": "urgent", "status": "open"});
    assert!(h.matches("happyfox.ticket.created", &hit));
    assert!(!h.matches("happyfox.tickets.created", &hit));
    assert!(!h.matches("planhat.nps.submitted", &hit));
    assert!(!h.matches(
        "happyfox.ticket.created",
        &json!({"priority": "urgent", "status": "closed"})
    ));
    assert!(!h.matches(
        "happyfox.ticket.created",
        &json!({"priority": "low", "status": "open"})
    ));
    let disabled = parse(&format!("enabled = false\n{text}")).unwrap();
    assert!(!disabled.matches("happyfox.ticket.created", &hit));
}

#[test]
fn debounce_subject_per_key_kind() {
    let with_key = |key: &str| {
        parse(&format!(
            "{MINIMAL}[debounce]\nperiod = \"1m\"\nkey = \"{key}\"\n"
        ))
        .unwrap()
    };
    let payload = json!({"company": {"id": 42, "slug": "acme", "tags": ["a", "b"], "none": null}});
    assert_eq!(
        parse(MINIMAL).unwrap().debounce_subject("T-1", &payload),
        "T-1"
    );
    assert_eq!(with_key("subject").debounce_subject("T-1", &payload), "T-1");
    assert_eq!(with_key("account").debounce_subject("T-1", &payload), "*");
    assert_eq!(
        with_key("/company/slug").debounce_subject("T-1", &payload),
        "acme"
    );
    assert_eq!(
        with_key("/company/id").debounce_subject("T-1", &payload),
        "42"
    );
    assert_eq!(
        with_key("/company/tags").debounce_subject("T-1", &payload),
        r#"["a","b"]"#
    );
    assert_eq!(
        with_key("/company/missing").debounce_subject("T-1", &payload),
        "T-1"
    );
    assert_eq!(
        with_key("/company/none").debounce_subject("T-1", &payload),
        "T-1"
    );
}

#[test]
fn toml_dates_compare_with_iso_strings() {
    let h = parse(&format!(
        "{MINIMAL}[[when]]\npointer = \"/due\"\nop = \">=\"\nvalue = 2024-05-01\n"
    ))
    .unwrap();
    assert!(h.matches(
        "planhat.nps.submitted",
        &json!({"due": "2024-06-01T00:00:00Z"})
    ));
    assert!(!h.matches("planhat.nps.submitted", &json!({"due": "2024-04-30"})));
}

#[test]
fn top_level_key_below_a_table_gets_a_hint() {
    let errors = parse("[agent]\nprompt = \"p\"\non = [\"a.b\"]\ncolour = 1\n").unwrap_err();
    assert_eq!(keys(&errors), ["on", "agent.colour", "agent.on"]);
    assert!(
        !errors[1].message.contains("top-level"),
        "{}",
        errors[1].message
    );
    assert!(
        errors[2]
            .message
            .contains("move it above the first [table]"),
        "{}",
        errors[2].message
    );
}

#[test]
fn scopes_load_with_their_rules() {
    let handler = parse(
        r#"
on = ["happyfox.ticket.created"]
[agent]
prompt = "Escalate."
tools = ["happyfox.update_ticket", "planhat.create_task"]

[agent.scopes."happyfox.update_ticket"]
allow = ["ticket_id", "priority"]

[agent.scopes."happyfox.update_ticket".args.priority]
one_of = [3, 4]

[agent.scopes."planhat.create_task".args.mainType]
equals = "task"

[agent.scopes."planhat.create_task".args.action]
max_length = 80
pattern = '^Renewal risk \((high|medium)\): '
"#,
    )
    .unwrap();
    let scopes = &handler.agent.scopes;
    assert_eq!(scopes.len(), 2);
    let update = &scopes["happyfox.update_ticket"];
    assert_eq!(
        update.allow.as_deref(),
        Some(&["ticket_id".to_string(), "priority".to_string()][..])
    );
    assert_eq!(
        update.args["priority"].one_of,
        Some(vec![json!(3), json!(4)])
    );
    let task = &scopes["planhat.create_task"];
    assert_eq!(task.allow, None, "no `allow`: every argument stays");
    assert_eq!(task.args["mainType"].equals, Some(json!("task")));
    assert_eq!(task.args["action"].max_length, Some(80));
    let pattern = task.args["action"].pattern.as_ref().unwrap();
    assert!(pattern.is_match("Renewal risk (high): Acme"));
    assert!(!pattern.is_match("Renewal risk (low): Acme"));
}

#[test]
fn every_scope_mistake_names_its_key() {
    let errors = parse(
        r#"
on = ["happyfox.ticket.created"]
[agent]
prompt = "Escalate."
tools = ["happyfox.update_ticket", "happyfox.add_private_note", "planhat.create_task"]

[agent.scopes."happyfox.reply_to_customer"]
allow = ["ticket_id"]

[agent.scopes."happyfox.update_ticket"]
allow = ["ticket_id", "priority", "priority"]
alow = ["status"]

[agent.scopes."happyfox.update_ticket".args.status]
equals = 2

[agent.scopes."happyfox.update_ticket".args.priority]
equals = 4
one_of = [3, 4]

[agent.scopes."happyfox.add_private_note".args.html]
max_length = 0
pattern = "(unclosed"

[agent.scopes."happyfox.add_private_note".args.time_spent]
at_most = 5

[agent.scopes."planhat.create_task"]
"#,
    )
    .unwrap_err();
    assert_eq!(
        keys(&errors),
        [
            r#"agent.scopes."happyfox.add_private_note".args.html.max_length"#,
            r#"agent.scopes."happyfox.add_private_note".args.html.pattern"#,
            r#"agent.scopes."happyfox.add_private_note".args.time_spent.at_most"#,
            r#"agent.scopes."happyfox.reply_to_customer""#,
            r#"agent.scopes."happyfox.update_ticket".alow"#,
            r#"agent.scopes."happyfox.update_ticket".allow[2]"#,
            r#"agent.scopes."happyfox.update_ticket".args.priority"#,
            r#"agent.scopes."happyfox.update_ticket".args.status"#,
            r#"agent.scopes."planhat.create_task""#,
        ],
        "{errors:#?}"
    );
    let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
    let text = text.join("\n");
    assert!(text.contains("is not in agent.tools"), "{text}");
    assert!(text.contains("which `allow` leaves out"), "{text}");
    assert!(
        text.contains("`equals` and `one_of` both fix the value"),
        "{text}"
    );
    assert!(text.contains("an empty scope narrows nothing"), "{text}");
}
