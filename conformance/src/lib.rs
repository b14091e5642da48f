//! The black-box conformance suite: it talks to a server under test only through the federation
//! API and the test-control API (spec chapter 21), acting as peer servers of its own on
//! loopback. It depends on `guildhall-spec` (and `guildhall-identity`), never on the homeserver,
//! so it judges our server exactly as it judges anyone else's.
#![forbid(unsafe_code)]

pub mod cases;
pub mod context;
pub mod host;
pub mod peer;
pub mod report;
pub mod target;

pub use context::Context;
pub use report::{Outcome, Report};

/// Which cases run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// The cases every v1 server must pass.
    Core,
    /// Everything, including behaviour the spec makes optional or later chapters add.
    Full,
}

/// How a case failed: a sentence saying what was expected and what was seen; or, marked by
/// [`skipped`], why it does not apply to this target.
pub type CaseResult = Result<(), String>;

/// Marks a case's error as a skip. No failure message starts with control characters.
const SKIP_MARK: &str = "\u{1}skip\u{1}";

/// The error a case returns when the target lacks an optional service the case needs (e.g. a
/// voice service): the case is reported skipped with `reason`, not failed.
pub fn skipped(reason: &str) -> String {
    format!("{SKIP_MARK}{reason}")
}

/// The reason of an error made by [`skipped`], or `None` for a failure.
pub fn skip_reason(error: &str) -> Option<&str> {
    error.strip_prefix(SKIP_MARK)
}

/// Returns early from a case with a formatted failure unless `condition` holds.
#[macro_export]
macro_rules! ensure {
    ($condition:expr, $($message:tt)+) => {
        if !$condition {
            return Err(format!($($message)+));
        }
    };
}
