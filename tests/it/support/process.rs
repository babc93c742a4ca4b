//! Real processes for the tests that need them: `hookwise serve` (the built binary) and nginx
//! configured from the shipped `deploy/nginx.conf`. Every child is SIGKILLed when dropped, so a
//! failing test leaves nothing running.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A child process killed (SIGKILL) when dropped.
pub struct Proc(pub Child);

impl Proc {
    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Sends SIGTERM (`signal` names another, e.g. `INT`), as an orchestrator stopping it would.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill(1) runs");
        assert!(status.success(), "kill -{signal} {}", self.pid());
    }

    /// Waits (bounded) for the process to exit by itself.
    pub async fn exited_within(&mut self, limit: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status;
            }
            assert!(
                start.elapsed() < limit,
                "process {} still running after {limit:?}",
                self.pid()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A figure of `/proc/PID/status`: `VmRSS:`, `RssAnon:` (the heap and stacks, without the
/// binary's own pages, `RssFile:`) in KiB, `Threads:` as a count.
pub fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `hookwise --config CONFIG serve` on a loopback port, logging to `log` at `HOOKWISE_LOG=level`.
pub fn spawn_hookwise(config: &Path, port: u16, log: &Path, level: &str) -> Proc {
    spawn_hookwise_with(config, port, log, &[("HOOKWISE_LOG", level)])
}

/// `hookwise --config CONFIG serve` on a loopback port with more environment (`HOOKWISE_*`
/// settings that cannot follow the config's tables), logging to `log`.
pub fn spawn_hookwise_with(config: &Path, port: u16, log: &Path, env: &[(&str, &str)]) -> Proc {
    let log = std::fs::File::options()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    Proc(
        Command::new(env!("CARGO_BIN_EXE_hookwise"))
            .arg("--config")
            .arg(config)
            .arg("serve")
            .env("HOOKWISE_LISTEN", format!("127.0.0.1:{port}"))
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    )
}

/// Polls `url` (bounded) until it answers 2xx.
pub async fn wait_ready(client: &reqwest::Client, url: &str) {
    let start = Instant::now();
    loop {
        if let Ok(r) = client.get(url).send().await
            && r.status().is_success()
        {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{url} never became ready"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// How to provide nginx to the tests that put it in front of replicas.
pub const NGINX_HOW: &str = "apt install nginx; .ci/run does";

pub fn nginx_installed() -> bool {
    Command::new("nginx")
        .arg("-v")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The shipped `deploy/nginx.conf` with only its addresses changed: `listen 80` becomes the
/// loopback port `listen`, and `server hookwise-N:8080` the N-th of `replicas`. Every other
/// setting (failure accounting, retries, timeouts, keepalive) is exactly what is deployed.
pub fn shipped_nginx_conf(listen: u16, replicas: &[u16]) -> String {
    let shipped = std::fs::read_to_string(super::repo_path("deploy/nginx.conf")).unwrap();
    let mut conf = replace_once(
        &shipped,
        "listen 80;",
        &format!("listen 127.0.0.1:{listen};"),
    );
    for (i, port) in replicas.iter().enumerate() {
        conf = replace_once(
            &conf,
            &format!("server hookwise-{}:8080", i + 1),
            &format!("server 127.0.0.1:{port}"),
        );
    }
    assert!(
        !conf.contains("server hookwise-"),
        "deploy/nginx.conf names more replicas than the test starts"
    );
    conf
}

fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert_eq!(
        text.matches(from).count(),
        1,
        "deploy/nginx.conf should contain `{from}` exactly once"
    );
    text.replacen(from, to, 1)
}

/// nginx in the foreground with `conf`; its pid file, error log and temporary files in `dir`.
pub fn spawn_nginx(dir: &Path, conf: &str) -> Proc {
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    let pid = dir.join("nginx.pid");
    Proc(
        Command::new("nginx")
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(&path)
            .arg("-e")
            .arg(dir.join("nginx-error.log"))
            .arg("-g")
            .arg(format!("daemon off; pid {};", pid.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}
