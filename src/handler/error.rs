//! The error type for handler files: one problem, naming the file, the key and what was expected.

use std::fmt;
use std::path::PathBuf;

/// One problem in one handler file. Loading collects every problem rather than stopping at the
/// first, so a user fixes a file in one pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerError {
    pub file: PathBuf,
    /// Dotted path to the offending key (`debounce.period`, `when[1].op`, `agent.tools[2]`);
    /// empty when the problem is the whole file (unreadable, not valid TOML).
    pub key: String,
    pub message: String,
}

impl HandlerError {
    pub(super) fn new(
        file: impl Into<PathBuf>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        HandlerError {
            file: file.into(),
            key: key.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file.display(), self.message)
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

impl std::error::Error for HandlerError {}
