//! `hookwise eval`: a candidate version of a handler replayed against the jobs the current
//! version handled, and its writes compared with what the current version did.
//!
//! The stored events of each job go through the candidate's routing (its `on` and `[[when]]`)
//! into a throwaway store, and each job it starts runs at once, in dry-run, with the configured
//! model. Reads are answered from the current version's transcript when the same read with the
//! same arguments was made there, and otherwise by the upstream through the governor (reads
//! only), or refused with `--no-upstream`. Nothing is written upstream: the run is in dry-run,
//! and the tools a candidate runs with refuse to send a write at all (`standin.rs`).

use super::case::Action;
use super::standin::{Book, Misses, Op, ToolRecord};
use super::{Scratch, intended_actions};
use crate::agent::run::AgentRunner;
use crate::app::{App, Options as AppOptions};
use crate::config::Config;
use crate::kernel::event::{AccountId, Event};

use crate::store::batcher::RunWriter;
use crate::store::{
    Disposition, IngestItem, JobFilter, JobId, JobState, JobWithEvents, RunFilter, SharedStore,
    StoredRun,
};
use anyhow::{Context, bail};
use serde::Serialize;
use serde_json::Value;
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

pub struct EvalOptions {
    /// The current handler, whose jobs are replayed.
    pub handler: String,
    /// The candidate handler file.
    pub candidate: PathBuf,
    /// Jobs finished within this long (ignored when `jobs` is given).
    pub since: Duration,
    pub jobs: Vec<i64>,
    pub limit: u32,
    pub no_upstream: bool,
    pub json: bool,
}

/// One write compared.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Compared {
    Same {
        tool: String,
        arguments: Value,
    },
    Changed {
        tool: String,
        before: Value,
        after: Value,
        /// `name: before → after` per argument that differs.
        differences: Vec<String>,
    },
    /// The candidate would write this; the current version did not.
    New {
        tool: String,
        arguments: Value,
    },
    /// The current version wrote this; the candidate would not.
    Missing {
        tool: String,
        arguments: Value,
    },
}

#[derive(Debug, Serialize)]
pub struct JobReport {
    pub job: i64,
    pub account: String,
    pub subject: String,
    pub current_outcome: String,
    /// None: the candidate did not start for these events (`why_not` says why).
    pub candidate_outcome: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why_not: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub candidate_error: Option<String>,
    pub actions: Vec<Compared>,
    pub current_tokens: (u64, u64),
    pub candidate_tokens: (u64, u64),
    /// USD by `[llm.prices]` and each run's model; null when the model has no price.
    pub current_cost_usd: Option<f64>,
    pub candidate_cost_usd: Option<f64>,
    /// Reads neither the transcript nor (with `--no-upstream`) the upstream answered.
    pub unanswered_reads: Vec<String>,
}

#[derive(Debug, Default, Serialize)]
pub struct Totals {
    pub jobs: usize,
    pub same: usize,
    pub changed: usize,
    pub new: usize,
    pub missing: usize,
    pub ended_differently: usize,
    pub current_input_tokens: u64,
    pub current_output_tokens: u64,
    pub candidate_input_tokens: u64,
    pub candidate_output_tokens: u64,
    /// Null when a job's cost is unknown (a model without a price).
    pub current_cost_usd: Option<f64>,
    pub candidate_cost_usd: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct EvalReport {
    pub handler: String,
    pub candidate: String,
    pub jobs: Vec<JobReport>,
    pub totals: Totals,
}

pub async fn eval(config: &Config, options: &EvalOptions) -> anyhow::Result<ExitCode> {
    if config.llm.is_none() {
        bail!(
            "eval runs the candidate with the configured model, but {} has no [llm] table",
            config.file_label().display()
        );
    }
    let candidate = crate::handler::load_file(&options.candidate).map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        anyhow::anyhow!("the candidate does not load:\n{}", lines.join("\n"))
    })?;

    // The history: the configured store, read only.
    let store = crate::store::open(&config.store)
        .await
        .with_context(|| format!("opening store {}", crate::store::redact(&config.store)))?;
    let jobs = history(&store, options).await?;
    if jobs.is_empty() {
        bail!(
            "no finished job of handler {:?} to compare with{}",
            options.handler,
            if options.jobs.is_empty() {
                format!(" in the last {}s (--since)", options.since.as_secs())
            } else {
                String::new()
            }
        );
    }

    // The candidate alone, in a throwaway store, in dry-run.
    let scratch = Scratch::new("hookwise-eval")?;
    let handlers = scratch.path().join("handlers");
    std::fs::create_dir(&handlers)?;
    let file = options
        .candidate
        .file_name()
        .context("the candidate is a file")?;
    std::fs::copy(&options.candidate, handlers.join(file))
        .with_context(|| format!("reading {}", options.candidate.display()))?;
    let mut scratch_config = config.clone();
    scratch_config.handlers_dir = handlers;
    let app = App::assemble_with(
        scratch_config,
        AppOptions {
            store: Some(format!(
                "sqlite://{}",
                scratch.path().join("eval.db").display()
            )),
            dry_run: true,
            ..AppOptions::default()
        },
    )
    .await?;
    let handler = app
        .handlers
        .get(candidate.name.as_str())
        .context("the candidate is loaded")?;
    let llm = app.llm.as_ref().context("[llm] is configured")?;

    let mut reports = Vec::new();
    for (job, current) in jobs {
        let book = Book::new(
            Vec::new(),
            transcript_reads(&current, &app),
            if options.no_upstream {
                Misses::Refuse
            } else {
                Misses::Upstream
            },
        );
        let runner = AgentRunner {
            llm: llm.provider.clone(),
            retry: llm.retry.clone(),
            tools: Arc::new(book.wrap(&app.tools).map_err(anyhow::Error::msg)?),
            store: app.store.clone(),
            clock: app.clock.clone(),
            model: llm.model.clone(),
            max_tokens: llm.max_tokens,
            metrics: app.metrics.clone(),
            runs: RunWriter::start(app.store.clone()),
            // The candidate's runs are priced, never held to a budget: its store is a scratch one.
            budgets: Arc::new(crate::agent::budget::Budgets {
                prices: app.budgets.prices.clone(),
                ..Default::default()
            }),
        };
        let mut report = JobReport {
            job: job.job.id.0,
            account: job.job.account.clone(),
            subject: job.job.subject.clone(),
            current_outcome: current.run.outcome.clone(),
            candidate_outcome: None,
            why_not: None,
            candidate_error: None,
            actions: Vec::new(),
            current_tokens: (current.run.input_tokens, current.run.output_tokens),
            candidate_tokens: (0, 0),
            // Both priced by today's table, so they compare.
            current_cost_usd: app.budgets.cost(
                &current.run.model,
                current.run.input_tokens,
                current.run.output_tokens,
            ),
            candidate_cost_usd: Some(0.0),
            unanswered_reads: Vec::new(),
        };
        let current_actions = written(&current, &app);

        // The job's events, through the candidate's routing.
        let mut started = false;
        let mut why_not = Vec::new();
        for stored in &job.events {
            let payload: Value = serde_json::from_str(&stored.payload).unwrap_or(Value::Null);
            let event = Event {
                id: stored.event_id.clone(),
                source: stored.source.clone(),
                kind: stored.kind.clone(),
                account: AccountId::new(&stored.account),
                subject: stored.subject.clone(),
                occurred_at: at(stored.occurred_at_ms),
                received_at: at(stored.received_at_ms),
                actor: None,
                payload: stored.payload.clone(),
            };
            let disposition = app.router.decide(&event, &payload);
            match &disposition {
                Disposition::Route(routes) if !routes.is_empty() => started = true,
                _ => why_not.push(
                    handler
                        .mismatch(&event.kind, &payload)
                        .unwrap_or_else(|| "not routed".into()),
                ),
            }
            app.store
                .ingest(vec![IngestItem {
                    event,
                    disposition,
                    trace_context: None,
                }])
                .await?;
        }
        if !started {
            report.why_not = Some(why_not.join("; "));
            report.actions = compare(&current_actions, &[]);
            reports.push(report);
            continue;
        }
        let far_future = chrono::Utc::now().timestamp_millis() + 100 * 365 * 24 * 3_600_000;
        let lease = config.scheduler.lease.as_millis() as i64;
        let mut actions = Vec::new();
        while let Some(claimed) = app
            .store
            .claim_jobs(super::OWNER, far_future, 1, lease)
            .await?
            .pop()
        {
            let now = chrono::Utc::now().timestamp_millis();
            let run = super::run_now(&app, &runner, handler, &claimed, now).await?;
            report.candidate_outcome = Some(run.run.outcome.clone());
            report.candidate_error = run.run.error.clone();
            report.candidate_tokens.0 += run.run.input_tokens;
            report.candidate_tokens.1 += run.run.output_tokens;
            report.candidate_cost_usd = report
                .candidate_cost_usd
                .zip(run.run.cost_usd)
                .map(|(a, b)| a + b);
            actions.extend(intended_actions(&run.run.steps));
        }
        report.unanswered_reads = book.unanswered();
        report.actions = compare(&current_actions, &actions);
        reports.push(report);
    }

    let mut totals = Totals {
        jobs: reports.len(),
        current_cost_usd: Some(0.0),
        candidate_cost_usd: Some(0.0),
        ..Totals::default()
    };
    for r in &reports {
        for a in &r.actions {
            match a {
                Compared::Same { .. } => totals.same += 1,
                Compared::Changed { .. } => totals.changed += 1,
                Compared::New { .. } => totals.new += 1,
                Compared::Missing { .. } => totals.missing += 1,
            }
        }
        if r.candidate_outcome.as_deref() != Some(r.current_outcome.as_str()) {
            totals.ended_differently += 1;
        }
        totals.current_input_tokens += r.current_tokens.0;
        totals.current_output_tokens += r.current_tokens.1;
        totals.candidate_input_tokens += r.candidate_tokens.0;
        totals.candidate_output_tokens += r.candidate_tokens.1;
        totals.current_cost_usd = totals
            .current_cost_usd
            .zip(r.current_cost_usd)
            .map(|(a, b)| a + b);
        totals.candidate_cost_usd = totals
            .candidate_cost_usd
            .zip(r.candidate_cost_usd)
            .map(|(a, b)| a + b);
    }
    let report = EvalReport {
        handler: options.handler.clone(),
        candidate: options.candidate.display().to_string(),
        jobs: reports,
        totals,
    };
    if options.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report));
    }
    Ok(ExitCode::SUCCESS)
}

fn at(ms: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// The finished jobs of the handler to replay, newest first, each with its latest run.
async fn history(
    store: &SharedStore,
    options: &EvalOptions,
) -> anyhow::Result<Vec<(JobWithEvents, StoredRun)>> {
    let mut out = Vec::new();
    let mut ids: Vec<JobId> = options.jobs.iter().map(|id| JobId(*id)).collect();
    if ids.is_empty() {
        let cutoff = chrono::Utc::now().timestamp_millis() - options.since.as_millis() as i64;
        let mut before = None;
        'pages: loop {
            let page = store
                .list_jobs(&JobFilter {
                    handler: Some(options.handler.clone()),
                    before_id: before,
                    limit: 200,
                    ..JobFilter::default()
                })
                .await?;
            let Some(last) = page.last() else { break };
            before = Some(last.id.0);
            for job in page {
                if job.created_at_ms < cutoff {
                    break 'pages;
                }
                if matches!(job.state, JobState::Done | JobState::Dead) {
                    ids.push(job.id);
                    if ids.len() >= options.limit as usize {
                        break 'pages;
                    }
                }
            }
        }
    }
    for id in ids {
        let job = store
            .get_job(id)
            .await?
            .with_context(|| format!("no job {}", id.0))?;
        if job.job.handler != options.handler {
            bail!(
                "job {} belongs to handler {}, not {}",
                id.0,
                job.job.handler,
                options.handler
            );
        }
        let Some(run) = latest_run(store, id).await? else {
            continue;
        };
        out.push((job, run));
    }
    Ok(out)
}

async fn latest_run(store: &SharedStore, job: JobId) -> anyhow::Result<Option<StoredRun>> {
    Ok(store
        .list_runs(&RunFilter {
            job: Some(job),
            limit: 1,
            ..RunFilter::default()
        })
        .await?
        .pop())
}

/// Each tool call of a transcript by its call id: (tool, arguments).
fn calls_by_id(run: &StoredRun) -> HashMap<String, (String, Value)> {
    let mut calls = HashMap::new();
    for step in run.run.steps.as_array().into_iter().flatten() {
        if step["type"] != "assistant" {
            continue;
        }
        for call in step["tool_calls"].as_array().into_iter().flatten() {
            if let Some(id) = call["id"].as_str() {
                let name = call["name"].as_str().unwrap_or_default().to_string();
                calls.insert(id.to_string(), (name, call["arguments"].clone()));
            }
        }
    }
    calls
}

fn writes(app: &App, tool: &str) -> bool {
    app.tools.get(tool).is_some_and(|e| e.tool.writes())
}

/// The reads the current version made and what they returned, to answer the candidate's same
/// reads without asking the upstream again.
fn transcript_reads(run: &StoredRun, app: &App) -> Vec<ToolRecord> {
    let calls = calls_by_id(run);
    run.run
        .steps
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["type"] == "tool_result")
        .filter_map(|s| {
            let (tool, arguments) = calls.get(s["call_id"].as_str()?)?;
            (!writes(app, tool)).then(|| ToolRecord {
                tool: tool.clone(),
                op: Op::Call,
                arguments: arguments.clone(),
                result: Some(s["result"].clone()),
                error: None,
            })
        })
        .collect()
}

/// What the current version wrote: its sent writes (live) and its intended ones (dry-run,
/// approve).
fn written(run: &StoredRun, app: &App) -> Vec<Action> {
    let calls = calls_by_id(run);
    run.run
        .steps
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| match s["type"].as_str()? {
            "intended_action" => Some(Action {
                tool: s["name"].as_str()?.to_string(),
                arguments: s["arguments"].clone(),
            }),
            "tool_result" => {
                let (tool, arguments) = calls.get(s["call_id"].as_str()?)?;
                writes(app, tool).then(|| Action {
                    tool: tool.clone(),
                    arguments: arguments.clone(),
                })
            }
            _ => None,
        })
        .collect()
}

/// Pairs the two versions' writes per tool: equal arguments are the same action; the rest pair
/// up in order as changed; what is left over is new (candidate) or missing (current).
pub fn compare(current: &[Action], candidate: &[Action]) -> Vec<Compared> {
    let mut out = Vec::new();
    let mut left: Vec<Option<&Action>> = candidate.iter().map(Some).collect();
    let mut unmatched = Vec::new();
    for action in current {
        let same = left
            .iter_mut()
            .find(|c| c.is_some_and(|c| c == action))
            .and_then(Option::take);
        match same {
            Some(_) => out.push(Compared::Same {
                tool: action.tool.clone(),
                arguments: action.arguments.clone(),
            }),
            None => unmatched.push(action),
        }
    }
    for action in unmatched {
        let other = left
            .iter_mut()
            .find(|c| c.is_some_and(|c| c.tool == action.tool))
            .and_then(Option::take);
        match other {
            Some(after) => out.push(Compared::Changed {
                tool: action.tool.clone(),
                before: action.arguments.clone(),
                after: after.arguments.clone(),
                differences: differences(&action.arguments, &after.arguments),
            }),
            None => out.push(Compared::Missing {
                tool: action.tool.clone(),
                arguments: action.arguments.clone(),
            }),
        }
    }
    for action in left.into_iter().flatten() {
        out.push(Compared::New {
            tool: action.tool.clone(),
            arguments: action.arguments.clone(),
        });
    }
    out
}

fn differences(before: &Value, after: &Value) -> Vec<String> {
    let empty = serde_json::Map::new();
    let (b, a) = (
        before.as_object().unwrap_or(&empty),
        after.as_object().unwrap_or(&empty),
    );
    let mut keys: Vec<&String> = b.keys().chain(a.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| b.get(*k) != a.get(*k))
        .map(|k| {
            let show = |v: Option<&Value>| v.map_or("(not set)".to_string(), Value::to_string);
            format!("{k}: {} → {}", show(b.get(k)), show(a.get(k)))
        })
        .collect()
}

fn render(report: &EvalReport) -> String {
    let mut out = format!(
        "{} against {} ({} job(s), newest first; nothing was sent upstream)\n",
        report.candidate, report.handler, report.totals.jobs
    );
    for job in &report.jobs {
        let candidate = match (&job.candidate_outcome, &job.why_not) {
            (Some(outcome), _) => outcome.clone(),
            (None, Some(why)) => format!("not started ({why})"),
            (None, None) => "no run".into(),
        };
        out.push_str(&format!(
            "\njob {} (account {}, subject {}): current {}, candidate {}\n",
            job.job, job.account, job.subject, job.current_outcome, candidate
        ));
        if let Some(error) = &job.candidate_error {
            out.push_str(&format!("  candidate error: {error}\n"));
        }
        if job.actions.is_empty() {
            out.push_str("  no writes in either version\n");
        }
        for action in &job.actions {
            out.push_str(&match action {
                Compared::Same { tool, arguments } => format!("  same     {tool} {arguments}\n"),
                Compared::Changed {
                    tool, differences, ..
                } => {
                    let mut s = format!("  changed  {tool}\n");
                    for d in differences {
                        s.push_str(&format!("             {d}\n"));
                    }
                    s
                }
                Compared::New { tool, arguments } => {
                    format!("  new      {tool} {arguments} (intended, not sent)\n")
                }
                Compared::Missing { tool, arguments } => format!("  missing  {tool} {arguments}\n"),
            });
        }
        for read in &job.unanswered_reads {
            out.push_str(&format!("  read refused (--no-upstream): {read}\n"));
        }
        out.push_str(&format!(
            "  tokens: current {} in / {} out, candidate {} in / {} out\n",
            job.current_tokens.0,
            job.current_tokens.1,
            job.candidate_tokens.0,
            job.candidate_tokens.1
        ));
        out.push_str(&format!(
            "  cost: current {}, candidate {}\n",
            cost(job.current_cost_usd),
            cost(job.candidate_cost_usd)
        ));
    }
    let t = &report.totals;
    out.push_str(&format!(
        "\n{} job(s): writes {} same, {} changed, {} new, {} missing; {} run(s) ended differently\n\
         tokens: current {} in / {} out, candidate {} in / {} out\n",
        t.jobs,
        t.same,
        t.changed,
        t.new,
        t.missing,
        t.ended_differently,
        t.current_input_tokens,
        t.current_output_tokens,
        t.candidate_input_tokens,
        t.candidate_output_tokens
    ));
    out.push_str(&format!(
        "cost: current {}, candidate {}\n",
        cost(t.current_cost_usd),
        cost(t.candidate_cost_usd)
    ));
    out
}

/// A cost for the report: unknown when a model has no price in `[llm.prices]`.
fn cost(usd: Option<f64>) -> String {
    usd.map_or_else(
        || "unknown (a model without a price in [llm.prices])".to_string(),
        crate::agent::budget::dollars,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn action(tool: &str, arguments: Value) -> Action {
        Action {
            tool: tool.into(),
            arguments,
        }
    }

    #[test]
    fn writes_pair_up_as_same_changed_new_and_missing() {
        let current = [
            action("t.priority", json!({"id": 1, "priority": 3})),
            action("t.note", json!({"id": 1, "html": "old"})),
            action("t.field", json!({"id": 1})),
        ];
        let candidate = [
            action("t.note", json!({"id": 1, "html": "new"})),
            action("t.priority", json!({"id": 1, "priority": 3})),
            action("t.reply", json!({"id": 1, "text": "hi"})),
        ];
        let compared = compare(&current, &candidate);
        assert_eq!(
            compared,
            [
                Compared::Same {
                    tool: "t.priority".into(),
                    arguments: json!({"id": 1, "priority": 3})
                },
                Compared::Changed {
                    tool: "t.note".into(),
                    before: json!({"id": 1, "html": "old"}),
                    after: json!({"id": 1, "html": "new"}),
                    differences: vec!["html: \"old\" → \"new\"".into()],
                },
                Compared::Missing {
                    tool: "t.field".into(),
                    arguments: json!({"id": 1})
                },
                Compared::New {
                    tool: "t.reply".into(),
                    arguments: json!({"id": 1, "text": "hi"})
                },
            ]
        );
    }
}
