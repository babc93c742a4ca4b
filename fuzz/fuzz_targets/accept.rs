//! `Source::accept` for every source kind (and each adapter behind it): sources built from
//! config text as `[sources.NAME]` tables, requests signed as their sender would, with arbitrary
//! extra headers, query and body.
//!
//! Each source is built twice: as is (it parses the whole payload) and routed by the bundled
//! handlers (it parses only what it and they read, `hookwise::ingress::select`). Both must accept
//! or refuse alike, make the same event and route it alike.
//!
//! Input: byte 0 picks the source, byte 1 the mode (bit 0: do not sign, so the request goes
//! through verification unsigned), then a header block (`name: value` lines, `?query`), a blank
//! line, the body.

#![no_main]

#[path = "../common/mod.rs"]
mod common;

use chrono::{DateTime, Utc};
use hookwise::config::SourceConfig;
use hookwise::handler::HandlerSet;
use hookwise::ingress::Source;
use hookwise::ingress::route::EventRouter;
use http::{HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use std::path::Path;
use std::sync::{Arc, LazyLock};

const NOW: i64 = 1_767_225_600;

/// One table per source kind and scheme, as a user would write them.
const SOURCES: &[(&str, &str)] = &[
    (
        "happyfox",
        r#"kind = "happyfox"
scheme = "standard-webhooks"
secrets = ["whsec_ZGV2ZWxvcG1lbnQgb25seSwgbm90IGEgc2VjcmV0"]
account = "acme""#,
    ),
    (
        "planhat",
        r#"kind = "planhat"
scheme = "header-token"
header = "X-Hookwise-Token"
secrets = ["development-only-planhat-token"]
account = "northwind""#,
    ),
    (
        "truto",
        r#"kind = "truto"
scheme = "truto"
secrets = ["6e17561c-a20c-44ce-b8b5-caff0bf786fe"]"#,
    ),
    (
        "billing",
        r#"kind = "generic"
scheme = "stripe"
secrets = ["whsec_development_only_billing_secret"]
account = "acme-billing"
event_pointer = "/type"
subject_pointer = "/data/object/customer"
id_pointer = "/id""#,
    ),
    (
        "happyfox-hmac",
        r#"kind = "happyfox"
scheme = "hmac"
header = "X-HappyFox-Signature"
algorithm = "sha1"
encoding = "base64"
prefix = "sha1="
secrets = ["hf-secret"]
account_pointer = "/account"
id_header = "X-Event-Id""#,
    ),
    (
        "planhat-url",
        r#"kind = "planhat"
scheme = "url-token"
secrets = ["planhat-url-token"]
account = "northwind"
id_pointer = "/idempotencyKey"
subject_pointer = "/object/companyId""#,
    ),
    (
        "generic-github",
        r#"kind = "generic"
scheme = "github"
secrets = ["It's a Secret to Everybody"]
account_pointer = "/installation/account"
event = "push"
subject_pointer = "/repository/id""#,
    ),
    (
        // Its pointers name elements the adapter reads through `*` (`/updates/*/by`): both must
        // be kept.
        "happyfox-overlap",
        r#"kind = "happyfox"
scheme = "header-token"
header = "X-Token"
secrets = ["hf-overlap-token"]
account = "acme"
id_pointer = "/updates/0/body"
subject_pointer = "/ticket/updates/1/by/id""#,
    ),
    (
        "truto-bearer",
        r#"kind = "truto"
scheme = "header-token"
header = "Authorization"
secrets = ["truto-bearer"]
account = "fixed-account""#,
    ),
];

/// The bundled handlers' router: what a served source is routed by.
static ROUTER: LazyLock<EventRouter> = LazyLock::new(|| {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../handlers");
    let handlers = hookwise::handler::load_dir(&dir).expect("the bundled handlers load");
    EventRouter::new(Arc::new(HandlerSet::new(handlers)), &Default::default(), 5)
});

/// Each source whole, and routed by `ROUTER`.
static BUILT: LazyLock<Vec<(Source, Source)>> = LazyLock::new(|| {
    SOURCES
        .iter()
        .filter_map(|(name, text)| {
            let cfg: SourceConfig = toml::from_str(text).expect("a valid table");
            let adapter = hookwise::connectors::adapter(&cfg.kind).expect("a known kind");
            // A table this target means to be valid that does not build is a target bug; one
            // meant to be refused (event_pointer on a non-generic kind) is skipped.
            let whole = Source::build(Path::new("fuzz.toml"), name, &cfg, adapter).ok()?;
            let mut routed = Source::build(Path::new("fuzz.toml"), name, &cfg, adapter).ok()?;
            routed.routed_by(&ROUTER);
            Some((whole, routed))
        })
        .collect()
});

fuzz_target!(|data: &[u8]| {
    let [selector, mode, rest @ ..] = data else {
        return;
    };
    let (source, routed) = &BUILT[usize::from(*selector) % BUILT.len()];
    let (head, body) = common::split_head(rest);
    let (mut headers, mut query) = common::headers(head);
    let signed = mode & 1 == 0;
    if signed {
        let s = source.verifier.sign(body, "msg_fuzz", NOW);
        for (k, v) in s.headers {
            headers.insert(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(&v).unwrap(),
            );
        }
        if let Some((param, token)) = s.query {
            query = Some(format!("{param}={token}"));
        }
    }
    let now = DateTime::<Utc>::from_timestamp(NOW, 0).unwrap();
    // Unsigned (mode bit 0), the request may still carry a valid token of its own: no
    // assertion on the outcome, only that verification and what follows do not panic.
    let whole = source.accept(&headers, query.as_deref(), body, now);
    let narrow = routed.accept(&headers, query.as_deref(), body, now);
    let (event, payload) = match (whole, narrow) {
        (Ok(whole), Ok((narrow_event, narrow_payload))) => {
            // The same event, routed the same way, from the parts the routed source parsed.
            assert_eq!(format!("{:?}", whole.0), format!("{narrow_event:?}"));
            assert_eq!(
                format!("{:?}", ROUTER.decide(&whole.0, &whole.1)),
                format!("{:?}", ROUTER.decide(&narrow_event, &narrow_payload))
            );
            whole
        }
        (Err(whole), Err(narrow)) => {
            assert_eq!(whole.to_string(), narrow.to_string());
            return;
        }
        (whole, narrow) => panic!("the whole parse says {whole:?}, the routed one {narrow:?}"),
    };
    // Stored exactly as signed, and the payload routed on is the body's.
    assert_eq!(event.payload.as_bytes(), body);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(body).unwrap(),
        payload
    );
    for (what, value) in [
        ("id", event.id.as_str()),
        ("account", event.account.as_str()),
        ("subject", event.subject.as_str()),
        ("kind", event.kind.as_str()),
    ] {
        assert!(
            !value.trim().is_empty(),
            "an accepted event with a blank {what}: {event:?}"
        );
    }
});
