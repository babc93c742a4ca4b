//! Tests of the signature schemes against official vectors and hand-computed values.
use super::*;
use VerifyError::{Future, MissingHeader, MissingToken, NoMatch, Stale};
use serde_json::Value;

type R = Result<(), VerifyError>;
/// The official Standard Webhooks vectors, copied from the specification's reference libraries.
const VECTOR_FILE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/testdata/standard_webhooks_vectors.json"
);
const B_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
const B_ID: &str = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
const B_TS: i64 = 1649367553;
const B_BODY: &[u8] = br#"{"email":"test@example.com","username":"test_user"}"#;
const B_SIG: &str = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";
const A_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
const A_TS: i64 = 1614265330;
const A_BODY: &[u8] = br#"{"test": 2432232314}"#;

fn vectors() -> Value {
    serde_json::from_str(&std::fs::read_to_string(VECTOR_FILE).unwrap()).unwrap()
}

fn s<'v>(v: &'v Value, key: &str) -> &'v str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("vector field {key}"))
}

fn hm<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (k, v) in pairs {
        let name = HeaderName::from_bytes(k.as_ref().as_bytes()).unwrap();
        map.append(name, v.as_ref().parse().unwrap());
    }
    map
}

fn ver(scheme: Scheme, secrets: &[&str]) -> Verifier {
    let secrets = secrets.iter().map(|s| Secret::new(*s)).collect();
    Verifier::new(scheme, secrets, 300).unwrap()
}

fn check(v: &Verifier, pairs: &[(&str, &str)], body: &[u8], now: i64) -> R {
    v.verify(&hm(pairs), None, body, now).map(|_| ())
}

/// Standard Webhooks check with explicit id/ts; `now` defaults to the signed timestamp.
fn sw(secret: &str, (id, ts, body): (&str, i64, &[u8]), sig: &str, now: i64) -> R {
    let ts = ts.to_string();
    let h = [
        ("webhook-id", id),
        ("webhook-timestamp", &ts),
        ("webhook-signature", sig),
    ];
    check(&ver(Scheme::StandardWebhooks, &[secret]), &h, body, now)
}

fn roundtrip(v: &Verifier, body: &[u8]) -> R {
    let signed = v.sign(body, "msg_1", 1000);
    let query = signed.query.map(|(k, val)| format!("a=1&{k}={val}"));
    let h = hm(&signed.headers);
    v.verify(&h, query.as_deref(), body, 1000).map(|_| ())
}

fn is_malformed(r: R) -> bool {
    matches!(r, Err(VerifyError::Malformed { .. }))
}

fn hmac(header: &'static str, algorithm: HmacAlgorithm, encoding: Encoding) -> Scheme {
    let (header, prefix) = (HeaderName::from_static(header), None);
    Scheme::Hmac {
        header,
        algorithm,
        encoding,
        prefix,
    }
}

#[test]
fn standard_webhooks_official_vectors_sign_and_verify() {
    let all = vectors();
    let vs = all["vectors"].as_array().unwrap();
    assert_eq!(vs.len(), 2);
    for v in vs {
        let (id, body) = (s(v, "msg_id"), s(v, "payload").as_bytes());
        let ts = v["timestamp"].as_i64().unwrap();
        let verifier = ver(Scheme::StandardWebhooks, &[s(v, "secret")]);
        let signed = verifier.sign(body, id, ts);
        assert_eq!(signed.headers[2].0, "webhook-signature");
        assert_eq!(signed.headers[2].1, s(v, "expected_signature"));
        let h = hm(&signed.headers);
        let ok = verifier.verify(&h, None, body, ts).unwrap();
        assert_eq!((ok.message_id(), ok.timestamp()), (Some(id), Some(ts)));
        assert_eq!(ok.body(), body);
    }
}

#[test]
fn standard_webhooks_negative_vectors() {
    let all = vectors();
    let (a, neg) = (&all["vectors"][0], &all["negative_cases"]);
    let (secret, good) = (s(a, "secret"), s(a, "expected_signature"));
    let c = |sig: &str| sw(secret, (A_ID, A_TS, A_BODY), sig, A_TS);
    // This case stores the secret without "whsec_", which must work as well.
    let bare = |sig: &str| sw(s(&neg[0], "secret"), (A_ID, A_TS, A_BODY), sig, A_TS);
    assert_eq!(bare(s(&neg[0], "bad_signature")), Err(NoMatch));
    assert_eq!(bare(good), Ok(()));
    assert_eq!(c(s(&neg[1], "bad_signature")), Err(NoMatch));
    for bad in neg[2]["bad_signatures"].as_array().unwrap() {
        assert_eq!(c(bad.as_str().unwrap()), Err(NoMatch), "{bad}");
    }
    // Documented rule: even a wholly unparseable list is NoMatch, not Malformed.
    assert_eq!(c("garbage ,,, v1"), Err(NoMatch));
    let decoy = s(&neg[4], "decoy_signature");
    let v2 = decoy.replacen("v1,", "v2,", 1);
    assert_eq!(c(&format!("{decoy} {v2}")), Err(NoMatch));
    assert_eq!(c(&format!("{decoy} {good} {v2}")), Ok(()));
    // Same tag with non-zero trailing bits (E -> F): one spelling per tag only.
    assert_eq!(c(&good.replace("1OE=", "1OF=")), Err(NoMatch));
}

#[test]
fn standard_webhooks_decoy_list_with_and_without_valid() {
    let all = vectors();
    let neg = &all["negative_cases"][3];
    let decoys = s(neg, "decoy_signatures_space_separated");
    let c = |sig: &str| sw(B_SECRET, (B_ID, B_TS, B_BODY), sig, B_TS);
    assert_eq!(c(decoys), Err(NoMatch));
    let (first, rest) = decoys.split_once(' ').unwrap();
    assert_eq!(c(&format!("{first} {B_SIG} {rest}")), Ok(()));
}

#[test]
fn standard_webhooks_unpadded_secrets_accepted() {
    // Expected tags computed with Python hmac and base64.b64decode(secret + padding).
    let cases = [
        (
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS",
            "LVOXivKoo4FWasi/IaHvzhE/u+7/cu2AME+zS/nXqzk=",
        ),
        (
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwBr",
            "yK2tMbA6BHPrMEJ1lLv7UlJJbgFoqGenJkiajZ29evg=",
        ),
    ];
    for (secret, tag) in cases {
        let signed = ver(Scheme::StandardWebhooks, &[secret]).sign(A_BODY, A_ID, A_TS);
        assert_eq!(signed.headers[2].1, format!("v1,{tag}"));
        let whsec = format!("whsec_{secret}");
        let r = sw(&whsec, (A_ID, A_TS, A_BODY), &signed.headers[2].1, A_TS);
        assert_eq!(r, Ok(()));
    }
}

#[test]
fn standard_webhooks_tolerance_tamper_rotation_svix() {
    let at = |ts: i64, body: &[u8], now| sw(B_SECRET, (B_ID, ts, body), B_SIG, now);
    assert_eq!(at(B_TS, B_BODY, B_TS + 301), Err(Stale(300)));
    assert_eq!(at(B_TS, B_BODY, B_TS - 301), Err(Future(300)));
    assert_eq!(at(B_TS, B_BODY, B_TS + 300), Ok(()));
    assert_eq!(at(B_TS, B_BODY, B_TS - 300), Ok(()));
    assert_eq!(at(B_TS, b"{}", B_TS), Err(NoMatch));
    assert!(is_malformed(at(-5, B_BODY, B_TS)));

    let new = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let third = "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let receiver = ver(Scheme::StandardWebhooks, &[B_SECRET, new]);
    for (sender, expect) in [(B_SECRET, Ok(())), (new, Ok(())), (third, Err(NoMatch))] {
        let sender = ver(Scheme::StandardWebhooks, &[sender]);
        let h = sender.sign(B_BODY, B_ID, B_TS).headers;
        let r = receiver.verify(&hm(&h), None, B_BODY, B_TS).map(|_| ());
        assert_eq!(r, expect);
    }

    let ts = &B_TS.to_string();
    let h = hm(&[
        ("Svix-Id", B_ID),
        ("svix-timestamp", ts),
        ("SVIX-SIGNATURE", B_SIG),
    ]);
    let ok = receiver.verify(&h, None, B_BODY, B_TS).unwrap();
    assert_eq!(ok.message_id(), Some(B_ID));
    let partial = [("svix-id", B_ID), ("svix-signature", B_SIG)];
    let err = MissingHeader("svix-timestamp".into());
    assert_eq!(check(&receiver, &partial, B_BODY, B_TS), Err(err));
}

#[test]
fn bad_config_rejected_without_printing_secret() {
    use VerifierConfigError::*;
    let new = |scheme, secrets: &[&str]| {
        let secrets = secrets.iter().map(|s| Secret::new(*s)).collect();
        Verifier::new(scheme, secrets, 300).unwrap_err()
    };
    let sw = |secrets: &[&str]| new(Scheme::StandardWebhooks, secrets);
    assert_eq!(sw(&[]), NoSecrets);
    assert_eq!(sw(&[B_SECRET, ""]), EmptySecret(1));
    assert_eq!(new(Scheme::Github, &[""]), EmptySecret(0));
    let reason = "no key after the whsec_ prefix";
    let err = sw(&["whsec_"]);
    assert_eq!(err, InvalidStandardWebhooksSecret { index: 0, reason });
    let err = sw(&[B_SECRET, "whsec_not*base64!"]);
    let reason = "not valid base64";
    assert_eq!(err, InvalidStandardWebhooksSecret { index: 1, reason });
    assert!(err.to_string().contains("#1") && !err.to_string().contains("base64!"));
    let p = String::new();
    assert_eq!(new(Scheme::UrlToken { param: p }, &["t"]), EmptyParam);
    let secret = Secret::new("hunter2");
    assert_eq!(format!("{secret:?} {secret}"), "*** ***");
    assert!(!format!("{:?}", ver(Scheme::Github, &["hunter2"])).contains("hunter2"));
}

#[test]
fn github_official_vector() {
    let v = ver(Scheme::Github, &["It's a Secret to Everybody"]);
    let hex = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
    let sig = format!("sha256={hex}");
    let mut h = hm(&[("X-Hub-Signature-256", &*sig)]);
    h.insert("x-github-delivery", "guid-1".parse().unwrap());
    let ok = v.verify(&h, None, b"Hello, World!", 0).unwrap();
    assert_eq!((ok.message_id(), ok.timestamp()), (Some("guid-1"), None));
    assert_eq!(v.sign(b"Hello, World!", "guid-1", 0).headers[0].1, sig);
    let err = v.verify(&h, None, b"Hello, World?", 0).unwrap_err();
    assert_eq!(err, NoMatch);
    let no_prefix = [("x-hub-signature-256", hex)];
    assert!(is_malformed(check(&v, &no_prefix, b"Hello, World!", 0)));
}

#[test]
fn stripe_scheme() {
    // Python hmac with the literal key b"whsec_test_secret": the secret is NOT base64-decoded.
    let good = "248a374f50f943a28b0f6ab50faf9a7e7e29b710fa26df9fb1618b9bf8ea9c9a";
    let (body, t, bad) = (br#"{"id":"evt_1"}"#, 1700000000, "0".repeat(64));
    let v = ver(Scheme::Stripe, &["whsec_test_secret"]);
    let c = |value: &str, now| check(&v, &[("Stripe-Signature", value)], body, now);
    let several = format!("t={t},v1={bad},v0={good},v1={good},x");
    assert_eq!(c(&several, t), Ok(()));
    assert_eq!(c(&format!("t={t},v1={bad},v0={good}"), t), Err(NoMatch));
    assert_eq!(c(&format!("t={t},v0={good}"), t), Err(NoMatch));
    assert_eq!(c(&format!("t={t},v1={good}"), t + 301), Err(Stale(300)));
    assert!(is_malformed(c(&format!("v1={good}"), t)));
    let signed = v.sign(body, "", t).headers;
    assert_eq!(signed[0].1, format!("t={t},v1={good}"));
    let ok = v.verify(&hm(&signed), None, body, t).unwrap();
    assert_eq!((ok.timestamp(), ok.message_id()), (Some(t), None));
}

#[test]
fn truto_hex_and_base64_with_and_without_prefix() {
    // Both spellings of one Python-computed HMAC-SHA256.
    let hex = "f4a55317ccc9630a2d74a669d96f429e861c114f75c2c126ff834587f204bdad";
    let b64 = "9KVTF8zJYwotdKZp2W9CnoYcEU91wsEm/4NFh/IEva0=";
    let body = br#"{"event":"record:created"}"#;
    let v = ver(Scheme::Truto, &["8a2e-uuid-secret"]);
    let c = |value: &str| check(&v, &[("X-Truto-Signature", value)], body, 0);
    for sig in [hex, b64, b64.trim_end_matches('=')] {
        assert_eq!(c(&format!("format=sha256,v={sig}")), Ok(()));
        assert_eq!(c(&format!("v={sig}")), Ok(()));
    }
    assert_eq!(c(&format!("format=sha256, v={hex}")), Ok(()));
    assert_eq!(c(&format!("v={}", hex.replace('f', "e"))), Err(NoMatch));
    assert_eq!(c(&format!("v={}", b64.replace("va0", "vb0"))), Err(NoMatch));
    assert!(is_malformed(c(hex)));
    assert_eq!(roundtrip(&v, body), Ok(()));
}

#[test]
fn configurable_hmac() {
    let happyfox = "x-happyfox-webhook-signature";
    let mut scheme = hmac(happyfox, HmacAlgorithm::Sha1, Encoding::Hex);
    if let Scheme::Hmac { prefix, .. } = &mut scheme {
        *prefix = Some("sha1=".into());
    }
    let v = ver(scheme, &["happyfox-secret"]);
    let body = br#"{"ticket":42}"#;
    // Python: hmac.new(b"happyfox-secret", body, hashlib.sha1).hexdigest()
    let expected = "sha1=15da4a6caff322406bbdf2dce59d601216382ac0";
    let signed = v.sign(body, "", 0).headers;
    assert_eq!(
        (signed[0].0.as_str(), signed[0].1.as_str()),
        (happyfox, expected)
    );
    let c = |value: &str, body| check(&v, &[("X-HappyFox-Webhook-Signature", value)], body, 0);
    assert_eq!(c(expected, body), Ok(()));
    assert_eq!(c(expected, b"{}"), Err(NoMatch));
    assert!(is_malformed(c(&expected[5..], body)));
    assert_eq!(roundtrip(&v, b"other"), Ok(()));

    let shopify = "x-shopify-hmac-sha256";
    let scheme = hmac(shopify, HmacAlgorithm::Sha256, Encoding::Base64);
    let v = ver(scheme, &["shpss_abc"]);
    // Python: base64.b64encode(hmac.new(b"shpss_abc", body, hashlib.sha256).digest())
    let expected = "qg8iH9GT9k8mkaOyB/gCrohBmGpZXlML9EQbjbOhUFg=";
    assert_eq!(v.sign(br#"{"order":1}"#, "", 0).headers[0].1, expected);
    let c = |body: &[u8]| check(&v, &[(shopify, expected)], body, 0);
    assert_eq!(c(br#"{"order":1}"#), Ok(()));
    assert_eq!(c(br#"{"order":2}"#), Err(NoMatch));
    assert_eq!((roundtrip(&v, b"x"), roundtrip(&v, b"")), (Ok(()), Ok(())));
}

#[test]
fn header_and_url_tokens() {
    let header = HeaderName::from_static("x-planhat-token");
    let v = ver(Scheme::HeaderToken { header }, &["old", "tok3n"]);
    let c = |value: &str| check(&v, &[("X-Planhat-Token", value)], b"", 0);
    assert_eq!((c("tok3n"), c("old")), (Ok(()), Ok(())));
    assert_eq!((c("tok3"), c("Bearer tok3n")), (Err(NoMatch), Err(NoMatch)));
    assert_eq!(c(""), Err(MissingToken));
    let missing = check(&v, &[], b"", 0);
    assert_eq!(missing, Err(MissingHeader("x-planhat-token".into())));

    let header = AUTHORIZATION;
    let v = ver(Scheme::HeaderToken { header }, &["tok3n"]);
    let c = |value: &str| check(&v, &[("Authorization", value)], b"", 0);
    assert_eq!((c("Bearer tok3n"), c("bearer  tok3n")), (Ok(()), Ok(())));
    assert_eq!((c("tok3n"), roundtrip(&v, b"x")), (Ok(()), Ok(())));
    assert_eq!(c("Bearer wrong"), Err(NoMatch));
    assert_eq!(c("Bearer "), Err(MissingToken));

    let url = |p: &str| Scheme::UrlToken { param: p.into() };
    let v = ver(url("token"), &["a b/c+d"]);
    let c = |q: Option<&str>| v.verify(&HeaderMap::new(), q, b"", 0).map(|_| ());
    assert_eq!(c(Some("x=1&token=a+b%2Fc%2Bd&token=zzz")), Ok(()));
    assert_eq!(c(Some("?token=a%20b%2fc%2bd")), Ok(()));
    assert_eq!(c(Some("token=a+b%2Fc%2Be")), Err(NoMatch));
    for q in [Some("tokenx=a+b%2Fc%2Bd"), Some("token="), None] {
        assert_eq!(c(q), Err(MissingToken));
    }
    let v = ver(url("token"), &["s3cret"]);
    let (headers, query) = (vec![], Some(("token".into(), "s3cret".into())));
    assert_eq!(v.sign(b"", "", 0), Signed { headers, query });
    assert_eq!(roundtrip(&v, b""), Ok(()));
    assert_eq!(form_decode("%zz%4+"), b"%zz%4 ");
}

#[test]
fn missing_headers_name_the_header() {
    let shopify = "x-shopify-hmac-sha256";
    let shopify = hmac(shopify, HmacAlgorithm::Sha256, Encoding::Base64);
    let cases = [
        (Scheme::StandardWebhooks, "webhook-id"),
        (Scheme::Github, "x-hub-signature-256"),
        (Scheme::Stripe, "stripe-signature"),
        (Scheme::Truto, "x-truto-signature"),
        (shopify, "x-shopify-hmac-sha256"),
    ];
    for (scheme, header) in cases {
        let err = check(&ver(scheme, &[B_SECRET]), &[], b"{}", 0).unwrap_err();
        assert_eq!(err, MissingHeader(header.into()));
        assert_eq!(err.code(), "missing-signature");
    }
    let v = ver(Scheme::StandardWebhooks, &[B_SECRET]);
    let no_sig = [("webhook-id", "m"), ("webhook-timestamp", "1")];
    let err = MissingHeader("webhook-signature".into());
    assert_eq!(check(&v, &no_sig, b"", 1), Err(err));
}

#[test]
fn non_visible_ascii_is_malformed_and_codes_are_stable() {
    let mut h = HeaderMap::new();
    let euro = http::HeaderValue::from_bytes(b"sha256=\xe2\x82\xac").unwrap();
    h.insert("x-hub-signature-256", euro);
    let v = ver(Scheme::Github, &["s"]);
    let err = v.verify(&h, None, b"", 0).unwrap_err();
    let reason = "value is not visible ASCII";
    assert_eq!(err, malformed("x-hub-signature-256", reason));
    assert_eq!(err.code(), "malformed-signature");
    assert_eq!(Stale(1).code(), "stale-timestamp");
    assert_eq!(Future(1).code(), "future-timestamp");
    assert_eq!(NoMatch.code(), "signature-mismatch");
    assert_eq!(MissingToken.code(), "missing-token");
}
