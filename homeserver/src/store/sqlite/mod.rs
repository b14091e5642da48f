//! The embedded engine: one SQLite file in the data directory, written by one process.
//!
//! SQLite has one writer at a time; [`SqliteStore::write`] takes its lock at the start of a
//! write transaction, so a transaction that reads before it writes sees the state it commits
//! on.
//!
//! Guild log appends commit on a connection of their own without waiting for the disk; their
//! durability is a shared fence, one fsync for every append before it (see [`fence`]).

mod bots;
mod cluster;
mod e2e;
mod federation;
mod fence;
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
use std::sync::Arc;
use std::time::Duration;

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

/// The SQLite engine.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// One connection for guild log appends, `synchronous=NORMAL`: made durable by `fence`.
    appends: SqlitePool,
    fence: Arc<fence::WalFence>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and applies pending migrations.
    pub async fn open(path: &Path) -> Result<Self, sqlx::Error> {
        let options = SqliteConnectOptions::from_str("sqlite:")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a commit is on disk (the WAL fsynced) before it returns. Events are
            // published and delivered only once durable: with a commit a power loss could take
            // back, other servers could hold events the host no longer has, and it would then
            // sequence different events at the same seq (equivocation every replica gets stuck
            // on). Appends reach the same guarantee through the fence.
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let pool =
            SqlitePoolOptions::new().max_connections(8).connect_with(options.clone()).await?;
        sqlx::migrate!("../migrations/sqlite").run(&pool).await?;
        let appends = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.synchronous(SqliteSynchronous::Normal))
            .await?;
        Ok(Self { pool, appends, fence: Arc::new(fence::WalFence::new(path)) })
    }

    /// Begins a write transaction holding SQLite's write lock from its first statement
    /// (`BEGIN IMMEDIATE`). A deferred transaction that reads before it writes fails at once
    /// with `SQLITE_BUSY` when another connection wrote in between; an immediate one waits
    /// for the lock (the busy timeout) instead.
    async fn write(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, sqlx::Error> {
        self.pool.begin_with("BEGIN IMMEDIATE").await
    }

    /// A write transaction for a guild log append, which [`fence::WalFence`] makes durable.
    async fn append(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, sqlx::Error> {
        self.appends.begin_with("BEGIN IMMEDIATE").await
    }
}

impl super::Engine for SqliteStore {}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn commits_are_durable_before_they_return() {
        let dir = std::env::temp_dir().join(format!("guildhall-store-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = SqliteStore::open(&dir.join("db.sqlite3")).await.unwrap();
        let level: i64 =
            sqlx::query_scalar("PRAGMA synchronous").fetch_one(&store.pool).await.unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(level, 2, "synchronous=FULL");
    }
}
