//! federation: the PostgreSQL implementation of [`FederationStore`].

use super::PostgresStore;
use crate::store::StoredEvent;
use crate::store::federation::*;
use guildhall_spec::event::JsonObject;
use guildhall_spec::{EventId, GuildId, ServerName};

#[async_trait::async_trait]
impl FederationStore for PostgresStore {
    async fn outbound_destinations(&self) -> Result<Vec<ServerName>, sqlx::Error> {
        todo!()
    }

    async fn outbound_batch(
        &self,
        destination: &ServerName,
        limit: u32,
    ) -> Result<Vec<OutboundRow>, sqlx::Error> {
        todo!()
    }

    async fn delete_outbound(
        &self,
        destination: &ServerName,
        up_to: i64,
    ) -> Result<(), sqlx::Error> {
        todo!()
    }

    async fn outbound_queue_sizes(&self) -> Result<Vec<(String, i64, i64)>, sqlx::Error> {
        todo!()
    }

    async fn queue_proposal(
        &self,
        guild_id: &GuildId,
        proposal: &JsonObject,
    ) -> Result<(), sqlx::Error> {
        todo!()
    }

    async fn proposal_hosts(&self) -> Result<Vec<ServerName>, sqlx::Error> {
        todo!()
    }

    async fn next_proposal(&self, host: &ServerName) -> Result<Option<ProposalRow>, sqlx::Error> {
        todo!()
    }

    async fn delete_proposal(&self, id: i64) -> Result<(), sqlx::Error> {
        todo!()
    }

    async fn inbound_txn(
        &self,
        origin: &ServerName,
        txn_id: &str,
    ) -> Result<Option<String>, sqlx::Error> {
        todo!()
    }

    async fn join_answer(
        &self,
        guild_id: &GuildId,
        event_id: &EventId,
    ) -> Result<Option<String>, sqlx::Error> {
        todo!()
    }

    async fn record_join_answer(
        &self,
        guild_id: &GuildId,
        event_id: &EventId,
        answer: &str,
    ) -> Result<(), sqlx::Error> {
        todo!()
    }

    async fn record_inbound_txn(
        &self,
        origin: &ServerName,
        txn_id: &str,
        response: &str,
    ) -> Result<(), sqlx::Error> {
        todo!()
    }

    async fn record_equivocation(
        &self,
        guild_id: &GuildId,
        seq: u64,
        held: &JsonObject,
        other: &JsonObject,
    ) -> Result<(), sqlx::Error> {
        todo!()
    }

    async fn prune_inbound_txns(&self, now: u64) -> Result<u64, sqlx::Error> {
        todo!()
    }

    async fn equivocations(&self) -> Result<Vec<serde_json::Value>, sqlx::Error> {
        todo!()
    }

    async fn guild_events(
        &self,
        guild_id: &GuildId,
        after: u64,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, sqlx::Error> {
        todo!()
    }

    async fn guild_events_before(
        &self,
        guild_id: &GuildId,
        up_to: u64,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, sqlx::Error> {
        todo!()
    }

    async fn guild_event(
        &self,
        guild_id: &GuildId,
        seq: u64,
    ) -> Result<Option<StoredEvent>, sqlx::Error> {
        todo!()
    }

    async fn events_by_id(
        &self,
        guild_id: &GuildId,
        ids: &[EventId],
    ) -> Result<Vec<StoredEvent>, sqlx::Error> {
        todo!()
    }
}
