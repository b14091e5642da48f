//! The in-process event bus: every change a client might see is published here once, and every
//! gateway session filters what it receives by the user's membership and permissions.
//!
//! A broadcast channel never blocks its sender: a session that falls more than the channel's
//! capacity behind is told it lagged, and the gateway then closes it with a resumable code.

use std::sync::Arc;

use guildhall_spec::content::EventContent;
use guildhall_spec::event::JsonObject;
use guildhall_spec::state::GuildState;
use guildhall_spec::{ChannelId, EventId, GuildId, UserId};
use tokio::sync::broadcast;

/// How many messages a subscriber may fall behind before it is told it lagged.
const CAPACITY: usize = 8192;

/// One published change.
#[derive(Debug, Clone)]
pub enum BusMessage {
    /// A sequenced guild event, with the state before and after it.
    GuildEvent(Arc<GuildEventMessage>),
    /// A user started typing.
    Typing {
        /// The guild.
        guild_id: GuildId,
        /// The channel.
        channel_id: ChannelId,
        /// Who types.
        user_id: UserId,
        /// When.
        ts: u64,
        /// The guild's state, to filter by VIEW_CHANNEL.
        state: Arc<GuildState>,
    },
    /// A user's visible presence changed.
    Presence {
        /// Whose.
        user_id: UserId,
        /// `online`, `idle`, `dnd` or `offline` (invisible users appear offline).
        status: &'static str,
    },
    /// A user's profile changed.
    UserUpdate {
        /// Whose.
        user_id: UserId,
        /// The new public profile.
        profile: serde_json::Value,
    },
    /// The identity key of a user changed, was revoked, or became known to this server.
    IdentityUpdate {
        /// Whose.
        user_id: UserId,
        /// The usable identity key; `None` when revoked.
        identity_key: Option<String>,
    },
    /// A login session was revoked (logout, or revoked from another device): gateway
    /// connections opened with it close.
    LoginRevoked {
        /// The revoked login session's id.
        login: String,
    },
    /// The host refused, for good, a proposal of `user_id` that had been queued (`202`).
    ProposalRefused {
        /// The sender.
        user_id: UserId,
        /// `{guild_id, txn_id, type, channel_id, code, message}`.
        data: serde_json::Value,
    },
    /// A user's voice state in a guild changed (spec 18.4).
    VoiceState {
        /// The new state (`channel_id: None`: left voice).
        voice_state: guildhall_spec::api::ephemeral::VoiceState,
        /// The guild's state, to tell members.
        state: Arc<GuildState>,
        /// The server it came from (this one, for its own users and what its LiveKit reports):
        /// the host relays it to every other member server.
        from: guildhall_spec::ServerName,
    },
    /// A dispatch for the gateway sessions opened with one login (its device): `TO_DEVICE`,
    /// `ONE_TIME_KEYS_LOW`.
    ToLogin {
        /// The login session.
        login: String,
        /// The dispatch name.
        name: &'static str,
        /// Its data (shared: every gateway session receives the message, one uses it).
        data: Arc<serde_json::Value>,
    },
    /// A user's device list changed (spec 17.4).
    DeviceListUpdate {
        /// Whose.
        user_id: UserId,
        /// The new device-list hash.
        hash: String,
        /// Local users who asked for the user's keys (besides those sharing a guild).
        watchers: Arc<std::collections::HashSet<UserId>>,
    },
    /// A relationship of `user_id` changed (friend request, accept, removal).
    Relationship {
        /// The user to notify.
        user_id: UserId,
        /// The relationship as the client sees it.
        relationship: serde_json::Value,
    },
}

/// A sequenced guild event as published.
#[derive(Debug)]
pub struct GuildEventMessage {
    /// Server-wide stream position (the gateway's `s`).
    pub stream_id: i64,
    /// The guild.
    pub guild_id: GuildId,
    /// The event id.
    pub event_id: EventId,
    /// The full event.
    pub event: JsonObject,
    /// Its typed content.
    pub content: EventContent,
    /// The sender.
    pub sender: UserId,
    /// Origin timestamp.
    pub origin_ts: u64,
    /// State before the event (`None` for `guild.create`).
    pub before: Option<Arc<GuildState>>,
    /// State after the event.
    pub after: Arc<GuildState>,
}

/// The bus.
#[derive(Debug, Clone)]
pub struct Bus {
    sender: broadcast::Sender<BusMessage>,
}

impl Default for Bus {
    fn default() -> Self {
        Self { sender: broadcast::channel(CAPACITY).0 }
    }
}

impl Bus {
    /// Publishes a message to every current subscriber; never blocks.
    pub fn publish(&self, message: BusMessage) {
        // An error only means nobody is listening right now.
        let _ = self.sender.send(message);
    }

    /// A new subscription, starting now.
    pub fn subscribe(&self) -> broadcast::Receiver<BusMessage> {
        self.sender.subscribe()
    }
}
