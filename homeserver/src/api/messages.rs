//! Messages: history, send, edit, delete, reactions, pins and search.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use guildhall_spec::content::{
    EventContent, MAX_MESSAGE_CHARS, MessageCreate, MessageEdit, MessageRef, Reaction,
};
use guildhall_spec::state::MAX_ATTACHMENTS;
use guildhall_spec::{ChannelId, EventId, GuildId, MediaId, Permissions, TxnId, UserId};
use serde::Deserialize;
use serde_json::{Value, json};

use super::channels::visible_channel;
use super::guilds::member_guild;
use super::{AuthUser, Json, parse_id, views};
use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::store::{MessageQuery, MessageRow, SearchQuery};

/// Most distinct mentions extracted from one message.
const MAX_MENTIONS: usize = 50;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct History {
    pub(super) before: Option<String>,
    pub(super) after: Option<String>,
    pub(super) limit: Option<u32>,
}

/// `GET /api/v1/channels/{channel_id}/messages?before=&after=&limit=`: newest first.
pub(super) async fn list(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(channel_id): Path<String>,
    Query(history): Query<History>,
) -> ApiResult<Json<Value>> {
    let (guild_id, channel_id, guild_state) = visible_channel(&state, &auth, &channel_id).await?;
    if !guild_state
        .channel_permissions(&auth.user_id, &channel_id)
        .contains(Permissions::READ_MESSAGE_HISTORY)
    {
        return Ok(Json(json!({"messages": []})));
    }
    let before_seq = anchor_seq(&state, &guild_id, &channel_id, history.before.as_deref()).await?;
    let after_seq = anchor_seq(&state, &guild_id, &channel_id, history.after.as_deref()).await?;
    let query =
        MessageQuery { before_seq, after_seq, limit: history.limit.unwrap_or(50).clamp(1, 100) };
    let page = state.store.page(&guild_id, &channel_id, &query, &auth.user_id).await?;
    let views: Vec<Value> = page
        .rows
        .iter()
        .map(|row| views::message(row, &page.reactions, page.pinned.contains(&row.message_id)))
        .collect();
    Ok(Json(json!({"messages": views})))
}

/// The seq of a message used as a page boundary.
async fn anchor_seq(
    state: &AppState,
    guild_id: &GuildId,
    channel_id: &ChannelId,
    message_id: Option<&str>,
) -> ApiResult<Option<u64>> {
    let Some(message_id) = message_id else { return Ok(None) };
    let message_id: EventId = parse_id("message id", message_id)?;
    let message = state.store.message(guild_id, &message_id).await?;
    match message {
        Some(message) if &message.channel_id == channel_id => Ok(Some(message.created_seq)),
        _ => Err(ApiError::not_found("unknown_message", "no such message in this channel")),
    }
}

async fn render(state: &AppState, viewer: &UserId, rows: &[MessageRow]) -> ApiResult<Vec<Value>> {
    let mut by_guild: std::collections::BTreeMap<&GuildId, Vec<EventId>> = Default::default();
    for row in rows {
        by_guild.entry(&row.guild_id).or_default().push(row.message_id.clone());
    }
    // Message ids are unique only within a guild: reactions and pins stay with theirs.
    let mut found = std::collections::BTreeMap::new();
    for (guild_id, ids) in by_guild {
        let reactions = state.store.reactions(guild_id, &ids, viewer).await?;
        let pinned = state.store.pinned_among(guild_id, &ids).await?;
        found.insert(guild_id, (reactions, pinned));
    }
    Ok(rows
        .iter()
        .filter_map(|row| {
            let (reactions, pinned) = found.get(&row.guild_id)?;
            Some(views::message(row, reactions, pinned.contains(&row.message_id)))
        })
        .collect())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewMessage {
    pub(super) content: String,
    pub(super) reply_to: Option<EventId>,
    pub(super) nonce: Option<String>,
    /// Media uploaded to this server first (`POST /api/v1/media`).
    #[serde(default)]
    pub(super) attachments: Vec<MediaId>,
}

/// `POST /api/v1/channels/{channel_id}/messages`. A `nonce` makes the send idempotent: a retry
/// with the same nonce returns the message the first attempt created.
pub(super) async fn send(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(channel_id): Path<String>,
    Json(body): Json<NewMessage>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    state.message_limiter.check(auth.user_id.as_str()).await.map_err(ApiError::rate_limited)?;
    let (guild_id, channel_id, guild_state) = visible_channel(&state, &auth, &channel_id).await?;
    if body.content.chars().count() > MAX_MESSAGE_CHARS {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "message_too_long",
            format!("messages are at most {MAX_MESSAGE_CHARS} characters"),
        ));
    }
    if let Some(reply_to) = &body.reply_to {
        let target = state.store.message(&guild_id, reply_to).await?;
        if target.is_none_or(|m| m.channel_id != channel_id) {
            return Err(ApiError::not_found(
                "unknown_message",
                "reply_to is not a message of this channel",
            ));
        }
    }
    if guild_state.kind == guildhall_spec::content::GuildKind::Dm {
        for other in guild_state.members.keys().filter(|member| **member != auth.user_id) {
            if state.store.is_blocked_between(&auth.user_id, other).await? {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "blocked",
                    "you cannot message this user",
                ));
            }
        }
    }
    let txn_id = body.nonce.as_deref().map(|nonce| {
        TxnId::parse(nonce)
            .map_err(|_| ApiError::bad_request("nonce must be 1-64 of A-Z a-z 0-9 . _ ~ -"))
    });
    let txn_id = txn_id.transpose()?;
    let attachments = attachments(&state, &auth, &body, txn_id.as_ref()).await?;
    let mentions = extract_mentions(&body.content, &guild_state);
    let create = MessageCreate {
        channel_id,
        body: body.content,
        reply_to: body.reply_to,
        mentions: (!mentions.is_empty()).then_some(mentions),
        attachments: (!attachments.is_empty()).then_some(attachments),
    };
    let content = EventContent::MessageCreate(create.clone());
    let done = state.guilds.submit(&guild_id, &auth.user_id, content, txn_id).await?;
    // A new message hosted here is what was just appended; a retry, or a message a remote host
    // sequenced (it may have been a retry it recognised), answers with the message as stored.
    let fresh = (!done.replayed && state.guilds.hosts(&guild_id))
        .then(|| {
            let author = &auth.user_id;
            MessageRow::created(&guild_id, &done.event_id, done.seq, author, &done.event, &create)
        })
        .flatten();
    let row = match fresh {
        Some(row) => row,
        None => state
            .store
            .message(&guild_id, &done.event_id)
            .await?
            .ok_or_else(|| ApiError::internal("message vanished"))?,
    };
    Ok((StatusCode::CREATED, Json(views::message(&row, &[], false))))
}

/// A message's attachments: at most 10, distinct, media this server holds, leased a fresh grace
/// period so they stay until the message reaches the log. A retry of a sent message (its nonce
/// known) is answered by the submit as the first time, whatever became of its media since.
async fn attachments(
    state: &AppState,
    auth: &AuthUser,
    body: &NewMessage,
    txn_id: Option<&TxnId>,
) -> ApiResult<Vec<String>> {
    let ids = &body.attachments;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    if ids.len() > MAX_ATTACHMENTS {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "too_many_attachments",
            format!("a message has at most {MAX_ATTACHMENTS} attachments"),
        ));
    }
    if ids.iter().enumerate().any(|(i, id)| ids[..i].contains(id)) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "duplicate_attachment",
            "an attachment is listed twice",
        ));
    }
    let replay = match txn_id {
        Some(txn_id) => state.store.txn_event(&auth.user_id, txn_id).await?.is_some(),
        None => false,
    };
    if !replay {
        state.media.lease(state, &auth.user_id, ids).await?;
    }
    Ok(ids.iter().map(ToString::to_string).collect())
}

/// Mentions are written `<@user_id>`; only members of the guild count.
fn extract_mentions(body: &str, guild: &guildhall_spec::state::GuildState) -> Vec<UserId> {
    let mut mentions: Vec<UserId> = Vec::new();
    let mut rest = body;
    while let Some(start) = rest.find("<@") {
        rest = &rest[start + 2..];
        let Some(end) = rest.find('>') else { break };
        if let Ok(user) = UserId::parse(&rest[..end])
            && guild.members.contains_key(&user)
            && !mentions.contains(&user)
            && mentions.len() < MAX_MENTIONS
        {
            mentions.push(user);
        }
        rest = &rest[end..];
    }
    mentions
}

async fn channel_message(
    state: &AppState,
    auth: &AuthUser,
    channel_id: &str,
    message_id: &str,
) -> ApiResult<(GuildId, ChannelId, MessageRow)> {
    let (guild_id, channel_id, _) = visible_channel(state, auth, channel_id).await?;
    let message_id: EventId = parse_id("message id", message_id)?;
    match state.store.message(&guild_id, &message_id).await? {
        Some(message) if message.channel_id == channel_id && !message.deleted => {
            Ok((guild_id, channel_id, message))
        }
        _ => Err(ApiError::not_found("unknown_message", "no such message")),
    }
}

/// `GET /api/v1/channels/{channel_id}/messages/{message_id}`.
pub(super) async fn get(
    State(state): State<AppState>,
    auth: AuthUser,
    Path((channel_id, message_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let (guild_id, channel_id, row) =
        channel_message(&state, &auth, &channel_id, &message_id).await?;
    if !may_read_history(&state, &auth, &guild_id, &channel_id).await? {
        return Err(ApiError::forbidden("reading history here needs READ_MESSAGE_HISTORY"));
    }
    let rendered = render(&state, &auth.user_id, std::slice::from_ref(&row)).await?;
    Ok(Json(rendered.into_iter().next().unwrap_or_default()))
}

/// Whether the user may read a channel's history (what was said before they looked).
async fn may_read_history(
    state: &AppState,
    auth: &AuthUser,
    guild_id: &GuildId,
    channel_id: &ChannelId,
) -> ApiResult<bool> {
    let guild_state = state.guilds.state(guild_id).await?;
    Ok(guild_state
        .channel_permissions(&auth.user_id, channel_id)
        .contains(Permissions::READ_MESSAGE_HISTORY))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EditBody {
    pub(super) content: String,
}

/// `PATCH /api/v1/channels/{channel_id}/messages/{message_id}`: the author only.
pub(super) async fn edit(
    State(state): State<AppState>,
    auth: AuthUser,
    Path((channel_id, message_id)): Path<(String, String)>,
    Json(body): Json<EditBody>,
) -> ApiResult<Json<Value>> {
    let (guild_id, channel_id, row) =
        channel_message(&state, &auth, &channel_id, &message_id).await?;
    let content = EventContent::MessageEdit(MessageEdit {
        channel_id,
        message_id: row.message_id.clone(),
        body: body.content,
    });
    state.guilds.submit(&guild_id, &auth.user_id, content, None).await?;
    let row = state
        .store
        .message(&guild_id, &row.message_id)
        .await?
        .ok_or_else(|| ApiError::internal("message vanished"))?;
    let rendered = render(&state, &auth.user_id, std::slice::from_ref(&row)).await?;
    Ok(Json(rendered.into_iter().next().unwrap_or_default()))
}

/// `DELETE /api/v1/channels/{channel_id}/messages/{message_id}`: the author or MANAGE_MESSAGES.
pub(super) async fn delete(
    State(state): State<AppState>,
    auth: AuthUser,
    Path((channel_id, message_id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let (guild_id, channel_id, row) =
        channel_message(&state, &auth, &channel_id, &message_id).await?;
    let content =
        EventContent::MessageDelete(MessageRef { channel_id, message_id: row.message_id });
    state.guilds.submit(&guild_id, &auth.user_id, content, None).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/v1/channels/{channel_id}/pins`.
pub(super) async fn pins(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(channel_id): Path<String>,
) -> ApiResult<Json<Value>> {
    let (guild_id, channel_id, _) = visible_channel(&state, &auth, &channel_id).await?;
    if !may_read_history(&state, &auth, &guild_id, &channel_id).await? {
        return Ok(Json(json!({"messages": []})));
    }
    let rows = state.store.pins(&guild_id, &channel_id).await?;
    Ok(Json(json!({"messages": render(&state, &auth.user_id, &rows).await?})))
}

/// `PUT /api/v1/channels/{channel_id}/pins/{message_id}` (MANAGE_MESSAGES).
pub(super) async fn pin(
    State(state): State<AppState>,
    auth: AuthUser,
    Path((channel_id, message_id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let (guild_id, channel_id, row) =
        channel_message(&state, &auth, &channel_id, &message_id).await?;
    if state.store.is_pinned(&row.guild_id, &row.message_id).await? {
        // Pinning again is a no-op, but only for those who may pin.
        let guild_state = state.guilds.state(&guild_id).await?;
        if !guild_state
            .channel_permissions(&auth.user_id, &channel_id)
            .contains(Permissions::MANAGE_MESSAGES)
        {
            return Err(ApiError::forbidden("requires MANAGE_MESSAGES"));
        }
        return Ok(StatusCode::NO_CONTENT);
    }
    let content = EventContent::PinAdd(MessageRef { channel_id, message_id: row.message_id });
    state.guilds.submit(&guild_id, &auth.user_id, content, None).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /api/v1/channels/{channel_id}/pins/{message_id}` (MANAGE_MESSAGES).
pub(super) async fn unpin(
    State(state): State<AppState>,
    auth: AuthUser,
    Path((channel_id, message_id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let (guild_id, channel_id, row) =
        channel_message(&state, &auth, &channel_id, &message_id).await?;
    if !state.store.is_pinned(&row.guild_id, &row.message_id).await? {
        return Err(ApiError::not_found("not_pinned", "the message is not pinned"));
    }
    let content = EventContent::PinRemove(MessageRef { channel_id, message_id: row.message_id });
    state.guilds.submit(&guild_id, &auth.user_id, content, None).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A reaction emoji: one Unicode emoji (sequence), no ASCII text.
fn check_emoji(emoji: &str) -> ApiResult<()> {
    let is_emoji = !emoji.is_empty()
        && emoji.chars().count() <= 32
        && emoji.chars().all(|c| !c.is_ascii() && !c.is_control());
    if is_emoji {
        Ok(())
    } else {
        Err(ApiError::new(StatusCode::BAD_REQUEST, "invalid_emoji", "reactions are Unicode emoji"))
    }
}

/// `PUT /api/v1/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me`.
pub(super) async fn react(
    State(state): State<AppState>,
    auth: AuthUser,
    Path((channel_id, message_id, emoji)): Path<(String, String, String)>,
) -> ApiResult<StatusCode> {
    check_emoji(&emoji)?;
    let (guild_id, channel_id, row) =
        channel_message(&state, &auth, &channel_id, &message_id).await?;
    if state.store.has_reacted(&row.guild_id, &row.message_id, &auth.user_id, &emoji).await? {
        return Ok(StatusCode::NO_CONTENT);
    }
    let content =
        EventContent::ReactionAdd(Reaction { channel_id, message_id: row.message_id, emoji });
    state.guilds.submit(&guild_id, &auth.user_id, content, None).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /api/v1/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me`.
pub(super) async fn unreact(
    State(state): State<AppState>,
    auth: AuthUser,
    Path((channel_id, message_id, emoji)): Path<(String, String, String)>,
) -> ApiResult<StatusCode> {
    check_emoji(&emoji)?;
    let (guild_id, channel_id, row) =
        channel_message(&state, &auth, &channel_id, &message_id).await?;
    if !state.store.has_reacted(&row.guild_id, &row.message_id, &auth.user_id, &emoji).await? {
        return Err(ApiError::not_found(
            "unknown_reaction",
            "you have not reacted with that emoji",
        ));
    }
    let content =
        EventContent::ReactionRemove(Reaction { channel_id, message_id: row.message_id, emoji });
    state.guilds.submit(&guild_id, &auth.user_id, content, None).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/v1/channels/{channel_id}/messages/{message_id}/reactions/{emoji}`: who reacted.
pub(super) async fn reactors(
    State(state): State<AppState>,
    auth: AuthUser,
    Path((channel_id, message_id, emoji)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    check_emoji(&emoji)?;
    let (_, _, row) = channel_message(&state, &auth, &channel_id, &message_id).await?;
    let users = state.store.reactors(&row.guild_id, &row.message_id, &emoji, 100).await?;
    Ok(Json(json!({"users": users})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Search {
    q: String,
    author: Option<String>,
    channel_id: Option<String>,
    after_ts: Option<u64>,
    before_ts: Option<u64>,
    limit: Option<u32>,
}

/// `GET /api/v1/guilds/{guild_id}/messages/search?q=&author=&channel_id=&after_ts=&before_ts=&limit=`:
/// full-text search over the channels the user may read.
pub(super) async fn search(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(guild_id): Path<String>,
    Query(search): Query<Search>,
) -> ApiResult<Json<Value>> {
    let (guild_id, guild_state) = member_guild(&state, &auth, &guild_id).await?;
    let words: Vec<String> = search.q.split_whitespace().take(16).map(str::to_owned).collect();
    if words.is_empty() || search.q.len() > 512 {
        return Err(ApiError::bad_request("q must hold 1 to 16 words"));
    }
    let needed = Permissions::VIEW_CHANNEL | Permissions::READ_MESSAGE_HISTORY;
    let mut channels: Vec<ChannelId> = guild_state
        .channels
        .keys()
        .filter(|channel| guild_state.channel_permissions(&auth.user_id, channel).contains(needed))
        .cloned()
        .collect();
    if let Some(only) = &search.channel_id {
        let only: ChannelId = parse_id("channel id", only)?;
        channels.retain(|channel| channel == &only);
    }
    let author =
        search.author.as_deref().map(|author| parse_id::<UserId>("user id", author)).transpose()?;
    let query = SearchQuery {
        words,
        channels,
        author,
        after_ts: search.after_ts,
        before_ts: search.before_ts,
        limit: search.limit.unwrap_or(25).clamp(1, 100),
    };
    let rows = state.store.search(&guild_id, &query).await?;
    Ok(Json(json!({"messages": render(&state, &auth.user_id, &rows).await?})))
}
