//! `${VAR}` and `${VAR:-default}` substitution in every string of a parsed config file.
//!
//! Substitution happens on parsed values, not on the raw text, so a secret containing quotes or
//! newlines cannot change the shape of the file.

use crate::kernel::ConfigError;
use std::path::Path;

/// Replaces `${NAME}` / `${NAME:-default}` in every string value; `$${` stays a literal `${`.
pub fn substitute(
    file: &Path,
    value: &mut toml::Value,
    lookup: &dyn Fn(&str) -> Option<String>,
    errors: &mut Vec<ConfigError>,
) {
    walk(file, value, String::new(), lookup, errors);
}

fn walk(
    file: &Path,
    value: &mut toml::Value,
    key: String,
    lookup: &dyn Fn(&str) -> Option<String>,
    errors: &mut Vec<ConfigError>,
) {
    match value {
        toml::Value::String(s) => match expand(s, lookup) {
            Ok(expanded) => *s = expanded,
            Err(message) => errors.push(ConfigError::new(file, key, message)),
        },
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                walk(file, item, format!("{key}[{i}]"), lookup, errors);
            }
        }
        toml::Value::Table(table) => {
            for (k, v) in table.iter_mut() {
                let child = if key.is_empty() {
                    k.clone()
                } else {
                    format!("{key}.{k}")
                };
                walk(file, v, child, lookup, errors);
            }
        }
        _ => {}
    }
}

fn expand(input: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
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
        assert_eq!(expand("${SECRET}", &env).unwrap(), "s3cr3t");
        assert_eq!(expand("a-${SECRET}-b", &env).unwrap(), "a-s3cr3t-b");
        assert_eq!(expand("${MISSING:-dev}", &env).unwrap(), "dev");
        assert_eq!(expand("${SECRET:-dev}", &env).unwrap(), "s3cr3t");
        assert_eq!(
            expand("$${SECRET} costs $5", &env).unwrap(),
            "${SECRET} costs $5"
        );
    }

    #[test]
    fn a_missing_variable_is_named() {
        let err = expand("${HAPPYFOX_WEBHOOK_SECRET}", &env).unwrap_err();
        assert!(err.contains("HAPPYFOX_WEBHOOK_SECRET"), "{err}");
        assert!(expand("${UNCLOSED", &env).is_err());
        assert!(expand("${bad name}", &env).is_err());
    }
}
