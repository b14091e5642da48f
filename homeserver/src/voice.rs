//! Voice channels (spec 18): who may connect to a voice channel of a guild this server hosts,
//! and the LiveKit access token the host mints for them, for its own users and, over
//! federation, for other servers' users.

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use guildhall_media_relay::voice::{VoicePermissions, VoiceService, VoiceToken};
use guildhall_spec::content::ChannelKind;
use guildhall_spec::permissions::Permissions;
use guildhall_spec::state::GuildState;
use guildhall_spec::{ChannelId, GuildId, UserId};
use serde_json::{Value, json};

use crate::AppState;
use crate::config::VoiceConfig;
use crate::error::{ApiError, ApiResult};

/// The voice service `[voice]` configures: `None` when its URL is empty (voice off); an error
/// for a half-made configuration, so that a server does not start with broken voice.
pub fn service(config: &VoiceConfig) -> anyhow::Result<Option<Arc<VoiceService>>> {
    if config.url.is_empty() {
        return Ok(None);
    }
    let ttl = Duration::from_secs(config.token_ttl_secs);
    let service = VoiceService::new(&config.url, &config.api_key, &config.api_secret, ttl)
        .map_err(|e| anyhow::anyhow!("[voice]: {e}"))?;
    Ok(Some(Arc::new(service)))
}

/// Whether `user` may connect to `channel_id` of the guild in `guild` (spec 18.1, checks 4–7),
/// and with which grants.
pub fn authorize(
    guild: &GuildState,
    user: &UserId,
    channel_id: &ChannelId,
) -> ApiResult<VoicePermissions> {
    if guild.server_bans.contains_key(&user.server_name()) {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "server_banned", "your server is banned"));
    }
    if guild.bans.contains_key(user) {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "banned", "you are banned"));
    }
    if !guild.members.contains_key(user) {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "not_member", "not a member"));
    }
    if guild.channels.get(channel_id).is_none_or(|channel| channel.kind != ChannelKind::Voice) {
        return Err(ApiError::not_found("unknown_channel", "no such voice channel"));
    }
    let permissions = guild.channel_permissions(user, channel_id);
    if !permissions.contains(Permissions::CONNECT) {
        return Err(ApiError::forbidden("CONNECT is required in this channel"));
    }
    Ok(VoicePermissions {
        speak: permissions.contains(Permissions::SPEAK),
        stream: permissions.contains(Permissions::STREAM),
    })
}

/// A token for `user` to `channel_id` of a guild this server hosts, after [`authorize`]
/// (spec 18.1); `503 voice_unavailable` when voice is off.
pub fn mint(
    state: &AppState,
    guild_id: &GuildId,
    guild: &GuildState,
    user: &UserId,
    channel_id: &ChannelId,
) -> ApiResult<Value> {
    let permissions = authorize(guild, user, channel_id)?;
    let service = state.voice.as_ref().ok_or_else(unavailable)?;
    let name = guild
        .members
        .get(user)
        .and_then(|member| member.nick.clone())
        .unwrap_or_else(|| user.to_string());
    let room = VoiceService::room(guild_id, channel_id);
    let VoiceToken { url, token, expires_ts } =
        service.token(&room, user, &name, permissions).map_err(ApiError::internal)?;
    Ok(json!({"url": url, "token": token, "expires_ts": expires_ts}))
}

/// `503 voice_unavailable`.
pub fn unavailable() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "voice_unavailable",
        "this guild's server has no voice service",
    )
}
