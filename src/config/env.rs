//! `${VAR}` and `${VAR:-default}` substitution in every string of a parsed config file.
//!
//! Substitution happens on parsed values, not on the raw text, so a secret containing quotes or
//! newlines cannot change the shape of the file.

use super::Secrets;
use crate::kernel::ConfigError;
use std::path::Path;

/// The one key a command that only reads the store needs a variable of: the store's URL.
const READ_KEYS: &[&str] = &["store"];

/// Replaces `${NAME}` / `${NAME:-default}` in every string value; `$${` stays a literal `${`.
/// With `Secrets::Unused`, a variable that is not set becomes "" outside `READ_KEYS`: the
/// command never uses those values (webhook secrets, API keys).
pub fn substitute(
    file: &Path,
    value: &mut toml::Value,
    lookup: &dyn Fn(&str) -> Option<String>,
    secrets: Secrets,
    errors: &mut Vec<ConfigError>,
) {
    let mut walk = Walk {
        file,
        lookup,
        secrets,
        errors,
    };
    walk.value(value, String::new());
}

struct Walk<'a> {
    file: &'a Path,
    lookup: &'a dyn Fn(&str) -> Option<String>,
    secrets: Secrets,
    errors: &'a mut Vec<ConfigError>,
}

impl Walk<'_> {
    fn value(&mut self, value: &mut toml::Value, key: String) {
        match value {
            toml::Value::String(s) => {
                let lenient = self.secrets == Secrets::Unused && !READ_KEYS.contains(&key.as_str());
                match expand(s, self.lookup, lenient) {
                    Ok(expanded) => *s = expanded,
                    Err(message) => self.errors.push(ConfigError::new(self.file, key, message)),
                }
            }
            toml::Value::Array(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    self.value(item, format!("{key}[{i}]"));
                }
            }
            toml::Value::Table(table) => {
                for (k, v) in table.iter_mut() {
                    let child = if key.is_empty() {
                        k.clone()
                    } else {
                        format!("{key}.{k}")
                    };
                    self.value(v, child);
                }
            }
            _ => {}
        }
    }
}

/// `lenient`: a variable that is not set and has no default becomes "" rather than an error.
fn expand(
    input: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    lenient: bool,
) -> Result<String, String> {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos..];
        if let Some(stripped) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = stripped;
        } else if let Some(body) = after.strip_prefix("${") {
            let end = body
                .find('}')
                .ok_or_else(|| format!("unclosed `${{` in {input:?}"))?;
            let spec = &body[..end];
            let (name, default) = match spec.split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (spec, None),
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!(
                    "`${{{spec}}}` is not a valid variable reference (letters, digits and _ only)"
                ));
            }
            match (lookup(name), default) {
                (Some(v), _) => out.push_str(&v),
                (None, Some(d)) => out.push_str(d),
                (None, None) if lenient => {}
                (None, None) => {
                    return Err(format!("environment variable {name} is not set"));
                }
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "SECRET" => Some("s3cr3t".into()),
            _ => None,
        }
    }

    #[test]
    fn expands_set_variables_defaults_and_escapes() {
        assert_eq!(expand("${SECRET}", &env, false).unwrap(), "s3cr3t");
        assert_eq!(expand("a-${SECRET}-b", &env, false).unwrap(), "a-s3cr3t-b");
        assert_eq!(expand("${MISSING:-dev}", &env, false).unwrap(), "dev");
        assert_eq!(expand("${SECRET:-dev}", &env, false).unwrap(), "s3cr3t");
        assert_eq!(
            expand("$${SECRET} costs $5", &env, false).unwrap(),
            "${SECRET} costs $5"
        );
    }

    #[test]
    fn leniently_an_unset_variable_is_empty_and_a_default_still_applies() {
        assert_eq!(expand("a${MISSING}b", &env, true).unwrap(), "ab");
        assert_eq!(expand("${MISSING:-dev}", &env, true).unwrap(), "dev");
        assert!(expand("${UNCLOSED", &env, true).is_err());
    }

    #[test]
    fn a_missing_variable_is_named() {
        let err = expand("${HAPPYFOX_WEBHOOK_SECRET}", &env, false).unwrap_err();
        assert!(err.contains("HAPPYFOX_WEBHOOK_SECRET"), "{err}");
        assert!(expand("${UNCLOSED", &env, false).is_err());
        assert!(expand("${bad name}", &env, false).is_err());
    }
}
