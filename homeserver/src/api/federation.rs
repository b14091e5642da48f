//! The federation endpoints under `/_guildhall/v1` (spec chapters 04, 10–13).
//!
//! Every endpoint but the key documents requires an RFC 9421 `guildhall-fed-v1` signature;
//! [`Federated`] checks it (and the trust policy) before the handler sees the body, so a
//! rejected request changes nothing.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::StatusCode;
use guildhall_spec::api::get_state::Snapshot;
use guildhall_spec::api::send_transaction::{self, EventResult};
use guildhall_spec::api::{
    ErrorBody, ephemeral::EphemeralEvent, get_content, get_events, get_invite, join_guild,
    query_keys, submit_event,
};
use guildhall_spec::content::EventContent;
use guildhall_spec::event::JsonObject;
use guildhall_spec::request_auth::HttpRequest;
use guildhall_spec::state::GuildState;
use guildhall_spec::{EventId, GuildId, InviteCode, ServerName, canonical, signing};
use serde::Deserialize;
use serde_json::{Value, json};

use super::Json;
use crate::AppState;
use crate::bus::BusMessage;
use crate::error::{ApiError, ApiResult};
use crate::guilds::{SubmitError, server_can_view};
use crate::store::{StoredEvent, now_ms};

/// Largest federation request body but a transaction's (spec README: 1 MiB).
const MAX_REQUEST_BODY: usize = 1 << 20;
/// Largest transaction body (spec README: 16 MiB).
const MAX_TRANSACTION_BODY: usize = 16 << 20;
/// Events before a join sent to the joiner.
const JOIN_HISTORY: u32 = 50;

/// An authenticated federation request: the origin server and the body (at most `MAX_BODY`
/// bytes), parsed strictly.
pub(super) struct Federated<const MAX_BODY: usize = MAX_REQUEST_BODY> {
    pub(super) origin: ServerName,
    body: Bytes,
}

impl<const MAX_BODY: usize> Federated<MAX_BODY> {
    /// The body as JSON under the canonical profile (duplicate keys, floats, big numbers are
    /// refused), then typed.
    pub(super) fn json<T: serde::de::DeserializeOwned>(&self) -> ApiResult<T> {
        let value = canonical::parse_strict_slice(&self.body).map_err(|e| {
            ApiError::new(StatusCode::BAD_REQUEST, "bad_json", format!("{} ({})", e, e.code()))
        })?;
        serde_json::from_value(value)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_body", e.to_string()))
    }
}

impl<const MAX_BODY: usize> FromRequest<AppState> for Federated<MAX_BODY> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> ApiResult<Self> {
        if !state.federation.enabled {
            return Err(ApiError::not_found("not_found", "federation is disabled on this server"));
        }
        let (parts, body) = request.into_parts();
        // Nesting strips `/_guildhall/v1` from the URI; the signature covers the path as sent.
        let uri = parts
            .extensions
            .get::<axum::extract::OriginalUri>()
            .map_or_else(|| parts.uri.clone(), |original| original.0.clone());
        // The signature covers the body, so it must be read before the sender is known:
        // bounded in size, time and how many such reads run at once.
        let body = read_unauthenticated(state, &parts, body, MAX_BODY).await?;
        let authority = parts
            .headers
            .get(axum::http::header::HOST)
            .and_then(|host| host.to_str().ok())
            .or_else(|| uri.authority().map(|a| a.as_str()))
            .unwrap_or_default()
            .to_owned();
        let headers: Vec<(String, String)> = parts
            .headers
            .iter()
            .filter_map(|(name, value)| {
                Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
            })
            .collect();
        let headers: Vec<(&str, &str)> =
            headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        let http = HttpRequest {
            method: parts.method.as_str(),
            authority: &authority,
            path: uri.path(),
            query: uri.query(),
            headers: &headers,
            body: &body,
        };
        match state.federation.inbound.authenticate(&http).await {
            Ok(origin) => {
                state.federation.delivery.contacted(&origin);
                Ok(Self { origin, body })
            }
            Err(error) => {
                tracing::warn!(code = error.code(), %error, path = uri.path(), "refused federation request");
                let status =
                    StatusCode::from_u16(error.status()).unwrap_or(StatusCode::UNAUTHORIZED);
                Err(ApiError::new(status, error.code(), error.to_string()))
            }
        }
    }
}

/// Reads the body of a request whose sender is not authenticated yet: refused at once if it
/// declares more than `limit` bytes, cut off past `limit`, given at most the configured read
/// timeout, and only while fewer than the configured number of such reads are under way.
async fn read_unauthenticated(
    state: &AppState,
    parts: &axum::http::request::Parts,
    body: axum::body::Body,
    limit: usize,
) -> ApiResult<Bytes> {
    let headers = &parts.headers;
    let too_large = || {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "request body too large")
    };
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(too_large());
    }
    if declared == Some(0) {
        return Ok(Bytes::new());
    }
    let address = parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map_or(std::net::IpAddr::from([0, 0, 0, 0]), |info| info.0.ip());
    let Some(_slot) = state.unauthenticated_reads.try_take(address) else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "too many unauthenticated requests under way; retry shortly",
        ));
    };
    let timeout = std::time::Duration::from_secs(state.config.limits.body_read_timeout_secs);
    match tokio::time::timeout(timeout, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(_)) => Err(too_large()),
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            "the request body did not arrive in time",
        )),
    }
}

/// `GET /_guildhall/v1/keys/server`: our self-signed key document, signed afresh so that its
/// validity always runs a day from now.
pub(super) async fn server_keys(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let document = crate::federation::key_document(&state.server_name, &state.keys)
        .map_err(ApiError::internal)?;
    Ok(Json(Value::Object(document)))
}

/// `GET /_guildhall/v1/trust/list`: our local trust entries as a signed list, when the
/// operator publishes one (spec 15.3). Unauthenticated.
pub(super) async fn trust_list(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    if !state.federation.publish_trust_list {
        return Err(ApiError::not_found("not_found", "this server publishes no trust list"));
    }
    let list = state
        .federation
        .trust
        .published(&state.keys.current)
        .await?
        .ok_or_else(|| ApiError::internal("could not sign the trust list"))?;
    Ok(Json(Value::Object(list)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MoveBody {
    #[serde(rename = "move")]
    statement: JsonObject,
    from_attestation: JsonObject,
    to_attestation: JsonObject,
}

/// `POST /_guildhall/v1/identity/move`: a server tells us of an account move (spec 16.5). We
/// record it (profiles show where the account went); when the account moved away is one of
/// ours, we answer the guilds it is in so that its new server can move the memberships, and
/// it can no longer log in here.
pub(super) async fn identity_move(
    State(state): State<AppState>,
    request: Federated,
) -> ApiResult<Json<Value>> {
    let body: MoveBody = request.json()?;
    let proof = guildhall_spec::content::MoveProof {
        statement: body.statement,
        from_attestation: body.from_attestation,
        to_attestation: body.to_attestation,
    };
    let moved = crate::identity::verify_move(&state.federation.keys, &state.store, &proof)
        .await
        .map_err(|message| ApiError::new(StatusCode::BAD_REQUEST, "invalid_move", message))?;
    state.store.put_move(&moved.from, &moved.to, moved.ts, &proof.statement).await?;
    tracing::info!(from = %moved.from, to = %moved.to, told_by = %request.origin, "account move recorded");
    if moved.from.server_name() != state.server_name {
        return Ok(Json(json!({})));
    }
    let guilds = state.store.guilds_of(&moved.from).await?;
    Ok(Json(json!({"guilds": guilds})))
}

/// A user id from the path that names one of our users (`404 not_found` otherwise).
fn our_user_id(state: &AppState, text: &str) -> ApiResult<guildhall_spec::UserId> {
    let user_id: guildhall_spec::UserId = super::parse_id("user id", text)?;
    if user_id.server_name() != state.server_name {
        return Err(ApiError::not_found("not_found", "not a user of this server"));
    }
    Ok(user_id)
}

/// `GET /_guildhall/v1/identity/{user_id}`: the current attestation of one of our users, with
/// the rotation statements that led to it (spec 16.2).
pub(super) async fn identity(
    State(state): State<AppState>,
    Path(user_id): Path<String>,
    _authenticated: Federated,
) -> ApiResult<Json<Value>> {
    let user_id = our_user_id(&state, &user_id)?;
    let row =
        state.store.attestation(&user_id).await?.ok_or_else(|| {
            ApiError::not_found("unknown_user", "no such user, or no identity key")
        })?;
    let rotations = state.store.rotations(&user_id).await?;
    Ok(Json(json!({"attestation": row.attestation, "rotations": rotations})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NotifyBody {
    user_id: guildhall_spec::UserId,
}

/// `POST /_guildhall/v1/identity/notify`: a home server says one of its users' identity changed;
/// we fetch it again from that server (the notice itself proves nothing).
pub(super) async fn identity_notify(
    State(state): State<AppState>,
    request: Federated,
) -> ApiResult<Json<Value>> {
    let body: NotifyBody = request.json()?;
    if body.user_id.server_name() != request.origin {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "sender_not_from_origin",
            "only a user's home server tells of their identity",
        ));
    }
    // Only users we hold something of are looked up again: a peer cannot fill our lookup queue
    // with users nobody here has met.
    let known = state.store.attestation(&body.user_id).await?.is_some()
        || !state.store.guilds_of(&body.user_id).await?.is_empty();
    if known {
        state.identities.changed(&body.user_id);
    }
    Ok(Json(json!({})))
}

/// `GET /_guildhall/v1/identity/{user_id}/devices`: the certificates of one of our users'
/// devices that are valid against the current attestation (spec 16.3).
pub(super) async fn identity_devices(
    State(state): State<AppState>,
    Path(user_id): Path<String>,
    _authenticated: Federated,
) -> ApiResult<Json<Value>> {
    let user_id = our_user_id(&state, &user_id)?;
    if state.store.user(&user_id).await?.is_none() {
        return Err(ApiError::not_found("unknown_user", "no such user"));
    }
    let devices = super::identity::valid_certificates(&state, &user_id).await?;
    Ok(Json(json!({"user_id": user_id, "devices": devices})))
}

/// `POST /_guildhall/v1/keys/query`: key documents of other servers, as we fetched and
/// checked them, countersigned by us (a notary answer).
pub(super) async fn query_keys(
    State(state): State<AppState>,
    request: Request,
) -> ApiResult<Json<Value>> {
    if !state.federation.enabled {
        return Err(ApiError::not_found("not_found", "federation is disabled on this server"));
    }
    let (parts, body) = request.into_parts();
    let body = read_unauthenticated(&state, &parts, body, MAX_REQUEST_BODY).await?;
    let value = canonical::parse_strict_slice(&body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_json", e.to_string()))?;
    let request: query_keys::Request = serde_json::from_value(value)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_body", e.to_string()))?;
    if request.server_keys.len() > 50 {
        return Err(ApiError::bad_request("at most 50 servers per query"));
    }
    let mut documents = Vec::new();
    for server in request.server_keys.keys() {
        // Only documents we already hold: an unauthenticated query must not make us fetch.
        let Some(cached) = state.federation.keys.cached(server).await else { continue };
        let mut raw = cached.raw.clone();
        signing::sign_json(&mut raw, &state.keys.current).map_err(ApiError::internal)?;
        documents.push(Value::Object(raw));
    }
    Ok(Json(json!({"server_keys": documents})))
}

/// `PUT /_guildhall/v1/send/{txn_id}`: events and ephemeral events from a peer.
pub(super) async fn send_transaction(
    State(state): State<AppState>,
    Path(txn_id): Path<String>,
    request: Federated<MAX_TRANSACTION_BODY>,
) -> ApiResult<Json<Value>> {
    if txn_id.is_empty() || txn_id.len() > 64 {
        return Err(ApiError::bad_request("bad transaction id"));
    }
    if let Some(previous) = state.store.inbound_txn(&request.origin, &txn_id).await? {
        return Ok(Json(serde_json::from_str(&previous).unwrap_or_default()));
    }
    let body: send_transaction::Request = request.json()?;
    if body.origin != request.origin {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "origin_mismatch",
            "the body's origin is not the signer",
        ));
    }
    if body.events.len() > send_transaction::MAX_EVENTS
        || body.ephemeral.len() > send_transaction::MAX_EPHEMERAL
    {
        return Err(ApiError::bad_request("at most 100 events and 100 ephemeral events"));
    }
    let mut results = serde_json::Map::new();
    let keys: Vec<String> = body
        .events
        .iter()
        .enumerate()
        .map(|(index, event)| {
            guildhall_spec::event::event_id(event)
                .map_or_else(|_| format!("#{index}"), |id| id.to_string())
        })
        .collect();
    let received = state.guilds.receive_events(&request.origin, body.events).await;
    for (key, result) in keys.into_iter().zip(received) {
        let result = match result {
            Ok(()) => EventResult::default(),
            Err(error) => {
                tracing::info!(origin = %request.origin, event = key, %error, "event not applied");
                EventResult { error: Some(ErrorBody::new(error.code(), error.to_string())) }
            }
        };
        results.insert(key, serde_json::to_value(result).unwrap_or_default());
    }
    for ephemeral in body.ephemeral.iter().filter_map(EphemeralEvent::parse) {
        receive_ephemeral(&state, &request.origin, ephemeral).await;
    }
    let response = json!({"results": results});
    state.store.record_inbound_txn(&request.origin, &txn_id, &response.to_string()).await?;
    Ok(Json(response))
}

async fn receive_ephemeral(state: &AppState, origin: &ServerName, ephemeral: EphemeralEvent) {
    match ephemeral {
        EphemeralEvent::Typing(typing) => {
            let Ok(guild) = state.guilds.state(&typing.guild_id).await else { return };
            // From the typist's server to the host, or from the host to a replica.
            let from_typist =
                &typing.user_id.server_name() == origin && state.guilds.hosts(&typing.guild_id);
            let from_host = &typing.guild_id.host() == origin;
            if !(from_typist || from_host)
                || !guild.can_view(&typing.user_id, &typing.channel_id)
                || !typing.active
            {
                return;
            }
            state.bus.publish(BusMessage::Typing {
                guild_id: typing.guild_id,
                channel_id: typing.channel_id,
                user_id: typing.user_id,
                ts: now_ms(),
                state: guild,
            });
        }
        EphemeralEvent::VoiceState(voice_state) => {
            let Ok(guild) = state.guilds.state(&voice_state.guild_id).await else { return };
            // From the user's server to the host, or from the host to a replica.
            let from_user = &voice_state.user_id.server_name() == origin
                && state.guilds.hosts(&voice_state.guild_id);
            let from_host = &voice_state.guild_id.host() == origin;
            // The host tells a user's server that its user is out of voice even when the user is
            // no longer a member (kicked, banned): spec 18.3.
            let own_user_left = from_host
                && voice_state.channel_id.is_none()
                && voice_state.user_id.server_name() == state.server_name;
            let checked = own_user_left || crate::voice::check(&guild, &voice_state).is_ok();
            if (from_user || from_host) && checked {
                crate::voice::apply(state, voice_state, guild, origin.clone());
            }
        }
        EphemeralEvent::Presence(presence) if &presence.user_id.server_name() == origin => {
            let status = match presence.status {
                guildhall_spec::api::ephemeral::PresenceStatus::Online => "online",
                guildhall_spec::api::ephemeral::PresenceStatus::Idle => "idle",
                guildhall_spec::api::ephemeral::PresenceStatus::Dnd => "dnd",
                guildhall_spec::api::ephemeral::PresenceStatus::Offline => "offline",
            };
            state.bus.publish(BusMessage::Presence { user_id: presence.user_id, status });
        }
        _ => {}
    }
}

fn submit_error(error: SubmitError) -> ApiError {
    error.into()
}

/// `POST /_guildhall/v1/guilds/{guild_id}/submit`.
pub(super) async fn submit(
    State(state): State<AppState>,
    Path(guild_id): Path<String>,
    request: Federated,
) -> ApiResult<Json<Value>> {
    let guild_id: GuildId = super::parse_id("guild id", &guild_id)?;
    let body: submit_event::Request = request.json()?;
    if body.proposal.get("guild_id").and_then(Value::as_str) != Some(guild_id.as_str()) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_event",
            "the proposal is for another guild",
        ));
    }
    if body.proposal.get("type").and_then(Value::as_str) == Some("member.join") {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_event",
            "joins go through /join",
        ));
    }
    let done =
        state.guilds.submit_proposal(&request.origin, body.proposal).await.map_err(submit_error)?;
    Ok(Json(json!({"event": done.event})))
}

/// `GET /_guildhall/v1/invites/{code}`.
pub(super) async fn invite(
    State(state): State<AppState>,
    Path(code): Path<String>,
    _request: Federated,
) -> ApiResult<Json<Value>> {
    let code: InviteCode = super::parse_id("invite code", &code)?;
    let unknown = || ApiError::not_found("unknown_invite", "this invite is invalid or has expired");
    let hosted = state.store.hosted_invite_guild(&code, &state.server_name).await?;
    let guild_id = hosted.ok_or_else(unknown)?;
    let guild = state.guilds.state(&guild_id).await?;
    let invite = guild
        .invites
        .get(&code)
        .filter(|invite| invite.is_usable(now_ms()) && !guild.deleted)
        .ok_or_else(unknown)?;
    let response = get_invite::Response {
        code: code.clone(),
        guild_id: guild_id.clone(),
        guild_name: guild.name.clone(),
        channel_id: invite.channel_id.clone(),
        member_count: guild.members.len() as u64,
    };
    Ok(Json(serde_json::to_value(response).map_err(ApiError::internal)?))
}

/// `POST /_guildhall/v1/guilds/{guild_id}/join`.
pub(super) async fn join(
    State(state): State<AppState>,
    Path(guild_id): Path<String>,
    request: Federated,
) -> ApiResult<Json<Value>> {
    let guild_id: GuildId = super::parse_id("guild id", &guild_id)?;
    let body: join_guild::Request = request.json()?;
    if body.user_id.server_name() != request.origin {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "sender_not_from_origin",
            "the user is not from the calling server",
        ));
    }
    let proposal_is_the_join = body.proposal.get("type").and_then(Value::as_str)
        == Some("member.join")
        && body.proposal.get("sender").and_then(Value::as_str) == Some(body.user_id.as_str())
        && body.proposal.get("guild_id").and_then(Value::as_str) == Some(guild_id.as_str());
    if !proposal_is_the_join {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_event",
            "the proposal must be the user's member.join",
        ));
    }
    let done =
        state.guilds.submit_proposal(&request.origin, body.proposal).await.map_err(submit_error)?;
    if done.replayed {
        // A retry (its answer was lost): exactly the first answer, whose snapshot is the state
        // at the join. The current state under the join's seq would be a lie the host signs.
        let answer =
            state.store.join_answer(&guild_id, &done.event_id).await?.ok_or_else(|| {
                ApiError::new(StatusCode::CONFLICT, "invalid_event", "already a member")
            })?;
        let answer: Value = serde_json::from_str(&answer).map_err(ApiError::internal)?;
        return Ok(Json(answer));
    }
    let snapshot = signed_snapshot(&state, &done.state, done.seq, &done.event_id, &request.origin)?;
    let history = state
        .store
        .guild_events_before(&guild_id, done.seq.saturating_sub(1), JOIN_HISTORY)
        .await?;
    let events: Vec<Value> = history
        .iter()
        .map(|event| Value::Object(as_seen_by(event, &done.state, &request.origin)))
        .collect();
    let answer = json!({"event": done.event, "snapshot": snapshot, "events": events});
    state.store.record_join_answer(&guild_id, &done.event_id, &answer.to_string()).await?;
    Ok(Json(answer))
}

/// The host-signed snapshot of `guild` for `server`: channels it cannot view are left out.
fn signed_snapshot(
    state: &AppState,
    guild: &GuildState,
    seq: u64,
    event_id: &EventId,
    server: &ServerName,
) -> ApiResult<Value> {
    let mut visible = guild.clone();
    visible.channels.retain(|channel, _| server_can_view(guild, server, channel));
    visible.invites.retain(|_, invite| visible.channels.contains_key(&invite.channel_id));
    let snapshot = Snapshot {
        guild_id: guild.guild_id.clone(),
        seq,
        event_id: event_id.clone(),
        state: match serde_json::to_value(&visible).map_err(ApiError::internal)? {
            Value::Object(object) => object,
            _ => JsonObject::new(),
        },
        signatures: JsonObject::new(),
    };
    let Value::Object(mut object) = serde_json::to_value(&snapshot).map_err(ApiError::internal)?
    else {
        return Err(ApiError::internal("snapshot is not an object"));
    };
    object.remove("signatures");
    signing::sign_json(&mut object, &state.keys.current).map_err(ApiError::internal)?;
    Ok(Value::Object(object))
}

/// An event as `server` may see it now: without content when the content is channel-scoped
/// and none of its users may view the channel.
fn as_seen_by(event: &StoredEvent, guild: &GuildState, server: &ServerName) -> JsonObject {
    let mut copy = event.event.clone();
    let channel = copy
        .get("type")
        .and_then(Value::as_str)
        .zip(copy.get("content").and_then(Value::as_object))
        .and_then(|(kind, content)| EventContent::parse(kind, content).ok())
        .and_then(|content| content.visibility_channel().cloned());
    if let Some(channel) = channel
        && !server_can_view(guild, server, &channel)
    {
        copy.remove("content");
    }
    copy
}

/// The guild, if `server` has members in it (only member servers may read the log).
async fn guild_for_member_server(
    state: &AppState,
    guild_id: &str,
    server: &ServerName,
) -> ApiResult<(GuildId, Arc<GuildState>)> {
    let guild_id: GuildId = super::parse_id("guild id", guild_id)?;
    if !state.guilds.hosts(&guild_id) {
        return Err(ApiError::not_found("unknown_guild", "not hosted here"));
    }
    let guild = state
        .guilds
        .state(&guild_id)
        .await
        .map_err(|_| ApiError::not_found("unknown_guild", "no such guild"))?;
    if !guild.member_servers().contains(server) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "not_member",
            "your server has no members in this guild",
        ));
    }
    Ok((guild_id, guild))
}

#[derive(Debug, Deserialize)]
pub(super) struct EventsQuery {
    after: u64,
    limit: Option<u32>,
}

/// `GET /_guildhall/v1/guilds/{guild_id}/events?after=&limit=`.
pub(super) async fn events(
    State(state): State<AppState>,
    Path(guild_id): Path<String>,
    Query(query): Query<EventsQuery>,
    request: Federated,
) -> ApiResult<Json<Value>> {
    let (guild_id, guild) = guild_for_member_server(&state, &guild_id, &request.origin).await?;
    let limit = get_events::Query { after: query.after, limit: query.limit }.effective_limit();
    let head = state.guilds.head(&guild_id).await?.seq;
    let events = state.store.guild_events(&guild_id, query.after, limit).await?;
    let events: Vec<Value> = events
        .iter()
        .map(|event| Value::Object(as_seen_by(event, &guild, &request.origin)))
        .collect();
    Ok(Json(json!({"events": events, "head": head})))
}

/// `GET /_guildhall/v1/guilds/{guild_id}/state`: a signed snapshot at the head.
pub(super) async fn snapshot(
    State(state): State<AppState>,
    Path(guild_id): Path<String>,
    request: Federated,
) -> ApiResult<Json<Value>> {
    let (guild_id, _) = guild_for_member_server(&state, &guild_id, &request.origin).await?;
    // The state, seq and event id of one head: a snapshot's seq always matches its state.
    let head = state.guilds.head(&guild_id).await?;
    Ok(Json(signed_snapshot(&state, &head.state, head.seq, &head.event_id, &request.origin)?))
}

/// `POST /_guildhall/v1/guilds/{guild_id}/content`: withheld content the caller may now see.
pub(super) async fn content(
    State(state): State<AppState>,
    Path(guild_id): Path<String>,
    request: Federated,
) -> ApiResult<Json<Value>> {
    let (guild_id, guild) = guild_for_member_server(&state, &guild_id, &request.origin).await?;
    let body: get_content::Request = request.json()?;
    if body.event_ids.len() > get_content::MAX_EVENTS {
        return Err(ApiError::bad_request("too many event ids"));
    }
    let mut contents = serde_json::Map::new();
    for event in state.store.events_by_id(&guild_id, &body.event_ids).await? {
        let seen = as_seen_by(&event, &guild, &request.origin);
        if let Some(content) = seen.get("content") {
            contents.insert(event.event_id.to_string(), content.clone());
        }
    }
    Ok(Json(json!({"contents": contents})))
}

/// `403 sender_not_from_origin` unless `user_id` is a user of the requesting server.
pub(super) fn sender_from_origin(
    user_id: &guildhall_spec::UserId,
    origin: &ServerName,
) -> ApiResult<()> {
    if &user_id.server_name() == origin {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "sender_not_from_origin",
            format!("{user_id} is not a user of {origin}"),
        ))
    }
}
