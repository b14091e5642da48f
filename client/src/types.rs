//! The shapes the client API answers with, as this client reads them. Fields the server adds
//! later are ignored, so an older client keeps working against a newer server.

use guildhall_spec::{ChannelId, EventId, GuildId, InviteCode, MediaId, ServerName, UserId};
use serde::{Deserialize, Serialize};

/// A user's account as they see it themselves (`GET /users/@me`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// `@name:server`.
    pub id: UserId,
    /// The localpart.
    pub username: String,
    /// The name shown instead of the username, if set.
    #[serde(default)]
    pub display_name: Option<String>,
    /// Whether the account administers its server.
    #[serde(default)]
    pub is_admin: bool,
    /// The identity key bound to the account, if any (base64url).
    #[serde(default)]
    pub identity_key: Option<String>,
}

/// A guild as its member sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Guild {
    /// The guild id; its server part is the host.
    pub id: GuildId,
    /// The name.
    pub name: String,
    /// `guild`, or `dm` for a direct message.
    pub kind: String,
    /// The owner.
    pub owner_id: UserId,
    /// The channels the viewer may see, in display order.
    #[serde(default)]
    pub channels: Vec<Channel>,
    /// The members, where the answer lists them (DMs, the gateway's `READY` and
    /// `GUILD_CREATE`): all of them, or in a [`large`](Self::large) guild only the viewer.
    #[serde(default)]
    pub members: Vec<Member>,
    /// More than 100 members: `members` holds only the viewer; page through the rest with
    /// `GET /guilds/{id}/members?after=&limit=`.
    #[serde(default)]
    pub large: bool,
}

/// A channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Channel {
    /// The channel id, unique within its guild.
    pub id: ChannelId,
    /// The guild it belongs to.
    pub guild_id: GuildId,
    /// The name, without `#`.
    pub name: String,
    /// `text`, `voice`, `category`, …
    pub kind: String,
    /// The topic, if set.
    #[serde(default)]
    pub topic: Option<String>,
}

/// A guild member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Who.
    pub user_id: UserId,
    /// Their nickname in this guild, if set.
    #[serde(default)]
    pub nick: Option<String>,
}

/// A message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// The message id (the id of the event that created it).
    pub id: EventId,
    /// The guild.
    pub guild_id: GuildId,
    /// The channel.
    pub channel_id: ChannelId,
    /// The author.
    pub author_id: UserId,
    /// The text.
    pub content: String,
    /// When it was sent, in milliseconds since the Unix epoch (the sender's server's clock).
    pub created_ts: u64,
    /// When it was last edited, if ever.
    #[serde(default)]
    pub edited_ts: Option<u64>,
    /// The message it answers, if any.
    #[serde(default)]
    pub reply_to: Option<EventId>,
    /// Attached media (`GET /media/{id}` on the reader's own server).
    #[serde(default)]
    pub attachments: Vec<MediaId>,
}

/// What sending a message led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sent {
    /// The message is in the channel.
    Delivered(Message),
    /// The guild's host could not be reached; the user's server keeps the message and delivers
    /// it when the host is back (`202 queued`). Should the host then refuse it, the gateway
    /// says so with `PROPOSAL_REFUSED` naming `nonce`.
    Queued {
        /// The nonce the message was sent with (its transaction id).
        nonce: String,
    },
}

/// An invite to a guild.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invite {
    /// The code.
    pub code: InviteCode,
    /// The server hosting the guild: users of other servers join with
    /// [`crate::Session::accept_invite`] naming it.
    pub server: ServerName,
    /// The guild.
    pub guild_id: GuildId,
    /// The guild's name.
    pub guild_name: String,
    /// The channel the invite leads to.
    pub channel_id: ChannelId,
    /// How many times it was used.
    #[serde(default)]
    pub uses: u64,
    /// How many uses it allows, if limited.
    #[serde(default)]
    pub max_uses: Option<u64>,
}

/// Limits of a new invite; the server's defaults (one day, unlimited uses) where `None`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct NewInvite {
    /// Lifetime in seconds, at most 7 days.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_age_secs: Option<u64>,
    /// Uses allowed, at most 100.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_uses: Option<u64>,
}

/// Which messages to read from a channel: the newest `limit` (1 to 100, default 50), or those
/// before or after a message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    /// Only messages older than this one.
    pub before: Option<EventId>,
    /// Only messages newer than this one.
    pub after: Option<EventId>,
    /// How many at most.
    pub limit: Option<u32>,
}

impl History {
    /// The newest `limit` messages.
    pub fn latest(limit: u32) -> Self {
        Self { limit: Some(limit), ..Self::default() }
    }
}

/// A direct-message conversation: a guild of kind `dm` with one text channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectMessage {
    /// The DM's guild.
    pub guild_id: GuildId,
    /// Its channel: send and read here.
    pub channel_id: ChannelId,
    /// Everyone in it but the viewer.
    pub recipients: Vec<UserId>,
}

impl DirectMessage {
    /// The conversation `guild` is, as `viewer` sees it; `None` if it has no channel.
    pub(crate) fn from_guild(guild: Guild, viewer: &UserId) -> Option<Self> {
        let channel_id = guild.channels.first()?.id.clone();
        let recipients = guild
            .members
            .into_iter()
            .map(|member| member.user_id)
            .filter(|member| member != viewer)
            .collect();
        Some(Self { guild_id: guild.id, channel_id, recipients })
    }
}

/// A session as it can be stored and restored ([`crate::Session::restore`]). The token is a
/// secret: keep it where only the user can read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedSession {
    /// The server's URL, e.g. `https://chat.example.org`.
    pub url: String,
    /// The server's name.
    pub server_name: ServerName,
    /// The account on that server.
    pub user_id: UserId,
    /// The bearer token.
    pub token: String,
}
