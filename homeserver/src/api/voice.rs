//! Voice endpoints (spec 18.1): a client asks its home server for a token to a voice channel;
//! the guild's host mints it, directly for its own users or over federation for others'.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use guildhall_spec::{ChannelId, GuildId, UserId};
use serde::Deserialize;
use serde_json::{Value, json};

use super::federation::Federated;
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
            StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_GATEWAY),
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
    let guild_id: GuildId = parse_id("guild id", &guild_id)?;
    let unknown = || ApiError::not_found("unknown_guild", "this server does not host that guild");
    if guild_id.host() != state.server_name {
        return Err(unknown());
    }
    let guild = state.guilds.state(&guild_id).await.map_err(|_| unknown())?;
    if guild.deleted {
        return Err(unknown());
    }
    let body: TokenRequest =
        request.json().map_err(|error| ApiError::bad_request(error.message().to_owned()))?;
    if body.user_id.server_name() != request.origin {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "sender_not_from_origin",
            "a server asks only for its own users",
        ));
    }
    voice::mint(&state, &guild_id, &guild, &body.user_id, &body.channel_id).map(Json)
}
