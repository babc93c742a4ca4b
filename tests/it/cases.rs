//! `hookwise test`, run as the real binary: the bundled handlers' cases recorded against the
//! scripted fake model and the fake HappyFox/Planhat, then replayed offline; a changed prompt,
//! a matcher that does not hold and a handler that starts when it must not, each failing with a
//! message that says why; JUnit output.

use crate::planhat::{ANA, ATELIERS, CLAIRE, MARIA, NORTHWIND};
use crate::support::fake_happyfox::{BOT_STAFF_ID, FakeHappyfox};
use crate::support::fake_llm::{FakeLlm, Reply, llm_table, openai_calls, openai_text as text};
use crate::support::fake_planhat::{FakePlanhat, TOKEN};
use crate::support::*;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs `hookwise --config CONFIG ARGS...` in the repository (case files name fixtures from
/// there); exit code, stdout, stderr.
fn hookwise(config: &Path, args: &[&str]) -> (i32, String, String) {
    let out = tokio::task::block_in_place(|| {
        Command::new(env!("CARGO_BIN_EXE_hookwise"))
            .current_dir(repo_path(""))
            .arg("--config")
            .arg(config)
            .args(args)
            .env_remove("HOOKWISE_CONFIG")
            .output()
            .unwrap()
    });
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The repository's hookwise.toml with `handlers_dir` pointed at `handlers`, plus `extra`.
fn config(dir: &Path, handlers: &Path, extra: &str) -> PathBuf {
    let text = std::fs::read_to_string(repo_path("hookwise.toml")).unwrap();
    let text = text.replace(
        "handlers_dir = \"handlers\"",
        &format!("handlers_dir = {:?}", handlers.display().to_string()),
    );
    assert!(text.contains(&handlers.display().to_string()));
    let path = dir.join(format!("hookwise-{:x}.toml", fastrand::u32(..)));
    std::fs::write(&path, format!("{text}\n{extra}\n")).unwrap();
    path
}

/// Copies the bundled cases of `handler` (case files and cassettes) into `cases/<handler>/`.
fn copy_cases(handler: &str, cases: &Path) {
    let to = cases.join(handler);
    std::fs::create_dir_all(&to).unwrap();
    for entry in std::fs::read_dir(repo_path(&format!("handlers/tests/{handler}"))).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
    }
}

/// A model turn calling tools: (call id, wire name, arguments).
fn calls(list: &[(&str, &str, Value)]) -> Reply {
    let args: Vec<String> = list.iter().map(|(_, _, a)| a.to_string()).collect();
    let list: Vec<(&str, &str, &str)> = list
        .iter()
        .zip(&args)
        .map(|((id, name, _), a)| (*id, *name, a.as_str()))
        .collect();
    openai_calls(&list)
}

const TRIAGE_NOTE: &str = "<p><b>Triage (hookwise)</b></p><p>Charged twice for order SO-884213: \
    duplicate charge, refund requested. Category Billing kept; priority raised to High (money \
    taken wrongly); Billing Issue Type set. Possible duplicate: none.</p>";

/// What a capable model answers in each bundled case that runs: the seed workflows' steps.
fn script(handler: &str) -> Vec<Reply> {
    match handler {
        "happyfox-triage" => vec![
            calls(&[("c1", "happyfox__get_ticket", json!({"ticket_id": 142}))]),
            calls(&[
                (
                    "c2",
                    "happyfox__list_tickets",
                    json!({"query": "contact:\"dana.whitfield@example.org\"", "status": "pending"}),
                ),
                ("c3", "happyfox__list_categories", json!({})),
            ]),
            calls(&[
                (
                    "c4",
                    "happyfox__update_custom_fields",
                    json!({"ticket_id": 142, "fields": {"22": 32}}),
                ),
                (
                    "c5",
                    "happyfox__update_ticket",
                    json!({"ticket_id": 142, "priority": 3}),
                ),
            ]),
            calls(&[(
                "c6",
                "happyfox__add_private_note",
                json!({"ticket_id": 142, "html": TRIAGE_NOTE}),
            )]),
            text(
                "Kept Billing, set Billing Issue Type to Duplicate charge, raised priority to High.",
            ),
        ],
        "happyfox-sla-escalation" => vec![
            calls(&[("c1", "happyfox__get_ticket", json!({"ticket_id": 152}))]),
            calls(&[("c2", "happyfox__list_staff", json!({"category_id": 5}))]),
            calls(&[(
                "c3",
                "happyfox__update_ticket",
                json!({"ticket_id": 152, "priority": 4}),
            )]),
            calls(&[(
                "c4",
                "happyfox__add_private_note",
                json!({"ticket_id": 152, "alert": "category", "html": "<p><b>SLA escalation (hookwise)</b></p><p>1 breach (first response): nobody has answered since the ticket was opened. Priority raised High to Urgent. Next: take and answer it now.</p>"}),
            )]),
            text("Raised ticket 152 to Urgent and left an escalation note."),
        ],
        "happyfox-reply-draft" => vec![
            calls(&[("c1", "happyfox__get_ticket", json!({"ticket_id": 142}))]),
            calls(&[(
                "c2",
                "happyfox__add_private_note",
                json!({"ticket_id": 142, "html": "<p><b>Draft reply (hookwise)</b>: review before sending</p><p>Hi Dana, thanks for the details. We have confirmed the duplicate charge and started the refund.</p>"}),
            )]),
            text("A draft reply was stored on ticket 142."),
        ],
        "planhat-nps-detractor" => vec![
            calls(&[(
                "c1",
                "planhat__get_company",
                json!({"companyId": NORTHWIND}),
            )]),
            calls(&[
                (
                    "c2",
                    "planhat__list_nps",
                    json!({"companyId": NORTHWIND, "limit": 20}),
                ),
                (
                    "c3",
                    "planhat__list_endusers",
                    json!({"companyId": NORTHWIND}),
                ),
                ("c4", "planhat__list_users", json!({"userId": ANA})),
            ]),
            // A company id that is an end user's: the check refuses it, the model corrects itself.
            calls(&[(
                "c5",
                "planhat__create_task",
                json!({"mainType": "task", "companyId": MARIA, "action": "NPS 4 from Maria Lindqvist: follow up"}),
            )]),
            calls(&[(
                "c6",
                "planhat__create_task",
                json!({"mainType": "task", "companyId": NORTHWIND, "ownerId": ANA, "endusers": [MARIA],
                       "action": "NPS 4 from Maria Lindqvist: follow up",
                       "description": "<p><b>NPS 4</b> from Maria Lindqvist: reporting exports keep timing out.</p>"}),
            )]),
            text("Created one task for Ana Sousa."),
        ],
        "planhat-renewal-risk" => vec![
            calls(&[("c1", "planhat__get_company", json!({"companyId": ATELIERS}))]),
            calls(&[
                (
                    "c2",
                    "planhat__list_tasks",
                    json!({"companyId": ATELIERS, "titleContains": "Renewal risk"}),
                ),
                (
                    "c3",
                    "planhat__list_tickets",
                    json!({"companyId": ATELIERS}),
                ),
                ("c4", "planhat__list_nps", json!({"companyId": ATELIERS})),
                ("c5", "planhat__list_users", json!({"userId": CLAIRE})),
            ]),
            calls(&[(
                "c6",
                "planhat__create_task",
                json!({"mainType": "task", "companyId": ATELIERS, "ownerId": CLAIRE,
                       "action": "Renewal risk (high): Ateliers du Rhône, renews in 45 days",
                       "description": "<p><b>Risk: high</b></p><ul><li>Health 4, down 2</li><li>2 open High tickets</li></ul>"}),
            )]),
            text("High risk; task created for Claire Dubois."),
        ],
        other => panic!("no script for {other}"),
    }
}

/// The fixture each HappyFox handler's running case delivers: the fake serves its ticket.
fn happyfox_ticket(handler: &str) -> Option<&'static str> {
    match handler {
        "happyfox-triage" => Some("fixtures/happyfox/ticket_created.json"),
        "happyfox-sla-escalation" => Some("fixtures/happyfox/ticket_first_response_breached.json"),
        "happyfox-reply-draft" => Some("fixtures/happyfox/ticket_customer_replied.json"),
        _ => None,
    }
}

const BUNDLED: &[&str] = &[
    "happyfox-reply-draft",
    "happyfox-sla-escalation",
    "happyfox-triage",
    "planhat-nps-detractor",
    "planhat-renewal-risk",
];

/// Every bundled case is recorded against the scripted model and the fakes (`--record`), then
/// replayed with neither (offline) and passes; the recordings are the committed cassettes, so
/// the committed ones are what the bundled handlers really send. With
/// HOOKWISE_UPDATE_CASSETTES=1, the committed cassettes are replaced by the new recordings.
#[tokio::test(flavor = "multi_thread")]
async fn bundled_cases_record_then_replay_offline() {
    let dir = tempfile::tempdir().unwrap();
    let cases = dir.path().join("tests");
    let update = std::env::var("HOOKWISE_UPDATE_CASSETTES").is_ok_and(|v| v == "1");
    let mut stale = Vec::new();
    for handler in BUNDLED {
        copy_cases(handler, &cases);
        // The committed cassettes are not read by --record: remove them to prove it.
        for entry in std::fs::read_dir(cases.join(handler)).unwrap() {
            let path = entry.unwrap().path();
            if path.to_string_lossy().ends_with(".cassette.json") {
                std::fs::remove_file(path).unwrap();
            }
        }
        let llm = FakeLlm::start(script(handler)).await;
        let account = match happyfox_ticket(handler) {
            Some(fixture) => {
                let fake = FakeHappyfox::start().await;
                let ticket = std::fs::read(repo_path(fixture)).unwrap();
                fake.put_ticket(serde_json::from_slice(&ticket).unwrap());
                let table = fake.account_toml("acme", Some(BOT_STAFF_ID), "");
                (table, Fake::HappyFox(fake))
            }
            None => {
                let fake = FakePlanhat::start().await;
                (
                    crate::planhat::account(&fake.url, TOKEN),
                    Fake::Planhat(fake),
                )
            }
        };
        let (table, fake) = account;
        let recording = config(
            dir.path(),
            &repo_path("handlers"),
            &format!("{}\n{table}", llm_table(&llm.url)),
        );
        let cases_arg = cases.display().to_string();
        let (code, out, err) = hookwise(
            &recording,
            &["test", "--record", "--cases", &cases_arg, handler],
        );
        assert_eq!(code, 0, "recording {handler}:\n{out}\n{err}");
        assert!(out.contains("recorded "), "{out}");
        assert_eq!(
            llm.unused(),
            0,
            "{handler}: every scripted answer was asked for"
        );
        assert!(
            fake.writes() == 0,
            "{handler}: recording never writes upstream"
        );

        // Offline: no [llm], no account, the fakes gone.
        drop(llm);
        drop(fake);
        let offline = config(dir.path(), &repo_path("handlers"), "");
        let (code, out, err) = hookwise(&offline, &["test", "--cases", &cases_arg, handler]);
        assert_eq!(code, 0, "replaying {handler}:\n{out}\n{err}");
        assert!(!out.contains("FAIL"), "{out}");

        for entry in std::fs::read_dir(cases.join(handler)).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if !name.ends_with(".cassette.json") {
                continue;
            }
            let committed = repo_path(&format!("handlers/tests/{handler}/{name}"));
            let recorded = std::fs::read_to_string(&path).unwrap();
            if std::fs::read_to_string(&committed).ok().as_deref() != Some(recorded.as_str()) {
                if update {
                    std::fs::write(&committed, &recorded).unwrap();
                } else {
                    stale.push(committed.display().to_string());
                }
            }
        }
    }
    assert!(
        stale.is_empty(),
        "these committed cassettes differ from a fresh recording of the bundled handlers; if the \
         handler changed on purpose, run HOOKWISE_UPDATE_CASSETTES=1 cargo test --test it \
         bundled_cases and commit the result: {stale:?}"
    );
}

enum Fake {
    HappyFox(FakeHappyfox),
    Planhat(FakePlanhat),
}

impl Fake {
    fn writes(&self) -> usize {
        match self {
            Fake::HappyFox(f) => f.writes().len(),
            Fake::Planhat(f) => f.writes().len(),
        }
    }
}

/// The repository's cases as committed, offline: every bundled handler has cases, all pass.
#[tokio::test(flavor = "multi_thread")]
async fn the_committed_cases_pass_offline() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &repo_path("handlers"), "");
    let junit = dir.path().join("junit.xml");
    let (code, out, err) = hookwise(&config, &["test", "--junit", &junit.display().to_string()]);
    assert_eq!(code, 0, "{out}\n{err}");
    for handler in BUNDLED {
        assert!(
            out.contains(&format!("PASS {handler}/")),
            "{handler}:\n{out}"
        );
    }
    assert!(!out.contains("handlers without test cases"), "{out}");
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.starts_with("<?xml"), "{xml}");
    assert!(xml.contains("<testsuite name=\"happyfox-triage\""), "{xml}");
    assert!(
        xml.contains("<testcase name=\"new-billing-ticket\" classname=\"happyfox-triage\""),
        "{xml}"
    );
    assert!(!xml.contains("<failure"), "{xml}");
}

/// A copy of the bundled triage handler and its cases in `dir`, for a test to change.
fn triage_copy(dir: &Path) -> (PathBuf, PathBuf) {
    let handlers = dir.join("handlers");
    std::fs::create_dir_all(&handlers).unwrap();
    std::fs::copy(
        repo_path("handlers/happyfox-triage.toml"),
        handlers.join("happyfox-triage.toml"),
    )
    .unwrap();
    let cases = dir.join("tests");
    copy_cases("happyfox-triage", &cases);
    (handlers, cases)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_changed_prompt_fails_with_a_diff_of_the_request() {
    let dir = tempfile::tempdir().unwrap();
    let (handlers, cases) = triage_copy(dir.path());
    let file = handlers.join("happyfox-triage.toml");
    let prompt = std::fs::read_to_string(&file).unwrap();
    let old = "1. Call happyfox.get_ticket with the numeric id.";
    assert!(prompt.contains(old), "the prompt line this test edits");
    std::fs::write(
        &file,
        prompt.replace(
            old,
            "1. Call happyfox.get_ticket with the ticket's display id.",
        ),
    )
    .unwrap();
    let config = config(dir.path(), &handlers, "");
    let junit = dir.path().join("junit.xml");
    let (code, out, _) = hookwise(
        &config,
        &[
            "test",
            "--cases",
            &cases.display().to_string(),
            "--junit",
            &junit.display().to_string(),
        ],
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("FAIL happyfox-triage/new-billing-ticket"),
        "{out}"
    );
    assert!(
        out.contains("request 1 to the model differs from the cassette"),
        "{out}"
    );
    assert!(out.contains(&format!("-{old}")), "the recorded line: {out}");
    assert!(
        out.contains("+1. Call happyfox.get_ticket with the ticket's display id."),
        "the new line: {out}"
    );
    // The cases the change does not touch still pass.
    assert!(
        out.contains("PASS happyfox-triage/not-when-a-rule-assigned-it"),
        "{out}"
    );
    assert!(out.contains("case(s): 2 passed, 1 failed"), "{out}");
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(
        xml.contains("failures=\"1\"")
            && xml.contains("<failure message=\"request 1 to the model differs"),
        "{xml}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_matcher_that_does_not_hold_says_which_argument_and_why() {
    let dir = tempfile::tempdir().unwrap();
    let (handlers, cases) = triage_copy(dir.path());
    let case = cases.join("happyfox-triage/new-billing-ticket.toml");
    let text = std::fs::read_to_string(&case).unwrap();
    std::fs::write(&case, text.replace("priority = 3,", "priority = 2,")).unwrap();
    let config = config(dir.path(), &handlers, "");
    let (code, out, _) = hookwise(&config, &["test", "--cases", &cases.display().to_string()]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("expected 1 write(s) of happyfox.update_ticket with assignee not set, priority = 2, status not set, ticket_id = 142, found 0"),
        "{out}"
    );
    assert!(out.contains("priority = 3, expected = 2"), "{out}");
    // The write that matched nothing is reported too.
    assert!(
        out.contains("unexpected write of happyfox.update_ticket"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_handler_that_starts_when_it_must_not_fails_and_a_bad_case_names_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let (handlers, cases) = triage_copy(dir.path());
    std::fs::write(
        cases.join("happyfox-triage/wrongly-quiet.toml"),
        "events = [\"fixtures/happyfox/ticket_created.json\"]\n[expect]\ntriggers = false\n",
    )
    .unwrap();
    std::fs::write(
        cases.join("happyfox-triage/wrongly-started.toml"),
        "events = [\"fixtures/happyfox/ticket_created_autoassigned.json\"]\n",
    )
    .unwrap();
    std::fs::write(
        cases.join("happyfox-triage/typo.toml"),
        "events = [\"fixtures/happyfox/ticket_created.json\"]\n[expect]\ntrigers = false\n",
    )
    .unwrap();
    std::fs::write(
        cases.join("happyfox-triage/not-allowed.toml"),
        "events = [\"fixtures/happyfox/ticket_created.json\"]\n[[expect.writes]]\ntool = \"happyfox.reply_to_customer\"\n",
    )
    .unwrap();
    let config = config(dir.path(), &handlers, "");
    let (code, out, _) = hookwise(&config, &["test", "--cases", &cases.display().to_string()]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("expected happyfox-triage not to start, but fixtures/happyfox/ticket_created.json started it"),
        "{out}"
    );
    assert!(
        out.contains("expected happyfox-triage to start, but no event started it"),
        "{out}"
    );
    // Why not: the condition that failed, as `replay --local --no-llm` says it.
    assert!(out.contains("ticket_created_autoassigned.json: "), "{out}");
    assert!(out.contains("assigned_to"), "{out}");
    assert!(
        out.contains("typo.toml:3: unknown field `trigers`"),
        "{out}"
    );
    assert!(
        out.contains("not-allowed.toml: expect.writes[0].tool: handler happyfox-triage may not call happyfox.reply_to_customer"),
        "{out}"
    );
    assert!(out.contains("case(s): 3 passed, 4 failed"), "{out}");
}

/// The triage handler as a live deployment runs it: writes really reach the fake HappyFox.
fn live_triage(tools_change: impl Fn(&str) -> String) -> String {
    let text = std::fs::read_to_string(repo_path("handlers/happyfox-triage.toml")).unwrap();
    let text = text.replace("mode = \"dry-run\"", "mode = \"live\"");
    tools_change(&text)
}

/// The fake model's price in the eval test: $2 per million input tokens, $8 per million output.
const EVAL_PRICE: &str =
    "[llm.prices.\"test-model\"]\ninput_per_million = 2.0\noutput_per_million = 8.0\n";

/// What `(input, output)` tokens cost at `EVAL_PRICE`.
fn eval_cost(tokens: &Value) -> f64 {
    (tokens[0].as_f64().unwrap() * 2.0 + tokens[1].as_f64().unwrap() * 8.0) / 1e6
}

fn assert_usd(got: &Value, want: f64) {
    let got = got
        .as_f64()
        .unwrap_or_else(|| panic!("a cost, found {got}"));
    assert!(
        want > 0.0 && (got - want).abs() < 1e-12,
        "cost {got}, expected {want}"
    );
}

/// `eval` over a store seeded by a real live run against the fake HappyFox: a candidate without
/// the note tool is reported as missing the note, one that adds a public reply as a new write,
/// never sent; the fake receives no write from either. Both versions' tokens are priced.
#[tokio::test(flavor = "multi_thread")]
async fn eval_compares_a_candidate_with_what_the_current_version_wrote_and_sends_nothing() {
    let fake = FakeHappyfox::start().await;
    let webhook = std::fs::read(repo_path("fixtures/happyfox/ticket_created.json")).unwrap();
    fake.put_ticket(serde_json::from_slice(&webhook).unwrap());
    let llm = FakeLlm::start(script("happyfox-triage")).await;
    let clock = hookwise::kernel::clock::ManualClock::starting_at(chrono::Utc::now());
    let app = TestApp::spawn_with(Options {
        clock: Some(clock.clone()),
        handlers: vec![(
            "happyfox-triage.toml".into(),
            live_triage(|t| t.to_string()),
        )],
        extra_config: format!(
            "[scheduler]\npoll_interval = \"10ms\"\n\n{}{EVAL_PRICE}\n{}",
            llm_table(&llm.url),
            fake.account_toml("acme", Some(BOT_STAFF_ID), "")
        ),
        ..Options::default()
    })
    .await;
    let (status, ack) = app.send("happyfox", &webhook, "msg-eval-142").await;
    assert_eq!(status, 202, "{ack}");
    clock.advance(std::time::Duration::from_secs(46));
    eventually(
        "the live run",
        std::time::Duration::from_secs(20),
        || async {
            let jobs = app
                .store
                .list_jobs(&hookwise::store::JobFilter::default())
                .await
                .unwrap();
            jobs.iter()
                .any(|j| j.state == hookwise::store::JobState::Done)
        },
    )
    .await;
    let sent = fake.writes().len();
    assert_eq!(sent, 3, "the live run wrote fields, priority and the note");
    let dir = app.dir.clone();
    let config_path = app.config_path.clone();
    app.stop().await;

    // Candidate 1: no note tool; the model sorts the ticket and stops.
    let no_note = dir.path().join("triage-no-note.toml");
    std::fs::write(
        &no_note,
        live_triage(|t| {
            // The tool, and the scope tables that narrow it (the last in the file).
            let without = t.replace("  \"happyfox.add_private_note\",\n", "");
            let cut = without
                .find("[agent.scopes.\"happyfox.add_private_note\"]")
                .unwrap();
            without[..cut].to_string()
        }),
    )
    .unwrap();
    for reply in [
        calls(&[("e1", "happyfox__get_ticket", json!({"ticket_id": 142}))]),
        calls(&[
            (
                "e2",
                "happyfox__update_custom_fields",
                json!({"ticket_id": 142, "fields": {"22": 32}}),
            ),
            (
                "e3",
                "happyfox__update_ticket",
                json!({"ticket_id": 142, "priority": 3}),
            ),
        ]),
        text("Sorted; no note."),
    ] {
        llm.push(reply);
    }
    let (code, out, err) = hookwise(
        &config_path,
        &[
            "eval",
            "--handler",
            "happyfox-triage",
            "--candidate",
            &no_note.display().to_string(),
        ],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("current done, candidate done"), "{out}");
    assert!(out.contains("same     happyfox.update_ticket"), "{out}");
    assert!(
        out.contains("same     happyfox.update_custom_fields"),
        "{out}"
    );
    assert!(out.contains("missing  happyfox.add_private_note"), "{out}");
    assert!(
        out.contains("writes 2 same, 0 changed, 0 new, 1 missing"),
        "{out}"
    );
    assert!(out.contains("  cost: current $0.0"), "{out}");
    assert!(!out.contains("unknown"), "every model has a price: {out}");
    assert_eq!(llm.unused(), 0);

    // Candidate 2: may reply to the customer, and does; JSON for tools.
    let replies = dir.path().join("triage-replies.toml");
    std::fs::write(
        &replies,
        live_triage(|t| {
            t.replace(
                "  \"happyfox.add_private_note\",\n",
                "  \"happyfox.add_private_note\",\n  \"happyfox.reply_to_customer\",\n",
            )
        }),
    )
    .unwrap();
    for reply in [
        calls(&[("r1", "happyfox__get_ticket", json!({"ticket_id": 142}))]),
        calls(&[
            (
                "r2",
                "happyfox__update_custom_fields",
                json!({"ticket_id": 142, "fields": {"22": 32}}),
            ),
            (
                "r3",
                "happyfox__update_ticket",
                json!({"ticket_id": 142, "priority": 3}),
            ),
            (
                "r4",
                "happyfox__add_private_note",
                json!({"ticket_id": 142, "html": TRIAGE_NOTE}),
            ),
            (
                "r5",
                "happyfox__reply_to_customer",
                json!({"ticket_id": 142, "html": "<p>We are on it.</p>"}),
            ),
        ]),
        text("Sorted and answered."),
    ] {
        llm.push(reply);
    }
    let (code, out, err) = hookwise(
        &config_path,
        &[
            "eval",
            "--handler",
            "happyfox-triage",
            "--candidate",
            &replies.display().to_string(),
            "--json",
        ],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    let actions = &report["jobs"][0]["actions"];
    let verdicts: Vec<(&str, &str)> = actions
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["verdict"].as_str().unwrap(), a["tool"].as_str().unwrap()))
        .collect();
    assert_eq!(
        verdicts,
        [
            ("same", "happyfox.update_custom_fields"),
            ("same", "happyfox.update_ticket"),
            ("same", "happyfox.add_private_note"),
            ("new", "happyfox.reply_to_customer"),
        ],
        "{out}"
    );
    assert_eq!(report["totals"]["new"], 1);
    // Each version's cost is its tokens at the model's price, per job and in total.
    let job = &report["jobs"][0];
    assert_usd(&job["current_cost_usd"], eval_cost(&job["current_tokens"]));
    assert_usd(
        &job["candidate_cost_usd"],
        eval_cost(&job["candidate_tokens"]),
    );
    let totals = &report["totals"];
    assert_usd(
        &totals["current_cost_usd"],
        eval_cost(&json!([
            totals["current_input_tokens"],
            totals["current_output_tokens"]
        ])),
    );
    assert_usd(
        &totals["candidate_cost_usd"],
        eval_cost(&json!([
            totals["candidate_input_tokens"],
            totals["candidate_output_tokens"]
        ])),
    );
    assert_eq!(
        fake.writes().len(),
        sent,
        "eval never writes upstream, whatever the candidate's mode: {:?}",
        fake.calls()
    );
}

/// `--live-model` asks the model again, whatever the cassette says, and judges only the writes:
/// a model that writes the note twice fails the case; the cassette is left as it was.
#[tokio::test(flavor = "multi_thread")]
async fn live_model_judges_a_new_models_writes_without_the_cassettes_answers() {
    let dir = tempfile::tempdir().unwrap();
    let (handlers, cases) = triage_copy(dir.path());
    let cassette = cases.join("happyfox-triage/new-billing-ticket.cassette.json");
    let before = std::fs::read(&cassette).unwrap();
    let note = json!({"ticket_id": 142, "html": TRIAGE_NOTE});
    let llm = FakeLlm::start(vec![
        calls(&[("n1", "happyfox__get_ticket", json!({"ticket_id": 142}))]),
        calls(&[
            (
                "n2",
                "happyfox__update_custom_fields",
                json!({"ticket_id": 142, "fields": {"22": 32}}),
            ),
            (
                "n3",
                "happyfox__update_ticket",
                json!({"ticket_id": 142, "priority": 3}),
            ),
            ("n4", "happyfox__add_private_note", note.clone()),
        ]),
        calls(&[("n5", "happyfox__add_private_note", note)]),
        text("Done, noted twice."),
    ])
    .await;
    let config = config(dir.path(), &handlers, &llm_table(&llm.url));
    let (code, out, err) = hookwise(
        &config,
        &[
            "test",
            "--live-model",
            "--cases",
            &cases.display().to_string(),
            "happyfox-triage",
        ],
    );
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        out.contains("FAIL happyfox-triage/new-billing-ticket (")
            && out.contains("live model, 4 question(s)"),
        "{out}"
    );
    assert!(
        out.contains("expected 1 write(s) of happyfox.add_private_note with html matching"),
        "{out}"
    );
    assert!(out.contains("found 2"), "{out}");
    assert_eq!(llm.unused(), 0);
    assert_eq!(
        std::fs::read(&cassette).unwrap(),
        before,
        "the cassette is untouched"
    );
}
