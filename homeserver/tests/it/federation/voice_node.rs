//! Voice tokens and LiveKit webhooks cross-checked by LiveKit's own Node SDK
//! (`livekit-server-sdk`, pinned in `interop/livekit/`): the tokens a host mints for its own and
//! for other servers' members verify there with the right grants, room, identity and expiry; and
//! the webhook requests that SDK signs are the ones the Rust crate's receiver and our
//! `/livekit/webhook` endpoint accept, and only when signed with our secret. The scripts fail, not skip, when the
//! SDK is not installed.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{SystemTime, UNIX_EPOCH};

use livekit_api::access_token::TokenVerifier;
use livekit_api::webhooks::{WebhookError, WebhookReceiver};
use tokio::io::AsyncWriteExt;

use super::voice::{KEY, SECRET, URL, VoiceGuild, voice_guild, with_voice};
use super::*;
use crate::harness::json;

#[tokio::test]
async fn the_node_sdk_accepts_tokens_for_local_and_remote_members() {
    require_livekit_sdk();
    // B stays up (bound) while bob asks through it.
    let VoiceGuild { a, b: _b, owner, guild, lounge, bob } = voice_guild().await;
    let member = a.register("member").await;
    member.join(&owner.invite(&guild.general).await).await;

    let room = format!("{}/{lounge}", guild.id);
    for user in [&member, &bob] {
        let token = raw_token(user, &lounge).await;
        let claims = verify_with_node(SECRET, &token).await.expect("the Node SDK accepts it");
        assert_eq!((claims["sub"].as_str(), claims["iss"].as_str()), (Some(&*user.id), Some(KEY)));
        let video = &claims["video"];
        assert_eq!(video["room"], room.as_str(), "room of {}", user.name);
        for grant in ["roomJoin", "canSubscribe", "canPublish", "canPublishData"] {
            assert_eq!(video[grant], true, "{grant} for {}: {video}", user.name);
        }
        let sources = json!(["microphone", "camera", "screen_share", "screen_share_audio"]);
        assert_eq!(video["canPublishSources"], sources, "sources for {}", user.name);
        let (nbf, exp) =
            (claims["nbf"].as_u64().expect("nbf"), claims["exp"].as_u64().expect("exp"));
        assert!(exp > unix_now() && exp - nbf <= 600, "lifetime {nbf}..{exp}");

        let refused = verify_with_node("another secret", &token).await;
        let reason = refused.expect_err("a token under another secret is refused");
        assert!(reason.contains("signature"), "refused for: {reason}");
    }
}

#[tokio::test]
async fn webhook_fixtures_signed_by_the_node_sdk_are_what_the_rust_receiver_checks() {
    require_livekit_sdk();
    let event = json!({
        "event": "participant_joined",
        "id": "EV_guildhall1",
        "createdAt": "1700000000",
        "room": {"sid": "RM_guildhall1", "name": "guild/lounge"},
        "participant": {"sid": "PA_guildhall1", "identity": "@bob:b.example"},
    });
    let receiver = WebhookReceiver::new(TokenVerifier::with_api_key(KEY, SECRET));

    let (body, authorization) = webhook_fixture(&event, None).await;
    let received = receiver.receive(&body, &authorization).expect("the Rust receiver accepts it");
    assert_eq!(
        (received.event.as_str(), received.id.as_str()),
        ("participant_joined", "EV_guildhall1")
    );
    assert_eq!(received.room.expect("a room").name, "guild/lounge");
    assert_eq!(received.participant.expect("a participant").identity, "@bob:b.example");
    // The signature covers the body: the same header on another body is refused.
    let tampered = body.replace("@bob:b.example", "@eve:b.example");
    assert!(matches!(
        receiver.receive(&tampered, &authorization),
        Err(WebhookError::InvalidSignature)
    ));

    let (body, authorization) = webhook_fixture(&event, Some("not the API secret")).await;
    let refused = receiver.receive(&body, &authorization);
    assert!(matches!(refused, Err(WebhookError::InvalidAuth(_))), "{refused:?}");
}

#[tokio::test]
async fn the_webhook_endpoint_takes_what_the_node_sdk_signs_and_refuses_a_wrong_secret() {
    require_livekit_sdk();
    let a = with_voice(Server::builder()).start().await;
    let event = json!({"event": "room_finished", "id": "EV_guildhall2", "room": {"name": "g/c"}});
    let post = |(body, authorization): (String, String)| {
        reqwest::Client::new()
            .post(format!("{}/livekit/webhook", a.base_url()))
            .header("Authorization", authorization)
            .header("Content-Type", "application/webhook+json")
            .body(body)
            .send()
    };
    let forged = post(webhook_fixture(&event, Some("not the API secret")).await).await;
    assert_eq!(forged.expect("webhook").status(), StatusCode::UNAUTHORIZED);
    let signed = post(webhook_fixture(&event, None).await).await;
    assert_eq!(signed.expect("webhook").status(), StatusCode::NO_CONTENT);
}

/// Fails (the test must not skip) unless the SDK is installed beside the scripts.
fn require_livekit_sdk() {
    let sdk = livekit_dir().join("node_modules/livekit-server-sdk/package.json");
    assert!(sdk.is_file(), "livekit-server-sdk missing: npm ci --prefix interop/livekit");
}

/// Asks for a voice token as `user` over the client API; returns the JWT.
async fn raw_token(user: &User, channel: &str) -> String {
    let (status, body) = user.post_empty(&format!("/channels/{channel}/voice/token")).await;
    assert_eq!(status, StatusCode::OK, "voice token: {body}");
    assert_eq!(body["url"], URL);
    body["token"].as_str().expect("a token").to_owned()
}

/// The claims the SDK's `TokenVerifier` finds in `token` under our API key and `secret`, or the
/// reason it refuses the token.
async fn verify_with_node(secret: &str, token: &str) -> Result<Value, String> {
    let request = json!({"api_key": KEY, "api_secret": secret, "token": token});
    let (ok, stdout, stderr) = node("verify-token.mjs", &request).await;
    if !ok {
        return Err(stderr);
    }
    Ok(serde_json::from_str(&stdout).expect("claims as JSON"))
}

/// A webhook request for `event` as the SDK signs it (with `wrong_secret` instead of ours if
/// given): its body and its `Authorization` header.
async fn webhook_fixture(event: &Value, wrong_secret: Option<&str>) -> (String, String) {
    let mut request = json!({"api_key": KEY, "api_secret": SECRET, "event": event});
    if let Some(secret) = wrong_secret {
        request["wrong_secret"] = json!(secret);
    }
    let (ok, stdout, stderr) = node("webhook-fixture.mjs", &request).await;
    assert!(ok, "webhook-fixture.mjs failed: {stderr}");
    let fixture: Value = serde_json::from_str(&stdout).expect("a fixture as JSON");
    let field = |name: &str| fixture[name].as_str().expect("a string").to_owned();
    (field("body"), field("authorization"))
}

/// Runs `interop/livekit/<script>` with `request` on stdin; returns success, stdout and stderr.
async fn node(script: &str, request: &Value) -> (bool, String, String) {
    let mut child = tokio::process::Command::new("node")
        .arg(livekit_dir().join(script))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start node");
    let mut stdin = child.stdin.take().expect("node's stdin");
    stdin.write_all(request.to_string().as_bytes()).await.expect("write the request");
    drop(stdin);
    let output = child.wait_with_output().await.expect("node runs");
    let text = |bytes: Vec<u8>| String::from_utf8_lossy(&bytes).into_owned();
    (output.status.success(), text(output.stdout), text(output.stderr))
}

fn livekit_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../interop/livekit")
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_secs()
}
