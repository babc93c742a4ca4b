//! Rate benchmark: 200 jobs of one account against a fake upstream that allows N calls per
//! fixed window (two kinds of upstream, see `scenarios`), each run with two policies in the same
//! process:
//!
//! - governed: every call through `Upstream::send` (paced from the configured budget, pauses
//!   learned from the `RateLimit-*` headers, a 429 retries the same call);
//! - naive (the seed article's policy): calls sent as fast as they come; on a 429 the whole job
//!   waits for the reset and starts over, at most 3 tries, then it is lost.
//!
//! Printed per run: calls accepted per full window as a share of N, 429s per window (max and
//! total), jobs finished and lost, wall time. `cargo bench --bench governor`; the figures go in
//! the closing note. Loopback only, bounded: 600 accepted calls per run, about 2.5 minutes in all.

#[path = "../tests/it/support/fake_upstream.rs"]
mod fake_upstream;

use fake_upstream::{FakeUpstream, Limits, ResetStyle, Rounding};
use hookwise::app::App;
use hookwise::config::Config;
use hookwise::connectors::planhat;
use hookwise::kernel::event::AccountId;
use hookwise::store::JobId;
use hookwise::tools::ToolContext;
use hookwise::upstream::Request;
use reqwest::Method;
use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};

const JOBS: usize = 200;
/// Two reads and a write, like a triage run: get the ticket, list related ones, add a note.
const CALLS_PER_JOB: usize = 3;
const TOKEN: &str = "bench-token";

/// The two upstreams: Planhat-like (a budget per window, stated in `RateLimit-*` headers with the
/// reset in delta seconds) and HappyFox-like (no headers; going over the limit earns 429s for
/// a penalty, 10 minutes per 1-minute window there, 2 windows here to keep the run short).
fn scenarios() -> [(&'static str, Limits); 2] {
    [
        (
            "headers, no penalty",
            Limits {
                calls: 100,
                window: Duration::from_secs(5),
                reset: ResetStyle::Delta,
                rounding: Rounding::Up,
                penalty: Duration::ZERO,
                retry_after: true,
            },
        ),
        (
            "no headers, 429 penalty of 2 windows",
            Limits {
                calls: 40,
                window: Duration::from_secs(2),
                reset: ResetStyle::None,
                rounding: Rounding::Up,
                penalty: Duration::from_secs(4),
                retry_after: false,
            },
        ),
    ]
}

fn call(job: usize, n: usize) -> Request {
    match n {
        0 => Request::get(format!("/companies/{job}")),
        1 => Request::get("/tickets").query("companyId", job),
        _ => Request::write(
            Method::POST,
            "/tasks",
            json!({"companyId": job, "title": "follow up"}),
        ),
    }
}

struct Outcome {
    finished: usize,
    lost: usize,
    elapsed: Duration,
}

async fn governed(fake: &FakeUpstream, limits: &Limits, dir: &Path) -> Outcome {
    let text = format!(
        "store = \"sqlite://{}\"\n[accounts.acme]\nconnector = \"planhat\"\nbase_url = \"{}\"\n\
         token = \"{TOKEN}\"\nrate_limits = {{ api = \"{}/{}s\" }}\nmax_wait = \"5m\"\n",
        dir.join(format!("governed-{}.db", limits.calls)).display(),
        fake.url,
        limits.calls,
        limits.window.as_secs()
    );
    let config = Config::parse(Path::new("bench.toml"), &text, &|_| None).unwrap();
    let upstream = App::assemble(config).await.unwrap().upstream;
    let started = Instant::now();
    let mut finished = 0;
    // One account: its jobs run one after another, as the scheduler runs them.
    for job in 0..JOBS {
        let mut ok = true;
        for n in 0..CALLS_PER_JOB {
            let ctx = ToolContext {
                account: AccountId::new("acme"),
                job: JobId(job as i64 + 1),
                subject: job.to_string(),
                idempotency_key: format!("job-{job}/step-{n}/call-0"),
            };
            if upstream
                .send(&ctx, planhat::KIND, call(job, n))
                .await
                .is_err()
            {
                ok = false;
                break;
            }
        }
        finished += usize::from(ok);
    }
    Outcome {
        finished,
        lost: JOBS - finished,
        elapsed: started.elapsed(),
    }
}

async fn naive(fake: &FakeUpstream, limits: &Limits) -> Outcome {
    let http = reqwest::Client::new();
    let started = Instant::now();
    let mut finished = 0;
    for job in 0..JOBS {
        let mut done = false;
        for _try in 0..3 {
            let mut limited = None;
            for n in 0..CALLS_PER_JOB {
                let r = call(job, n);
                let mut b = http
                    .request(r.method.clone(), format!("{}{}", fake.url, r.path))
                    .bearer_auth(TOKEN)
                    .query(&r.query);
                if let Some(body) = &r.body {
                    b = b.json(body);
                }
                let response = b.send().await.unwrap();
                if response.status() == 429 {
                    let reset = response
                        .headers()
                        .get("ratelimit-reset")
                        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
                        .map_or(limits.window, Duration::from_secs);
                    limited = Some(reset);
                    break;
                }
            }
            match limited {
                None => {
                    done = true;
                    break;
                }
                // Retry the whole run after the reset.
                Some(wait) => tokio::time::sleep(wait).await,
            }
        }
        finished += usize::from(done);
    }
    Outcome {
        finished,
        lost: JOBS - finished,
        elapsed: started.elapsed(),
    }
}

/// Accepted calls per full window (as a share of N), and 429s per window (max, total).
fn windows(fake: &FakeUpstream, limits: &Limits) -> (f64, usize, usize) {
    let (n, window) = (limits.calls, limits.window);
    let seen = fake.seen();
    let origin = seen.first().map(|s| s.at).unwrap();
    let last = seen.last().map(|s| s.at).unwrap();
    let full = ((last - origin).as_nanos() / window.as_nanos()) as usize;
    let mut ok = vec![0usize; full + 1];
    let mut limited = vec![0usize; full + 1];
    for s in &seen {
        let w = ((s.at - origin).as_nanos() / window.as_nanos()) as usize;
        match s.status {
            200 => ok[w] += 1,
            429 => limited[w] += 1,
            _ => {}
        }
    }
    // The last window is partial: leave it out of the average.
    let share = if full == 0 {
        ok[0] as f64 / f64::from(n)
    } else {
        ok[..full].iter().sum::<usize>() as f64 / (full as f64 * f64::from(n))
    };
    (
        share,
        limited.iter().copied().max().unwrap_or(0),
        limited.iter().sum(),
    )
}

fn main() {
    hookwise::init_tls();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        println!("{JOBS} jobs x {CALLS_PER_JOB} calls, one account, fixed windows\n");
        println!(
            "| upstream | policy | accepted calls per window / N | max 429 per window | 429 total | jobs finished | jobs lost | wall time |"
        );
        println!("|---|---|---|---|---|---|---|---|");
        for (upstream, limits) in scenarios() {
            for policy in ["governed", "naive (seed article)"] {
                let fake = FakeUpstream::spawn(limits.clone(), TOKEN).await;
                let outcome = if policy == "governed" {
                    governed(&fake, &limits, dir.path()).await
                } else {
                    naive(&fake, &limits).await
                };
                let (share, max429, total429) = windows(&fake, &limits);
                println!(
                    "| {upstream}, N = {} per {:?} | {policy} | {:.1}% | {max429} | {total429} | {} | {} | {:.1} s |",
                    limits.calls,
                    limits.window,
                    share * 100.0,
                    outcome.finished,
                    outcome.lost,
                    outcome.elapsed.as_secs_f64()
                );
            }
        }
    });
}
