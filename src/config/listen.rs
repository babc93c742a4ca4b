//! `listen`: where the HTTP server binds, as `HOST:PORT`. HOST is an IP address or a host name;
//! a name is resolved when the server binds (`serve` names the key or variable if it does not).

use serde::{Deserialize, Deserializer};
use std::fmt;
use std::net::SocketAddr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listen {
    /// An IP address (IPv6 without its brackets) or a host name.
    pub host: String,
    pub port: u16,
}

impl Listen {
    /// `127.0.0.1:8080`, `localhost:8080`, `[::1]:8080`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let expected = || {
            format!("expected HOST:PORT such as 127.0.0.1:8080 or localhost:8080, found {text:?}")
        };
        if let Ok(addr) = text.parse::<SocketAddr>() {
            return Ok(addr.into());
        }
        let (host, port) = text.rsplit_once(':').ok_or_else(expected)?;
        let port = port.parse::<u16>().map_err(|_| expected())?;
        let valid = !host.is_empty()
            && host.len() <= 253
            && host
                .split('.')
                .all(|label| !label.is_empty() && !label.starts_with('-'))
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
        if !valid {
            return Err(expected());
        }
        Ok(Self {
            host: host.to_string(),
            port,
        })
    }
}

impl From<SocketAddr> for Listen {
    fn from(addr: SocketAddr) -> Self {
        Self {
            host: addr.ip().to_string(),
            port: addr.port(),
        }
    }
}

impl fmt::Display for Listen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl<'de> Deserialize<'de> for Listen {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Listen::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_host_names_are_accepted() {
        for text in [
            "127.0.0.1:8080",
            "0.0.0.0:80",
            "[::1]:8080",
            "localhost:8081",
            "hookwise.internal:9000",
        ] {
            assert_eq!(Listen::parse(text).unwrap().to_string(), text);
        }
        assert_eq!(Listen::parse("localhost:8081").unwrap().host, "localhost");
        for text in [
            "localhost",
            ":8080",
            "localhost:port",
            "localhost:70000",
            "a b:80",
            "::1:80",
        ] {
            let e = Listen::parse(text).unwrap_err();
            assert!(e.contains("HOST:PORT"), "{text}: {e}");
        }
    }
}
