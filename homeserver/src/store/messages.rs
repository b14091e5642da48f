//! Message reads: history pages, single messages, reactions, pins and full-text search.

use guildhall_spec::state::MessageFacts;
use guildhall_spec::{ChannelId, EventId, GuildId, MediaId, UserId};

/// A message as stored.
#[derive(Debug, Clone)]
pub struct MessageRow {
    /// The message id (its `message.create` event id).
    pub message_id: EventId,
    /// The guild.
    pub guild_id: GuildId,
    /// The channel.
    pub channel_id: ChannelId,
    /// The author.
    pub author: UserId,
    /// The text; `None` once deleted.
    pub body: Option<String>,
    /// Replied-to message.
    pub reply_to: Option<EventId>,
    /// Mentioned users.
    pub mentions: Vec<UserId>,
    /// Position in the guild log.
    pub created_seq: u64,
    /// Creation time.
    pub created_ts: u64,
    /// Last edit time.
    pub edited_ts: Option<u64>,
    /// Whether it was deleted.
    pub deleted: bool,
    /// Attached media.
    pub attachments: Vec<MediaId>,
}

impl MessageRow {
    /// A message as it is stored right after its `message.create` (`event`, sequenced at
    /// `seq`): what a fresh send answers without reading it back. `None` if `event` lacks its
    /// origin timestamp.
    pub fn created(
        guild_id: &GuildId,
        message_id: &EventId,
        seq: u64,
        author: &UserId,
        event: &guildhall_spec::event::JsonObject,
        create: &guildhall_spec::content::MessageCreate,
    ) -> Option<Self> {
        Some(Self {
            message_id: message_id.clone(),
            guild_id: guild_id.clone(),
            channel_id: create.channel_id.clone(),
            author: author.clone(),
            body: Some(create.body.clone()),
            reply_to: create.reply_to.clone(),
            mentions: create.mentions.clone().unwrap_or_default(),
            created_seq: seq,
            created_ts: event.get("origin_ts")?.as_u64()?,
            edited_ts: None,
            deleted: false,
            attachments: create
                .attachments
                .iter()
                .flatten()
                .filter_map(|id| MediaId::parse(id).ok())
                .collect(),
        })
    }
}

/// One emoji's reactions on a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReactionCount {
    /// The message.
    pub message_id: EventId,
    /// The emoji.
    pub emoji: String,
    /// How many users reacted with it.
    pub count: u64,
    /// Whether the asking user is one of them.
    pub me: bool,
}

/// A history page request: newest first, bounded by message positions.
#[derive(Debug, Clone)]
pub struct MessageQuery {
    /// Only messages before this seq.
    pub before_seq: Option<u64>,
    /// Only messages after this seq.
    pub after_seq: Option<u64>,
    /// Page size.
    pub limit: u32,
}

impl MessageQuery {
    /// With only `after`, the page starts just after it: the engines take the oldest messages
    /// past it (ascending) and return them newest first.
    pub fn oldest_first(&self) -> bool {
        self.after_seq.is_some() && self.before_seq.is_none()
    }
}

/// A history page with what rendering it needs: its messages newest first, their reactions
/// from the viewer's point of view, and which of them are pinned.
#[derive(Debug, Clone, Default)]
pub struct MessagePage {
    /// The messages.
    pub rows: Vec<MessageRow>,
    /// Reactions on them, each emoji once per message, in the order first used.
    pub reactions: Vec<ReactionCount>,
    /// Those pinned.
    pub pinned: std::collections::HashSet<EventId>,
}

/// A search request.
#[derive(Debug, Clone)]
pub struct SearchQuery {
    /// Words to match (all of them).
    pub words: Vec<String>,
    /// Only in these channels (the ones the searcher may see).
    pub channels: Vec<ChannelId>,
    /// Only by this author.
    pub author: Option<UserId>,
    /// Only at or after this time.
    pub after_ts: Option<u64>,
    /// Only before this time.
    pub before_ts: Option<u64>,
    /// At most this many.
    pub limit: u32,
}

/// Reading the message projection: history, reactions, pins, search.
#[async_trait::async_trait]
pub trait MessageStore: Send + Sync {
    /// One message of a guild.
    async fn message(
        &self,
        guild_id: &GuildId,
        message_id: &EventId,
    ) -> Result<Option<MessageRow>, sqlx::Error>;

    /// What authorizing an action on a message needs to know about it.
    async fn message_facts(
        &self,
        guild_id: &GuildId,
        message_id: &EventId,
    ) -> Result<Option<MessageFacts>, sqlx::Error>;

    /// A page of a channel's live messages, newest first.
    async fn messages(
        &self,
        guild_id: &GuildId,
        channel_id: &ChannelId,
        query: &MessageQuery,
    ) -> Result<Vec<MessageRow>, sqlx::Error>;

    /// A page of a channel's live messages with their reactions (as `viewer` sees them) and
    /// pins: the history read clients make most. An engine may read it in one go.
    async fn page(
        &self,
        guild_id: &GuildId,
        channel_id: &ChannelId,
        query: &MessageQuery,
        viewer: &UserId,
    ) -> Result<MessagePage, sqlx::Error> {
        let rows = self.messages(guild_id, channel_id, query).await?;
        let ids: Vec<EventId> = rows.iter().map(|row| row.message_id.clone()).collect();
        let reactions = self.reactions(guild_id, &ids, viewer).await?;
        let pinned = self.pinned_among(guild_id, &ids).await?;
        Ok(MessagePage { rows, reactions, pinned })
    }

    /// Reaction counts for a set of messages of a guild.
    async fn reactions(
        &self,
        guild_id: &GuildId,
        message_ids: &[EventId],
        viewer: &UserId,
    ) -> Result<Vec<ReactionCount>, sqlx::Error>;

    /// The users who reacted to a message with an emoji, in order.
    async fn reactors(
        &self,
        guild_id: &GuildId,
        message_id: &EventId,
        emoji: &str,
        limit: u32,
    ) -> Result<Vec<UserId>, sqlx::Error>;

    /// Whether a user reacted to a message with an emoji.
    async fn has_reacted(
        &self,
        guild_id: &GuildId,
        message_id: &EventId,
        user: &UserId,
        emoji: &str,
    ) -> Result<bool, sqlx::Error>;

    /// Pinned messages of a channel, most recently pinned first.
    async fn pins(
        &self,
        guild_id: &GuildId,
        channel_id: &ChannelId,
    ) -> Result<Vec<MessageRow>, sqlx::Error>;

    /// Whether a message is pinned.
    async fn is_pinned(
        &self,
        guild_id: &GuildId,
        message_id: &EventId,
    ) -> Result<bool, sqlx::Error>;

    /// Which of a guild's messages `message_ids` are pinned: one query for a page of messages.
    async fn pinned_among(
        &self,
        guild_id: &GuildId,
        message_ids: &[EventId],
    ) -> Result<std::collections::HashSet<EventId>, sqlx::Error>;

    /// Full-text search of live messages in a guild, newest first.
    async fn search(
        &self,
        guild_id: &GuildId,
        query: &SearchQuery,
    ) -> Result<Vec<MessageRow>, sqlx::Error>;
}
