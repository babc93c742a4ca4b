//! `[[when]]` conditions: a JSON pointer into the event payload, an operator and a value,
//! compiled once at load and evaluated for every event.
//!
//! Upstream APIs send ids and numbers as strings and drift between the two, so comparisons are
//! tolerant: numbers compare numerically (6 == 6.0) and a numeric string stands for its number.

use std::cmp::Ordering;
use std::fmt;

use regex::Regex;
use serde_json::Value;

/// The comparison a condition applies; see the module docs for the tolerance rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Equals,
    NotEquals,
    Lt,
    Lte,
    Gt,
    Gte,
    In,
    Contains,
    Exists,
    Matches,
}

impl Op {
    /// Accepts the canonical names and the symbolic aliases people write from habit.
    pub fn parse(s: &str) -> Result<Op, String> {
        Ok(match s {
            "equals" | "==" | "=" => Op::Equals,
            "not_equals" | "!=" => Op::NotEquals,
            "lt" | "<" => Op::Lt,
            "lte" | "<=" => Op::Lte,
            "gt" | ">" => Op::Gt,
            "gte" | ">=" => Op::Gte,
            "in" => Op::In,
            "contains" => Op::Contains,
            "exists" => Op::Exists,
            "matches" => Op::Matches,
            _ => {
                return Err(format!(
                    "expected one of equals, not_equals, lt, lte, gt, gte, in, contains, exists, \
                     matches (or ==, =, !=, <, <=, >, >=), found {s:?}"
                ));
            }
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Op::Equals => "equals",
            Op::NotEquals => "not_equals",
            Op::Lt => "lt",
            Op::Lte => "lte",
            Op::Gt => "gt",
            Op::Gte => "gte",
            Op::In => "in",
            Op::Contains => "contains",
            Op::Exists => "exists",
            Op::Matches => "matches",
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A compiled condition. Only constructible through checks, so `holds` never meets a value of the
/// wrong shape for its op (an `in` without an array, a `matches` without a valid regex).
#[derive(Debug, Clone)]
pub struct Condition {
    pointer: String,
    op: Op,
    /// For `exists`, the expected presence as a bool (true when omitted in the file).
    value: Value,
    /// Compiled at load for `matches`, so a bad regex fails `hookwise check`, not an event.
    regex: Option<Regex>,
}

/// As a handler file would say it: `/ticket/priority in ["High","Urgent"]`.
impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.pointer, self.op, self.value)
    }
}

impl Condition {
    /// `value` may be `None` only for `exists`.
    pub fn new(pointer: &str, op: Op, value: Option<Value>) -> Result<Condition, String> {
        check_pointer(pointer)?;
        let (value, regex) = check_value(op, value)?;
        Ok(Condition::from_checked(
            pointer.to_string(),
            op,
            value,
            regex,
        ))
    }

    /// For the loader, which runs `check_pointer` and `check_value` itself to name the failing key.
    pub(super) fn from_checked(
        pointer: String,
        op: Op,
        value: Value,
        regex: Option<Regex>,
    ) -> Condition {
        Condition {
            pointer,
            op,
            value,
            regex,
        }
    }

    pub fn pointer(&self) -> &str {
        &self.pointer
    }

    pub fn op(&self) -> Op {
        self.op
    }

    pub fn value(&self) -> &Value {
        &self.value
    }

    /// A missing or null target makes every op false except `exists = false`. Null counts as
    /// missing because upstreams send `null` for "not set", and a file cannot spell null anyway.
    pub fn holds(&self, payload: &Value) -> bool {
        let target = payload.pointer(&self.pointer).filter(|v| !v.is_null());
        let Some(actual) = target else {
            return self.op == Op::Exists && self.value == Value::Bool(false);
        };
        let expected = &self.value;
        match self.op {
            Op::Equals => loose_eq(actual, expected),
            Op::NotEquals => !loose_eq(actual, expected),
            Op::Lt => compare(actual, expected) == Some(Ordering::Less),
            Op::Lte => compare(actual, expected).is_some_and(Ordering::is_le),
            Op::Gt => compare(actual, expected) == Some(Ordering::Greater),
            Op::Gte => compare(actual, expected).is_some_and(Ordering::is_ge),
            Op::In => expected
                .as_array()
                .is_some_and(|xs| xs.iter().any(|x| loose_eq(actual, x))),
            Op::Contains => match (actual, expected) {
                (Value::String(haystack), Value::String(needle)) => {
                    haystack.contains(needle.as_str())
                }
                (Value::Array(xs), _) => xs.iter().any(|x| loose_eq(x, expected)),
                _ => false,
            },
            Op::Exists => *expected == Value::Bool(true),
            Op::Matches => match (actual, &self.regex) {
                (Value::String(s), Some(re)) => re.is_match(s),
                _ => false,
            },
        }
    }
}

/// RFC 6901: empty (the whole payload) or `/`-separated tokens where `~` escapes only `0` or `1`.
pub(super) fn check_pointer(pointer: &str) -> Result<(), String> {
    let expected = || {
        format!(
            "expected a JSON pointer that is \"\" or starts with \"/\" (like \"/ticket/status\"), found {pointer:?}"
        )
    };
    if !(pointer.is_empty() || pointer.starts_with('/')) {
        return Err(expected());
    }
    let mut chars = pointer.chars();
    while let Some(c) = chars.next() {
        if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
            return Err(format!("{}; \"~\" must be followed by 0 or 1", expected()));
        }
    }
    Ok(())
}

/// Checks that `value` has the shape `op` needs and compiles what can be compiled.
pub(super) fn check_value(op: Op, value: Option<Value>) -> Result<(Value, Option<Regex>), String> {
    let Some(value) = value else {
        return match op {
            Op::Exists => Ok((Value::Bool(true), None)),
            _ => Err(format!(
                "expected a `value` for op `{op}` (only `exists` may omit it)"
            )),
        };
    };
    let shape = |what: &str| format!("expected {what} for op `{op}`, found {value}");
    match op {
        Op::Equals | Op::NotEquals | Op::Contains => Ok((value, None)),
        Op::Lt | Op::Lte | Op::Gt | Op::Gte => match value {
            Value::Number(_) | Value::String(_) => Ok((value, None)),
            _ => Err(shape("a number or a string")),
        },
        Op::In => match value {
            Value::Array(_) => Ok((value, None)),
            _ => Err(shape("an array of values")),
        },
        Op::Exists => match value {
            Value::Bool(_) => Ok((value, None)),
            _ => Err(shape("true or false")),
        },
        Op::Matches => match &value {
            Value::String(pattern) => match Regex::new(pattern) {
                Ok(re) => Ok((value, Some(re))),
                Err(e) => Err(format!("invalid regex {pattern:?}: {e}")),
            },
            _ => Err(shape("a regex string")),
        },
    }
}

/// A number as compared: integers exactly (ids exceed f64 precision), everything else as f64.
#[derive(Debug, Clone, Copy)]
enum Num {
    Int(i128),
    Float(f64),
}

fn num(v: &Value) -> Option<Num> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .map(|i| Num::Int(i.into()))
            .or_else(|| n.as_u64().map(|u| Num::Int(u.into())))
            .or_else(|| n.as_f64().map(Num::Float)),
        Value::String(s) => parse_num(s),
        _ => None,
    }
}

fn parse_num(s: &str) -> Option<Num> {
    let s = s.trim();
    if let Ok(i) = s.parse::<i128>() {
        return Some(Num::Int(i));
    }
    s.parse::<f64>()
        .ok()
        .filter(|f| f.is_finite())
        .map(Num::Float)
}

fn num_cmp(a: Num, b: Num) -> Option<Ordering> {
    let as_f64 = |n| match n {
        Num::Int(i) => i as f64,
        Num::Float(f) => f,
    };
    match (a, b) {
        (Num::Int(x), Num::Int(y)) => Some(x.cmp(&y)),
        _ => as_f64(a).partial_cmp(&as_f64(b)),
    }
}

/// JSON equality, except that numbers and numeric strings compare by number (in either
/// direction). Two strings still compare as strings: "6.0" is not "6".
fn loose_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::String(x), Value::String(y)) => x == y,
        (Value::Number(_) | Value::String(_), Value::Number(_) | Value::String(_)) => {
            match (num(a), num(b)) {
                (Some(x), Some(y)) => num_cmp(x, y) == Some(Ordering::Equal),
                _ => false,
            }
        }
        (Value::Array(xs), Value::Array(ys)) => {
            xs.len() == ys.len() && xs.iter().zip(ys).all(|(x, y)| loose_eq(x, y))
        }
        (Value::Object(xm), Value::Object(ym)) => {
            xm.len() == ym.len()
                && xm
                    .iter()
                    .all(|(k, x)| ym.get(k).is_some_and(|y| loose_eq(x, y)))
        }
        _ => a == b,
    }
}

/// Orders `actual` against `expected`: numerically when the config value is a number or a
/// numeric string, otherwise as strings (so ISO dates compare). `None` when not comparable.
fn compare(actual: &Value, expected: &Value) -> Option<Ordering> {
    match expected {
        Value::String(s) if parse_num(s).is_none() => match actual {
            Value::String(a) => Some(a.as_str().cmp(s.as_str())),
            _ => None,
        },
        _ => num_cmp(num(actual)?, num(expected)?),
    }
}

#[cfg(test)]
#[path = "condition_tests.rs"]
mod tests;
