//! Deserializing a configuration file past its first problem. serde stops at the first unknown key
//! or bad value; here each problem is recorded, its key taken out of the document, and the rest
//! deserialized again, until what is left reads. The user then fixes every problem in one pass,
//! and the key sets stay where serde has them (the structs), not in a second list.

use crate::kernel::{ConfigError, did_you_mean};
use serde::de::DeserializeOwned;
use serde_path_to_error::Segment;
use std::path::Path;
use toml::Value;

/// One step of a path into the document.
enum Step {
    Key(String),
    Index(usize),
}

/// `T` from `doc` without the keys in error, and every problem, each once. None when not even
/// that reads (a problem at the top of the document).
pub(super) fn deserialize_all<T: DeserializeOwned>(
    file: &Path,
    mut doc: Value,
) -> (Option<T>, Vec<ConfigError>) {
    let mut errors = Vec::new();
    // Keys taken out for a problem of their own: a required one then reads as missing, which
    // would say nothing new.
    let mut removed: Vec<String> = Vec::new();
    loop {
        let error = match serde_path_to_error::deserialize::<_, T>(doc.clone()) {
            Ok(value) => return (Some(value), errors),
            Err(error) => error,
        };
        let steps: Vec<Step> = error
            .path()
            .iter()
            .filter_map(|s| match s {
                Segment::Map { key } => Some(Step::Key(key.clone())),
                Segment::Seq { index } => Some(Step::Index(*index)),
                _ => None,
            })
            .collect();
        let message = error.inner().message().trim_end().to_string();
        if let Some(field) = quoted_after(&message, "missing field ") {
            // The path is the table that lacks the key; it cannot be read without it, so it is
            // left out whole and the rest of the document read on.
            let key = join(&dotted(&steps), field);
            if !removed.contains(&key) {
                errors.push(ConfigError::new(file, key, "missing required key"));
            }
            if steps.is_empty() || !remove(&mut doc, &steps) {
                return (None, errors);
            }
            removed.push(dotted(&steps));
            continue;
        }
        // A misspelt required key is reported once, as the misspelling: the key it suggests is
        // not then also missing.
        if let Some(meant) =
            quoted_after(&message, "unknown field ").and_then(|found| suggestion(found, &message))
        {
            let table = dotted(&steps[..steps.len().saturating_sub(1)]);
            removed.push(join(&table, meant));
        }
        errors.push(ConfigError::new(file, dotted(&steps), explain(&message)));
        // A bad list element takes its whole list out: indices stay as the user wrote them.
        let Some(last_key) = steps.iter().rposition(|s| matches!(s, Step::Key(_))) else {
            return (None, errors);
        };
        let target = &steps[..=last_key];
        if !remove(&mut doc, target) {
            return (None, errors);
        }
        removed.push(dotted(target));
    }
}

/// The names serde lists after "expected", as it quotes them.
fn expected(message: &str) -> Vec<&str> {
    message
        .split_once("expected")
        .map(|(_, list)| list.split('`').skip(1).step_by(2).collect())
        .unwrap_or_default()
}

/// The expected name `found` is nearly, if any.
fn suggestion<'m>(found: &str, message: &'m str) -> Option<&'m str> {
    crate::kernel::closest(found, expected(message))
}

/// serde's message, in the words of a configuration file, with "did you mean" for a near miss.
fn explain(message: &str) -> String {
    for (prefix, what) in [
        ("unknown field ", "unknown key"),
        ("unknown variant ", "unknown value"),
    ] {
        let Some(found) = quoted_after(message, prefix) else {
            continue;
        };
        let expected = expected(message);
        let found_text = if what == "unknown key" {
            String::new()
        } else {
            format!(" \"{found}\"")
        };
        let hint = did_you_mean(found, expected.iter().copied());
        return if !hint.is_empty() || expected.is_empty() {
            format!("{what}{found_text}{hint}")
        } else {
            format!(
                "{what}{found_text}; expected one of: {}",
                expected.join(", ")
            )
        };
    }
    message.to_string()
}

/// The text between the backticks right after `prefix`, as serde quotes names.
fn quoted_after<'m>(message: &'m str, prefix: &str) -> Option<&'m str> {
    let rest = message.strip_prefix(prefix)?.strip_prefix('`')?;
    rest.split_once('`').map(|(name, _)| name)
}

fn dotted(steps: &[Step]) -> String {
    let mut out = String::new();
    for step in steps {
        match step {
            Step::Key(key) => out = join(&out, key),
            Step::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

/// Takes the value at `steps` out of the document; false when there is none.
fn remove(doc: &mut Value, steps: &[Step]) -> bool {
    let Some((last, parents)) = steps.split_last() else {
        return false;
    };
    let mut at = doc;
    for step in parents {
        let next = match (step, at) {
            (Step::Key(key), Value::Table(table)) => table.get_mut(key),
            (Step::Index(i), Value::Array(items)) => items.get_mut(*i),
            _ => None,
        };
        match next {
            Some(next) => at = next,
            None => return false,
        }
    }
    match (last, at) {
        (Step::Key(key), Value::Table(table)) => table.remove(key).is_some(),
        (Step::Index(i), Value::Array(items)) if *i < items.len() => {
            items.remove(*i);
            true
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_messages_become_file_words_with_a_suggestion() {
        assert_eq!(
            explain("unknown field `listne`, expected one of `listen`, `store`"),
            "unknown key; did you mean `listen`?"
        );
        assert_eq!(
            explain("unknown field `zzz`, expected `listen` or `store`"),
            "unknown key; expected one of: listen, store"
        );
        assert_eq!(
            explain("unknown variant `githb`, expected one of `github`, `stripe`"),
            "unknown value \"githb\"; did you mean `github`?"
        );
        assert_eq!(explain("invalid type: string"), "invalid type: string");
    }
}
