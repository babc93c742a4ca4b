//! Every signature scheme's `Verifier::verify` (header parsing included) on arbitrary headers,
//! query and body, and `sign` → `verify` round trips.
//!
//! Input: byte 0 picks the scheme, byte 1 the mode (bit 0: overlay the headers `sign` makes for
//! the body, so the request must verify; bit 1: the head's first line is the secret), then a
//! header block (`name: value` lines, `?query`), a blank line, the body.

#![no_main]

#[path = "../common/mod.rs"]
mod common;

use hookwise::ingress::verify::{Encoding, HmacAlgorithm, Scheme, Verifier};
use hookwise::kernel::Secret;
use http::{HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;

const NOW: i64 = 1_767_225_600;

fn scheme(selector: u8) -> (Scheme, &'static str) {
    let header = |h: &'static str| HeaderName::from_static(h);
    match selector % 10 {
        0 => (
            Scheme::StandardWebhooks,
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        ),
        1 => (Scheme::Github, "It's a Secret to Everybody"),
        2 => (Scheme::Stripe, "whsec_stripe_literal_key"),
        3 => (Scheme::Truto, "6e17561c-a20c-44ce-b8b5-caff0bf786fe"),
        4 => (
            Scheme::Hmac {
                header: header("x-shopify-hmac-sha256"),
                algorithm: HmacAlgorithm::Sha256,
                encoding: Encoding::Base64,
                prefix: None,
            },
            "shopify-secret",
        ),
        5 => (
            Scheme::Hmac {
                header: header("x-signature"),
                algorithm: HmacAlgorithm::Sha1,
                encoding: Encoding::Hex,
                prefix: Some("sha1=".into()),
            },
            "sha1-secret",
        ),
        6 => (
            Scheme::HeaderToken {
                header: header("x-hookwise-token"),
            },
            "development-only-planhat-token",
        ),
        7 => (
            Scheme::HeaderToken {
                header: http::header::AUTHORIZATION,
            },
            "bearer-token",
        ),
        8 => (
            Scheme::UrlToken {
                param: "token".into(),
            },
            "url-token-secret",
        ),
        _ => (
            Scheme::UrlToken {
                param: "a b&c".into(),
            },
            "odd param",
        ),
    }
}

enum Kind {
    HeaderToken,
    Other,
}

fuzz_target!(|data: &[u8]| {
    let [selector, mode, rest @ ..] = data else {
        return;
    };
    let (scheme, default_secret) = scheme(*selector);
    let scheme_kind = match scheme {
        Scheme::HeaderToken { .. } => Kind::HeaderToken,
        _ => Kind::Other,
    };
    let (head, body) = common::split_head(rest);
    let (secret, head) = if mode & 2 != 0 {
        let end = head.iter().position(|b| *b == b'\n').unwrap_or(head.len());
        let rest = head.get(end + 1..).unwrap_or_default();
        (String::from_utf8_lossy(&head[..end]).into_owned(), rest)
    } else {
        (default_secret.to_owned(), head)
    };
    let secret_text = secret.clone();
    let Ok(verifier) = Verifier::new(
        scheme,
        vec![Secret::new(secret), Secret::new("second-secret")],
        300,
    ) else {
        return;
    };
    let (mut headers, mut query) = common::headers(head);

    // A token sent as a header value must be visible ASCII without surrounding blanks (values
    // arrive trimmed); other secrets are keys, any bytes.
    let sendable = match &scheme_kind {
        Kind::HeaderToken => {
            secret_text.trim() == secret_text
                && secret_text.bytes().all(|b| (0x20..=0x7e).contains(&b))
        }
        Kind::Other => true,
    };
    let signed = mode & 1 != 0 && sendable;
    if signed {
        let s = verifier.sign(body, "msg_fuzz", NOW);
        for (k, v) in &s.headers {
            let (Ok(k), Ok(v)) = (
                HeaderName::from_bytes(k.as_bytes()),
                HeaderValue::from_str(v),
            ) else {
                // A secret that makes no valid header value (a token with a newline) cannot
                // be sent at all.
                return;
            };
            headers.insert(k, v);
        }
        if let Some((param, token)) = &s.query {
            let enc = |s: &str| s.bytes().map(|b| format!("%{b:02X}")).collect::<String>();
            let ours = format!("{}={}", enc(param), enc(token));
            query = Some(match query {
                Some(q) => format!("{ours}&{q}"),
                None => ours,
            });
        }
    }

    let result = verifier.verify(&headers, query.as_deref(), body, NOW);
    if signed {
        let verified = result.unwrap_or_else(|e| panic!("a signed request must verify: {e}"));
        assert_eq!(verified.body(), body);
    }
});
