//! Voice channels (spec 18): who may connect to a voice channel of a guild this server hosts,
//! and the LiveKit access token the host mints for them, for its own users and, over
//! federation, for other servers' users. [`moderation`] is what moderators and the host's own
//! enforcement do to users already in a room (spec 18.3, 18.5).

pub mod moderation;
pub mod standing;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use guildhall_media_relay::voice::{VoicePermissions, VoiceService, VoiceToken};
use guildhall_spec::api::ephemeral::VoiceState;
use guildhall_spec::content::ChannelKind;
use guildhall_spec::permissions::Permissions;
use guildhall_spec::state::GuildState;
use guildhall_spec::{ChannelId, GuildId, ServerName, UserId};
use serde_json::{Value, json};

use crate::AppState;
use crate::bus::BusMessage;
use crate::config::VoiceConfig;
use crate::error::{ApiError, ApiResult};

/// The voice service `[voice]` configures: `None` when its URL is empty (voice off); an error
/// for a half-made configuration, so that a server does not start with broken voice.
pub fn service(config: &VoiceConfig) -> anyhow::Result<Option<Arc<VoiceService>>> {
    if config.url.is_empty() {
        return Ok(None);
    }
    let ttl = Duration::from_secs(config.token_ttl_secs);
    let service = VoiceService::new(&config.url, &config.api_key, &config.api_secret, ttl)
        .map_err(|e| anyhow::anyhow!("[voice]: {e}"))?;
    Ok(Some(Arc::new(service)))
}

/// Whether `user` may connect to `channel_id` of the guild in `guild` (spec 18.1, checks 4–7),
/// and with which grants.
pub fn authorize(
    guild: &GuildState,
    user: &UserId,
    channel_id: &ChannelId,
) -> ApiResult<VoicePermissions> {
    if guild.server_bans.contains_key(&user.server_name()) {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "server_banned", "your server is banned"));
    }
    if guild.bans.contains_key(user) {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "banned", "you are banned"));
    }
    if !guild.members.contains_key(user) {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "not_member", "not a member"));
    }
    if guild.channels.get(channel_id).is_none_or(|channel| channel.kind != ChannelKind::Voice) {
        return Err(ApiError::not_found("unknown_channel", "no such voice channel"));
    }
    let permissions = guild.channel_permissions(user, channel_id);
    if !permissions.contains(Permissions::CONNECT) {
        return Err(ApiError::forbidden("CONNECT is required in this channel"));
    }
    Ok(VoicePermissions {
        speak: permissions.contains(Permissions::SPEAK),
        stream: permissions.contains(Permissions::STREAM),
        ..VoicePermissions::default()
    })
}

/// A token for `user` to `channel_id` of a guild this server hosts, after [`authorize`]
/// (spec 18.1); `503 voice_unavailable` when voice is off.
pub fn mint(
    state: &AppState,
    guild_id: &GuildId,
    guild: &GuildState,
    user: &UserId,
    channel_id: &ChannelId,
) -> ApiResult<Value> {
    let moderation = state.voice_states.moderation(guild_id, user);
    let permissions = VoicePermissions {
        muted: moderation.mute,
        deafened: moderation.deaf,
        ..authorize(guild, user, channel_id)?
    };
    let service = state.voice.as_ref().ok_or_else(unavailable)?;
    let name = guild
        .members
        .get(user)
        .and_then(|member| member.nick.clone())
        .unwrap_or_else(|| user.to_string());
    let room = VoiceService::room(guild_id, channel_id);
    let VoiceToken { url, token, expires_ts } =
        service.token(&room, user, &name, permissions).map_err(ApiError::internal)?;
    Ok(json!({"url": url, "token": token, "expires_ts": expires_ts}))
}

/// `503 voice_unavailable`.
pub fn unavailable() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "voice_unavailable",
        "this guild's server has no voice service",
    )
}

/// The latest voice state of each user in each guild this server knows of, in memory (spec
/// 18.4): replaced by the next one for the same pair, gone after a restart. As host, also the
/// server mute and deafen of each (guild, user) (spec 18.5): in memory too, kept while the user
/// is out of voice (the next token honours it) until a moderator lifts it or the server
/// restarts.
///
/// It also holds what orders the host's acts on users in voice: the (guild, user) locks, the
/// enforcement waiting to start per pair, and the bound on LiveKit calls in flight.
#[derive(Debug)]
pub struct VoiceStates {
    states: Mutex<HashMap<GuildId, HashMap<UserId, VoiceState>>>,
    moderation: Mutex<HashMap<(GuildId, UserId), Moderation>>,
    /// The lock everything changing a user's voice standing takes.
    pub standings: standing::Standings,
    pending: Mutex<HashSet<(GuildId, UserId)>>,
    livekit: tokio::sync::Semaphore,
    /// Who the host's LiveKit reports in which room (its webhooks), whatever clients said.
    presence: Mutex<HashMap<GuildId, HashMap<UserId, BTreeSet<ChannelId>>>>,
}

/// The most server mute and deafen records the host keeps.
pub const MAX_RECORDS: usize = 65_536;

/// The most users the host tracks as present in its LiveKit's rooms.
pub const MAX_PRESENT: usize = 65_536;

/// The most RoomService calls in flight at once, whatever the guild.
pub const MAX_LIVEKIT_CALLS: usize = 8;

impl Default for VoiceStates {
    fn default() -> Self {
        Self {
            states: Mutex::default(),
            moderation: Mutex::default(),
            standings: standing::Standings::default(),
            pending: Mutex::default(),
            livekit: tokio::sync::Semaphore::new(MAX_LIVEKIT_CALLS),
            presence: Mutex::default(),
        }
    }
}

/// A user's server mute and deafen in a guild this server hosts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Moderation {
    /// Server-muted.
    pub mute: bool,
    /// Server-deafened.
    pub deaf: bool,
}

impl VoiceStates {
    /// The guilds with users in voice, by their states or by the host's LiveKit's reports.
    pub fn guilds(&self) -> Vec<GuildId> {
        let mut guilds: BTreeSet<GuildId> =
            self.states.lock().map(|all| all.keys().cloned().collect()).unwrap_or_default();
        if let Ok(present) = self.presence.lock() {
            guilds.extend(present.keys().cloned());
        }
        guilds.into_iter().collect()
    }

    /// The users in voice in a guild.
    pub fn of(&self, guild_id: &GuildId) -> Vec<VoiceState> {
        self.states
            .lock()
            .map(|all| all.get(guild_id).map(|users| users.values().cloned().collect()))
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    /// A user's state in a guild, if they are in a voice channel.
    pub fn get(&self, guild_id: &GuildId, user_id: &UserId) -> Option<VoiceState> {
        self.states.lock().ok()?.get(guild_id)?.get(user_id).cloned()
    }

    /// A user's server mute and deafen in a guild this server hosts.
    pub fn moderation(&self, guild_id: &GuildId, user_id: &UserId) -> Moderation {
        self.moderation
            .lock()
            .ok()
            .and_then(|all| all.get(&(guild_id.clone(), user_id.clone())).copied())
            .unwrap_or_default()
    }

    /// Records a user's server mute and deafen (as host); `false` when [`MAX_RECORDS`] users
    /// already have one and this one would be new.
    pub fn set_moderation(
        &self,
        guild_id: &GuildId,
        user_id: &UserId,
        moderation: Moderation,
    ) -> bool {
        let Ok(mut all) = self.moderation.lock() else { return false };
        let key = (guild_id.clone(), user_id.clone());
        if moderation == Moderation::default() {
            all.remove(&key);
        } else if all.len() >= MAX_RECORDS && !all.contains_key(&key) {
            return false;
        } else {
            all.insert(key, moderation);
        }
        true
    }

    /// Moves `from`'s record in a guild to `to` (an account move), replacing any `to` had.
    pub fn move_moderation(&self, guild_id: &GuildId, from: &UserId, to: &UserId) {
        if let Ok(mut all) = self.moderation.lock()
            && let Some(moderation) = all.remove(&(guild_id.clone(), from.clone()))
        {
            all.insert((guild_id.clone(), to.clone()), moderation);
        }
    }

    /// Keeps the records of a guild's users for whom `keep` holds.
    pub fn retain_moderation(&self, guild_id: &GuildId, keep: impl Fn(&UserId) -> bool) {
        if let Ok(mut all) = self.moderation.lock() {
            all.retain(|(guild, user), _| guild != guild_id || keep(user));
        }
    }

    /// The host's LiveKit reports `user_id` joined the room of `channel_id`.
    pub fn joined(&self, guild_id: &GuildId, user_id: &UserId, channel_id: &ChannelId) {
        let Ok(mut all) = self.presence.lock() else { return };
        let count: usize = all.values().map(HashMap::len).sum();
        let users = all.entry(guild_id.clone()).or_default();
        if count >= MAX_PRESENT && !users.contains_key(user_id) {
            tracing::warn!(%guild_id, user = %user_id, "too many users present in voice to track");
            return;
        }
        users.entry(user_id.clone()).or_default().insert(channel_id.clone());
    }

    /// The host's LiveKit reports `user_id` left the room of `channel_id` (`None`: the room
    /// ended, everyone left it).
    pub fn left(&self, guild_id: &GuildId, user_id: Option<&UserId>, channel_id: &ChannelId) {
        let Ok(mut all) = self.presence.lock() else { return };
        let Some(users) = all.get_mut(guild_id) else { return };
        users.retain(|user, channels| {
            if user_id.is_none_or(|left| left == user) {
                channels.remove(channel_id);
            }
            !channels.is_empty()
        });
        if users.is_empty() {
            all.remove(guild_id);
        }
    }

    /// The rooms (voice channels) the host's LiveKit reports `user_id` in.
    pub fn present(&self, guild_id: &GuildId, user_id: &UserId) -> BTreeSet<ChannelId> {
        self.presence
            .lock()
            .ok()
            .and_then(|all| all.get(guild_id)?.get(user_id).cloned())
            .unwrap_or_default()
    }

    /// Each user in voice in a guild, with each channel they are in: as their state says, or as
    /// the host's LiveKit reports.
    pub fn in_rooms(&self, guild_id: &GuildId) -> Vec<(UserId, ChannelId)> {
        let mut found: BTreeSet<(UserId, ChannelId)> = self
            .of(guild_id)
            .into_iter()
            .filter_map(|state| Some((state.user_id, state.channel_id?)))
            .collect();
        if let Ok(all) = self.presence.lock()
            && let Some(users) = all.get(guild_id)
        {
            for (user, channels) in users {
                found.extend(channels.iter().map(|channel| (user.clone(), channel.clone())));
            }
        }
        found.into_iter().collect()
    }

    /// The rooms `user_id` is in: their state's channel and wherever LiveKit reports them.
    pub fn rooms_of(&self, guild_id: &GuildId, user_id: &UserId) -> BTreeSet<ChannelId> {
        let mut rooms = self.present(guild_id, user_id);
        rooms.extend(self.get(guild_id, user_id).and_then(|state| state.channel_id));
        rooms
    }

    /// Waits for a turn to call LiveKit ([`MAX_LIVEKIT_CALLS`] in flight at once); `None` only
    /// if the bound was closed, which it never is.
    pub async fn livekit_permit(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        self.livekit.acquire().await.ok()
    }

    /// Marks enforcement for (guild, user) as waiting to start; `false` when it already was (the
    /// waiting one will read the newest state) or too many are.
    pub fn mark_pending(&self, guild_id: &GuildId, user_id: &UserId) -> bool {
        let Ok(mut pending) = self.pending.lock() else { return false };
        if pending.len() >= standing::MAX_KEYS {
            tracing::warn!(%guild_id, user = %user_id, "too much enforcement waiting; skipped");
            return false;
        }
        pending.insert((guild_id.clone(), user_id.clone()))
    }

    /// Enforcement for (guild, user) has started.
    pub fn unmark_pending(&self, guild_id: &GuildId, user_id: &UserId) {
        if let Ok(mut pending) = self.pending.lock() {
            pending.remove(&(guild_id.clone(), user_id.clone()));
        }
    }

    fn set(&self, voice_state: &VoiceState) {
        let Ok(mut all) = self.states.lock() else { return };
        let users = all.entry(voice_state.guild_id.clone()).or_default();
        if voice_state.channel_id.is_some() {
            users.insert(voice_state.user_id.clone(), voice_state.clone());
        } else {
            users.remove(&voice_state.user_id);
            if users.is_empty() {
                all.remove(&voice_state.guild_id);
            }
        }
    }
}

/// Whether a voice state may stand in `guild`: its user is a member, and it names no channel
/// (left voice) or a voice channel the user may connect to.
pub fn check(guild: &GuildState, voice_state: &VoiceState) -> ApiResult<()> {
    match &voice_state.channel_id {
        Some(channel_id) => authorize(guild, &voice_state.user_id, channel_id).map(drop),
        None if guild.members.contains_key(&voice_state.user_id) => Ok(()),
        None => Err(ApiError::new(StatusCode::FORBIDDEN, "not_member", "not a member")),
    }
}

/// Records a checked voice state that came `from` a server (this one for its own users and for
/// what its LiveKit reports) and tells local gateways; the ephemeral relay passes it on to
/// other servers (through the host, spec 12.5.2).
///
/// Only the host sets `mute` and `deaf` (spec 18.5): as host, they are taken from its record,
/// whatever the item said, and a state it corrected goes back to the user's server too; a
/// local user's own report to another host keeps the values last heard from the host.
pub fn apply(
    state: &AppState,
    mut voice_state: VoiceState,
    guild: Arc<GuildState>,
    mut from: ServerName,
) {
    let me = &state.server_name;
    if &voice_state.guild_id.host() == me {
        let Moderation { mute, deaf } =
            state.voice_states.moderation(&voice_state.guild_id, &voice_state.user_id);
        if (voice_state.mute, voice_state.deaf) != (mute, deaf) {
            (voice_state.mute, voice_state.deaf) = (mute, deaf);
            from = me.clone();
        }
    } else if &from == me {
        let known = state.voice_states.get(&voice_state.guild_id, &voice_state.user_id);
        (voice_state.mute, voice_state.deaf) =
            known.map_or((false, false), |known| (known.mute, known.deaf));
    }
    state.voice_states.set(&voice_state);
    state.bus.publish(BusMessage::VoiceState { voice_state, state: guild, from });
}

/// The host hears from its LiveKit server (a checked webhook) that a participant joined or left
/// a room, or the room ended (spec 18.3, 18.4). Who is in which room is tracked from these,
/// whatever clients said. A user who joined is checked at once, under their (guild, user) lock:
/// removed if they may not connect (a token minted before a ban or lost CONNECT can be used again
/// until it expires), else given the grant their permissions and the host's record give now (so
/// an old token cannot bring back a lifted grant). Users who left are out of voice there.
pub async fn reconcile(state: &AppState, event: &guildhall_media_relay::voice::RoomEvent) {
    let Some((guild_id, channel_id)) = event.room.split_once('/') else { return };
    let (Ok(guild_id), Ok(channel_id)) =
        (guild_id.parse::<GuildId>(), channel_id.parse::<ChannelId>())
    else {
        return;
    };
    if guild_id.host() != state.server_name {
        return;
    }
    let identity = event.identity.as_deref().and_then(|identity| identity.parse::<UserId>().ok());
    let users: Vec<UserId> = match (event.event.as_str(), identity) {
        ("participant_joined", Some(user)) => {
            state.voice_states.joined(&guild_id, &user, &channel_id);
            moderation::admit(state, &guild_id, &user).await;
            return;
        }
        ("participant_left", Some(user)) => {
            state.voice_states.left(&guild_id, Some(&user), &channel_id);
            vec![user]
        }
        ("room_finished", _) => {
            state.voice_states.left(&guild_id, None, &channel_id);
            state.voice_states.of(&guild_id).into_iter().map(|vs| vs.user_id).collect()
        }
        _ => Vec::new(),
    };
    for user_id in users {
        moderation::left_room(state, &guild_id, &user_id, &channel_id).await;
    }
}
