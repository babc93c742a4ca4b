//! The webhook route against a crowd of bad senders, on the real binary: a seeded, reproducible
//! mix of malformed, unsigned, forged, replayed, oversized, wrongly encoded and deeply nested
//! requests, plus requests hyper cannot parse, over loopback with bounded concurrency. Every
//! answer the router gives is a 4xx problem+json; what hyper refuses itself (a request it cannot
//! parse) is the documented bare 400/431; the process stays up, its memory stays level and
//! nothing is stored. Slow-loris senders are closed (headers) or answered 408 (body) within the
//! configured timeouts while other clients are served.
//!
//! `HOOKWISE_BAD_INPUT_REQUESTS` sets how many requests (default 2000), `HOOKWISE_BAD_INPUT_SEED`
//! the seed; the figures are printed on stderr (`-- --nocapture` shows them).

use crate::support::process::{Proc, free_port, spawn_hookwise, wait_ready};
use crate::support::*;
use futures::StreamExt;
use hookwise::ingress::Source;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TIMEOUTS: &str = "[http]\nheader_read_timeout = \"1s\"\nbody_read_timeout = \"1s\"\n";
/// `max_body_bytes` of the test configuration.
const LIMIT: usize = 65536;
const CONCURRENCY: usize = 16;
/// How much the resident set may grow from after the warm-up to after the run.
const RSS_GROWTH_KIB: u64 = 20 * 1024;

/// `hookwise serve` as a child process with its sources, for signing as each sender would.
struct Served {
    proc: Proc,
    port: u16,
    log: PathBuf,
    sources: HashMap<String, Source>,
    _dir: tempfile::TempDir,
}

async fn serve() -> Served {
    hookwise::init_tls();
    let dir = tempfile::tempdir().unwrap();
    let handlers = dir.path().join("handlers");
    std::fs::create_dir_all(&handlers).unwrap();
    let config_path = dir.path().join("hookwise.toml");
    std::fs::write(
        &config_path,
        test_config_text_with(&dir.path().join("hookwise.db"), &handlers, TIMEOUTS),
    )
    .unwrap();
    let config = hookwise::config::Config::load_with(Some(&config_path), &|_| None).unwrap();
    let sources = hookwise::app::build_sources(&config).unwrap();
    let port = free_port();
    let log = dir.path().join("serve.log");
    let proc = spawn_hookwise(&config_path, port, &log, "info");
    wait_ready(
        &reqwest::Client::new(),
        &format!("http://127.0.0.1:{port}/readyz"),
    )
    .await;
    Served {
        proc,
        port,
        log,
        sources,
        _dir: dir,
    }
}

impl Served {
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.proc.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/PID/status")
    }

    /// The process is still running, answers its health route, and logged no panic.
    async fn still_up(&mut self) {
        assert!(
            self.proc.0.try_wait().unwrap().is_none(),
            "the server exited:\n{}",
            self.log_text()
        );
        let health = reqwest::get(self.url("/healthz")).await.unwrap();
        assert_eq!(health.status(), 200);
        assert!(!self.log_text().contains("panicked"), "{}", self.log_text());
    }

    /// What the store holds, as the API lists it.
    async fn stored_events(&self) -> Vec<Value> {
        let response = reqwest::get(self.url("/api/events")).await.unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// A small seeded generator (SplitMix64): the same seed makes the same requests.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn range(&mut self, low: usize, high: usize) -> usize {
        low + self.below(high - low)
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// What a bad request is, for the figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Category {
    /// Signed correctly, but not JSON, or JSON the source cannot read.
    Malformed,
    /// Without the sender's signature (or token).
    Unsigned,
    /// A signature of another body, another secret, or a wrong token.
    Forged,
    /// Validly signed, with a timestamp outside the tolerance.
    Replayed,
    /// A body over `max_body_bytes`, declared or not.
    Oversized,
    /// Not JSON by its content type, or JSON in an encoding that is not UTF-8.
    Encoding,
    /// JSON nested deeper than any reader goes.
    Nested,
    /// No such source, or a method the route does not answer.
    Routing,
    /// HTTP hyper cannot parse: answered by hyper itself, not the router.
    Framing,
}

/// What the answer must be.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// The router's refusal: this status, as problem+json.
    Problem(u16),
    /// hyper's own refusal of a request it cannot parse: this status, no problem body.
    Bare(u16),
}

struct Case {
    category: Category,
    what: &'static str,
    request: Vec<u8>,
    expect: Expect,
}

/// A request with `Host`, `Connection: close` and (unless `headers` frame the body otherwise)
/// `Content-Length` added.
fn http(method: &str, path: &str, headers: &[(String, String)], body: &[u8]) -> Vec<u8> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    let framed = headers.iter().any(|(n, _)| {
        n.eq_ignore_ascii_case("content-length") || n.eq_ignore_ascii_case("transfer-encoding")
    });
    if !framed {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut request = head.into_bytes();
    request.extend_from_slice(body);
    request
}

fn json_ct() -> (String, String) {
    ("Content-Type".into(), "application/json".into())
}

/// A body each source accepts when it is signed as its sender signs it.
fn good_body(source: &str, rng: &mut Rng) -> Vec<u8> {
    let fixture = |p: &str| std::fs::read(repo_path(p)).unwrap();
    match source {
        "happyfox" => ticket(rng.next() % 1_000_000),
        "planhat" => fixture("fixtures/planhat/nps_submitted.json"),
        "truto" => fixture("fixtures/truto/record_created.json"),
        "billing" => fixture("fixtures/billing/invoice_paid.json"),
        "gh" => format!(r#"{{"repository": "acme/r{}"}}"#, rng.next() % 1000).into_bytes(),
        "multi" => format!(
            r#"{{"account": "acme", "subject": "s{}"}}"#,
            rng.next() % 1000
        )
        .into_bytes(),
        other => panic!("no good body for {other}"),
    }
}

const SOURCES: [&str; 6] = ["happyfox", "planhat", "truto", "billing", "gh", "multi"];
/// Sources whose scheme signs the body (a header token does not).
const BODY_SIGNED: [&str; 4] = ["happyfox", "truto", "billing", "gh"];
/// Sources whose scheme signs a timestamp, checked against a tolerance (300 s).
const TIMESTAMPED: [&str; 2] = ["happyfox", "billing"];

struct Generator<'a> {
    sources: &'a HashMap<String, Source>,
    rng: Rng,
    now: i64,
    n: u64,
}

impl Generator<'_> {
    fn msg_id(&mut self) -> String {
        self.n += 1;
        format!("msg-bad-{}", self.n)
    }

    /// The sender's headers for `body` at `at` (plus the query as a path suffix).
    fn signed(&mut self, source: &str, body: &[u8], at: i64) -> (Vec<(String, String)>, String) {
        let id = self.msg_id();
        let signed = self.sources[source].verifier.sign(body, &id, at);
        let headers = signed
            .headers
            .into_iter()
            .map(|(n, v)| (n.to_string(), v))
            .collect();
        let query = signed
            .query
            .map(|(k, v)| format!("?{k}={v}"))
            .unwrap_or_default();
        (headers, query)
    }

    fn post(
        &mut self,
        source: &str,
        body: &[u8],
        at: i64,
        extra: Vec<(String, String)>,
    ) -> Vec<u8> {
        let (mut headers, query) = self.signed(source, body, at);
        headers.extend(extra);
        http(
            "POST",
            &format!("/webhooks/{source}{query}"),
            &headers,
            body,
        )
    }

    fn case(&mut self, category: Category) -> Case {
        let now = self.now;
        let source = *self.rng.pick(&SOURCES);
        let (what, request, expect): (&'static str, Vec<u8>, Expect) = match category {
            Category::Malformed => match self.rng.below(5) {
                0 => {
                    let mut body = good_body(source, &mut self.rng);
                    body.truncate(self.rng.range(1, body.len() - 1));
                    let r = self.post(source, &body, now, vec![json_ct()]);
                    ("truncated JSON", r, Expect::Problem(400))
                }
                1 => {
                    let n = self.rng.range(1, 2000);
                    let body: Vec<u8> = self.rng.bytes(n).iter().map(|b| b'!' + b % 90).collect();
                    let body = [b"<".as_slice(), &body].concat();
                    let r = self.post(source, &body, now, vec![json_ct()]);
                    ("not JSON", r, Expect::Problem(400))
                }
                2 => {
                    let body = self.rng.pick(&["[]", "42", "\"x\"", "null", "{}", "true"]);
                    let r = self.post(source, body.as_bytes(), now, vec![json_ct()]);
                    ("JSON no source can read", r, Expect::Problem(400))
                }
                3 => {
                    let r = self.post(source, b"", now, vec![json_ct()]);
                    ("empty body", r, Expect::Problem(400))
                }
                _ => {
                    // A Stripe event whose id is there but blank.
                    let body = br#"{"id": " ", "type": "invoice.paid", "data": {"object": {"customer": "cus_1"}}}"#;
                    let r = self.post("billing", body, now, vec![json_ct()]);
                    ("blank event id", r, Expect::Problem(400))
                }
            },
            Category::Unsigned => {
                let body = good_body(source, &mut self.rng);
                let r = http(
                    "POST",
                    &format!("/webhooks/{source}"),
                    &[json_ct()],
                    &body,
                );
                ("no signature", r, Expect::Problem(401))
            }
            Category::Forged => {
                let body = good_body(source, &mut self.rng);
                if BODY_SIGNED.contains(&source) {
                    // Signed, then one digit of the body changed.
                    let (headers, query) = self.signed(source, &body, now);
                    let mut body = body;
                    let digits: Vec<usize> = (0..body.len())
                        .filter(|&i| body[i].is_ascii_digit())
                        .collect();
                    let i = *self.rng.pick(&digits);
                    body[i] = if body[i] == b'9' { b'0' } else { body[i] + 1 };
                    let mut headers = headers;
                    headers.push(json_ct());
                    let r = http("POST", &format!("/webhooks/{source}{query}"), &headers, &body);
                    ("signature of another body", r, Expect::Problem(401))
                } else {
                    let header = if source == "planhat" {
                        "X-Hookwise-Token"
                    } else {
                        "Authorization"
                    };
                    let token = hex::encode(self.rng.bytes(12));
                    let r = http(
                        "POST",
                        &format!("/webhooks/{source}"),
                        &[json_ct(), (header.into(), token)],
                        &body,
                    );
                    ("wrong token", r, Expect::Problem(401))
                }
            }
            Category::Replayed => {
                let source = *self.rng.pick(&TIMESTAMPED);
                let body = good_body(source, &mut self.rng);
                let skew = self.rng.range(301, 30 * 86_400) as i64;
                let at = if self.rng.below(4) == 0 { now + skew } else { now - skew };
                let r = self.post(source, &body, at, vec![json_ct()]);
                ("signed outside the tolerance", r, Expect::Problem(401))
            }
            Category::Oversized => match self.rng.below(3) {
                0 => {
                    let body = vec![b' '; self.rng.range(LIMIT + 1, LIMIT + 16_384)];
                    let r = self.post(source, &body, now, vec![json_ct()]);
                    ("over the limit, declared", r, Expect::Problem(413))
                }
                1 => {
                    // Declared in the billions, a few bytes sent.
                    let declared = self.rng.range(1 << 31, 1 << 40);
                    let r = http(
                        "POST",
                        &format!("/webhooks/{source}"),
                        &[json_ct(), ("Content-Length".into(), declared.to_string())],
                        b"{\"a\":",
                    );
                    ("billions declared", r, Expect::Problem(413))
                }
                _ => {
                    // Chunked, no length declared: refused once the limit is passed.
                    let mut body = Vec::new();
                    let chunk = vec![b' '; 8192];
                    for _ in 0..(LIMIT / chunk.len() + 2) {
                        body.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                        body.extend_from_slice(&chunk);
                        body.extend_from_slice(b"\r\n");
                    }
                    body.extend_from_slice(b"0\r\n\r\n");
                    let r = http(
                        "POST",
                        &format!("/webhooks/{source}"),
                        &[json_ct(), ("Transfer-Encoding".into(), "chunked".into())],
                        &body,
                    );
                    ("over the limit, chunked", r, Expect::Problem(413))
                }
            },
            Category::Encoding => {
                let body = good_body(source, &mut self.rng);
                match self.rng.below(4) {
                    0 => {
                        let ct = *self.rng.pick(&[
                            "text/plain",
                            "application/xml",
                            "application/x-www-form-urlencoded",
                            "multipart/form-data; boundary=x",
                            "application/octet-stream",
                        ]);
                        let r = self.post(source, &body, now, vec![("Content-Type".into(), ct.into())]);
                        ("not a JSON content type", r, Expect::Problem(415))
                    }
                    1 => {
                        let utf16: Vec<u8> = String::from_utf8(body)
                            .unwrap()
                            .encode_utf16()
                            .flat_map(u16::to_le_bytes)
                            .collect();
                        let ct = ("Content-Type".into(), "application/json; charset=utf-16".into());
                        let r = self.post(source, &utf16, now, vec![ct]);
                        ("UTF-16", r, Expect::Problem(400))
                    }
                    2 => {
                        // Bytes that are not UTF-8 inside a string, or a byte-order mark.
                        let bad = if self.rng.below(2) == 0 {
                            let mut b = br#"{"subject": ""#.to_vec();
                            b.extend_from_slice(&[0xC3, 0x28, 0xFF, 0xFE]);
                            b.extend_from_slice(br#""}"#);
                            b
                        } else {
                            [b"\xEF\xBB\xBF".as_slice(), &body].concat()
                        };
                        let r = self.post(source, &bad, now, vec![json_ct()]);
                        ("not UTF-8", r, Expect::Problem(400))
                    }
                    _ => {
                        // Compressed as a sender might, which hookwise does not undo.
                        let mut gz = vec![0x1f, 0x8b, 0x08, 0x00];
                        let n = self.rng.range(16, 512);
                        gz.extend(self.rng.bytes(n));
                        let r = self.post(
                            source,
                            &gz,
                            now,
                            vec![json_ct(), ("Content-Encoding".into(), "gzip".into())],
                        );
                        ("gzip", r, Expect::Problem(400))
                    }
                }
            }
            Category::Nested => {
                let depth = self.rng.range(129, 30_000);
                let body = if self.rng.below(2) == 0 {
                    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
                } else {
                    format!("{}1{}", "{\"a\":".repeat(depth.min(LIMIT / 6)), "}".repeat(depth.min(LIMIT / 6)))
                };
                let r = self.post(source, body.as_bytes(), now, vec![json_ct()]);
                ("nested past any reader", r, Expect::Problem(400))
            }
            Category::Routing => match self.rng.below(3) {
                0 => {
                    let name = { let n = self.rng.range(1, 40); hex::encode(self.rng.bytes(n)) };
                    let body = good_body(source, &mut self.rng);
                    let r = self.post(source, &body, now, vec![json_ct()]);
                    // The right signature, sent to a source that does not exist.
                    let r = String::from_utf8_lossy(&r)
                        .replacen(&format!("/webhooks/{source}"), &format!("/webhooks/x{name}"), 1)
                        .into_bytes();
                    ("no such source", r, Expect::Problem(404))
                }
                1 => {
                    let method = *self.rng.pick(&["GET", "PUT", "DELETE", "PATCH"]);
                    let r = http(method, &format!("/webhooks/{source}"), &[json_ct()], b"{}");
                    ("wrong method", r, Expect::Problem(405))
                }
                _ => {
                    let path = *self.rng.pick(&["/webhooks", "/webhooks/happyfox/extra", "/webhook/happyfox"]);
                    let r = http("POST", path, &[json_ct()], b"{}");
                    ("no such route", r, Expect::Problem(404))
                }
            },
            Category::Framing => match self.rng.below(5) {
                0 => (
                    "garbage request line",
                    [{ let n = self.rng.range(4, 64); self.rng.bytes(n) }.as_slice(), b"\r\n\r\n"].concat(),
                    Expect::Bare(400),
                ),
                1 => (
                    "header name with a space",
                    b"POST /webhooks/happyfox HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n".to_vec(),
                    Expect::Bare(400),
                ),
                2 => (
                    "content length not a number",
                    b"POST /webhooks/happyfox HTTP/1.1\r\nHost: x\r\nContent-Length: 12a\r\n\r\n{}".to_vec(),
                    Expect::Bare(400),
                ),
                3 => (
                    "two different content lengths",
                    b"POST /webhooks/happyfox HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}".to_vec(),
                    Expect::Bare(400),
                ),
                _ => {
                    // hyper refuses a head that outgrows its read buffer (`max_buf_size`, about
                    // 400 KB), but parses one that arrived whole in a single larger read: well
                    // past both, so it never arrives whole.
                    let pad = "a".repeat(self.rng.range(1_500_000, 3_000_000));
                    let r = format!(
                        "POST /webhooks/happyfox HTTP/1.1\r\nHost: x\r\nX-Pad: {pad}\r\nContent-Length: 2\r\n\r\n{{}}"
                    );
                    ("headers too large", r.into_bytes(), Expect::Bare(431))
                }
            },
        };
        Case {
            category,
            what,
            request,
            expect,
        }
    }
}

/// The categories in proportion: framing errors are a small share, like on the internet.
const MIX: [(Category, usize); 9] = [
    (Category::Malformed, 16),
    (Category::Unsigned, 14),
    (Category::Forged, 14),
    (Category::Replayed, 12),
    (Category::Oversized, 8),
    (Category::Encoding, 12),
    (Category::Nested, 8),
    (Category::Routing, 10),
    (Category::Framing, 6),
];

fn generate(generator: &mut Generator<'_>, count: usize) -> Vec<Case> {
    let total: usize = MIX.iter().map(|(_, w)| w).sum();
    (0..count)
        .map(|_| {
            let mut roll = generator.rng.below(total);
            let category = MIX
                .iter()
                .find(|(_, w)| {
                    let hit = roll < *w;
                    roll = roll.saturating_sub(*w);
                    hit
                })
                .unwrap()
                .0;
            generator.case(category)
        })
        .collect()
}

/// An answer as read off the wire.
#[derive(Debug)]
struct Answer {
    status: u16,
    /// Header names lower-cased.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `request` on a new connection and reads until the server closes it. Writing may fail
/// once the server has answered and closed (it does not read a body it refused).
async fn exchange(port: u16, request: &[u8]) -> Result<Answer, String> {
    let stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    let (mut reader, mut writer) = stream.into_split();
    let request = request.to_vec();
    let writing = tokio::spawn(async move {
        let _ = writer.write_all(&request).await;
        writer
    });
    let mut received = Vec::new();
    let mut buf = vec![0u8; 16384];
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match reader.read(&mut buf).await {
                Ok(0) => return Ok(()),
                Ok(n) => received.extend_from_slice(&buf[..n]),
                // A reset after the answer arrived (the server closed with our body unread).
                Err(_) if !received.is_empty() => return Ok(()),
                Err(e) => return Err(e.to_string()),
            }
        }
    })
    .await;
    let _writer = writing.await;
    match read {
        Err(_) => return Err("no answer within 10 s".into()),
        Ok(Err(e)) => return Err(e),
        Ok(Ok(())) => {}
    }
    parse(&received)
}

fn parse(received: &[u8]) -> Result<Answer, String> {
    let text = String::from_utf8_lossy(received);
    let end = received
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("not a whole response: {text:?}"))?;
    let head = String::from_utf8_lossy(&received[..end]);
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.strip_prefix("HTTP/1.1 "))
        .and_then(|l| l.get(..3))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status line: {text:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = received[end + 4..].to_vec();
    if let Some(n) = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
    {
        body.truncate(n);
    }
    Ok(Answer {
        status,
        headers,
        body,
    })
}

/// Why `answer` is not what `case` must get, if it is not.
fn check(case: &Case, answer: &Answer) -> Result<(), String> {
    let problem = answer
        .header("content-type")
        .is_some_and(|ct| ct.starts_with("application/problem+json"));
    match case.expect {
        Expect::Problem(status) => {
            if answer.status != status {
                return Err(format!("status {} instead of {status}", answer.status));
            }
            if !problem {
                return Err(format!(
                    "content type {:?}, not problem+json",
                    answer.header("content-type")
                ));
            }
            let body: Value = serde_json::from_slice(&answer.body)
                .map_err(|e| format!("problem body is not JSON ({e})"))?;
            let typed = body["type"]
                .as_str()
                .is_some_and(|t| t.starts_with("urn:hookwise:problem:"));
            if !typed || !body["title"].is_string() || body["status"] != status {
                return Err(format!("problem without type/title/status: {body}"));
            }
        }
        Expect::Bare(status) => {
            if answer.status != status || problem {
                return Err(format!(
                    "{} {:?} instead of hyper's bare {status}",
                    answer.status,
                    answer.header("content-type")
                ));
            }
        }
    }
    Ok(())
}

/// Sends every case, `CONCURRENCY` at a time; the failures, named.
async fn run(port: u16, cases: &[Case]) -> Vec<String> {
    futures::stream::iter(cases.iter().enumerate())
        .map(|(i, case)| async move {
            let failure = match exchange(port, &case.request).await {
                Ok(answer) => check(case, &answer).err(),
                Err(e) => Some(e),
            };
            failure.map(|f| format!("#{i} {:?} {}: {f}", case.category, case.what))
        })
        .buffer_unordered(CONCURRENCY)
        .filter_map(|f| async move { f })
        .collect()
        .await
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|v| v.parse().unwrap_or_else(|_| panic!("{name}={v}: a number")))
        .unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_bad_requests_get_problems_store_nothing_and_leave_memory_level() {
    let count = env_number("HOOKWISE_BAD_INPUT_REQUESTS", 2000) as usize;
    let seed = env_number("HOOKWISE_BAD_INPUT_SEED", 0x1dea_5eed);
    let mut served = serve().await;
    let mut generator = Generator {
        sources: &served.sources,
        rng: Rng(seed),
        now: chrono::Utc::now().timestamp(),
        n: 0,
    };
    // Each generated body is refused for the one thing wrong with it: the same body signed
    // as its sender signs it is accepted.
    for source in SOURCES {
        let body = good_body(source, &mut generator.rng);
        let (headers, query) = generator.signed(source, &body, generator.now);
        let mut map = axum::http::HeaderMap::new();
        for (n, v) in headers {
            map.insert(
                axum::http::HeaderName::from_bytes(n.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        let query = query.strip_prefix('?');
        served.sources[source]
            .accept(&map, query, &body, chrono::Utc::now())
            .unwrap_or_else(|e| panic!("{source}'s good body is refused: {e}"));
    }

    let warm_up = (count / 4).clamp(1, 500);
    let warm_cases = generate(&mut generator, warm_up);
    let cases = generate(&mut generator, count);
    let started = Instant::now();
    let mut failures = run(served.port, &warm_cases).await;
    let rss_warm = served.rss_kib();
    failures.extend(run(served.port, &cases).await);
    let took = started.elapsed();
    let rss_after = served.rss_kib();

    let mut per_category: BTreeMap<Category, usize> = BTreeMap::new();
    for case in warm_cases.iter().chain(&cases) {
        *per_category.entry(case.category).or_default() += 1;
    }
    eprintln!(
        "bad input: seed {seed:#x}, {} requests in {:.1} s ({per_category:?}); RSS {} KiB after \
         {warm_up} warm-up requests, {} KiB after all ({:+} KiB)",
        warm_up + count,
        took.as_secs_f64(),
        rss_warm,
        rss_after,
        rss_after as i64 - rss_warm as i64,
    );
    assert!(
        failures.is_empty(),
        "{} of {} answers were wrong, e.g.:\n{}",
        failures.len(),
        warm_up + count,
        failures[..failures.len().min(20)].join("\n")
    );
    assert!(
        rss_after <= rss_warm + RSS_GROWTH_KIB,
        "RSS grew from {rss_warm} KiB to {rss_after} KiB"
    );
    served.still_up().await;
    assert_eq!(served.stored_events().await, Vec::<Value>::new());
}

/// Dribbles `head` then `body` a byte every `gap`; returns what the server sent before it closed
/// and how long that took.
async fn dribble(port: u16, head: Vec<u8>, body: Vec<u8>, gap: Duration) -> (Vec<u8>, Duration) {
    let started = Instant::now();
    let (mut reader, mut writer) = TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap()
        .into_split();
    let sender = tokio::spawn(async move {
        for byte in head.into_iter().chain(body) {
            if writer.write_all(&[byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(gap).await;
        }
        std::future::pending::<()>().await;
    });
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    sender.abort();
    assert!(
        closed.is_ok(),
        "a slow connection was still open after 10 s"
    );
    (received, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_loris_senders_are_cut_off_within_the_timeouts_while_others_are_served() {
    const EACH: usize = 12;
    let mut served = serve().await;
    let port = served.port;
    let gap = Duration::from_millis(150);
    let body = ticket(9);
    let signed = served.sources["happyfox"].verifier.sign(
        &body,
        "msg-loris",
        chrono::Utc::now().timestamp(),
    );
    let mut body_head = format!(
        "POST /webhooks/happyfox HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in signed.headers {
        body_head.push_str(&format!("{name}: {value}\r\n"));
    }
    body_head.push_str("\r\n");

    let mut slow = Vec::new();
    for i in 0..EACH {
        // Headers that never end within the timeout.
        let head =
            format!("POST /webhooks/happyfox HTTP/1.1\r\nHost: x\r\nX-Slow-{i}: ").into_bytes();
        slow.push((
            false,
            tokio::spawn(dribble(port, head, vec![b'y'; 64], gap)),
        ));
        // Headers at once, then a body a byte at a time.
        let (head, body) = (body_head.clone().into_bytes(), body.clone());
        let sender = tokio::spawn(async move {
            let (mut reader, mut writer) = TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap()
                .into_split();
            writer.write_all(&head).await.unwrap();
            let started = Instant::now();
            let rest = tokio::spawn(dribble_into(writer, body, gap));
            let mut received = Vec::new();
            let mut buf = [0u8; 4096];
            let _ = tokio::time::timeout(Duration::from_secs(10), async {
                loop {
                    match reader.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => received.extend_from_slice(&buf[..n]),
                    }
                }
            })
            .await;
            rest.abort();
            (received, started.elapsed())
        });
        slow.push((true, sender));
    }
    // Meanwhile, another client: health checks on fresh connections.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let mut slowest = Duration::ZERO;
    let mut checks = 0;
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(1500) {
        let asked = Instant::now();
        let health = client
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .unwrap();
        assert_eq!(health.status(), 200);
        slowest = slowest.max(asked.elapsed());
        checks += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let (mut closed_unanswered, mut timed_out) = (0, 0);
    let mut longest = Duration::ZERO;
    for (body_phase, task) in slow {
        let (received, took) = task.await.unwrap();
        let text = String::from_utf8_lossy(&received).into_owned();
        longest = longest.max(took);
        // Cut off after the timeout (1 s), not at once, and well before the sender would finish.
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_secs(4),
            "closed after {took:?}: {text}"
        );
        if body_phase {
            let answer = parse(&received).unwrap();
            assert_eq!(answer.status, 408, "{text}");
            let problem: Value = serde_json::from_slice(&answer.body).unwrap();
            assert_eq!(
                answer.header("content-type"),
                Some("application/problem+json")
            );
            assert_eq!(problem["type"], "urn:hookwise:problem:body-timeout");
            timed_out += 1;
        } else {
            // hyper closes a connection whose headers are late, without an answer.
            assert_eq!(text, "", "headers never completed");
            closed_unanswered += 1;
        }
    }
    eprintln!(
        "slow loris: {closed_unanswered} slow-header connections closed unanswered, {timed_out} \
         slow bodies answered 408, the longest after {longest:?}; meanwhile {checks} health \
         checks, the slowest {slowest:?}"
    );
    assert!(
        slowest < Duration::from_secs(1),
        "a health check took {slowest:?} among slow senders"
    );
    served.still_up().await;
    assert_eq!(served.stored_events().await, Vec::<Value>::new());
}

async fn dribble_into(mut writer: tokio::net::tcp::OwnedWriteHalf, bytes: Vec<u8>, gap: Duration) {
    for byte in bytes {
        tokio::time::sleep(gap).await;
        if writer.write_all(&[byte]).await.is_err() {
            return;
        }
    }
}
