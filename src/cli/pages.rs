//! Paging for the list commands (`events`, `jobs`, `runs`, `approvals list`): newest first, read
//! from the store in bounded pages by key (`before`, exclusive; never an offset) and printed as
//! each page arrives, so `--all` over a large store keeps little in memory. When `--limit` cut
//! the output short, stderr says so and names the flag for the next page.

use crate::store::StoreError;
use clap::Args;
use std::io::Write;

/// The most rows one store call reads: a page, not a table.
pub const PAGE: u32 = 500;

#[derive(Debug, Clone, Args)]
pub struct PageArgs {
    /// Print at most N rows, newest first; stderr says when there are more.
    #[arg(long, value_name = "N", default_value_t = 50, value_parser = limit_value)]
    pub limit: u32,
    /// Start below this id (exclusive; an event's `seq`): the next page after a cut listing.
    #[arg(long, value_name = "ID")]
    pub before: Option<i64>,
    /// Print every row, newest first (read in pages of 500), instead of stopping at --limit.
    #[arg(long, conflicts_with = "limit")]
    pub all: bool,
}

/// `--limit`: a count of rows; 0 printed nothing (or, once, everything): refused, naming `--all`.
fn limit_value(s: &str) -> Result<u32, String> {
    match s.parse::<u32>() {
        Ok(0) => Err("0 prints nothing; to print every row use --all".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("{e}; expected a number of rows, at least 1")),
    }
}

/// What a listing printed.
#[derive(Debug, PartialEq, Eq)]
pub struct Listed {
    pub rows: usize,
    /// Output stopped at `--limit` and rows remain below this key: the next `--before`.
    pub more_before: Option<i64>,
}

/// Reads rows page by page with `fetch(before, limit)` and hands each to `print`, flushing stdout
/// after every page. Stops at `--limit` rows (then looks for one more row, to say whether there
/// are more) or when a page comes back short. A closed stdout (`| head`) ends it quietly.
pub async fn list<T>(
    args: &PageArgs,
    mut fetch: impl AsyncFnMut(Option<i64>, u32) -> Result<Vec<T>, StoreError>,
    key: impl Fn(&T) -> i64,
    mut print: impl FnMut(&mut dyn Write, &T) -> anyhow::Result<()>,
) -> anyhow::Result<Listed> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut before = args.before;
    let mut rows = 0usize;
    loop {
        let want = if args.all {
            PAGE
        } else {
            let left = (args.limit as usize).saturating_sub(rows);
            u32::try_from(left).unwrap_or(u32::MAX).min(PAGE)
        };
        if want == 0 {
            break;
        }
        let page = fetch(before, want).await?;
        for row in &page {
            print(&mut out, row)?;
        }
        if let Err(e) = out.flush() {
            return closed_or(e, rows + page.len());
        }
        rows += page.len();
        match page.last() {
            Some(last) if page.len() == want as usize => before = Some(key(last)),
            _ => {
                return Ok(Listed {
                    rows,
                    more_before: None,
                });
            }
        }
    }
    // Cut at --limit after a full page: one more row says whether a next page exists.
    let more = !fetch(before, 1).await?.is_empty();
    Ok(Listed {
        rows,
        more_before: before.filter(|_| more),
    })
}

/// A reader that went away (`hookwise events list --all | head`) is not an error.
fn closed_or(e: std::io::Error, rows: usize) -> anyhow::Result<Listed> {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        Ok(Listed {
            rows,
            more_before: None,
        })
    } else {
        Err(e.into())
    }
}

/// What stderr says after a listing of `noun` (plural): nothing when everything was printed, the
/// next page's flag when `--limit` cut it, and that nothing matched when nothing did.
pub fn notice(args: &PageArgs, listed: &Listed, noun: &str) -> Option<String> {
    if listed.rows == 0 {
        return Some(format!("-- no {noun} match"));
    }
    let next = listed.more_before?;
    let which = match args.before {
        None => format!("the newest {} {noun}", listed.rows),
        Some(before) => format!("{} {noun} below {before}", listed.rows),
    };
    Some(format!(
        "-- showing {which}; more with --before {next} or --all"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(limit: u32, before: Option<i64>, all: bool) -> PageArgs {
        PageArgs { limit, before, all }
    }

    /// Keys 1..=n in a store that pages newest first, recording each call's limit.
    async fn run(n: i64, args: &PageArgs) -> (Vec<i64>, Listed, Vec<u32>) {
        let mut calls = Vec::new();
        let mut printed = Vec::new();
        let listed = list(
            args,
            async |before: Option<i64>, limit: u32| {
                calls.push(limit);
                let top = before.unwrap_or(i64::MAX).min(n + 1);
                Ok((1..top).rev().take(limit as usize).collect())
            },
            |k| *k,
            |_, k: &i64| {
                printed.push(*k);
                Ok(())
            },
        )
        .await
        .unwrap();
        (printed, listed, calls)
    }

    #[tokio::test]
    async fn all_reads_bounded_pages_until_a_short_one() {
        let (printed, listed, calls) = run(1_203, &args(50, None, true)).await;
        assert_eq!(printed, (1..=1_203).rev().collect::<Vec<_>>());
        assert_eq!(listed.more_before, None);
        assert_eq!(calls, [PAGE, PAGE, PAGE]);
    }

    #[tokio::test]
    async fn a_limit_past_one_page_is_read_in_pages_and_says_where_the_rest_is() {
        let (printed, listed, calls) = run(20_000, &args(12_000, None, false)).await;
        assert_eq!(printed.len(), 12_000, "no silent cap");
        assert_eq!(printed.last(), Some(&8_001));
        assert_eq!(listed.more_before, Some(8_001));
        assert_eq!(calls.iter().map(|&c| c as usize).sum::<usize>(), 12_001);
        assert!(calls.iter().all(|&c| c <= PAGE), "{calls:?}");
        assert_eq!(
            notice(&args(12_000, None, false), &listed, "events").as_deref(),
            Some("-- showing the newest 12000 events; more with --before 8001 or --all")
        );
    }

    #[tokio::test]
    async fn output_that_ends_at_the_limit_exactly_says_nothing_more() {
        let (printed, listed, _) = run(3, &args(3, None, false)).await;
        assert_eq!(printed, [3, 2, 1]);
        assert_eq!(listed.more_before, None);
        assert_eq!(notice(&args(3, None, false), &listed, "jobs"), None);
    }

    #[tokio::test]
    async fn before_starts_below_it() {
        let a = args(2, Some(5), false);
        let (printed, listed, _) = run(9, &a).await;
        assert_eq!(printed, [4, 3]);
        assert_eq!(
            notice(&a, &listed, "runs").as_deref(),
            Some("-- showing 2 runs below 5; more with --before 3 or --all")
        );
        let (printed, listed, _) = run(9, &args(50, Some(1), false)).await;
        assert!(printed.is_empty());
        assert_eq!(
            notice(&args(50, Some(1), false), &listed, "runs").as_deref(),
            Some("-- no runs match")
        );
    }

    #[test]
    fn a_zero_limit_is_refused_naming_all() {
        assert!(limit_value("0").unwrap_err().contains("--all"));
        assert_eq!(limit_value("7"), Ok(7));
        assert!(limit_value("x").is_err());
    }
}
