//! The Planhat connector's tools (not built yet).

use super::ToolRegistry;
use crate::upstream::Upstream;

/// Registers every Planhat tool.
pub fn register(_registry: &mut ToolRegistry, _upstream: &Upstream) -> Result<(), String> {
    Ok(())
}
