//! The client REST API under `/api/v1`, plus the gateway route.
//!
//! Handlers are thin: parse ids at the edge, turn the request into an event content or a store
//! call, and map the outcome to a view. Every error is an [`ApiError`].

mod admin;
mod auth;
pub use auth::create_account;
mod channels;
pub mod discord;
mod e2e;
mod federation;
mod guilds;
mod identity;
mod media;
mod messages;
mod social;
mod test_control;
mod users;
pub mod views;
mod voice;

use std::net::SocketAddr;
use std::str::FromStr;

use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequest, FromRequestParts, Request, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post, put};
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use guildhall_spec::UserId;

use crate::AppState;
use crate::error::{ApiError, ApiResult};

/// Builds the whole HTTP application.
pub fn router(state: AppState) -> Router {
    let body_limit = state.config.limits.max_body_bytes;
    let api = Router::new()
        .route("/auth/register", post(auth::register))
        .route("/auth/login", post(auth::login))
        .route("/auth/logout", post(auth::logout))
        .route("/auth/sessions", get(auth::sessions))
        .route("/auth/sessions/{session_id}", delete(auth::revoke_session))
        .route("/users/@me", get(users::me).patch(users::update_me))
        .route("/users/@me/guilds", get(users::my_guilds))
        .route(
            "/users/@me/identity",
            get(identity::mine).put(identity::set).delete(identity::revoke),
        )
        .route("/users/@me/identity/generate", post(identity::generate))
        .route("/users/@me/identity/rotate", post(identity::rotate))
        .route("/users/@me/identity/move", post(identity::move_account))
        .route("/users/@me/devices", get(identity::devices))
        .route("/users/@me/to_device", get(e2e::inbox))
        .route("/users/@me/to_device/ack", post(e2e::ack))
        .route("/users/@me/to_device/{txn_id}", put(e2e::send_to_device))
        .route("/keys/upload", post(e2e::upload_keys))
        .route("/keys/query", post(e2e::query_keys))
        .route("/keys/claim", post(e2e::claim_keys))
        .route(
            "/users/@me/devices/{device_id}",
            put(identity::put_device).delete(identity::delete_device),
        )
        .route(
            "/users/@me/channels",
            get(social::direct_messages).post(social::open_direct_message),
        )
        .route("/users/@me/relationships", get(social::relationships))
        .route(
            "/users/@me/relationships/{user_id}",
            put(social::set_relationship).delete(social::remove_relationship),
        )
        .route("/users/{user_id}", get(users::profile))
        .route("/guilds", post(guilds::create))
        .route("/guilds/{guild_id}", get(guilds::get).patch(guilds::update).delete(guilds::delete))
        .route("/guilds/{guild_id}/members", get(guilds::members))
        .route(
            "/guilds/{guild_id}/members/@me",
            patch(guilds::update_own_member).delete(guilds::leave),
        )
        .route(
            "/guilds/{guild_id}/members/{user_id}",
            get(guilds::member).patch(guilds::update_member).delete(guilds::kick),
        )
        .route(
            "/guilds/{guild_id}/members/{user_id}/roles/{role_id}",
            put(guilds::add_role).delete(guilds::remove_role),
        )
        .route("/guilds/{guild_id}/bans", get(guilds::bans))
        .route("/guilds/{guild_id}/bans/{user_id}", put(guilds::ban).delete(guilds::unban))
        .route(
            "/guilds/{guild_id}/roles",
            get(guilds::roles).post(guilds::create_role).patch(guilds::reorder_roles),
        )
        .route(
            "/guilds/{guild_id}/roles/{role_id}",
            patch(guilds::update_role).delete(guilds::delete_role),
        )
        .route(
            "/guilds/{guild_id}/channels",
            get(channels::list).post(channels::create).patch(channels::reorder),
        )
        .route("/guilds/{guild_id}/invites", get(channels::guild_invites))
        .route("/guilds/{guild_id}/messages/search", get(messages::search))
        .route(
            "/channels/{channel_id}",
            get(channels::get).patch(channels::update).delete(channels::delete),
        )
        .route(
            "/channels/{channel_id}/permissions/{target_id}",
            put(channels::set_overwrite).delete(channels::delete_overwrite),
        )
        .route("/channels/{channel_id}/invites", post(channels::create_invite))
        .route("/channels/{channel_id}/typing", post(channels::typing))
        .route("/media", post(media::upload))
        .route("/media/{media_id}", get(media::download))
        .route("/media/{media_id}/info", get(media::info))
        .route("/media/{media_id}/thumbnail", get(media::thumbnail))
        .route("/channels/{channel_id}/voice/token", post(voice::token))
        .route("/guilds/{guild_id}/voice-state", put(voice::set_state))
        .route("/guilds/{guild_id}/voice-states", get(voice::states))
        .route("/guilds/{guild_id}/voice-states/{user_id}", patch(voice::moderate))
        .route("/channels/{channel_id}/messages", get(messages::list).post(messages::send))
        .route(
            "/channels/{channel_id}/messages/{message_id}",
            get(messages::get).patch(messages::edit).delete(messages::delete),
        )
        .route(
            "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}",
            get(messages::reactors),
        )
        .route(
            "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me",
            put(messages::react).delete(messages::unreact),
        )
        .route("/channels/{channel_id}/pins", get(messages::pins))
        .route(
            "/channels/{channel_id}/pins/{message_id}",
            put(messages::pin).delete(messages::unpin),
        )
        .route(
            "/guilds/{guild_id}/server-bans/{server}",
            put(guilds::server_ban).delete(guilds::server_unban),
        )
        .route("/admin/federation/policy", get(admin::policy).put(admin::set_policy))
        .route("/admin/equivocations", get(admin::equivocations))
        .route("/admin/trust", get(admin::trust))
        .route("/admin/trust/mode", put(admin::set_mode))
        .route("/admin/trust/entries/{server}", put(admin::set_entry).delete(admin::remove_entry))
        .route("/admin/trust/why/{server}", get(admin::why))
        .route("/admin/trust/stats", get(admin::stats))
        .route("/admin/trust/subscriptions", post(admin::subscribe))
        .route("/admin/trust/subscriptions/{id}", delete(admin::unsubscribe))
        .route("/admin/trust/subscriptions/{id}/refresh", post(admin::refresh))
        .route("/admin/audit", get(admin::audit))
        .route("/admin/federation/queues", get(admin::queues))
        .route(
            "/invites/{code}",
            get(channels::invite).post(channels::accept_invite).delete(channels::revoke_invite),
        )
        .fallback(|| async { ApiError::not_found("not_found", "no such endpoint") });
    let federation = Router::new()
        .route("/keys/server", get(federation::server_keys))
        .route("/keys/query", post(federation::query_keys))
        .route("/send/{txn_id}", put(federation::send_transaction))
        .route("/invites/{code}", get(federation::invite))
        .route("/guilds/{guild_id}/submit", post(federation::submit))
        .route("/guilds/{guild_id}/join", post(federation::join))
        .route("/guilds/{guild_id}/events", get(federation::events))
        .route("/guilds/{guild_id}/state", get(federation::snapshot))
        .route("/guilds/{guild_id}/content", post(federation::content))
        .route("/guilds/{guild_id}/voice/token", post(voice::federated_token))
        .route("/guilds/{guild_id}/voice/moderate", post(voice::federated_moderate))
        .route("/media/{media_id}", get(media::federated))
        .route("/trust/list", get(federation::trust_list))
        .route("/identity/challenge", post(identity::challenge))
        .route("/identity/prove", post(identity::prove))
        .route("/identity/move", post(federation::identity_move))
        .route("/identity/notify", post(federation::identity_notify))
        .route("/identity/{user_id}", get(federation::identity))
        .route("/identity/{user_id}/devices", get(federation::identity_devices))
        .route("/user/keys/query", post(e2e::federated_query))
        .route("/user/keys/claim", post(e2e::federated_claim))
        .route("/user/to_device/{txn_id}", put(e2e::federated_send))
        .route("/user/devices/notify", post(e2e::federated_notify))
        .fallback(|| async { ApiError::not_found("not_found", "no such endpoint") });
    let test_control = Router::new()
        .route("/users", post(test_control::create_user))
        .route("/users/{user_id}/guilds/{guild_id}/messages", get(test_control::user_messages))
        .route("/users/{user_id}/media", post(test_control::upload_media))
        .route("/media/collect", post(test_control::collect_media))
        .route(
            "/users/{user_id}/identity",
            put(test_control::bind_identity).delete(test_control::revoke_identity),
        )
        .route("/users/{user_id}/devices/{device_id}", put(test_control::put_device))
        .route("/users/{user_id}/devices/{device_id}/keys", post(test_control::upload_keys))
        .route("/users/{user_id}/devices/{device_id}/to_device", get(test_control::inbox))
        .route("/users/{user_id}/devices/{device_id}/to_device/ack", post(test_control::ack))
        .route("/guilds", post(test_control::create_guild))
        .route("/guilds/{guild_id}/invites", post(test_control::create_invite))
        .route("/guilds/{guild_id}/join", post(test_control::join))
        .route("/guilds/{guild_id}/messages", post(test_control::send))
        .route("/guilds/{guild_id}/messages/{message_id}/edit", post(test_control::edit))
        .route("/guilds/{guild_id}/messages/{message_id}/delete", post(test_control::delete))
        .route("/guilds/{guild_id}/messages/{message_id}/reactions", post(test_control::react))
        .route(
            "/guilds/{guild_id}/events",
            get(test_control::raw_log).post(test_control::any_event),
        )
        .route("/guilds/{guild_id}/state", get(test_control::state))
        .route("/evidence", get(test_control::evidence))
        .route("/trust/subscriptions", post(test_control::subscribe))
        .route("/trust/subscriptions/{id}", delete(test_control::unsubscribe))
        .route("/trust/subscriptions/{id}/refresh", post(test_control::refresh_subscription));
    let mut root = Router::new();
    if state.config.server.danger_enable_test_control {
        root = root.nest("/_guildhall/test/v1", test_control);
    }
    // The Discord-compatible bot API, unless the operator turned it off.
    let api = if state.config.bots.enabled {
        root = root
            .nest("/api/v10", discord::router())
            .route("/discord/gateway", get(crate::gateway::upgrade_discord));
        api.merge(discord::bots::router())
    } else {
        api
    };
    root.nest("/api/v1", api)
        .nest("/_guildhall/v1", federation)
        .merge(crate::web::router())
        .route("/gateway", get(crate::gateway::upgrade))
        .route("/livekit/webhook", post(voice::webhook))
        .route("/health", get(|| async { "ok" }))
        .route("/ready", get(ready))
        .fallback(|| async { ApiError::not_found("not_found", "no such endpoint") })
        .layer(middleware::from_fn_with_state(state.clone(), durable_responses))
        .layer(middleware::from_fn(crate::metrics::count_requests))
        .layer(middleware::from_fn_with_state(state.clone(), limit_per_ip))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

/// `GET /ready`: whether this node can serve (its database answers, and its Redis if it has
/// one), for a load balancer to route by. `/health` only says the process is up.
async fn ready(State(state): State<AppState>) -> Response {
    let started = std::time::Instant::now();
    let database = state.store.ping().await;
    crate::metrics::global().store("ping", started.elapsed());
    let redis = match &state.cluster {
        Some(cluster) => {
            let mut connection = cluster.connection();
            Some(redis::cmd("PING").query_async::<String>(&mut connection).await)
        }
        None => None,
    };
    let verdict = |ok: bool| if ok { "ok" } else { "unavailable" };
    let database_ok = database.is_ok();
    let redis_ok = redis.as_ref().is_none_or(Result::is_ok);
    let mut body = serde_json::json!({"database": verdict(database_ok)});
    if let Some(redis) = &redis {
        body["redis"] = verdict(redis.is_ok()).into();
    }
    let status = if database_ok && redis_ok {
        axum::http::StatusCode::OK
    } else {
        axum::http::StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

/// Holds every response until what this process appended before it was produced is on disk:
/// an answer may reflect an append (a sent message, an acknowledged `/send`) that the store
/// has committed but not yet made durable (see `GuildStore::durable`).
async fn durable_responses(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let response = next.run(request).await;
    let fencing = std::time::Instant::now();
    if let Err(error) = state.store.durable().await {
        return ApiError::internal(error).into_response();
    }
    crate::metrics::global().store("durable", fencing.elapsed());
    response
}

/// Refuses clients that exceed the per-IP request rate.
async fn limit_per_ip(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let ip =
        request.extensions().get::<ConnectInfo<SocketAddr>>().map(|info| info.0.ip().to_string());
    if let Some(ip) = ip
        && let Err(retry_after_ms) = state.ip_limiter.check(&ip).await
    {
        if request.uri().path().starts_with("/api/v10/") {
            return discord::rate_limited(retry_after_ms);
        }
        return ApiError::rate_limited(retry_after_ms).into_response();
    }
    next.run(request).await
}

/// The SHA-256 of a bearer token: tokens are stored only hashed.
pub fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// The authenticated user of a request (`Authorization: Bearer <token>`), after the
/// per-account rate limit.
#[derive(Debug, Clone)]
pub struct AuthUser {
    /// The user.
    pub user_id: UserId,
    /// The login session the token belongs to.
    pub session_id: String,
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Self> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok());
        let token = header
            .and_then(|value| value.strip_prefix("Bearer "))
            .ok_or_else(|| ApiError::unauthorized("missing bearer token"))?;
        // A bot acts only through the Discord-compatible API, where its intents hold; its
        // account has no identity, devices or sessions of its own to manage here.
        if discord::bots::is_bot_token(token) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "bot_token",
                "bot tokens are for the Discord-compatible API (/api/v10)",
            ));
        }
        let user = authenticate(state, token).await?;
        state.account_limiter.check(user.user_id.as_str()).await.map_err(ApiError::rate_limited)?;
        Ok(user)
    }
}

/// How stale a session's `last_seen_ts` may grow before a request marks it used again (the
/// store's own condition too).
const SESSION_TOUCH_INTERVAL_MS: u64 = 60_000;

/// Resolves a token to its user.
pub async fn authenticate(state: &AppState, token: &str) -> ApiResult<AuthUser> {
    let session = state
        .store
        .session_user(&token_hash(token))
        .await?
        .ok_or_else(|| ApiError::unauthorized("invalid or revoked token"))?;
    // At most once a minute: a request otherwise only reads (on SQLite an UPDATE takes the
    // database's write lock even when it changes nothing, and waits behind guild appends).
    if crate::store::now_ms().saturating_sub(session.last_seen_ts) >= SESSION_TOUCH_INTERVAL_MS {
        state.store.touch_session(&session.session_id).await?;
    }
    Ok(AuthUser { user_id: session.user_id, session_id: session.session_id })
}

/// A JSON body whose every failure (syntax, unknown field, wrong type, too large) is a typed
/// [`ApiError`].
#[derive(Debug)]
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> ApiResult<Self> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(JsonRejection::JsonDataError(error)) => {
                Err(ApiError::new(StatusCode::BAD_REQUEST, "invalid_body", error.body_text()))
            }
            Err(JsonRejection::JsonSyntaxError(error)) => {
                Err(ApiError::new(StatusCode::BAD_REQUEST, "malformed_json", error.body_text()))
            }
            Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "expected Content-Type: application/json",
            )),
            Err(JsonRejection::BytesRejection(error))
                if error.status() == StatusCode::PAYLOAD_TOO_LARGE =>
            {
                Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    "request body too large",
                ))
            }
            Err(error) => Err(ApiError::new(error.status(), "bad_request", error.body_text())),
        }
    }
}

/// A JSON body that may be absent (an empty body is `None`); a present body is parsed as
/// strictly as [`Json`].
#[derive(Debug)]
pub struct OptionalJson<T>(pub Option<T>);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> ApiResult<Self> {
        let bytes = axum::body::Bytes::from_request(request, state).await.map_err(|error| {
            if error.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    "request body too large",
                )
            } else {
                ApiError::bad_request(error.body_text())
            }
        })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(None));
        }
        serde_json::from_slice(&bytes).map(|value| Self(Some(value))).map_err(|error| {
            let code = if error.is_data() { "invalid_body" } else { "malformed_json" };
            ApiError::new(StatusCode::BAD_REQUEST, code, error.to_string())
        })
    }
}

impl<T: serde::Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// Parses a path segment into an id type, answering `invalid_id` on failure.
pub fn parse_id<T: FromStr>(kind: &str, text: &str) -> ApiResult<T> {
    text.parse().map_err(|_| ApiError::invalid_id(format!("invalid {kind}: {text:?}")))
}
