//! `cargo xtask <task>`: the project's automation, in Rust rather than shell.
//!
//! * `ci`: everything CI checks, after installing what the checks need on a fresh machine
//!   (`setup`): formatting, clippy with `-D warnings`, the test-vector cross-check by the
//!   independent Python implementation, the tests, and the examples.
//! * `bench`: the benchmarks, in a release build; see `bench/`.
//! * `conformance`: our server against the conformance suite, and the negative control.

use std::process::Command;

use anyhow::{Context, Result, bail};

mod conformance;

fn main() -> Result<()> {
    let task = std::env::args().nth(1).unwrap_or_default();
    match task.as_str() {
        "ci" => ci(),
        "bench" => run("cargo", &["run", "--release", "--locked", "-p", "guildhall-bench"]),
        "conformance" => conformance::run(),
        _ => {
            eprintln!(
                "usage: cargo xtask <task>\n\ntasks:\n  ci      fmt, clippy, vector cross-check, tests, examples\n  bench   benchmarks (release build), printed and written to target/bench/results.json"
            );
            bail!("unknown task {task:?}")
        }
    }
}

fn ci() -> Result<()> {
    setup()?;
    run("cargo", &["fmt", "--all", "--check"])?;
    run("cargo", &["clippy", "--workspace", "--all-targets", "--locked", "--", "-D", "warnings"])?;
    run("python3", &["spec/vectors/tools/generate.py", "--check"])?;
    run("cargo", &["test", "--workspace", "--locked"])?;
    // Every example, as a user would run it; each exits non-zero if what it shows fails.
    let examples: [&[&str]; 3] =
        [&["sign_event"], &["gateway_bot", "--", "--demo"], &["two-servers"]];
    for example in examples {
        let mut args = vec!["run", "--locked", "-p", "guildhall-examples", "--example"];
        args.extend_from_slice(example);
        run("cargo", &args)?;
    }
    conformance::run()?;
    Ok(())
}

/// Installs what the checks need beyond the Rust toolchain, so that `cargo xtask ci` alone works
/// on a fresh machine: the Python packages of the independent vector implementation and of the
/// stock-library interoperability checks, and those of the libolm peer that the E2E tests talk
/// to (python-olm installs as a prebuilt wheel; see its requirements file), moto's S3 server for
/// the media tests; and LiveKit's Node
/// SDK, which cross-checks voice tokens and signs webhook fixtures.
fn setup() -> Result<()> {
    // ClamAV's daemon, which the media tests scan uploads with (Debian's package; the tests give
    // it a signature database of their own, since none can be downloaded here).
    apt_install(&[("clamd", "clamav-daemon")])?;
    let requirements = [
        "spec/vectors/tools/requirements.txt",
        "interop/libolm/requirements.txt",
        "interop/s3/requirements.txt",
    ];
    for requirements in requirements {
        run(
            "python3",
            &["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r", requirements],
        )?;
    }
    // LiveKit's Node SDK, at the version the lock file pins, for the voice cross-checks.
    run(
        "npm",
        &["ci", "--prefix", "interop/livekit", "--no-audit", "--no-fund", "--loglevel=error"],
    )?;
    Ok(())
}

/// Installs the Debian packages whose programs are not on `PATH` (`apt-get update` first).
fn apt_install(needed: &[(&str, &str)]) -> Result<()> {
    let on_path = |program: &str| {
        std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
            || ["/usr/sbin", "/sbin"]
                .iter()
                .any(|dir| std::path::Path::new(dir).join(program).is_file())
    };
    let missing: Vec<&str> = needed
        .iter()
        .filter(|(program, _)| !on_path(program))
        .map(|(_, package)| *package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    run("apt-get", &["update", "-qq"])?;
    let mut args = vec!["install", "-y", "-qq", "--no-install-recommends"];
    args.extend(&missing);
    run("apt-get", &args)
}

/// Runs a command from the workspace root, echoing it, failing on a non-zero exit.
pub(crate) fn run(program: &str, args: &[&str]) -> Result<()> {
    eprintln!("$ {program} {}", args.join(" "));
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let status = Command::new(program)
        .args(args)
        .current_dir(&root)
        .status()
        .with_context(|| format!("starting {program}"))?;
    if !status.success() {
        bail!("{program} {} failed with {status}", args.join(" "));
    }
    Ok(())
}
