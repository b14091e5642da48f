//! The guild log and the projections derived from it.

use guildhall_spec::content::EventContent;
use guildhall_spec::event::JsonObject;
use guildhall_spec::state::GuildState;
use guildhall_spec::{ChannelId, EventId, GuildId, InviteCode, ServerName, TxnId, UserId};

/// A sequenced event ready to be stored, with what it does.
#[derive(Debug)]
pub struct AppendedEvent<'a> {
    /// The guild.
    pub guild_id: &'a GuildId,
    /// Its seq.
    pub seq: u64,
    /// Its id.
    pub event_id: &'a EventId,
    /// The full event as signed (with content).
    pub event: &'a JsonObject,
    /// The sender.
    pub sender: &'a UserId,
    /// The sender's transaction id.
    pub txn_id: &'a TxnId,
    /// Origin timestamp.
    pub origin_ts: u64,
    /// The event type.
    pub event_type: &'a str,
    /// The typed content; `None` when it was withheld from this server.
    pub content: Option<&'a EventContent>,
    /// A history event stored below the head (after a join snapshot): it is indexed for
    /// reading but changes neither the head nor the state.
    pub backfill: bool,
    /// The state before the event (`None` for `guild.create` and for history stored after a
    /// snapshot).
    pub before: Option<&'a GuildState>,
    /// The state after it.
    pub after: &'a GuildState,
    /// Deliveries this event implies: each destination with the event as it may see it.
    pub outbound: &'a [(guildhall_spec::ServerName, JsonObject)],
}

impl AppendedEvent<'_> {
    /// Whether the event changed the guild's state (and its row must be rewritten). An event
    /// that changes nothing (a message, most of the log) is appended with the very state it
    /// found, so that is answered without comparing every member and channel.
    pub fn state_changed(&self) -> bool {
        match self.before {
            Some(before) => !std::ptr::eq(before, self.after) && before != self.after,
            None => true,
        }
    }
}

/// An event as stored.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    /// Server-wide position.
    pub stream_id: i64,
    /// The guild.
    pub guild_id: GuildId,
    /// Its seq.
    pub seq: u64,
    /// Its id.
    pub event_id: EventId,
    /// The event, with `content` when the server holds it.
    pub event: JsonObject,
}

/// A writer's hold on one guild (see [`GuildStore::lock_guild`]); released when dropped.
#[must_use = "the guild is locked only while the guard lives"]
pub struct GuildLock {
    held: Option<Box<dyn std::any::Any + Send + Sync>>,
}

impl GuildLock {
    /// No lock: only this process writes the database.
    pub(super) fn unshared() -> Self {
        Self { held: None }
    }

    /// A lock held for as long as `held` lives.
    pub(super) fn holding(held: impl std::any::Any + Send + Sync) -> Self {
        Self { held: Some(Box::new(held)) }
    }

    /// Whether other processes write this guild too, so that a head cached in memory must be
    /// checked against the stored one once the lock is held.
    pub fn shared(&self) -> bool {
        self.held.is_some()
    }
}

impl std::fmt::Debug for GuildLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuildLock").field("shared", &self.shared()).finish()
    }
}

/// Guild logs, heads and the projections written with every event.
#[async_trait::async_trait]
pub trait GuildStore: Send + Sync {
    /// Serializes the writers of one guild across every process sharing this database, from
    /// reading its head to committing the next event, until the returned guard drops. On an
    /// engine only one process writes, the guard is empty (the caller's own lock suffices).
    async fn lock_guild(&self, guild_id: &GuildId) -> Result<GuildLock, sqlx::Error>;

    /// The seq at the head of a guild as stored (`None`: not stored here).
    async fn head_seq(&self, guild_id: &GuildId) -> Result<Option<u64>, sqlx::Error>;

    /// The stored head and state of a guild.
    async fn guild(
        &self,
        guild_id: &GuildId,
    ) -> Result<Option<(u64, EventId, GuildState)>, sqlx::Error>;

    /// Installs a replica's state from a host-signed snapshot at `seq` (a join), replacing any
    /// earlier copy, and indexes its members, channels and invites.
    async fn install_snapshot(
        &self,
        state: &GuildState,
        seq: u64,
        event_id: &EventId,
    ) -> Result<(), sqlx::Error>;

    /// The guilds this server replicates (hosted elsewhere).
    async fn replicated_guilds(&self, me: &ServerName) -> Result<Vec<GuildId>, sqlx::Error>;

    /// The newest (at most `limit`) events of a guild stored without content because it was
    /// withheld from this server, oldest first. Erased messages are left out: their content is
    /// gone for good, and asking for it again would cost every refetch for nothing.
    async fn withheld_events(
        &self,
        guild_id: &GuildId,
        limit: u32,
    ) -> Result<Vec<EventId>, sqlx::Error>;

    /// Stores content that arrives after its event (withheld until a local user could see it)
    /// and indexes it as if it had come with the event. Returns false if the event already had
    /// content.
    async fn fill_withheld(
        &self,
        event: &StoredEvent,
        content: &EventContent,
    ) -> Result<bool, sqlx::Error>;

    /// Whether a message of a guild was deleted (its content must never be stored again).
    async fn is_erased(
        &self,
        guild_id: &GuildId,
        message_id: &EventId,
    ) -> Result<bool, sqlx::Error>;

    /// Whether an event is stored.
    async fn has_event(&self, event_id: &EventId) -> Result<bool, sqlx::Error>;

    /// The guilds a user is a member of.
    async fn guilds_of(&self, user_id: &UserId) -> Result<Vec<GuildId>, sqlx::Error>;

    /// The guilds of `member` holding a channel with this id. Channel ids are scoped to their
    /// guild: two guilds (hosted anywhere) may use the same one, so callers choose among these;
    /// guilds the user is not in never crowd them out.
    async fn member_channel_guilds(
        &self,
        channel_id: &ChannelId,
        member: &UserId,
    ) -> Result<Vec<GuildId>, sqlx::Error>;

    /// The guilds of `member` holding an invite with this code.
    async fn member_invite_guilds(
        &self,
        code: &InviteCode,
        member: &UserId,
    ) -> Result<Vec<GuildId>, sqlx::Error>;

    /// The guild hosted by `host` (this server) holding an invite with this code; a host keeps
    /// its codes unique among the guilds it hosts.
    async fn hosted_invite_guild(
        &self,
        code: &InviteCode,
        host: &ServerName,
    ) -> Result<Option<GuildId>, sqlx::Error>;

    /// Whether a guild other than `guild_id` holds a channel with this id.
    async fn channel_id_used_elsewhere(
        &self,
        channel_id: &ChannelId,
        guild_id: &GuildId,
    ) -> Result<bool, sqlx::Error>;

    /// Whether a guild other than `guild_id` holds an invite with this code.
    async fn invite_code_used_elsewhere(
        &self,
        code: &InviteCode,
        guild_id: &GuildId,
    ) -> Result<bool, sqlx::Error>;

    /// The event a (sender, txn_id) already produced, for idempotent retries.
    async fn txn_event(
        &self,
        sender: &UserId,
        txn_id: &TxnId,
    ) -> Result<Option<StoredEvent>, sqlx::Error>;

    /// Events of the given guilds after a stream position, oldest first (gateway resume).
    async fn events_since(
        &self,
        stream_id: i64,
        guilds: &[GuildId],
        limit: u32,
    ) -> Result<Vec<StoredEvent>, sqlx::Error>;

    /// The highest stream position.
    async fn stream_head(&self) -> Result<i64, sqlx::Error>;

    /// Stores a sequenced event and every projection it implies, atomically. Returns the
    /// event's stream position.
    async fn append_event(&self, appended: &AppendedEvent<'_>) -> Result<i64, sqlx::Error>;

    /// Stores a run of events of one guild, each the one after the one before, in order.
    /// Returns their stream positions. An engine may write them in one transaction (all or
    /// none, as SQLite does) or one by one (then a failure leaves a prefix stored, each event
    /// whole); either way the head stored is always an event of the run or the one before it.
    async fn append_events(&self, run: &[AppendedEvent<'_>]) -> Result<Vec<i64>, sqlx::Error> {
        let mut stream_ids = Vec::with_capacity(run.len());
        for appended in run {
            stream_ids.push(self.append_event(appended).await?);
        }
        Ok(stream_ids)
    }

    /// Whether every append that has returned is on disk. An engine whose appends are durable
    /// when they return always answers yes.
    fn settled(&self) -> bool {
        true
    }

    /// Returns once every append that returned before the call is on disk. An append is
    /// visible to this process when it returns but may not be durable yet: nothing derived
    /// from it (a publication, a response, a delivery) leaves the process before this fence.
    async fn durable(&self) -> Result<(), sqlx::Error> {
        Ok(())
    }
}
