//! What hookwise tells its operators about itself: metrics (and, later, traces).

pub mod metrics;
