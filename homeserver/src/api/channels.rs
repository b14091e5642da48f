//! Channels, permission overwrites, invites and typing indicators.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use guildhall_spec::content::{
    ChannelCreate, ChannelKind, ChannelRef, ChannelUpdate, EventContent, InitialOverwrite,
    InviteCreate, InviteRevoke, MemberJoin, OverwriteDelete, OverwriteKind, OverwriteSet,
};
use guildhall_spec::state::GuildState;
use guildhall_spec::{ChannelId, GuildId, InviteCode, Permissions, RoleId, ServerName, UserId};
use serde::Deserialize;
use serde_json::{Value, json};

use super::guilds::{Position, member_guild};
use super::{AuthUser, Json, OptionalJson, parse_id, views};
use crate::AppState;
use crate::bus::BusMessage;
use crate::error::{ApiError, ApiResult};
use crate::guilds::random_id;
use crate::store::now_ms;

/// The longest an invite may live: 7 days.
pub(super) const MAX_INVITE_AGE_SECS: u64 = 7 * 24 * 3600;
/// The most uses an invite may allow.
const MAX_INVITE_USES: u64 = 100;

tokio::task_local! {
    /// The guild a request's channel lookups are confined to, once it is known: set by the
    /// Discord-compatible layer, whose channel snowflakes name the guild as well, so that a
    /// channel id another guild's host chose alike can neither shadow it nor make it ambiguous.
    pub(super) static CHANNEL_SCOPE: std::sync::OnceLock<GuildId>;
}

/// Resolves a channel the user can see: unknown, foreign and hidden channels all answer
/// `unknown_channel`, so channel ids cannot be probed.
pub(super) async fn visible_channel(
    state: &AppState,
    auth: &AuthUser,
    channel_id: &str,
) -> ApiResult<(GuildId, ChannelId, Arc<GuildState>)> {
    let channel_id: ChannelId = parse_id("channel id", channel_id)?;
    let unknown = || ApiError::not_found("unknown_channel", "no such channel");
    // A request whose channel names its guild too (the Discord-compatible layer's snowflakes)
    // looks in that guild only.
    if let Some(guild_id) = CHANNEL_SCOPE.try_with(|scope| scope.get().cloned()).ok().flatten() {
        let guild_state = state.guilds.state(&guild_id).await.map_err(|_| unknown())?;
        let visible = !guild_state.deleted
            && guild_state.members.contains_key(&auth.user_id)
            && guild_state.can_view(&auth.user_id, &channel_id);
        return if visible { Ok((guild_id, channel_id, guild_state)) } else { Err(unknown()) };
    }
    // Channel ids are scoped to their guild, so the same id may name channels of several
    // guilds on this server (only a hostile host would choose so). The route resolves only to a
    // channel the user can see, and never guesses between two of them.
    let mut visible = Vec::new();
    for guild_id in state.store.member_channel_guilds(&channel_id, &auth.user_id).await? {
        let guild_state = state.guilds.state(&guild_id).await?;
        if !guild_state.deleted && guild_state.can_view(&auth.user_id, &channel_id) {
            visible.push((guild_id, guild_state));
        }
    }
    match visible.len() {
        0 => Err(unknown()),
        1 => {
            let (guild_id, guild_state) = visible.remove(0);
            Ok((guild_id, channel_id, guild_state))
        }
        _ => Err(ApiError::new(
            StatusCode::CONFLICT,
            "ambiguous_channel",
            "this id names a channel in more than one of your guilds",
        )),
    }
}

/// `GET /api/v1/guilds/{guild_id}/channels`: the channels the user can see.
pub(super) async fn list(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(guild_id): Path<String>,
) -> ApiResult<Json<Value>> {
    let (_, guild_state) = member_guild(&state, &auth, &guild_id).await?;
    Ok(Json(json!({"channels": views::guild(&guild_state, &auth.user_id, false)["channels"]})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewChannel {
    pub(super) name: String,
    #[serde(default = "text_kind")]
    pub(super) kind: ChannelKind,
    pub(super) parent_id: Option<ChannelId>,
    pub(super) position: Option<i64>,
    pub(super) topic: Option<String>,
    /// Overwrites the channel starts with (`[{"kind", "id", "allow", "deny"}]`), so that a
    /// private channel is never public, not even for one event.
    #[serde(default)]
    pub(super) overwrites: Vec<NewOverwrite>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewOverwrite {
    pub(super) kind: OverwriteKind,
    pub(super) id: String,
    #[serde(default)]
    pub(super) allow: Permissions,
    #[serde(default)]
    pub(super) deny: Permissions,
}

fn text_kind() -> ChannelKind {
    ChannelKind::Text
}

/// `POST /api/v1/guilds/{guild_id}/channels`.
pub(super) async fn create(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(guild_id): Path<String>,
    Json(body): Json<NewChannel>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let (guild_id, guild_state) = member_guild(&state, &auth, &guild_id).await?;
    let channel_id =
        ChannelId::parse(&random_id(crate::guilds::RANDOM_ID_CHARS)).map_err(ApiError::internal)?;
    let next_position = guild_state.channels.values().map(|c| c.position + 1).max().unwrap_or(0);
    let content = EventContent::ChannelCreate(ChannelCreate {
        channel_id: channel_id.clone(),
        name: body.name,
        kind: body.kind,
        parent_id: body.parent_id,
        position: body.position.unwrap_or(next_position),
        topic: body.topic,
        overwrites: (!body.overwrites.is_empty()).then(|| {
            body.overwrites
                .into_iter()
                .map(|o| InitialOverwrite {
                    target_kind: o.kind,
                    target_id: o.id,
                    allow: o.allow,
                    deny: o.deny,
                })
                .collect()
        }),
    });
    let done = state.guilds.submit(&guild_id, &auth.user_id, content, None).await?;
    let channel = done
        .state
        .channels
        .get(&channel_id)
        .ok_or_else(|| ApiError::internal("channel vanished"))?;
    Ok((
        StatusCode::CREATED,
        Json(views::channel(&done.state, &auth.user_id, &channel_id, channel)),
    ))
}

/// `PATCH /api/v1/guilds/{guild_id}/channels` with `[{"id", "position"}]`.
pub(super) async fn reorder(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(guild_id): Path<String>,
    Json(body): Json<Vec<Position<ChannelId>>>,
) -> ApiResult<Json<Value>> {
    let (guild_id, guild_state) = member_guild(&state, &auth, &guild_id).await?;
    if body.len() > 500 {
        return Err(ApiError::bad_request("too many channels"));
    }
    for entry in &body {
        if !guild_state.channels.contains_key(&entry.id) {
            return Err(ApiError::not_found("unknown_channel", format!("no channel {}", entry.id)));
        }
    }
    for entry in body {
        if guild_state.channels.get(&entry.id).is_some_and(|c| c.position == entry.position) {
            continue;
        }
        let content = EventContent::ChannelUpdate(ChannelUpdate {
            channel_id: entry.id,
            name: None,
            topic: None,
            position: Some(entry.position),
            parent_id: None,
        });
        state.guilds.submit(&guild_id, &auth.user_id, content, None).await?;
    }
    list(State(state), auth, Path(guild_id.to_string())).await
}

/// `GET /api/v1/channels/{channel_id}`.
pub(super) async fn get(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(channel_id): Path<String>,
) -> ApiResult<Json<Value>> {
    let (_, channel_id, guild_state) = visible_channel(&state, &auth, &channel_id).await?;
    let channel = guild_state
        .channels
        .get(&channel_id)
        .ok_or_else(|| ApiError::internal("channel vanished"))?;
    Ok(Json(views::channel(&guild_state, &auth.user_id, &channel_id, channel)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ChannelPatch {
    pub(super) name: Option<String>,
    pub(super) topic: Option<String>,
    pub(super) position: Option<i64>,
    pub(super) parent_id: Option<ChannelId>,
}

/// `PATCH /api/v1/channels/{channel_id}`.
pub(super) async fn update(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(channel_id): Path<String>,
    Json(body): Json<ChannelPatch>,
) -> ApiResult<Json<Value>> {
    let (guild_id, channel_id, _) = visible_channel(&state, &auth, &channel_id).await?;
    let content = EventContent::ChannelUpdate(ChannelUpdate {
        channel_id: channel_id.clone(),
        name: body.name,
        topic: body.topic,
        position: body.position,
        parent_id: body.parent_id,
    });
    let done = state.guilds.submit(&guild_id, &auth.user_id, content, None).await?;
    let channel = done
        .state
        .channels
        .get(&channel_id)
        .ok_or_else(|| ApiError::internal("channel vanished"))?;
    Ok(Json(views::channel(&done.state, &auth.user_id, &channel_id, channel)))
}

/// `DELETE /api/v1/channels/{channel_id}`.
pub(super) async fn delete(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(channel_id): Path<String>,
) -> ApiResult<StatusCode> {
    let (guild_id, channel_id, _) = visible_channel(&state, &auth, &channel_id).await?;
    state
        .guilds
        .submit(
            &guild_id,
            &auth.user_id,
            EventContent::ChannelDelete(ChannelRef { channel_id }),
            None,
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct OverwriteBody {
    pub(super) kind: OverwriteKind,
    #[serde(default)]
    pub(super) allow: Permissions,
    #[serde(default)]
    pub(super) deny: Permissions,
}

fn check_target(kind: OverwriteKind, target_id: &str) -> ApiResult<()> {
    match kind {
        OverwriteKind::Role => parse_id::<RoleId>("role id", target_id).map(drop),
        OverwriteKind::Member => parse_id::<UserId>("user id", target_id).map(drop),
    }
}

/// `PUT /api/v1/channels/{channel_id}/permissions/{target_id}` with `{"kind", "allow", "deny"}`.
pub(super) async fn set_overwrite(
    State(state): State<AppState>,
    auth: AuthUser,
    Path((channel_id, target_id)): Path<(String, String)>,
    Json(body): Json<OverwriteBody>,
) -> ApiResult<Json<Value>> {
    let (guild_id, channel_id, _) = visible_channel(&state, &auth, &channel_id).await?;
    check_target(body.kind, &target_id)?;
    let content = EventContent::OverwriteSet(OverwriteSet {
        channel_id: channel_id.clone(),
        target_kind: body.kind,
        target_id,
        allow: body.allow,
        deny: body.deny,
    });
    let done = state.guilds.submit(&guild_id, &auth.user_id, content, None).await?;
    let channel = done
        .state
        .channels
        .get(&channel_id)
        .ok_or_else(|| ApiError::internal("channel vanished"))?;
    Ok(Json(views::channel(&done.state, &auth.user_id, &channel_id, channel)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct OverwriteKindBody {
    pub(super) kind: OverwriteKind,
}

/// `DELETE /api/v1/channels/{channel_id}/permissions/{target_id}` with `{"kind"}`.
pub(super) async fn delete_overwrite(
    State(state): State<AppState>,
    auth: AuthUser,
    Path((channel_id, target_id)): Path<(String, String)>,
    Json(body): Json<OverwriteKindBody>,
) -> ApiResult<StatusCode> {
    let (guild_id, channel_id, _) = visible_channel(&state, &auth, &channel_id).await?;
    check_target(body.kind, &target_id)?;
    let content = EventContent::OverwriteDelete(OverwriteDelete {
        channel_id,
        target_kind: body.kind,
        target_id,
    });
    state.guilds.submit(&guild_id, &auth.user_id, content, None).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewInvite {
    pub(super) max_age_secs: Option<u64>,
    pub(super) max_uses: Option<u64>,
}

fn invite_view(
    code: &InviteCode,
    guild: &GuildState,
    invite: &guildhall_spec::state::Invite,
) -> Value {
    json!({
        "code": code,
        "server": guild.guild_id.host(),
        "guild_id": guild.guild_id,
        "guild_name": guild.name,
        "channel_id": invite.channel_id,
        "creator": invite.creator,
        "created_ts": invite.created_ts,
        "max_age_secs": invite.max_age_secs,
        "max_uses": invite.max_uses,
        "uses": invite.uses,
        "member_count": guild.members.len(),
    })
}

/// `POST /api/v1/channels/{channel_id}/invites` with optional `max_age_secs` (default 1 day,
/// at most 7 days) and `max_uses` (at most 100).
pub(super) async fn create_invite(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(channel_id): Path<String>,
    OptionalJson(body): OptionalJson<NewInvite>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let (guild_id, channel_id, _) = visible_channel(&state, &auth, &channel_id).await?;
    let body = body.unwrap_or_default();
    let max_age_secs = body.max_age_secs.unwrap_or(24 * 3600);
    if max_age_secs == 0 || max_age_secs > MAX_INVITE_AGE_SECS {
        return Err(ApiError::bad_request(format!(
            "max_age_secs must be 1 to {MAX_INVITE_AGE_SECS}"
        )));
    }
    if body.max_uses.is_some_and(|uses| uses == 0 || uses > MAX_INVITE_USES) {
        return Err(ApiError::bad_request(format!("max_uses must be 1 to {MAX_INVITE_USES}")));
    }
    let code = InviteCode::parse(&random_id(10)).map_err(ApiError::internal)?;
    let content = EventContent::InviteCreate(InviteCreate {
        code: code.clone(),
        channel_id,
        max_age_secs: Some(max_age_secs),
        max_uses: body.max_uses,
    });
    let done = state.guilds.submit(&guild_id, &auth.user_id, content, None).await?;
    let invite =
        done.state.invites.get(&code).ok_or_else(|| ApiError::internal("invite vanished"))?;
    Ok((StatusCode::CREATED, Json(invite_view(&code, &done.state, invite))))
}

/// `GET /api/v1/guilds/{guild_id}/invites` (needs MANAGE_GUILD; others see their own).
pub(super) async fn guild_invites(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(guild_id): Path<String>,
) -> ApiResult<Json<Value>> {
    let (_, guild_state) = member_guild(&state, &auth, &guild_id).await?;
    let manager = guild_state.base_permissions(&auth.user_id).contains(Permissions::MANAGE_GUILD);
    let now = now_ms();
    let invites: Vec<Value> = guild_state
        .invites
        .iter()
        .filter(|(_, invite)| invite.is_usable(now) && (manager || invite.creator == auth.user_id))
        .map(|(code, invite)| invite_view(code, &guild_state, invite))
        .collect();
    Ok(Json(json!({"invites": invites})))
}

/// Finds a usable invite by code among the guilds hosted here.
async fn find_invite(state: &AppState, code: &InviteCode) -> ApiResult<(GuildId, Arc<GuildState>)> {
    let unknown = || ApiError::not_found("unknown_invite", "this invite is invalid or has expired");
    // Invites of guilds hosted elsewhere are accepted through their host (`?server=`); this
    // server guarantees invite codes unique among the guilds it hosts.
    let hosted = state.store.hosted_invite_guild(code, &state.server_name).await?;
    let guild_id = hosted.ok_or_else(unknown)?;
    let guild_state = state.guilds.state(&guild_id).await?;
    match guild_state.invites.get(code) {
        Some(invite) if invite.is_usable(now_ms()) && !guild_state.deleted => {
            Ok((guild_id, guild_state))
        }
        _ => Err(unknown()),
    }
}

/// `GET /api/v1/invites/{code}`: what the invite leads to.
pub(super) async fn invite(
    State(state): State<AppState>,
    _auth: AuthUser,
    Path(code): Path<String>,
) -> ApiResult<Json<Value>> {
    let code: InviteCode = parse_id("invite code", &code)?;
    let (_, guild_state) = find_invite(&state, &code).await?;
    let invite =
        guild_state.invites.get(&code).ok_or_else(|| ApiError::internal("invite vanished"))?;
    Ok(Json(invite_view(&code, &guild_state, invite)))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct InviteServer {
    /// The server hosting the invite's guild, when it is not this one.
    pub(super) server: Option<String>,
}

/// `POST /api/v1/invites/{code}[?server=<host server>]`: join the guild, here or on the server
/// that hosts it.
pub(super) async fn accept_invite(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(code): Path<String>,
    Query(query): Query<InviteServer>,
) -> ApiResult<Json<Value>> {
    let code: InviteCode = parse_id("invite code", &code)?;
    if let Some(server) = query.server.as_deref() {
        let server: ServerName = parse_id("server name", server)?;
        if server != state.server_name {
            let guild_id = state.guilds.join_remote(&auth.user_id, &server, &code).await?;
            let guild_state = state.guilds.state(&guild_id).await?;
            return Ok(Json(views::guild(&guild_state, &auth.user_id, false)));
        }
    }
    let (guild_id, _) = find_invite(&state, &code).await?;
    let content =
        EventContent::MemberJoin(MemberJoin { invite_code: Some(code), ..Default::default() });
    let done = state.guilds.submit(&guild_id, &auth.user_id, content, None).await?;
    Ok(Json(views::guild(&done.state, &auth.user_id, false)))
}

/// `DELETE /api/v1/invites/{code}`: revoke (the creator, or MANAGE_GUILD).
pub(super) async fn revoke_invite(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(code): Path<String>,
) -> ApiResult<StatusCode> {
    let code: InviteCode = parse_id("invite code", &code)?;
    let unknown = || ApiError::not_found("unknown_invite", "no such invite");
    let mut found = Vec::new();
    for guild_id in state.store.member_invite_guilds(&code, &auth.user_id).await? {
        let guild_state = state.guilds.state(&guild_id).await?;
        if guild_state.members.contains_key(&auth.user_id) {
            found.push(guild_id);
        }
    }
    let guild_id = match found.len() {
        0 => return Err(unknown()),
        1 => found.remove(0),
        _ => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "ambiguous_invite",
                "this code names an invite in more than one of your guilds",
            ));
        }
    };
    state
        .guilds
        .submit(&guild_id, &auth.user_id, EventContent::InviteRevoke(InviteRevoke { code }), None)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/v1/channels/{channel_id}/typing`: tells the channel's viewers for ~10 s.
pub(super) async fn typing(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(channel_id): Path<String>,
) -> ApiResult<StatusCode> {
    let (guild_id, channel_id, guild_state) = visible_channel(&state, &auth, &channel_id).await?;
    if !guild_state
        .channel_permissions(&auth.user_id, &channel_id)
        .contains(Permissions::SEND_MESSAGES)
    {
        return Err(ApiError::forbidden("requires SEND_MESSAGES"));
    }
    state.bus.publish(BusMessage::Typing {
        guild_id,
        channel_id,
        user_id: auth.user_id,
        ts: now_ms(),
        state: guild_state,
    });
    Ok(StatusCode::NO_CONTENT)
}
