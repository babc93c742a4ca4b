//! The error type for handler files: the same file-and-key problem as configuration errors, so
//! `hookwise check` reports both alike.

pub use crate::config::ConfigError as HandlerError;
