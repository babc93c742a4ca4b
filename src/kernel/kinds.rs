//! Connector names. The connectors themselves are registered in `crate::connectors`; configuration
//! names them with a string (`connector = "happyfox"`), which the composition root resolves.

use std::fmt;

/// Which upstream API an account is: a registered connector's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectorKind(&'static str);

impl ConnectorKind {
    pub const fn new(name: &'static str) -> Self {
        Self(name)
    }

    pub fn as_str(self) -> &'static str {
        self.0
    }
}

impl fmt::Display for ConnectorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}
