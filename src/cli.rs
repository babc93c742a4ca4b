//! Command-line interface: `serve`, `check`, `migrate`, `sign`, `replay` (to a server, or
//! `--local`), `test` and `eval` (`crate::cases`), `events`, `jobs`, `runs`, `approvals`, `prune`.

pub mod approvals;
mod local;
pub mod pages;
mod prune;
pub mod runs;

use crate::app::{Plan, build_sources};
use crate::config::{Config, LogFormat};
use crate::fixture::Fixture;
use crate::ingress::Source;
use crate::kernel::ConfigError;
use crate::store::{self, EventFilter};
use anyhow::{Context, anyhow, bail};
use clap::{Parser, Subcommand};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "hookwise",
    version,
    about = "Signed webhooks in, safe rate-limited LLM agent actions out"
)]
pub struct Cli {
    /// Configuration file (default: ./hookwise.toml if it exists, else built-in defaults).
    #[arg(long, short, global = true, env = "HOOKWISE_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service.
    Serve,
    /// Validate the configuration and handler files; exits non-zero naming each problem.
    Check,
    /// Create or upgrade the store's schema, then exit.
    Migrate,
    /// Print the headers a sender would add to deliver FIXTURE to a source, and (on stderr) a
    /// curl command that delivers it to the configured `listen` address.
    #[command(
        after_help = "The body must be sent byte for byte: use curl --data-binary @FILE, \
        never -d @FILE (which strips newlines and breaks the signature). `hookwise replay` signs \
        and sends in one step."
    )]
    Sign {
        /// Source name (default: the fixture's directory name).
        #[arg(long)]
        source: Option<String>,
        /// Delivery id to sign with (default: derived from the body, like a sender's retry).
        #[arg(long)]
        id: Option<String>,
        fixture: PathBuf,
    },
    /// Run the handlers' test cases (<handlers_dir>/tests/<handler>/*.toml): fixture events
    /// through the real ingest path, the model answered from each case's cassette, the upstream
    /// from recorded results, the intended writes judged. Offline; exit code 1 on any failure.
    #[command(
        after_help = "Writing cases, recording and matchers: handlers/README.md, \"Testing a handler\"."
    )]
    Test {
        /// Only these handlers' cases (default: every handler's).
        handlers: Vec<String>,
        /// The cases' directory (default: <handlers_dir>/tests).
        #[arg(long)]
        cases: Option<PathBuf>,
        /// Ask the configured [llm] (and, for reads no case answers, the configured accounts,
        /// reads only) and write each case's cassette. Nothing is ever written upstream.
        #[arg(long, conflicts_with = "live_model")]
        record: bool,
        /// Ask the configured [llm] again, ignoring the cassettes' answers, and judge only the
        /// writes (does a new model still do the right thing?). Writes nothing.
        #[arg(long)]
        live_model: bool,
        /// Also write the results as JUnit XML to FILE.
        #[arg(long, value_name = "FILE")]
        junit: Option<PathBuf>,
    },
    /// Replay the jobs a handler handled through a candidate version of it (dry-run, the
    /// configured model) and compare the candidate's writes with what the current version did.
    /// Writes nothing upstream, ever.
    #[command(
        after_help = "Reads are answered from the current version's transcripts where the same \
        read was made, else by the upstream (reads only) unless --no-upstream. See \
        handlers/README.md, \"Evaluating a change before deploying it\"."
    )]
    Eval {
        /// The handler whose jobs are replayed.
        #[arg(long)]
        handler: String,
        /// The candidate handler file (keep it outside handlers_dir).
        #[arg(long)]
        candidate: PathBuf,
        /// Jobs created within this long (e.g. 7d, 12h).
        #[arg(long, default_value = "7d", value_parser = crate::kernel::parse_duration, conflicts_with = "jobs")]
        since: std::time::Duration,
        /// These jobs instead (ids).
        #[arg(long, num_args = 1..)]
        jobs: Vec<i64>,
        /// At most this many jobs, newest first.
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// Never ask the upstream: a read the transcripts cannot answer is refused to the model.
        #[arg(long)]
        no_upstream: bool,
        /// The report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Sign fixtures with their source's secret and POST them to a running server, or with
    /// --local run them through the whole path in-process and print each run's transcript.
    Replay {
        /// Base URL of the server (default: http://<listen> from the config).
        #[arg(long, conflicts_with = "local")]
        url: Option<String>,
        /// Source name for every fixture (default: each fixture's directory name).
        #[arg(long)]
        source: Option<String>,
        /// Use a fresh delivery id, so the server sees a new event rather than a retry.
        #[arg(long)]
        new_id: bool,
        /// No server: verify, route and store each fixture in a throwaway store, run every job
        /// it created now with the configured [llm], and print the transcripts.
        #[arg(long)]
        local: bool,
        /// With --local: every handler runs in dry-run mode (writes recorded, not sent).
        #[arg(long, requires = "local")]
        dry_run: bool,
        /// With --local: only verify and route each fixture (no store, no [llm] needed), and
        /// print which handlers it starts and why the others do not.
        #[arg(long, requires = "local", conflicts_with = "dry_run")]
        no_llm: bool,
        #[arg(required = true)]
        fixtures: Vec<PathBuf>,
    },
    /// Inspect stored events.
    Events {
        #[command(subcommand)]
        command: EventsCommand,
    },
    /// Inspect jobs and revive dead ones.
    Jobs {
        #[command(subcommand)]
        command: JobsCommand,
    },
    /// Inspect agent runs and read their transcripts.
    Runs {
        #[command(subcommand)]
        command: runs::RunsCommand,
    },
    /// List, read, approve (send) or reject the writes approve-mode handlers hold.
    Approvals {
        #[command(subcommand)]
        command: approvals::ApprovalsCommand,
    },
    /// Delete what [retention] no longer keeps (old events, finished jobs with their runs and
    /// journal), now, in batches; `serve` does this every `retention.interval`.
    Prune {
        /// Only count what would be deleted, per kind; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// Newest first, in pages: --limit N (default 50), --before ID for the next page, or --all.
    List {
        /// Only jobs in this state: pending, running, done, dead or merged.
        #[arg(long)]
        state: Option<String>,
        /// Only jobs of this account.
        #[arg(long)]
        account: Option<String>,
        /// Only jobs of this handler.
        #[arg(long)]
        handler: Option<String>,
        #[command(flatten)]
        page: pages::PageArgs,
        /// One JSON object per line (JSON Lines, also with --all) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One job with every event it coalesced.
    Show {
        id: i64,
        #[arg(long)]
        json: bool,
    },
    /// Move a dead job back to pending, with its attempts reset.
    Retry { id: i64 },
}

#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// Newest first, in pages: --limit N (default 50), --before SEQ for the next page, or --all.
    List {
        /// Only events from this source (a `[sources.NAME]` of the configuration).
        #[arg(long)]
        source: Option<String>,
        /// Only events of this account.
        #[arg(long)]
        account: Option<String>,
        /// Only events of this kind, e.g. happyfox.ticket.updated.
        #[arg(long)]
        kind: Option<String>,
        #[command(flatten)]
        page: pages::PageArgs,
        /// One JSON object per line (JSON Lines, also with --all) instead of a table.
        #[arg(long)]
        json: bool,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    crate::kernel::init_tls();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The log format and the trace exporter are configuration; a configuration that does not
    // load is reported by the command itself, in plain text. Secrets play no part in either.
    let config = Config::load_for_reading(cli.config.as_deref()).ok();
    // Only `serve` exports traces, and only from a configuration `serve` will accept (it reports
    // the problems of any other itself).
    let traced = matches!(cli.command, Command::Serve)
        && config.as_ref().is_some_and(|c| c.validate().is_ok());
    // `replay --local` prints transcripts: the scratch store's migrations and the assembly's
    // INFO lines would only interleave with them.
    let level = match cli.command {
        Command::Replay { local: true, .. } => "warn",
        // Each case assembles the service: its start-up lines would bury the verdicts.
        Command::Test { .. } | Command::Eval { .. } => "error",
        _ => "info",
    };
    let tracing = match init_tracing(config.as_ref(), traced, level, runtime.handle()) {
        Ok(tracing) => tracing,
        Err(e) => {
            eprintln!("error: cannot start the trace exporter: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let code = match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    };
    // Off the runtime's threads, which still run the exporter's last requests.
    if let Some(tracing) = tracing {
        tracing.shutdown();
    }
    code
}

/// Logs to stderr in the configured format (at `level` unless HOOKWISE_LOG or RUST_LOG say
/// otherwise; coloured only on a terminal) and, if `traced` and `[telemetry] otlp_endpoint` is
/// set, spans to the OTLP collector.
fn init_tracing(
    config: Option<&Config>,
    traced: bool,
    level: &str,
    runtime: &tokio::runtime::Handle,
) -> anyhow::Result<Option<crate::telemetry::trace::Tracing>> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{EnvFilter, Layer};
    let filter = EnvFilter::try_from_env("HOOKWISE_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        // The MCP SDK logs each failed connection at ERROR and each session at INFO; the MCP
        // connector reports both in its own words, once. HOOKWISE_LOG=rmcp=debug shows them.
        .unwrap_or_else(|_| EnvFilter::new(format!("{level},rmcp=off")))
        // Spans made for the trace exporter carry attributes for a trace viewer, not for logs.
        .add_directive(format!("{}=off", crate::telemetry::trace::TARGET).parse()?);
    let format = config.map(|c| c.log_format).unwrap_or(LogFormat::Text);
    let logs = match format {
        // Values may come from senders: escaped, so none can forge a line.
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            // Colour codes are for a terminal; in a file or a pipe they are noise.
            .with_ansi(std::io::stderr().is_terminal())
            .fmt_fields(crate::telemetry::text::EscapedFields)
            .boxed(),
        // One object per line; the fields of the spans around an event (the job's account,
        // handler and job id, a request's id) are flattened into it with the event's own.
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
            .event_format(crate::telemetry::logs::FlatJson)
            .boxed(),
    };
    let telemetry = config.map(|c| &c.telemetry).filter(|_| traced);
    match telemetry.and_then(|t| Some((t.otlp_endpoint.as_deref()?, t.trace_content))) {
        Some((endpoint, content)) => {
            let (layer, tracing) =
                crate::telemetry::trace::layer(endpoint, content, runtime.clone())?;
            // Each layer its own filter: the exporter's spans are not the logs' level.
            let registry = tracing_subscriber::registry().with(logs.with_filter(filter));
            registry.with(layer).init();
            Ok(Some(tracing))
        }
        None => {
            // Without an exporter, one global filter: disabled callsites cost the least.
            tracing_subscriber::registry()
                .with(logs)
                .with(filter)
                .init();
            Ok(None)
        }
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let load = || Config::load(cli.config.as_deref()).map_err(|e| anyhow!("{e}"));
    // Commands that only read, migrate or prune the store use no secret: `${VAR}`s may be unset.
    let load_for_reading =
        || Config::load_for_reading(cli.config.as_deref()).map_err(|e| anyhow!("{e}"));
    match cli.command {
        Command::Serve => {
            crate::serve(load()?).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Check => Ok(check(cli.config.as_deref())),
        Command::Migrate => {
            let config = load_for_reading()?;
            let store = store::open(&config.store).await?;
            store.migrate().await?;
            println!("store {} is up to date", store::redact(&config.store));
            Ok(ExitCode::SUCCESS)
        }
        Command::Sign {
            source,
            id,
            fixture,
        } => {
            let config = load()?;
            let fixture = Fixture::load(&fixture)?;
            let source = source_for(&config, &fixture, source.as_deref())?;
            let id = id.unwrap_or_else(|| fixture.stable_id());
            let (headers, signed) = fixture.sign(&source, &id, chrono::Utc::now().timestamp());
            for (name, value) in &headers {
                println!("{name}: {value}");
            }
            if let Some((param, value)) = &signed.query {
                println!("# append to the URL: ?{param}={value}");
            }
            // On stderr, so stdout stays the headers alone for scripts.
            eprintln!(
                "# to deliver it (the body byte for byte, hence --data-binary):\n{}",
                curl_line(
                    &config,
                    &source,
                    &fixture.path,
                    &headers,
                    signed.query.as_ref()
                )
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Test {
            handlers,
            cases,
            record,
            live_model,
            junit,
        } => {
            let config = load()?;
            let mode = match (record, live_model) {
                (true, _) => crate::cases::Mode::Record,
                (_, true) => crate::cases::Mode::LiveModel,
                _ => crate::cases::Mode::Replay,
            };
            let options = crate::cases::Options {
                handlers,
                dir: cases,
                mode,
                junit,
            };
            crate::cases::run(&config, &options).await
        }
        Command::Eval {
            handler,
            candidate,
            since,
            jobs,
            limit,
            no_upstream,
            json,
        } => {
            let options = crate::cases::eval::EvalOptions {
                handler,
                candidate,
                since,
                jobs,
                limit,
                no_upstream,
                json,
            };
            crate::cases::eval::eval(&load()?, &options).await
        }
        Command::Replay {
            url,
            source,
            new_id,
            local,
            dry_run,
            no_llm,
            fixtures,
        } => {
            let config = load()?;
            if local {
                return local::replay_local(
                    &config,
                    source.as_deref(),
                    new_id,
                    dry_run,
                    no_llm,
                    &fixtures,
                )
                .await;
            }
            let base = url.unwrap_or_else(|| format!("http://{}", config.listen));
            replay(&config, &base, source.as_deref(), new_id, &fixtures).await
        }
        Command::Events {
            command:
                EventsCommand::List {
                    source,
                    account,
                    kind,
                    page,
                    json,
                },
        } => {
            let config = load_for_reading()?;
            let store = read_store(&config).await?;
            let unknown_source = source
                .as_ref()
                .filter(|s| !config.sources.contains_key(*s))
                .cloned();
            let filter = EventFilter {
                source,
                account,
                kind,
                ..EventFilter::default()
            };
            let listed = pages::list(
                &page,
                async |before_seq, limit| {
                    let filter = EventFilter {
                        before_seq,
                        limit,
                        ..filter.clone()
                    };
                    store.list_events(&filter).await
                },
                |e| e.seq,
                |out, e| {
                    if json {
                        writeln!(out, "{}", serde_json::to_string(e)?)?;
                    } else {
                        writeln!(
                            out,
                            "{:>6}  {:<12} {:<28} {:<10} {:<12} {:<8} {}",
                            e.seq, e.source, e.kind, e.account, e.subject, e.status, e.event_id
                        )?;
                    }
                    Ok(())
                },
            )
            .await?;
            match unknown_source {
                // Events of a source removed from the configuration are still listed; only an
                // empty answer is worth explaining.
                Some(name) if listed.rows == 0 => eprintln!(
                    "-- no events match: no source {name:?} is configured in {}",
                    config.file_label().display()
                ),
                _ => {
                    if let Some(notice) = pages::notice(&page, &listed, "events") {
                        eprintln!("{notice}");
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Jobs { command } => {
            let config = load_for_reading()?;
            let store = read_store(&config).await?;
            jobs(&*store, command).await
        }
        Command::Runs { command } => {
            let config = load_for_reading()?;
            let store = read_store(&config).await?;
            runs::run(&*store, command).await
        }
        Command::Approvals { command } => {
            // Approving sends the write, with the accounts' credentials.
            let config = match command {
                approvals::ApprovalsCommand::Approve { .. } => load()?,
                _ => load_for_reading()?,
            };
            let store = read_store(&config).await?;
            approvals::run(&config, store, command).await
        }
        Command::Prune { dry_run } => prune::run(&load_for_reading()?, dry_run).await,
    }
}

/// The configured store, for a command that reads it: never created by reading, and brought up
/// to the current schema.
async fn read_store(config: &Config) -> anyhow::Result<store::SharedStore> {
    let store = store::open_existing(&config.store).await?;
    store.migrate().await?;
    Ok(store)
}

fn time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| ms.to_string())
}

async fn jobs(store: &dyn store::Store, command: JobsCommand) -> anyhow::Result<ExitCode> {
    use store::{JobFilter, JobId, JobState, RetryResult};
    match command {
        JobsCommand::List {
            state,
            account,
            handler,
            page,
            json,
        } => {
            let state = state
                .map(|s| {
                    JobState::parse(&s).ok_or_else(|| {
                        anyhow!("--state {s:?}: expected pending, running, done, dead or merged")
                    })
                })
                .transpose()?;
            if !json {
                println!(
                    "{:>6}  {:<8} {:<24} {:<12} {:<14} {:>6} {:>8}  {:<19}  last error",
                    "id", "state", "handler", "account", "subject", "events", "attempts", "run at"
                );
            }
            let filter = JobFilter {
                state,
                account,
                handler,
                ..JobFilter::default()
            };
            let listed = pages::list(
                &page,
                async |before_id, limit| {
                    let filter = JobFilter {
                        before_id,
                        limit,
                        ..filter.clone()
                    };
                    store.list_jobs(&filter).await
                },
                |j| j.id.0,
                |out, j| {
                    if json {
                        writeln!(out, "{}", serde_json::to_string(j)?)?;
                    } else {
                        writeln!(
                            out,
                            "{:>6}  {:<8} {:<24} {:<12} {:<14} {:>6} {:>5}/{:<2}  {:<19}  {}",
                            j.id,
                            j.state.as_str(),
                            j.handler,
                            j.account,
                            j.subject,
                            j.events,
                            j.attempts,
                            j.max_attempts,
                            time(j.run_at_ms),
                            j.last_error.as_deref().unwrap_or("")
                        )?;
                    }
                    Ok(())
                },
            )
            .await?;
            if let Some(notice) = pages::notice(&page, &listed, "jobs") {
                eprintln!("{notice}");
            }
            Ok(ExitCode::SUCCESS)
        }
        JobsCommand::Show { id, json } => {
            let Some(job) = store.get_job(JobId(id)).await? else {
                bail!("no job {id}");
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&job)?);
                return Ok(ExitCode::SUCCESS);
            }
            let j = &job.job;
            println!("job {}: {}", j.id, j.state.as_str());
            println!("  handler   {}", j.handler);
            println!("  account   {}  subject {}", j.account, j.subject);
            println!("  attempts  {}/{}", j.attempts, j.max_attempts);
            println!(
                "  first seen {}  run at {}",
                time(j.first_seen_ms),
                time(j.run_at_ms)
            );
            if let Some(owner) = &j.lease_owner {
                println!(
                    "  leased to {owner} until {}",
                    time(j.lease_until_ms.unwrap_or_default())
                );
            }
            if let Some(e) = &j.last_error {
                println!("  last error {e}");
            }
            if let Some((until, reason)) = store.account_pause(&j.account).await?
                && until > chrono::Utc::now().timestamp_millis()
            {
                println!("  account paused until {} ({reason})", time(until));
            }
            println!("  events ({}):", job.events.len());
            for e in &job.events {
                println!(
                    "    {:>6}  {}  {}  {}",
                    e.seq,
                    time(e.received_at_ms),
                    e.kind,
                    e.event_id
                );
            }
            // The action journal: what this job's runs sent upstream, once each.
            let actions = store.list_actions(j.id).await?;
            if !actions.is_empty() {
                println!("  writes sent upstream ({}):", actions.len());
                for a in &actions {
                    let outcome = match (a.state.as_str(), a.status) {
                        ("done", Some(status)) => format!("answered {status}"),
                        _ => "in doubt: sent, no answer recorded".to_string(),
                    };
                    println!(
                        "    {}  {}  {}  {outcome}",
                        time(a.created_at_ms),
                        a.key,
                        a.request
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        JobsCommand::Retry { id } => {
            match store
                .retry_job(JobId(id), chrono::Utc::now().timestamp_millis())
                .await?
            {
                RetryResult::Requeued(j) => println!("job {j} is pending again"),
                RetryResult::MergedInto(j) => println!(
                    "job {id}'s events were folded into pending job {j} (same handler and subject)"
                ),
                RetryResult::NotFound => bail!("no job {id}"),
                RetryResult::NotDead(state) => {
                    bail!(
                        "job {id} is {}; only dead jobs can be retried",
                        state.as_str()
                    )
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Assembles everything `serve` would, without starting anything, printing every problem: those
/// of the configuration file and, with what of it reads, those of the sources, accounts, `[llm]`
/// and handler files, each once.
fn check(config_path: Option<&Path>) -> ExitCode {
    let loaded = Config::load_all(
        config_path,
        &|name| std::env::var(name).ok(),
        crate::config::Secrets::Required,
    );
    let mut problems = loaded.problems;
    let Some(config) = loaded.config else {
        return report(&problems);
    };
    let plan = match Plan::check(&config) {
        Ok(plan) => Some(plan),
        Err(errors) => {
            for e in errors.0 {
                if !problems.contains(&e) {
                    problems.push(e);
                }
            }
            None
        }
    };
    let warnings = match &plan {
        Some(plan) => plan.warnings.clone(),
        None => config.warnings(),
    };
    for warning in warnings {
        eprintln!("warning: {warning}");
    }
    let Some(plan) = plan.filter(|_| problems.is_empty()) else {
        return report(&problems);
    };
    println!(
        "{}: ok ({} sources, {} accounts)",
        config.file_label().display(),
        plan.sources.len(),
        plan.accounts.len()
    );
    if config.handlers_dir.exists() {
        println!(
            "{}: ok ({} handlers)",
            config.handlers_dir.display(),
            plan.handlers.len()
        );
    } else {
        println!(
            "{}: no such directory; no handlers will run",
            config.handlers_dir.display()
        );
    }
    ExitCode::SUCCESS
}

fn report(problems: &[ConfigError]) -> ExitCode {
    for e in problems {
        eprintln!("{e}");
    }
    eprintln!("{} problem(s) found", problems.len());
    ExitCode::FAILURE
}

fn source_for(config: &Config, fixture: &Fixture, name: Option<&str>) -> anyhow::Result<Source> {
    let name = match name {
        Some(n) => n.to_string(),
        None => fixture.default_source().ok_or_else(|| {
            anyhow!(
                "cannot tell the source of {}; pass --source",
                fixture.path.display()
            )
        })?,
    };
    let mut sources = build_sources(config).map_err(|e| anyhow!("{e}"))?;
    sources.remove(&name).ok_or_else(|| {
        anyhow!(
            "no source {name:?} in {} (fixture {}); pass --source or add [sources.{name}]",
            config.file_label().display(),
            fixture.path.display()
        )
    })
}

/// A curl command that POSTs the fixture at `body` with `headers` to the configured server.
fn curl_line(
    config: &Config,
    source: &Source,
    body: &Path,
    headers: &[(String, String)],
    query: Option<&(String, String)>,
) -> String {
    // Single quotes keep everything literal in a POSIX shell; a quote inside is closed, escaped
    // and reopened.
    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let mut url = format!("http://{}/webhooks/{}", config.listen, source.name);
    if let Some((param, value)) = query {
        let mut parsed = reqwest::Url::parse(&url).expect("a valid URL");
        parsed.query_pairs_mut().append_pair(param, value);
        url = parsed.to_string();
    }
    let mut line = format!(
        "curl --data-binary {}",
        quote(&format!("@{}", body.display()))
    );
    for (name, value) in headers {
        line.push_str(&format!(" -H {}", quote(&format!("{name}: {value}"))));
    }
    line.push(' ');
    line.push_str(&quote(&url));
    line
}

/// The delivery id a fixture is signed with: stable, like a sender's retry, or a fresh one.
fn delivery_id(fixture: &Fixture, new_id: bool) -> String {
    if new_id {
        format!("msg_{:016x}{:08x}", fastrand::u64(..), fastrand::u32(..))
    } else {
        fixture.stable_id()
    }
}

async fn replay(
    config: &Config,
    base: &str,
    source_name: Option<&str>,
    new_id: bool,
    paths: &[PathBuf],
) -> anyhow::Result<ExitCode> {
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .context("building the HTTP client")?;
    let mut failed = 0;
    for path in paths {
        let fixture = Fixture::load(path)?;
        let source = source_for(config, &fixture, source_name)?;
        let id = delivery_id(&fixture, new_id);
        let (headers, signed) = fixture.sign(&source, &id, chrono::Utc::now().timestamp());
        let url = format!("{}/webhooks/{}", base.trim_end_matches('/'), source.name);
        let mut request = client.post(&url).body(fixture.body.clone());
        for (name, value) in &headers {
            request = request.header(name, value);
        }
        if let Some((param, value)) = &signed.query {
            request = request.query(&[(param, value)]);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("POST {url} (is `hookwise serve` running?)"))?;
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        println!("{} -> {} {}", path.display(), status.as_u16(), body.trim());
        if !status.is_success() {
            failed += 1;
        }
    }
    if failed > 0 {
        bail!("{failed} of {} fixture(s) were not accepted", paths.len());
    }
    Ok(ExitCode::SUCCESS)
}
