//! federation: the SQLite implementation of [`FederationStore`].

use super::SqliteStore;
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
impl FederationStore for SqliteStore {
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
            "SELECT id, event FROM outbound_events WHERE destination = ? ORDER BY id LIMIT ?",
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
        sqlx::query("DELETE FROM outbound_events WHERE destination = ? AND id <= ?")
            .bind(destination.as_str())
            .bind(up_to)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn outbound_queue_sizes(&self) -> Result<Vec<(String, i64, i64)>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT server, SUM(events) AS events, SUM(proposals) AS proposals FROM (
                 SELECT destination AS server, COUNT(*) AS events, 0 AS proposals
                 FROM outbound_events GROUP BY destination
                 UNION ALL
                 SELECT host AS server, 0 AS events, COUNT(*) AS proposals
                 FROM outbound_proposals GROUP BY host)
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
        sqlx::query("INSERT INTO outbound_proposals (host, guild_id, proposal, created_ts) VALUES (?, ?, ?, ?)")
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
        let row = sqlx::query("SELECT id, guild_id, proposal FROM outbound_proposals WHERE host = ? ORDER BY id LIMIT 1")
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
        sqlx::query("DELETE FROM outbound_proposals WHERE id = ?")
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
        sqlx::query_scalar("SELECT response FROM inbound_txns WHERE origin = ? AND txn_id = ?")
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
        sqlx::query_scalar("SELECT answer FROM join_answers WHERE guild_id = ? AND event_id = ?")
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
            "INSERT OR IGNORE INTO join_answers (guild_id, event_id, answer, created_ts)
             VALUES (?, ?, ?, ?)",
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
        sqlx::query("INSERT OR IGNORE INTO inbound_txns (origin, txn_id, response, received_ts) VALUES (?, ?, ?, ?)")
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
        // The first proof per (guild, seq) is kept, and at most MAX_EQUIVOCATIONS_PER_GUILD.
        sqlx::query(
            "INSERT OR IGNORE INTO equivocations (guild_id, seq, held_event, other_event, detected_ts)
             SELECT ?, ?, ?, ?, ?
             WHERE (SELECT COUNT(*) FROM equivocations WHERE guild_id = ?) < ?",
        )
        .bind(guild_id.as_str())
        .bind(to_i64(seq))
        .bind(serde_json::Value::Object(held.clone()).to_string())
        .bind(serde_json::Value::Object(other.clone()).to_string())
        .bind(to_i64(now_ms()))
        .bind(guild_id.as_str())
        .bind(MAX_EQUIVOCATIONS_PER_GUILD)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn prune_inbound_txns(&self, now: u64) -> Result<u64, sqlx::Error> {
        let cutoff = to_i64(now.saturating_sub(INBOUND_TXN_RETENTION_MS));
        let done = sqlx::query("DELETE FROM inbound_txns WHERE received_ts < ?")
            .bind(cutoff)
            .execute(&self.pool)
            .await?;
        // Join answers likewise: a joiner retries a lost answer within minutes, and one that
        // comes later recovers from the guild's current state instead.
        let answers = sqlx::query("DELETE FROM join_answers WHERE created_ts < ?")
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
        let rows =
            sqlx::query("SELECT * FROM events WHERE guild_id = ? AND seq > ? ORDER BY seq LIMIT ?")
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
            "SELECT * FROM events WHERE guild_id = ? AND seq <= ? ORDER BY seq DESC LIMIT ?",
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
        let row = sqlx::query("SELECT * FROM events WHERE guild_id = ? AND seq = ?")
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
            let row = sqlx::query("SELECT * FROM events WHERE guild_id = ? AND event_id = ?")
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

#[cfg(test)]
mod tests {
    use super::*;

    async fn store() -> (SqliteStore, std::path::PathBuf) {
        // One directory per test, even for tests started in the same millisecond.
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("guildhall-records-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        (SqliteStore::open(&dir.join("db.sqlite3")).await.unwrap(), dir)
    }

    #[tokio::test]
    async fn old_transactions_are_pruned_and_recent_ones_kept() {
        let (store, dir) = store().await;
        let origin = ServerName::parse("peer.example").unwrap();
        store.record_inbound_txn(&origin, "recent", "{}").await.unwrap();
        sqlx::query("INSERT INTO inbound_txns (origin, txn_id, response, received_ts) VALUES (?, 'old', '{}', 0)")
            .bind(origin.as_str())
            .execute(&store.pool)
            .await
            .unwrap();
        assert_eq!(store.prune_inbound_txns(now_ms()).await.unwrap(), 1);
        assert!(store.inbound_txn(&origin, "recent").await.unwrap().is_some());
        assert!(store.inbound_txn(&origin, "old").await.unwrap().is_none());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn equivocation_evidence_is_deduplicated_and_bounded() {
        let (store, dir) = store().await;
        let guild = GuildId::parse("!g:host.example").unwrap();
        let event = |n: u64| {
            let mut object = JsonObject::new();
            object.insert("n".into(), n.into());
            object
        };
        for variant in 0..5 {
            store.record_equivocation(&guild, 1, &event(0), &event(variant)).await.unwrap();
        }
        for seq in 2..300 {
            store.record_equivocation(&guild, seq, &event(0), &event(seq)).await.unwrap();
        }
        let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM equivocations")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(rows, MAX_EQUIVOCATIONS_PER_GUILD);
        let first: String =
            sqlx::query_scalar("SELECT other_event FROM equivocations WHERE seq = 1")
                .fetch_one(&store.pool)
                .await
                .unwrap();
        assert_eq!(first, r#"{"n":0}"#, "the first proof is kept");
        let _ = std::fs::remove_dir_all(dir);
    }
}
