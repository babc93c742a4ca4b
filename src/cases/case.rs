//! A test case file (`handlers/tests/<handler>/<case>.toml`) and its matchers.
//!
//! Read strictly: an unknown key, a matcher of no known kind, a regex that does not compile or a
//! write expected of a tool the handler may not call is an error naming the file and the key.

use chrono::{DateTime, Utc};
use regex::Regex;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The clock a case runs at when it names none: fixed, so the conversation is the same on every
/// run and its cassette keeps matching.
pub const DEFAULT_AT: &str = "2026-01-05T09:00:00Z";

/// Outcomes a run can end with (`RunRecord::outcome`).
const OUTCOMES: &[&str] = &["done", "failed", "max_steps", "deadline", "deferred"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile {
    #[serde(default)]
    description: Option<String>,
    /// Fixture files delivered in order, relative to the current directory (like every path in
    /// hookwise.toml).
    events: Vec<PathBuf>,
    /// The source the fixtures are delivered to (default: each fixture's directory name).
    #[serde(default)]
    source: Option<String>,
    /// When the events arrive and the run happens (RFC 3339, as a quoted string).
    #[serde(default)]
    at: Option<String>,
    #[serde(default)]
    upstream: Vec<GivenFile>,
    #[serde(default)]
    expect: ExpectFile,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GivenFile {
    tool: String,
    #[serde(default)]
    arguments: Option<Value>,
    #[serde(default)]
    result: Option<Value>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectFile {
    #[serde(default = "yes")]
    triggers: bool,
    #[serde(default)]
    outcome: Option<String>,
    #[serde(default)]
    writes: Vec<WriteFile>,
    #[serde(default)]
    never: Vec<String>,
    #[serde(default = "yes")]
    only_listed_writes: bool,
}

impl Default for ExpectFile {
    fn default() -> Self {
        Self {
            triggers: true,
            outcome: None,
            writes: Vec::new(),
            never: Vec::new(),
            only_listed_writes: true,
        }
    }
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WriteFile {
    tool: String,
    #[serde(default)]
    count: Option<u32>,
    #[serde(default)]
    arguments: BTreeMap<String, Value>,
}

/// One loaded test case.
#[derive(Debug)]
pub struct Case {
    /// `<handler>/<case>`, as reports name it.
    pub id: String,
    pub handler: String,
    pub name: String,
    pub path: PathBuf,
    pub description: Option<String>,
    pub events: Vec<PathBuf>,
    pub source: Option<String>,
    pub at: DateTime<Utc>,
    pub upstream: Vec<Given>,
    pub expect: Expect,
}

impl Case {
    /// `<case>.cassette.json` beside the case file.
    pub fn cassette_path(&self) -> PathBuf {
        self.path.with_extension("cassette.json")
    }
}

/// A tool result the case provides: the upstream state the handler's reads see.
#[derive(Debug, Clone)]
pub struct Given {
    pub tool: String,
    /// None: whatever the arguments. Else the call's arguments must include these.
    pub arguments: Option<Value>,
    /// `Ok(result)`, or `Err(message)`: the upstream refuses the call with this message.
    pub outcome: Result<Value, String>,
}

#[derive(Debug)]
pub struct Expect {
    pub triggers: bool,
    pub outcome: String,
    pub writes: Vec<WriteExpect>,
    pub never: Vec<String>,
    pub only_listed_writes: bool,
}

#[derive(Debug)]
pub struct WriteExpect {
    pub tool: String,
    /// How many writes of `tool` must match `arguments`.
    pub count: u32,
    pub arguments: BTreeMap<String, Matcher>,
}

/// How an argument's value is judged.
#[derive(Debug, Clone)]
pub enum Matcher {
    /// Equal as JSON (a plain value, or `{ exact = ... }`).
    Exact(Value),
    /// An object with at least these keys, each matching as a subset; an array holding at least
    /// these elements.
    Subset(Value),
    /// A string holding this text, or an array holding this element.
    Contains(Value),
    /// A string matching this regular expression (unanchored: use `^...$` for the whole value).
    Regex(Regex),
    /// Present, any value.
    Any,
    /// Not set at all.
    Absent,
}

const MATCHER_KEYS: &[&str] = &["exact", "subset", "contains", "regex", "any", "absent"];

impl Matcher {
    fn parse(value: Value) -> Result<Matcher, String> {
        let Value::Object(map) = &value else {
            return Ok(Matcher::Exact(value));
        };
        let mut keys = map.keys().filter(|k| MATCHER_KEYS.contains(&k.as_str()));
        let Some(key) = keys.next() else {
            return Ok(Matcher::Exact(value));
        };
        if map.len() > 1 {
            return Err(format!(
                "a matcher has one key ({}), found {}; to match an object literally, write {{ exact = {{ ... }} }}",
                MATCHER_KEYS.join(", "),
                map.keys().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
        let inner = map[key].clone();
        Ok(match key.as_str() {
            "exact" => Matcher::Exact(inner),
            "subset" => Matcher::Subset(inner),
            "contains" => Matcher::Contains(inner),
            "regex" => {
                let pattern = inner
                    .as_str()
                    .ok_or_else(|| "regex takes a string".to_string())?;
                Matcher::Regex(Regex::new(pattern).map_err(|e| format!("invalid regex: {e}"))?)
            }
            "any" | "absent" => {
                if inner != Value::Bool(true) {
                    return Err(format!("write {key} = true"));
                }
                if key == "any" {
                    Matcher::Any
                } else {
                    Matcher::Absent
                }
            }
            _ => unreachable!("filtered by MATCHER_KEYS"),
        })
    }

    /// Whether `value` (None: the argument is not set) matches.
    pub fn matches(&self, value: Option<&Value>) -> bool {
        match (self, value) {
            (Matcher::Absent, value) => value.is_none(),
            (_, None) => false,
            (Matcher::Any, Some(_)) => true,
            (Matcher::Exact(want), Some(got)) => loosely_equal(want, got),
            (Matcher::Subset(want), Some(got)) => subset(want, got),
            (Matcher::Contains(want), Some(got)) => match (want, got) {
                (Value::String(want), Value::String(got)) => got.contains(want.as_str()),
                (want, Value::Array(items)) => items.iter().any(|i| subset(want, i)),
                _ => false,
            },
            (Matcher::Regex(re), Some(Value::String(got))) => re.is_match(got),
            (Matcher::Regex(_), Some(_)) => false,
        }
    }

    /// How the matcher reads in a report.
    pub fn describe(&self) -> String {
        match self {
            Matcher::Exact(v) => format!("= {v}"),
            Matcher::Subset(v) => format!("a superset of {v}"),
            Matcher::Contains(v) => format!("containing {v}"),
            Matcher::Regex(re) => format!("matching /{}/", re.as_str()),
            Matcher::Any => "set".into(),
            Matcher::Absent => "not set".into(),
        }
    }
}

/// JSON equality where numbers compare by value (TOML's `5` and the model's `5.0` are equal).
fn loosely_equal(want: &Value, got: &Value) -> bool {
    match (want, got) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(a, b)| loosely_equal(a, b))
        }
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len()
                && a.iter()
                    .all(|(k, v)| b.get(k).is_some_and(|w| loosely_equal(v, w)))
        }
        (a, b) => a == b,
    }
}

/// `want` is contained in `got`: every key of an object (recursively), every element of an
/// array; scalars equal.
pub fn subset(want: &Value, got: &Value) -> bool {
    match (want, got) {
        (Value::Object(want), Value::Object(got)) => want
            .iter()
            .all(|(k, v)| got.get(k).is_some_and(|g| subset(v, g))),
        (Value::Array(want), Value::Array(got)) => {
            want.iter().all(|w| got.iter().any(|g| subset(w, g)))
        }
        (want, got) => loosely_equal(want, got),
    }
}

/// Reads one case file. `allowed` is the handler's allow-list: an expected write of any other
/// tool could never happen.
pub fn load(path: &Path, handler: &str, allowed: &[String]) -> Result<Case, String> {
    let label = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| format!("{label}: cannot read: {e}"))?;
    let file: CaseFile = toml::from_str(&text).map_err(|e| {
        let message = e.message().trim_end();
        match e.span() {
            Some(span) => {
                let line = text[..span.start].matches('\n').count() + 1;
                format!("{label}:{line}: {message}")
            }
            None => format!("{label}: {message}"),
        }
    })?;
    let problem = |key: &str, what: String| format!("{label}: {key}: {what}");
    if file.events.is_empty() {
        return Err(problem("events", "list at least one fixture file".into()));
    }
    let at = file.at.as_deref().unwrap_or(DEFAULT_AT);
    let at = DateTime::parse_from_rfc3339(at)
        .map_err(|e| problem("at", format!("{at:?} is not an RFC 3339 time: {e}")))?
        .with_timezone(&Utc);
    let mut upstream = Vec::new();
    for (n, given) in file.upstream.into_iter().enumerate() {
        let key = format!("upstream[{n}]");
        let outcome = match (given.result, given.error) {
            (Some(result), None) => Ok(result),
            (None, Some(error)) => Err(error),
            _ => return Err(problem(&key, "give either `result` or `error`".into())),
        };
        upstream.push(Given {
            tool: given.tool,
            arguments: given.arguments,
            outcome,
        });
    }
    let outcome = file.expect.outcome.unwrap_or_else(|| "done".into());
    if !OUTCOMES.contains(&outcome.as_str()) {
        return Err(problem(
            "expect.outcome",
            format!(
                "{outcome:?} is not an outcome; one of {}",
                OUTCOMES.join(", ")
            ),
        ));
    }
    let mut writes = Vec::new();
    for (n, write) in file.expect.writes.into_iter().enumerate() {
        let key = format!("expect.writes[{n}]");
        if !allowed.contains(&write.tool) {
            return Err(problem(
                &format!("{key}.tool"),
                format!(
                    "handler {handler} may not call {}; its tools are {}",
                    write.tool,
                    allowed.join(", ")
                ),
            ));
        }
        let mut arguments = BTreeMap::new();
        for (name, value) in write.arguments {
            let matcher = Matcher::parse(value)
                .map_err(|e| problem(&format!("{key}.arguments.{name}"), e))?;
            arguments.insert(name, matcher);
        }
        writes.push(WriteExpect {
            tool: write.tool,
            count: write.count.unwrap_or(1),
            arguments,
        });
    }
    let name = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default()
        .to_string();
    Ok(Case {
        id: format!("{handler}/{name}"),
        handler: handler.to_string(),
        name,
        path: path.to_path_buf(),
        description: file.description,
        events: file.events,
        source: file.source,
        at,
        upstream,
        expect: Expect {
            triggers: file.expect.triggers,
            outcome,
            writes,
            never: file.expect.never,
            only_listed_writes: file.expect.only_listed_writes,
        },
    })
}

/// A write the run would have made: an intended action of its transcript.
#[derive(Debug, Clone, PartialEq)]
pub struct Action {
    pub tool: String,
    pub arguments: Value,
}

/// What is wrong with `actions` against `expect`: one line per problem, empty when they hold.
pub fn judge(expect: &Expect, actions: &[Action]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut matched = vec![false; actions.len()];
    for want in &expect.writes {
        let mut hits = 0;
        for (n, action) in actions.iter().enumerate() {
            if action.tool == want.tool && arguments_match(&want.arguments, &action.arguments) {
                hits += 1;
                matched[n] = true;
            }
        }
        if hits != want.count {
            let mut line = format!(
                "expected {} write(s) of {}{}, found {hits}",
                want.count,
                want.tool,
                describe_arguments(&want.arguments)
            );
            for action in actions.iter().filter(|a| a.tool == want.tool) {
                line.push_str(&format!(
                    "\n    {} wrote: {}",
                    action.tool,
                    mismatches(&want.arguments, &action.arguments)
                ));
            }
            problems.push(line);
        }
    }
    for tool in &expect.never {
        for action in actions.iter().filter(|a| &a.tool == tool) {
            problems.push(format!(
                "a write of {tool} happened, which the case forbids: {}",
                action.arguments
            ));
        }
    }
    if expect.only_listed_writes {
        for (action, _) in actions.iter().zip(&matched).filter(|(_, m)| !**m) {
            if expect.never.contains(&action.tool) {
                continue;
            }
            problems.push(format!(
                "unexpected write of {}: {}",
                action.tool, action.arguments
            ));
        }
    }
    problems
}

fn arguments_match(want: &BTreeMap<String, Matcher>, got: &Value) -> bool {
    want.iter()
        .all(|(name, matcher)| matcher.matches(got.get(name)))
}

fn describe_arguments(want: &BTreeMap<String, Matcher>) -> String {
    if want.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = want
        .iter()
        .map(|(name, m)| format!("{name} {}", m.describe()))
        .collect();
    format!(" with {}", parts.join(", "))
}

/// Which of a write's arguments miss their matchers, for the report.
fn mismatches(want: &BTreeMap<String, Matcher>, got: &Value) -> String {
    let wrong: Vec<String> = want
        .iter()
        .filter(|(name, m)| !m.matches(got.get(name.as_str())))
        .map(|(name, m)| match got.get(name.as_str()) {
            Some(value) => format!("{name} = {value}, expected {}", m.describe()),
            None => format!("{name} not set, expected {}", m.describe()),
        })
        .collect();
    if wrong.is_empty() {
        format!("{got} (matches)")
    } else {
        wrong.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn matcher(v: Value) -> Matcher {
        Matcher::parse(v).unwrap()
    }

    #[test]
    fn a_plain_value_is_exact_and_numbers_compare_by_value() {
        assert!(matcher(json!(5)).matches(Some(&json!(5.0))));
        assert!(!matcher(json!(5)).matches(Some(&json!(6))));
        assert!(matcher(json!({"a": 1})).matches(Some(&json!({"a": 1}))));
        assert!(!matcher(json!({"a": 1})).matches(Some(&json!({"a": 1, "b": 2}))));
        assert!(!matcher(json!("x")).matches(None));
    }

    #[test]
    fn the_named_matchers() {
        assert!(matcher(json!({"subset": {"a": 1}})).matches(Some(&json!({"a": 1, "b": 2}))));
        assert!(!matcher(json!({"subset": {"a": 2}})).matches(Some(&json!({"a": 1}))));
        assert!(matcher(json!({"subset": [1]})).matches(Some(&json!([2, 1]))));
        assert!(matcher(json!({"contains": "refund"})).matches(Some(&json!("a refund request"))));
        assert!(!matcher(json!({"contains": "refund"})).matches(Some(&json!("billing"))));
        assert!(matcher(json!({"contains": 3})).matches(Some(&json!([1, 3]))));
        assert!(matcher(json!({"regex": "^P[0-9]$"})).matches(Some(&json!("P1"))));
        assert!(!matcher(json!({"regex": "^P[0-9]$"})).matches(Some(&json!(1))));
        assert!(matcher(json!({"any": true})).matches(Some(&json!(null))));
        assert!(!matcher(json!({"any": true})).matches(None));
        assert!(matcher(json!({"absent": true})).matches(None));
        assert!(!matcher(json!({"absent": true})).matches(Some(&json!(1))));
        assert!(matcher(json!({"exact": {"regex": "x"}})).matches(Some(&json!({"regex": "x"}))));
    }

    #[test]
    fn a_malformed_matcher_says_what_is_wrong() {
        let e = Matcher::parse(json!({"regex": "("})).unwrap_err();
        assert!(e.contains("invalid regex"), "{e}");
        let e = Matcher::parse(json!({"contains": "a", "other": 1})).unwrap_err();
        assert!(e.contains("exact = {"), "{e}");
        let e = Matcher::parse(json!({"any": false})).unwrap_err();
        assert_eq!(e, "write any = true");
    }

    fn expect(writes: Vec<WriteExpect>, never: &[&str], only: bool) -> Expect {
        Expect {
            triggers: true,
            outcome: "done".into(),
            writes,
            never: never.iter().map(|s| s.to_string()).collect(),
            only_listed_writes: only,
        }
    }

    fn note(count: u32) -> WriteExpect {
        WriteExpect {
            tool: "happyfox.add_private_note".into(),
            count,
            arguments: BTreeMap::from([("text".into(), matcher(json!({"contains": "refund"})))]),
        }
    }

    fn action(tool: &str, arguments: Value) -> Action {
        Action {
            tool: tool.into(),
            arguments,
        }
    }

    #[test]
    fn counts_unexpected_and_forbidden_writes_are_reported() {
        let one_note = [action(
            "happyfox.add_private_note",
            json!({"text": "refund asked"}),
        )];
        assert!(judge(&expect(vec![note(1)], &[], true), &one_note).is_empty());

        let two = [one_note[0].clone(), one_note[0].clone()];
        let problems = judge(&expect(vec![note(1)], &[], true), &two);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].starts_with("expected 1 write(s) of happyfox.add_private_note with text containing \"refund\", found 2"), "{problems:?}");

        let wrong = [action(
            "happyfox.add_private_note",
            json!({"text": "hello"}),
        )];
        let problems = judge(&expect(vec![note(1)], &[], true), &wrong);
        assert!(
            problems[0].contains("text = \"hello\", expected containing \"refund\""),
            "{problems:?}"
        );
        assert!(
            problems[1].starts_with("unexpected write of happyfox.add_private_note"),
            "{problems:?}"
        );

        let reply = [action("happyfox.send_reply", json!({"text": "hi"}))];
        let problems = judge(&expect(vec![], &["happyfox.send_reply"], false), &reply);
        assert_eq!(problems.len(), 1);
        assert!(problems[0].contains("which the case forbids"));
        assert!(judge(&expect(vec![], &[], false), &reply).is_empty());
    }
}
