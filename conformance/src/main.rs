//! `guildhall-conformance`: runs the conformance suite against a server by URL.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use clap::{Parser, ValueEnum};
use guildhall_conformance::report::{CaseReport, Outcome, Report};
use guildhall_conformance::target::Target;
use guildhall_conformance::{Context, Profile, cases, skip_reason};

/// Black-box conformance suite for Guildhall federation servers (`guildhall-fed-v1`).
///
/// The target must serve the federation API and the test-control API (spec chapter 21) and
/// must be able to reach this process's peer servers on 127.0.0.1 over plain HTTP.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Base URL of the server under test, e.g. http://127.0.0.1:8008.
    #[arg(long)]
    target: String,
    /// The server name the target answers to (its `@authority`).
    #[arg(long)]
    server_name: String,
    /// Only run cases whose id contains this text.
    #[arg(long)]
    filter: Option<String>,
    /// Which cases to run.
    #[arg(long, value_enum, default_value = "full")]
    profile: ProfileArg,
    /// Also write a JUnit XML report here.
    #[arg(long)]
    junit: Option<PathBuf>,
    /// Also write one JSON object per case here.
    #[arg(long)]
    jsonl: Option<PathBuf>,
    /// Known gaps: a TOML file with `[expected] "<case id>" = "<reason>"`.
    #[arg(long)]
    expected_failures: Option<PathBuf>,
    /// The target's LiveKit API secret, if known: the `voice` cases then verify the tokens'
    /// HS256 signatures too.
    #[arg(long)]
    voice_api_secret: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ProfileArg {
    Core,
    Full,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let expected = match &cli.expected_failures {
        Some(path) => read_expected(path)?,
        None => BTreeMap::new(),
    };
    let profile = match cli.profile {
        ProfileArg::Core => Profile::Core,
        ProfileArg::Full => Profile::Full,
    };
    let target = Target::new(&cli.target, &cli.server_name);
    let context = Arc::new(Context::new(target, cli.voice_api_secret.clone()).await?);
    let mut report = Report::default();
    for case in cases::all() {
        let filtered_out =
            cli.filter.as_ref().is_some_and(|filter| !case.id.contains(filter.as_str()));
        let outcome_and_time = if filtered_out {
            (Outcome::Skipped("filtered out".into()), std::time::Duration::ZERO)
        } else if profile == Profile::Core && case.profile == Profile::Full {
            (Outcome::Skipped("full profile only".into()), std::time::Duration::ZERO)
        } else {
            let started = Instant::now();
            let outcome = match tokio::time::timeout(
                std::time::Duration::from_secs(60),
                (case.run)(Arc::clone(&context)),
            )
            .await
            {
                Ok(Ok(())) => Outcome::Passed,
                Ok(Err(why)) => match skip_reason(&why) {
                    Some(reason) => Outcome::Skipped(reason.to_owned()),
                    None => Outcome::Failed(why),
                },
                Err(_) => Outcome::Failed("timed out after 60 s".into()),
            };
            let outcome = match (outcome, expected.get(&case.id)) {
                (Outcome::Failed(why), Some(reason)) => {
                    Outcome::ExpectedFailure(format!("{why} (known: {reason})"))
                }
                (outcome, _) => outcome,
            };
            (outcome, started.elapsed())
        };
        let (outcome, duration) = outcome_and_time;
        let case_report = CaseReport { id: case.id.clone(), outcome, duration };
        if !filtered_out {
            println!("{}", Report::line(&case_report));
        }
        report.cases.push(case_report);
    }
    if let Some(path) = &cli.junit {
        std::fs::write(path, report.junit())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &cli.jsonl {
        std::fs::write(path, report.jsonl())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    println!("{}", report.summary());
    let (_, failed, _, _) = report.counts();
    std::process::exit(if failed == 0 { 0 } else { 1 });
}

fn read_expected(path: &PathBuf) -> anyhow::Result<BTreeMap<String, String>> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        #[serde(default)]
        expected: BTreeMap<String, String>,
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let file: File =
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    Ok(file.expected)
}
