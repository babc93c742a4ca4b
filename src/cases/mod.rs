//! `hookwise test`: handler test cases with expected actions.
//!
//! A case (`<handlers_dir>/tests/<handler>/<case>.toml`, format in handlers/README.md) names
//! fixture events, the upstream answers its reads see, and the writes that must (or must not)
//! follow. Each case runs in a throwaway SQLite store through the server's own path: the
//! fixture is signed and verified by its source, adapted, routed (filters, debounce) and
//! stored; the handler's job then runs at once through the real `AgentRunner`, in dry-run,
//! and the intended actions of its transcript are judged by the case's matchers.
//!
//! The model is the case's cassette (`<case>.cassette.json`, `cassette.rs`), the upstream the
//! case's `[[upstream]]` results and the cassette's recorded ones (`standin.rs`), so a case runs
//! offline and gives the same answer every time. `--record` asks the configured model (and,
//! for reads no one recorded, the configured upstream) and writes the cassette;
//! `--live-model` asks the model again and judges only the actions.

pub mod case;
pub mod cassette;
pub mod eval;
mod junit;
pub mod standin;

use crate::agent::run::AgentRunner;
use crate::app::{App, Options as AppOptions, Plan};
use crate::config::Config;
use crate::fixture::Fixture;
use crate::handler::Handler;
use crate::kernel::clock::{Clock, ManualClock};
use crate::scheduler::{JobRunner, RunContext};
use crate::store::batcher::RunWriter;
use crate::store::{Disposition, IngestItem, JobFinish, RunFilter};
use anyhow::{Context, bail};
use case::{Action, Case};
use cassette::{Answers, Cassette, CassetteLlm};
use standin::{Book, Misses};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

/// Where a case's model answers come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The cassette; offline.
    Replay,
    /// The configured model; the cassette is written.
    Record,
    /// The configured model; only the actions are judged, nothing is written.
    LiveModel,
}

pub struct Options {
    /// Only these handlers' cases (empty: all).
    pub handlers: Vec<String>,
    /// The cases' directory (default `<handlers_dir>/tests`).
    pub dir: Option<PathBuf>,
    pub mode: Mode,
    pub junit: Option<PathBuf>,
}

/// What one case came to.
pub struct Report {
    pub id: String,
    pub handler: String,
    pub name: String,
    pub path: PathBuf,
    /// Empty when the case passed.
    pub problems: Vec<String>,
    pub seconds: f64,
    /// Said after the verdict (`recorded ...`).
    pub note: Option<String>,
}

/// The lease owner written on the scratch stores of `test` and `eval`.
const OWNER: &str = "hookwise-test";

/// Runs the cases `options` select, printing a line per case (and what failed), and the JUnit
/// file if asked. Exit code 1 when a case failed or could not be read.
pub async fn run(config: &Config, options: &Options) -> anyhow::Result<ExitCode> {
    let plan = Plan::check(config)?;
    for name in &options.handlers {
        if plan.handlers.get(name).is_none() {
            let loaded: Vec<_> = plan.handlers.iter().map(|h| h.name.as_str()).collect();
            bail!(
                "no handler {name:?} in {}; loaded: {}",
                config.handlers_dir.display(),
                loaded.join(", ")
            );
        }
    }
    if options.mode != Mode::Replay && config.llm.is_none() {
        bail!(
            "--record and --live-model ask the configured model, but {} has no [llm] table; add \
             one (README, \"Configuration reference\")",
            config.file_label().display()
        );
    }
    let dir = options
        .dir
        .clone()
        .unwrap_or_else(|| config.handlers_dir.join("tests"));
    let (cases, mut reports) = discover(&plan, &dir, &options.handlers)?;
    for report in &reports {
        print_report(report);
    }
    for case in &cases {
        let handler = plan
            .handlers
            .get(&case.handler)
            .context("discovered cases name loaded handlers")?;
        let started = Instant::now();
        let (problems, note) = match run_case(config, handler, case, options.mode).await {
            Ok(done) => done,
            Err(e) => (vec![format!("{e:#}")], None),
        };
        let report = Report {
            id: case.id.clone(),
            handler: case.handler.clone(),
            name: case.name.clone(),
            path: case.path.clone(),
            problems,
            seconds: started.elapsed().as_secs_f64(),
            note,
        };
        print_report(&report);
        reports.push(report);
    }
    let failed = reports.iter().filter(|r| !r.problems.is_empty()).count();
    println!(
        "\n{} case(s): {} passed, {failed} failed",
        reports.len(),
        reports.len() - failed
    );
    if options.handlers.is_empty() {
        let untested: Vec<_> = plan
            .handlers
            .iter()
            .filter(|h| !reports.iter().any(|r| r.handler == h.name.as_str()))
            .map(|h| h.name.as_str())
            .collect();
        if !untested.is_empty() {
            println!(
                "handlers without test cases (in {}): {}",
                dir.display(),
                untested.join(", ")
            );
        }
    }
    if let Some(path) = &options.junit {
        std::fs::write(path, junit::render(&reports))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn print_report(report: &Report) {
    let verdict = if report.problems.is_empty() {
        "PASS"
    } else {
        "FAIL"
    };
    let note = report
        .note
        .as_ref()
        .map(|n| format!(", {n}"))
        .unwrap_or_default();
    println!("{verdict} {} ({:.2} s{note})", report.id, report.seconds);
    for problem in &report.problems {
        for (n, line) in problem.lines().enumerate() {
            let lead = if n == 0 { "  - " } else { "    " };
            println!("{lead}{line}");
        }
    }
}

/// The cases under `dir`, one directory per handler, in name order; a directory that names no
/// loaded handler and a case file that does not read are failed reports.
fn discover(plan: &Plan, dir: &Path, only: &[String]) -> anyhow::Result<(Vec<Case>, Vec<Report>)> {
    let (mut cases, mut broken) = (Vec::new(), Vec::new());
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            println!("no test cases: {} does not exist", dir.display());
            return Ok((cases, broken));
        }
        Err(e) => bail!("reading {}: {e}", dir.display()),
    };
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    for handler_dir in dirs {
        let name = handler_dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        if !only.is_empty() && !only.contains(&name) {
            continue;
        }
        let broken_report = |path: &Path, problem: String| Report {
            id: format!("{name}/{}", path.file_stem().unwrap_or_default().display()),
            handler: name.clone(),
            name: path
                .file_stem()
                .unwrap_or_default()
                .to_string_lossy()
                .into(),
            path: path.to_path_buf(),
            problems: vec![problem],
            seconds: 0.0,
            note: None,
        };
        let Some(handler) = plan.handlers.get(&name) else {
            broken.push(broken_report(
                &handler_dir,
                format!(
                    "{}: names no loaded handler (a case directory is named after its handler)",
                    handler_dir.display()
                ),
            ));
            continue;
        };
        let mut files: Vec<PathBuf> = std::fs::read_dir(&handler_dir)
            .with_context(|| format!("reading {}", handler_dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "toml") && p.is_file())
            .collect();
        files.sort();
        for path in files {
            match case::load(&path, &name, &handler.agent.tools) {
                Ok(case) => cases.push(case),
                Err(problem) => broken.push(broken_report(&path, problem)),
            }
        }
    }
    Ok((cases, broken))
}

/// Runs one case: its problems (none: it passed) and a note.
async fn run_case(
    config: &Config,
    handler: &Handler,
    case: &Case,
    mode: Mode,
) -> anyhow::Result<(Vec<String>, Option<String>)> {
    let scratch = Scratch::new("hookwise-test")?;
    let clock = Arc::new(ManualClock::starting_at(case.at));
    let app = App::assemble_with(
        config.clone(),
        AppOptions {
            clock: clock.clone(),
            store: Some(format!(
                "sqlite://{}",
                scratch.path().join("case.db").display()
            )),
            // Nothing a case does is sent.
            dry_run: true,
        },
    )
    .await?;

    // Deliver the events as their senders would.
    let mut problems = Vec::new();
    let mut started_by = Vec::new();
    let mut passed_over = Vec::new();
    for path in &case.events {
        let fixture = Fixture::load(path)?;
        let source_name = case
            .source
            .clone()
            .or_else(|| fixture.default_source())
            .with_context(|| format!("cannot tell the source of {}", path.display()))?;
        let source = app.sources.get(&source_name).with_context(|| {
            format!(
                "{}: no source {source_name:?} for fixture {} (set `source` in the case)",
                case.path.display(),
                path.display()
            )
        })?;
        let (event, payload) = fixture
            .accept(source, &fixture.stable_id(), clock.now())
            .with_context(|| format!("{} was refused", path.display()))?;
        let disposition = app.router.decide(&event, &payload);
        let routed = match &disposition {
            Disposition::Route(routes) => routes.iter().any(|r| r.handler == handler.name.as_str()),
            Disposition::Ignore(_) => false,
        };
        if routed {
            started_by.push(path.display().to_string());
        } else {
            let why = match &disposition {
                Disposition::Ignore(reason) => format!("ignored: {reason}"),
                Disposition::Route(_) => handler
                    .mismatch(&event.kind, &payload)
                    .unwrap_or_else(|| "not routed".into()),
            };
            passed_over.push(format!("{}: {why}", path.display()));
        }
        app.store
            .ingest(vec![IngestItem {
                event,
                disposition,
                trace_context: None,
            }])
            .await?;
        clock.advance(std::time::Duration::from_secs(1));
    }
    match (case.expect.triggers, started_by.is_empty()) {
        (true, true) => {
            problems.push(format!(
                "expected {} to start, but no event started it:\n{}",
                handler.name,
                passed_over.join("\n")
            ));
            return Ok((problems, None));
        }
        (false, false) => {
            problems.push(format!(
                "expected {} not to start, but {} started it",
                handler.name,
                started_by.join(", ")
            ));
            return Ok((problems, None));
        }
        (false, true) => return Ok((problems, Some("not started".into()))),
        (true, false) => {}
    }

    // The model and the upstream, as the mode says.
    let cassette_path = case.cassette_path();
    let cassette = Cassette::load(&cassette_path).map_err(anyhow::Error::msg)?;
    let real = app.llm.as_ref().map(|llm| llm.provider.clone());
    let (answers, recorded, misses) = match (mode, cassette, real) {
        (Mode::Replay, None, _) => {
            problems.push(format!(
                "no cassette {}: record one with `hookwise test --record {}`",
                cassette_path.display(),
                handler.name
            ));
            return Ok((problems, None));
        }
        (Mode::Replay, Some(c), _) => (Answers::Replay(c.exchanges.clone()), Some(c), Misses::Fail),
        (Mode::Record, _, Some(real)) => (Answers::Record(real), None, Misses::Upstream),
        (Mode::LiveModel, c, Some(real)) => (Answers::Live(real), c, Misses::Upstream),
        (_, _, None) => bail!("this mode needs [llm]"),
    };
    let (model, max_tokens) = match (&app.llm, recorded.as_ref().and_then(Cassette::model)) {
        (Some(llm), _) => (llm.model.clone(), llm.max_tokens),
        (None, Some(recorded)) => recorded,
        (None, None) => bail!("no model: configure [llm] or record a cassette"),
    };
    let book = Book::new(
        case.upstream.clone(),
        recorded.map(|c| c.upstream).unwrap_or_default(),
        misses,
    );
    let llm = Arc::new(CassetteLlm::new(answers));
    let retry = match (mode, &app.llm) {
        (Mode::Replay, _) | (_, None) => crate::llm::RetryPolicy {
            max_retries: 0,
            ..Default::default()
        },
        (_, Some(configured)) => configured.retry.clone(),
    };
    let runner = AgentRunner {
        llm: llm.clone(),
        retry,
        tools: Arc::new(book.wrap(&app.tools).map_err(anyhow::Error::msg)?),
        store: app.store.clone(),
        clock: app.clock.clone(),
        model,
        max_tokens,
        metrics: app.metrics.clone(),
        runs: RunWriter::start(app.store.clone()),
        // A case's runs are priced, never held to a budget: its store is a scratch one.
        budgets: Arc::new(crate::agent::budget::Budgets {
            prices: app.budgets.prices.clone(),
            ..Default::default()
        }),
    };

    // Every job the events made, at once; other handlers' jobs are passed over.
    let mut actions = Vec::new();
    let mut runs = 0;
    let lease = config.scheduler.lease.as_millis() as i64;
    let far_future = case.at.timestamp_millis() + 100 * 365 * 24 * 3_600_000;
    while let Some(claimed) = app
        .store
        .claim_jobs(OWNER, far_future, 1, lease)
        .await?
        .pop()
    {
        let job = &claimed.job;
        let now = clock.now().timestamp_millis();
        if job.handler != handler.name.as_str() {
            app.store
                .finish_job(job.id, OWNER, now, JobFinish::Done)
                .await?;
            continue;
        }
        runs += 1;
        let run = run_now(&app, &runner, handler, &claimed, now).await?;
        if run.run.outcome != case.expect.outcome {
            let error = run
                .run
                .error
                .as_ref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default();
            problems.push(format!(
                "expected the run to end {}, it ended {}{error}",
                case.expect.outcome, run.run.outcome
            ));
        }
        actions.extend(intended_actions(&run.run.steps));
    }

    if runs == 0 {
        problems.push(format!("{} started, but no job of it ran", handler.name));
    }

    // What went wrong first explains the rest: judge the actions only of a run that replayed.
    let mut root = Vec::new();
    if let Some(mismatch) = llm.mismatch() {
        root.push(mismatch);
    }
    for read in book.unanswered() {
        root.push(format!(
            "no recorded answer for the read {read}: add an [[upstream]] result to the case, or \
             record it again with --record"
        ));
    }
    if !root.is_empty() {
        return Ok((root, None));
    }
    problems.extend(case::judge(&case.expect, &actions));

    let note = match mode {
        Mode::Record => {
            let cassette = Cassette {
                exchanges: llm.take_recorded(),
                upstream: book.take_new(),
            };
            cassette.save(&cassette_path).map_err(anyhow::Error::msg)?;
            Some(format!(
                "recorded {} ({} model answer(s), {} upstream answer(s))",
                cassette_path.display(),
                cassette.exchanges.len(),
                cassette.upstream.len()
            ))
        }
        Mode::LiveModel => Some(format!("live model, {} question(s)", llm.asked())),
        Mode::Replay => None,
    };
    Ok((problems, note))
}

/// Runs a claimed job now, within its handler's deadline, records how it ended, and returns
/// its run.
async fn run_now(
    app: &App,
    runner: &AgentRunner,
    handler: &Handler,
    claimed: &crate::store::JobWithEvents,
    now_ms: i64,
) -> anyhow::Result<crate::store::StoredRun> {
    let job = &claimed.job;
    let ctx = RunContext {
        job,
        handler,
        events: &claimed.events,
    };
    let finish = match tokio::time::timeout(handler.agent.deadline, runner.run(ctx)).await {
        Ok(Ok(())) => JobFinish::Done,
        Ok(Err(e)) => JobFinish::Dead {
            error: e.to_string(),
        },
        Err(_) => JobFinish::Dead {
            error: format!(
                "the run did not finish within its deadline of {:?}",
                handler.agent.deadline
            ),
        },
    };
    app.store.finish_job(job.id, OWNER, now_ms, finish).await?;
    app.store
        .list_runs(&RunFilter {
            job: Some(job.id),
            limit: 1,
            ..RunFilter::default()
        })
        .await?
        .pop()
        .with_context(|| format!("job {} left no run", job.id))
}

/// The writes a run would have made: its transcript's intended actions.
pub fn intended_actions(steps: &serde_json::Value) -> Vec<Action> {
    steps
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["type"] == "intended_action")
        .map(|s| Action {
            tool: s["name"].as_str().unwrap_or_default().to_string(),
            arguments: s["arguments"].clone(),
        })
        .collect()
}

/// A directory of this process's own, removed when dropped: throwaway stores live there.
pub struct Scratch(PathBuf);

impl Scratch {
    pub fn new(prefix: &str) -> anyhow::Result<Self> {
        let path = std::env::temp_dir().join(format!(
            "{prefix}-{}-{:016x}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir(&path)
            .with_context(|| format!("creating a scratch store in {}", path.display()))?;
        Ok(Self(path))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
