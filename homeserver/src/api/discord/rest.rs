//! `/api/v10`: Discord's REST routes, translated onto the native handlers.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use guildhall_spec::content::GuildKind;
use guildhall_spec::state::GuildState;
use guildhall_spec::{ChannelId, EventId, GuildId, RoleId, TxnId, UserId};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::manage;
use super::objects::Render;
use super::snowflake::Target;
use super::{DiscordAuth, DiscordError, DiscordJson, DiscordQuery, DiscordResult};
use crate::AppState;
use crate::api::{Json, OptionalJson, channels, guilds, messages, social};
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
            get(guild_member).patch(manage::update_member).delete(kick),
        )
        .route("/guilds/{guild}/members/{user}/roles/{role}", put(add_role).delete(remove_role))
        .route("/guilds/{guild}/bans", get(manage::bans))
        .route("/guilds/{guild}/bans/{user}", put(ban).delete(unban))
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
        .route("/channels/{channel}/messages", get(history).post(send))
        .route("/channels/{channel}/messages/{message}", get(message).patch(edit).delete(delete))
        .route("/channels/{channel}/messages/{message}/reactions/{emoji}", get(reactors))
        .route(
            "/channels/{channel}/messages/{message}/reactions/{emoji}/@me",
            put(react).delete(unreact),
        )
        .route("/channels/{channel}/pins", get(pins))
        .route("/channels/{channel}/pins/{message}", put(pin).delete(unpin))
        .route("/channels/{channel}/messages/pins", get(pins))
        .route("/channels/{channel}/messages/pins/{message}", put(pin).delete(unpin))
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
async fn message_in(state: &AppState, guild: &GuildId, text: &str) -> DiscordResult<EventId> {
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

/// Discord's audit-log reason header, the reason of a moderation event.
fn reason(headers: &HeaderMap) -> Option<guilds::Reason> {
    let reason = headers.get("x-audit-log-reason")?.to_str().ok()?;
    let reason = percent_decode(reason);
    Some(guilds::Reason { reason: Some(reason) })
}

/// `DELETE /guilds/{guild}/members/{user}`: kick.
async fn kick(
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
async fn ban(
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
async fn unban(
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
async fn add_role(
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
async fn remove_role(
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

#[derive(Debug, Deserialize)]
struct History {
    limit: Option<u32>,
    before: Option<String>,
    after: Option<String>,
    around: Option<String>,
}

/// `GET /channels/{channel}/messages?limit=&before=&after=`: newest first.
async fn history(
    State(state): State<AppState>,
    auth: DiscordAuth,
    Path(channel): Path<String>,
    DiscordQuery(query): DiscordQuery<History>,
) -> DiscordResult<Response> {
    let (guild_id, channel_id, guild) = visible_channel(&state, &auth, &channel).await?;
    if query.around.is_some() {
        return Err(ApiError::bad_request("around is not supported; use before or after").into());
    }
    let anchor = async |text: &Option<String>| -> DiscordResult<Option<String>> {
        match text {
            Some(text) => Ok(Some(message_in(&state, &guild_id, text).await?.to_string())),
            None => Ok(None),
        }
    };
    let native = messages::History {
        before: anchor(&query.before).await?,
        after: anchor(&query.after).await?,
        limit: Some(query.limit.unwrap_or(50).clamp(1, 100)),
    };
    let Json(page) = messages::list(
        State(state.clone()),
        auth.0.clone(),
        Path(channel_id.to_string()),
        Query(native),
    )
    .await?;
    let render = Render::new(&state);
    let blind = Blind::of(&state, &auth, &guild).await?;
    let mut list = Vec::new();
    for native in page["messages"].as_array().into_iter().flatten() {
        let mut view = render.message(native, Some(&guild)).await?;
        blind.apply(&mut view);
        list.push(view);
    }
    Ok(reply(Value::Array(list)))
}

/// `GET /channels/{channel}/messages/{message}`.
async fn message(
    State(state): State<AppState>,
    auth: DiscordAuth,
    Path((channel, message)): Path<(String, String)>,
) -> DiscordResult<Response> {
    let (guild_id, channel_id, guild) = visible_channel(&state, &auth, &channel).await?;
    let message = message_in(&state, &guild_id, &message).await?;
    let path = Path((channel_id.to_string(), message.to_string()));
    let blind = Blind::of(&state, &auth, &guild).await?;
    let Json(native) = messages::get(State(state.clone()), auth.0, path).await?;
    let mut view = Render::new(&state).message(&native, Some(&guild)).await?;
    blind.apply(&mut view);
    Ok(reply(view))
}

/// For a bot without the message-content intent: whose view of content to blank.
struct Blind(Option<Value>);

impl Blind {
    async fn of(state: &AppState, auth: &DiscordAuth, guild: &GuildState) -> DiscordResult<Self> {
        let sees = guild.kind == GuildKind::Dm
            || super::bots::sees_content(state, &auth.0.user_id).await?;
        if sees {
            return Ok(Self(None));
        }
        Ok(Self(Some(Render::new(state).user_id(&auth.0.user_id).await?)))
    }

    fn apply(&self, view: &mut Value) {
        if let Some(viewer) = &self.0 {
            super::objects::redact_content(view, viewer);
        }
    }
}

#[derive(Debug, Deserialize)]
struct MessageReference {
    message_id: Option<Id>,
    /// Whether a reply to an unknown message fails (the default) or is sent as a plain message.
    fail_if_not_exists: Option<bool>,
}

/// Discord's `allowed_mentions`: whom a message may ping.
#[derive(Debug, Deserialize)]
struct AllowedMentions {
    #[serde(default)]
    parse: Vec<String>,
    #[serde(default)]
    users: Vec<Id>,
}

impl AllowedMentions {
    fn allowed(&self) -> super::objects::Allowed {
        if self.parse.iter().any(|kind| kind == "users") {
            super::objects::Allowed::All
        } else {
            super::objects::Allowed::Only(self.users.iter().take(100).map(|id| id.get()).collect())
        }
    }
}

/// Message flags that change nothing here: SUPPRESS_EMBEDS (no embeds are made) and
/// SUPPRESS_NOTIFICATIONS (this server sends no push notifications).
const HARMLESS_FLAGS: u64 = (1 << 2) | (1 << 12);

/// Discord's message body (JSON). Fields this server does not have are refused when they
/// carry something, rather than dropped.
#[derive(Debug, Deserialize)]
struct CreateMessage {
    #[serde(default)]
    content: Option<String>,
    nonce: Option<Nonce>,
    #[serde(default)]
    enforce_nonce: bool,
    message_reference: Option<MessageReference>,
    allowed_mentions: Option<AllowedMentions>,
    #[serde(default)]
    tts: bool,
    #[serde(default)]
    flags: u64,
    #[serde(default)]
    embeds: Vec<Value>,
    #[serde(default)]
    components: Vec<Value>,
    #[serde(default)]
    sticker_ids: Vec<Value>,
    #[serde(default)]
    attachments: Vec<Value>,
    poll: Option<Value>,
}

/// Discord's nonce: an integer or a string of at most 25 characters.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum Nonce {
    Number(i64),
    Text(String),
}

impl Nonce {
    fn text(&self) -> String {
        match self {
            Self::Number(number) => number.to_string(),
            Self::Text(text) => text.clone(),
        }
    }
}

fn unsupported(what: &str) -> DiscordError {
    DiscordError(ApiError::bad_request(format!("{what} are not supported by this server")))
}

/// The native idempotency key of an `enforce_nonce` send: the nonce, scoped to the channel
/// (a nonce reused in another channel is another message, as on Discord).
fn txn_id(guild: &GuildId, channel: &ChannelId, nonce: &str) -> DiscordResult<TxnId> {
    let digest = Sha256::digest(format!("{guild}\n{channel}\n{nonce}").as_bytes());
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    TxnId::parse(&format!("discord.{hex}")).map_err(|_| DiscordError(ApiError::internal("txn id")))
}

/// `POST /channels/{channel}/messages`.
async fn send(
    State(state): State<AppState>,
    auth: DiscordAuth,
    Path(channel): Path<String>,
    body: Result<Json<CreateMessage>, ApiError>,
) -> DiscordResult<Response> {
    let Json(body) = body.map_err(|error| {
        if error.code() == "unsupported_media_type" {
            unsupported("file uploads (multipart bodies)")
        } else {
            DiscordError(error)
        }
    })?;
    let (guild_id, channel_id, guild) = visible_channel(&state, &auth, &channel).await?;
    if !body.embeds.is_empty() {
        return Err(unsupported("embeds"));
    }
    if !body.components.is_empty() {
        return Err(unsupported("components"));
    }
    if !body.sticker_ids.is_empty() || body.poll.is_some() {
        return Err(unsupported("stickers and polls"));
    }
    if !body.attachments.is_empty() {
        return Err(unsupported("attachments"));
    }
    if body.tts {
        return Err(unsupported("text-to-speech messages"));
    }
    if body.flags & !HARMLESS_FLAGS != 0 {
        return Err(unsupported("those message flags"));
    }
    let content = body.content.unwrap_or_default();
    if content.trim().is_empty() {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "empty_message", "empty message").into());
    }
    let nonce = body.nonce.as_ref().map(Nonce::text);
    if nonce.as_ref().is_some_and(|nonce| nonce.chars().count() > 25) {
        return Err(ApiError::bad_request("nonce is at most 25 characters").into());
    }
    let txn = match (&nonce, body.enforce_nonce) {
        (Some(nonce), true) => Some(txn_id(&guild_id, &channel_id, nonce)?.to_string()),
        _ => None,
    };
    let reply_to = match &body.message_reference {
        Some(MessageReference { message_id: Some(id), fail_if_not_exists }) => {
            match message_in(&state, &guild_id, &id.get().to_string()).await {
                Ok(message) => Some(message),
                Err(_) if *fail_if_not_exists == Some(false) => None,
                Err(error) => return Err(error),
            }
        }
        _ => None,
    };
    let allowed = body.allowed_mentions.as_ref().map(AllowedMentions::allowed).unwrap_or_default();
    let render = Render::new(&state);
    let native_body = messages::NewMessage {
        content: render.incoming_mentions(&content, &allowed).await?,
        reply_to,
        nonce: txn,
        attachments: Vec::new(),
    };
    let (_, Json(native)) = messages::send(
        State(state.clone()),
        auth.0,
        Path(channel_id.to_string()),
        Json(native_body),
    )
    .await?;
    let mut view = render.message(&native, Some(&guild)).await?;
    if let Some(nonce) = nonce {
        view["nonce"] = json!(nonce);
    }
    Ok(reply(view))
}

#[derive(Debug, Deserialize)]
struct EditMessage {
    content: Option<String>,
    #[serde(default)]
    embeds: Vec<Value>,
}

/// `PATCH /channels/{channel}/messages/{message}`.
async fn edit(
    State(state): State<AppState>,
    auth: DiscordAuth,
    Path((channel, message)): Path<(String, String)>,
    DiscordJson(body): DiscordJson<EditMessage>,
) -> DiscordResult<Response> {
    let (guild_id, channel_id, _) = visible_channel(&state, &auth, &channel).await?;
    let message = message_in(&state, &guild_id, &message).await?;
    if !body.embeds.is_empty() {
        return Err(unsupported("embeds"));
    }
    let path = Path((channel_id.to_string(), message.to_string()));
    let render = Render::new(&state);
    let native = match body.content {
        Some(content) => {
            let allowed = super::objects::Allowed::All;
            let content = render.incoming_mentions(&content, &allowed).await?;
            let body = messages::EditBody { content };
            messages::edit(State(state.clone()), auth.0, path, Json(body)).await?.0
        }
        None => messages::get(State(state.clone()), auth.0, path).await?.0,
    };
    let guild = state.guilds.state(&guild_id).await?;
    Ok(reply(render.message(&native, Some(&guild)).await?))
}

/// `DELETE /channels/{channel}/messages/{message}`.
async fn delete(
    State(state): State<AppState>,
    auth: DiscordAuth,
    Path((channel, message)): Path<(String, String)>,
) -> DiscordResult<Response> {
    let (guild_id, channel_id, _) = visible_channel(&state, &auth, &channel).await?;
    let message = message_in(&state, &guild_id, &message).await?;
    let path = Path((channel_id.to_string(), message.to_string()));
    messages::delete(State(state), auth.0, path).await?;
    Ok(no_content())
}

/// The native path of a reaction: the emoji as the native API takes it. Discord's custom
/// emoji (`name:id`) do not exist here and are refused by the native check.
async fn reaction_path(
    state: &AppState,
    auth: &DiscordAuth,
    channel: &str,
    message: &str,
    emoji: String,
) -> DiscordResult<Path<(String, String, String)>> {
    let (guild_id, channel_id, _) = visible_channel(state, auth, channel).await?;
    let message = message_in(state, &guild_id, message).await?;
    Ok(Path((channel_id.to_string(), message.to_string(), emoji)))
}

/// `PUT /channels/{channel}/messages/{message}/reactions/{emoji}/@me`.
async fn react(
    State(state): State<AppState>,
    auth: DiscordAuth,
    Path((channel, message, emoji)): Path<(String, String, String)>,
) -> DiscordResult<Response> {
    let path = reaction_path(&state, &auth, &channel, &message, emoji).await?;
    messages::react(State(state), auth.0, path).await?;
    Ok(no_content())
}

/// `DELETE /channels/{channel}/messages/{message}/reactions/{emoji}/@me`.
async fn unreact(
    State(state): State<AppState>,
    auth: DiscordAuth,
    Path((channel, message, emoji)): Path<(String, String, String)>,
) -> DiscordResult<Response> {
    let path = reaction_path(&state, &auth, &channel, &message, emoji).await?;
    messages::unreact(State(state), auth.0, path).await?;
    Ok(no_content())
}

/// `GET /channels/{channel}/messages/{message}/reactions/{emoji}`: who reacted.
async fn reactors(
    State(state): State<AppState>,
    auth: DiscordAuth,
    Path((channel, message, emoji)): Path<(String, String, String)>,
) -> DiscordResult<Response> {
    let path = reaction_path(&state, &auth, &channel, &message, emoji).await?;
    let Json(native) = messages::reactors(State(state.clone()), auth.0, path).await?;
    let render = Render::new(&state);
    let mut users = Vec::new();
    for user in native["users"].as_array().into_iter().flatten() {
        if let Ok(user) = UserId::parse(user.as_str().unwrap_or_default()) {
            users.push(render.user(&user).await?);
        }
    }
    Ok(reply(Value::Array(users)))
}

/// `GET /channels/{channel}/pins` (and Discord's newer `/messages/pins`, which wraps each in
/// `{"message", "pinned_at"}`).
async fn pins(
    State(state): State<AppState>,
    auth: DiscordAuth,
    uri: axum::http::Uri,
    Path(channel): Path<String>,
) -> DiscordResult<Response> {
    let (_, channel_id, guild) = visible_channel(&state, &auth, &channel).await?;
    let auth_view = auth.clone();
    let Json(native) =
        messages::pins(State(state.clone()), auth.0, Path(channel_id.to_string())).await?;
    let render = Render::new(&state);
    let newer = uri.path().ends_with("/messages/pins");
    let blind = Blind::of(&state, &auth_view, &guild).await?;
    let mut list = Vec::new();
    for native in native["messages"].as_array().into_iter().flatten() {
        let mut message = render.message(native, Some(&guild)).await?;
        blind.apply(&mut message);
        if newer {
            let at = native["created_ts"].as_u64().unwrap_or(0);
            list.push(json!({"message": message, "pinned_at": super::objects::iso8601(at)}));
        } else {
            list.push(message);
        }
    }
    if newer {
        return Ok(reply(json!({"items": list, "has_more": false})));
    }
    Ok(reply(Value::Array(list)))
}

/// `PUT /channels/{channel}/pins/{message}`.
async fn pin(
    State(state): State<AppState>,
    auth: DiscordAuth,
    Path((channel, message)): Path<(String, String)>,
) -> DiscordResult<Response> {
    let (guild_id, channel_id, _) = visible_channel(&state, &auth, &channel).await?;
    let message = message_in(&state, &guild_id, &message).await?;
    messages::pin(State(state), auth.0, Path((channel_id.to_string(), message.to_string())))
        .await?;
    Ok(no_content())
}

/// `DELETE /channels/{channel}/pins/{message}`.
async fn unpin(
    State(state): State<AppState>,
    auth: DiscordAuth,
    Path((channel, message)): Path<(String, String)>,
) -> DiscordResult<Response> {
    let (guild_id, channel_id, _) = visible_channel(&state, &auth, &channel).await?;
    let message = message_in(&state, &guild_id, &message).await?;
    messages::unpin(State(state), auth.0, Path((channel_id.to_string(), message.to_string())))
        .await?;
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
