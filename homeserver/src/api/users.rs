//! The signed-in user's account and other users' public profiles.

use axum::extract::{Path, State};
use guildhall_spec::{MediaId, UserId};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{AuthUser, Json, parse_id, views};
use crate::AppState;
use crate::bus::BusMessage;
use crate::error::{ApiError, ApiResult};

/// The longest display name.
const MAX_DISPLAY_NAME_CHARS: usize = 64;

/// `GET /api/v1/users/@me`.
pub(super) async fn me(State(state): State<AppState>, auth: AuthUser) -> ApiResult<Json<Value>> {
    let user = state
        .store
        .user(&auth.user_id)
        .await?
        .ok_or_else(|| ApiError::unauthorized("account is gone"))?;
    let mut view = views::own_user(&user);
    view["identity_key"] = json!(identity_key(&state, &auth.user_id).await?);
    Ok(Json(view))
}

async fn identity_key(state: &AppState, user_id: &UserId) -> ApiResult<Option<String>> {
    Ok(state.store.attestation(user_id).await?.and_then(|row| row.identity_key))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ProfileUpdate {
    #[serde(default, with = "double_option")]
    display_name: Option<Option<String>>,
    #[serde(default, with = "double_option")]
    avatar: Option<Option<String>>,
}

/// `PATCH /api/v1/users/@me`: `null` clears a field, an absent field is unchanged.
pub(super) async fn update_me(
    State(state): State<AppState>,
    auth: AuthUser,
    Json(body): Json<ProfileUpdate>,
) -> ApiResult<Json<Value>> {
    if let Some(Some(name)) = &body.display_name
        && (name.trim().is_empty() || name.chars().count() > MAX_DISPLAY_NAME_CHARS)
    {
        return Err(ApiError::bad_request(format!(
            "display_name must be 1 to {MAX_DISPLAY_NAME_CHARS} characters"
        )));
    }
    // An avatar is a picture uploaded to this server first (spec 19).
    let avatar = match &body.avatar {
        Some(Some(avatar)) => {
            let avatar: MediaId = parse_id("media id", avatar)?;
            crate::media::require_picture(&state, &auth.user_id, &avatar).await?;
            Some(Some(avatar))
        }
        Some(None) => Some(None),
        None => None,
    };
    state
        .store
        .update_profile(
            &auth.user_id,
            body.display_name.as_ref().map(Option::as_deref),
            body.avatar.as_ref().map(Option::as_deref),
        )
        .await?;
    if let Some(avatar) = &avatar {
        state.store.set_avatar_ref(&auth.user_id, avatar.as_ref()).await?;
    }
    let user = state
        .store
        .user(&auth.user_id)
        .await?
        .ok_or_else(|| ApiError::unauthorized("account is gone"))?;
    state.bus.publish(BusMessage::UserUpdate {
        user_id: auth.user_id.clone(),
        profile: views::user(&user),
    });
    Ok(Json(views::own_user(&user)))
}

/// `GET /api/v1/users/{user_id}`: a local user's public profile.
pub(super) async fn profile(
    State(state): State<AppState>,
    _auth: AuthUser,
    Path(user_id): Path<String>,
) -> ApiResult<Json<Value>> {
    let user_id: UserId = parse_id("user id", &user_id)?;
    let user = state
        .store
        .user(&user_id)
        .await?
        .ok_or_else(|| ApiError::not_found("unknown_user", "no such user"))?;
    let mut view = views::user(&user);
    view["identity_key"] = json!(identity_key(&state, &user_id).await?);
    view["moved_to"] = json!(state.store.moved_to(&user_id).await?);
    Ok(Json(view))
}

/// `GET /api/v1/users/@me/guilds`.
pub(super) async fn my_guilds(
    State(state): State<AppState>,
    auth: AuthUser,
) -> ApiResult<Json<Value>> {
    let mut guilds = Vec::new();
    for guild_id in state.store.guilds_of(&auth.user_id).await? {
        let guild_state = state.guilds.state(&guild_id).await?;
        guilds.push(views::guild(&guild_state, &auth.user_id, false));
    }
    Ok(Json(json!({"guilds": guilds})))
}

/// Serde helper distinguishing an absent member from an explicit `null`.
pub(super) mod double_option {
    use serde::{Deserialize, Deserializer};

    pub(crate) fn deserialize<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
        deserializer: D,
    ) -> Result<Option<Option<T>>, D::Error> {
        Option::<T>::deserialize(deserializer).map(Some)
    }
}
