//! cluster: the PostgreSQL implementation of [`ClusterStore`].

use guildhall_spec::ServerName;

use super::PostgresStore;
use crate::store::cluster::ClusterStore;
use crate::store::to_i64;

#[async_trait::async_trait]
impl ClusterStore for PostgresStore {
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
        // One statement: taken when free, expired or already ours; otherwise nothing changes.
        // Times are the database's, so that nodes whose clocks differ agree on expiry.
        let taken = sqlx::query(
            "INSERT INTO delivery_leases (queue, holder, expires_ts) VALUES ($1, $2, (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT + $3)
             ON CONFLICT (queue) DO UPDATE SET holder = excluded.holder, expires_ts = excluded.expires_ts
             WHERE delivery_leases.holder = excluded.holder OR delivery_leases.expires_ts < (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT",
        )
        .bind(queue)
        .bind(holder)
        .bind(to_i64(ttl_ms))
        .execute(&self.pool)
        .await?;
        Ok(taken.rows_affected() == 1)
    }

    async fn unleased_destinations(&self) -> Result<Vec<ServerName>, sqlx::Error> {
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT o.destination FROM outbound_events o
             LEFT JOIN delivery_leases l ON l.queue = o.destination AND l.expires_ts >= (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT
             WHERE l.queue IS NULL",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(names.iter().filter_map(|name| ServerName::parse(name).ok()).collect())
    }

    async fn release_lease(&self, queue: &str, holder: &str) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM delivery_leases WHERE queue = $1 AND holder = $2")
            .bind(queue)
            .bind(holder)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
