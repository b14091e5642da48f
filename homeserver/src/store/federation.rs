//! Federation bookkeeping: outbound queues, inbound transaction answers, equivocation evidence,
//! and reading ranges of the log for peers.

use crate::store::StoredEvent;
use guildhall_spec::event::JsonObject;
use guildhall_spec::{EventId, GuildId, ServerName};

/// A queued outbound event.
#[derive(Debug, Clone)]
pub struct OutboundRow {
    /// Queue position.
    pub id: i64,
    /// The event as the destination may see it.
    pub event: JsonObject,
}

/// A queued proposal to a remote host.
#[derive(Debug, Clone)]
pub struct ProposalRow {
    /// Queue position.
    pub id: i64,
    /// The guild.
    pub guild_id: GuildId,
    /// The signed proposal.
    pub proposal: JsonObject,
}

/// How long a received transaction's answer is kept (spec 12.3: at least 24 hours).
pub(super) const INBOUND_TXN_RETENTION_MS: u64 = 7 * 24 * 3600 * 1000;

/// Most pieces of equivocation evidence kept per guild.
pub(super) const MAX_EQUIVOCATIONS_PER_GUILD: i64 = 100;

/// Federation queues, inbound transactions, join answers and log reads for peers.
#[async_trait::async_trait]
pub trait FederationStore: Send + Sync {
    /// Servers with undelivered events.
    async fn outbound_destinations(&self) -> Result<Vec<ServerName>, sqlx::Error>;

    /// The oldest undelivered events for a destination.
    async fn outbound_batch(
        &self,
        destination: &ServerName,
        limit: u32,
    ) -> Result<Vec<OutboundRow>, sqlx::Error>;

    /// Forgets delivered events.
    async fn delete_outbound(
        &self,
        destination: &ServerName,
        up_to: i64,
    ) -> Result<(), sqlx::Error>;

    /// Per server with anything queued: queued events and queued proposals.
    async fn outbound_queue_sizes(&self) -> Result<Vec<(String, i64, i64)>, sqlx::Error>;

    /// Queues a proposal for a host that could not be reached.
    async fn queue_proposal(
        &self,
        guild_id: &GuildId,
        proposal: &JsonObject,
    ) -> Result<(), sqlx::Error>;

    /// Hosts with queued proposals.
    async fn proposal_hosts(&self) -> Result<Vec<ServerName>, sqlx::Error>;

    /// The oldest queued proposal for a host.
    async fn next_proposal(&self, host: &ServerName) -> Result<Option<ProposalRow>, sqlx::Error>;

    /// Forgets a proposal that was answered.
    async fn delete_proposal(&self, id: i64) -> Result<(), sqlx::Error>;

    /// The answer already given to a transaction, if any.
    async fn inbound_txn(
        &self,
        origin: &ServerName,
        txn_id: &str,
    ) -> Result<Option<String>, sqlx::Error>;

    /// The answer given to the remote join that produced `event_id`.
    async fn join_answer(
        &self,
        guild_id: &GuildId,
        event_id: &EventId,
    ) -> Result<Option<String>, sqlx::Error>;

    /// Records the answer to a remote join.
    async fn record_join_answer(
        &self,
        guild_id: &GuildId,
        event_id: &EventId,
        answer: &str,
    ) -> Result<(), sqlx::Error>;

    /// Records the answer to a transaction.
    async fn record_inbound_txn(
        &self,
        origin: &ServerName,
        txn_id: &str,
        response: &str,
    ) -> Result<(), sqlx::Error>;

    /// Stores equivocation evidence.
    async fn record_equivocation(
        &self,
        guild_id: &GuildId,
        seq: u64,
        held: &JsonObject,
        other: &JsonObject,
    ) -> Result<(), sqlx::Error>;

    /// Forgets received transactions older than [`INBOUND_TXN_RETENTION_MS`] (a sender retries
    /// a transaction within hours; a late retry is harmless, as events are deduplicated by
    /// `(guild_id, seq)`). Returns how many were forgotten.
    async fn prune_inbound_txns(&self, now: u64) -> Result<u64, sqlx::Error>;

    /// Equivocation evidence, newest first.
    async fn equivocations(&self) -> Result<Vec<serde_json::Value>, sqlx::Error>;

    /// Events of a guild with `seq > after`, oldest first.
    async fn guild_events(
        &self,
        guild_id: &GuildId,
        after: u64,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, sqlx::Error>;

    /// The last `limit` events of a guild up to and including `seq`, oldest first.
    async fn guild_events_before(
        &self,
        guild_id: &GuildId,
        up_to: u64,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, sqlx::Error>;

    /// One event of a guild by seq.
    async fn guild_event(
        &self,
        guild_id: &GuildId,
        seq: u64,
    ) -> Result<Option<StoredEvent>, sqlx::Error>;

    /// Events by id (for withheld-content requests).
    async fn events_by_id(
        &self,
        guild_id: &GuildId,
        ids: &[EventId],
    ) -> Result<Vec<StoredEvent>, sqlx::Error>;
}
