//! Acting on users already in a voice room (spec 18.3, 18.5), as the guild's host: moderators'
//! server mute, deafen and disconnect, and the host's own enforcement when a user may no longer
//! be there or may publish differently. Both end in calls to the host's LiveKit RoomService and
//! a new voice state relayed to every member server.

use std::sync::Arc;

use axum::http::StatusCode;
use guildhall_media_relay::room_service::{ParticipantPermission, RoomServiceError};
use guildhall_media_relay::voice::{VoicePermissions, VoiceService};
use guildhall_spec::api::ephemeral::VoiceState;
use guildhall_spec::permissions::Permissions;
use guildhall_spec::state::GuildState;
use guildhall_spec::{GuildId, UserId};
use tokio::sync::broadcast::error::RecvError;

use super::{Moderation, apply, authorize, unavailable};
use crate::AppState;
use crate::bus::BusMessage;
use crate::error::{ApiError, ApiResult};

/// What a moderator asks for; `None`: unchanged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Action {
    /// Server-mute or unmute (MUTE_MEMBERS).
    pub mute: Option<bool>,
    /// Server-deafen or undeafen (DEAFEN_MEMBERS).
    pub deaf: Option<bool>,
    /// Disconnect from voice (MOVE_MEMBERS).
    pub disconnect: bool,
}

/// `moderator` acts on `target` in a guild this server hosts (spec 18.5, checks in its order):
/// LiveKit is told first, and only when it agreed (or the user is not in its room) the host
/// records the change and relays the new voice state, which it answers.
pub async fn moderate(
    state: &AppState,
    guild_id: &GuildId,
    guild: &Arc<GuildState>,
    moderator: &UserId,
    target: &UserId,
    action: Action,
) -> ApiResult<VoiceState> {
    if !guild.members.contains_key(moderator) {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "not_member", "not a member"));
    }
    if action == Action::default() {
        return Err(ApiError::bad_request("nothing to do: give mute, deaf or disconnect"));
    }
    let Some((current, channel_id)) = state
        .voice_states
        .get(guild_id, target)
        .and_then(|current| current.channel_id.clone().map(|channel| (current, channel)))
    else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "not_in_voice",
            "the user is not in a voice channel",
        ));
    };
    let granted = guild.channel_permissions(moderator, &channel_id);
    let needed = [
        (action.mute.is_some(), Permissions::MUTE_MEMBERS, "MUTE_MEMBERS"),
        (action.deaf.is_some(), Permissions::DEAFEN_MEMBERS, "DEAFEN_MEMBERS"),
        (action.disconnect, Permissions::MOVE_MEMBERS, "MOVE_MEMBERS"),
    ];
    for (asked, permission, name) in needed {
        if asked && !granted.contains(permission) {
            return Err(ApiError::forbidden(format!("{name} is required in this channel")));
        }
    }
    let service = state.voice.as_ref().ok_or_else(unavailable)?;
    let room = VoiceService::room(guild_id, &channel_id);
    let was = state.voice_states.moderation(guild_id, target);
    let now =
        Moderation { mute: action.mute.unwrap_or(was.mute), deaf: action.deaf.unwrap_or(was.deaf) };
    let result = if action.disconnect {
        service.rooms().remove_participant(&room, target.as_str()).await
    } else {
        let permissions = VoicePermissions {
            muted: now.mute,
            deafened: now.deaf,
            ..authorize(guild, target, &channel_id).unwrap_or_default()
        };
        restrict(service, &room, target, permissions).await
    };
    match result {
        Ok(()) => {}
        Err(error) if error.is_not_found() => {}
        Err(error) => {
            tracing::warn!(%room, user = %target, %error, "LiveKit refused a moderator's action");
            return Err(failed(&error));
        }
    }
    state.voice_states.set_moderation(guild_id, target, now);
    let next = VoiceState {
        channel_id: if action.disconnect { None } else { Some(channel_id) },
        mute: now.mute,
        deaf: now.deaf,
        ..current
    };
    apply(state, next.clone(), Arc::clone(guild), state.server_name.clone());
    Ok(next)
}

/// `502 voice_service_failed`: the host's LiveKit could not be reached or refused.
fn failed(error: &RoomServiceError) -> ApiError {
    let reason = match error {
        RoomServiceError::Unreachable(_) | RoomServiceError::Client(_) => "could not be reached",
        _ => "refused the change",
    };
    ApiError::new(
        StatusCode::BAD_GATEWAY,
        "voice_service_failed",
        format!("the guild's voice server {reason}"),
    )
}

/// Gives a participant exactly `permissions` (spec 18.5): the grant LiveKit enforces from now
/// on, and, when it may not use its microphone, the microphone tracks it already publishes
/// muted.
async fn restrict(
    service: &VoiceService,
    room: &str,
    user: &UserId,
    permissions: VoicePermissions,
) -> Result<(), RoomServiceError> {
    let rooms = service.rooms();
    let permission = ParticipantPermission::from(permissions);
    let tracks = rooms.update_participant(room, user.as_str(), &permission).await?;
    if !permission.can_publish_sources.contains(&"MICROPHONE") {
        for track in tracks.iter().filter(|track| track.source == "MICROPHONE" && !track.muted) {
            rooms.mute_published_track(room, user.as_str(), &track.sid, true).await?;
        }
    }
    Ok(())
}

/// The host's enforcement after join (spec 18.3), until the bus closes: after every event of a
/// guild it hosts, each user in voice there who may no longer connect to their channel is
/// removed from the room and their state becomes `channel_id: null`; one whose SPEAK or STREAM
/// changed gets the new publish permissions. The events come from the bus, so this runs after
/// the event is stored and never on the write path; the LiveKit calls run in tasks of their
/// own. When the bus says this fell behind, every hosted guild with users in voice is checked
/// against its current state instead.
pub async fn enforce(state: AppState) {
    let mut bus = state.bus.subscribe();
    loop {
        match bus.recv().await {
            Ok(BusMessage::GuildEvent(message)) => {
                check_room_members(
                    &state,
                    &message.guild_id,
                    message.before.as_deref(),
                    &message.after,
                );
            }
            Ok(_) => {}
            Err(RecvError::Lagged(_)) => {
                for guild_id in state.voice_states.guilds() {
                    if let Ok(guild) = state.guilds.state(&guild_id).await {
                        check_room_members(&state, &guild_id, None, &guild);
                    }
                }
            }
            Err(RecvError::Closed) => return,
        }
    }
}

/// Enforces `after` (the guild's state after an event; `before`, when known, the state before
/// it) on the users in voice in a guild this server hosts.
fn check_room_members(
    state: &AppState,
    guild_id: &GuildId,
    before: Option<&GuildState>,
    after: &Arc<GuildState>,
) {
    if guild_id.host() != state.server_name {
        return;
    }
    for voice_state in state.voice_states.of(guild_id) {
        let Some(channel_id) = voice_state.channel_id.clone() else { continue };
        let user = voice_state.user_id.clone();
        let room = VoiceService::room(guild_id, &channel_id);
        let now = match authorize(after, &user, &channel_id) {
            Ok(now) if !after.deleted => now,
            _ => {
                // Out of voice at once, so that the next event does not remove them again.
                let left = VoiceState { channel_id: None, ..voice_state };
                apply(state, left, Arc::clone(after), state.server_name.clone());
                if let Some(service) = state.voice.clone() {
                    tokio::spawn(async move {
                        match service.rooms().remove_participant(&room, user.as_str()).await {
                            Ok(()) => {}
                            Err(error) if error.is_not_found() => {}
                            Err(error) => {
                                tracing::warn!(%room, %user, %error, "LiveKit did not remove a participant who may no longer connect");
                            }
                        }
                    });
                }
                continue;
            }
        };
        let was = before.and_then(|before| authorize(before, &user, &channel_id).ok());
        if was.is_none_or(|was| (was.speak, was.stream) == (now.speak, now.stream)) {
            continue;
        }
        let Some(service) = state.voice.clone() else { continue };
        let Moderation { mute, deaf } = state.voice_states.moderation(guild_id, &user);
        let permissions = VoicePermissions { muted: mute, deafened: deaf, ..now };
        tokio::spawn(async move {
            match restrict(&service, &room, &user, permissions).await {
                Ok(()) => {}
                Err(error) if error.is_not_found() => {}
                Err(error) => {
                    tracing::warn!(%room, %user, %error, "LiveKit did not take a participant's new permissions");
                }
            }
        });
    }
}
