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
    let voice_url = format!("ws://127.0.0.1:{}", room_service_stand_in()?);
    let server = Server::start(&bin, &[("GUILDHALL_VOICE__URL", &voice_url)])?;
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

/// A stand-in for LiveKit's RoomService on a free loopback port, for the moderation case: it
/// answers every request `200 {}`, an empty message of the method's answer type (what
/// `RemoveParticipant` answers, and a participant without tracks for `UpdateParticipant`). It
/// checks nothing: the homeserver's tests check the calls and their tokens as LiveKit does.
fn room_service_stand_in() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            // One request per connection; a broken one only fails the case that sent it.
            let _ = answer_empty(stream);
        }
    });
    Ok(port)
}

/// Reads one HTTP/1.1 request (head and `Content-Length` body) and answers `200 {}`.
fn answer_empty(mut stream: std::net::TcpStream) -> std::io::Result<()> {
    use std::io::{BufRead, BufReader, Read, Write};
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; length.min(1 << 20)];
    reader.read_exact(&mut body)?;
    stream.write_all(
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\
          connection: close\r\n\r\n{}",
    )
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
            // contacting it, so no LiveKit needs to listen there. Moderation calls LiveKit:
            // the full run points this at `room_service_stand_in`.
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
