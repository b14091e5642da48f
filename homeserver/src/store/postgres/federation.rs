//! federation: the PostgreSQL implementation of [`FederationStore`].

use super::PostgresStore;
use super::guilds::stored_event;
use crate::store::federation::{
    FederationStore, INBOUND_TXN_RETENTION_MS, MAX_EQUIVOCATIONS_PER_GUILD, OutboundRow,
    ProposalRow,
};
use crate::store::{StoredEvent, now_ms, to_i64};
use guildhall_spec::event::JsonObject;
use guildhall_spec::{EventId, GuildId, ServerName};
use sqlx::Row;

#[async_trait::async_trait]
impl FederationStore for PostgresStore {
    async fn outbound_destinations(&self) -> Result<Vec<ServerName>, sqlx::Error> {
        let names: Vec<String> =
            sqlx::query_scalar("SELECT DISTINCT destination FROM outbound_events")
                .fetch_all(&self.pool)
                .await?;
        Ok(names.iter().filter_map(|name| ServerName::parse(name).ok()).collect())
    }

    async fn outbound_batch(
        &self,
        destination: &ServerName,
        limit: u32,
    ) -> Result<Vec<OutboundRow>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT id, event FROM outbound_events WHERE destination = $1 ORDER BY id LIMIT $2",
        )
        .bind(destination.as_str())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .filter_map(|row| {
                let event: String = row.get("event");
                Some(OutboundRow { id: row.get("id"), event: serde_json::from_str(&event).ok()? })
            })
            .collect())
    }

    async fn delete_outbound(
        &self,
        destination: &ServerName,
        up_to: i64,
    ) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM outbound_events WHERE destination = $1 AND id <= $2")
            .bind(destination.as_str())
            .bind(up_to)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn outbound_queue_sizes(&self) -> Result<Vec<(String, i64, i64)>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT server, SUM(events)::BIGINT AS events, SUM(proposals)::BIGINT AS proposals FROM (
                 SELECT destination AS server, COUNT(*) AS events, 0 AS proposals
                 FROM outbound_events GROUP BY destination
                 UNION ALL
                 SELECT host AS server, 0 AS events, COUNT(*) AS proposals
                 FROM outbound_proposals GROUP BY host) queues
             GROUP BY server ORDER BY server LIMIT 1000",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok((row.try_get("server")?, row.try_get("events")?, row.try_get("proposals")?))
            })
            .collect()
    }

    async fn queue_proposal(
        &self,
        guild_id: &GuildId,
        proposal: &JsonObject,
    ) -> Result<(), sqlx::Error> {
        sqlx::query("INSERT INTO outbound_proposals (host, guild_id, proposal, created_ts) VALUES ($1, $2, $3, $4)")
            .bind(guild_id.host().as_str())
            .bind(guild_id.as_str())
            .bind(serde_json::Value::Object(proposal.clone()).to_string())
            .bind(to_i64(now_ms()))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn proposal_hosts(&self) -> Result<Vec<ServerName>, sqlx::Error> {
        let names: Vec<String> = sqlx::query_scalar("SELECT DISTINCT host FROM outbound_proposals")
            .fetch_all(&self.pool)
            .await?;
        Ok(names.iter().filter_map(|name| ServerName::parse(name).ok()).collect())
    }

    async fn next_proposal(&self, host: &ServerName) -> Result<Option<ProposalRow>, sqlx::Error> {
        let row = sqlx::query("SELECT id, guild_id, proposal FROM outbound_proposals WHERE host = $1 ORDER BY id LIMIT 1")
            .bind(host.as_str())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.and_then(|row| {
            let guild_id: String = row.get("guild_id");
            let proposal: String = row.get("proposal");
            Some(ProposalRow {
                id: row.get("id"),
                guild_id: GuildId::parse(&guild_id).ok()?,
                proposal: serde_json::from_str(&proposal).ok()?,
            })
        }))
    }

    async fn delete_proposal(&self, id: i64) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM outbound_proposals WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn inbound_txn(
        &self,
        origin: &ServerName,
        txn_id: &str,
    ) -> Result<Option<String>, sqlx::Error> {
        sqlx::query_scalar("SELECT response FROM inbound_txns WHERE origin = $1 AND txn_id = $2")
            .bind(origin.as_str())
            .bind(txn_id)
            .fetch_optional(&self.pool)
            .await
    }

    async fn join_answer(
        &self,
        guild_id: &GuildId,
        event_id: &EventId,
    ) -> Result<Option<String>, sqlx::Error> {
        sqlx::query_scalar("SELECT answer FROM join_answers WHERE guild_id = $1 AND event_id = $2")
            .bind(guild_id.as_str())
            .bind(event_id.as_str())
            .fetch_optional(&self.pool)
            .await
    }

    async fn record_join_answer(
        &self,
        guild_id: &GuildId,
        event_id: &EventId,
        answer: &str,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO join_answers (guild_id, event_id, answer, created_ts)
             VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        )
        .bind(guild_id.as_str())
        .bind(event_id.as_str())
        .bind(answer)
        .bind(to_i64(now_ms()))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn record_inbound_txn(
        &self,
        origin: &ServerName,
        txn_id: &str,
        response: &str,
    ) -> Result<(), sqlx::Error> {
        sqlx::query("INSERT INTO inbound_txns (origin, txn_id, response, received_ts) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING")
            .bind(origin.as_str())
            .bind(txn_id)
            .bind(response)
            .bind(to_i64(now_ms()))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn record_equivocation(
        &self,
        guild_id: &GuildId,
        seq: u64,
        held: &JsonObject,
        other: &JsonObject,
    ) -> Result<(), sqlx::Error> {
        // The first proof per (guild, seq) is kept, and at most MAX_EQUIVOCATIONS_PER_GUILD:
        // the count and the insert under the write lock, as SQLite's single writer has them.
        let mut tx = self.write().await?;
        sqlx::query(
            "INSERT INTO equivocations (guild_id, seq, held_event, other_event, detected_ts)
             SELECT $1, $2, $3, $4, $5
             WHERE (SELECT COUNT(*) FROM equivocations WHERE guild_id = $1) < $6
             ON CONFLICT DO NOTHING",
        )
        .bind(guild_id.as_str())
        .bind(to_i64(seq))
        .bind(serde_json::Value::Object(held.clone()).to_string())
        .bind(serde_json::Value::Object(other.clone()).to_string())
        .bind(to_i64(now_ms()))
        .bind(MAX_EQUIVOCATIONS_PER_GUILD)
        .execute(&mut *tx)
        .await?;
        tx.commit().await
    }

    async fn prune_inbound_txns(&self, now: u64) -> Result<u64, sqlx::Error> {
        let cutoff = to_i64(now.saturating_sub(INBOUND_TXN_RETENTION_MS));
        let done = sqlx::query("DELETE FROM inbound_txns WHERE received_ts < $1")
            .bind(cutoff)
            .execute(&self.pool)
            .await?;
        // Join answers likewise: a joiner retries a lost answer within minutes, and one that
        // comes later recovers from the guild's current state instead.
        let answers = sqlx::query("DELETE FROM join_answers WHERE created_ts < $1")
            .bind(cutoff)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() + answers.rows_affected())
    }

    async fn equivocations(&self) -> Result<Vec<serde_json::Value>, sqlx::Error> {
        let rows = sqlx::query("SELECT * FROM equivocations ORDER BY id DESC LIMIT 100")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|row| {
                let held: String = row.get("held_event");
                let other: String = row.get("other_event");
                serde_json::json!({
                    "guild_id": row.get::<String, _>("guild_id"),
                    "seq": row.get::<i64, _>("seq"),
                    "events": [serde_json::from_str::<serde_json::Value>(&held).unwrap_or_default(),
                               serde_json::from_str::<serde_json::Value>(&other).unwrap_or_default()],
                    "detected_ts": row.get::<i64, _>("detected_ts"),
                })
            })
            .collect())
    }

    async fn guild_events(
        &self,
        guild_id: &GuildId,
        after: u64,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT * FROM events WHERE guild_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(guild_id.as_str())
        .bind(to_i64(after))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(stored_event).collect()
    }

    async fn guild_events_before(
        &self,
        guild_id: &GuildId,
        up_to: u64,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT * FROM events WHERE guild_id = $1 AND seq <= $2 ORDER BY seq DESC LIMIT $3",
        )
        .bind(guild_id.as_str())
        .bind(to_i64(up_to))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        let mut events = rows.iter().map(stored_event).collect::<Result<Vec<_>, _>>()?;
        events.reverse();
        Ok(events)
    }

    async fn guild_event(
        &self,
        guild_id: &GuildId,
        seq: u64,
    ) -> Result<Option<StoredEvent>, sqlx::Error> {
        let row = sqlx::query("SELECT * FROM events WHERE guild_id = $1 AND seq = $2")
            .bind(guild_id.as_str())
            .bind(to_i64(seq))
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(stored_event).transpose()
    }

    async fn events_by_id(
        &self,
        guild_id: &GuildId,
        ids: &[EventId],
    ) -> Result<Vec<StoredEvent>, sqlx::Error> {
        let mut events = Vec::new();
        for id in ids {
            let row = sqlx::query("SELECT * FROM events WHERE guild_id = $1 AND event_id = $2")
                .bind(guild_id.as_str())
                .bind(id.as_str())
                .fetch_optional(&self.pool)
                .await?;
            if let Some(row) = row {
                events.push(stored_event(&row)?);
            }
        }
        Ok(events)
    }
}
