//! Voice moderation and enforcement (spec 18.3, 18.5): the host calls its LiveKit's RoomService
//! over Twirp. No LiveKit server runs here, so a fake one on loopback plays its part: it checks
//! each call's token as LiveKit does (HS256 with the API secret, not expired, `roomAdmin` for
//! the room the body names), records the method and JSON body, and answers with messages of
//! LiveKit's shapes, or `401` for a bad token.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use livekit_api::access_token::{AccessToken, TokenVerifier, VideoGrants};

use super::voice::{KEY, SECRET, VoiceGuild, token, voice_guild_at};
use super::*;
use crate::harness::{Encoding, Gateway, assert_error, json};

const CONNECT: u64 = 1 << 20;
const SPEAK: u64 = 1 << 21;
const MUTE_MEMBERS: u64 = 1 << 22;
const MOVE_MEMBERS: u64 = 1 << 24;

/// One RoomService call the fake accepted.
#[derive(Debug, Clone)]
struct Call {
    method: String,
    body: Value,
}

/// A LiveKit RoomService on loopback.
#[derive(Clone)]
struct FakeLiveKit {
    url: String,
    calls: Arc<Mutex<Vec<Call>>>,
    /// How long each `UpdateParticipant` takes to answer.
    slow: Arc<Mutex<Duration>>,
    /// How many of the next `UpdateParticipant` calls are taken but answered with a body that is
    /// not a `ParticipantInfo` (a change LiveKit may have made).
    garbled: Arc<Mutex<usize>>,
    /// How many of the next `RemoveParticipant` calls fail with `500 internal`.
    failing_removals: Arc<Mutex<usize>>,
}

impl FakeLiveKit {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("ws://{}", listener.local_addr().expect("address"));
        let fake = Self {
            url,
            calls: Arc::default(),
            slow: Arc::default(),
            garbled: Arc::default(),
            failing_removals: Arc::default(),
        };
        let app = axum::Router::new()
            .route("/twirp/livekit.RoomService/{method}", axum::routing::post(twirp))
            .with_state(fake.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        fake
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().expect("calls").clone()
    }

    /// Waits until a call of `method` for `identity` arrived; returns its body.
    async fn expect(&self, method: &str, identity: &str) -> Value {
        let calls = eventually(
            Duration::from_secs(20),
            || async { self.calls() },
            |calls| calls.iter().any(|c| c.method == method && c.body["identity"] == identity),
        )
        .await;
        let found = calls.iter().find(|c| c.method == method && c.body["identity"] == identity);
        let seen: Vec<&str> = calls.iter().map(|c| c.method.as_str()).take(8).collect();
        found
            .unwrap_or_else(|| {
                panic!("no {method} for {identity}; {} calls: {seen:?}", calls.len())
            })
            .body
            .clone()
    }
}

/// Checks a RoomService call's token as LiveKit does: signed HS256 with the secret by the API
/// key, within its lifetime, granting `roomAdmin` for `room`.
fn verify_admin(authorization: &str, room: &str) -> Result<(), String> {
    let token = authorization.strip_prefix("Bearer ").ok_or("no bearer token")?;
    let claims =
        TokenVerifier::with_api_key(KEY, SECRET).verify(token).map_err(|e| e.to_string())?;
    if !claims.video.room_admin {
        return Err("no roomAdmin grant".to_owned());
    }
    if claims.video.room != room {
        return Err(format!("the token is for room {:?}", claims.video.room));
    }
    Ok(())
}

async fn twirp(
    State(fake): State<FakeLiveKit>,
    Path(method): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    use axum::http::StatusCode as Status;
    let error = |status: Status, code: &str, msg: String| {
        (status, axum::Json(json!({"code": code, "msg": msg}))).into_response()
    };
    let is_json = headers.get("content-type").is_some_and(|v| v == "application/json");
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return error(Status::BAD_REQUEST, "malformed", "not JSON".to_owned());
    };
    if !is_json {
        return error(Status::BAD_REQUEST, "malformed", "not application/json".to_owned());
    }
    let authorization =
        headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default();
    if let Err(reason) = verify_admin(authorization, body["room"].as_str().unwrap_or_default()) {
        return error(Status::UNAUTHORIZED, "unauthenticated", reason);
    }
    fake.calls.lock().expect("calls").push(Call { method: method.clone(), body: body.clone() });
    let identity = body["identity"].clone();
    if method == "UpdateParticipant" {
        let slow = *fake.slow.lock().expect("slow");
        tokio::time::sleep(slow).await;
        let mut garbled = fake.garbled.lock().expect("garbled");
        if *garbled > 0 {
            *garbled -= 1;
            return (Status::OK, "this is not a ParticipantInfo").into_response();
        }
    }
    if method == "RemoveParticipant" {
        let mut failing = fake.failing_removals.lock().expect("failing");
        if *failing > 0 {
            *failing -= 1;
            return error(Status::INTERNAL_SERVER_ERROR, "internal", "try again".to_owned());
        }
    }
    let answer = match method.as_str() {
        "RemoveParticipant" => json!({}),
        // A participant publishing a microphone and a camera.
        "UpdateParticipant" => json!({
            "sid": "PA_1", "identity": identity, "state": "ACTIVE", "permission": body["permission"],
            "tracks": [
                {"sid": "TR_mic", "type": "AUDIO", "source": "MICROPHONE", "muted": false},
                {"sid": "TR_cam", "type": "VIDEO", "source": "CAMERA"},
            ],
        }),
        "MutePublishedTrack" => json!({"track": {"sid": body["trackSid"], "type": "AUDIO",
            "source": "MICROPHONE", "muted": body["muted"]}}),
        _ => return error(Status::NOT_FOUND, "bad_route", format!("no method {method}")),
    };
    axum::Json(answer).into_response()
}

/// The fake refuses what LiveKit would refuse: a token with another secret, a tampered one, one
/// without `roomAdmin`, one for another room, an expired one.
#[test]
fn the_fake_livekit_refuses_tokens_livekit_would_refuse() {
    let room = "!g:a.example/lounge";
    let admin = |secret: &str, grants: VideoGrants, ttl: u64| {
        AccessToken::with_api_key(KEY, secret)
            .with_ttl(Duration::from_secs(ttl))
            .with_grants(grants)
            .to_jwt()
            .expect("token")
    };
    let grants = || VideoGrants { room_admin: true, room: room.to_owned(), ..Default::default() };
    let good = admin(SECRET, grants(), 60);
    assert_eq!(verify_admin(&format!("Bearer {good}"), room), Ok(()));
    assert!(verify_admin(&good, room).is_err(), "a token without Bearer");
    assert!(
        verify_admin(&format!("Bearer {}", admin("another secret", grants(), 60)), room).is_err()
    );
    // One byte of the payload changed: the signature no longer covers it.
    let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
    let flipped = if parts[1].ends_with('A') { 'B' } else { 'A' };
    parts[1].pop();
    parts[1].push(flipped);
    assert!(verify_admin(&format!("Bearer {}", parts.join(".")), room).is_err());
    let not_admin = VideoGrants { room_admin: false, ..grants() };
    assert!(verify_admin(&format!("Bearer {}", admin(SECRET, not_admin, 60)), room).is_err());
    assert!(verify_admin(&format!("Bearer {good}"), "!g:a.example/other").is_err());
    // Expired a minute ago, beyond jsonwebtoken's default leeway of 60 s.
    let claims = json!({"iss": KEY, "exp": unix_now() - 120, "nbf": unix_now() - 300,
        "video": {"roomAdmin": true, "room": room}});
    let expired = jsonwebtoken_hs256(&claims);
    assert!(verify_admin(&format!("Bearer {expired}"), room).is_err());
    // The same hand-made token, still valid, passes: it is the expiry that failed above.
    let fresh = json!({"iss": KEY, "exp": unix_now() + 60, "nbf": unix_now() - 300,
        "video": {"roomAdmin": true, "room": room}});
    assert_eq!(verify_admin(&format!("Bearer {}", jsonwebtoken_hs256(&fresh)), room), Ok(()));
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs()
}

/// An HS256 JWT of `claims` signed with the test secret, made by hand (HMAC-SHA256 over
/// `header.payload`), so that an expired token can be made at all.
fn jsonwebtoken_hs256(claims: &Value) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let input = format!(
        "{}.{}",
        b64(br#"{"alg":"HS256","typ":"JWT"}"#),
        b64(claims.to_string().as_bytes())
    );
    // HMAC (RFC 2104) on SHA-256, block size 64.
    let mut key = SECRET.as_bytes().to_vec();
    key.resize(64, 0);
    let pad = |byte: u8| key.iter().map(|k| k ^ byte).collect::<Vec<u8>>();
    let inner = sha2::Sha256::new().chain_update(pad(0x36)).chain_update(&input).finalize();
    let outer = sha2::Sha256::new().chain_update(pad(0x5c)).chain_update(inner).finalize();
    format!("{input}.{}", b64(&outer))
}

/// The guild of [`voice_guild_at`] with A's LiveKit the fake, and bob (from B) in the lounge.
async fn bob_in_voice(fake: &FakeLiveKit) -> VoiceGuild {
    let guild = voice_guild_at(&fake.url).await;
    let path = format!("/guilds/{}/voice-state", guild.guild.id);
    let joined = json!({"channel_id": guild.lounge, "self_stream": true});
    assert_eq!(guild.bob.put(&path, joined).await.0, StatusCode::NO_CONTENT);
    // The host hears of it (through B) before a moderator can act on it.
    in_voice(&guild.owner, &guild.guild.id, &guild.bob.id, |state| state["self_stream"] == true)
        .await;
    guild
}

/// Waits until `user`'s server lists `who` in voice with a state that satisfies `check`.
async fn in_voice(user: &User, guild: &str, who: &str, check: impl Fn(&Value) -> bool) -> Value {
    let path = format!("/guilds/{guild}/voice-states");
    let find = |listed: &Value| {
        listed["voice_states"]
            .as_array()
            .and_then(|states| states.iter().find(|s| s["user_id"] == who).cloned())
    };
    let listed = eventually(
        Duration::from_secs(20),
        || async { user.get(&path).await.1 },
        |listed| find(listed).is_some_and(|state| check(&state)),
    )
    .await;
    let state = find(&listed).unwrap_or(Value::Null);
    assert!(check(&state), "{who}'s voice state on {}: {state}", user.name);
    state
}

#[tokio::test]
async fn a_local_moderator_server_mutes_a_remote_member_and_livekit_enforces_it() {
    let fake = FakeLiveKit::start().await;
    let VoiceGuild { a: _a, b, owner, guild, lounge, bob } = bob_in_voice(&fake).await;
    let room = format!("{}/{lounge}", guild.id);
    let (mut bobs, _) = Gateway::identified(&b, &bob.token, Encoding::Json).await;

    let path = format!("/guilds/{}/voice-states/{}", guild.id, bob.id);
    let (status, muted) = owner.patch(&path, json!({"mute": true})).await;
    assert_eq!(status, StatusCode::OK, "{muted}");
    assert_eq!((muted["mute"].clone(), muted["deaf"].clone()), (json!(true), json!(false)));
    assert_eq!(muted["channel_id"], lounge.as_str());

    // The grant loses the microphone; the published microphone is muted.
    let update = fake.expect("UpdateParticipant", &bob.id).await;
    assert_eq!(
        update,
        json!({"room": room, "identity": bob.id, "permission": {
            "canSubscribe": true, "canPublish": true, "canPublishData": true,
            "canPublishSources": ["CAMERA", "SCREEN_SHARE", "SCREEN_SHARE_AUDIO"]}})
    );
    let mute = fake.expect("MutePublishedTrack", &bob.id).await;
    assert_eq!(
        mute,
        json!({"room": room, "identity": bob.id, "trackSid": "TR_mic", "muted": true})
    );
    let methods: Vec<String> = fake.calls().into_iter().map(|c| c.method).collect();
    assert_eq!(methods, ["UpdateParticipant", "MutePublishedTrack"], "only the microphone");

    // Bob's own server tells him; his own report cannot lift the server mute.
    bobs.expect_dispatch("VOICE_STATE_UPDATE", |d| {
        d["user_id"] == bob.id.as_str() && d["mute"] == true
    })
    .await;
    let own = json!({"channel_id": lounge, "self_mute": false});
    assert_eq!(
        bob.put(&format!("/guilds/{}/voice-state", guild.id), own).await.0,
        StatusCode::NO_CONTENT
    );
    in_voice(&owner, &guild.id, &bob.id, |s| s["mute"] == true && s["self_stream"] == false).await;

    // His next token has no microphone either.
    let claims = token(&bob, &lounge).await;
    assert_eq!(claims.video.can_publish_sources, ["camera", "screen_share", "screen_share_audio"]);

    // Unmuted: the grant has the microphone again.
    let (status, unmuted) = owner.patch(&path, json!({"mute": false})).await;
    assert_eq!((status, unmuted["mute"].clone()), (StatusCode::OK, json!(false)), "{unmuted}");
    let claims = token(&bob, &lounge).await;
    assert!(claims.video.can_publish_sources.iter().any(|s| s == "microphone"));
    bobs.expect_dispatch("VOICE_STATE_UPDATE", |d| {
        d["user_id"] == bob.id.as_str() && d["mute"] == false
    })
    .await;

    // Deafened: LiveKit is told before the answer, and the next token subscribes to nothing.
    let (status, deafened) = owner.patch(&path, json!({"deaf": true})).await;
    assert_eq!((status, deafened["deaf"].clone()), (StatusCode::OK, json!(true)), "{deafened}");
    let last = fake.calls().pop().expect("a call");
    assert_eq!(last.method, "UpdateParticipant");
    assert_eq!(last.body["permission"]["canSubscribe"], false, "{:?}", last.body);
    assert!(!token(&bob, &lounge).await.video.can_subscribe());
}

#[tokio::test]
async fn a_moderator_on_another_server_disconnects_a_user_only_with_move_members() {
    let fake = FakeLiveKit::start().await;
    let VoiceGuild { a, b, owner, guild, lounge, bob } = voice_guild_at(&fake.url).await;
    let carol = a.register("carol").await;
    carol.join(&owner.invite(&guild.general).await).await;
    let state_path = format!("/guilds/{}/voice-state", guild.id);
    assert_eq!(
        carol.put(&state_path, json!({"channel_id": lounge})).await.0,
        StatusCode::NO_CONTENT
    );
    in_voice(&bob, &guild.id, &carol.id, |_| true).await;

    // Without MOVE_MEMBERS (or MUTE_MEMBERS), from B: refused by the host, LiveKit untouched.
    let path = format!("/guilds/{}/voice-states/{}", guild.id, carol.id);
    let refused = bob.patch(&path, json!({"channel_id": null})).await;
    assert_error(&refused, StatusCode::FORBIDDEN, "missing_permission");
    let refused = bob.patch(&path, json!({"mute": true})).await;
    assert_error(&refused, StatusCode::FORBIDDEN, "missing_permission");
    // A local member without it likewise.
    let dave = a.register("dave").await;
    dave.join(&owner.invite(&guild.general).await).await;
    assert_error(
        &dave.patch(&path, json!({"mute": true})).await,
        StatusCode::FORBIDDEN,
        "missing_permission",
    );
    // Moving is not supported; someone not in voice cannot be disconnected.
    let moved = owner.patch(&path, json!({"channel_id": lounge})).await;
    assert_error(&moved, StatusCode::BAD_REQUEST, "bad_request");
    let absent = format!("/guilds/{}/voice-states/{}", guild.id, dave.id);
    assert_error(
        &owner.patch(&absent, json!({"channel_id": null})).await,
        StatusCode::BAD_REQUEST,
        "not_in_voice",
    );
    // Over federation, B acts only for its own members, and only at the guild's host.
    let peer = super::security::Peer::of(&b);
    let moderate = format!("/_guildhall/v1/guilds/{}/voice/moderate", guild.id);
    let ask = |moderator: &str| json!({"moderator": moderator, "user_id": carol.id, "mute": true});
    let forged = peer.signed(&a, "POST", &moderate, Some(&ask(&owner.id)));
    let answer = peer.send("POST", &forged).await;
    assert_error(&answer, StatusCode::FORBIDDEN, "sender_not_from_origin");
    let stranger = peer.signed(&a, "POST", &moderate, Some(&ask(&b.user_id("stranger"))));
    assert_error(&peer.send("POST", &stranger).await, StatusCode::FORBIDDEN, "not_member");
    let elsewhere = peer.signed(&b, "POST", &moderate, Some(&ask(&bob.id)));
    assert_error(&peer.send("POST", &elsewhere).await, StatusCode::NOT_FOUND, "unknown_guild");
    assert!(fake.calls().is_empty(), "no LiveKit call for refused requests: {:?}", fake.calls());

    // MUTE_MEMBERS does not disconnect.
    let muters = owner.create_role(&guild.id, "muters", &MUTE_MEMBERS.to_string(), 1).await;
    owner.give_role(&guild.id, &bob.id, &muters).await;
    let refused = bob.patch(&path, json!({"channel_id": null})).await;
    assert_error(&refused, StatusCode::FORBIDDEN, "missing_permission");
    assert!(fake.calls().is_empty(), "no LiveKit call for refused requests: {:?}", fake.calls());

    // With MOVE_MEMBERS, bob disconnects carol through the host.
    let movers = owner.create_role(&guild.id, "movers", &MOVE_MEMBERS.to_string(), 2).await;
    owner.give_role(&guild.id, &bob.id, &movers).await;
    let (status, left) = bob.patch(&path, json!({"channel_id": null})).await;
    assert_eq!(status, StatusCode::OK, "{left}");
    assert!(left["channel_id"].is_null(), "{left}");
    let removed = fake.expect("RemoveParticipant", &carol.id).await;
    assert_eq!(removed, json!({"room": format!("{}/{lounge}", guild.id), "identity": carol.id}));
    let listed = owner.get(&format!("/guilds/{}/voice-states", guild.id)).await.1;
    assert_eq!(listed["voice_states"].as_array().map(Vec::len), Some(0), "{listed}");
}

#[tokio::test]
async fn the_host_removes_users_who_may_no_longer_connect_and_narrows_who_may_speak() {
    let fake = FakeLiveKit::start().await;
    let VoiceGuild { a, b: _b, owner, guild, lounge, bob } = bob_in_voice(&fake).await;
    let (mut owners, _) = Gateway::identified(&a, &owner.token, Encoding::Json).await;
    let carol = a.register("carol").await;
    carol.join(&owner.invite(&guild.general).await).await;
    // Carol may also connect through a role of hers, whatever @everyone may.
    let voice_role = owner.create_role(&guild.id, "voice", "0", 1).await;
    owner.give_role(&guild.id, &carol.id, &voice_role).await;
    let role_overwrite = json!({"kind": "role", "allow": CONNECT.to_string()});
    let role_path = format!("/channels/{lounge}/permissions/{voice_role}");
    assert_eq!(owner.put(&role_path, role_overwrite).await.0, StatusCode::OK);
    let state_path = format!("/guilds/{}/voice-state", guild.id);
    assert_eq!(
        carol.put(&state_path, json!({"channel_id": lounge})).await.0,
        StatusCode::NO_CONTENT
    );
    assert!(fake.calls().is_empty(), "nobody lost anything yet: {:?}", fake.calls());

    // SPEAK taken from everyone in the lounge: both lose the microphone in LiveKit.
    let overwrites = format!("/channels/{lounge}/permissions/everyone");
    let quiet = json!({"kind": "role", "deny": SPEAK.to_string()});
    assert_eq!(owner.put(&overwrites, quiet).await.0, StatusCode::OK);
    for user in [&bob.id, &carol.id] {
        let update = fake.expect("UpdateParticipant", user).await;
        assert_eq!(
            update["permission"]["canPublishSources"],
            json!(["CAMERA", "SCREEN_SHARE", "SCREEN_SHARE_AUDIO"]),
            "{update}"
        );
    }

    // Bob is banned: out of the room and out of voice, everywhere.
    let (status, body) =
        owner.put(&format!("/guilds/{}/bans/{}", guild.id, bob.id), json!({})).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "ban: {body}");
    fake.expect("RemoveParticipant", &bob.id).await;
    owners
        .expect_dispatch("VOICE_STATE_UPDATE", |d| {
            d["user_id"] == bob.id.as_str() && d["channel_id"].is_null()
        })
        .await;

    // CONNECT taken from everyone in the lounge: carol still connects through her role; when the
    // role is taken from her, she is removed too.
    let closed = json!({"kind": "role", "deny": (SPEAK | CONNECT).to_string()});
    assert_eq!(owner.put(&overwrites, closed).await.0, StatusCode::OK);
    let roles = format!("/guilds/{}/members/{}/roles/{voice_role}", guild.id, carol.id);
    assert_eq!(owner.delete(&roles).await.0, StatusCode::NO_CONTENT);
    fake.expect("RemoveParticipant", &carol.id).await;
    owners
        .expect_dispatch("VOICE_STATE_UPDATE", |d| {
            d["user_id"] == carol.id.as_str() && d["channel_id"].is_null()
        })
        .await;
    let removed = fake.calls().iter().filter(|c| c.method == "RemoveParticipant").count();
    assert_eq!(removed, 2, "bob and carol, once each: {:?}", fake.calls());

    // The owner joins, and deletes the lounge: out of its room too.
    let joined = json!({"channel_id": lounge});
    assert_eq!(owner.put(&state_path, joined).await.0, StatusCode::NO_CONTENT);
    assert_eq!(owner.delete(&format!("/channels/{lounge}")).await.0, StatusCode::NO_CONTENT);
    fake.expect("RemoveParticipant", &owner.id).await;
    let listed = owner.get(&format!("/guilds/{}/voice-states", guild.id)).await.1;
    assert_eq!(listed["voice_states"].as_array().map(Vec::len), Some(0), "{listed}");
}

#[tokio::test]
async fn an_unreachable_livekit_is_a_clear_error() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("address")
        .port();
    let VoiceGuild { a: _a, b: _b, owner, guild, lounge, bob } =
        voice_guild_at(&format!("ws://127.0.0.1:{port}")).await;
    let state_path = format!("/guilds/{}/voice-state", guild.id);
    assert_eq!(bob.put(&state_path, json!({"channel_id": lounge})).await.0, StatusCode::NO_CONTENT);
    in_voice(&owner, &guild.id, &bob.id, |_| true).await;

    let path = format!("/guilds/{}/voice-states/{}", guild.id, bob.id);
    let failed = owner.patch(&path, json!({"mute": true})).await;
    assert_error(&failed, StatusCode::BAD_GATEWAY, "voice_service_failed");
    let message = failed.1["message"].as_str().unwrap_or_default();
    assert!(message.contains("could not be reached"), "{}", failed.1);
    // Nothing changed, and the server still answers.
    let state = in_voice(&owner, &guild.id, &bob.id, |_| true).await;
    assert_eq!(state["mute"], false, "{state}");
}

#[tokio::test]
async fn livekit_refusing_the_hosts_token_is_a_clear_error() {
    // The host signs with another secret than its LiveKit knows: every call is refused `401`.
    let fake = FakeLiveKit::start().await;
    let a = super::voice::with_voice_at(federating_builder(), &fake.url)
        .env("GUILDHALL_VOICE__API_SECRET", "not the secret LiveKit knows")
        .start()
        .await;
    let owner = a.register("owner").await;
    let guild = owner.create_guild("g").await;
    let lounge = super::voice::voice_channel(&owner, &guild.id, "lounge").await;
    let state_path = format!("/guilds/{}/voice-state", guild.id);
    let joined = json!({"channel_id": lounge});
    assert_eq!(owner.put(&state_path, joined).await.0, StatusCode::NO_CONTENT);

    let path = format!("/guilds/{}/voice-states/{}", guild.id, owner.id);
    let failed = owner.patch(&path, json!({"deaf": true})).await;
    assert_error(&failed, StatusCode::BAD_GATEWAY, "voice_service_failed");
    let message = failed.1["message"].as_str().unwrap_or_default();
    assert!(message.contains("refused"), "LiveKit answered, and refused: {}", failed.1);
    assert!(fake.calls().is_empty(), "the fake took a call: {:?}", fake.calls());
    let state = in_voice(&owner, &guild.id, &owner.id, |_| true).await;
    assert_eq!(state["deaf"], false, "{state}");
}

/// Two moderators act on bob at once, one muting, one deafening, while LiveKit is slow: both
/// hold, in the record, in the state and in the last grant LiveKit was given.
#[tokio::test]
async fn two_moderators_at_once_do_not_undo_each_other() {
    let fake = FakeLiveKit::start().await;
    let VoiceGuild { a: _a, b: _b, owner, guild, lounge: _, bob } = bob_in_voice(&fake).await;
    *fake.slow.lock().expect("slow") = Duration::from_millis(400);
    let path = format!("/guilds/{}/voice-states/{}", guild.id, bob.id);
    let (muted, deafened) = tokio::join!(
        owner.patch(&path, json!({"mute": true})),
        owner.patch(&path, json!({"deaf": true}))
    );
    assert_eq!((muted.0, deafened.0), (StatusCode::OK, StatusCode::OK), "{muted:?} {deafened:?}");
    let state = in_voice(&owner, &guild.id, &bob.id, |_| true).await;
    assert_eq!(
        (state["mute"].clone(), state["deaf"].clone()),
        (json!(true), json!(true)),
        "{state}"
    );
    let updates: Vec<Value> = fake
        .calls()
        .into_iter()
        .filter(|c| c.method == "UpdateParticipant")
        .map(|c| c.body["permission"].clone())
        .collect();
    let last = updates.last().cloned().unwrap_or(Value::Null);
    assert_eq!(last["canSubscribe"], false, "{} updates: {updates:?}", updates.len());
    assert!(
        !last["canPublishSources"].as_array().into_iter().flatten().any(|s| s == "MICROPHONE"),
        "{updates:?}"
    );
}

/// LiveKit takes a mute but its answer cannot be read: the moderator gets `502`, the record is
/// unchanged, and the host gives LiveKit the previous grant back, so that both agree.
#[tokio::test]
async fn a_change_livekit_may_have_made_is_taken_back_when_it_fails() {
    let fake = FakeLiveKit::start().await;
    let VoiceGuild { a: _a, b: _b, owner, guild, lounge: _, bob } = bob_in_voice(&fake).await;
    *fake.garbled.lock().expect("garbled") = 1;
    let path = format!("/guilds/{}/voice-states/{}", guild.id, bob.id);
    let failed = owner.patch(&path, json!({"mute": true})).await;
    assert_error(&failed, StatusCode::BAD_GATEWAY, "voice_service_failed");
    let updates: Vec<Value> = fake
        .calls()
        .into_iter()
        .filter(|c| c.method == "UpdateParticipant")
        .map(|c| c.body["permission"]["canPublishSources"].clone())
        .collect();
    assert_eq!(
        updates,
        [
            json!(["CAMERA", "SCREEN_SHARE", "SCREEN_SHARE_AUDIO"]),
            json!(["MICROPHONE", "CAMERA", "SCREEN_SHARE", "SCREEN_SHARE_AUDIO"])
        ],
        "the mute, then the previous grant again"
    );
    let state = in_voice(&owner, &guild.id, &bob.id, |_| true).await;
    assert_eq!(state["mute"], false, "{state}");
}

/// Sends `server` a webhook its LiveKit signed: `event` for `identity` in `room`.
async fn livekit_says(server: &Server, event: &str, room: &str, identity: &str) {
    let body =
        json!({"event": event, "room": {"name": room}, "participant": {"identity": identity}})
            .to_string();
    let answer = reqwest::Client::new()
        .post(format!("{}/livekit/webhook", server.base_url()))
        .header("Authorization", super::voice::livekit_webhook(&body, SECRET))
        .header("Content-Type", "application/webhook+json")
        .body(body)
        .send()
        .await
        .expect("webhook");
    assert_eq!(answer.status(), StatusCode::NO_CONTENT, "{event}");
}

/// What LiveKit reports counts, not what a client claims: a user who joined is given the grant
/// the host gives now; one whose client says they left voice is still muted and removed; a
/// token kept from before a ban cannot bring them back.
#[tokio::test]
async fn the_host_acts_on_who_livekit_reports_in_a_room_whatever_their_client_says() {
    let fake = FakeLiveKit::start().await;
    let VoiceGuild { a, b: _b, owner, guild, lounge, bob } = bob_in_voice(&fake).await;
    let room = format!("{}/{lounge}", guild.id);
    let count = |method: &str| {
        fake.calls().iter().filter(|c| c.method == method && c.body["identity"] == bob.id).count()
    };

    // LiveKit reports bob joined: the host gives him the grant it gives now.
    livekit_says(&a, "participant_joined", &room, &bob.id).await;
    let update = fake.expect("UpdateParticipant", &bob.id).await;
    assert_eq!(update["room"], room.as_str(), "{update}");
    assert_eq!(update["permission"]["canPublishSources"][0], "MICROPHONE", "{update}");

    // His client says he left; LiveKit does not. A moderator still reaches him.
    let state_path = format!("/guilds/{}/voice-state", guild.id);
    assert_eq!(bob.put(&state_path, json!({"channel_id": null})).await.0, StatusCode::NO_CONTENT);
    let listed_path = format!("/guilds/{}/voice-states", guild.id);
    eventually(
        Duration::from_secs(20),
        || async { owner.get(&listed_path).await.1 },
        |listed| listed["voice_states"].as_array().is_some_and(Vec::is_empty),
    )
    .await;
    let path = format!("/guilds/{}/voice-states/{}", guild.id, bob.id);
    let (status, muted) = owner.patch(&path, json!({"mute": true})).await;
    assert_eq!(status, StatusCode::OK, "{muted}");
    let last = fake.calls().into_iter().rfind(|c| c.method == "UpdateParticipant");
    let sources = last.map(|c| c.body["permission"]["canPublishSources"].clone());
    assert_eq!(sources, Some(json!(["CAMERA", "SCREEN_SHARE", "SCREEN_SHARE_AUDIO"])));

    // Banned: removed from the room LiveKit has him in.
    let (status, body) =
        owner.put(&format!("/guilds/{}/bans/{}", guild.id, bob.id), json!({})).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "ban: {body}");
    fake.expect("RemoveParticipant", &bob.id).await;

    // He connects again with the token he kept: removed again at once.
    livekit_says(&a, "participant_left", &room, &bob.id).await;
    livekit_says(&a, "participant_joined", &room, &bob.id).await;
    eventually(Duration::from_secs(20), || async { count("RemoveParticipant") }, |n| *n >= 2).await;
    assert_eq!(count("RemoveParticipant"), 2, "{:?}", fake.calls());
}

/// LiveKit fails to remove a banned user: the host tries again until it did.
#[tokio::test]
async fn a_failed_removal_is_retried_until_livekit_removes_the_user() {
    let fake = FakeLiveKit::start().await;
    let VoiceGuild { a: _a, b: _b, owner, guild, lounge: _, bob } = bob_in_voice(&fake).await;
    *fake.failing_removals.lock().expect("failing") = 1;
    let (status, body) =
        owner.put(&format!("/guilds/{}/bans/{}", guild.id, bob.id), json!({})).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "ban: {body}");
    let removals = || {
        fake.calls()
            .iter()
            .filter(|c| c.method == "RemoveParticipant" && c.body["identity"] == bob.id)
            .count()
    };
    let seen = eventually(Duration::from_secs(30), || async { removals() }, |n| *n >= 2).await;
    assert_eq!(seen, 2, "a failed removal, then the retry: {:?}", fake.calls());
    assert_eq!(*fake.failing_removals.lock().expect("failing"), 0);
}

/// Bob, B's only member, is kicked while in voice: the host removes him and tells B, which is no
/// longer a member server, so that bob's own server and client know he is out of voice.
#[tokio::test]
async fn a_kicked_users_own_server_hears_they_are_out_of_voice() {
    let fake = FakeLiveKit::start().await;
    let VoiceGuild { a: _a, b, owner, guild, lounge: _, bob } = bob_in_voice(&fake).await;
    let (mut bobs, _) = Gateway::identified(&b, &bob.token, Encoding::Json).await;
    let kick = format!("/guilds/{}/members/{}", guild.id, bob.id);
    let (status, body) = owner.delete(&kick).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "kick: {body}");
    fake.expect("RemoveParticipant", &bob.id).await;
    bobs.expect_dispatch("VOICE_STATE_UPDATE", |d| {
        d["user_id"] == bob.id.as_str() && d["channel_id"].is_null()
    })
    .await;
}

/// B (played by a peer with B's key, so every signature checks) says bob is no longer muted: the
/// host keeps its record, still lists him muted, and sends the corrected state back to B.
#[tokio::test]
async fn a_forged_unmute_from_the_users_server_is_overridden_by_the_host() {
    let fake = FakeLiveKit::start().await;
    let VoiceGuild { a, b, owner, guild, lounge, bob } = bob_in_voice(&fake).await;
    let path = format!("/guilds/{}/voice-states/{}", guild.id, bob.id);
    let (status, muted) = owner.patch(&path, json!({"mute": true})).await;
    assert_eq!(status, StatusCode::OK, "{muted}");
    in_voice(&bob, &guild.id, &bob.id, |s| s["mute"] == true).await;

    let peer = super::security::Peer::of(&b);
    let item = json!({"type": "voice_state", "content": {"guild_id": guild.id,
        "channel_id": lounge, "user_id": bob.id, "self_mute": false, "self_deaf": true,
        "self_stream": false, "mute": false, "deaf": false}});
    let body = json!({"origin": b.name(), "origin_ts": unix_now() * 1000, "events": [],
        "ephemeral": [item]});
    let request = peer.signed(&a, "PUT", "/_guildhall/v1/send/unmute1", Some(&body));
    let (status, answer) = peer.send("PUT", &request).await;
    assert_eq!(status, StatusCode::OK, "{answer}");

    // The host took the item (self_deaf) but not its mute, and told B so.
    in_voice(&owner, &guild.id, &bob.id, |s| s["self_deaf"] == true && s["mute"] == true).await;
    in_voice(&bob, &guild.id, &bob.id, |s| s["self_deaf"] == true && s["mute"] == true).await;
}

/// A member not in voice can be muted and unmuted (the record only, LiveKit is not asked): their
/// next token follows it. The record goes when they leave the guild.
#[tokio::test]
async fn a_member_out_of_voice_is_muted_and_unmuted_and_the_record_goes_when_they_leave() {
    let fake = FakeLiveKit::start().await;
    let VoiceGuild { a, b: _b, owner, guild, lounge, bob } = voice_guild_at(&fake.url).await;
    let path = format!("/guilds/{}/voice-states/{}", guild.id, bob.id);
    let microphone = |claims: &livekit_api::access_token::Claims| {
        claims.video.can_publish_sources.iter().any(|s| s == "microphone")
    };
    let (status, muted) = owner.patch(&path, json!({"mute": true})).await;
    assert_eq!(status, StatusCode::OK, "{muted}");
    assert!(muted["channel_id"].is_null() && muted["mute"] == true, "{muted}");
    assert!(!microphone(&token(&bob, &lounge).await), "muted out of voice");
    let (status, unmuted) = owner.patch(&path, json!({"mute": false})).await;
    assert_eq!((status, unmuted["mute"].clone()), (StatusCode::OK, json!(false)), "{unmuted}");
    assert!(microphone(&token(&bob, &lounge).await), "unmuted out of voice");
    assert!(fake.calls().is_empty(), "LiveKit is not asked: {:?}", fake.calls());

    // Muted again, then he leaves and comes back: the record is gone.
    assert_eq!(owner.patch(&path, json!({"mute": true})).await.0, StatusCode::OK);
    let leave = format!("/guilds/{}/members/@me", guild.id);
    assert_eq!(bob.delete(&leave).await.0, StatusCode::NO_CONTENT);
    join_remote(&bob, &a, &owner.invite(&guild.general).await).await;
    let claims = eventually(
        Duration::from_secs(20),
        || async { token(&bob, &lounge).await },
        |claims| microphone(claims),
    )
    .await;
    assert!(microphone(&claims), "the record outlived his membership");
}

/// Alice, server-muted in a guild on C, moves her account from A to B: the mute follows her, so
/// that a move does not lift it.
#[tokio::test]
async fn a_mute_follows_an_account_move() {
    use guildhall_identity::key::IdentityKeyPair;
    use guildhall_identity::phrase::RecoveryPhrase;
    let fake = FakeLiveKit::start().await;
    let (a, b) = (federating().await, federating().await);
    let c = super::voice::with_voice_at(federating_builder(), &fake.url).start().await;
    let key = IdentityKeyPair::from_phrase(&RecoveryPhrase::generate(), 0);
    let alice_a = a.register("alice").await;
    super::identity::bind_identity(&a, &alice_a, &key).await;
    let carol = c.register("carol").await;
    let guild = carol.create_guild("g").await;
    let lounge = super::voice::voice_channel(&carol, &guild.id, "lounge").await;
    join_remote(&alice_a, &c, &carol.invite(&guild.general).await).await;
    let path = format!("/guilds/{}/voice-states/{}", guild.id, alice_a.id);
    let (status, muted) = carol.patch(&path, json!({"mute": true})).await;
    assert_eq!(status, StatusCode::OK, "{muted}");

    let alice_b = super::identity::key_login(&b, &alice_a.id, &key).await;
    let statement = guildhall_identity::moves::AccountMove {
        from: guildhall_spec::UserId::parse(&alice_a.id).expect("user id"),
        to: guildhall_spec::UserId::parse(&alice_b.id).expect("user id"),
        identity_key: key.public_base64url(),
        ts: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis() as u64,
    }
    .sign(&key)
    .expect("sign the move");
    let (status, body) = alice_b.post("/users/@me/identity/move", json!({"move": statement})).await;
    assert_eq!(status, StatusCode::OK, "move: {body}");
    let microphone = |claims: &livekit_api::access_token::Claims| {
        claims.video.can_publish_sources.iter().any(|s| s == "microphone")
    };
    // The host moves the record when it processes the move's event, off the request's path.
    let claims = eventually(
        Duration::from_secs(20),
        || async { token(&alice_b, &lounge).await },
        |claims| !microphone(claims),
    )
    .await;
    assert!(
        !microphone(&claims),
        "the mute did not follow the move: {:?}",
        claims.video.can_publish_sources
    );
}
