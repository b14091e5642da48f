//! Acting on users already in a voice room (spec 18.3, 18.5), as the guild's host: moderators'
//! server mute, deafen and disconnect, and the host's own enforcement when a user may no longer
//! be there or may publish differently. Both end in calls to the host's LiveKit RoomService and
//! a new voice state relayed to every member server.

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use guildhall_media_relay::room_service::{ParticipantPermission, RoomServiceError};
use guildhall_media_relay::voice::{VoicePermissions, VoiceService};
use guildhall_spec::api::ephemeral::VoiceState;
use guildhall_spec::content::EventContent;
use guildhall_spec::permissions::Permissions;
use guildhall_spec::state::GuildState;
use guildhall_spec::{ChannelId, GuildId, UserId};
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

/// `moderator` acts on `target` in a guild this server hosts (spec 18.5, checks in its order).
///
/// The work runs in a task of its own that this awaits, under the (guild, user) lock of
/// [`super::standing`]: a request dropped half-way (the moderator's client or server gave up)
/// cannot leave LiveKit changed and the record not, and no other action or enforcement on the
/// same user interleaves. Inside the lock the guild's state, the user's voice state and record
/// are read afresh, LiveKit is told, and only when it agreed (or the user is not in its room)
/// the host records the change and relays the new voice state, which it answers.
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
    let (state, guild_id, moderator, target) =
        (state.clone(), guild_id.clone(), moderator.clone(), target.clone());
    tokio::spawn(async move {
        let _standing =
            state.voice_states.standings.lock(&guild_id, &target).await.map_err(|_| busy())?;
        moderate_now(&state, &guild_id, &moderator, &target, action).await
    })
    .await
    .map_err(ApiError::internal)?
}

/// [`moderate`] with the (guild, user) lock held.
async fn moderate_now(
    state: &AppState,
    guild_id: &GuildId,
    moderator: &UserId,
    target: &UserId,
    action: Action,
) -> ApiResult<VoiceState> {
    let guild = state.guilds.state(guild_id).await?;
    if !guild.members.contains_key(moderator) {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "not_member", "not a member"));
    }
    // Every room the user is in: their state's channel, and wherever LiveKit reports them
    // (a client's report that they left, or are elsewhere, hides no room).
    let rooms: Vec<ChannelId> = state.voice_states.rooms_of(guild_id, target).into_iter().collect();
    if rooms.is_empty() && !action.disconnect && guild.members.contains_key(target) {
        return record_only(state, guild_id, &guild, moderator, target, action);
    }
    if rooms.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "not_in_voice",
            "the user is not in a voice channel",
        ));
    }
    let needed = [
        (action.mute.is_some(), Permissions::MUTE_MEMBERS, "MUTE_MEMBERS"),
        (action.deaf.is_some(), Permissions::DEAFEN_MEMBERS, "DEAFEN_MEMBERS"),
        (action.disconnect, Permissions::MOVE_MEMBERS, "MOVE_MEMBERS"),
    ];
    for channel_id in &rooms {
        let granted = guild.channel_permissions(moderator, channel_id);
        for (asked, permission, name) in needed {
            if asked && !granted.contains(permission) {
                return Err(ApiError::forbidden(format!("{name} is required in this channel")));
            }
        }
    }
    let service = state.voice.as_ref().ok_or_else(unavailable)?;
    let was = state.voice_states.moderation(guild_id, target);
    let now =
        Moderation { mute: action.mute.unwrap_or(was.mute), deaf: action.deaf.unwrap_or(was.deaf) };
    for (done, channel_id) in rooms.iter().enumerate() {
        let room = VoiceService::room(guild_id, channel_id);
        let _permit = state.voice_states.livekit_permit().await;
        let result = if action.disconnect {
            service.rooms().remove_participant(&room, target.as_str()).await
        } else {
            match restrict(service, &room, target, grant(&guild, target, channel_id, now)).await {
                Err(error) if !error.is_not_found() => {
                    // LiveKit may have taken the change before failing (a timeout after the
                    // request went out, an unreadable answer, a track left unmuted), and the
                    // rooms before this one did: the previous grant is pushed again, so that
                    // LiveKit matches the record, which keeps `was`.
                    let changed = if may_have_changed(&error) { done + 1 } else { done };
                    for channel_id in &rooms[..changed] {
                        let room = VoiceService::room(guild_id, channel_id);
                        let previous = grant(&guild, target, channel_id, was);
                        if let Err(again) = restrict(service, &room, target, previous).await {
                            tracing::warn!(%room, user = %target, error = %again, "LiveKit did not take the previous grant back after a failed change");
                        }
                    }
                    Err(error)
                }
                result => result,
            }
            .map_err(RestrictError::into_inner)
        };
        match result {
            Ok(()) => {}
            Err(error) if error.is_not_found() => {}
            Err(error) => {
                tracing::warn!(%room, user = %target, %error, "LiveKit refused a moderator's action");
                return Err(failed(&error));
            }
        }
    }
    if !state.voice_states.set_moderation(guild_id, target, now) {
        return Err(busy());
    }
    let current = state.voice_states.get(guild_id, target).unwrap_or_else(|| VoiceState {
        guild_id: guild_id.clone(),
        channel_id: rooms.first().cloned(),
        user_id: target.clone(),
        self_mute: false,
        self_deaf: false,
        self_stream: false,
        mute: was.mute,
        deaf: was.deaf,
    });
    let next = VoiceState {
        channel_id: if action.disconnect { None } else { current.channel_id.clone() },
        mute: now.mute,
        deaf: now.deaf,
        ..current
    };
    apply(state, next.clone(), guild, state.server_name.clone());
    Ok(next)
}

/// A server mute or deafen set or lifted for a member who is not in voice (spec 18.5): the
/// moderator needs the permission in the guild (their base permissions), nothing is asked of
/// LiveKit, and the record holds for their next token. The state relayed says `channel_id:
/// null`.
fn record_only(
    state: &AppState,
    guild_id: &GuildId,
    guild: &Arc<GuildState>,
    moderator: &UserId,
    target: &UserId,
    action: Action,
) -> ApiResult<VoiceState> {
    let granted = guild.base_permissions(moderator);
    let needed = [
        (action.mute.is_some(), Permissions::MUTE_MEMBERS, "MUTE_MEMBERS"),
        (action.deaf.is_some(), Permissions::DEAFEN_MEMBERS, "DEAFEN_MEMBERS"),
    ];
    for (asked, permission, name) in needed {
        if asked && !granted.contains(permission) {
            return Err(ApiError::forbidden(format!("{name} is required in the guild")));
        }
    }
    let was = state.voice_states.moderation(guild_id, target);
    let now =
        Moderation { mute: action.mute.unwrap_or(was.mute), deaf: action.deaf.unwrap_or(was.deaf) };
    if !state.voice_states.set_moderation(guild_id, target, now) {
        return Err(busy());
    }
    let next = VoiceState {
        guild_id: guild_id.clone(),
        channel_id: None,
        user_id: target.clone(),
        self_mute: false,
        self_deaf: false,
        self_stream: false,
        mute: now.mute,
        deaf: now.deaf,
    };
    apply(state, next.clone(), Arc::clone(guild), state.server_name.clone());
    Ok(next)
}

/// What `user` may do in `channel_id` now: the channel's SPEAK and STREAM (nothing when they may
/// not connect) with the host's record `moderation`.
fn grant(
    guild: &GuildState,
    user: &UserId,
    channel_id: &ChannelId,
    moderation: Moderation,
) -> VoicePermissions {
    VoicePermissions {
        muted: moderation.mute,
        deafened: moderation.deaf,
        ..authorize(guild, user, channel_id).unwrap_or_default()
    }
}

/// Whether LiveKit may have applied a change whose call failed: anything but a refusal of the
/// first call (which LiveKit answers before changing anything) or a call never made.
fn may_have_changed(error: &RestrictError) -> bool {
    match error {
        RestrictError::Update(error) => {
            matches!(error, RoomServiceError::Unreachable(_) | RoomServiceError::BadAnswer(_))
        }
        RestrictError::Track(_) => true,
    }
}

/// `503 voice_unavailable`: too many users are being acted on at once.
fn busy() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "voice_unavailable",
        "the guild's voice server is busy; try again",
    )
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

/// A failed [`restrict`]: which call failed.
#[derive(Debug, thiserror::Error)]
enum RestrictError {
    /// `UpdateParticipant`.
    #[error("UpdateParticipant: {0}")]
    Update(RoomServiceError),
    /// `MutePublishedTrack`, after the grant was changed.
    #[error("MutePublishedTrack: {0}")]
    Track(RoomServiceError),
}

impl RestrictError {
    fn is_not_found(&self) -> bool {
        match self {
            Self::Update(error) | Self::Track(error) => error.is_not_found(),
        }
    }

    fn into_inner(self) -> RoomServiceError {
        match self {
            Self::Update(error) | Self::Track(error) => error,
        }
    }
}

/// Gives a participant exactly `permissions` (spec 18.5): the grant LiveKit enforces from now
/// on, and, when it may not use its microphone, the microphone tracks it already publishes
/// muted.
async fn restrict(
    service: &VoiceService,
    room: &str,
    user: &UserId,
    permissions: VoicePermissions,
) -> Result<(), RestrictError> {
    let rooms = service.rooms();
    let permission = ParticipantPermission::from(permissions);
    let tracks = rooms
        .update_participant(room, user.as_str(), &permission)
        .await
        .map_err(RestrictError::Update)?;
    if !permission.can_publish_sources.contains(&"MICROPHONE") {
        for track in tracks.iter().filter(|track| track.source == "MICROPHONE" && !track.muted) {
            rooms
                .mute_published_track(room, user.as_str(), &track.sid, true)
                .await
                .map_err(RestrictError::Track)?;
        }
    }
    Ok(())
}

/// The host's enforcement after join (spec 18.3), until the bus closes: after every event of a
/// guild it hosts that can change who may connect or publish ([`may_change_voice`]), each user in voice there who may no longer connect to their channel is
/// removed from the room and their state becomes `channel_id: null`; one whose SPEAK or STREAM
/// changed gets the new publish permissions. The events come from the bus, so this runs after
/// the event is stored and never on the write path; the LiveKit calls run in tasks of their
/// own, one per user, which decide under the user's lock from the guild's state at that time.
/// When the bus says this fell behind, every user in voice in a hosted guild is enforced
/// against the guild's current state instead.
pub async fn enforce(state: AppState) {
    let mut bus = state.bus.subscribe();
    loop {
        match bus.recv().await {
            Ok(BusMessage::GuildEvent(message)) if may_change_voice(&message.content) => {
                // A moved account's record follows it to the new account (spec 16.5); records
                // of users who left, were kicked or banned, or of a deleted guild go.
                if let EventContent::MemberJoin(join) = &message.content
                    && let Some(proof) = &join.account_move
                    && let (Some(from), Some(to)) = (proof.from(), proof.to())
                {
                    state.voice_states.move_moderation(&message.guild_id, &from, &to);
                }
                let after = &message.after;
                state.voice_states.retain_moderation(&message.guild_id, |user| {
                    !after.deleted && after.members.contains_key(user)
                });
                check_room_members(
                    &state,
                    &message.guild_id,
                    message.before.as_deref(),
                    &message.after,
                );
            }
            Ok(_) => {}
            Err(RecvError::Lagged(_)) => {
                // What changed is unknown: every user in voice in a hosted guild gets their
                // standing enforced afresh (removed, or the current grant pushed again).
                for guild_id in state.voice_states.guilds() {
                    if guild_id.host() != state.server_name {
                        continue;
                    }
                    if let Ok(after) = state.guilds.state(&guild_id).await {
                        state.voice_states.retain_moderation(&guild_id, |user| {
                            !after.deleted && after.members.contains_key(user)
                        });
                    }
                    for (user, _) in state.voice_states.in_rooms(&guild_id) {
                        schedule(&state, &guild_id, &user);
                    }
                }
            }
            Err(RecvError::Closed) => return,
        }
    }
}

/// Whether an event can change who may connect to a voice channel or what they may publish
/// there: membership, bans, roles and their assignment, overwrites, channels, the guild's end.
/// Messages, reactions, pins, invites and the like cannot, and cost enforcement nothing. The
/// match lists every kind, so that a new one is decided here.
fn may_change_voice(content: &EventContent) -> bool {
    match content {
        EventContent::GuildDelete(_)
        | EventContent::ServerBan(_)
        | EventContent::ServerUnban(_)
        | EventContent::ChannelUpdate(_)
        | EventContent::ChannelDelete(_)
        | EventContent::OverwriteSet(_)
        | EventContent::OverwriteDelete(_)
        | EventContent::RoleCreate(_)
        | EventContent::RoleUpdate(_)
        | EventContent::RoleDelete(_)
        | EventContent::MemberJoin(_)
        | EventContent::MemberLeave(_)
        | EventContent::MemberKick(_)
        | EventContent::MemberBan(_)
        | EventContent::MemberUnban(_) => true,
        EventContent::MemberUpdate(update) => update.roles.is_some(),
        EventContent::GuildCreate(_)
        | EventContent::GuildUpdate(_)
        | EventContent::ChannelCreate(_)
        | EventContent::DmInvite(_)
        | EventContent::InviteCreate(_)
        | EventContent::InviteRevoke(_)
        | EventContent::MessageCreate(_)
        | EventContent::MessageEdit(_)
        | EventContent::MessageDelete(_)
        | EventContent::ReactionAdd(_)
        | EventContent::ReactionRemove(_)
        | EventContent::PinAdd(_)
        | EventContent::PinRemove(_) => false,
    }
}

/// Enforces `after` (the guild's state after an event; `before`, when known, the state before
/// it) on the users in voice in a guild this server hosts: schedules [`enforce_on`] for each
/// user who may no longer connect or whose SPEAK or STREAM changed.
fn check_room_members(
    state: &AppState,
    guild_id: &GuildId,
    before: Option<&GuildState>,
    after: &Arc<GuildState>,
) {
    if guild_id.host() != state.server_name {
        return;
    }
    // Users LiveKit reports in a room count, whatever their client last said.
    for (user, channel_id) in state.voice_states.in_rooms(guild_id) {
        let needed = match authorize(after, &user, &channel_id) {
            Ok(now) if !after.deleted => {
                let was = before.and_then(|before| authorize(before, &user, &channel_id).ok());
                was.is_some_and(|was| (was.speak, was.stream) != (now.speak, now.stream))
            }
            _ => true,
        };
        if needed {
            schedule(state, guild_id, &user);
        }
    }
}

/// Runs [`enforce_on`] for (`guild_id`, `user`) in a task, unless one is already waiting to
/// start: that one reads the guild's state when it starts, so it enforces the newest.
fn schedule(state: &AppState, guild_id: &GuildId, user: &UserId) {
    if !state.voice_states.mark_pending(guild_id, user) {
        return;
    }
    let (state, guild_id, user) = (state.clone(), guild_id.clone(), user.clone());
    tokio::spawn(async move {
        let standing = state.voice_states.standings.lock(&guild_id, &user).await;
        // From here on a newer event schedules another task: this one reads the state below.
        state.voice_states.unmark_pending(&guild_id, &user);
        match standing {
            Ok(_standing) => enforce_on(&state, &guild_id, &user).await,
            Err(error) => tracing::warn!(%guild_id, %user, %error, "enforcement skipped"),
        }
    });
}

/// How long to wait before each retry of a failed `RemoveParticipant` (about a minute in all).
const REMOVAL_RETRIES: [Duration; 5] = [
    Duration::from_secs(2),
    Duration::from_secs(4),
    Duration::from_secs(8),
    Duration::from_secs(16),
    Duration::from_secs(30),
];

/// Retries removing `user` from the room of `channel_id` after LiveKit failed to (spec 18.3), in
/// a task of its own, with backoff, until LiveKit removed them or says they are not there, they
/// may connect again, or [`REMOVAL_RETRIES`] ran out. Each try holds their lock and rechecks.
fn retry_removal(state: &AppState, guild_id: &GuildId, user: &UserId, channel_id: &ChannelId) {
    let (state, guild_id, user, channel_id) =
        (state.clone(), guild_id.clone(), user.clone(), channel_id.clone());
    tokio::spawn(async move {
        let room = VoiceService::room(&guild_id, &channel_id);
        for delay in REMOVAL_RETRIES {
            tokio::time::sleep(delay).await;
            let Some(service) = state.voice.clone() else { return };
            let Ok(_standing) = state.voice_states.standings.lock(&guild_id, &user).await else {
                continue;
            };
            let Ok(guild) = state.guilds.state(&guild_id).await else { continue };
            if !guild.deleted && authorize(&guild, &user, &channel_id).is_ok() {
                return;
            }
            let _permit = state.voice_states.livekit_permit().await;
            match service.rooms().remove_participant(&room, user.as_str()).await {
                Ok(()) => return,
                Err(error) if error.is_not_found() => return,
                Err(error) => {
                    tracing::warn!(%room, %user, %error, "LiveKit again did not remove a participant who may no longer connect");
                }
            }
        }
        tracing::warn!(%room, %user, "gave up removing a participant who may no longer connect");
    });
}

/// LiveKit reports `user` joined a room of a guild this server hosts: their standing there is
/// enforced at once ([`enforce_on`]), under their lock, in a task a dropped webhook does not
/// stop.
pub async fn admit(state: &AppState, guild_id: &GuildId, user: &UserId) {
    let (state, guild_id, user) = (state.clone(), guild_id.clone(), user.clone());
    let task = tokio::spawn(async move {
        match state.voice_states.standings.lock(&guild_id, &user).await {
            Ok(_standing) => enforce_on(&state, &guild_id, &user).await,
            Err(error) => tracing::warn!(%guild_id, %user, %error, "a joined user went unchecked"),
        }
    });
    if let Err(error) = task.await {
        tracing::warn!(%error, "checking a joined user failed");
    }
}

/// LiveKit reports `user` left the room of `channel_id` (or it ended): if their state names that
/// channel they are out of voice, under their lock so that no action in flight puts them back.
pub async fn left_room(
    state: &AppState,
    guild_id: &GuildId,
    user: &UserId,
    channel_id: &ChannelId,
) {
    let (state, guild_id, user, channel_id) =
        (state.clone(), guild_id.clone(), user.clone(), channel_id.clone());
    let task = tokio::spawn(async move {
        let Ok(_standing) = state.voice_states.standings.lock(&guild_id, &user).await else {
            return;
        };
        let Some(current) = state.voice_states.get(&guild_id, &user) else { return };
        if current.channel_id.as_ref() != Some(&channel_id) {
            return;
        }
        let Ok(guild) = state.guilds.state(&guild_id).await else { return };
        let left = VoiceState { channel_id: None, ..current };
        apply(&state, left, guild, state.server_name.clone());
    });
    if let Err(error) = task.await {
        tracing::warn!(%error, "recording a user who left voice failed");
    }
}

/// Brings `user`'s standing in LiveKit to the guild's current state (spec 18.3), with their
/// (guild, user) lock held, in every room they are in (their state's channel and wherever
/// LiveKit reports them): out of the room (and of voice, if their state named it) where they may
/// no longer connect, else the grant their permissions and the host's record give now.
async fn enforce_on(state: &AppState, guild_id: &GuildId, user: &UserId) {
    let Some(service) = state.voice.clone() else { return };
    let Ok(guild) = state.guilds.state(guild_id).await else { return };
    let moderation = state.voice_states.moderation(guild_id, user);
    for channel_id in state.voice_states.rooms_of(guild_id, user) {
        let room = VoiceService::room(guild_id, &channel_id);
        if guild.deleted || authorize(&guild, user, &channel_id).is_err() {
            let current = state.voice_states.get(guild_id, user);
            if let Some(current) = current.filter(|vs| vs.channel_id.as_ref() == Some(&channel_id))
            {
                let left = VoiceState { channel_id: None, ..current };
                apply(state, left, Arc::clone(&guild), state.server_name.clone());
            }
            let _permit = state.voice_states.livekit_permit().await;
            match service.rooms().remove_participant(&room, user.as_str()).await {
                Ok(()) => {}
                Err(error) if error.is_not_found() => {}
                Err(error) => {
                    tracing::warn!(%room, %user, %error, "LiveKit did not remove a participant who may no longer connect; retrying");
                    retry_removal(state, guild_id, user, &channel_id);
                }
            }
            continue;
        }
        let permissions = grant(&guild, user, &channel_id, moderation);
        let _permit = state.voice_states.livekit_permit().await;
        match restrict(&service, &room, user, permissions).await {
            Ok(()) => {}
            Err(error) if error.is_not_found() => {}
            Err(error) => {
                let error = error.into_inner();
                tracing::warn!(%room, %user, %error, "LiveKit did not take a participant's new permissions");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(event: serde_json::Value, expected: bool) {
        let content: EventContent = serde_json::from_value(event.clone()).unwrap();
        assert_eq!(may_change_voice(&content), expected, "{event}");
    }

    #[test]
    fn only_events_that_can_change_who_may_connect_or_publish_are_enforced() {
        use serde_json::json;
        check(json!({"type": "member.leave", "content": {}}), true);
        check(json!({"type": "guild.delete", "content": {}}), true);
        let roles = json!({"user_id": "@u:a.example", "roles": []});
        check(json!({"type": "member.update", "content": roles}), true);
        let nick = json!({"user_id": "@u:a.example", "nick": "u"});
        check(json!({"type": "member.update", "content": nick}), false);
        let pin = json!({"channel_id": "c", "message_id": format!("${}", "A".repeat(43))});
        check(json!({"type": "pin.add", "content": pin}), false);
    }
}
