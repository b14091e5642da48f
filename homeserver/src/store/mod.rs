//! Storage: the embedded SQLite engine.
//!
//! All SQL of the project lives under this module. The guild log is the source of truth;
//! [`Store::append_event`] writes an event together with every projection it implies (guild
//! state, membership index, messages, reactions, pins, full-text index) in one transaction.

mod e2e;
mod federation;
mod guilds;
mod identity;
mod media;
mod messages;
mod projections;
mod social;
mod trust;
mod users;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

pub use e2e::{
    Claimed, InboxItem, InboxLimits, InboxShare, KeysRefused, NewInboxItem, Reservation,
    ShareOutcome,
};
pub use federation::{OutboundRow, ProposalRow};
pub use guilds::{AppendedEvent, StoredEvent};
pub use identity::{AttestationRow, DeviceRow};
pub use media::{GuildRef, MediaRow, RefKind};
pub use messages::{MessageQuery, MessageRow, ReactionCount, SearchQuery};
pub use social::RelationshipRow;
pub use trust::{Audit, AuditRow, SubscriptionRow, TrustEntryRow};
pub use users::{SessionRow, UserRow};

/// The database.
#[derive(Clone, Debug)]
pub struct Store {
    pool: SqlitePool,
}

impl Store {
    /// Opens (creating if needed) the database file and applies pending migrations.
    pub async fn open(path: &Path) -> Result<Self, sqlx::Error> {
        let options = SqliteConnectOptions::from_str("sqlite:")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a commit is on disk (the WAL fsynced) before it returns, and events are
            // published and delivered only after their commit. With NORMAL a power loss could
            // lose events other servers already hold, and the host would then sequence
            // different events at the same seq: equivocation every replica gets stuck on.
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new().max_connections(8).connect_with(options).await?;
        sqlx::migrate!("../migrations/sqlite").run(&pool).await?;
        Ok(Self { pool })
    }
}

impl Store {
    /// Begins a write transaction holding SQLite's write lock from its first statement
    /// (`BEGIN IMMEDIATE`). A deferred transaction that reads before it writes fails at once
    /// with `SQLITE_BUSY` when another connection wrote in between; an immediate one waits
    /// for the lock (the busy timeout) instead.
    async fn write(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, sqlx::Error> {
        self.pool.begin_with("BEGIN IMMEDIATE").await
    }
}

/// The current time in milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
}

/// SQLite integers are signed; timestamps and sequence numbers fit easily.
fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn to_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn commits_are_durable_before_they_return() {
        let dir = std::env::temp_dir().join(format!("guildhall-store-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = Store::open(&dir.join("db.sqlite3")).await.unwrap();
        let level: i64 =
            sqlx::query_scalar("PRAGMA synchronous").fetch_one(&store.pool).await.unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(level, 2, "synchronous=FULL");
    }
}
