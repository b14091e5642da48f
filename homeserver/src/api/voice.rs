//! Voice endpoints (spec 18.1): a client asks its home server for a token to a voice channel;
//! the guild's host mints it, directly for its own users or over federation for others'.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use guildhall_spec::api::Endpoint as _;
use guildhall_spec::api::ephemeral::VoiceState;
use guildhall_spec::api::moderate_voice;
use guildhall_spec::{ChannelId, GuildId, UserId};
use serde::Deserialize;
use serde_json::{Value, json};

use super::federation::{Federated, sender_from_origin};
use super::{AuthUser, Json, parse_id};
use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::voice;

/// The largest token answer read from a host.
const MAX_ANSWER_BYTES: usize = 16 << 10;

/// `POST /api/v1/channels/{channel_id}/voice/token`: a LiveKit token for a voice channel the
/// user can see, minted by the guild's host.
pub(super) async fn token(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(channel_id): Path<String>,
) -> ApiResult<Json<Value>> {
    let (guild_id, channel_id, guild) =
        super::channels::visible_channel(&state, &auth, &channel_id).await?;
    let host = guild_id.host();
    if host == state.server_name {
        return voice::mint(&state, &guild_id, &guild, &auth.user_id, &channel_id).map(Json);
    }
    // Checked here too, so a refusal does not cost the host a request; the host decides.
    voice::authorize(&guild, &auth.user_id, &channel_id)?;
    let path = format!("/_guildhall/v1/guilds/{guild_id}/voice/token");
    let body = json!({"user_id": auth.user_id, "channel_id": channel_id}).to_string();
    let answer = state
        .federation
        .client
        .request_capped("POST", &host, &path, None, Some(body.into_bytes()), MAX_ANSWER_BYTES)
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "voice_unavailable",
                format!("the guild's host could not be reached: {e}"),
            )
        })?;
    let body: Value = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
    if answer.status == 200 && is_token_answer(&body) {
        return Ok(Json(body));
    }
    // The host's refusal, passed on with its code (the codes of spec 18.1 are the client's).
    let code = body.get("code").and_then(Value::as_str).unwrap_or_default();
    let known = [
        "not_member",
        "banned",
        "server_banned",
        "missing_permission",
        "unknown_channel",
        "unknown_guild",
        "rate_limited",
        "voice_unavailable",
    ];
    match known.iter().find(|known| **known == code) {
        Some(code) => Err(ApiError::new(
            refusal_status(answer.status),
            code,
            format!("the guild's host refused: {code}"),
        )),
        None => Err(voice::unavailable()),
    }
}

/// Whether a host's answer has the shape of spec 18.1's.
fn is_token_answer(body: &Value) -> bool {
    body.get("url").and_then(Value::as_str).is_some_and(|url| url.starts_with("ws"))
        && body.get("token").and_then(Value::as_str).is_some()
        && body.get("expires_ts").and_then(Value::as_u64).is_some()
}

/// A guild this server hosts and has not closed, for the federation endpoints of spec 18 (check
/// 1): `404 unknown_guild` otherwise.
async fn hosted_guild(
    state: &AppState,
    guild_id: &str,
) -> ApiResult<(GuildId, std::sync::Arc<guildhall_spec::state::GuildState>)> {
    let guild_id: GuildId = parse_id("guild id", guild_id)?;
    let unknown = || ApiError::not_found("unknown_guild", "this server does not host that guild");
    if guild_id.host() != state.server_name {
        return Err(unknown());
    }
    let guild = state.guilds.state(&guild_id).await.map_err(|_| unknown())?;
    if guild.deleted {
        return Err(unknown());
    }
    Ok((guild_id, guild))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TokenRequest {
    user_id: UserId,
    channel_id: ChannelId,
}

/// `POST /_guildhall/v1/guilds/{guild_id}/voice/token`: another server's user asks the host for
/// a token to one of its voice channels (spec 18.1, checked in the order given there).
pub(super) async fn federated_token(
    State(state): State<AppState>,
    Path(guild_id): Path<String>,
    request: Federated,
) -> ApiResult<Json<Value>> {
    let (guild_id, guild) = hosted_guild(&state, &guild_id).await?;
    let body: TokenRequest =
        request.json().map_err(|error| ApiError::bad_request(error.message().to_owned()))?;
    sender_from_origin(&body.user_id, &request.origin)?;
    voice::mint(&state, &guild_id, &guild, &body.user_id, &body.channel_id).map(Json)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct VoiceStateBody {
    channel_id: Option<ChannelId>,
    #[serde(default)]
    self_mute: bool,
    #[serde(default)]
    self_deaf: bool,
    #[serde(default)]
    self_stream: bool,
}

/// `PUT /api/v1/guilds/{guild_id}/voice-state`: the user's client says it joined a voice
/// channel (after connecting to LiveKit), left voice (`channel_id: null`), or muted or deafened
/// itself. Every member's gateway, on every server, hears it as `VOICE_STATE_UPDATE`.
pub(super) async fn set_state(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(guild_id): Path<String>,
    Json(body): Json<VoiceStateBody>,
) -> ApiResult<StatusCode> {
    let (guild_id, guild) = super::guilds::member_guild(&state, &auth, &guild_id).await?;
    let voice_state = VoiceState {
        guild_id,
        channel_id: body.channel_id,
        user_id: auth.user_id,
        self_mute: body.self_mute,
        self_deaf: body.self_deaf,
        self_stream: body.self_stream,
        // Set by the host alone (spec 18.5): `voice::apply` fills them in.
        mute: false,
        deaf: false,
    };
    voice::check(&guild, &voice_state)?;
    let here = state.server_name.clone();
    voice::apply(&state, voice_state, guild, here);
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/v1/guilds/{guild_id}/voice-states`: who is in which voice channel, as far as this
/// server has heard since it started.
pub(super) async fn states(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(guild_id): Path<String>,
) -> ApiResult<Json<Value>> {
    let (guild_id, _) = super::guilds::member_guild(&state, &auth, &guild_id).await?;
    Ok(Json(json!({"voice_states": state.voice_states.of(&guild_id)})))
}

/// A moderator's request: `mute` and `deaf` set or lift server mute and deafen; `channel_id:
/// null` disconnects the user from voice (moving to another channel is not supported).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ModerateBody {
    #[serde(default)]
    mute: Option<bool>,
    #[serde(default)]
    deaf: Option<bool>,
    /// Absent: stay; `null`: disconnect; a channel: move (refused).
    #[serde(default, deserialize_with = "present")]
    channel_id: Option<Option<ChannelId>>,
}

/// Tells a member given as `null` (`Some(None)`) from an absent one (`None`).
fn present<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Option<ChannelId>>, D::Error> {
    Option::<ChannelId>::deserialize(deserializer).map(Some)
}

/// The largest moderation answer read from a host (one voice state).
const MAX_MODERATION_ANSWER_BYTES: usize = 16 << 10;

/// `PATCH /api/v1/guilds/{guild_id}/voice-states/{user_id}`: a moderator server-mutes,
/// server-deafens or disconnects a user in voice (spec 18.5). The guild's host decides and acts,
/// directly when it is this server, else over federation; the answer is the user's new voice
/// state.
pub(super) async fn moderate(
    State(state): State<AppState>,
    auth: AuthUser,
    Path((guild_id, user_id)): Path<(String, String)>,
    Json(body): Json<ModerateBody>,
) -> ApiResult<Json<VoiceState>> {
    let (guild_id, guild) = super::guilds::member_guild(&state, &auth, &guild_id).await?;
    let target: UserId = parse_id("user id", &user_id)?;
    if matches!(body.channel_id, Some(Some(_))) {
        return Err(ApiError::bad_request("moving a user to another channel is not supported"));
    }
    let action = voice::moderation::Action {
        mute: body.mute,
        deaf: body.deaf,
        disconnect: body.channel_id.is_some(),
    };
    let host = guild_id.host();
    if host == state.server_name {
        return voice::moderation::moderate(
            &state,
            &guild_id,
            &guild,
            &auth.user_id,
            &target,
            action,
        )
        .await
        .map(Json);
    }
    let request = moderate_voice::Request {
        moderator: auth.user_id.clone(),
        user_id: target,
        mute: action.mute,
        deaf: action.deaf,
        disconnect: action.disconnect,
    };
    let body = serde_json::to_vec(&request).map_err(ApiError::internal)?;
    let path = moderate_voice::ModerateVoice::PATH.replace("{guild_id}", guild_id.as_str());
    let answer = state
        .federation
        .client
        .request_capped("POST", &host, &path, None, Some(body), MAX_MODERATION_ANSWER_BYTES)
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "voice_unavailable",
                format!("the guild's host could not be reached: {e}"),
            )
        })?;
    if answer.status == 200 {
        // An answer that is not the user's voice state in this guild is a host that does not
        // serve voice as specified.
        return serde_json::from_slice::<VoiceState>(&answer.body)
            .ok()
            .filter(|answer| answer.guild_id == guild_id && answer.user_id == request.user_id)
            .map(Json)
            .ok_or_else(voice::unavailable);
    }
    Err(refusal(answer.status, &answer.body))
}

/// A host's refusal of a moderation request, passed on with its code (spec 18.5's codes).
fn refusal(status: u16, body: &[u8]) -> ApiError {
    let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let code = body.get("code").and_then(Value::as_str).unwrap_or_default();
    let known = [
        "bad_request",
        "not_member",
        "not_in_voice",
        "missing_permission",
        "unknown_guild",
        "rate_limited",
        "voice_unavailable",
        "voice_service_failed",
    ];
    match known.iter().find(|known| **known == code) {
        Some(code) => {
            ApiError::new(refusal_status(status), code, format!("the guild's host refused: {code}"))
        }
        None => voice::unavailable(),
    }
}

/// The status a host's refusal is passed on with: its own when it is a client or server error,
/// else `502` (a host answering a refusal code with `200`, `302` or `999` is broken).
fn refusal_status(status: u16) -> StatusCode {
    match StatusCode::from_u16(status) {
        Ok(status) if status.is_client_error() || status.is_server_error() => status,
        _ => StatusCode::BAD_GATEWAY,
    }
}

/// `POST /_guildhall/v1/guilds/{guild_id}/voice/moderate`: a moderator on another server asks
/// the host to act on a user in voice (spec 18.5, checked in the order given there).
pub(super) async fn federated_moderate(
    State(state): State<AppState>,
    Path(guild_id): Path<String>,
    request: Federated,
) -> ApiResult<Json<VoiceState>> {
    let (guild_id, guild) = hosted_guild(&state, &guild_id).await?;
    let body: moderate_voice::Request =
        request.json().map_err(|error| ApiError::bad_request(error.message().to_owned()))?;
    sender_from_origin(&body.moderator, &request.origin)?;
    let action =
        voice::moderation::Action { mute: body.mute, deaf: body.deaf, disconnect: body.disconnect };
    voice::moderation::moderate(&state, &guild_id, &guild, &body.moderator, &body.user_id, action)
        .await
        .map(Json)
}

/// The largest webhook body read (LiveKit's events are a few kilobytes).
const MAX_WEBHOOK_BYTES: usize = 64 << 10;

/// `POST /livekit/webhook`: this server's LiveKit server reports room events, signed with the
/// voice service's key pair; a participant that left (or a room that ended) takes its users out
/// of voice (spec 18.4).
pub(super) async fn webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let service = state.voice.as_ref().ok_or_else(voice::unavailable)?;
    if body.len() > MAX_WEBHOOK_BYTES {
        return Err(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "too large"));
    }
    let unauthorized = || ApiError::unauthorized("not signed by this server's LiveKit");
    let authorization = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .ok_or_else(unauthorized)?;
    let body = std::str::from_utf8(&body).map_err(|_| ApiError::bad_request("not UTF-8"))?;
    let event = service.verify_webhook(body, authorization).map_err(|_| unauthorized())?;
    voice::reconcile(&state, &event).await;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_is_passed_on_as_an_error_status() {
        let check =
            |status: u16, expected: u16| assert_eq!(refusal_status(status).as_u16(), expected);
        check(403, 403);
        check(404, 404);
        check(503, 503);
        check(200, 502);
        check(302, 502);
        check(101, 502);
        check(999, 502);
    }
}
