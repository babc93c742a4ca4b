//! Truto as a tool source (not built yet).

use super::ToolRegistry;
use crate::upstream::Upstream;

/// Registers the tools of every Truto account, as listed by its `/tools` endpoint.
pub async fn register(_registry: &mut ToolRegistry, _upstream: &Upstream) -> Result<(), String> {
    Ok(())
}
