//! `hookwise replay --local`: the handler author's inner loop. Each fixture is signed as its
//! sender would sign it and goes through the server's own path (`Source::accept` verification →
//! `EventRouter::decide` → `Store::ingest`), into a throwaway SQLite store, so dedupe never stops
//! a re-run. Then every job the fixtures created runs at once, debounce waits ignored, through
//! the real `AgentRunner` with the configured `[llm]` and tools, one job at a time (so never two
//! of one account), and each run's transcript is printed as `hookwise runs show` prints it.
//!
//! With `--no-llm` only the first half runs, without a store: each fixture verified and routed,
//! and for each handler whether the event starts it or why not.

use super::runs::transcript;
use super::source_for;
use crate::agent::run::AgentRunner;
use crate::app::{App, Options, Plan};
use crate::cases::Scratch;
use crate::config::Config;
use crate::fixture::Fixture;
use crate::scheduler::{JobRunner, RunContext};
use crate::store::{Disposition, IngestItem, JobFinish, RunFilter};
use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The lease owner written on the throwaway store's jobs.
const OWNER: &str = "hookwise-replay-local";

pub async fn replay_local(
    config: &Config,
    source_name: Option<&str>,
    new_id: bool,
    dry_run: bool,
    no_llm: bool,
    paths: &[PathBuf],
) -> anyhow::Result<ExitCode> {
    if no_llm {
        return route_only(config, source_name, new_id, paths);
    }
    if config.llm.is_none() {
        bail!(
            "replay --local runs handlers with the configured LLM, but {} has no [llm] table; \
             add one (provider, model, base_url, api_key: see the README's configuration reference \
             and the example in hookwise.toml), or pass --no-llm to see only which handlers each \
             fixture starts",
            config.file_label().display()
        );
    }
    // Declared first, dropped last: the store's files live in it.
    let scratch = Scratch::new("hookwise-replay")?;
    let options = Options {
        store: Some(format!(
            "sqlite://{}",
            scratch.path().join("replay.db").display()
        )),
        // Writes are recorded, not sent; reads still happen.
        dry_run,
        ..Options::default()
    };
    let app = App::assemble_with(config.clone(), options).await?;
    let runner = app.agent().context("the agent needs [llm]")?;

    let mut refused = 0;
    for path in paths {
        match ingest(&app, source_name, new_id, path).await {
            Ok(line) => println!("{} -> {line}", path.display()),
            Err(e) => {
                refused += 1;
                println!("{} -> refused: {e:#}", path.display());
            }
        }
    }

    let (mut runs, mut not_done) = (0, 0);
    while let Some(outcome) = run_next(&app, &runner).await? {
        runs += 1;
        if outcome != "done" {
            not_done += 1;
        }
    }
    println!(
        "\n{runs} run(s): {} done, {not_done} not done{}",
        runs - not_done,
        if dry_run {
            " (--dry-run: no write was sent)"
        } else {
            ""
        }
    );
    if refused > 0 {
        println!("{refused} of {} fixture(s) were refused", paths.len());
    }
    Ok(if refused > 0 || not_done > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// `--no-llm`: every fixture verified and routed as the server would, nothing stored, nothing
/// run, no LLM needed; for each, the handlers it starts, and why each other one does not.
fn route_only(
    config: &Config,
    source_name: Option<&str>,
    new_id: bool,
    paths: &[PathBuf],
) -> anyhow::Result<ExitCode> {
    let plan = Plan::check(config)?;
    let mut refused = 0;
    for path in paths {
        let (event, payload) = match accept(config, source_name, new_id, path) {
            Ok(accepted) => accepted,
            Err(e) => {
                refused += 1;
                println!("{} -> refused: {e:#}", path.display());
                continue;
            }
        };
        println!(
            "{} -> event {} ({}, account {}, subject {})",
            path.display(),
            event.id,
            event.kind,
            event.account,
            event.subject
        );
        let routes = match plan.router.decide(&event, &payload) {
            Disposition::Ignore(reason) => {
                println!("  ignored: {reason}");
                continue;
            }
            Disposition::Route(routes) => routes,
        };
        for route in &routes {
            let debounce = if route.period_ms > 0 {
                format!(
                    ", after {}s without a newer event (at most {}s after the first)",
                    route.period_ms / 1000,
                    route.max_wait_ms / 1000
                )
            } else {
                String::new()
            };
            println!(
                "  starts {} for subject {}{debounce}",
                route.handler, route.subject
            );
        }
        for handler in plan.handlers.iter() {
            if let Some(why) = handler.mismatch(&event.kind, &payload) {
                println!("  not {}: {why}", handler.name);
            }
        }
        if routes.is_empty() {
            println!("  no handler starts: the event would be stored as unrouted");
        }
    }
    if plan.handlers.is_empty() {
        println!(
            "\nno handlers are loaded from {}",
            config.handlers_dir.display()
        );
    }
    if refused > 0 {
        println!("{refused} of {} fixture(s) were refused", paths.len());
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// Signs one fixture like `replay` does and accepts it like `POST /webhooks/{source}` does.
fn accept(
    config: &Config,
    source_name: Option<&str>,
    new_id: bool,
    path: &Path,
) -> anyhow::Result<(crate::kernel::event::Event, serde_json::Value)> {
    let fixture = Fixture::load(path)?;
    let source = source_for(config, &fixture, source_name)?;
    let id = super::delivery_id(&fixture, new_id);
    fixture.accept(&source, &id, chrono::Utc::now())
}

/// Accepts one fixture (`accept`) and stores it with its jobs. Returns what happened, for the
/// user.
async fn ingest(
    app: &App,
    source_name: Option<&str>,
    new_id: bool,
    path: &Path,
) -> anyhow::Result<String> {
    let (event, payload) = accept(&app.config, source_name, new_id, path)?;
    let disposition = app.router.decide(&event, &payload);
    let what = format!(
        "event {} ({}, account {}, subject {})",
        event.id, event.kind, event.account, event.subject
    );
    let ignored = match &disposition {
        Disposition::Ignore(reason) => Some(reason.clone()),
        Disposition::Route(_) => None,
    };
    let mut outcomes = app
        .store
        .ingest(vec![IngestItem {
            event,
            disposition,
            trace_context: None,
        }])
        .await?;
    let outcome = outcomes.pop().context("the store answered no outcome")?;
    Ok(match (ignored, outcome.duplicate, outcome.jobs.len()) {
        (_, true, _) => format!("{what}: duplicate of an earlier fixture, nothing new"),
        (Some(reason), _, _) => format!("{what}: ignored ({reason})"),
        (None, _, 0) => format!("{what}: no handler matched"),
        (None, _, n) => format!("{what}: {n} job(s)"),
    })
}

/// Claims the next job whatever its debounce wait, runs it, records its end, and prints its
/// transcript. None when no job is left. Jobs run once: a failure is final here, since the
/// author re-runs the command rather than waiting for a retry.
async fn run_next(app: &App, runner: &AgentRunner) -> anyhow::Result<Option<String>> {
    let store = &app.store;
    // Far enough ahead that every debounce wait is over; the claim still never hands out two
    // jobs of one account, and one job at a time keeps the transcripts in order.
    let far_future = chrono::Utc::now().timestamp_millis() + 100 * 365 * 24 * 3_600_000;
    let lease = app.config.scheduler.lease.as_millis() as i64;
    let Some(claimed) = store.claim_jobs(OWNER, far_future, 1, lease).await?.pop() else {
        return Ok(None);
    };
    let job = &claimed.job;
    let handler = app.handlers.get(&job.handler).with_context(|| {
        format!(
            "job {} names handler {:?}, which is not loaded",
            job.id, job.handler
        )
    })?;
    println!(
        "\n=== job {}: handler {} ({} mode), account {}, subject {}, {} event(s)",
        job.id,
        job.handler,
        handler.mode,
        job.account,
        job.subject,
        claimed.events.len()
    );
    let ctx = RunContext {
        job,
        handler,
        events: &claimed.events,
    };
    let result = match tokio::time::timeout(handler.agent.deadline, runner.run(ctx)).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(_) => Err(format!(
            "the run did not finish within its deadline of {:?}",
            handler.agent.deadline
        )),
    };
    let finish = match &result {
        Ok(()) => JobFinish::Done,
        Err(error) => JobFinish::Dead {
            error: error.clone(),
        },
    };
    store
        .finish_job(job.id, OWNER, chrono::Utc::now().timestamp_millis(), finish)
        .await?;
    let run = store
        .list_runs(&RunFilter {
            job: Some(job.id),
            limit: 1,
            ..RunFilter::default()
        })
        .await?
        .pop();
    Ok(Some(match run {
        Some(run) => {
            print!("{}", transcript(&run));
            run.run.outcome
        }
        None => {
            println!(
                "no transcript was recorded: {}",
                result.err().unwrap_or_default()
            );
            "failed".into()
        }
    }))
}
