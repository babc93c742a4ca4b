//! Tests that need something from outside the crate (PostgreSQL, chromedriver, a real model,
//! nginx) run when it is there; otherwise they say loudly that they checked nothing and return.
//! With `HOOKWISE_TEST_REQUIRE_ALL=1` (exported by `.ci/run`, which provides everything) a missing
//! prerequisite fails the test instead, so a CI run cannot pass with a suite that quietly did
//! not run.

use std::io::Write;

/// Set to `1` to turn every skip into a failure.
pub const REQUIRE_VAR: &str = "HOOKWISE_TEST_REQUIRE_ALL";
/// The PostgreSQL server the store tests use (a database URL; each test makes its own schema).
pub const POSTGRES_URL_VAR: &str = "HOOKWISE_TEST_POSTGRES_URL";

/// The value of `var` for `test`; unset or empty, the test is skipped (`skip`) and this is None.
/// `how` says how to provide it.
pub fn var(var: &str, test: &str, how: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ => {
            skip(test, &format!("{var} is not set"), how);
            None
        }
    }
}

/// Says on stderr, past the harness's capture (it captures `eprintln!` too), that `test` checked
/// nothing because `missing`; panics instead when `HOOKWISE_TEST_REQUIRE_ALL=1`.
pub fn skip(test: &str, missing: &str, how: &str) {
    if std::env::var(REQUIRE_VAR).is_ok_and(|v| v == "1") {
        panic!("{missing} but {REQUIRE_VAR}=1: {test} may not be skipped ({how})");
    }
    let _ = writeln!(
        std::io::stderr(),
        "\n*** SKIPPED {test}: {missing}, so it checked nothing ({how}; \
         {REQUIRE_VAR}=1 makes this a failure) ***"
    );
}

/// How to provide `HOOKWISE_TEST_POSTGRES_URL`.
pub const POSTGRES_HOW: &str =
    "set it to a PostgreSQL database URL such as postgres://postgres@127.0.0.1:5432/test";
