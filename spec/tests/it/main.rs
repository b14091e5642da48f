//! Integration tests of guildhall-spec: agreement with every published test vector in
//! `spec/vectors/`, which an independent Python implementation produces.

// A malformed vector file should fail the test loudly, which is what expect does.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod canonical_json;
mod events;
mod http_signatures;
mod media;
mod permissions;
mod strategies;

use std::path::PathBuf;

/// Loads a vector file.
fn vectors(name: &str) -> serde_json::Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("vectors").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Property-test settings: `cases` generated inputs per property, and no regression files
/// written into the source tree (a failure prints its minimal input instead).
fn config(cases: u32) -> proptest::test_runner::Config {
    proptest::test_runner::Config {
        cases,
        failure_persistence: None,
        ..proptest::test_runner::Config::default()
    }
}

/// Fails with every disagreement at once rather than the first.
fn assert_no_failures(kind: &str, total: usize, failures: &[String]) {
    assert!(total > 0, "no {kind} vectors were checked");
    assert!(
        failures.is_empty(),
        "{} of {total} {kind} vectors disagree:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
