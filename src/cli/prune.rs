//! `hookwise prune [--dry-run]`: one pruning pass now, by `[retention]`, or what it would delete.

use crate::app;
use crate::config::Config;
use crate::kernel::clock::SystemClock;
use crate::store::{self, PruneReport};
use anyhow::bail;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

pub async fn run(config: &Config, dry_run: bool) -> anyhow::Result<ExitCode> {
    if !config.retention.enabled {
        bail!(
            "retention is disabled in {} ([retention] enabled = false): nothing is pruned",
            config.file_label().display()
        );
    }
    let store = store::open_existing(&config.store).await?;
    store.migrate().await?;
    let Some(pruner) = app::pruner(
        &config.retention,
        store,
        Arc::new(SystemClock),
        Default::default(),
    ) else {
        bail!("retention is disabled: nothing is pruned");
    };
    let report = if dry_run {
        pruner.dry_run().await?
    } else {
        pruner.prune_all().await?
    };
    let r = &config.retention;
    println!(
        "{} (events older than {}, done jobs older than {}, dead jobs older than {}):",
        if dry_run { "would prune" } else { "pruned" },
        span(r.events),
        span(r.jobs),
        span(r.dead_jobs)
    );
    print!("{}", table(&report));
    if report.skipped {
        println!("another replica holds the prune lock: it is pruning now; this pass stopped");
    }
    Ok(ExitCode::SUCCESS)
}

/// One line per kind, counts aligned.
fn table(report: &PruneReport) -> String {
    report
        .kinds()
        .iter()
        .map(|(kind, n)| format!("  {kind:<10} {n:>9}\n"))
        .collect()
}

/// A duration as configured: the largest unit that divides it (`30d`, `36h`, `90m`).
fn span(d: Duration) -> String {
    let ms = d.as_millis();
    [
        (86_400_000, "d"),
        (3_600_000, "h"),
        (60_000, "m"),
        (1_000, "s"),
    ]
    .into_iter()
    .find(|(unit, _)| ms > 0 && ms.is_multiple_of(*unit))
    .map(|(unit, name)| format!("{}{name}", ms / unit))
    .unwrap_or_else(|| format!("{ms}ms"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_read_as_configured() {
        assert_eq!(span(Duration::from_secs(30 * 86_400)), "30d");
        assert_eq!(span(Duration::from_secs(36 * 3_600)), "36h");
        assert_eq!(span(Duration::from_secs(90 * 60)), "90m");
        assert_eq!(span(Duration::from_millis(1_500)), "1500ms");
    }
}
