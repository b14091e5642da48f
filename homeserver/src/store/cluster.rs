//! Coordination between nodes sharing one database: leases on outbound queues.

use guildhall_spec::ServerName;

/// Leases: at most one node works a queue at a time, and a dead node's queues pass to another
/// once its leases expire.
#[async_trait::async_trait]
pub trait ClusterStore: Send + Sync {
    /// Answers once the database does (readiness).
    async fn ping(&self) -> Result<(), sqlx::Error>;

    /// Takes or renews the lease on `queue` for `holder` until `ttl_ms` from now. Returns
    /// false while another holder's lease is unexpired.
    async fn hold_lease(&self, queue: &str, holder: &str, ttl_ms: u64)
    -> Result<bool, sqlx::Error>;

    /// Destinations with queued events that no node holds an unexpired lease on: queues a dead
    /// node left, or whose worker went idle just as new events arrived.
    async fn unleased_destinations(&self) -> Result<Vec<ServerName>, sqlx::Error>;

    /// Gives up `holder`'s lease on `queue` (if it still has it).
    async fn release_lease(&self, queue: &str, holder: &str) -> Result<(), sqlx::Error>;
}
