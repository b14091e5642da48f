//! Case outcomes and the three output formats: one line per case on stdout, JUnit XML, JSONL.

use std::fmt::Write as _;
use std::time::Duration;

/// How a case ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It passed.
    Passed,
    /// It failed, with why.
    Failed(String),
    /// It failed, and `expected-failures.toml` lists it as a known gap.
    ExpectedFailure(String),
    /// It did not run in this profile or filter.
    Skipped(String),
}

/// One case's result.
#[derive(Debug, Clone)]
pub struct CaseReport {
    /// Stable id, `area.name`.
    pub id: String,
    /// The outcome.
    pub outcome: Outcome,
    /// How long it took.
    pub duration: Duration,
}

/// A whole run.
#[derive(Debug, Default)]
pub struct Report {
    /// Every case, in order.
    pub cases: Vec<CaseReport>,
}

impl Report {
    /// (passed, failed, skipped); expected failures count as failed-but-tolerated and are not
    /// in `failed`.
    pub fn counts(&self) -> (usize, usize, usize, usize) {
        let count = |f: fn(&Outcome) -> bool| self.cases.iter().filter(|c| f(&c.outcome)).count();
        (
            count(|o| matches!(o, Outcome::Passed)),
            count(|o| matches!(o, Outcome::Failed(_))),
            count(|o| matches!(o, Outcome::Skipped(_))),
            count(|o| matches!(o, Outcome::ExpectedFailure(_))),
        )
    }

    /// The summary line: `N passed, N failed` (`, N skipped`, `, N expected failures`).
    pub fn summary(&self) -> String {
        let (passed, failed, skipped, expected) = self.counts();
        let mut line = format!("{passed} passed, {failed} failed");
        if skipped > 0 {
            let _ = write!(line, ", {skipped} skipped");
        }
        if expected > 0 {
            let _ = write!(line, ", {expected} expected failures");
        }
        line
    }

    /// One line for a case.
    pub fn line(case: &CaseReport) -> String {
        match &case.outcome {
            Outcome::Passed => format!("PASS {} ({} ms)", case.id, case.duration.as_millis()),
            Outcome::Failed(why) => format!("FAIL {}: {why}", case.id),
            Outcome::ExpectedFailure(why) => format!("XFAIL {}: {why}", case.id),
            Outcome::Skipped(why) => format!("SKIP {}: {why}", case.id),
        }
    }

    /// JSON Lines: one object per case.
    pub fn jsonl(&self) -> String {
        self.cases
            .iter()
            .map(|case| {
                let (status, detail) = match &case.outcome {
                    Outcome::Passed => ("passed", None),
                    Outcome::Failed(why) => ("failed", Some(why.as_str())),
                    Outcome::ExpectedFailure(why) => ("expected_failure", Some(why.as_str())),
                    Outcome::Skipped(why) => ("skipped", Some(why.as_str())),
                };
                serde_json::json!({"id": case.id, "status": status, "detail": detail, "duration_ms": case.duration.as_millis() as u64})
                    .to_string()
            })
            .collect::<Vec<_>>()
            .join("\n")
            + "\n"
    }

    /// JUnit XML, one testcase per case, grouped in one suite.
    pub fn junit(&self) -> String {
        let (_, failed, skipped, _) = self.counts();
        let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let _ = writeln!(
            xml,
            "<testsuite name=\"guildhall-conformance\" tests=\"{}\" failures=\"{failed}\" skipped=\"{skipped}\">",
            self.cases.len()
        );
        for case in &self.cases {
            let (area, name) = case.id.split_once('.').unwrap_or(("", &case.id));
            let _ = write!(
                xml,
                "  <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\"",
                escape(area),
                escape(name),
                case.duration.as_secs_f64()
            );
            match &case.outcome {
                Outcome::Passed => xml.push_str("/>\n"),
                Outcome::Failed(why) => {
                    let _ = write!(
                        xml,
                        ">\n    <failure message=\"{}\"/>\n  </testcase>\n",
                        escape(why)
                    );
                }
                Outcome::ExpectedFailure(why) | Outcome::Skipped(why) => {
                    let _ = write!(
                        xml,
                        ">\n    <skipped message=\"{}\"/>\n  </testcase>\n",
                        escape(why)
                    );
                }
            }
        }
        xml.push_str("</testsuite>\n");
        xml
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        let report = Report {
            cases: vec![
                CaseReport {
                    id: "keys.a".into(),
                    outcome: Outcome::Passed,
                    duration: Duration::ZERO,
                },
                CaseReport {
                    id: "keys.b".into(),
                    outcome: Outcome::Failed("x < y".into()),
                    duration: Duration::ZERO,
                },
                CaseReport {
                    id: "keys.c".into(),
                    outcome: Outcome::Skipped("full".into()),
                    duration: Duration::ZERO,
                },
            ],
        };
        assert_eq!(report.summary(), "1 passed, 1 failed, 1 skipped");
        assert!(report.junit().contains("<failure message=\"x &lt; y\"/>"));
        assert_eq!(report.jsonl().lines().count(), 3);
    }
}
