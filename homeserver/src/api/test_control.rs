//! The test-control API under `/_guildhall/test/v1` (spec chapter 21), mounted only when
//! `server.danger_enable_test_control` is set. It acts as local users through the same guild
//! service as the client API, so a conformance suite exercises the real code paths; identity
//! keys are attested and trust lists subscribed through the same services as operators use.
//! Devices (spec 17) are registered and act through the client API's own handlers, as the login
//! each device belongs to.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use guildhall_spec::content::{
    EventContent, GuildKind, InviteCreate, MemberJoin, MessageCreate, MessageEdit, MessageRef,
    Reaction,
};
use guildhall_spec::{ChannelId, EventId, GuildId, InviteCode, MediaId, UserId};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{AuthUser, Json, parse_id};
use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::guilds::{Sequenced, random_id};
use crate::store::MessageQuery;
use crate::trust;

/// Answers an action: the event id, or `202 queued` when the host could not be reached.
fn done(result: ApiResult<Sequenced>) -> ApiResult<(StatusCode, Json<Value>)> {
    match result {
        Ok(done) => Ok((StatusCode::OK, Json(json!({"event_id": done.event_id})))),
        Err(error) if error.code() == "queued" => {
            Ok((StatusCode::ACCEPTED, Json(json!({"queued": true}))))
        }
        Err(error) => Err(error),
    }
}

async fn local_user(state: &AppState, user_id: &UserId) -> ApiResult<()> {
    if user_id.server_name() != state.server_name || state.store.user(user_id).await?.is_none() {
        return Err(ApiError::not_found("unknown_user", format!("{user_id} is not a local user")));
    }
    Ok(())
}

#[derive(Debug, Deserialize)]
pub(super) struct NewUser {
    username: String,
}

/// `POST /users`.
pub(super) async fn create_user(
    State(state): State<AppState>,
    Json(body): Json<NewUser>,
) -> ApiResult<Json<Value>> {
    let user_id = UserId::new(&body.username, &state.server_name)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let password = random_id(32);
    super::create_account(&state.store, &state.passwords, &user_id, &password).await.map_err(
        |error| {
            if error.code() == "username_taken" {
                ApiError::new(StatusCode::CONFLICT, "user_exists", "user exists")
            } else {
                error
            }
        },
    )?;
    let token = super::auth::issue_token(&state, &user_id).await?;
    Ok(Json(json!({"user_id": user_id, "token": token})))
}

#[derive(Debug, Deserialize)]
pub(super) struct NewGuild {
    user_id: UserId,
    name: String,
    #[serde(default)]
    kind: Option<GuildKind>,
}

/// `POST /guilds`.
pub(super) async fn create_guild(
    State(state): State<AppState>,
    Json(body): Json<NewGuild>,
) -> ApiResult<Json<Value>> {
    local_user(&state, &body.user_id).await?;
    let (guild_id, channel_id) = state
        .guilds
        .create_guild(&body.user_id, &body.name, body.kind.unwrap_or(GuildKind::Guild))
        .await?;
    Ok(Json(json!({"guild_id": guild_id, "channel_id": channel_id})))
}

#[derive(Debug, Deserialize)]
pub(super) struct NewInvite {
    user_id: UserId,
    channel_id: Option<ChannelId>,
}

/// `POST /guilds/{guild_id}/invites`: an invite without age or use limits.
pub(super) async fn create_invite(
    State(state): State<AppState>,
    Path(guild_id): Path<String>,
    Json(body): Json<NewInvite>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    local_user(&state, &body.user_id).await?;
    let guild_id: GuildId = parse_id("guild id", &guild_id)?;
    let guild = state.guilds.state(&guild_id).await?;
    let channel_id = match body.channel_id {
        Some(channel) => channel,
        None => guild
            .channels
            .iter()
            .filter(|(_, c)| c.kind == guildhall_spec::content::ChannelKind::Text)
            .min_by_key(|(id, c)| (c.position, (*id).clone()))
            .map(|(id, _)| id.clone())
            .ok_or_else(|| ApiError::bad_request("the guild has no text channel"))?,
    };
    let code = InviteCode::parse(&random_id(10)).map_err(ApiError::internal)?;
    let content = EventContent::InviteCreate(InviteCreate {
        code: code.clone(),
        channel_id,
        max_age_secs: None,
        max_uses: None,
    });
    let sequenced = state.guilds.submit(&guild_id, &body.user_id, content, None).await?;
    Ok((StatusCode::OK, Json(json!({"code": code, "event_id": sequenced.event_id}))))
}

#[derive(Debug, Deserialize)]
pub(super) struct JoinBody {
    user_id: UserId,
    invite_code: Option<InviteCode>,
}

/// `POST /guilds/{guild_id}/join`: locally, or through the host's `/join`.
pub(super) async fn join(
    State(state): State<AppState>,
    Path(guild_id): Path<String>,
    Json(body): Json<JoinBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    local_user(&state, &body.user_id).await?;
    let guild_id: GuildId = parse_id("guild id", &guild_id)?;
    if state.guilds.hosts(&guild_id) {
        let content = EventContent::MemberJoin(MemberJoin {
            invite_code: body.invite_code,
            ..Default::default()
        });
        return done(state.guilds.submit(&guild_id, &body.user_id, content, None).await);
    }
    let event_id = state.guilds.join_with(&body.user_id, &guild_id, body.invite_code).await?;
    Ok((StatusCode::OK, Json(json!({"event_id": event_id}))))
}

#[derive(Debug, Deserialize)]
pub(super) struct SendBody {
    user_id: UserId,
    channel_id: ChannelId,
    body: String,
    reply_to: Option<EventId>,
    #[serde(default)]
    attachments: Vec<MediaId>,
}

/// `POST /guilds/{guild_id}/messages`.
pub(super) async fn send(
    State(state): State<AppState>,
    Path(guild_id): Path<String>,
    Json(body): Json<SendBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    local_user(&state, &body.user_id).await?;
    let guild_id: GuildId = parse_id("guild id", &guild_id)?;
    let content = EventContent::MessageCreate(MessageCreate {
        channel_id: body.channel_id,
        body: body.body,
        reply_to: body.reply_to,
        mentions: None,
        attachments: (!body.attachments.is_empty())
            .then(|| body.attachments.iter().map(ToString::to_string).collect()),
    });
    done(state.guilds.submit(&guild_id, &body.user_id, content, None).await)
}

#[derive(Debug, Deserialize)]
pub(super) struct UploadBody {
    bytes: String,
}

#[derive(Debug, Deserialize)]
pub(super) struct CollectBody {
    grace_secs: u64,
}

/// `POST /media/collect`: collects media unreferenced for `grace_secs` now, and answers how
/// many went (tests decide when, instead of racing the collector's clock).
pub(super) async fn collect_media(
    State(state): State<AppState>,
    Json(body): Json<CollectBody>,
) -> ApiResult<Json<Value>> {
    let grace = std::time::Duration::from_secs(body.grace_secs);
    let collected = state.media.collect_garbage(&state.store, grace).await?;
    Ok(Json(json!({"collected": collected})))
}

/// The largest upload through test control.
const MAX_TEST_UPLOAD: usize = 64 << 10;

/// `POST /users/{user_id}/media`: stores bytes as the user's upload.
pub(super) async fn upload_media(
    State(state): State<AppState>,
    Path(user_id): Path<String>,
    Json(body): Json<UploadBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let user_id: UserId = parse_id("user id", &user_id)?;
    local_user(&state, &user_id).await?;
    let bytes = guildhall_spec::base64url::decode(&body.bytes)
        .map_err(|_| ApiError::bad_request("bytes must be base64url"))?;
    if bytes.len() > MAX_TEST_UPLOAD {
        return Err(ApiError::bad_request("at most 64 KiB through test control"));
    }
    let row = state.media.upload(&state.store, &user_id, bytes.into(), None).await?;
    Ok((StatusCode::OK, Json(json!({"media_id": row.media_id}))))
}

#[derive(Debug, Deserialize)]
pub(super) struct ActBody {
    user_id: UserId,
    body: Option<String>,
    emoji: Option<String>,
    #[serde(default)]
    remove: bool,
}

async fn message_channel(
    state: &AppState,
    guild_id: &GuildId,
    message_id: &EventId,
) -> ApiResult<ChannelId> {
    match state.store.message(guild_id, message_id).await? {
        Some(message) => Ok(message.channel_id),
        _ => Err(ApiError::not_found("unknown_message", "no such message held here")),
    }
}

/// `POST /guilds/{guild_id}/messages/{message_id}/edit`.
pub(super) async fn edit(
    State(state): State<AppState>,
    Path((guild_id, message_id)): Path<(String, String)>,
    Json(body): Json<ActBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    local_user(&state, &body.user_id).await?;
    let (guild_id, message_id): (GuildId, EventId) =
        (parse_id("guild id", &guild_id)?, parse_id("message id", &message_id)?);
    let channel_id = message_channel(&state, &guild_id, &message_id).await?;
    let text = body.body.ok_or_else(|| ApiError::bad_request("body is required"))?;
    let content = EventContent::MessageEdit(MessageEdit { channel_id, message_id, body: text });
    done(state.guilds.submit(&guild_id, &body.user_id, content, None).await)
}

/// `POST /guilds/{guild_id}/messages/{message_id}/delete`.
pub(super) async fn delete(
    State(state): State<AppState>,
    Path((guild_id, message_id)): Path<(String, String)>,
    Json(body): Json<ActBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    local_user(&state, &body.user_id).await?;
    let (guild_id, message_id): (GuildId, EventId) =
        (parse_id("guild id", &guild_id)?, parse_id("message id", &message_id)?);
    let channel_id = message_channel(&state, &guild_id, &message_id).await?;
    let content = EventContent::MessageDelete(MessageRef { channel_id, message_id });
    done(state.guilds.submit(&guild_id, &body.user_id, content, None).await)
}

/// `POST /guilds/{guild_id}/messages/{message_id}/reactions`.
pub(super) async fn react(
    State(state): State<AppState>,
    Path((guild_id, message_id)): Path<(String, String)>,
    Json(body): Json<ActBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    local_user(&state, &body.user_id).await?;
    let (guild_id, message_id): (GuildId, EventId) =
        (parse_id("guild id", &guild_id)?, parse_id("message id", &message_id)?);
    let channel_id = message_channel(&state, &guild_id, &message_id).await?;
    let emoji = body.emoji.ok_or_else(|| ApiError::bad_request("emoji is required"))?;
    let reaction = Reaction { channel_id, message_id, emoji };
    let content = if body.remove {
        EventContent::ReactionRemove(reaction)
    } else {
        EventContent::ReactionAdd(reaction)
    };
    done(state.guilds.submit(&guild_id, &body.user_id, content, None).await)
}

#[derive(Debug, Deserialize)]
pub(super) struct AnyEvent {
    user_id: UserId,
    #[serde(rename = "type")]
    event_type: String,
    content: guildhall_spec::event::JsonObject,
}

/// `POST /guilds/{guild_id}/events`: any event type but `guild.create` and `member.join`.
pub(super) async fn any_event(
    State(state): State<AppState>,
    Path(guild_id): Path<String>,
    Json(body): Json<AnyEvent>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    local_user(&state, &body.user_id).await?;
    let guild_id: GuildId = parse_id("guild id", &guild_id)?;
    if matches!(body.event_type.as_str(), "guild.create" | "member.join") {
        return Err(ApiError::bad_request(
            "use the dedicated endpoints for guild.create and member.join",
        ));
    }
    let content = EventContent::parse(&body.event_type, &body.content)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_event", e.to_string()))?;
    done(state.guilds.submit(&guild_id, &body.user_id, content, None).await)
}

#[derive(Debug, Deserialize)]
pub(super) struct ChannelQuery {
    channel_id: ChannelId,
}

/// `GET /users/{user_id}/guilds/{guild_id}/messages?channel_id=`: what the user is shown.
pub(super) async fn user_messages(
    State(state): State<AppState>,
    Path((user_id, guild_id)): Path<(String, String)>,
    Query(query): Query<ChannelQuery>,
) -> ApiResult<Json<Value>> {
    let (user_id, guild_id): (UserId, GuildId) =
        (parse_id("user id", &user_id)?, parse_id("guild id", &guild_id)?);
    local_user(&state, &user_id).await?;
    let guild = state.guilds.state(&guild_id).await?;
    if !guild.members.contains_key(&user_id) {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "not_member", "not a member"));
    }
    if !guild.can_view(&user_id, &query.channel_id) {
        return Err(ApiError::forbidden("cannot view the channel"));
    }
    let mut rows = Vec::new();
    let mut before = None;
    loop {
        let page = state
            .store
            .messages(
                &guild_id,
                &query.channel_id,
                &MessageQuery { before_seq: before, after_seq: None, limit: 100 },
            )
            .await?;
        let Some(last) = page.last() else { break };
        before = Some(last.created_seq);
        rows.extend(page);
    }
    rows.reverse();
    let mut messages = Vec::with_capacity(rows.len());
    for row in rows {
        let mut reactions = serde_json::Map::new();
        let counts = state
            .store
            .reactions(&row.guild_id, std::slice::from_ref(&row.message_id), &user_id)
            .await?;
        for count in counts {
            let users =
                state.store.reactors(&row.guild_id, &row.message_id, &count.emoji, 1000).await?;
            let mut users: Vec<String> = users.iter().map(ToString::to_string).collect();
            users.sort();
            reactions.insert(count.emoji, json!(users));
        }
        messages.push(json!({
            "message_id": row.message_id,
            "channel_id": row.channel_id,
            "sender": row.author,
            "body": row.body,
            "origin_ts": row.created_ts,
            "seq": row.created_seq,
            "edited": row.edited_ts.is_some(),
            "reply_to": row.reply_to,
            "reactions": reactions,
            "pinned": state.store.is_pinned(&row.guild_id, &row.message_id).await?,
        }));
    }
    Ok(Json(json!({"messages": messages})))
}

#[derive(Debug, Deserialize)]
pub(super) struct LogQuery {
    after: Option<u64>,
    limit: Option<u32>,
}

/// `GET /guilds/{guild_id}/events?after=&limit=`: the log as this server holds it.
pub(super) async fn raw_log(
    State(state): State<AppState>,
    Path(guild_id): Path<String>,
    Query(query): Query<LogQuery>,
) -> ApiResult<Json<Value>> {
    let guild_id: GuildId = parse_id("guild id", &guild_id)?;
    let head = state.guilds.head(&guild_id).await?;
    let limit = query.limit.unwrap_or(100).clamp(1, 500);
    let events = state.store.guild_events(&guild_id, query.after.unwrap_or(0), limit).await?;
    let floor = state
        .store
        .guild_events(&guild_id, 0, 1)
        .await?
        .first()
        .map_or(head.seq, |event| event.seq);
    let events: Vec<Value> = events.into_iter().map(|event| Value::Object(event.event)).collect();
    Ok(Json(json!({"events": events, "head": head.seq, "floor": floor})))
}

/// `GET /guilds/{guild_id}/state`.
pub(super) async fn state(
    State(state): State<AppState>,
    Path(guild_id): Path<String>,
) -> ApiResult<Json<Value>> {
    let guild_id: GuildId = parse_id("guild id", &guild_id)?;
    let head = state.guilds.head(&guild_id).await?;
    Ok(Json(json!({"seq": head.seq, "state": *head.state})))
}

/// `GET /evidence`: equivocation evidence, oldest first.
pub(super) async fn evidence(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let mut evidence = state.store.equivocations().await?;
    evidence.reverse();
    Ok(Json(json!({"evidence": evidence})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BindIdentity {
    identity_key: String,
    /// The key's consent to the binding (spec 16.2).
    binding: String,
}

/// `PUT /users/{user_id}/identity`: binds an identity key to a local user without the
/// challenge a client answers (the key's consent, `binding`, is still required), so a suite can
/// attest a key whose secret it holds; a bound key is replaced. Answers the signed attestation.
pub(super) async fn bind_identity(
    State(state): State<AppState>,
    Path(user_id): Path<String>,
    Json(body): Json<BindIdentity>,
) -> ApiResult<Json<Value>> {
    let user_id: UserId = parse_id("user id", &user_id)?;
    local_user(&state, &user_id).await?;
    if guildhall_spec::signing::decode_public_key(&body.identity_key).is_none() {
        return Err(ApiError::bad_request("identity_key is not a base64url Ed25519 key"));
    }
    let consent =
        crate::identity::Consent { identity_key: &body.identity_key, binding: &body.binding };
    let attestation = crate::identity::attest(&state, &user_id, Some(consent)).await?;
    Ok(Json(json!({"identity_key": body.identity_key, "attestation": attestation})))
}

/// `DELETE /users/{user_id}/identity`: revokes the user's identity key (a newer attestation
/// with `"revoked": true`). Answers the signed attestation.
pub(super) async fn revoke_identity(
    State(state): State<AppState>,
    Path(user_id): Path<String>,
) -> ApiResult<Json<Value>> {
    let user_id: UserId = parse_id("user id", &user_id)?;
    local_user(&state, &user_id).await?;
    let attestation = crate::identity::attest(&state, &user_id, None).await?;
    Ok(Json(json!({"attestation": attestation})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Subscribe {
    url: String,
    publisher: String,
    key_id: String,
    key: String,
}

/// `POST /trust/subscriptions`: subscribes to a trust list and fetches it at once, as an
/// operator would. Answers the subscription id and how the first fetch went.
pub(super) async fn subscribe(
    State(state): State<AppState>,
    Json(body): Json<Subscribe>,
) -> ApiResult<Json<Value>> {
    let (subscription, fetched) = state
        .federation
        .trust
        .subscribe("test-control", &body.url, &body.publisher, &body.key_id, &body.key, None)
        .await?;
    Ok(Json(json!({"id": subscription.id, "fetch": trust::fetch_view(&fetched)})))
}

/// `POST /trust/subscriptions/{id}/refresh`: fetches the list now.
pub(super) async fn refresh_subscription(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let fetched = state.federation.trust.refresh_id(&id).await?;
    Ok(Json(json!({"id": id, "fetch": trust::fetch_view(&fetched)})))
}

/// `DELETE /trust/subscriptions/{id}`: the list's entries stop applying at once.
pub(super) async fn unsubscribe(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    state.federation.trust.unsubscribe("test-control", &id).await?;
    Ok(Json(json!({})))
}

/// The login a device of a local user was registered with, to act as it through the client
/// API's handlers (spec 17.3 acts for the device of the calling login).
async fn device_login(state: &AppState, user_id: &str, device_id: &str) -> ApiResult<AuthUser> {
    let user_id: UserId = parse_id("user id", user_id)?;
    local_user(state, &user_id).await?;
    match state.store.device_session(&user_id, device_id).await? {
        Some(session_id) => Ok(AuthUser { user_id, session_id }),
        None => Err(ApiError::not_found("unknown_device", format!("{user_id} has no {device_id}"))),
    }
}

/// `PUT /users/{user_id}/devices/{device_id}`: registers a device with its certificate as the
/// client API does; a new device gets a new login of the user, a known one is re-certified by
/// its own login. Answers the client API's answer and the login's token.
pub(super) async fn put_device(
    State(state): State<AppState>,
    Path((user_id, device_id)): Path<(String, String)>,
    Json(body): Json<super::identity::DeviceBody>,
) -> ApiResult<Json<Value>> {
    let (auth, token) = match device_login(&state, &user_id, &device_id).await {
        Ok(auth) => (auth, None),
        Err(error) if error.code() == "unknown_device" => {
            let user_id: UserId = parse_id("user id", &user_id)?;
            let token = super::auth::issue_token(&state, &user_id).await?;
            (super::authenticate(&state, &token).await?, Some(token))
        }
        Err(error) => return Err(error),
    };
    let registered = super::identity::put_device(
        State(state.clone()),
        auth.clone(),
        Path(device_id),
        Json(body),
    )
    .await;
    match (registered, token) {
        (Ok(Json(mut answer)), token) => {
            answer["token"] = json!(token);
            Ok(Json(answer))
        }
        (Err(error), Some(_)) => {
            // The login was made for this device only.
            state.store.delete_session(&auth.user_id, &auth.session_id).await?;
            Err(error)
        }
        (Err(error), None) => Err(error),
    }
}

/// `POST /users/{user_id}/devices/{device_id}/keys`: `POST /api/v1/keys/upload` as the device.
pub(super) async fn upload_keys(
    State(state): State<AppState>,
    Path((user_id, device_id)): Path<(String, String)>,
    Json(body): Json<super::e2e::UploadBody>,
) -> ApiResult<Json<Value>> {
    let auth = device_login(&state, &user_id, &device_id).await?;
    super::e2e::upload_keys(State(state), auth, Json(body)).await
}

/// `GET /users/{user_id}/devices/{device_id}/to_device?limit=`: the device's inbox, as
/// `GET /api/v1/users/@me/to_device` reads it.
pub(super) async fn inbox(
    State(state): State<AppState>,
    Path((user_id, device_id)): Path<(String, String)>,
    query: Query<super::e2e::InboxQuery>,
) -> ApiResult<Json<Value>> {
    let auth = device_login(&state, &user_id, &device_id).await?;
    super::e2e::inbox(State(state), auth, query).await
}

/// `POST /users/{user_id}/devices/{device_id}/to_device/ack`: acknowledges the device's inbox
/// up to an id, as `POST /api/v1/users/@me/to_device/ack` does.
pub(super) async fn ack(
    State(state): State<AppState>,
    Path((user_id, device_id)): Path<(String, String)>,
    Json(body): Json<super::e2e::AckBody>,
) -> ApiResult<Json<Value>> {
    let auth = device_login(&state, &user_id, &device_id).await?;
    super::e2e::ack(State(state), auth, Json(body)).await
}
