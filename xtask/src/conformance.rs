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

/// The case that needs the stand-in RoomService: with one configured it must pass, not skip.
const MODERATION_CASE: &str = "voice.moderation_is_granted_with_mute_members";

/// The cases that must catch a server that skips origin-signature checks.
const GUARDS: &[&str] = &[
    "events.bad_origin_signature",
    "events.missing_origin_signature",
    "events.signature_by_unknown_key_only",
];

/// The full suite against guildhall on SQLite, again on PostgreSQL (a fresh database of
/// `services`), then the negative control.
pub(crate) fn run(services: &super::services::Services) -> Result<()> {
    super::run(
        "cargo",
        &["build", "--locked", "-p", "guildhall-homeserver", "-p", "guildhall-conformance"],
    )?;
    let bin = target_dir().join("debug");
    full_suite(&bin, "SQLite", &[])?;
    let database = services.create_database("guildhall_conformance")?;
    full_suite(&bin, "PostgreSQL", &[("GUILDHALL_DATABASE__URL", &database)])?;
    negative_control(&bin)
}

/// The full suite against one server, with a RoomService stand-in for the voice cases.
fn full_suite(bin: &Path, engine: &str, env: &[(&str, &str)]) -> Result<()> {
    eprintln!("== conformance: the full suite against guildhall on {engine}");
    let voice_url = format!("ws://127.0.0.1:{}", room_service_stand_in()?);
    let mut env = env.to_vec();
    env.push(("GUILDHALL_VOICE__URL", &voice_url));
    let server = Server::start(bin, &env)?;
    let output = Command::new(bin.join("guildhall-conformance"))
        .args(["--target", &server.url(), "--server-name", &server.name(), "--profile", "full"])
        .args(["--expected-failures", "conformance/expected-failures.toml"])
        .args(["--voice-api-secret", VOICE_API_SECRET])
        .stderr(Stdio::inherit())
        .output()
        .context("running guildhall-conformance")?;
    drop(server);
    let stdout = String::from_utf8_lossy(&output.stdout);
    print!("{stdout}");
    if !output.status.success() {
        bail!("guildhall does not pass its own conformance suite");
    }
    // A skip would hide a moderation that never reached the stand-in.
    if !stdout.lines().any(|line| line.starts_with(&format!("PASS {MODERATION_CASE} ("))) {
        bail!("{MODERATION_CASE} did not pass with a RoomService configured");
    }
    Ok(())
}

/// A server that skips origin-signature checks must fail the guard cases.
fn negative_control(bin: &Path) -> Result<()> {
    eprintln!("== conformance: negative control (a server that skips origin-signature checks)");
    let broken = Server::start(
        bin,
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

/// A stand-in for LiveKit's RoomService on a free loopback port, for the moderation case. It
/// checks each call's token as LiveKit does (HS256 with the voice API secret, not expired,
/// `video.roomAdmin` for the room the body names) and answers `401` otherwise; a good call gets
/// `200 {}`, an empty message of the method's answer type (what `RemoveParticipant` answers, and
/// a participant without tracks for `UpdateParticipant`).
fn room_service_stand_in() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            // One request per connection; a broken one only fails the case that sent it.
            let _ = answer_call(stream);
        }
    });
    Ok(port)
}

/// The longest request head line and body the stand-in reads.
const MAX_LINE_BYTES: u64 = 8 << 10;
const MAX_BODY_BYTES: usize = 64 << 10;

/// Reads one HTTP/1.1 Twirp call (head and `Content-Length` body) and answers it.
fn answer_call(mut stream: std::net::TcpStream) -> std::io::Result<()> {
    use std::io::{BufRead, BufReader, Read, Write};
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut length = 0usize;
    let mut authorization = String::new();
    let mut request_line = String::new();
    loop {
        let mut line = String::new();
        if (&mut reader).take(MAX_LINE_BYTES).read_line(&mut line)? == 0 {
            return Ok(());
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if request_line.is_empty() {
            request_line = line.to_owned();
        } else if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            } else if name.eq_ignore_ascii_case("authorization") {
                authorization = value.trim().to_owned();
            }
        }
    }
    let mut body = vec![0; length.min(MAX_BODY_BYTES)];
    reader.read_exact(&mut body)?;
    let room = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|body| body["room"].as_str().map(str::to_owned))
        .unwrap_or_default();
    let answer = if !request_line.starts_with("POST /twirp/livekit.RoomService/") {
        (404, r#"{"code":"bad_route","msg":"not a RoomService method"}"#.to_owned())
    } else {
        match verify_admin(&authorization, &room) {
            Ok(()) => (200, "{}".to_owned()),
            Err(reason) => {
                (401, serde_json::json!({"code": "unauthenticated", "msg": reason}).to_string())
            }
        }
    };
    let (status, body) = answer;
    let reason = match status {
        200 => "OK",
        401 => "Unauthorized",
        _ => "Not Found",
    };
    stream.write_all(
        format!(
            "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n\
             content-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
}

/// Checks a RoomService token as LiveKit does: `Bearer`, HS256 signed with the voice API secret,
/// not expired, granting `video.roomAdmin` for `room`.
fn verify_admin(authorization: &str, room: &str) -> Result<(), String> {
    use base64::Engine as _;
    use hmac::{KeyInit as _, Mac as _};
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let token = authorization.strip_prefix("Bearer ").ok_or("no bearer token")?;
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("not a JWT".to_owned());
    };
    let json = |part: &str| -> Result<serde_json::Value, String> {
        let bytes = b64.decode(part).map_err(|e| e.to_string())?;
        serde_json::from_slice(&bytes).map_err(|e| e.to_string())
    };
    if json(header)?["alg"] != "HS256" {
        return Err("not HS256".to_owned());
    }
    let signature = b64.decode(signature).map_err(|e| e.to_string())?;
    let mut mac = <hmac::Hmac<sha2::Sha256>>::new_from_slice(VOICE_API_SECRET.as_bytes())
        .map_err(|e| e.to_string())?;
    mac.update(format!("{header}.{payload}").as_bytes());
    mac.verify_slice(&signature).map_err(|_| "bad signature".to_owned())?;
    let claims = json(payload)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs();
    if claims["exp"].as_u64().is_none_or(|exp| exp < now) {
        return Err("expired".to_owned());
    }
    if claims["video"]["roomAdmin"] != true {
        return Err("no roomAdmin grant".to_owned());
    }
    if room.is_empty() || claims["video"]["room"] != room {
        return Err(format!("the token is for room {}", claims["video"]["room"]));
    }
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

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use hmac::{KeyInit as _, Mac as _};

    use super::*;

    fn token(secret: &str, claims: &serde_json::Value) -> String {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let signed = format!(
            "{}.{}",
            b64.encode(br#"{"alg":"HS256","typ":"JWT"}"#),
            b64.encode(claims.to_string())
        );
        let mut mac = <hmac::Hmac<sha2::Sha256>>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(signed.as_bytes());
        format!("Bearer {signed}.{}", b64.encode(mac.finalize().into_bytes()))
    }

    #[test]
    fn the_stand_in_refuses_a_token_livekit_would_refuse() {
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let claims = |admin: bool, exp: u64| {
            serde_json::json!({"iss": "conformance", "exp": exp,
                "video": {"roomAdmin": admin, "room": "!g:h/v"}})
        };
        let good = token(VOICE_API_SECRET, &claims(true, now + 60));
        assert_eq!(verify_admin(&good, "!g:h/v"), Ok(()));
        assert!(verify_admin(&good, "!g:h/other").is_err(), "another room");
        assert!(verify_admin(good.trim_start_matches("Bearer "), "!g:h/v").is_err());
        assert!(verify_admin(&token("another secret", &claims(true, now + 60)), "!g:h/v").is_err());
        assert!(
            verify_admin(&token(VOICE_API_SECRET, &claims(false, now + 60)), "!g:h/v").is_err()
        );
        assert!(verify_admin(&token(VOICE_API_SECRET, &claims(true, now - 60)), "!g:h/v").is_err());
        assert!(verify_admin("Bearer a.b.c", "!g:h/v").is_err());
    }
}
