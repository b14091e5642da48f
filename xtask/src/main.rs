//! `cargo xtask <task>`: the project's automation, in Rust rather than shell.
//!
//! * `ci`: everything CI checks, after installing what the checks need on a fresh machine
//!   (`setup`): formatting, clippy with `-D warnings`, the test-vector cross-check by the
//!   independent Python implementation, the tests, and the examples.
//! * `bench`: the benchmarks, in a release build; see `bench/`.
//! * `conformance`: our server against the conformance suite, and the negative control.
//! * `discord-coverage`: the coverage table of the Discord-compatible API in
//!   `docs/discord-compat.md`, generated from the code (`--check` fails when it is stale).
//! * `services`: throwaway PostgreSQL and Redis servers for running the tests by hand; prints
//!   the `export` lines that point the tests at them and keeps them until Ctrl-C.

use std::process::Command;

use anyhow::{Context, Result, bail};

mod conformance;
mod discord_coverage;
mod services;

fn main() -> Result<()> {
    let task = std::env::args().nth(1).unwrap_or_default();
    match task.as_str() {
        "ci" => ci(),
        "bench" => {
            // The PostgreSQL figures run against a throwaway server, as the tests do.
            apt_install(&services::missing_packages())?;
            let services = services::Services::start()?;
            // `cargo xtask bench memory homeserver` runs only the sections named.
            let sections: Vec<String> = std::env::args().skip(2).collect();
            let mut args = vec!["run", "--release", "--locked", "-p", "guildhall-bench", "--"];
            args.extend(sections.iter().map(String::as_str));
            run_with_env("cargo", &args, &services.env())
        }
        "conformance" => {
            apt_install(&services::missing_packages())?;
            conformance::run(&services::Services::start()?)
        }
        "services" => services::run(),
        "discord-coverage" => {
            let check = std::env::args().nth(2).as_deref() == Some("--check");
            discord_coverage::run(&workspace_root(), check)
        }
        _ => {
            eprintln!(
                "usage: cargo xtask <task>\n\ntasks:\n  ci           fmt, clippy, vector cross-check, tests, examples\n  bench        benchmarks (release build), printed and written to target/bench/results.json;\n               `bench memory homeserver …` runs only those sections\n  conformance  the conformance suite against our server (SQLite, PostgreSQL), and the negative control\n  services     PostgreSQL and Redis for the tests until Ctrl-C, with their `export` lines\n  discord-coverage  regenerate the Discord API coverage table (--check: fail if stale)"
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
    discord_coverage::run(&workspace_root(), true)?;
    // PostgreSQL and Redis for the tests, up to the end of the run: the guard stops them on
    // every return, a failure's included.
    let services = services::Services::start()?;
    let env = services.env();
    run_with_env("cargo", &["test", "--workspace", "--locked"], &env)?;
    // The integration suite again with every server on PostgreSQL (tests about the SQLite
    // file itself keep it), so that both engines serve everything a client and a peer do.
    let mut on_postgres = env.to_vec();
    on_postgres.push(("GUILDHALL_TEST_ENGINE", "postgres".to_owned()));
    run_with_env(
        "cargo",
        &["test", "--locked", "-p", "guildhall-homeserver", "--test", "it"],
        &on_postgres,
    )?;
    // Every example, as a user would run it; each exits non-zero if what it shows fails.
    let examples: [&[&str]; 3] =
        [&["sign_event"], &["gateway_bot", "--", "--demo"], &["two-servers"]];
    for example in examples {
        let mut args = vec!["run", "--locked", "-p", "guildhall-examples", "--example"];
        args.extend_from_slice(example);
        run_with_env("cargo", &args, &env)?;
    }
    conformance::run(&services)?;
    Ok(())
}

/// Installs what the checks need beyond the Rust toolchain, so that `cargo xtask ci` alone works
/// on a fresh machine: the Python packages of the independent vector implementation and of the
/// stock-library interoperability checks, and those of the libolm peer that the E2E tests talk
/// to (python-olm installs as a prebuilt wheel; see its requirements file), moto's S3 server for
/// the media tests, discord.py for the bot API's tests; and LiveKit's Node
/// SDK, which cross-checks voice tokens and signs webhook fixtures.
fn setup() -> Result<()> {
    // ClamAV's daemon, which the media tests scan uploads with (Debian's package; the tests give
    // it a signature database of their own, since none can be downloaded here), and PostgreSQL
    // and Redis, which the tests of the scale-out engines run against (see `services`).
    let mut missing = services::missing_packages();
    if !on_path("clamd") {
        missing.push("clamav-daemon");
    }
    // Debian's Chromium, which the web client's tests drive headless over the DevTools
    // protocol (no browser download at install time), and an emoji font for its screenshots.
    if !on_path("chromium") {
        missing.extend(["chromium", "fonts-noto-color-emoji"]);
    }
    apt_install(&missing)?;
    let requirements = [
        "spec/vectors/tools/requirements.txt",
        "interop/libolm/requirements.txt",
        "interop/s3/requirements.txt",
        "interop/discordpy/requirements.txt",
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

/// Installs Debian packages (`apt-get update` first), if any are given.
fn apt_install(packages: &[&str]) -> Result<()> {
    if packages.is_empty() {
        return Ok(());
    }
    run("apt-get", &["update", "-qq"])?;
    let mut args = vec!["install", "-y", "-qq", "--no-install-recommends"];
    args.extend(packages);
    run("apt-get", &args)
}

/// Whether a program is on `PATH`, or in the `sbin` directories that a non-login root shell
/// may lack.
fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
        || ["/usr/sbin", "/sbin"]
            .iter()
            .any(|dir| std::path::Path::new(dir).join(program).is_file())
}

/// Runs a command from the workspace root, echoing it, failing on a non-zero exit.
pub(crate) fn run(program: &str, args: &[&str]) -> Result<()> {
    run_with_env(program, args, &[])
}

/// [`run`], with extra environment variables.
fn run_with_env(program: &str, args: &[&str], env: &[(&str, String)]) -> Result<()> {
    eprintln!("$ {program} {}", args.join(" "));
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let status = Command::new(program)
        .args(args)
        .envs(env.iter().map(|(name, value)| (name, value)))
        .current_dir(&root)
        .status()
        .with_context(|| format!("starting {program}"))?;
    if !status.success() {
        bail!("{program} {} failed with {status}", args.join(" "));
    }
    Ok(())
}

/// The workspace's root directory.
fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}
