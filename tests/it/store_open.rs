//! Opening the store as a user meets it: a mistyped path is refused, not created; a command that
//! only reads never creates an empty store; and a second `serve` on one SQLite file is refused,
//! since SQLite serves a single process.

use crate::support::process::{free_port, spawn_hookwise, wait_ready};
use std::path::Path;
use std::process::{Command, Output};

fn hookwise(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hookwise"))
        .current_dir(dir)
        .args(args)
        .env("HOOKWISE_LISTEN", format!("127.0.0.1:{}", free_port()))
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_store_in_a_directory_that_does_not_exist_is_refused_not_created() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no/such/dir");
    std::fs::write(
        dir.path().join("hookwise.toml"),
        format!("store = \"sqlite://{}/x.db\"\n", missing.display()),
    )
    .unwrap();
    for command in [&["serve"][..], &["migrate"]] {
        let out = hookwise(dir.path(), command);
        assert!(!out.status.success(), "{command:?} succeeded");
        let text = stderr(&out);
        assert!(
            text.contains(&format!(
                "the directory {} does not exist",
                missing.display()
            )),
            "{command:?}: {text}"
        );
    }
    assert!(!dir.path().join("no").exists(), "a directory was created");
}

#[test]
fn read_commands_never_create_a_store() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("hookwise.toml"),
        "store = \"sqlite://hookwise.db\"\n",
    )
    .unwrap();
    for command in [
        &["events", "list"][..],
        &["jobs", "list"],
        &["runs", "list"],
        &["approvals", "list"],
        &["prune", "--dry-run"],
    ] {
        let out = hookwise(dir.path(), command);
        assert!(!out.status.success(), "{command:?} succeeded");
        let text = stderr(&out);
        assert!(
            text.contains("there is no store at hookwise.db"),
            "{command:?}: {text}"
        );
        assert!(!text.contains("applied migration"), "{command:?}: {text}");
    }
    assert!(!dir.path().join("hookwise.db").exists());

    // Once `migrate` made it, the same commands read it.
    assert!(hookwise(dir.path(), &["migrate"]).status.success());
    let out = hookwise(dir.path(), &["events", "list"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[tokio::test]
async fn a_second_serve_on_the_same_sqlite_file_is_refused() {
    hookwise::init_tls();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hookwise.toml");
    std::fs::write(
        &config,
        format!(
            "store = \"sqlite://{}\"\n",
            dir.path().join("hookwise.db").display()
        ),
    )
    .unwrap();
    let port = free_port();
    let first = spawn_hookwise(&config, port, &dir.path().join("first.log"), "info");
    ready(port).await;

    let second = Command::new(env!("CARGO_BIN_EXE_hookwise"))
        .arg("--config")
        .arg(&config)
        .arg("serve")
        .env("HOOKWISE_LISTEN", format!("127.0.0.1:{}", free_port()))
        .output()
        .unwrap();
    assert!(!second.status.success());
    let text = stderr(&second);
    assert!(
        text.contains("another `hookwise serve` is already serving this file"),
        "{text}"
    );
    // The first one is untouched.
    let health = reqwest::get(format!("http://127.0.0.1:{port}/readyz"))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);

    // However the first one ended (here: killed), the file can be served again.
    drop(first);
    let port = free_port();
    let _again = spawn_hookwise(&config, port, &dir.path().join("again.log"), "info");
    ready(port).await;
}

async fn ready(port: u16) {
    wait_ready(
        &reqwest::Client::new(),
        &format!("http://127.0.0.1:{port}/readyz"),
    )
    .await;
}
