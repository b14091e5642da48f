//! `cargo xtask conformance`: builds the homeserver and the suite, runs the full suite against a
//! fresh server with the test-control API and a voice service configured, then runs it against a
//! deliberately broken server (origin signatures unchecked) and requires the cases that guard
//! that rule to fail.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// The LiveKit API secret of the server under test; the suite is told it to verify tokens.
const VOICE_API_SECRET: &str = "conformance-secret-of-at-least-32-bytes";

/// The cases that must catch a server that skips origin-signature checks.
const GUARDS: &[&str] = &[
    "events.bad_origin_signature",
    "events.missing_origin_signature",
    "events.signature_by_unknown_key_only",
];

pub(crate) fn run() -> Result<()> {
    super::run(
        "cargo",
        &["build", "--locked", "-p", "guildhall-homeserver", "-p", "guildhall-conformance"],
    )?;
    let bin = target_dir().join("debug");

    eprintln!("== conformance: the full suite against guildhall");
    let server = Server::start(&bin, &[])?;
    let status = Command::new(bin.join("guildhall-conformance"))
        .args(["--target", &server.url(), "--server-name", &server.name(), "--profile", "full"])
        .args(["--expected-failures", "conformance/expected-failures.toml"])
        .args(["--voice-api-secret", VOICE_API_SECRET])
        .status()
        .context("running guildhall-conformance")?;
    drop(server);
    if !status.success() {
        bail!("guildhall does not pass its own conformance suite");
    }

    eprintln!("== conformance: negative control (a server that skips origin-signature checks)");
    let broken = Server::start(
        &bin,
        &[("GUILDHALL_FEDERATION__DANGER_SKIP_ORIGIN_SIGNATURE_CHECK", "true")],
    )?;
    let output = Command::new(bin.join("guildhall-conformance"))
        .args(["--target", &broken.url(), "--server-name", &broken.name(), "--filter", "events."])
        .output()
        .context("running guildhall-conformance")?;
    drop(broken);
    let stdout = String::from_utf8_lossy(&output.stdout);
    print!("{stdout}");
    if output.status.success() {
        bail!("the negative control passed: the suite does not notice unchecked origin signatures");
    }
    for guard in GUARDS {
        if !stdout.lines().any(|line| line.starts_with(&format!("FAIL {guard}:"))) {
            bail!("the negative control did not fail {guard}");
        }
    }
    eprintln!(
        "negative control: the suite caught the broken server ({} guard cases failed as they must)",
        GUARDS.len()
    );
    Ok(())
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("target"))
}

/// A `guildhall serve` process with the test-control API on a free loopback port.
struct Server {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Server {
    fn start(bin: &Path, extra: &[(&str, &str)]) -> Result<Self> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let dir = std::env::temp_dir()
            .join(format!("guildhall-conformance-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut command = Command::new(bin.join("guildhall"));
        command
            .arg("--data-dir")
            .arg(&dir)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .env("GUILDHALL_SERVER__DANGER_ENABLE_TEST_CONTROL", "true")
            .env("GUILDHALL_FEDERATION__DANGER_ALLOW_PLAIN_HTTP", "true")
            .env("GUILDHALL_FEDERATION__DANGER_ALLOW_PRIVATE_ADDRESSES", "true")
            .env("GUILDHALL_RATE_LIMITS__PER_IP_PER_SECOND", "100000")
            .env("GUILDHALL_RATE_LIMITS__PER_IP_BURST", "100000")
            .env("GUILDHALL_RATE_LIMITS__CHALLENGES_PER_MINUTE", "100000")
            // The `voice` cases need a voice service configured; tokens are minted without
            // contacting it, so no LiveKit needs to listen there.
            .env("GUILDHALL_VOICE__URL", "ws://127.0.0.1:7880")
            .env("GUILDHALL_VOICE__API_KEY", "conformance")
            .env("GUILDHALL_VOICE__API_SECRET", VOICE_API_SECRET)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (key, value) in extra {
            command.env(key, value);
        }
        let child = command.spawn().context("starting guildhall")?;
        let server = Self { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(server);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("guildhall did not start on port {port}")
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn name(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
