//! Guilds, members, bans and roles. Every change is one (or, for reorders, several) events
//! appended to the guild's log through [`crate::guilds::GuildService::submit`].

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use guildhall_spec::content::{
    Empty, EventContent, GuildKind, GuildUpdate, MemberModeration, MemberRef, MemberUpdate,
    RoleCreate, RoleRef, RoleUpdate, ServerBan, ServerUnban,
};
use guildhall_spec::state::GuildState;
use guildhall_spec::{GuildId, MediaId, Permissions, RoleId, ServerName, UserId};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{AuthUser, Json, OptionalJson, parse_id, views};
use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::guilds::random_id;

/// Loads a guild the user is a member of (non-members get `unknown_guild`, so that guild ids
/// cannot be probed).
pub(super) async fn member_guild(
    state: &AppState,
    auth: &AuthUser,
    guild_id: &str,
) -> ApiResult<(GuildId, Arc<GuildState>)> {
    let guild_id: GuildId = parse_id("guild id", guild_id)?;
    let unknown = || ApiError::not_found("unknown_guild", "no such guild");
    let guild_state = state.guilds.state(&guild_id).await.map_err(|_| unknown())?;
    if !guild_state.members.contains_key(&auth.user_id) || guild_state.deleted {
        return Err(unknown());
    }
    Ok((guild_id, guild_state))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateGuild {
    name: String,
}

/// `POST /api/v1/guilds`.
pub(super) async fn create(
    State(state): State<AppState>,
    auth: AuthUser,
    Json(body): Json<CreateGuild>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let owned = owned_guilds(&state, &auth.user_id).await?;
    if owned >= state.config.limits.max_guilds_per_user as usize {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "limit_reached",
            "you own the maximum number of guilds",
        ));
    }
    let (guild_id, _) =
        state.guilds.create_guild(&auth.user_id, &body.name, GuildKind::Guild).await?;
    let guild_state = state.guilds.state(&guild_id).await?;
    Ok((StatusCode::CREATED, Json(views::guild(&guild_state, &auth.user_id, false))))
}

async fn owned_guilds(state: &AppState, user: &UserId) -> ApiResult<usize> {
    let mut owned = 0;
    for guild_id in state.store.guilds_of(user).await? {
        let guild_state = state.guilds.state(&guild_id).await?;
        if &guild_state.owner == user && guild_state.kind == GuildKind::Guild {
            owned += 1;
        }
    }
    Ok(owned)
}

/// `GET /api/v1/guilds/{guild_id}`.
pub(super) async fn get(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(guild_id): Path<String>,
) -> ApiResult<Json<Value>> {
    let (_, guild_state) = member_guild(&state, &auth, &guild_id).await?;
    Ok(Json(views::guild(&guild_state, &auth.user_id, false)))
}

/// `PATCH /api/v1/guilds/{guild_id}`: name, description, icon.
pub(super) async fn update(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(guild_id): Path<String>,
    Json(body): Json<GuildUpdate>,
) -> ApiResult<Json<Value>> {
    let (guild_id, _) = member_guild(&state, &auth, &guild_id).await?;
    if let Some(Some(icon)) = &body.icon {
        // An icon is a picture uploaded to the member's own server first (spec 19).
        let icon: MediaId = parse_id("media id", icon)?;
        crate::media::require_picture(&state, &auth.user_id, &icon).await?;
    }
    let done = state
        .guilds
        .submit(&guild_id, &auth.user_id, EventContent::GuildUpdate(body), None)
        .await?;
    Ok(Json(views::guild(&done.state, &auth.user_id, false)))
}

/// `DELETE /api/v1/guilds/{guild_id}`: the owner closes the guild's log.
pub(super) async fn delete(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(guild_id): Path<String>,
) -> ApiResult<StatusCode> {
    let (guild_id, _) = member_guild(&state, &auth, &guild_id).await?;
    state
        .guilds
        .submit(&guild_id, &auth.user_id, EventContent::GuildDelete(Empty {}), None)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Page {
    after: Option<String>,
    limit: Option<u32>,
}

/// `GET /api/v1/guilds/{guild_id}/members?after=<user id>&limit=<1..=1000>`, ordered by user id.
pub(super) async fn members(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(guild_id): Path<String>,
    Query(page): Query<Page>,
) -> ApiResult<Json<Value>> {
    let (_, guild_state) = member_guild(&state, &auth, &guild_id).await?;
    let limit = page.limit.unwrap_or(100).clamp(1, 1000) as usize;
    let after: Option<UserId> =
        page.after.as_deref().map(|after| parse_id("user id", after)).transpose()?;
    let page: Vec<_> = guild_state
        .members
        .iter()
        .filter(|(id, _)| after.as_ref().is_none_or(|after| *id > after))
        .take(limit)
        .collect();
    let ids: Vec<&UserId> = page.iter().map(|(id, _)| *id).collect();
    let keys = identity_keys(&state, &ids).await?;
    let members: Vec<Value> = page
        .into_iter()
        .map(|(id, member)| {
            let mut view = views::member(&guild_state, id, member);
            view["identity_key"] = json!(keys.get(id));
            view
        })
        .collect();
    Ok(Json(json!({"members": members})))
}

/// `GET /api/v1/guilds/{guild_id}/members/{user_id}`.
pub(super) async fn member(
    State(state): State<AppState>,
    auth: AuthUser,
    Path((guild_id, user_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let (_, guild_state) = member_guild(&state, &auth, &guild_id).await?;
    let user_id: UserId = parse_id("user id", &user_id)?;
    let member = guild_state
        .members
        .get(&user_id)
        .ok_or_else(|| ApiError::not_found("unknown_member", "not a member"))?;
    let keys = identity_keys(&state, &[&user_id]).await?;
    let mut view = views::member(&guild_state, &user_id, member);
    view["identity_key"] = json!(keys.get(&user_id));
    Ok(Json(view))
}

/// The known identity keys of `users`; remote users whose key is not known yet are looked up
/// in the background, so a later read shows them.
pub(super) async fn identity_keys(
    state: &AppState,
    users: &[&UserId],
) -> ApiResult<std::collections::HashMap<UserId, String>> {
    let keys = state.store.identity_keys(users).await?;
    // Remote users are looked up (again) in the background: unknown ones at most once a
    // minute, known ones once their copy is an hour old.
    for user in users.iter().filter(|user| user.server_name() != state.server_name) {
        state.identities.meet(user);
    }
    Ok(keys)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MemberPatch {
    #[serde(default, with = "super::users::double_option")]
    pub(super) nick: Option<Option<String>>,
    pub(super) roles: Option<Vec<RoleId>>,
}

/// `PATCH /api/v1/guilds/{guild_id}/members/{user_id}`: nickname and/or the full role list.
pub(super) async fn update_member(
    State(state): State<AppState>,
    auth: AuthUser,
    Path((guild_id, user_id)): Path<(String, String)>,
    Json(body): Json<MemberPatch>,
) -> ApiResult<Json<Value>> {
    let (guild_id, _) = member_guild(&state, &auth, &guild_id).await?;
    let user_id = me_or(&auth, &user_id)?;
    if body.nick.is_none() && body.roles.is_none() {
        return Err(ApiError::bad_request("nothing to change"));
    }
    let content = EventContent::MemberUpdate(MemberUpdate {
        user_id: user_id.clone(),
        nick: body.nick,
        roles: body.roles,
    });
    let done = state.guilds.submit(&guild_id, &auth.user_id, content, None).await?;
    let member =
        done.state.members.get(&user_id).ok_or_else(|| ApiError::internal("member vanished"))?;
    Ok(Json(views::member(&done.state, &user_id, member)))
}

/// `PATCH /api/v1/guilds/{guild_id}/members/@me`: the static `@me` route shadows `{user_id}`.
pub(super) async fn update_own_member(
    state: State<AppState>,
    auth: AuthUser,
    Path(guild_id): Path<String>,
    body: Json<MemberPatch>,
) -> ApiResult<Json<Value>> {
    update_member(state, auth, Path((guild_id, "@me".to_owned())), body).await
}

fn me_or(auth: &AuthUser, user_id: &str) -> ApiResult<UserId> {
    if user_id == "@me" { Ok(auth.user_id.clone()) } else { parse_id("user id", user_id) }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Reason {
    pub(super) reason: Option<String>,
}

/// `DELETE /api/v1/guilds/{guild_id}/members/{user_id}`: kick.
pub(super) async fn kick(
    State(state): State<AppState>,
    auth: AuthUser,
    Path((guild_id, user_id)): Path<(String, String)>,
    OptionalJson(body): OptionalJson<Reason>,
) -> ApiResult<StatusCode> {
    let (guild_id, _) = member_guild(&state, &auth, &guild_id).await?;
    let user_id: UserId = parse_id("user id", &user_id)?;
    let reason = body.and_then(|body| body.reason);
    state
        .guilds
        .submit(
            &guild_id,
            &auth.user_id,
            EventContent::MemberKick(MemberModeration { user_id, reason }),
            None,
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /api/v1/guilds/{guild_id}/members/@me`: leave.
pub(super) async fn leave(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(guild_id): Path<String>,
) -> ApiResult<StatusCode> {
    let (guild_id, _) = member_guild(&state, &auth, &guild_id).await?;
    state
        .guilds
        .submit(&guild_id, &auth.user_id, EventContent::MemberLeave(Empty {}), None)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `PUT /api/v1/guilds/{guild_id}/members/{user_id}/roles/{role_id}`.
pub(super) async fn add_role(
    State(state): State<AppState>,
    auth: AuthUser,
    Path((guild_id, user_id, role_id)): Path<(String, String, String)>,
) -> ApiResult<StatusCode> {
    change_role(state, auth, guild_id, user_id, role_id, true).await
}

/// `DELETE /api/v1/guilds/{guild_id}/members/{user_id}/roles/{role_id}`.
pub(super) async fn remove_role(
    State(state): State<AppState>,
    auth: AuthUser,
    Path((guild_id, user_id, role_id)): Path<(String, String, String)>,
) -> ApiResult<StatusCode> {
    change_role(state, auth, guild_id, user_id, role_id, false).await
}

async fn change_role(
    state: AppState,
    auth: AuthUser,
    guild_id: String,
    user_id: String,
    role_id: String,
    add: bool,
) -> ApiResult<StatusCode> {
    let (guild_id, _) = member_guild(&state, &auth, &guild_id).await?;
    let user_id = me_or(&auth, &user_id)?;
    let role_id: RoleId = parse_id("role id", &role_id)?;
    // The member's role list is read and rewritten at the head under the guild's write lock:
    // concurrent grants never undo each other.
    let change = |guild_state: &GuildState| {
        let member = guild_state
            .members
            .get(&user_id)
            .ok_or_else(|| ApiError::not_found("unknown_member", "not a member"))?;
        if !guild_state.roles.contains_key(&role_id) {
            return Err(ApiError::not_found("unknown_role", "no such role"));
        }
        let mut roles = member.roles.clone();
        if roles.contains(&role_id) == add {
            return Ok(None);
        }
        if add {
            roles.push(role_id.clone());
        } else {
            roles.retain(|role| role != &role_id);
        }
        let update = MemberUpdate { user_id: user_id.clone(), nick: None, roles: Some(roles) };
        Ok(Some(EventContent::MemberUpdate(update)))
    };
    state.guilds.submit_computed(&guild_id, &auth.user_id, change).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/v1/guilds/{guild_id}/bans` (needs BAN_MEMBERS).
pub(super) async fn bans(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(guild_id): Path<String>,
) -> ApiResult<Json<Value>> {
    let (_, guild_state) = member_guild(&state, &auth, &guild_id).await?;
    if !guild_state.base_permissions(&auth.user_id).contains(Permissions::BAN_MEMBERS) {
        return Err(ApiError::forbidden("requires BAN_MEMBERS"));
    }
    let bans: Vec<Value> = guild_state
        .bans
        .iter()
        .map(|(user, ban)| json!({"user_id": user, "reason": ban.reason, "by": ban.by}))
        .collect();
    let servers: Vec<Value> = guild_state
        .server_bans
        .iter()
        .map(|(server, ban)| json!({"server": server, "reason": ban.reason, "by": ban.by}))
        .collect();
    Ok(Json(json!({"bans": bans, "server_bans": servers})))
}

/// `PUT /api/v1/guilds/{guild_id}/bans/{user_id}` with an optional `{"reason"}`.
pub(super) async fn ban(
    State(state): State<AppState>,
    auth: AuthUser,
    Path((guild_id, user_id)): Path<(String, String)>,
    OptionalJson(body): OptionalJson<Reason>,
) -> ApiResult<StatusCode> {
    let (guild_id, _) = member_guild(&state, &auth, &guild_id).await?;
    let user_id: UserId = parse_id("user id", &user_id)?;
    let reason = body.and_then(|body| body.reason);
    state
        .guilds
        .submit(
            &guild_id,
            &auth.user_id,
            EventContent::MemberBan(MemberModeration { user_id, reason }),
            None,
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /api/v1/guilds/{guild_id}/bans/{user_id}`.
pub(super) async fn unban(
    State(state): State<AppState>,
    auth: AuthUser,
    Path((guild_id, user_id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let (guild_id, _) = member_guild(&state, &auth, &guild_id).await?;
    let user_id: UserId = parse_id("user id", &user_id)?;
    state
        .guilds
        .submit(&guild_id, &auth.user_id, EventContent::MemberUnban(MemberRef { user_id }), None)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `PUT /api/v1/guilds/{guild_id}/server-bans/{server}` with an optional `{"reason"}`: no user
/// of that server may take part in the guild (BAN_MEMBERS; the host enforces it).
pub(super) async fn server_ban(
    State(state): State<AppState>,
    auth: AuthUser,
    Path((guild_id, server)): Path<(String, String)>,
    OptionalJson(body): OptionalJson<Reason>,
) -> ApiResult<StatusCode> {
    let (guild_id, _) = member_guild(&state, &auth, &guild_id).await?;
    let server: ServerName = parse_id("server name", &server)?;
    let reason = body.and_then(|body| body.reason);
    state
        .guilds
        .submit(
            &guild_id,
            &auth.user_id,
            EventContent::ServerBan(ServerBan { server, reason }),
            None,
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /api/v1/guilds/{guild_id}/server-bans/{server}`.
pub(super) async fn server_unban(
    State(state): State<AppState>,
    auth: AuthUser,
    Path((guild_id, server)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let (guild_id, _) = member_guild(&state, &auth, &guild_id).await?;
    let server: ServerName = parse_id("server name", &server)?;
    state
        .guilds
        .submit(&guild_id, &auth.user_id, EventContent::ServerUnban(ServerUnban { server }), None)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/v1/guilds/{guild_id}/roles`, lowest first.
pub(super) async fn roles(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(guild_id): Path<String>,
) -> ApiResult<Json<Value>> {
    let (_, guild_state) = member_guild(&state, &auth, &guild_id).await?;
    let mut roles: Vec<Value> =
        guild_state.roles.iter().map(|(id, role)| views::role(id, role)).collect();
    roles.sort_by_key(|role| role["position"].as_i64());
    Ok(Json(json!({"roles": roles})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewRole {
    pub(super) name: String,
    #[serde(default)]
    pub(super) permissions: Permissions,
    pub(super) position: Option<i64>,
    pub(super) color: Option<u32>,
    pub(super) hoist: Option<bool>,
    pub(super) mentionable: Option<bool>,
}

/// `POST /api/v1/guilds/{guild_id}/roles`. Without a position the role goes just above
/// @everyone's other roles' lowest free slot: position 1 when free, else one above the highest
/// role the creator outranks.
pub(super) async fn create_role(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(guild_id): Path<String>,
    Json(body): Json<NewRole>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let (guild_id, guild_state) = member_guild(&state, &auth, &guild_id).await?;
    let role_id =
        RoleId::parse(&random_id(crate::guilds::RANDOM_ID_CHARS)).map_err(ApiError::internal)?;
    let position = body.position.unwrap_or(1);
    let content = EventContent::RoleCreate(RoleCreate {
        role_id: role_id.clone(),
        name: body.name,
        permissions: body.permissions,
        position,
        color: body.color,
        hoist: body.hoist,
        mentionable: body.mentionable,
    });
    drop(guild_state);
    let done = state.guilds.submit(&guild_id, &auth.user_id, content, None).await?;
    let role = done.state.roles.get(&role_id).ok_or_else(|| ApiError::internal("role vanished"))?;
    Ok((StatusCode::CREATED, Json(views::role(&role_id, role))))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RolePatch {
    pub(super) name: Option<String>,
    pub(super) permissions: Option<Permissions>,
    pub(super) position: Option<i64>,
    pub(super) color: Option<u32>,
    pub(super) hoist: Option<bool>,
    pub(super) mentionable: Option<bool>,
}

/// `PATCH /api/v1/guilds/{guild_id}/roles/{role_id}`.
pub(super) async fn update_role(
    State(state): State<AppState>,
    auth: AuthUser,
    Path((guild_id, role_id)): Path<(String, String)>,
    Json(body): Json<RolePatch>,
) -> ApiResult<Json<Value>> {
    let (guild_id, _) = member_guild(&state, &auth, &guild_id).await?;
    let role_id: RoleId = parse_id("role id", &role_id)?;
    let content = EventContent::RoleUpdate(RoleUpdate {
        role_id: role_id.clone(),
        name: body.name,
        permissions: body.permissions,
        position: body.position,
        color: body.color,
        hoist: body.hoist,
        mentionable: body.mentionable,
    });
    let done = state.guilds.submit(&guild_id, &auth.user_id, content, None).await?;
    let role = done.state.roles.get(&role_id).ok_or_else(|| ApiError::internal("role vanished"))?;
    Ok(Json(views::role(&role_id, role)))
}

/// `DELETE /api/v1/guilds/{guild_id}/roles/{role_id}`.
pub(super) async fn delete_role(
    State(state): State<AppState>,
    auth: AuthUser,
    Path((guild_id, role_id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let (guild_id, _) = member_guild(&state, &auth, &guild_id).await?;
    let role_id: RoleId = parse_id("role id", &role_id)?;
    state
        .guilds
        .submit(&guild_id, &auth.user_id, EventContent::RoleDelete(RoleRef { role_id }), None)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Position<Id> {
    pub(super) id: Id,
    pub(super) position: i64,
}

/// `PATCH /api/v1/guilds/{guild_id}/roles` with `[{"id", "position"}]`: one `role.update` per
/// moved role, each authorized on its own, stopping at the first refusal.
pub(super) async fn reorder_roles(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(guild_id): Path<String>,
    Json(body): Json<Vec<Position<RoleId>>>,
) -> ApiResult<Json<Value>> {
    let (guild_id, guild_state) = member_guild(&state, &auth, &guild_id).await?;
    if body.len() > 250 {
        return Err(ApiError::bad_request("too many roles"));
    }
    for entry in &body {
        if !guild_state.roles.contains_key(&entry.id) {
            return Err(ApiError::not_found("unknown_role", format!("no role {}", entry.id)));
        }
    }
    for entry in body {
        if guild_state.roles.get(&entry.id).is_some_and(|role| role.position == entry.position) {
            continue;
        }
        let content = EventContent::RoleUpdate(RoleUpdate {
            role_id: entry.id,
            name: None,
            permissions: None,
            position: Some(entry.position),
            color: None,
            hoist: None,
            mentionable: None,
        });
        state.guilds.submit(&guild_id, &auth.user_id, content, None).await?;
    }
    roles(State(state), auth, Path(guild_id.to_string())).await
}
