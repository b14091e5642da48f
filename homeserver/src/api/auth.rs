//! Registration, login, logout and session management.

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use guildhall_spec::UserId;
use serde::Deserialize;
use serde_json::{Value, json};
use std::net::SocketAddr;

use super::{AuthUser, Json, token_hash, views};
use crate::AppState;
use crate::bus::BusMessage;
use crate::error::{ApiError, ApiResult};
use crate::guilds::random_id;
use crate::passwords::Passwords;
use crate::store::Store;

/// The shortest accepted password.
const MIN_PASSWORD_CHARS: usize = 8;
/// The longest accepted password (argon2 cost grows with it).
const MAX_PASSWORD_BYTES: usize = 1024;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Credentials {
    username: String,
    password: String,
}

fn check_password_rules(password: &str) -> ApiResult<()> {
    if password.chars().count() < MIN_PASSWORD_CHARS || password.len() > MAX_PASSWORD_BYTES {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "weak_password",
            format!(
                "passwords must be {MIN_PASSWORD_CHARS} characters to {MAX_PASSWORD_BYTES} bytes"
            ),
        ));
    }
    Ok(())
}

/// Creates an account (also used by `guildhall admin create-user`). `None` if the name is taken.
pub async fn create_account(
    store: &Store,
    passwords: &Passwords,
    user_id: &UserId,
    password: &str,
) -> ApiResult<crate::store::UserRow> {
    check_password_rules(password)?;
    let hash = passwords.hash(password).await?;
    store.create_user(user_id, &hash).await?.ok_or_else(|| {
        ApiError::new(StatusCode::CONFLICT, "username_taken", "that username is taken")
    })
}

/// `POST /api/v1/auth/register`.
pub(super) async fn register(
    State(state): State<AppState>,
    ConnectInfo(address): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Json(body): Json<Credentials>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    if !state.config.registration.enabled {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "registration_closed",
            "registration is closed on this server",
        ));
    }
    let user_id = UserId::new(&body.username, &state.server_name).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_username",
            "usernames are 1-64 of a-z 0-9 . _ = -",
        )
    })?;
    let user = create_account(&state.store, &state.passwords, &user_id, &body.password).await?;
    let token = start_session(&state, &user_id, &headers, address).await?;
    Ok((StatusCode::CREATED, Json(json!({"token": token, "user": views::own_user(&user)}))))
}

/// `POST /api/v1/auth/login`.
pub(super) async fn login(
    State(state): State<AppState>,
    ConnectInfo(address): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Json(body): Json<Credentials>,
) -> ApiResult<Json<Value>> {
    let invalid = || {
        ApiError::new(StatusCode::UNAUTHORIZED, "invalid_credentials", "wrong username or password")
    };
    let user_id = UserId::new(&body.username, &state.server_name).map_err(|_| invalid())?;
    if body.password.len() > MAX_PASSWORD_BYTES {
        return Err(invalid());
    }
    // Failed attempts are limited per account, whoever makes them and from wherever. Every
    // attempt takes a token before any hashing (so concurrent guesses cannot all slip through
    // on one token), and a successful login gives it back.
    let attempts_key = user_id.as_str();
    state.failed_logins.check(attempts_key).await.map_err(ApiError::rate_limited)?;
    let user = state.store.user(&user_id).await?;
    // An account made by key login has no password: it costs the same as an unknown name.
    let stored =
        user.as_ref().map(|user| user.password_hash.as_str()).filter(|hash| !hash.is_empty());
    let verified = state.passwords.verify(&body.password, stored).await?;
    let Some(user) = user.filter(|_| verified) else {
        return Err(invalid());
    };
    state.failed_logins.refund(attempts_key).await;
    refuse_moved(&state, &user_id).await?;
    let token = start_session(&state, &user_id, &headers, address).await?;
    Ok(Json(json!({"token": token, "user": views::own_user(&user)})))
}

/// An account that moved to another (spec 16.5) logs in no more: its user lives on there.
pub(super) async fn refuse_moved(state: &AppState, user_id: &UserId) -> ApiResult<()> {
    match state.store.moved_to(user_id).await? {
        Some(to) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "account_moved",
            format!("this account moved to {to}"),
        )),
        None => Ok(()),
    }
}

/// Issues a fresh session token for `user_id` (the test-control API's logins).
pub(super) async fn issue_token(state: &AppState, user_id: &UserId) -> ApiResult<String> {
    let token = format!("gh_{}", random_id(43));
    state
        .store
        .create_session(user_id, &random_id(16), &token_hash(&token), Some("test-control"), None)
        .await?;
    Ok(token)
}

pub(super) async fn start_session(
    state: &AppState,
    user_id: &UserId,
    headers: &HeaderMap,
    address: SocketAddr,
) -> ApiResult<String> {
    let token = format!("gh_{}", random_id(43));
    let user_agent = headers.get(axum::http::header::USER_AGENT).and_then(|v| v.to_str().ok());
    let ip = address.ip().to_string();
    state
        .store
        .create_session(user_id, &random_id(16), &token_hash(&token), user_agent, Some(&ip))
        .await?;
    Ok(token)
}

/// `POST /api/v1/auth/logout`: revokes the token used.
pub(super) async fn logout(State(state): State<AppState>, auth: AuthUser) -> ApiResult<StatusCode> {
    state.store.delete_session(&auth.user_id, &auth.session_id).await?;
    login_revoked(&state, &auth.user_id, &auth.session_id).await;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/v1/auth/sessions`.
pub(super) async fn sessions(
    State(state): State<AppState>,
    auth: AuthUser,
) -> ApiResult<Json<Value>> {
    let sessions: Vec<Value> = state
        .store
        .sessions(&auth.user_id)
        .await?
        .iter()
        .map(|s| {
            json!({
                "id": s.session_id,
                "created_ts": s.created_ts,
                "last_seen_ts": s.last_seen_ts,
                "user_agent": s.user_agent,
                "ip": s.ip,
                "current": s.session_id == auth.session_id,
            })
        })
        .collect();
    Ok(Json(json!({"sessions": sessions})))
}

/// `DELETE /api/v1/auth/sessions/{session_id}`.
pub(super) async fn revoke_session(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(session_id): Path<String>,
) -> ApiResult<StatusCode> {
    if state.store.delete_session(&auth.user_id, &session_id).await? {
        login_revoked(&state, &auth.user_id, &session_id).await;
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("unknown_session", "no such session"))
    }
}

/// A revoked login ends its gateway connections too: connected ones are closed through the bus
/// and disconnected ones can no longer be resumed. Its device went with it, so the user's device
/// list changed (spec 17.4).
pub(super) async fn login_revoked(state: &AppState, user_id: &UserId, login: &str) {
    state.sessions.revoke_login(login).await;
    state.bus.publish(BusMessage::LoginRevoked { login: login.to_owned() });
    crate::e2e::device_list_changed(state, user_id).await;
}
