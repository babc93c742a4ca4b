//! What hookwise tells its operators about itself: metrics and structured logs.

pub mod logs;
pub mod metrics;
pub mod text;
