//! The primitives of stage two: reading typed values out of a TOML table while recording every
//! problem under its dotted key path, instead of stopping at the first as serde would.

use std::ops::RangeInclusive;
use std::path::Path;
use std::time::Duration;

use serde::de::DeserializeOwned;
use toml::{Table, Value};

use super::HandlerError;
use crate::kernel::parse_duration;

/// The walk's state: the file (for errors) and every problem found so far.
pub(super) struct Walk<'a> {
    pub(super) file: &'a Path,
    pub(super) errors: Vec<HandlerError>,
}

/// `prefix.key`, or just `key` at the top level.
pub(super) fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

impl Walk<'_> {
    pub(super) fn error(&mut self, key: &str, message: impl Into<String>) {
        self.errors.push(HandlerError::new(self.file, key, message));
    }

    /// Records the error, if any, under `key`.
    pub(super) fn check<T>(&mut self, key: &str, result: Result<T, String>) -> Option<T> {
        result.map_err(|message| self.error(key, message)).ok()
    }

    /// `deny_unknown_fields`, except that every unknown key is reported.
    /// `top_level` lists the root's keys, to explain the commonest TOML slip.
    pub(super) fn unknown_keys(
        &mut self,
        table: &Table,
        prefix: &str,
        allowed: &[&str],
        top_level: &[&str],
    ) {
        for key in table.keys().filter(|k| !allowed.contains(&k.as_str())) {
            let mut message = format!("unknown key, expected one of: {}", allowed.join(", "));
            // TOML puts every key after a `[table]` header into that table, so a top-level key
            // written below `[agent]` lands here; say so rather than leave the user puzzled.
            if !prefix.is_empty() && top_level.contains(&key.as_str()) {
                message.push_str(&format!(
                    " (`{key}` is a top-level key: move it above the first [table])"
                ));
            }
            self.error(&join(prefix, key), message);
        }
    }

    /// A scalar through serde (which words type errors and lists enum variants for us);
    /// `None` when absent or wrong.
    pub(super) fn field<T: DeserializeOwned>(
        &mut self,
        table: &Table,
        prefix: &str,
        key: &str,
    ) -> Option<T> {
        let value = table.get(key)?.clone();
        let parsed = T::deserialize(value).map_err(|e| e.message().trim_end().to_string());
        self.check(&join(prefix, key), parsed)
    }

    pub(super) fn required<T: DeserializeOwned>(
        &mut self,
        table: &Table,
        prefix: &str,
        key: &str,
        expected: &str,
    ) -> Option<T> {
        if !table.contains_key(key) {
            self.error(
                &join(prefix, key),
                format!("missing required key, expected {expected}"),
            );
            return None;
        }
        self.field(table, prefix, key)
    }

    /// A list of strings checked element by element, so every bad element is reported with its
    /// index; returns the good ones with their index. `None` when absent or not a list.
    pub(super) fn strings(
        &mut self,
        table: &Table,
        prefix: &str,
        key: &str,
    ) -> Option<Vec<(usize, String)>> {
        let value = table.get(key)?;
        let path = join(prefix, key);
        let Some(items) = value.as_array() else {
            self.error(&path, format!("expected a list of strings, found {value}"));
            return None;
        };
        let mut good = Vec::new();
        for (i, item) in items.iter().enumerate() {
            match item.as_str() {
                Some(s) => good.push((i, s.to_string())),
                None => self.error(
                    &format!("{path}[{i}]"),
                    format!("expected a string, found {item}"),
                ),
            }
        }
        Some(good)
    }

    pub(super) fn int(
        &mut self,
        table: &Table,
        prefix: &str,
        key: &str,
        range: RangeInclusive<u32>,
    ) -> Option<u32> {
        let value = table.get(key)?;
        let n = value.as_integer().and_then(|i| u32::try_from(i).ok());
        let checked = n.filter(|n| range.contains(n)).ok_or_else(|| {
            format!(
                "expected an integer from {} to {}, found {value}",
                range.start(),
                range.end()
            )
        });
        self.check(&join(prefix, key), checked)
    }

    /// A positive duration; `None` when absent or wrong.
    pub(super) fn duration(&mut self, table: &Table, prefix: &str, key: &str) -> Option<Duration> {
        let value = table.get(key)?;
        let parsed = match value.as_str() {
            Some(s) => parse_duration(s),
            None => Err(format!(
                "expected a duration like \"30s\" or \"5m\", found {value}"
            )),
        };
        let positive = parsed.and_then(|d| {
            if d.is_zero() {
                Err(format!(
                    "expected a duration greater than zero, found {value}"
                ))
            } else {
                Ok(d)
            }
        });
        self.check(&join(prefix, key), positive)
    }

    /// `Ok(None)` when absent; `Err(())` when present but not a table (error recorded).
    pub(super) fn section<'t>(
        &mut self,
        root: &'t Table,
        key: &str,
    ) -> Result<Option<&'t Table>, ()> {
        match root.get(key) {
            None => Ok(None),
            Some(Value::Table(table)) => Ok(Some(table)),
            Some(other) => {
                self.error(key, format!("expected a table [{key}], found {other}"));
                Err(())
            }
        }
    }
}
