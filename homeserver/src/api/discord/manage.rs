//! `/api/v10` guild management: channels, permission overwrites, roles, members, bans and
//! invites, translated onto the native handlers like the rest of the layer.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use guildhall_spec::content::{ChannelKind, OverwriteKind};
use guildhall_spec::{ChannelId, Permissions, RoleId, UserId};
use serde::Deserialize;
use serde_json::{Value, json};

use super::objects::{GUILD_CATEGORY, GUILD_TEXT, GUILD_VOICE, Render, iso8601};
use super::rest::{Id, member_guild, no_content, reply, role_in, user_of, visible_channel};
use super::snowflake::Target;
use super::{
    DiscordAuth, DiscordError, DiscordJson, DiscordOptionalJson, DiscordQuery, DiscordResult,
};
use crate::AppState;
use crate::api::{Json, OptionalJson, channels, guilds};
use crate::error::ApiError;

/// Permission bits as Discord sends them: a decimal string (or a number).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(super) enum Bits {
    Text(String),
    Number(u64),
}

impl Bits {
    fn get(&self) -> DiscordResult<Permissions> {
        let bits = match self {
            Self::Text(text) => text.parse::<u64>().map_err(|_| {
                DiscordError(ApiError::bad_request("permissions are a decimal string"))
            })?,
            Self::Number(number) => *number,
        };
        Ok(Permissions::from_bits(bits))
    }
}

fn channel_kind(kind: Option<u8>) -> DiscordResult<ChannelKind> {
    match kind.unwrap_or(GUILD_TEXT) {
        GUILD_TEXT => Ok(ChannelKind::Text),
        GUILD_VOICE => Ok(ChannelKind::Voice),
        GUILD_CATEGORY => Ok(ChannelKind::Category),
        other => Err(DiscordError(ApiError::bad_request(format!(
            "channel type {other} is not supported by this server"
        )))),
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct Overwrite {
    id: Id,
    #[serde(rename = "type")]
    kind: u8,
    allow: Option<Bits>,
    deny: Option<Bits>,
}

/// An overwrite's target as the native API names it.
async fn overwrite_target(
    state: &AppState,
    guild: &guildhall_spec::GuildId,
    kind: u8,
    id: u64,
) -> DiscordResult<(OverwriteKind, String)> {
    let unknown = || DiscordError(ApiError::bad_request("unknown overwrite target"));
    match (kind, state.snowflakes.resolve(id).await?) {
        (0, Some(Target::Role(of, role))) if &of == guild => {
            Ok((OverwriteKind::Role, role.to_string()))
        }
        (0, Some(Target::Guild(of))) if &of == guild => {
            Ok((OverwriteKind::Role, RoleId::everyone().to_string()))
        }
        (1, Some(Target::User(user))) => Ok((OverwriteKind::Member, user.to_string())),
        _ => Err(unknown()),
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct NewChannel {
    name: String,
    #[serde(rename = "type")]
    kind: Option<u8>,
    topic: Option<String>,
    position: Option<i64>,
    parent_id: Option<Id>,
    #[serde(default)]
    permission_overwrites: Vec<Overwrite>,
}

/// `POST /guilds/{guild}/channels`.
pub(super) async fn create_channel(
    State(state): State<AppState>,
    auth: DiscordAuth,
    Path(guild): Path<String>,
    DiscordJson(body): DiscordJson<NewChannel>,
) -> DiscordResult<Response> {
    let (guild_id, _) = member_guild(&state, &auth, &guild).await?;
    let parent_id = match body.parent_id {
        Some(parent) => Some(channel_in(&state, &guild_id, parent.get()).await?),
        None => None,
    };
    let mut overwrites = Vec::new();
    for overwrite in body.permission_overwrites.iter().take(100) {
        let (kind, id) =
            overwrite_target(&state, &guild_id, overwrite.kind, overwrite.id.get()).await?;
        overwrites.push(channels::NewOverwrite {
            kind,
            id,
            allow: overwrite.allow.as_ref().map(Bits::get).transpose()?.unwrap_or_default(),
            deny: overwrite.deny.as_ref().map(Bits::get).transpose()?.unwrap_or_default(),
        });
    }
    let native = channels::NewChannel {
        name: body.name,
        kind: channel_kind(body.kind)?,
        parent_id,
        position: body.position,
        topic: body.topic,
        overwrites,
    };
    let (_, Json(created)) = channels::create(
        State(state.clone()),
        auth.0.clone(),
        Path(guild_id.to_string()),
        Json(native),
    )
    .await?;
    render_channel(&state, &guild_id, &created).await
}

async fn channel_in(
    state: &AppState,
    guild: &guildhall_spec::GuildId,
    id: u64,
) -> DiscordResult<ChannelId> {
    match state.snowflakes.resolve(id).await? {
        Some(Target::Channel(of, channel)) if &of == guild => Ok(channel),
        _ => Err(ApiError::not_found("unknown_channel", "no such channel").into()),
    }
}

/// A channel the native API returned, as Discord's.
async fn render_channel(
    state: &AppState,
    guild_id: &guildhall_spec::GuildId,
    native: &Value,
) -> DiscordResult<Response> {
    let channel_id: ChannelId =
        crate::api::parse_id("channel id", native["id"].as_str().unwrap_or_default())?;
    let guild = state.guilds.state(guild_id).await?;
    let Some(channel) = guild.channels.get(&channel_id) else {
        return Err(ApiError::internal("channel vanished").into());
    };
    Ok(reply(Render::new(state).channel(&guild, &channel_id, channel).await?))
}

#[derive(Debug, Deserialize)]
pub(super) struct ChannelPatch {
    name: Option<String>,
    topic: Option<String>,
    position: Option<i64>,
    parent_id: Option<Id>,
}

/// `PATCH /channels/{channel}`.
pub(super) async fn update_channel(
    State(state): State<AppState>,
    auth: DiscordAuth,
    Path(channel): Path<String>,
    DiscordJson(body): DiscordJson<ChannelPatch>,
) -> DiscordResult<Response> {
    let (guild_id, channel_id, _) = visible_channel(&state, &auth, &channel).await?;
    let parent_id = match body.parent_id {
        Some(parent) => Some(channel_in(&state, &guild_id, parent.get()).await?),
        None => None,
    };
    let native = channels::ChannelPatch {
        name: body.name,
        topic: body.topic,
        position: body.position,
        parent_id,
    };
    let Json(updated) =
        channels::update(State(state.clone()), auth.0, Path(channel_id.to_string()), Json(native))
            .await?;
    render_channel(&state, &guild_id, &updated).await
}

/// `DELETE /channels/{channel}`: answers the channel as it was.
pub(super) async fn delete_channel(
    State(state): State<AppState>,
    auth: DiscordAuth,
    Path(channel): Path<String>,
) -> DiscordResult<Response> {
    let (_, channel_id, guild) = visible_channel(&state, &auth, &channel).await?;
    let Some(before) = guild.channels.get(&channel_id) else {
        return Err(ApiError::not_found("unknown_channel", "no such channel").into());
    };
    let view = Render::new(&state).channel(&guild, &channel_id, before).await?;
    channels::delete(State(state), auth.0, Path(channel_id.to_string())).await?;
    Ok(reply(view))
}

#[derive(Debug, Deserialize)]
pub(super) struct OverwriteBody {
    #[serde(rename = "type")]
    kind: u8,
    allow: Option<Bits>,
    deny: Option<Bits>,
}

/// `PUT /channels/{channel}/permissions/{overwrite}`.
pub(super) async fn set_overwrite(
    State(state): State<AppState>,
    auth: DiscordAuth,
    Path((channel, target)): Path<(String, String)>,
    DiscordJson(body): DiscordJson<OverwriteBody>,
) -> DiscordResult<Response> {
    let (guild_id, channel_id, _) = visible_channel(&state, &auth, &channel).await?;
    let target = super::rest::snowflake(&target)?;
    let (kind, id) = overwrite_target(&state, &guild_id, body.kind, target).await?;
    let native = channels::OverwriteBody {
        kind,
        allow: body.allow.as_ref().map(Bits::get).transpose()?.unwrap_or_default(),
        deny: body.deny.as_ref().map(Bits::get).transpose()?.unwrap_or_default(),
    };
    let path = Path((channel_id.to_string(), id));
    channels::set_overwrite(State(state), auth.0, path, Json(native)).await?;
    Ok(no_content())
}

/// `DELETE /channels/{channel}/permissions/{overwrite}`.
pub(super) async fn delete_overwrite(
    State(state): State<AppState>,
    auth: DiscordAuth,
    Path((channel, target)): Path<(String, String)>,
) -> DiscordResult<Response> {
    let (guild_id, channel_id, guild) = visible_channel(&state, &auth, &channel).await?;
    let target = super::rest::snowflake(&target)?;
    // Discord names the target by id alone; a role's or a member's, whichever it is.
    let (kind, id) = match overwrite_target(&state, &guild_id, 0, target).await {
        Ok(found) => found,
        Err(_) => overwrite_target(&state, &guild_id, 1, target).await?,
    };
    let key = guildhall_spec::state::overwrite_key(kind, &id);
    if guild.channels.get(&channel_id).is_none_or(|channel| !channel.overwrites.contains_key(&key))
    {
        return Ok(no_content());
    }
    let path = Path((channel_id.to_string(), id));
    let body = channels::OverwriteKindBody { kind };
    channels::delete_overwrite(State(state), auth.0, path, Json(body)).await?;
    Ok(no_content())
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct NewInvite {
    max_age: Option<u64>,
    max_uses: Option<u64>,
}

/// `POST /channels/{channel}/invites`. Discord's "never expires" (`max_age: 0`) and
/// "unlimited" (`max_uses: 0`) become this server's longest and largest.
pub(super) async fn create_invite(
    State(state): State<AppState>,
    auth: DiscordAuth,
    Path(channel): Path<String>,
    DiscordOptionalJson(body): DiscordOptionalJson<NewInvite>,
) -> DiscordResult<Response> {
    let (guild_id, channel_id, _) = visible_channel(&state, &auth, &channel).await?;
    let body = body.unwrap_or_default();
    let native = channels::NewInvite {
        max_age_secs: Some(match body.max_age {
            Some(0) => channels::MAX_INVITE_AGE_SECS,
            Some(age) => age.min(channels::MAX_INVITE_AGE_SECS),
            None => 86_400,
        }),
        max_uses: match body.max_uses {
            Some(0) | None => None,
            Some(uses) => Some(uses),
        },
    };
    let (_, Json(invite)) = channels::create_invite(
        State(state.clone()),
        auth.0,
        Path(channel_id.to_string()),
        OptionalJson(Some(native)),
    )
    .await?;
    let guild = state.guilds.state(&guild_id).await?;
    let render = Render::new(&state);
    let creator: UserId =
        crate::api::parse_id("user id", invite["creator"].as_str().unwrap_or_default())?;
    Ok(reply(json!({
        "type": 0,
        "code": invite["code"],
        "guild": {"id": render.guild_id(&guild_id).await?, "name": guild.name, "icon": null, "features": []},
        "channel": {"id": render.channel_id(&guild_id, &channel_id).await?, "type": GUILD_TEXT, "name": guild.channels.get(&channel_id).map(|c| c.name.clone())},
        "inviter": render.user(&creator).await?,
        "uses": invite["uses"],
        "max_uses": invite["max_uses"].as_u64().unwrap_or(0),
        "max_age": invite["max_age_secs"],
        "temporary": false,
        "created_at": iso8601(invite["created_ts"].as_u64().unwrap_or(0)),
    })))
}

#[derive(Debug, Deserialize)]
pub(super) struct NewRole {
    name: Option<String>,
    permissions: Option<Bits>,
    color: Option<u32>,
    hoist: Option<bool>,
    mentionable: Option<bool>,
}

/// `POST /guilds/{guild}/roles`.
pub(super) async fn create_role(
    State(state): State<AppState>,
    auth: DiscordAuth,
    Path(guild): Path<String>,
    DiscordOptionalJson(body): DiscordOptionalJson<NewRole>,
) -> DiscordResult<Response> {
    let (guild_id, guild) = member_guild(&state, &auth, &guild).await?;
    // Discord puts a new role at the bottom and moves the others up; here positions are not
    // moved, so the role goes just below the creator's own rank (position 1 for the owner).
    let position =
        if guild.owner == auth.0.user_id { 1 } else { (guild.rank(&auth.0.user_id) - 1).max(1) };
    let body = body.unwrap_or(NewRole {
        name: None,
        permissions: None,
        color: None,
        hoist: None,
        mentionable: None,
    });
    let native = guilds::NewRole {
        name: body.name.unwrap_or_else(|| "new role".to_owned()),
        permissions: body.permissions.as_ref().map(Bits::get).transpose()?.unwrap_or_default(),
        position: Some(position),
        color: body.color,
        hoist: body.hoist,
        mentionable: body.mentionable,
    };
    let (_, Json(role)) =
        guilds::create_role(State(state.clone()), auth.0, Path(guild_id.to_string()), Json(native))
            .await?;
    render_role(&state, &guild_id, &role).await
}

async fn render_role(
    state: &AppState,
    guild_id: &guildhall_spec::GuildId,
    native: &Value,
) -> DiscordResult<Response> {
    let role_id: RoleId =
        crate::api::parse_id("role id", native["id"].as_str().unwrap_or_default())?;
    let guild = state.guilds.state(guild_id).await?;
    let Some(role) = guild.roles.get(&role_id) else {
        return Err(ApiError::internal("role vanished").into());
    };
    Ok(reply(Render::new(state).role(guild_id, &role_id, role).await?))
}

#[derive(Debug, Deserialize)]
pub(super) struct RolePatch {
    name: Option<String>,
    permissions: Option<Bits>,
    color: Option<u32>,
    hoist: Option<bool>,
    mentionable: Option<bool>,
}

/// `PATCH /guilds/{guild}/roles/{role}`.
pub(super) async fn update_role(
    State(state): State<AppState>,
    auth: DiscordAuth,
    Path((guild, role)): Path<(String, String)>,
    DiscordJson(body): DiscordJson<RolePatch>,
) -> DiscordResult<Response> {
    let (guild_id, _) = member_guild(&state, &auth, &guild).await?;
    let role = role_in(&state, &guild_id, &role).await?;
    let native = guilds::RolePatch {
        name: body.name,
        permissions: body.permissions.as_ref().map(Bits::get).transpose()?,
        position: None,
        color: body.color,
        hoist: body.hoist,
        mentionable: body.mentionable,
    };
    let path = Path((guild_id.to_string(), role.to_string()));
    let Json(updated) =
        guilds::update_role(State(state.clone()), auth.0, path, Json(native)).await?;
    render_role(&state, &guild_id, &updated).await
}

/// `DELETE /guilds/{guild}/roles/{role}`.
pub(super) async fn delete_role(
    State(state): State<AppState>,
    auth: DiscordAuth,
    Path((guild, role)): Path<(String, String)>,
) -> DiscordResult<Response> {
    let (guild_id, _) = member_guild(&state, &auth, &guild).await?;
    let role = role_in(&state, &guild_id, &role).await?;
    guilds::delete_role(State(state), auth.0, Path((guild_id.to_string(), role.to_string())))
        .await?;
    Ok(no_content())
}

#[derive(Debug, Deserialize)]
pub(super) struct MemberPatch {
    #[serde(default, with = "crate::api::users::double_option")]
    nick: Option<Option<String>>,
    roles: Option<Vec<Id>>,
}

/// `PATCH /guilds/{guild}/members/{user}` (and `@me`): nickname and the full role list.
pub(super) async fn update_member(
    State(state): State<AppState>,
    auth: DiscordAuth,
    Path((guild, user)): Path<(String, String)>,
    DiscordJson(body): DiscordJson<MemberPatch>,
) -> DiscordResult<Response> {
    let (guild_id, _) = member_guild(&state, &auth, &guild).await?;
    let user = if user == "@me" { auth.0.user_id.clone() } else { user_of(&state, &user).await? };
    let roles = match body.roles {
        Some(ids) => {
            let mut roles = Vec::new();
            for id in ids.iter().take(250) {
                let role = role_in(&state, &guild_id, &id.get().to_string()).await?;
                if !role.is_everyone() {
                    roles.push(role);
                }
            }
            Some(roles)
        }
        None => None,
    };
    let native = guilds::MemberPatch { nick: body.nick, roles };
    let path = Path((guild_id.to_string(), user.to_string()));
    guilds::update_member(State(state.clone()), auth.0, path, Json(native)).await?;
    let guild = state.guilds.state(&guild_id).await?;
    let Some(member) = guild.members.get(&user) else {
        return Err(ApiError::not_found("unknown_member", "no such member").into());
    };
    Ok(reply(Render::new(&state).member(&guild, &user, member).await?))
}

/// `PATCH /guilds/{guild}/members/@me`.
pub(super) async fn update_own_member(
    state: State<AppState>,
    auth: DiscordAuth,
    Path(guild): Path<String>,
    body: DiscordJson<MemberPatch>,
) -> DiscordResult<Response> {
    update_member(state, auth, Path((guild, "@me".to_owned())), body).await
}

#[derive(Debug, Deserialize)]
pub(super) struct BanPage {
    limit: Option<u32>,
}

/// `GET /guilds/{guild}/bans` (BAN_MEMBERS).
pub(super) async fn bans(
    State(state): State<AppState>,
    auth: DiscordAuth,
    Path(guild): Path<String>,
    DiscordQuery(page): DiscordQuery<BanPage>,
) -> DiscordResult<Response> {
    let (guild_id, _) = member_guild(&state, &auth, &guild).await?;
    let Json(native) =
        guilds::bans(State(state.clone()), auth.0, Path(guild_id.to_string())).await?;
    let render = Render::new(&state);
    let limit = page.limit.unwrap_or(1000).clamp(1, 1000) as usize;
    let mut list = Vec::new();
    for ban in native["bans"].as_array().into_iter().flatten().take(limit) {
        if let Ok(user) = UserId::parse(ban["user_id"].as_str().unwrap_or_default()) {
            list.push(json!({"user": render.user(&user).await?, "reason": ban["reason"]}));
        }
    }
    Ok(reply(Value::Array(list)))
}

/// `GET /invites/{code}`.
pub(super) async fn invite(
    State(state): State<AppState>,
    auth: DiscordAuth,
    Path(code): Path<String>,
) -> DiscordResult<Response> {
    let Json(invite) = channels::invite(State(state.clone()), auth.0, Path(code)).await?;
    let guild_id: guildhall_spec::GuildId =
        crate::api::parse_id("guild id", invite["guild_id"].as_str().unwrap_or_default())?;
    let channel_id: ChannelId =
        crate::api::parse_id("channel id", invite["channel_id"].as_str().unwrap_or_default())?;
    let render = Render::new(&state);
    Ok(reply(json!({
        "type": 0,
        "code": invite["code"],
        "guild": {"id": render.guild_id(&guild_id).await?, "name": invite["guild_name"], "icon": null, "features": []},
        "channel": {"id": render.channel_id(&guild_id, &channel_id).await?, "type": GUILD_TEXT, "name": null},
        "approximate_member_count": invite["member_count"],
    })))
}

/// `DELETE /invites/{code}`.
pub(super) async fn revoke_invite(
    State(state): State<AppState>,
    auth: DiscordAuth,
    Path(code): Path<String>,
) -> DiscordResult<Response> {
    channels::revoke_invite(State(state), auth.0, Path(code)).await?;
    Ok(no_content())
}

/// Discord's audit-log reason header, the reason of a moderation event.
fn reason(headers: &HeaderMap) -> Option<guilds::Reason> {
    let reason = headers.get("x-audit-log-reason")?.to_str().ok()?;
    let reason = percent_decode(reason);
    Some(guilds::Reason { reason: Some(reason) })
}

/// `DELETE /guilds/{guild}/members/{user}`: kick.
pub(super) async fn kick(
    State(state): State<AppState>,
    auth: DiscordAuth,
    headers: HeaderMap,
    Path((guild, user)): Path<(String, String)>,
) -> DiscordResult<Response> {
    let (guild_id, _) = member_guild(&state, &auth, &guild).await?;
    let user = user_of(&state, &user).await?;
    let path = Path((guild_id.to_string(), user.to_string()));
    guilds::kick(State(state), auth.0, path, OptionalJson(reason(&headers))).await?;
    Ok(no_content())
}

/// `PUT /guilds/{guild}/bans/{user}`.
pub(super) async fn ban(
    State(state): State<AppState>,
    auth: DiscordAuth,
    headers: HeaderMap,
    Path((guild, user)): Path<(String, String)>,
) -> DiscordResult<Response> {
    let (guild_id, _) = member_guild(&state, &auth, &guild).await?;
    let user = user_of(&state, &user).await?;
    let path = Path((guild_id.to_string(), user.to_string()));
    guilds::ban(State(state), auth.0, path, OptionalJson(reason(&headers))).await?;
    Ok(no_content())
}

/// `DELETE /guilds/{guild}/bans/{user}`.
pub(super) async fn unban(
    State(state): State<AppState>,
    auth: DiscordAuth,
    Path((guild, user)): Path<(String, String)>,
) -> DiscordResult<Response> {
    let (guild_id, _) = member_guild(&state, &auth, &guild).await?;
    let user = user_of(&state, &user).await?;
    guilds::unban(State(state), auth.0, Path((guild_id.to_string(), user.to_string()))).await?;
    Ok(no_content())
}

/// `PUT /guilds/{guild}/members/{user}/roles/{role}`.
pub(super) async fn add_role(
    State(state): State<AppState>,
    auth: DiscordAuth,
    Path((guild, user, role)): Path<(String, String, String)>,
) -> DiscordResult<Response> {
    let (guild_id, _) = member_guild(&state, &auth, &guild).await?;
    let user = user_of(&state, &user).await?;
    let role = role_in(&state, &guild_id, &role).await?;
    let path = Path((guild_id.to_string(), user.to_string(), role.to_string()));
    guilds::add_role(State(state), auth.0, path).await?;
    Ok(no_content())
}

/// `DELETE /guilds/{guild}/members/{user}/roles/{role}`.
pub(super) async fn remove_role(
    State(state): State<AppState>,
    auth: DiscordAuth,
    Path((guild, user, role)): Path<(String, String, String)>,
) -> DiscordResult<Response> {
    let (guild_id, _) = member_guild(&state, &auth, &guild).await?;
    let user = user_of(&state, &user).await?;
    let role = role_in(&state, &guild_id, &role).await?;
    let path = Path((guild_id.to_string(), user.to_string(), role.to_string()));
    guilds::remove_role(State(state), auth.0, path).await?;
    Ok(no_content())
}

/// Decodes `%XX` escapes (Discord's audit-log reason header is URL-encoded).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(high), Some(low)) =
                (bytes.get(i + 1).and_then(|b| hex(*b)), bytes.get(i + 2).and_then(|b| hex(*b)))
        {
            out.push(u8::try_from(high * 16 + low).unwrap_or(b'?'));
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
