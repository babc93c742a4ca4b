//! Configuration as assembled: the documented example loads, every mistake names its file and key.

use super::*;
use crate::config::BudgetsConfig;
use std::path::{Path, PathBuf};

fn env(name: &str) -> Option<String> {
    match name {
        "HAPPYFOX_WEBHOOK_SECRET" => Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into()),
        "PLANHAT_TOKEN" => Some("a-long-random-token".into()),
        _ => None,
    }
}

fn parse(text: &str) -> Result<Config, ConfigErrors> {
    let config = Config::parse(Path::new("hookwise.toml"), text, &env)?;
    Plan::check(&config)?;
    Ok(config)
}

fn keys(result: Result<Config, ConfigErrors>) -> Vec<String> {
    result
        .expect_err("config should be rejected")
        .0
        .into_iter()
        .map(|e| e.key)
        .collect()
}

const EXAMPLE: &str = r#"
listen = "127.0.0.1:9090"
store = "sqlite://data/hookwise.db"
handlers_dir = "my-handlers"

[sources.happyfox]
kind = "happyfox"
scheme = "standard-webhooks"
secrets = ["${HAPPYFOX_WEBHOOK_SECRET}"]
account = "acme"

[sources.planhat]
kind = "planhat"
scheme = "header-token"
header = "X-Webhook-Token"
secrets = ["${PLANHAT_TOKEN}", "${OLD_PLANHAT_TOKEN:-previous-token}"]
account_pointer = "/tenant"
"#;

#[test]
fn the_documented_example_loads() {
    let c = parse(EXAMPLE).unwrap();
    assert_eq!(c.listen.to_string(), "127.0.0.1:9090");
    assert_eq!(c.store, "sqlite://data/hookwise.db");
    assert_eq!(c.handlers_dir, PathBuf::from("my-handlers"));
    assert_eq!(c.sources.len(), 2);
    let planhat = &c.sources["planhat"];
    assert_eq!(planhat.secrets.len(), 2);
    assert_eq!(planhat.secrets[1].expose(), "previous-token");
    assert_eq!(planhat.tolerance_secs, 300);
}

#[test]
fn defaults_without_a_file() {
    let c = Config::load_with(Some(Path::new("/nonexistent/hookwise.toml")), &env);
    assert!(c.is_err(), "an explicitly named missing file is an error");
    let c = Config::default();
    assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(c.store, "sqlite://hookwise.db");
    assert_eq!(c.max_body_bytes, 1024 * 1024);
}

#[test]
fn environment_overrides_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hookwise.toml");
    std::fs::write(&path, EXAMPLE).unwrap();
    let lookup = |name: &str| match name {
        "HOOKWISE_LISTEN" => Some("0.0.0.0:7000".to_string()),
        "HOOKWISE_STORE" => Some("postgres://u:p@db/hookwise".to_string()),
        other => env(other),
    };
    let c = Config::load_with(Some(&path), &lookup).unwrap();
    assert_eq!(c.listen.to_string(), "0.0.0.0:7000");
    assert_eq!(c.store, "postgres://u:p@db/hookwise");
}

#[test]
fn a_missing_variable_names_key_and_variable() {
    let err = parse(&EXAMPLE.replace("${PLANHAT_TOKEN}", "${NOT_SET_ANYWHERE}")).unwrap_err();
    assert_eq!(err.0.len(), 1);
    assert_eq!(err.0[0].key, "sources.planhat.secrets[0]");
    assert!(err.0[0].message.contains("NOT_SET_ANYWHERE"));
    assert!(
        err.to_string()
            .starts_with("hookwise.toml: key `sources.planhat.secrets[0]`")
    );
}

#[test]
fn unknown_keys_and_wrong_types_name_the_key() {
    assert_eq!(keys(parse("listn = \"x\"")), vec!["listn"]);
    let err = parse("listn = \"x\"").unwrap_err();
    assert!(err.to_string().contains("listn"), "{err}");
    assert_eq!(
        keys(parse("max_body_bytes = \"big\"")),
        vec!["max_body_bytes"]
    );
    let typo = EXAMPLE.replace(
        "scheme = \"standard-webhooks\"",
        "scheme = \"standard-webhook\"",
    );
    assert_eq!(keys(parse(&typo)), vec!["sources.happyfox.scheme"]);
}

#[test]
fn source_combinations_are_checked_all_at_once() {
    let text = r#"
[sources.a]
kind = "happyfox"
scheme = "github"
secrets = ["s"]
account = "x"
account_pointer = "/y"
algorithm = "sha1"

[sources.b]
kind = "generic"
scheme = "hmac"
secrets = ["s"]
account = "x"
"#;
    let mut found = keys(parse(text));
    found.sort();
    assert_eq!(
        found,
        vec![
            "sources.a.account",
            "sources.a.algorithm",
            "sources.b.header",
            "sources.b.subject_pointer",
        ]
    );
}

#[test]
fn bad_secrets_are_reported_without_printing_them() {
    let text = EXAMPLE.replace("${HAPPYFOX_WEBHOOK_SECRET}", "whsec_");
    let err = parse(&text).unwrap_err();
    assert_eq!(err.0[0].key, "sources.happyfox.secrets");
    let text = EXAMPLE.replace("${HAPPYFOX_WEBHOOK_SECRET}", "whsec_not base64 at all!");
    let err = parse(&text).unwrap_err();
    assert!(!err.to_string().contains("not base64 at all"), "{err}");
}

#[test]
fn secrets_do_not_appear_in_debug_output() {
    let c = parse(EXAMPLE).unwrap();
    let debug = format!("{c:?}");
    assert!(
        !debug.contains("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
        "{debug}"
    );
    assert!(!debug.contains("a-long-random-token"), "{debug}");
}

#[test]
fn scheduler_accounts_and_llm_mistakes_name_their_keys() {
    let text = r#"
[scheduler]
workers = 0
retry_base = "1m"
retry_max = "10s"

[accounts.northwind]
connector = "planhat"
bot_staff_id = 7
rate_limits = { api = "fast", get = "5/1s" }

[accounts.acme]
connector = "happyfox"
base_url = "acme.happyfox.com"
api_key = "k"

[llm]
provider = "anthropic"
model = "claude"
"#;
    let mut found = keys(parse(text));
    found.sort();
    assert_eq!(
        found,
        vec![
            "accounts.acme.auth_code",
            "accounts.acme.base_url",
            "accounts.northwind.bot_staff_id",
            "accounts.northwind.rate_limits.api",
            "accounts.northwind.rate_limits.get",
            "accounts.northwind.token",
            "llm.api_key",
            "scheduler.retry_max",
            "scheduler.workers",
        ]
    );
    let ok = "[llm]\nprovider = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\nmodel = \"m\"\n";
    assert!(parse(ok).unwrap().llm.is_some());
}

#[test]
fn breaker_mistakes_name_their_keys() {
    let llm = "[llm]\nprovider = \"openai\"\nmodel = \"m\"\n";
    assert_eq!(
        keys(parse(&format!("{llm}[llm.breaker]\nfailure = 3\n"))),
        vec!["llm.breaker.failure"]
    );
    assert_eq!(
        keys(parse(&format!("{llm}[llm.breaker]\ncool_down = \"0s\"\n"))),
        vec!["llm.breaker.cool_down"]
    );
    assert_eq!(
        keys(parse(&format!(
            "{llm}[llm.breaker]\ncool_down = \"5m\"\nmax_cool_down = \"1m\"\n"
        ))),
        vec!["llm.breaker.max_cool_down"]
    );
    let off = parse(&format!("{llm}[llm.breaker]\nfailures = 0\n")).unwrap();
    assert_eq!(off.llm.unwrap().breaker.failures, 0);
}

#[test]
fn toml_syntax_errors_give_a_line() {
    let err = parse("listen = \n[oops").unwrap_err();
    assert!(err.0[0].message.contains("line"), "{err}");
}

#[test]
fn an_api_token_must_be_long_enough_and_stays_hidden() {
    assert_eq!(keys(parse("api_token = \"short\"")), vec!["api_token"]);
    let config = parse("api_token = \"0123456789abcdef0123\"").unwrap();
    assert!(config.api_token.is_some());
    assert!(!format!("{config:?}").contains("0123456789abcdef0123"));
    assert!(parse("").unwrap().api_token.is_none());
}

#[test]
fn retention_defaults_become_the_store_policy() {
    let c = parse(EXAMPLE).unwrap();
    assert!(c.retention.enabled);
    let day = 86_400_000;
    assert_eq!(
        prune_policy(&c.retention),
        PrunePolicy {
            events_ms: 30 * day,
            jobs_ms: 30 * day,
            dead_jobs_ms: 90 * day,
            batch: 1_000,
        }
    );
    assert_eq!(c.retention.interval, std::time::Duration::from_secs(600));
    assert!(c.warnings().is_empty(), "{:?}", c.warnings());
}

#[test]
fn retention_mistakes_name_their_keys() {
    let bad = format!(
        "{EXAMPLE}\n[retention]\nevents = \"0s\"\ninterval = \"0m\"\nbatch = 0\ndead_jobs = \"3 months\"\n"
    );
    assert_eq!(
        keys(parse(&bad)),
        vec!["retention.dead_jobs"],
        "serde stops at the first"
    );
    let bad = format!("{EXAMPLE}\n[retention]\nevents = \"0s\"\ninterval = \"0m\"\nbatch = 0\n");
    let err = parse(&bad).unwrap_err();
    assert_eq!(
        err.0.iter().map(|e| e.key.as_str()).collect::<Vec<_>>(),
        ["retention.events", "retention.interval", "retention.batch"]
    );
    assert!(err.to_string().contains("enabled = false"), "{err}");
    let big = format!("{EXAMPLE}\n[retention]\nbatch = 1000000\n");
    assert_eq!(keys(parse(&big)), vec!["retention.batch"]);
    let typo = format!("{EXAMPLE}\n[retention]\nevent = \"30d\"\n");
    assert_eq!(keys(parse(&typo)), vec!["retention.event"]);
}

#[test]
fn events_kept_for_less_than_the_longest_sender_retry_are_a_warning() {
    let short = parse(&format!("{EXAMPLE}\n[retention]\nevents = \"2d\"\n")).unwrap();
    let warnings = short.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(warnings[0].key, "retention.events");
    assert!(
        warnings[0]
            .to_string()
            .starts_with("hookwise.toml: key `retention.events`: 48h is shorter"),
        "{}",
        warnings[0]
    );
    assert!(warnings[0].message.contains("processed again"));
    // Three days is enough; with retention off nothing is pruned, so nothing is re-processed.
    let three = parse(&format!("{EXAMPLE}\n[retention]\nevents = \"3d\"\n")).unwrap();
    assert!(three.warnings().is_empty());
    let off = parse(&format!(
        "{EXAMPLE}\n[retention]\nenabled = false\nevents = \"1h\"\n"
    ))
    .unwrap();
    assert!(off.warnings().is_empty());
}

#[test]
fn drain_delay_defaults_to_5s_and_mistakes_name_the_key() {
    use std::time::Duration;
    assert_eq!(Config::default().drain_delay, Duration::from_secs(5));
    assert_eq!(
        parse("drain_delay = \"500ms\"").unwrap().drain_delay,
        Duration::from_millis(500)
    );
    assert_eq!(keys(parse("drain_delay = \"soon\"")), vec!["drain_delay"]);
    let err = parse("drain_delay = \"soon\"").unwrap_err();
    assert!(err.to_string().contains("expected a duration"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hookwise.toml");
    std::fs::write(&path, EXAMPLE).unwrap();
    let lookup = |value: &'static str| {
        move |name: &str| match name {
            "HOOKWISE_DRAIN_DELAY" => Some(value.to_string()),
            other => env(other),
        }
    };
    let c = Config::load_with(Some(&path), &lookup("0s")).unwrap();
    assert_eq!(c.drain_delay, Duration::ZERO);
    let err = Config::load_with(Some(&path), &lookup("5 seconds")).unwrap_err();
    assert_eq!(err.0[0].key, "HOOKWISE_DRAIN_DELAY");
}

#[test]
fn http_limits_have_defaults_and_mistakes_name_the_key() {
    use std::time::Duration;
    let http = Config::default().http;
    assert_eq!(http.header_read_timeout, Duration::from_secs(15));
    assert_eq!(http.body_read_timeout, Duration::from_secs(20));
    assert_eq!(http.max_connections, 1024);
    let c = parse("[http]\nheader_read_timeout = \"2s\"\nmax_connections = 10\n").unwrap();
    assert_eq!(c.http.header_read_timeout, Duration::from_secs(2));
    assert_eq!(c.http.max_connections, 10);
    assert_eq!(
        keys(parse(
            "[http]\nheader_read_timeout = \"0s\"\nbody_read_timeout = \"30s\"\nmax_connections = 0\n"
        )),
        vec![
            "http.header_read_timeout",
            "http.body_read_timeout",
            "http.max_connections"
        ]
    );
    assert_eq!(
        keys(parse("[http]\nidle = \"1s\"\n")),
        vec!["http.idle"],
        "unknown keys are errors"
    );
}

#[test]
fn budgets_and_prices_load_and_mistakes_name_the_key() {
    let llm = "[llm]\nprovider = \"openai\"\nmodel = \"gpt-4o-mini\"\n";
    let c = parse(&format!(
        "{llm}[llm.prices.\"gpt-4o-mini\"]\ninput_per_million = 0.15\noutput_per_million = 0.6\n\
         [budgets]\naccount_tokens_per_day = 10000\nhandler_cost_per_day = 2.5\n"
    ))
    .unwrap();
    let price = c.llm.as_ref().unwrap().prices["gpt-4o-mini"];
    assert_eq!(price.input_per_million, 0.15);
    assert!((price.cost(1_000_000, 1_000_000) - 0.75).abs() < 1e-12);
    assert_eq!(c.budgets.account_tokens_per_day, Some(10_000));
    assert_eq!(c.budgets.handler_cost_per_day, Some(2.5));
    assert_eq!(c.budgets.handler_tokens_per_day, None);
    assert!(
        Config::default().budgets == BudgetsConfig::default() && !Config::default().budgets.any()
    );

    assert_eq!(
        keys(parse("[budgets]\naccount_tokens_per_dya = 5\n")),
        vec!["budgets.account_tokens_per_dya"]
    );
    assert_eq!(
        keys(parse("[budgets]\naccount_tokens_per_day = -5\n")),
        vec!["budgets.account_tokens_per_day"]
    );
    assert_eq!(
        keys(parse(
            "[budgets]\nhandler_tokens_per_day = 0\naccount_cost_per_day = 0.0\nhandler_cost_per_day = -1.0\n"
        )),
        vec![
            "budgets.handler_tokens_per_day",
            "budgets.account_cost_per_day",
            "budgets.handler_cost_per_day"
        ]
    );
    assert_eq!(
        keys(parse(&format!(
            "{llm}[llm.prices.m]\ninput_per_million = 0.1\noutput_per_milion = 0.2\n"
        ))),
        vec!["llm.prices.m.output_per_milion"]
    );
    let err = parse(&format!(
        "{llm}[llm.prices.m]\ninput_per_million = -0.1\noutput_per_million = nan\n"
    ))
    .unwrap_err();
    let found: Vec<_> = err.0.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        found,
        vec![
            "llm.prices.\"m\".input_per_million",
            "llm.prices.\"m\".output_per_million"
        ]
    );
    assert!(err.0[0].message.contains("at least 0"), "{err}");
}

#[test]
fn a_cost_budget_warns_of_models_without_a_price() {
    let dir = tempfile::tempdir().unwrap();
    let handler = |name: &str, model: &str| {
        format!(
            "name = \"{name}\"\non = [\"happyfox.ticket.updated\"]\nmode = \"dry-run\"\n[agent]\n\
             prompt = \"Look.\"\ntools = [\"happyfox.get_ticket\"]\n{model}"
        )
    };
    std::fs::write(dir.path().join("a.toml"), handler("a", "")).unwrap();
    std::fs::write(dir.path().join("b.toml"), handler("b", "model = \"big\"\n")).unwrap();
    std::fs::write(
        dir.path().join("c.toml"),
        handler("c", "model = \"small\"\n"),
    )
    .unwrap();
    let text = |budget: &str| {
        format!(
            "handlers_dir = {:?}\n[llm]\nprovider = \"openai\"\nmodel = \"default\"\n\
             [llm.prices.small]\ninput_per_million = 0.1\noutput_per_million = 0.4\n[budgets]\n{budget}",
            dir.path().display().to_string()
        )
    };
    let config = Config::parse(
        Path::new("hookwise.toml"),
        &text("account_cost_per_day = 5.0\n"),
        &env,
    )
    .unwrap();
    let plan = Plan::check(&config).unwrap();
    let mut warned: Vec<_> = plan
        .warnings
        .iter()
        .map(|w| {
            (
                w.file.file_name().unwrap().to_string_lossy().into_owned(),
                w.key.clone(),
            )
        })
        .collect();
    warned.sort();
    assert_eq!(
        warned,
        vec![
            ("b.toml".to_string(), "agent.model".to_string()),
            ("hookwise.toml".to_string(), "llm.model".to_string()),
        ]
    );
    assert!(
        plan.warnings[0].message.contains("no price"),
        "{}",
        plan.warnings[0]
    );
    // A token budget alone needs no prices.
    let config = Config::parse(
        Path::new("hookwise.toml"),
        &text("account_tokens_per_day = 5\n"),
        &env,
    )
    .unwrap();
    assert!(Plan::check(&config).unwrap().warnings.is_empty());
}
