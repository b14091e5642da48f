//! `/api/v10`: Discord's REST routes, translated onto the native handlers.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use guildhall_spec::content::GuildKind;
use guildhall_spec::state::GuildState;
use guildhall_spec::{ChannelId, EventId, GuildId, RoleId, UserId};
use serde::Deserialize;
use serde_json::{Value, json};

use super::objects::Render;
use super::snowflake::Target;
use super::{DiscordAuth, DiscordError, DiscordJson, DiscordQuery, DiscordResult};
use super::{manage, messages};
use crate::AppState;
use crate::api::{Json, channels, guilds, social};
use crate::error::ApiError;

pub(super) fn router() -> Router<AppState> {
    let router = Router::new()
        .route("/users/@me", get(me))
        .route("/users/@me/guilds", get(my_guilds))
        .route("/users/@me/guilds/{guild}", axum::routing::delete(leave_guild))
        .route("/users/@me/channels", post(open_dm))
        .route("/users/{user}", get(user))
        .route("/oauth2/applications/@me", get(application))
        .route("/applications/@me", get(application))
        .route("/gateway", get(gateway))
        .route("/gateway/bot", get(gateway_bot))
        .route("/guilds/{guild}", get(guild))
        .route("/guilds/{guild}/channels", get(guild_channels).post(manage::create_channel))
        .route("/guilds/{guild}/roles", get(guild_roles).post(manage::create_role))
        .route(
            "/guilds/{guild}/roles/{role}",
            axum::routing::patch(manage::update_role).delete(manage::delete_role),
        )
        .route("/guilds/{guild}/members", get(guild_members))
        .route("/guilds/{guild}/members/@me", axum::routing::patch(manage::update_own_member))
        .route(
            "/guilds/{guild}/members/{user}",
            get(guild_member).patch(manage::update_member).delete(manage::kick),
        )
        .route(
            "/guilds/{guild}/members/{user}/roles/{role}",
            put(manage::add_role).delete(manage::remove_role),
        )
        .route("/guilds/{guild}/bans", get(manage::bans))
        .route("/guilds/{guild}/bans/{user}", put(manage::ban).delete(manage::unban))
        .route(
            "/channels/{channel}",
            get(channel).patch(manage::update_channel).delete(manage::delete_channel),
        )
        .route(
            "/channels/{channel}/permissions/{target}",
            put(manage::set_overwrite).delete(manage::delete_overwrite),
        )
        .route("/channels/{channel}/invites", post(manage::create_invite))
        .route("/invites/{code}", get(manage::invite).delete(manage::revoke_invite))
        .route("/channels/{channel}/typing", post(typing))
        .route("/channels/{channel}/messages", get(messages::history).post(messages::send))
        .route(
            "/channels/{channel}/messages/{message}",
            get(messages::message).patch(messages::edit).delete(messages::delete),
        )
        .route("/channels/{channel}/messages/{message}/reactions/{emoji}", get(messages::reactors))
        .route(
            "/channels/{channel}/messages/{message}/reactions/{emoji}/@me",
            put(messages::react).delete(messages::unreact),
        )
        .route("/channels/{channel}/pins", get(messages::pins))
        .route("/channels/{channel}/pins/{message}", put(messages::pin).delete(messages::unpin))
        .route("/channels/{channel}/messages/pins", get(messages::pins))
        .route(
            "/channels/{channel}/messages/pins/{message}",
            put(messages::pin).delete(messages::unpin),
        )
        .fallback(|| async { DiscordError(ApiError::not_found("not_found", "no such endpoint")) });
    router.layer(axum::middleware::from_fn(scope_channels))
}

/// Gives every request a slot for the guild its channel is in (see
/// [`channels::CHANNEL_SCOPE`]).
async fn scope_channels(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    channels::CHANNEL_SCOPE.scope(std::sync::OnceLock::new(), next.run(request)).await
}

/// A JSON answer with exactly `Content-Type: application/json`.
pub(super) fn reply(value: Value) -> Response {
    axum::Json(value).into_response()
}

pub(super) fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

/// A snowflake from a path or body: digits, as Discord sends them.
pub(super) fn snowflake(text: &str) -> DiscordResult<u64> {
    text.parse::<u64>()
        .map_err(|_| DiscordError(ApiError::bad_request(format!("{text:?} is not a snowflake"))))
}

/// A snowflake in a JSON body: a string of digits or a number.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(untagged)]
pub(super) enum Id {
    Text(#[serde(deserialize_with = "digits")] u64),
    Number(u64),
}

fn digits<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    let text = String::deserialize(deserializer)?;
    text.parse().map_err(serde::de::Error::custom)
}

impl Id {
    pub(super) fn get(self) -> u64 {
        match self {
            Self::Text(id) | Self::Number(id) => id,
        }
    }
}

pub(super) async fn resolve(state: &AppState, text: &str) -> DiscordResult<Option<Target>> {
    Ok(state.snowflakes.resolve(snowflake(text)?).await?)
}

pub(super) async fn user_of(state: &AppState, text: &str) -> DiscordResult<UserId> {
    match resolve(state, text).await? {
        Some(Target::User(user)) => Ok(user),
        _ => Err(ApiError::not_found("unknown_user", "no such user").into()),
    }
}

/// A guild the user is a member of.
pub(super) async fn member_guild(
    state: &AppState,
    auth: &DiscordAuth,
    text: &str,
) -> DiscordResult<(GuildId, Arc<GuildState>)> {
    let Some(Target::Guild(guild)) = resolve(state, text).await? else {
        return Err(ApiError::not_found("unknown_guild", "no such guild").into());
    };
    Ok(guilds::member_guild(state, &auth.0, guild.as_str()).await?)
}

/// A channel the user can see. The native lookup goes by channel id; it must land in the
/// guild the snowflake names, or the channel is unknown.
pub(super) async fn visible_channel(
    state: &AppState,
    auth: &DiscordAuth,
    text: &str,
) -> DiscordResult<(GuildId, ChannelId, Arc<GuildState>)> {
    let unknown = || DiscordError(ApiError::not_found("unknown_channel", "no such channel"));
    let Some(Target::Channel(guild, channel)) = resolve(state, text).await? else {
        return Err(unknown());
    };
    // The native handlers this request calls look the channel up in this guild only.
    let _ = channels::CHANNEL_SCOPE.try_with(|scope| scope.set(guild.clone()));
    let found = channels::visible_channel(state, &auth.0, channel.as_str()).await?;
    if found.0 != guild {
        return Err(unknown());
    }
    Ok(found)
}

/// A message of the guild a channel is in.
pub(super) async fn message_in(
    state: &AppState,
    guild: &GuildId,
    text: &str,
) -> DiscordResult<EventId> {
    match resolve(state, text).await? {
        Some(Target::Message(of, message)) if &of == guild => Ok(message),
        _ => Err(ApiError::not_found("unknown_message", "no such message").into()),
    }
}

pub(super) async fn role_in(
    state: &AppState,
    guild: &GuildId,
    text: &str,
) -> DiscordResult<RoleId> {
    match resolve(state, text).await? {
        Some(Target::Role(of, role)) if &of == guild => Ok(role),
        Some(Target::Guild(of)) if &of == guild => Ok(RoleId::everyone()),
        _ => Err(ApiError::not_found("unknown_role", "no such role").into()),
    }
}

/// `GET /users/@me`.
async fn me(State(state): State<AppState>, auth: DiscordAuth) -> DiscordResult<Response> {
    let mut view = Render::new(&state).user(&auth.0.user_id).await?;
    view["verified"] = json!(true);
    view["mfa_enabled"] = json!(false);
    view["locale"] = json!("en-US");
    view["email"] = Value::Null;
    Ok(reply(view))
}

/// `GET /users/{user}`.
async fn user(
    State(state): State<AppState>,
    _auth: DiscordAuth,
    Path(user): Path<String>,
) -> DiscordResult<Response> {
    let user = user_of(&state, &user).await?;
    Ok(reply(Render::new(&state).user(&user).await?))
}

/// `GET /users/@me/guilds`: partial guilds.
async fn my_guilds(State(state): State<AppState>, auth: DiscordAuth) -> DiscordResult<Response> {
    let render = Render::new(&state);
    let mut list = Vec::new();
    for guild_id in state.store.guilds_of(&auth.0.user_id).await? {
        let guild = state.guilds.state(&guild_id).await?;
        if guild.kind == GuildKind::Dm || guild.deleted {
            continue;
        }
        list.push(json!({
            "id": render.guild_id(&guild_id).await?,
            "name": guild.name,
            "icon": null,
            "banner": null,
            "owner": guild.owner == auth.0.user_id,
            "permissions": guild.base_permissions(&auth.0.user_id).bits().to_string(),
            "features": [],
        }));
    }
    Ok(reply(Value::Array(list)))
}

/// `DELETE /users/@me/guilds/{guild}`.
async fn leave_guild(
    State(state): State<AppState>,
    auth: DiscordAuth,
    Path(guild): Path<String>,
) -> DiscordResult<Response> {
    let (guild_id, _) = member_guild(&state, &auth, &guild).await?;
    guilds::leave(State(state), auth.0, Path(guild_id.to_string())).await?;
    Ok(no_content())
}

#[derive(Debug, Deserialize)]
struct OpenDm {
    recipient_id: Id,
}

/// `POST /users/@me/channels` with `{"recipient_id"}`.
async fn open_dm(
    State(state): State<AppState>,
    auth: DiscordAuth,
    DiscordJson(body): DiscordJson<OpenDm>,
) -> DiscordResult<Response> {
    let recipient = user_of(&state, &body.recipient_id.get().to_string()).await?;
    let axum_body = social::OpenDm { recipient };
    let Json(view) =
        social::open_direct_message(State(state.clone()), auth.0.clone(), Json(axum_body)).await?;
    let guild_id: GuildId = crate::api::parse_id("guild id", view["id"].as_str().unwrap_or(""))?;
    let guild = state.guilds.state(&guild_id).await?;
    let Some(channel_id) = guild.channels.keys().next() else {
        return Err(ApiError::internal("a DM without a channel").into());
    };
    let mut view = Render::new(&state).dm_channel(&guild, channel_id).await?;
    // Discord lists the other participants only.
    let me = Render::new(&state).user_id(&auth.0.user_id).await?;
    if let Some(recipients) = view["recipients"].as_array_mut() {
        recipients.retain(|user| user["id"] != me);
    }
    Ok(reply(view))
}

/// `GET /oauth2/applications/@me`: the bot's application.
async fn application(State(state): State<AppState>, auth: DiscordAuth) -> DiscordResult<Response> {
    let Some(application) = state.store.application_of_bot(&auth.0.user_id).await? else {
        return Err(ApiError::not_found("unknown_application", "this token is not a bot's").into());
    };
    Ok(reply(super::bots::application_object(&state, &application).await?))
}

/// `GET /gateway`.
async fn gateway(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let mut response = reply(json!({"url": super::gateway_url(&state, &headers)}));
    // Built from the request's Host: no shared cache may keep it for others.
    response.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    response
}

/// `GET /gateway/bot`: one shard is enough for any guild count this server hosts for a bot;
/// a bot that asks for more gets them (`AutoShardedBot` follows `shards`).
async fn gateway_bot(
    State(state): State<AppState>,
    auth: DiscordAuth,
    headers: HeaderMap,
) -> DiscordResult<Response> {
    let guilds = state.store.guilds_of(&auth.0.user_id).await?.len();
    let shards = guilds.div_ceil(crate::gateway::discord::GUILDS_PER_SHARD).max(1);
    Ok(reply(json!({
        "url": super::gateway_url(&state, &headers),
        "shards": shards,
        "session_start_limit": {
            "total": 1000, "remaining": 1000, "reset_after": 86_400_000, "max_concurrency": 1,
        },
    })))
}

/// `GET /guilds/{guild}`.
async fn guild(
    State(state): State<AppState>,
    auth: DiscordAuth,
    Path(guild): Path<String>,
) -> DiscordResult<Response> {
    let (_, guild) = member_guild(&state, &auth, &guild).await?;
    Ok(reply(Render::new(&state).guild(&guild, &auth.0.user_id, false, false).await?))
}

/// `GET /guilds/{guild}/channels`: those the user can see.
async fn guild_channels(
    State(state): State<AppState>,
    auth: DiscordAuth,
    Path(guild): Path<String>,
) -> DiscordResult<Response> {
    let (_, guild) = member_guild(&state, &auth, &guild).await?;
    let view = Render::new(&state).guild(&guild, &auth.0.user_id, true, false).await?;
    Ok(reply(view["channels"].clone()))
}

/// `GET /guilds/{guild}/roles`.
async fn guild_roles(
    State(state): State<AppState>,
    auth: DiscordAuth,
    Path(guild): Path<String>,
) -> DiscordResult<Response> {
    let (_, guild) = member_guild(&state, &auth, &guild).await?;
    let view = Render::new(&state).guild(&guild, &auth.0.user_id, false, false).await?;
    Ok(reply(view["roles"].clone()))
}

#[derive(Debug, Deserialize)]
struct MemberPage {
    limit: Option<u32>,
    after: Option<String>,
}

/// `GET /guilds/{guild}/members?limit=&after=`: ordered by snowflake, as on Discord. A bot
/// needs the members intent for it.
async fn guild_members(
    State(state): State<AppState>,
    auth: DiscordAuth,
    Path(guild): Path<String>,
    DiscordQuery(page): DiscordQuery<MemberPage>,
) -> DiscordResult<Response> {
    super::bots::require_intent(&state, &auth.0.user_id, super::bots::GUILD_MEMBERS).await?;
    let (_, guild) = member_guild(&state, &auth, &guild).await?;
    let limit = page.limit.unwrap_or(1).clamp(1, 1000) as usize;
    let after = match page.after.as_deref() {
        Some(after) => snowflake(after)?,
        None => 0,
    };
    let render = Render::new(&state);
    let mut members = Vec::new();
    for user_id in guild.members.keys() {
        members.push((state.snowflakes.user(user_id).await?, user_id));
    }
    members.sort();
    let mut list = Vec::new();
    for (_, user_id) in members.into_iter().filter(|(id, _)| *id > after).take(limit) {
        if let Some(member) = guild.members.get(user_id) {
            list.push(render.member(&guild, user_id, member).await?);
        }
    }
    Ok(reply(Value::Array(list)))
}

/// `GET /guilds/{guild}/members/{user}`.
async fn guild_member(
    State(state): State<AppState>,
    auth: DiscordAuth,
    Path((guild, user)): Path<(String, String)>,
) -> DiscordResult<Response> {
    let (_, guild) = member_guild(&state, &auth, &guild).await?;
    let user = user_of(&state, &user).await?;
    let Some(member) = guild.members.get(&user) else {
        return Err(ApiError::not_found("unknown_member", "no such member").into());
    };
    Ok(reply(Render::new(&state).member(&guild, &user, member).await?))
}

/// `GET /channels/{channel}`.
async fn channel(
    State(state): State<AppState>,
    auth: DiscordAuth,
    Path(channel): Path<String>,
) -> DiscordResult<Response> {
    let (_, channel_id, guild) = visible_channel(&state, &auth, &channel).await?;
    let Some(channel) = guild.channels.get(&channel_id) else {
        return Err(ApiError::not_found("unknown_channel", "no such channel").into());
    };
    let mut view = Render::new(&state).channel(&guild, &channel_id, channel).await?;
    if guild.kind == GuildKind::Dm {
        let me = Render::new(&state).user_id(&auth.0.user_id).await?;
        if let Some(recipients) = view["recipients"].as_array_mut() {
            recipients.retain(|user| user["id"] != me);
        }
    }
    Ok(reply(view))
}

/// `POST /channels/{channel}/typing`.
async fn typing(
    State(state): State<AppState>,
    auth: DiscordAuth,
    Path(channel): Path<String>,
) -> DiscordResult<Response> {
    let (_, channel_id, _) = visible_channel(&state, &auth, &channel).await?;
    channels::typing(State(state), auth.0, Path(channel_id.to_string())).await?;
    Ok(no_content())
}
