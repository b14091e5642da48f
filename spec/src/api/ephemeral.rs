//! Ephemeral events: typing, presence, read markers and voice states (spec chapter 12). They are
//! not sequenced or stored in a guild log. (To-device messages are durable and travel by their
//! own endpoint, spec 17.)

use serde::{Deserialize, Serialize};

use crate::ids::{ChannelId, EventId, GuildId, UserId};

/// An ephemeral event, `{"type": ..., "content": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "content", rename_all = "snake_case")]
pub enum EphemeralEvent {
    /// A user started or stopped typing.
    Typing(Typing),
    /// A user's presence changed.
    Presence(Presence),
    /// A user read up to an event.
    ReadMarker(ReadMarker),
    /// A user's voice state in a guild.
    VoiceState(VoiceState),
}

impl EphemeralEvent {
    /// Parses one ephemeral event; `None` for a kind this version does not know or a malformed
    /// one (ephemeral events are best effort and never fail a transaction).
    pub fn parse(value: &serde_json::Value) -> Option<Self> {
        serde_json::from_value(value.clone()).ok()
    }
}

/// Typing notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Typing {
    /// The guild.
    pub guild_id: GuildId,
    /// The channel.
    pub channel_id: ChannelId,
    /// Who is typing.
    pub user_id: UserId,
    /// Started (true) or stopped (false).
    pub active: bool,
}

/// Presence status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PresenceStatus {
    /// Online.
    Online,
    /// Away.
    Idle,
    /// Do not disturb.
    Dnd,
    /// Offline (invisible users are reported offline).
    Offline,
}

/// Presence update.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Presence {
    /// Whose presence.
    pub user_id: UserId,
    /// The status.
    pub status: PresenceStatus,
    /// Last activity, ms since the epoch.
    pub last_active_ts: u64,
}

/// Read marker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadMarker {
    /// The guild.
    pub guild_id: GuildId,
    /// The channel.
    pub channel_id: ChannelId,
    /// The reader.
    pub user_id: UserId,
    /// The last event read.
    pub event_id: EventId,
}

/// Voice state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VoiceState {
    /// The guild.
    pub guild_id: GuildId,
    /// The voice channel, or `null` when the user left voice.
    pub channel_id: Option<ChannelId>,
    /// The user.
    pub user_id: UserId,
    /// Self-muted.
    pub self_mute: bool,
    /// Self-deafened.
    pub self_deaf: bool,
    /// Streaming (camera or screen share), as the user's client reports it; absent: `false`.
    #[serde(default)]
    pub self_stream: bool,
    /// Server-muted by a moderator; only the host sets it (spec 18.5); absent: `false`.
    #[serde(default)]
    pub mute: bool,
    /// Server-deafened by a moderator; only the host sets it (spec 18.5); absent: `false`.
    #[serde(default)]
    pub deaf: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(json: serde_json::Value) {
        let event: EphemeralEvent = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(serde_json::to_value(&event).unwrap(), json);
    }

    #[test]
    fn to_device_is_not_an_ephemeral_item() {
        let item = serde_json::json!({"type": "to_device", "content": {}});
        assert_eq!(EphemeralEvent::parse(&item), None);
    }

    #[test]
    fn golden() {
        use serde_json::json;
        check(
            json!({"type": "typing", "content": {"guild_id": "!g:a.example", "channel_id": "c1", "user_id": "@u:a.example", "active": false}}),
        );
        check(
            json!({"type": "presence", "content": {"user_id": "@u:a.example", "status": "dnd", "last_active_ts": 1}}),
        );
        check(
            json!({"type": "read_marker", "content": {"guild_id": "!g:a.example", "channel_id": "c1", "user_id": "@u:a.example", "event_id": "$47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU"}}),
        );
        check(
            json!({"type": "voice_state", "content": {"guild_id": "!g:a.example", "channel_id": null, "user_id": "@u:a.example", "self_mute": true, "self_deaf": false, "self_stream": true, "mute": true, "deaf": false}}),
        );
    }

    #[test]
    fn voice_state_moderation_fields_default_to_false() {
        let item = serde_json::json!({"type": "voice_state", "content": {"guild_id": "!g:a.example", "channel_id": "c1", "user_id": "@u:a.example", "self_mute": false, "self_deaf": false}});
        let Some(EphemeralEvent::VoiceState(state)) = EphemeralEvent::parse(&item) else {
            panic!("a voice state without the moderation fields is valid");
        };
        assert!(!state.mute && !state.deaf && !state.self_stream);
    }
}
