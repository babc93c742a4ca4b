//! What hookwise tells its operators about itself: metrics, structured logs and traces.

pub mod logs;
pub mod metrics;
pub mod text;
pub mod trace;
