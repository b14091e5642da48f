//! Friends, blocks and direct messages.
//!
//! A DM is a guild of kind `dm` hosted by the opener's server (spec chapter 08): the opener
//! creates it and invites the other user with `dm.invite`; the other user's server joins on
//! their behalf (at once when it is this server, on receiving the invitation otherwise).
//! Blocking either way forbids opening or writing to a DM with a local user.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use guildhall_spec::UserId;
use guildhall_spec::content::{EventContent, GuildKind, MemberJoin, MemberRef};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{AuthUser, Json, parse_id, views};
use crate::AppState;
use crate::bus::BusMessage;
use crate::error::{ApiError, ApiResult};

/// `GET /api/v1/users/@me/relationships`: friends, requests and blocks.
pub(super) async fn relationships(
    State(state): State<AppState>,
    auth: AuthUser,
) -> ApiResult<Json<Value>> {
    let mut list: Vec<Value> = state
        .store
        .relationships(&auth.user_id)
        .await?
        .iter()
        .map(|r| json!({"user_id": r.other, "type": r.state, "since_ts": r.since_ts}))
        .collect();
    for blocked in state.store.blocked_by(&auth.user_id).await? {
        list.push(json!({"user_id": blocked, "type": "blocked"}));
    }
    Ok(Json(json!({"relationships": list})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub(super) struct RelationshipBody {
    #[serde(rename = "type")]
    kind: RelationshipKind,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
enum RelationshipKind {
    /// Send a friend request, or accept an incoming one.
    Friend,
    /// Block the user.
    Block,
}

fn notify(state: &AppState, user: &UserId, other: &UserId, kind: &str) {
    state.bus.publish(BusMessage::Relationship {
        user_id: user.clone(),
        relationship: json!({"user_id": other, "type": kind}),
    });
}

/// `PUT /api/v1/users/@me/relationships/{user_id}` with `{"type": "friend" | "block"}`.
pub(super) async fn set_relationship(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(other): Path<String>,
    Json(body): Json<RelationshipBody>,
) -> ApiResult<Json<Value>> {
    let other: UserId = parse_id("user id", &other)?;
    if other == auth.user_id {
        return Err(ApiError::bad_request("that is you"));
    }
    if state.store.user(&other).await?.is_none() {
        return Err(ApiError::not_found("unknown_user", "no such user"));
    }
    match body.kind {
        RelationshipKind::Block => {
            state.store.block(&auth.user_id, &other).await?;
            notify(&state, &other, &auth.user_id, "none");
            Ok(Json(json!({"user_id": other, "type": "blocked"})))
        }
        RelationshipKind::Friend => {
            if state.store.is_blocked_between(&auth.user_id, &other).await? {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "blocked",
                    "you cannot befriend this user",
                ));
            }
            let current = state.store.relationship(&auth.user_id, &other).await?;
            let (mine, theirs) = match current.as_deref() {
                Some("incoming" | "friends") => ("friends", "friends"),
                _ => ("outgoing", "incoming"),
            };
            state.store.set_relationship(&auth.user_id, &other, mine, theirs).await?;
            notify(&state, &other, &auth.user_id, theirs);
            notify(&state, &auth.user_id, &other, mine);
            Ok(Json(json!({"user_id": other, "type": mine})))
        }
    }
}

/// `DELETE /api/v1/users/@me/relationships/{user_id}`: unfriend, cancel or decline a request,
/// or unblock.
pub(super) async fn remove_relationship(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(other): Path<String>,
) -> ApiResult<StatusCode> {
    let other: UserId = parse_id("user id", &other)?;
    let unblocked = state.store.unblock(&auth.user_id, &other).await?;
    let removed = state.store.delete_relationship(&auth.user_id, &other).await?;
    if !unblocked && !removed {
        return Err(ApiError::not_found("unknown_relationship", "no relationship with that user"));
    }
    if removed {
        notify(&state, &other, &auth.user_id, "none");
    }
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct OpenDm {
    pub(super) recipient: UserId,
}

/// `POST /api/v1/users/@me/channels` with `{"recipient"}`: opens (or returns) the DM with a
/// local user.
pub(super) async fn open_direct_message(
    State(state): State<AppState>,
    auth: AuthUser,
    Json(body): Json<OpenDm>,
) -> ApiResult<Json<Value>> {
    let other = body.recipient;
    if other == auth.user_id {
        return Err(ApiError::bad_request("you cannot message yourself"));
    }
    let is_local = other.server_name() == state.server_name;
    if is_local && state.store.user(&other).await?.is_none() {
        return Err(ApiError::not_found("unknown_user", "no such user"));
    }
    if state.store.is_blocked_between(&auth.user_id, &other).await? {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "blocked",
            "you cannot message this user",
        ));
    }
    let guild_id = match state.store.direct_message(&auth.user_id, &other).await? {
        Some(guild_id) => guild_id,
        None => {
            let (guild_id, _) =
                state.guilds.create_guild(&auth.user_id, "Direct message", GuildKind::Dm).await?;
            let invite = EventContent::DmInvite(MemberRef { user_id: other.clone() });
            state.guilds.submit(&guild_id, &auth.user_id, invite, None).await?;
            // A local recipient's server (this one) accepts the invitation for them at once; a
            // remote recipient's server does when the invitation reaches it.
            if is_local {
                let join = EventContent::MemberJoin(MemberJoin {
                    invite_code: None,
                    ..Default::default()
                });
                state.guilds.submit(&guild_id, &other, join, None).await?;
            }
            state.store.record_direct_message(&auth.user_id, &other, &guild_id).await?;
            guild_id
        }
    };
    let guild_state = state.guilds.state(&guild_id).await?;
    let mut view = views::guild(&guild_state, &auth.user_id, true);
    view["recipient"] = json!(other);
    Ok(Json(view))
}

/// `GET /api/v1/users/@me/channels`: the user's DMs.
pub(super) async fn direct_messages(
    State(state): State<AppState>,
    auth: AuthUser,
) -> ApiResult<Json<Value>> {
    let mut dms = Vec::new();
    for guild_id in state.store.guilds_of(&auth.user_id).await? {
        let guild_state = state.guilds.state(&guild_id).await?;
        if guild_state.kind == GuildKind::Dm {
            dms.push(views::guild(&guild_state, &auth.user_id, true));
        }
    }
    Ok(Json(json!({"channels": dms})))
}
