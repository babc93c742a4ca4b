//! `hookwise approvals`: list and read the writes `approve`-mode handlers hold, and approve (send)
//! or reject them. Approving calls the tool from this process, with the tools and accounts of
//! this configuration, through the same `crate::approvals` path as the HTTP API.

use super::pages;
use super::runs::{clip, shorten};
use crate::app::App;
use crate::approvals::Approvals;
use crate::config::Config;
use crate::kernel::clock::SystemClock;
use crate::store::{Approval, ApprovalFilter, ApprovalState, SharedStore};
use anyhow::{anyhow, bail};
use clap::Subcommand;
use std::fmt::Write as _;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Debug, Subcommand)]
pub enum ApprovalsCommand {
    /// Newest first, in pages: --limit N (default 50), --before ID for the next page, or --all.
    List {
        /// Only approvals in this state: pending, executing, approved, failed or rejected.
        #[arg(long)]
        state: Option<String>,
        /// Only approvals for this account.
        #[arg(long)]
        account: Option<String>,
        /// Only approvals of this handler.
        #[arg(long)]
        handler: Option<String>,
        #[command(flatten)]
        page: pages::PageArgs,
        /// One JSON object per line (JSON Lines, also with --all) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One approval: the write it holds, in full, and what became of it.
    Show {
        id: i64,
        #[arg(long)]
        json: bool,
    },
    /// Send the held write now, with the job's account and the key the agent computed.
    Approve {
        id: i64,
        /// Recorded as the decider (default: $USER).
        #[arg(long)]
        by: Option<String>,
    },
    /// Drop the held write for good.
    Reject {
        id: i64,
        /// Why, for whoever reads the approval later.
        #[arg(long)]
        reason: Option<String>,
        /// Recorded as the decider (default: $USER).
        #[arg(long)]
        by: Option<String>,
    },
}

pub async fn run(
    config: &Config,
    store: SharedStore,
    command: ApprovalsCommand,
) -> anyhow::Result<ExitCode> {
    match command {
        ApprovalsCommand::List {
            state,
            account,
            handler,
            page,
            json,
        } => {
            let state = state
                .map(|s| {
                    ApprovalState::parse(&s).ok_or_else(|| {
                        anyhow!(
                            "--state {s:?}: expected pending, executing, approved, failed or rejected"
                        )
                    })
                })
                .transpose()?;
            if !json {
                print!("{}", header());
            }
            let filter = ApprovalFilter {
                state,
                account,
                handler,
                ..ApprovalFilter::default()
            };
            let listed = pages::list(
                &page,
                async |before_id, limit| {
                    let filter = ApprovalFilter {
                        before_id,
                        limit,
                        ..filter.clone()
                    };
                    store.list_approvals(&filter).await
                },
                |a| a.id,
                |out, a| {
                    if json {
                        writeln!(out, "{}", serde_json::to_string(a)?)?;
                    } else {
                        out.write_all(row(a).as_bytes())?;
                    }
                    Ok(())
                },
            )
            .await?;
            if let Some(notice) = pages::notice(&page, &listed, "approvals") {
                eprintln!("{notice}");
            }
            Ok(ExitCode::SUCCESS)
        }
        ApprovalsCommand::Show { id, json } => {
            let Some(approval) = store.get_approval(id).await? else {
                bail!("no approval {id}");
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&approval)?);
            } else {
                print!("{}", detail(&approval));
            }
            Ok(ExitCode::SUCCESS)
        }
        ApprovalsCommand::Approve { id, by } => {
            // Sending needs the tools and accounts: the service's own assembly, this process.
            drop(store);
            let approvals = App::assemble(config.clone()).await?.approvals();
            let approval = approvals.approve(id, &decider(by)?).await?;
            let tool = &approval.request.tool;
            if approval.state == ApprovalState::Failed {
                bail!(
                    "approval {id} was approved, but {tool} refused the write; it is recorded as failed: {}",
                    approval.error.as_deref().unwrap_or_default()
                );
            }
            let result = approval.result.as_ref().map(ToString::to_string);
            println!(
                "approval {id}: {tool} sent; result: {}",
                shorten(result.as_deref().unwrap_or("null"))
            );
            Ok(ExitCode::SUCCESS)
        }
        ApprovalsCommand::Reject { id, reason, by } => {
            // Rejecting sends nothing: it needs no tools, only the store.
            let approvals = Approvals {
                store,
                tools: Arc::default(),
                handlers: Arc::default(),
                clock: Arc::new(SystemClock),
            };
            let reason = reason.filter(|r| !r.trim().is_empty());
            approvals.reject(id, &decider(by)?, reason).await?;
            println!("approval {id} rejected: it will not be sent");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The tools of this configuration, exactly as `serve` builds them.
/// `--by`, else the login name, else `cli`.
fn decider(by: Option<String>) -> anyhow::Result<String> {
    match by {
        Some(by) if by.trim().is_empty() => bail!("--by: must not be empty"),
        Some(by) => Ok(by.trim().to_string()),
        None => Ok(std::env::var("USER")
            .or_else(|_| std::env::var("USERNAME"))
            .ok()
            .filter(|u| !u.trim().is_empty())
            .unwrap_or_else(|| "cli".into())),
    }
}

/// The `approvals list` table's header line.
fn header() -> String {
    format!(
        "{:>6}  {:<9} {:<20} {:<12} {:<12} {:<28} {:>6}  {:<19}  arguments\n",
        "id", "state", "handler", "account", "subject", "tool", "job", "created"
    )
}

/// One approval's line of the `approvals list` table.
fn row(a: &Approval) -> String {
    let r = &a.request;
    format!(
        "{:>6}  {:<9} {:<20} {:<12} {:<12} {:<28} {:>6}  {:<19}  {}\n",
        a.id,
        a.state.as_str(),
        clip(&r.handler, 20),
        clip(&r.account, 12),
        clip(&r.subject, 12),
        clip(&r.tool, 28),
        r.job,
        super::time(r.created_at_ms),
        clip(&r.arguments.to_string(), 60)
    )
}

/// The readable form of `approvals show`.
pub fn detail(a: &Approval) -> String {
    let r = &a.request;
    let mut out = String::new();
    let _ = writeln!(out, "approval {}: {}", a.id, a.state.as_str());
    let _ = writeln!(out, "  tool      {}", r.tool);
    let _ = writeln!(out, "  handler   {}", r.handler);
    let _ = writeln!(out, "  account   {}  subject {}", r.account, r.subject);
    let _ = writeln!(
        out,
        "  asked by  job {}, attempt {}, call {} (hookwise runs list --job {})",
        r.job, r.attempt, r.call_id, r.job
    );
    let _ = writeln!(out, "  key       {}", r.idempotency_key);
    let _ = writeln!(out, "  created   {}", super::time(r.created_at_ms));
    if let (Some(by), Some(at)) = (&a.decided_by, a.decided_at_ms) {
        let _ = writeln!(out, "  decided   by {by} at {}", super::time(at));
    }
    if let Some(reason) = &a.reason {
        let _ = writeln!(out, "  reason    {}", shorten(reason));
    }
    if let Some(error) = &a.error {
        let label = if a.state == ApprovalState::Pending {
            "last try"
        } else {
            "error"
        };
        let _ = writeln!(out, "  {label:<9} {}", shorten(error));
    }
    let _ = writeln!(out, "\narguments:");
    indented(&mut out, &r.arguments);
    if let Some(result) = &a.result {
        let _ = writeln!(out, "\nresult:");
        indented(&mut out, result);
    }
    out
}

fn indented(out: &mut String, value: &serde_json::Value) {
    let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
    for line in shorten(&text).lines() {
        let _ = writeln!(out, "  {line}");
    }
}
