//! `[http]`: how long the server waits for a client and how many it serves at once. Plain data;
//! `crate::http::serve` applies it to every connection.

use super::duration;
use crate::kernel::ConfigError;
use serde::Deserialize;
use std::path::Path;
use std::time::Duration;

/// The longest a request may take to be answered once its headers are read (a store that does
/// not answer): the request body must be read well within it.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// How long a connection may take to send a request's headers, counted from when it opened
    /// or its previous response was sent: bounds slow senders and idle keep-alive connections
    /// alike. The connection is then closed without an answer.
    #[serde(deserialize_with = "duration")]
    pub header_read_timeout: Duration,
    /// How long a request body may take to arrive in full; a slower one gets 408.
    #[serde(deserialize_with = "duration")]
    pub body_read_timeout: Duration,
    /// Connections served at once; further ones wait in the listen backlog until one closes.
    pub max_connections: usize,
    /// Who may use `/api/` and `/ui` while no `api_token` is set: `loopback` (requests from
    /// this machine that no proxy forwarded, the default) or `anywhere` (a trusted network).
    /// With a token set, the token decides and this is not consulted.
    pub admin_access: AdminAccessFrom,
}

/// `[http] admin_access`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AdminAccessFrom {
    #[default]
    Loopback,
    Anywhere,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(15),
            body_read_timeout: Duration::from_secs(20),
            max_connections: 1024,
            admin_access: AdminAccessFrom::Loopback,
        }
    }
}

impl HttpConfig {
    pub(super) fn validate(&self, file: &Path, errors: &mut Vec<ConfigError>) {
        for (key, d) in [
            ("http.header_read_timeout", self.header_read_timeout),
            ("http.body_read_timeout", self.body_read_timeout),
        ] {
            if d.is_zero() {
                errors.push(ConfigError::new(file, key, "must be greater than 0"));
            }
        }
        if self.body_read_timeout >= REQUEST_TIMEOUT {
            errors.push(ConfigError::new(
                file,
                "http.body_read_timeout",
                format!(
                    "must be shorter than the {}s a whole request may take",
                    REQUEST_TIMEOUT.as_secs()
                ),
            ));
        }
        if self.max_connections == 0 {
            errors.push(ConfigError::new(
                file,
                "http.max_connections",
                "must be at least 1",
            ));
        }
    }
}
