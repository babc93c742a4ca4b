//! The Happyfox connector's tools (not built yet).

use super::ToolRegistry;
use crate::upstream::Upstream;

/// Registers every Happyfox tool.
pub fn register(_registry: &mut ToolRegistry, _upstream: &Upstream) -> Result<(), String> {
    Ok(())
}
