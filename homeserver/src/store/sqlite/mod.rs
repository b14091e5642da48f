//! The embedded engine: one SQLite file in the data directory, written by one process.
//!
//! SQLite has one writer at a time; [`SqliteStore::write`] takes its lock at the start of a
//! write transaction, so a transaction that reads before it writes sees the state it commits
//! on.
//!
//! Guild appends commit on the writer thread's connection without waiting for the disk; their
//! durability is a shared fence, one fsync for every append before it (see [`fence`]).

mod bots;
mod cluster;
mod direct;
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
mod writer;

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

/// How long a statement waits for another connection's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The SQLite engine.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// The hottest reads, each in one hop ([`direct`]).
    readers: Arc<direct::Readers>,
    /// Guild appends, each in one hop ([`writer`]), made durable together ([`fence`]).
    writer: Arc<writer::Writer>,
    fence: Arc<fence::WalFence>,
}

impl SqliteStore {
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
            .busy_timeout(BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            // A connection to a local file does not go stale, and sqlx's ping before handing
            // one out is a round trip to the connection's thread: one more per query, and
            // under the guild write lock for every append.
            .test_before_acquire(false)
            .connect_with(options)
            .await?;
        sqlx::migrate!("../migrations/sqlite").run(&pool).await?;
        let fence = Arc::new(fence::WalFence::new(path));
        Ok(Self {
            pool,
            readers: Arc::new(direct::Readers::new(path, BUSY_TIMEOUT)),
            writer: Arc::new(writer::Writer::open(path, BUSY_TIMEOUT, Arc::clone(&fence))?),
            fence,
        })
    }

    /// Begins a write transaction holding SQLite's write lock from its first statement
    /// (`BEGIN IMMEDIATE`). A deferred transaction that reads before it writes fails at once
    /// with `SQLITE_BUSY` when another connection wrote in between; an immediate one waits
    /// for the lock (the busy timeout) instead.
    async fn write(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, sqlx::Error> {
        self.pool.begin_with("BEGIN IMMEDIATE").await
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
