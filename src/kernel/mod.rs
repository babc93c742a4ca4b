//! The bottom layer: the vocabulary every other module shares. It imports nothing of the crate:
//! events and their ids, time (`Clock`), `Secret`, durations, the file-and-key diagnostic,
//! connector names, and the TLS provider set-up.

pub mod clock;
mod diagnostic;
mod duration;
pub mod event;
mod kinds;
mod secret;

pub use diagnostic::{ConfigError, ConfigErrors, ENVIRONMENT, closest, did_you_mean};
pub use duration::parse_duration;
pub use kinds::ConnectorKind;
pub use secret::Secret;

/// reqwest is built without a default TLS provider (it would compile aws-lc, ~50 s of C on two
/// cores); ring is installed once, before any client is built.
pub fn init_tls() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
