//! Mistakes caught before anything runs, as a user meets them on the command line: `check` names
//! every problem of the configuration and the handler files at once, each with its file, key or
//! variable, and "did you mean" for a slip; `serve` refuses what `check` refuses; commands that
//! only read need no secret.

use crate::support::gate;
use crate::support::process::{free_port, spawn_hookwise, spawn_hookwise_with, wait_ready};
use crate::support::repo_path;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

fn hookwise(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hookwise"))
        .current_dir(dir)
        .args(args)
        .env_remove("HOOKWISE_LISTEN")
        .env_remove("HOOKWISE_STORE")
        .env_remove("HOOKWISE_LOG")
        .env_remove("RUST_LOG")
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `dir/handlers/NAME.toml` with these agent tools, reacting to HappyFox ticket creations.
fn write_handler(dir: &Path, name: &str, tools: &[&str]) {
    let handlers = dir.join("handlers");
    std::fs::create_dir_all(&handlers).unwrap();
    let tools: Vec<String> = tools.iter().map(|t| format!("{t:?}")).collect();
    std::fs::write(
        handlers.join(format!("{name}.toml")),
        format!(
            "on = [\"happyfox.ticket.created\"]\n[agent]\nprompt = \"Triage.\"\ntools = [{}]\n",
            tools.join(", ")
        ),
    )
    .unwrap();
}

const GOOD_SOURCE: &str = r#"
[sources.happyfox]
kind = "happyfox"
scheme = "standard-webhooks"
secrets = ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]
account = "acme"
"#;

#[test]
fn check_reports_every_problem_of_the_config_and_the_handlers_once_each() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("hookwise.toml"),
        r#"
listne = "127.0.0.1:8080"
max_body_bytes = "big"

[sources.happyfox]
kind = "happyfx"
schem = "standard-webhooks"
secrets = ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]

[sources.billing]
kind = "generic"
scheme = "strip"
secrets = ["whsec_x"]
tolerance_sec = 60

[accounts.acme]
connector = "happyfx"

[scheduler]
workerz = 3
"#,
    )
    .unwrap();
    write_handler(
        dir.path(),
        "triage",
        &["happyfox.get_tickett", "planhat.get_company"],
    );

    let out = hookwise(dir.path(), &["check"], &[]);
    let text = stderr(&out);
    assert!(!out.status.success(), "{text}");
    let handler = Path::new("handlers").join("triage.toml");
    let expected = [
        "hookwise.toml: key `listne`: unknown key; did you mean `listen`?".to_string(),
        "hookwise.toml: key `max_body_bytes`: invalid type".into(),
        "hookwise.toml: key `sources.happyfox.schem`: unknown key; did you mean `scheme`?".into(),
        "hookwise.toml: key `sources.billing.scheme`: unknown value \"strip\"; did you mean `stripe`?"
            .into(),
        "hookwise.toml: key `sources.billing.tolerance_sec`: unknown key; did you mean `tolerance_secs`?"
            .into(),
        "hookwise.toml: key `accounts.acme.connector`: unknown connector \"happyfx\"; did you mean `happyfox`?"
            .into(),
        "hookwise.toml: key `scheduler.workerz`: unknown key; did you mean `workers`?".into(),
        format!(
            "{}: key `agent.tools[0]`: unknown tool \"happyfox.get_tickett\"; did you mean `happyfox.get_ticket`?",
            handler.display()
        ),
    ];
    for line in &expected {
        assert_eq!(
            text.matches(line.as_str()).count(),
            1,
            "{line:?} once in:\n{text}"
        );
    }
    // The misspelt `schem` is one problem, not also a missing `scheme`; nothing else is reported.
    assert!(!text.contains("missing"), "{text}");
    assert!(
        text.contains(&format!("{} problem(s) found", expected.len())),
        "{text}"
    );
    assert!(!text.contains("planhat.get_company"), "{text}");
}

#[tokio::test]
async fn serve_refuses_an_unknown_tool_and_warns_of_an_unoffered_truto_one() {
    hookwise::init_tls();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hookwise.toml");
    let store = dir.path().join("hookwise.db");
    std::fs::write(
        &config,
        format!(
            "store = \"sqlite://{}\"\nhandlers_dir = \"{}\"\n{GOOD_SOURCE}",
            store.display(),
            dir.path().join("handlers").display()
        ),
    )
    .unwrap();
    write_handler(dir.path(), "triage", &["planhat.create_tsk"]);
    let log = dir.path().join("serve.log");
    let mut proc = spawn_hookwise(&config, free_port(), &log, "info");
    let status = proc.exited_within(Duration::from_secs(30)).await;
    assert!(!status.success());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("key `agent.tools[0]`: unknown tool \"planhat.create_tsk\"; did you mean `planhat.create_task`?"),
        "{text}"
    );
    assert!(!store.exists(), "the store was created by a refused serve");

    // Truto's tools are only known once its accounts answer: a name none offers is a warning.
    write_handler(dir.path(), "triage", &["truto.list_tickets"]);
    let port = free_port();
    let log = dir.path().join("serve2.log");
    let mut proc = spawn_hookwise(&config, port, &log, "info");
    let client = reqwest::Client::new();
    wait_ready(&client, &format!("http://127.0.0.1:{port}/healthz")).await;
    proc.signal("TERM");
    proc.exited_within(Duration::from_secs(30)).await;
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("no truto account offers this tool") && text.contains("truto.list_tickets"),
        "{text}"
    );
}

#[test]
fn a_problem_in_a_variable_is_blamed_on_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("hookwise.toml"),
        "store = \"sqlite://x.db\"\n",
    )
    .unwrap();
    let out = hookwise(
        dir.path(),
        &["check"],
        &[
            ("HOOKWISE_STORE", "mysql://db/hookwise"),
            ("HOOKWISE_LISTEN", "localhost"),
            ("HOOKWISE_API_TOKEN", "short"),
        ],
    );
    let text = stderr(&out);
    assert!(!out.status.success(), "{text}");
    for line in [
        "environment variable HOOKWISE_STORE: expected sqlite://PATH or postgres://..., found \"mysql://db/hookwise\"",
        "environment variable HOOKWISE_LISTEN: expected HOST:PORT",
        "environment variable HOOKWISE_API_TOKEN: too short",
    ] {
        assert!(text.contains(line), "{line:?} in:\n{text}");
    }
    assert!(!text.contains("hookwise.toml: key `store`"), "{text}");
}

#[tokio::test]
async fn listen_takes_a_host_name_from_the_file_or_the_environment() {
    hookwise::init_tls();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hookwise.toml");
    let port = free_port();
    std::fs::write(
        &config,
        format!(
            "listen = \"localhost:{port}\"\nstore = \"sqlite://{}\"\n",
            dir.path().join("a.db").display()
        ),
    )
    .unwrap();
    let out = hookwise(dir.path(), &["check"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));

    let client = reqwest::Client::new();
    let log = dir.path().join("serve.log");
    // spawn_hookwise sets HOOKWISE_LISTEN=127.0.0.1:PORT; a host name replaces it.
    let env_port = free_port();
    let listen = format!("localhost:{env_port}");
    let mut proc = spawn_hookwise_with(&config, port, &log, &[("HOOKWISE_LISTEN", &listen)]);
    wait_ready(&client, &format!("http://127.0.0.1:{env_port}/healthz")).await;
    proc.signal("TERM");
    proc.exited_within(Duration::from_secs(30)).await;

    // A name that does not resolve is refused naming where it came from.
    let mut proc = spawn_hookwise_with(
        &config,
        port,
        &log,
        &[("HOOKWISE_LISTEN", "no-such-host.invalid:8080")],
    );
    assert!(!proc.exited_within(Duration::from_secs(30)).await.success());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains(
            "cannot listen on no-such-host.invalid:8080 (environment variable HOOKWISE_LISTEN)"
        ),
        "{text}"
    );

    let out = hookwise(
        dir.path(),
        &["check"],
        &[("HOOKWISE_LISTEN", "localhost:port")],
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("environment variable HOOKWISE_LISTEN: expected HOST:PORT"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn read_commands_need_no_secret_but_serve_and_check_do() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("hookwise.toml"),
        r#"
store = "sqlite://hookwise.db"
[sources.happyfox]
kind = "happyfox"
scheme = "standard-webhooks"
secrets = ["${HOOKWISE_TEST_SECRET_NEVER_SET}"]
account = "acme"
"#,
    )
    .unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let env = [("HOOKWISE_LISTEN", listen.as_str())];
    let out = hookwise(dir.path(), &["migrate"], &env);
    assert!(out.status.success(), "{}", stderr(&out));
    for command in [
        &["events", "list"][..],
        &["jobs", "list"],
        &["runs", "list"],
        &["approvals", "list"],
        &["prune", "--dry-run"],
    ] {
        let out = hookwise(dir.path(), command, &env);
        assert!(out.status.success(), "{command:?}: {}", stderr(&out));
    }
    for command in [&["check"][..], &["serve"]] {
        let out = hookwise(dir.path(), command, &env);
        assert!(!out.status.success(), "{command:?} succeeded");
        assert!(
            stderr(&out).contains(
                "hookwise.toml: key `sources.happyfox.secrets[0]`: environment variable HOOKWISE_TEST_SECRET_NEVER_SET is not set"
            ),
            "{command:?}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn logs_to_a_pipe_carry_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("hookwise.toml"),
        "store = \"sqlite://h.db\"\n",
    )
    .unwrap();
    let out = hookwise(dir.path(), &["migrate"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stderr(&out);
    assert!(text.contains("migration"), "{text}");
    assert!(!text.contains('\u{1b}'), "{text:?}");
}

#[tokio::test]
async fn sign_prints_a_curl_line_that_delivers_the_fixture() {
    hookwise::init_tls();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hookwise.toml");
    let port = free_port();
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{port}\"\nstore = \"sqlite://{}\"\n{GOOD_SOURCE}",
            dir.path().join("h.db").display()
        ),
    )
    .unwrap();
    let fixture = repo_path("fixtures/happyfox/ticket_created.json");
    let out = Command::new(env!("CARGO_BIN_EXE_hookwise"))
        .arg("--config")
        .arg(&config)
        .arg("sign")
        .arg(&fixture)
        .env_remove("HOOKWISE_LISTEN")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("webhook-signature: v1,"),
        "{}",
        stdout(&out)
    );
    let text = stderr(&out);
    let curl = text
        .lines()
        .find(|l| l.starts_with("curl --data-binary '@"))
        .unwrap_or_else(|| panic!("no curl line in:\n{text}"));
    assert!(
        curl.ends_with(&format!("'http://127.0.0.1:{port}/webhooks/happyfox'")),
        "{curl}"
    );
    let help = hookwise(dir.path(), &["sign", "--help"], &[]);
    assert!(stdout(&help).contains("--data-binary"), "{}", stdout(&help));

    // The line, run as printed, is accepted by the server: the body arrives byte for byte.
    if Command::new("curl").arg("--version").output().is_err() {
        return;
    }
    let log = dir.path().join("serve.log");
    let mut proc = spawn_hookwise(&config, port, &log, "info");
    let client = reqwest::Client::new();
    wait_ready(&client, &format!("http://127.0.0.1:{port}/healthz")).await;
    let sent = Command::new("sh")
        .arg("-c")
        .arg(format!("{curl} -s -o /dev/null -w '%{{http_code}}'"))
        .output()
        .unwrap();
    proc.signal("TERM");
    proc.exited_within(Duration::from_secs(30)).await;
    assert_eq!(stdout(&sent), "202", "{}", stderr(&sent));

    // Start-up says what is served and where.
    let log = std::fs::read_to_string(&log).unwrap();
    for expected in [
        &format!("serving webhooks: POST http://127.0.0.1:{port}/webhooks/happyfox")[..],
        "tools available to handlers",
        "no [llm] is configured",
    ] {
        assert!(log.contains(expected), "{expected:?} in:\n{log}");
    }
}

#[test]
fn replay_local_without_an_llm_shows_which_handlers_an_event_starts() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("hookwise.toml"),
        format!("store = \"sqlite://h.db\"\n{GOOD_SOURCE}"),
    )
    .unwrap();
    write_handler(dir.path(), "triage", &["happyfox.get_ticket"]);
    let handlers = dir.path().join("handlers");
    std::fs::write(
        handlers.join("closer.toml"),
        "on = [\"happyfox.ticket.closed\"]\n[agent]\nprompt = \"Close.\"\n",
    )
    .unwrap();
    let fixture = repo_path("fixtures/happyfox/ticket_created.json");
    let out = hookwise(
        dir.path(),
        &["replay", "--local", "--no-llm", fixture.to_str().unwrap()],
        &[],
    );
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", stderr(&out));
    assert!(text.contains("starts triage for subject"), "{text}");
    assert!(
        text.contains(
            "not closer: kind happyfox.ticket.created is not in on = [happyfox.ticket.closed]"
        ),
        "{text}"
    );
    assert!(!stderr(&out).contains("migration"), "{}", stderr(&out));
    assert!(!dir.path().join("h.db").exists());
}

#[test]
fn an_unreachable_or_missing_postgres_database_says_why_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut cases = vec![(
        "postgres://postgres:hunter2@127.0.0.1:1/x".to_string(),
        "connection refused",
    )];
    if let Some(url) = gate::var(
        gate::POSTGRES_URL_VAR,
        "check::an_unreachable_or_missing_postgres_database_says_why_in_one_line (its missing-database case)",
        gate::POSTGRES_HOW,
    ) {
        let base = url.rsplit_once('/').unwrap().0.to_string();
        cases.push((format!("{base}/hookwise_no_such_db"), "does not exist"));
    }
    for (url, why) in cases {
        let out = hookwise(dir.path(), &["migrate"], &[("HOOKWISE_STORE", &url)]);
        assert!(!out.status.success());
        let text = stderr(&out);
        let line = text.trim_end();
        assert!(!line.contains('\n'), "{text}");
        assert!(line.contains(why), "{text}");
        assert!(!line.contains("hunter2"), "{text}");
        assert!(
            !line.contains("timed out") && !line.contains("at line"),
            "{text}"
        );
        assert_eq!(line.matches("cannot open store").count(), 1, "{text}");
    }
}

#[test]
fn check_names_every_scope_that_does_not_fit_its_tool() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("hookwise.toml"),
        format!("handlers_dir = \"handlers\"\n{GOOD_SOURCE}"),
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("handlers")).unwrap();
    let handler = dir.path().join("handlers/triage.toml");
    std::fs::write(
        &handler,
        r#"on = ["happyfox.ticket.created"]
[agent]
prompt = "Triage."
tools = ["happyfox.update_ticket", "happyfox.add_private_note", "planhat.create_task"]

# Not an argument of update_ticket, and the required ticket_id left out.
[agent.scopes."happyfox.update_ticket"]
allow = ["priorty"]

# A string rule on a number, and a value the argument cannot take.
[agent.scopes."happyfox.add_private_note".args.time_spent]
max_length = 3

[agent.scopes."planhat.create_task".args.mainType]
one_of = ["task", "meeting"]
"#,
    )
    .unwrap();
    let out = hookwise(dir.path(), &["check"], &[]);
    assert!(!out.status.success());
    let text = stderr(&out);
    let file = Path::new("handlers").join("triage.toml");
    let expected = [
        r#"key `agent.scopes."happyfox.update_ticket".allow[0]`: the tool has no argument `priorty`; did you mean `priority`?"#,
        r#"key `agent.scopes."happyfox.update_ticket".allow`: leaves out `ticket_id`, which the tool requires"#,
        r#"key `agent.scopes."happyfox.add_private_note".args.time_spent.max_length`: applies to strings, but the argument is integer"#,
        r#"key `agent.scopes."planhat.create_task".args.mainType.one_of[1]`: "meeting" is not a value the argument takes"#,
    ];
    for line in expected {
        assert_eq!(
            text.matches(&format!("{}: {line}", file.display())).count(),
            1,
            "{line:?} once in:\n{text}"
        );
    }
    assert!(text.contains("4 problem(s) found"), "{text}");

    // A scope for a tool the handler does not allow (a file-local mistake: reported alone, since
    // a file that does not load is not held against the tools' schemas).
    std::fs::write(
        &handler,
        r#"on = ["happyfox.ticket.created"]
[agent]
prompt = "Triage."
tools = ["happyfox.update_ticket"]

[agent.scopes."happyfox.reply_to_customer"]
allow = ["ticket_id", "html"]
"#,
    )
    .unwrap();
    let out = hookwise(dir.path(), &["check"], &[]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(&format!(
            r#"{}: key `agent.scopes."happyfox.reply_to_customer"`: "happyfox.reply_to_customer" is not in agent.tools"#,
            file.display()
        )),
        "{}",
        stderr(&out)
    );

    // The same file with the scopes fixed passes.
    std::fs::write(
        &handler,
        r#"on = ["happyfox.ticket.created"]
[agent]
prompt = "Triage."
tools = ["happyfox.update_ticket", "planhat.create_task"]

[agent.scopes."happyfox.update_ticket"]
allow = ["ticket_id", "priority"]

[agent.scopes."happyfox.update_ticket".args.priority]
one_of = [3, 4]

[agent.scopes."planhat.create_task".args.mainType]
equals = "task"
"#,
    )
    .unwrap();
    let out = hookwise(dir.path(), &["check"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[tokio::test]
async fn a_scope_that_does_not_fit_a_truto_tool_is_a_start_up_warning() {
    use crate::support::fake_truto::{API_KEY, FakeTruto, happyfox_tools};
    hookwise::init_tls();
    let truto = FakeTruto::start(vec![("ia-1", happyfox_tools())], 10).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hookwise.toml");
    std::fs::write(
        &config,
        format!(
            "store = \"sqlite://{}\"\nhandlers_dir = \"{}\"\n{GOOD_SOURCE}\n\
             [accounts.hf]\nconnector = \"truto\"\nbase_url = \"{}\"\napi_key = \"{API_KEY}\"\n\
             integrated_account_id = \"ia-1\"\n",
            dir.path().join("hookwise.db").display(),
            dir.path().join("handlers").display(),
            truto.url
        ),
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("handlers")).unwrap();
    std::fs::write(
        dir.path().join("handlers/notes.toml"),
        r#"on = ["happyfox.ticket.created"]
[agent]
prompt = "Note."
tools = ["truto.create_a_happy_fox_private_note"]

[agent.scopes."truto.create_a_happy_fox_private_note"]
allow = ["ticket_id", "txt"]
"#,
    )
    .unwrap();
    // `check` cannot know a Truto tool's arguments without asking Truto: it passes.
    let out = hookwise(dir.path(), &["check"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));

    let port = free_port();
    let log = dir.path().join("serve.log");
    let mut proc = spawn_hookwise(&config, port, &log, "info");
    wait_ready(
        &reqwest::Client::new(),
        &format!("http://127.0.0.1:{port}/healthz"),
    )
    .await;
    proc.signal("TERM");
    proc.exited_within(Duration::from_secs(30)).await;
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("the tool has no argument `txt`; did you mean `text`?")
            && text.contains("truto.create_a_happy_fox_private_note")
            && text.contains(".allow[1]")
            && text.contains("leaves out `text`, which the tool requires")
            && text.contains("the scope is still enforced at every call"),
        "{text}"
    );
}
