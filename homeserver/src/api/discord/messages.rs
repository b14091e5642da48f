//! `/api/v10` messages: history, send, edit, delete, reactions and pins,
//! translated onto the native message handlers (`api/messages.rs`).

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use guildhall_spec::content::GuildKind;
use guildhall_spec::state::GuildState;
use guildhall_spec::{ChannelId, GuildId, TxnId, UserId};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::objects::Render;
use super::rest::{Id, message_in, no_content, reply, visible_channel};
use super::{DiscordAuth, DiscordError, DiscordJson, DiscordQuery, DiscordResult};
use crate::AppState;
use crate::api::Json;
use crate::api::messages as native;
use crate::error::ApiError;

#[derive(Debug, Deserialize)]
pub(super) struct History {
    limit: Option<u32>,
    before: Option<String>,
    after: Option<String>,
    around: Option<String>,
}

/// `GET /channels/{channel}/messages?limit=&before=&after=`: newest first.
pub(super) async fn history(
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
    let native = native::History {
        before: anchor(&query.before).await?,
        after: anchor(&query.after).await?,
        limit: Some(query.limit.unwrap_or(50).clamp(1, 100)),
    };
    let Json(page) = native::list(
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
pub(super) async fn message(
    State(state): State<AppState>,
    auth: DiscordAuth,
    Path((channel, message)): Path<(String, String)>,
) -> DiscordResult<Response> {
    let (guild_id, channel_id, guild) = visible_channel(&state, &auth, &channel).await?;
    let message = message_in(&state, &guild_id, &message).await?;
    let path = Path((channel_id.to_string(), message.to_string()));
    let blind = Blind::of(&state, &auth, &guild).await?;
    let Json(native) = native::get(State(state.clone()), auth.0, path).await?;
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
pub(super) struct CreateMessage {
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
pub(super) async fn send(
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
    let native_body = native::NewMessage {
        content: render.incoming_mentions(&content, &allowed).await?,
        reply_to,
        nonce: txn,
        attachments: Vec::new(),
    };
    let (_, Json(native)) =
        native::send(State(state.clone()), auth.0, Path(channel_id.to_string()), Json(native_body))
            .await?;
    let mut view = render.message(&native, Some(&guild)).await?;
    if let Some(nonce) = nonce {
        view["nonce"] = json!(nonce);
    }
    Ok(reply(view))
}

#[derive(Debug, Deserialize)]
pub(super) struct EditMessage {
    content: Option<String>,
    #[serde(default)]
    embeds: Vec<Value>,
}

/// `PATCH /channels/{channel}/messages/{message}`.
pub(super) async fn edit(
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
            let body = native::EditBody { content };
            native::edit(State(state.clone()), auth.0, path, Json(body)).await?.0
        }
        None => native::get(State(state.clone()), auth.0, path).await?.0,
    };
    let guild = state.guilds.state(&guild_id).await?;
    Ok(reply(render.message(&native, Some(&guild)).await?))
}

/// `DELETE /channels/{channel}/messages/{message}`.
pub(super) async fn delete(
    State(state): State<AppState>,
    auth: DiscordAuth,
    Path((channel, message)): Path<(String, String)>,
) -> DiscordResult<Response> {
    let (guild_id, channel_id, _) = visible_channel(&state, &auth, &channel).await?;
    let message = message_in(&state, &guild_id, &message).await?;
    let path = Path((channel_id.to_string(), message.to_string()));
    native::delete(State(state), auth.0, path).await?;
    Ok(no_content())
}

/// The native path of a reaction: the emoji as the native API takes it. Discord's custom
/// emoji (`name:id`) do not exist here and are refused by the native check.
pub(super) async fn reaction_path(
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
pub(super) async fn react(
    State(state): State<AppState>,
    auth: DiscordAuth,
    Path((channel, message, emoji)): Path<(String, String, String)>,
) -> DiscordResult<Response> {
    let path = reaction_path(&state, &auth, &channel, &message, emoji).await?;
    native::react(State(state), auth.0, path).await?;
    Ok(no_content())
}

/// `DELETE /channels/{channel}/messages/{message}/reactions/{emoji}/@me`.
pub(super) async fn unreact(
    State(state): State<AppState>,
    auth: DiscordAuth,
    Path((channel, message, emoji)): Path<(String, String, String)>,
) -> DiscordResult<Response> {
    let path = reaction_path(&state, &auth, &channel, &message, emoji).await?;
    native::unreact(State(state), auth.0, path).await?;
    Ok(no_content())
}

/// `GET /channels/{channel}/messages/{message}/reactions/{emoji}`: who reacted.
pub(super) async fn reactors(
    State(state): State<AppState>,
    auth: DiscordAuth,
    Path((channel, message, emoji)): Path<(String, String, String)>,
) -> DiscordResult<Response> {
    let path = reaction_path(&state, &auth, &channel, &message, emoji).await?;
    let Json(native) = native::reactors(State(state.clone()), auth.0, path).await?;
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
pub(super) async fn pins(
    State(state): State<AppState>,
    auth: DiscordAuth,
    uri: axum::http::Uri,
    Path(channel): Path<String>,
) -> DiscordResult<Response> {
    let (_, channel_id, guild) = visible_channel(&state, &auth, &channel).await?;
    let auth_view = auth.clone();
    let Json(native) =
        native::pins(State(state.clone()), auth.0, Path(channel_id.to_string())).await?;
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
pub(super) async fn pin(
    State(state): State<AppState>,
    auth: DiscordAuth,
    Path((channel, message)): Path<(String, String)>,
) -> DiscordResult<Response> {
    let (guild_id, channel_id, _) = visible_channel(&state, &auth, &channel).await?;
    let message = message_in(&state, &guild_id, &message).await?;
    native::pin(State(state), auth.0, Path((channel_id.to_string(), message.to_string()))).await?;
    Ok(no_content())
}

/// `DELETE /channels/{channel}/pins/{message}`.
pub(super) async fn unpin(
    State(state): State<AppState>,
    auth: DiscordAuth,
    Path((channel, message)): Path<(String, String)>,
) -> DiscordResult<Response> {
    let (guild_id, channel_id, _) = visible_channel(&state, &auth, &channel).await?;
    let message = message_in(&state, &guild_id, &message).await?;
    native::unpin(State(state), auth.0, Path((channel_id.to_string(), message.to_string())))
        .await?;
    Ok(no_content())
}
