//! The one shape of a user-facing problem in a file: the file, the dotted key, the message.

use std::fmt;
use std::path::PathBuf;

/// A problem in a configuration or handler file, naming the file and the key (handler files use it
/// too): a user fixes every problem in one pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// Dotted key such as `sources.happyfox.secrets[0]`; empty for whole-file problems.
    pub key: String,
    pub message: String,
}

/// The `file` of a problem in a `HOOKWISE_*` variable: its `key` is then the variable's name.
pub const ENVIRONMENT: &str = "environment";

impl ConfigError {
    /// A problem in the environment variable `name` (a `HOOKWISE_*` override).
    pub fn env(name: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(ENVIRONMENT, name, message)
    }

    pub fn new(
        file: impl Into<PathBuf>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            file: file.into(),
            key: key.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else if self.file.as_os_str() == ENVIRONMENT {
            write!(f, "environment variable {}: {}", self.key, self.message)
        } else {
            write!(
                f,
                "{}: key `{}`: {}",
                self.file.display(),
                self.key,
                self.message
            )
        }
    }
}

/// All the problems found, one per line.
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// The candidate closest to `found`, when it is close enough to be the word meant (a slip of a
/// letter or two, not a different word): for "did you mean" in messages.
pub fn closest<'a>(found: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(found, c), c))
        // Clap's threshold for its own suggestions.
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// `; did you mean `X`?` when one of `candidates` is close to `found`, else an empty string.
pub fn did_you_mean<'a>(found: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    closest(found, candidates)
        .map(|c| format!("; did you mean `{c}`?"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_only_near_misses() {
        let keys = ["listen", "store", "handlers_dir"];
        assert_eq!(closest("listne", keys), Some("listen"));
        assert_eq!(closest("stor", keys), Some("store"));
        assert_eq!(closest("retention", keys), None);
        assert_eq!(
            did_you_mean("happyfx", ["happyfox", "planhat"]),
            "; did you mean `happyfox`?"
        );
        assert_eq!(did_you_mean("zendesk", ["happyfox", "planhat"]), "");
    }

    #[test]
    fn an_environment_problem_names_the_variable() {
        let e = ConfigError::env("HOOKWISE_STORE", "expected sqlite://PATH");
        assert_eq!(
            e.to_string(),
            "environment variable HOOKWISE_STORE: expected sqlite://PATH"
        );
    }
}
