//! The Discord-compatible bot API: REST under `/api/v10`, the gateway it points to at
//! `/discord/gateway`, and bot applications (`/api/v1/applications`).
//!
//! Existing Discord bots run against Guildhall unchanged (see `examples/discord/`). The layer
//! maps onto the same services as the native API and has no read or write path of its own:
//! every request is translated (snowflakes to ids, Discord's bodies to the native ones), handed
//! to the native handler, and its answer translated back ([`objects`]). Permission checks,
//! limits and idempotency are therefore exactly the native API's.
//!
//! What differs from Discord is written down in `docs/discord-compat.md`, with the coverage
//! table of routes and gateway events that `cargo xtask discord-coverage` generates.

pub mod bots;
mod manage;
mod messages;
pub mod objects;
mod rest;
pub mod snowflake;

use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AuthUser;
use crate::AppState;
use crate::error::ApiError;

/// Discord's JSON error codes for the native error codes they correspond to.
fn discord_code(error: &ApiError) -> (u32, &'static str) {
    match error.code() {
        "unknown_channel" | "ambiguous_channel" => (10003, "Unknown Channel"),
        "unknown_guild" => (10004, "Unknown Guild"),
        "unknown_invite" => (10006, "Unknown Invite"),
        "unknown_member" => (10007, "Unknown Member"),
        "unknown_message" | "not_pinned" => (10008, "Unknown Message"),
        "unknown_role" => (10011, "Unknown Role"),
        "unknown_user" => (10013, "Unknown User"),
        "invalid_emoji" | "unknown_reaction" => (10014, "Unknown Emoji"),
        "unknown_application" => (10002, "Unknown Application"),
        "empty_message" => (50006, "Cannot send an empty message"),
        "blocked" => (50007, "Cannot send messages to this user"),
        "unauthorized" => (0, "401: Unauthorized"),
        "missing_permission" | "not_member" | "banned" | "server_banned" => {
            (50013, "Missing Permissions")
        }
        "internal" => (0, "500: Internal Server Error"),
        _ if error.status() == StatusCode::NOT_FOUND => (0, "404: Not Found"),
        _ if error.status() == StatusCode::BAD_REQUEST => (50035, "Invalid Form Body"),
        _ if error.status() == StatusCode::FORBIDDEN => (50013, "Missing Permissions"),
        _ => (0, "Error"),
    }
}

/// An error in Discord's shape: `{"code", "message"}` with Discord's numeric codes, and for a
/// rate limit `{"message", "retry_after", "global"}` with Discord's headers.
#[derive(Debug)]
pub struct DiscordError(pub ApiError);

impl From<ApiError> for DiscordError {
    fn from(error: ApiError) -> Self {
        Self(error)
    }
}

impl From<sqlx::Error> for DiscordError {
    fn from(error: sqlx::Error) -> Self {
        Self(error.into())
    }
}

impl IntoResponse for DiscordError {
    fn into_response(self) -> Response {
        let error = self.0;
        if let Some(retry_ms) = error.retry_after_ms() {
            return rate_limited(retry_ms);
        }
        let (code, title) = discord_code(&error);
        let body = if code == 50035 {
            json!({"code": code, "message": title, "errors": {"_errors": [{"code": error.code(), "message": error.message()}]}})
        } else {
            json!({"code": code, "message": title})
        };
        (error.status(), axum::Json(body)).into_response()
    }
}

/// Discord's 429: the body discord.py reads (`retry_after` in seconds) and the headers.
pub fn rate_limited(retry_ms: u64) -> Response {
    let seconds = retry_ms as f64 / 1000.0;
    let body = json!({"message": "You are being rate limited.", "retry_after": seconds, "global": false, "code": 0});
    let mut response = (StatusCode::TOO_MANY_REQUESTS, axum::Json(body)).into_response();
    let headers = response.headers_mut();
    let whole_seconds = retry_ms.div_ceil(1000).max(1).to_string();
    let reset_after = format!("{seconds:.3}");
    let reset_at = format!("{:.3}", (crate::store::now_ms() + retry_ms) as f64 / 1000.0);
    for (name, value) in [
        ("retry-after", whole_seconds.as_str()),
        ("x-ratelimit-limit", "1"),
        ("x-ratelimit-remaining", "0"),
        ("x-ratelimit-reset-after", reset_after.as_str()),
        ("x-ratelimit-reset", reset_at.as_str()),
        ("x-ratelimit-bucket", "account"),
        ("x-ratelimit-scope", "user"),
        // discord.py treats a 429 without `Via` as not coming from the API and gives up.
        ("via", "1.1 guildhall"),
    ] {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(name, value);
        }
    }
    response
}

/// The result of a compatibility handler.
pub type DiscordResult<T> = Result<T, DiscordError>;

/// The authenticated user of a compatibility request: `Authorization: Bot <token>` (a bot's
/// token) or `Bearer <token>` (any login), after the per-account rate limit.
#[derive(Debug, Clone)]
pub struct DiscordAuth(pub AuthUser);

impl FromRequestParts<AppState> for DiscordAuth {
    type Rejection = DiscordError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> DiscordResult<Self> {
        let token = token_of(&parts.headers)
            .ok_or_else(|| ApiError::unauthorized("missing Bot or Bearer token"))?;
        let user = super::authenticate(state, token).await?;
        state.account_limiter.check(user.user_id.as_str()).await.map_err(ApiError::rate_limited)?;
        Ok(Self(user))
    }
}

/// The token of an `Authorization: Bot …` or `Bearer …` header.
fn token_of(headers: &HeaderMap) -> Option<&str> {
    let header = headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    header.strip_prefix("Bot ").or_else(|| header.strip_prefix("Bearer ")).map(str::trim)
}

/// The `/api/v10` router.
pub fn router() -> Router<AppState> {
    rest::router()
}

/// The URL of the Discord-compatible gateway: `[bots] gateway_url` when set, otherwise as a
/// client of this request reaches it: the `Host` it asked for, `wss` behind a proxy that says
/// it terminated TLS.
pub fn gateway_url(state: &AppState, headers: &HeaderMap) -> String {
    let configured = &state.config.bots.gateway_url;
    if !configured.is_empty() {
        return configured.clone();
    }
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|value| value.to_str().ok())
        .filter(|host| host.bytes().all(|b| b.is_ascii_graphic()))
        .unwrap_or("localhost");
    let secure = headers
        .get("x-forwarded-proto")
        .and_then(|value| value.to_str().ok())
        .is_some_and(|proto| proto.eq_ignore_ascii_case("https"));
    let scheme = if secure { "wss" } else { "ws" };
    format!("{scheme}://{host}/discord/gateway")
}

/// A JSON body whose rejections (syntax, types, size, content type) are Discord's errors.
#[derive(Debug)]
pub struct DiscordJson<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> axum::extract::FromRequest<S>
    for DiscordJson<T>
{
    type Rejection = DiscordError;

    async fn from_request(request: axum::extract::Request, state: &S) -> DiscordResult<Self> {
        let super::Json(value) = super::Json::<T>::from_request(request, state).await?;
        Ok(Self(value))
    }
}

/// An optional JSON body (empty is `None`), rejected in Discord's shape.
#[derive(Debug)]
pub struct DiscordOptionalJson<T>(pub Option<T>);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> axum::extract::FromRequest<S>
    for DiscordOptionalJson<T>
{
    type Rejection = DiscordError;

    async fn from_request(request: axum::extract::Request, state: &S) -> DiscordResult<Self> {
        let super::OptionalJson(value) =
            super::OptionalJson::<T>::from_request(request, state).await?;
        Ok(Self(value))
    }
}

/// Query parameters, rejected in Discord's shape.
#[derive(Debug)]
pub struct DiscordQuery<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> FromRequestParts<S> for DiscordQuery<T> {
    type Rejection = DiscordError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> DiscordResult<Self> {
        let axum::extract::Query(value) =
            axum::extract::Query::<T>::from_request_parts(parts, state)
                .await
                .map_err(|error| ApiError::bad_request(error.body_text()))?;
        Ok(Self(value))
    }
}
