//! Voice tokens (spec 18.1–18.2): the target, hosting a guild, mints a LiveKit access token for a
//! member whose home is the suite's peer, asked for over federation by the peer, and refuses
//! everyone else with the code of the first check that fails. The voice channel is created and
//! its overwrites set by the guild's owner through test control's any-event endpoint.
//!
//! With `--voice-api-secret` the granted token's HS256 signature is verified too.
//!
//! A target without a voice service answers a request that passes every other check
//! `503 voice_unavailable` (check 9); a case that needs a token then reports itself skipped.
//! Refusals come before that check, so the refusing cases hold for every target.
//!
//! Moderation (spec 18.5): the peer's member is put in voice with a `voice_state` item the peer
//! sends, then the peer asks the target to act on them; a granted mute must show in the next
//! token the peer asks for (no microphone), and its lifting too. A granted action needs the
//! target's LiveKit: a target without a voice service (`503 voice_unavailable`) or whose LiveKit cannot
//! be reached (`502 voice_service_failed`) skips that case.

use std::sync::Arc;

use guildhall_spec::base64url;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::context::{Fixture, unique};
use crate::peer::{Peer, unix_now};
use crate::target::{Answer, encode};
use crate::{CaseResult, Context, ensure};

/// The STREAM permission bit (spec 09).
const STREAM: u64 = 1 << 9;
/// The CONNECT permission bit (spec 09).
const CONNECT: u64 = 1 << 20;
/// The SPEAK permission bit (spec 09).
const SPEAK: u64 = 1 << 21;
/// The MUTE_MEMBERS permission bit (spec 09).
const MUTE_MEMBERS: u64 = 1 << 22;

/// The longest life spec 18.2 allows a token, in seconds.
const MOST_TOKEN_SECONDS: u64 = 600;

pub(super) async fn token_is_granted_to_a_remote_member(ctx: Arc<Context>) -> CaseResult {
    let (fixture, voice) = voice_guild(&ctx).await?;
    let before = unix_now();
    let answer = ask(&ctx, &ctx.peer, &fixture.guild, &fixture.member, &voice).await;
    let token = granted(&answer)?;
    check_token(&token, &fixture, &voice, before)?;
    match &ctx.voice_secret {
        Some(secret) => {
            check_signature(&token, secret)?;
            // The check itself must be able to fail.
            let other = format!("{secret}-not");
            ensure!(check_signature(&token, &other).is_err(), "any secret verifies the token");
            Ok(())
        }
        None => Ok(()),
    }
}

pub(super) async fn connect_is_required(ctx: Arc<Context>) -> CaseResult {
    let (fixture, voice) = voice_guild(&ctx).await?;
    // The same request is granted first, so the refusal below is CONNECT's alone.
    granted(&ask(&ctx, &ctx.peer, &fixture.guild, &fixture.member, &voice).await)?;
    let deny = json!({"channel_id": voice, "target_kind": "role", "target_id": "everyone",
                      "allow": "0", "deny": CONNECT.to_string()});
    let (status, body) =
        ctx.target.act(&fixture.owner, &fixture.guild, "channel.overwrite.set", deny).await;
    ensure!(status == 200, "test control: denying CONNECT to @everyone answered {status} {body}");
    let answer = ask(&ctx, &ctx.peer, &fixture.guild, &fixture.member, &voice).await;
    refused(answer, 403, "missing_permission", "a member without CONNECT in the channel")
}

pub(super) async fn publishing_follows_speak_and_stream(ctx: Arc<Context>) -> CaseResult {
    let (fixture, voice) = voice_guild(&ctx).await?;
    let answer = ask(&ctx, &ctx.peer, &fixture.guild, &fixture.member, &voice).await;
    // @everyone's defaults in a new guild include SPEAK and STREAM (spec 09).
    let speaking = claims(&granted(&answer)?)?;
    let video = &speaking["video"];
    let sources = ["microphone", "camera", "screen_share", "screen_share_audio"];
    ensure!(
        video["canPublish"] == true
            && video["canPublishData"] == true
            && sources.iter().all(|source| published(video, source)),
        "a member with SPEAK and STREAM may publish data and {sources:?}: {video}"
    );
    let deny = json!({"channel_id": voice, "target_kind": "role", "target_id": "everyone",
                      "allow": "0", "deny": (SPEAK | STREAM).to_string()});
    let (status, body) =
        ctx.target.act(&fixture.owner, &fixture.guild, "channel.overwrite.set", deny).await;
    ensure!(status == 200, "test control: denying SPEAK and STREAM answered {status} {body}");
    let answer = ask(&ctx, &ctx.peer, &fixture.guild, &fixture.member, &voice).await;
    let listening = claims(&granted(&answer)?)?;
    let video = &listening["video"];
    // Explicitly false: LiveKit reads an absent canPublish or canPublishData as true.
    ensure!(
        video["canPublish"] == false
            && video["canPublishData"] == false
            && !sources.iter().any(|source| published(video, source))
            && video["canSubscribe"] == true,
        "without SPEAK and STREAM a member only listens (canPublish and canPublishData false, \
         no sources, canSubscribe true): {video}"
    );
    Ok(())
}

pub(super) async fn banned_user_and_server_are_refused(ctx: Arc<Context>) -> CaseResult {
    let (fixture, voice) = voice_guild(&ctx).await?;
    let ban = json!({"user_id": fixture.member});
    let (status, body) = ctx.target.act(&fixture.owner, &fixture.guild, "member.ban", ban).await;
    ensure!(status == 200, "test control: member.ban answered {status} {body}");
    let answer = ask(&ctx, &ctx.peer, &fixture.guild, &fixture.member, &voice).await;
    refused(answer, 403, "banned", "a banned member")?;
    let (fixture, voice) = voice_guild(&ctx).await?;
    let ban = json!({"server": ctx.peer.name()});
    let (status, body) =
        ctx.target.act(&fixture.owner, &fixture.guild, "guild.server_ban", ban).await;
    ensure!(status == 200, "test control: guild.server_ban answered {status} {body}");
    let answer = ask(&ctx, &ctx.peer, &fixture.guild, &fixture.member, &voice).await;
    refused(answer, 403, "server_banned", "a member of a banned server")
}

pub(super) async fn non_member_is_refused(ctx: Arc<Context>) -> CaseResult {
    let (fixture, voice) = voice_guild(&ctx).await?;
    let outsider = ctx.peer.user("outsider");
    let answer = ask(&ctx, &ctx.peer, &fixture.guild, &outsider, &voice).await;
    refused(answer, 403, "not_member", "a user of the peer who never joined")
}

pub(super) async fn text_channel_is_refused(ctx: Arc<Context>) -> CaseResult {
    let (fixture, _) = voice_guild(&ctx).await?;
    let answer = ask(&ctx, &ctx.peer, &fixture.guild, &fixture.member, &fixture.channel).await;
    refused(answer, 404, "unknown_channel", "the guild's text channel")?;
    let missing = format!("nochannel{}", unique());
    let answer = ask(&ctx, &ctx.peer, &fixture.guild, &fixture.member, &missing).await;
    refused(answer, 404, "unknown_channel", "a channel the guild does not have")
}

pub(super) async fn user_of_another_server_is_refused(ctx: Arc<Context>) -> CaseResult {
    let (fixture, voice) = voice_guild(&ctx).await?;
    // The owner is a member who may connect: only the requesting server is wrong.
    let answer = ask(&ctx, &ctx.peer, &fixture.guild, &fixture.owner, &voice).await;
    refused(answer, 403, "sender_not_from_origin", "the peer asking for the target's own user")?;
    let answer = ask(&ctx, &ctx.stranger, &fixture.guild, &fixture.member, &voice).await;
    refused(answer, 403, "sender_not_from_origin", "another server asking for the peer's member")
}

pub(super) async fn unknown_guild_is_refused(ctx: Arc<Context>) -> CaseResult {
    let member = ctx.peer.user("member");
    let elsewhere = format!("!voiceguild{}:{}", unique(), ctx.peer.name());
    let answer = ask(&ctx, &ctx.peer, &elsewhere, &member, "lounge").await;
    refused(answer, 404, "unknown_guild", "a guild the peer hosts")?;
    let missing = format!("!nosuchguild{}:{}", unique(), ctx.target.name);
    let answer = ask(&ctx, &ctx.peer, &missing, &member, "lounge").await;
    refused(answer, 404, "unknown_guild", "a guild the target does not have")
}

pub(super) async fn moderation_is_granted_with_mute_members(ctx: Arc<Context>) -> CaseResult {
    let (fixture, voice) = voice_guild(&ctx).await?;
    let role = json!({"role_id": "muters", "name": "muters",
                      "permissions": MUTE_MEMBERS.to_string(), "position": 1});
    let (status, body) = ctx.target.act(&fixture.owner, &fixture.guild, "role.create", role).await;
    ensure!(status == 200, "test control: role.create answered {status} {body}");
    let grant = json!({"user_id": fixture.member, "roles": ["muters"]});
    let (status, body) =
        ctx.target.act(&fixture.owner, &fixture.guild, "member.update", grant).await;
    ensure!(status == 200, "test control: member.update answered {status} {body}");
    join_voice(&ctx, &fixture, &voice).await?;
    // The member may speak before: the check after the mute can fail.
    microphone(&ctx, &fixture, &voice, true, "before the mute").await?;
    let (status, body) =
        moderate(&ctx, &fixture.guild, &fixture.member, json!({"mute": true})).await;
    if status == 503 && body["code"] == "voice_unavailable" {
        return Err(crate::skipped("the target has no voice service (503 voice_unavailable)"));
    }
    if status == 502 && body["code"] == "voice_service_failed" {
        return Err(crate::skipped(
            "the target's LiveKit cannot be reached (502 voice_service_failed)",
        ));
    }
    ensure!(
        status == 200
            && body["user_id"] == fixture.member.as_str()
            && body["channel_id"] == voice.as_str()
            && body["mute"] == true
            && body["deaf"] == false,
        "a moderator with MUTE_MEMBERS mutes a user in voice: expected 200 with the voice state \
         (mute true, deaf false), got {status} {body}"
    );
    // The mute holds where it matters: a fresh token has no microphone; lifted, it has again.
    microphone(&ctx, &fixture, &voice, false, "after the mute").await?;
    let (status, body) =
        moderate(&ctx, &fixture.guild, &fixture.member, json!({"mute": false})).await;
    ensure!(
        status == 200 && body["mute"] == false,
        "lifting the mute: expected 200 with mute false, got {status} {body}"
    );
    microphone(&ctx, &fixture, &voice, true, "after the mute was lifted").await
}

/// Asks for a fresh token for the peer's member over federation and checks that it lists the
/// microphone (`expected`) or not; with `--voice-api-secret` its signature is checked too.
async fn microphone(
    ctx: &Context,
    fixture: &Fixture,
    voice: &str,
    expected: bool,
    when: &str,
) -> CaseResult {
    let answer = ask(ctx, &ctx.peer, &fixture.guild, &fixture.member, voice).await;
    let token = granted(&answer)?;
    if let Some(secret) = &ctx.voice_secret {
        check_signature(&token, secret)?;
    }
    let claims = claims(&token)?;
    ensure!(
        published(&claims["video"], "microphone") == expected,
        "a token {when} must {}list microphone in canPublishSources: {claims}",
        if expected { "" } else { "not " }
    );
    Ok(())
}

pub(super) async fn moderation_needs_the_permission(ctx: Arc<Context>) -> CaseResult {
    let (fixture, voice) = voice_guild(&ctx).await?;
    join_voice(&ctx, &fixture, &voice).await?;
    // @everyone has none of MUTE_MEMBERS, DEAFEN_MEMBERS and MOVE_MEMBERS by default (spec 09).
    for action in [json!({"mute": true}), json!({"deaf": true}), json!({"disconnect": true})] {
        let answer = moderate(&ctx, &fixture.guild, &fixture.member, action.clone()).await;
        let (status, body) = answer;
        ensure!(
            status == 403 && body["code"] == "missing_permission",
            "moderation {action} by a member without the permission: expected 403 \
             missing_permission, got {status} {body}"
        );
    }
    Ok(())
}

pub(super) async fn moderation_by_a_non_member_is_refused(ctx: Arc<Context>) -> CaseResult {
    let (fixture, voice) = voice_guild(&ctx).await?;
    join_voice(&ctx, &fixture, &voice).await?;
    let outsider = ctx.peer.user("outsider");
    let path = format!("/_guildhall/v1/guilds/{}/voice/moderate", encode(&fixture.guild));
    let body = json!({"moderator": outsider, "user_id": fixture.member, "mute": true});
    let answer = ctx.peer.request(&ctx.target, "POST", &path, None, Some(&body)).await;
    let (status, body) = answer;
    ensure!(
        status == 403 && body["code"] == "not_member",
        "moderation by a user of the peer who never joined: expected 403 not_member, got {status} {body}"
    );
    // A moderator of another server than the one asking.
    let body = json!({"moderator": fixture.owner, "user_id": fixture.member, "mute": true});
    let answer = ctx.peer.request(&ctx.target, "POST", &path, None, Some(&body)).await;
    let (status, body) = answer;
    ensure!(
        status == 403 && body["code"] == "sender_not_from_origin",
        "the peer moderating as the target's own user: expected 403 sender_not_from_origin, got \
         {status} {body}"
    );
    Ok(())
}

/// The peer's member joins `voice`: the peer sends the target a `voice_state` item (spec 18.4).
async fn join_voice(ctx: &Context, fixture: &Fixture, voice: &str) -> CaseResult {
    let item = json!({"type": "voice_state", "content": {"guild_id": fixture.guild,
        "channel_id": voice, "user_id": fixture.member, "self_mute": false, "self_deaf": false}});
    let body = json!({"origin": ctx.peer.name(), "origin_ts": unix_now() * 1000, "events": [],
                      "ephemeral": [item]});
    let path = format!("/_guildhall/v1/send/voice{}", unique());
    let (status, answer) = ctx.peer.request(&ctx.target, "PUT", &path, None, Some(&body)).await;
    ensure!(
        status == 200,
        "a transaction with the member's voice state answered {status} {answer}"
    );
    Ok(())
}

/// `POST /voice/moderate` by the peer's member on itself.
async fn moderate(ctx: &Context, guild: &str, member: &str, action: Value) -> Answer {
    let path = format!("/_guildhall/v1/guilds/{}/voice/moderate", encode(guild));
    let mut body = json!({"moderator": member, "user_id": member});
    if let (Some(body), Some(action)) = (body.as_object_mut(), action.as_object()) {
        body.extend(action.clone());
    }
    ctx.peer.request(&ctx.target, "POST", &path, None, Some(&body)).await
}

/// A fixture guild with a voice channel its owner created; returns the fixture and the channel.
async fn voice_guild(ctx: &Context) -> Result<(Fixture, String), String> {
    let fixture = ctx.fixture().await?;
    let voice = format!("v{}x{}", unix_now(), unique());
    let content = json!({"channel_id": voice, "name": "lounge", "kind": "voice", "position": 1});
    let (status, body) =
        ctx.target.act(&fixture.owner, &fixture.guild, "channel.create", content).await;
    ensure!(status == 200, "test control: creating a voice channel answered {status} {body}");
    Ok((fixture, voice))
}

/// `POST /voice/token` for `user` to `channel` of `guild`, signed by `asker`.
async fn ask(ctx: &Context, asker: &Peer, guild: &str, user: &str, channel: &str) -> Answer {
    let path = format!("/_guildhall/v1/guilds/{}/voice/token", encode(guild));
    let body = json!({"user_id": user, "channel_id": channel});
    asker.request(&ctx.target, "POST", &path, None, Some(&body)).await
}

/// The token answer of a `200`; a target without voice skips the case.
fn granted((status, body): &Answer) -> Result<Value, String> {
    if *status == 503 && body["code"] == "voice_unavailable" {
        return Err(crate::skipped("the target has no voice service (503 voice_unavailable)"));
    }
    ensure!(*status == 200, "a member's token request: expected 200, got {status} {body}");
    Ok(body.clone())
}

/// Checks a refusal's status and code.
fn refused((status, body): Answer, expected: u16, code: &str, what: &str) -> CaseResult {
    ensure!(
        status == expected && body["code"] == code,
        "a token for {what}: expected {expected} {code}, got {status} {body}"
    );
    Ok(())
}

/// Checks a `200` answer of 18.1 and the claims of 18.2 for `fixture.member` in `voice`,
/// minted no earlier than `before` (seconds).
fn check_token(answer: &Value, fixture: &Fixture, voice: &str, before: u64) -> CaseResult {
    let url = answer["url"].as_str().unwrap_or_default();
    ensure!(
        url.starts_with("wss://") || url.starts_with("ws://"),
        "url must be a LiveKit wss:// (or ws://) URL, got {answer}"
    );
    let token = answer["token"].as_str().unwrap_or_default();
    let parts: Vec<&str> = token.split('.').collect();
    ensure!(parts.len() == 3, "token must be a JWT (three dot-separated parts), got {token:?}");
    let header = decode_part(parts[0], "header")?;
    ensure!(header["alg"] == "HS256", "a LiveKit token is signed HS256, the header is {header}");
    let claims = claims(answer)?;
    ensure!(claims["sub"] == fixture.member.as_str(), "sub must be {}: {claims}", fixture.member);
    ensure!(
        claims["iss"].as_str().is_some_and(|issuer| !issuer.is_empty()),
        "iss must be the host's LiveKit API key: {claims}"
    );
    let room = format!("{}/{voice}", fixture.guild);
    let video = &claims["video"];
    ensure!(video["room"] == room.as_str(), "video.room must be {room}: {claims}");
    ensure!(video["roomJoin"] == true, "video.roomJoin must be true: {claims}");
    ensure!(video["canSubscribe"] == true, "video.canSubscribe must be true: {claims}");
    let (Some(nbf), Some(exp)) = (claims["nbf"].as_u64(), claims["exp"].as_u64()) else {
        return Err(format!("nbf and exp must be integers (seconds): {claims}"));
    };
    ensure!(
        exp > nbf && exp - nbf <= MOST_TOKEN_SECONDS,
        "exp − nbf must be at most {MOST_TOKEN_SECONDS} s, is {} s: {claims}",
        exp as i128 - nbf as i128
    );
    // A second either side for clocks that round differently.
    ensure!(
        nbf + 1 >= before && nbf <= unix_now() + 1,
        "nbf must be the issue time ({before}), is {nbf}"
    );
    ensure!(
        answer["expires_ts"].as_u64() == Some(exp * 1000),
        "expires_ts must be exp × 1000 = {}, got {answer}",
        exp * 1000
    );
    Ok(())
}

/// Checks the token's HS256 signature (RFC 7515: HMAC-SHA256 of `header.payload`) with the
/// target's LiveKit API secret, as LiveKit would before admitting the holder.
fn check_signature(answer: &Value, secret: &str) -> CaseResult {
    let token = answer["token"].as_str().unwrap_or_default();
    let Some((signed, signature)) = token.rsplit_once('.') else {
        return Err(format!("token must be a JWT, got {token:?}"));
    };
    let signature = base64url::decode(signature)
        .map_err(|e| format!("the token's signature is not base64url: {e}"))?;
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
        .map_err(|e| format!("the LiveKit API secret: {e}"))?;
    mac.update(signed.as_bytes());
    mac.verify_slice(&signature)
        .map_err(|_| "the token's HS256 signature does not verify with the API secret".to_owned())
}

/// The claims of the token in a `200` answer.
fn claims(answer: &Value) -> Result<Value, String> {
    let token = answer["token"].as_str().unwrap_or_default();
    match token.split('.').nth(1) {
        Some(payload) => decode_part(payload, "payload"),
        None => Err(format!("token must be a JWT, got {token:?}")),
    }
}

/// Whether `video.canPublishSources` lists `source`.
fn published(video: &Value, source: &str) -> bool {
    video["canPublishSources"].as_array().is_some_and(|sources| sources.iter().any(|s| s == source))
}

/// A JWT part: base64url JSON.
fn decode_part(part: &str, what: &str) -> Result<Value, String> {
    let bytes = base64url::decode(part).map_err(|e| format!("the token's {what}: {e}"))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("the token's {what} is not JSON: {e}"))
}
