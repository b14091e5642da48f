//! cluster: the SQLite implementation of [`ClusterStore`].

use guildhall_spec::ServerName;

use super::SqliteStore;
use crate::store::cluster::ClusterStore;
use crate::store::{now_ms, to_i64};

#[async_trait::async_trait]
impl ClusterStore for SqliteStore {
    async fn ping(&self) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn hold_lease(
        &self,
        queue: &str,
        holder: &str,
        ttl_ms: u64,
    ) -> Result<bool, sqlx::Error> {
        let now = to_i64(now_ms());
        // One statement: taken when free, expired or already ours; otherwise nothing changes.
        let taken = sqlx::query(
            "INSERT INTO delivery_leases (queue, holder, expires_ts) VALUES (?, ?, ?)
             ON CONFLICT (queue) DO UPDATE SET holder = excluded.holder, expires_ts = excluded.expires_ts
             WHERE delivery_leases.holder = excluded.holder OR delivery_leases.expires_ts < ?",
        )
        .bind(queue)
        .bind(holder)
        .bind(now.saturating_add(to_i64(ttl_ms)))
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(taken.rows_affected() == 1)
    }

    async fn unleased_destinations(&self) -> Result<Vec<ServerName>, sqlx::Error> {
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT o.destination FROM outbound_events o
             LEFT JOIN delivery_leases l ON l.queue = o.destination AND l.expires_ts >= ?
             WHERE l.queue IS NULL",
        )
        .bind(to_i64(now_ms()))
        .fetch_all(&self.pool)
        .await?;
        Ok(names.iter().filter_map(|name| ServerName::parse(name).ok()).collect())
    }

    async fn release_lease(&self, queue: &str, holder: &str) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM delivery_leases WHERE queue = ? AND holder = ?")
            .bind(queue)
            .bind(holder)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
