//! The scale-out engine: several nodes of the server on one PostgreSQL database.
//!
//! Writes keep the semantics the SQLite engine has by construction: [`PostgresStore::write`]
//! begins a transaction holding one database-wide advisory lock (SQLite's single writer), so
//! a transaction that reads before it writes commits on what it read. Guild appends are the
//! exception that scales: a guild's writers are serialized by a lock of their own
//! ([`GuildStore::lock_guild`](crate::store::GuildStore::lock_guild)), and an append takes a
//! third lock, the stream lock, only for its last step (its outbound rows and its event), so
//! that stream positions and queue ids are committed in the order they are handed out (a
//! gateway resuming after position `s` never misses an event committed later with a smaller
//! one). Only appends take the stream lock, and nothing waits for a row while holding it, so
//! an append holding projection rows never waits on a transaction that waits for them.
//!
//! No lock is waited for longer than [`LOCK_TIMEOUT`] (then the write fails), and a
//! transaction left idle, such as the one holding a guild's lock for a node that hangs, is
//! ended by the database after [`IDLE_TIMEOUT`].

mod bots;
mod cluster;
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

use std::time::Duration;

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Postgres, Transaction};

/// Advisory lock classes (the first key of PostgreSQL's two-key advisory locks).
const WRITE_LOCK_CLASS: i32 = 1;
const GUILD_LOCK_CLASS: i32 = 2;
const STREAM_LOCK_CLASS: i32 = 3;

/// The longest any statement waits for a lock.
const LOCK_TIMEOUT: &str = "15s";
/// The longest a transaction may sit idle before the database ends it (and its locks).
const IDLE_TIMEOUT: &str = "60s";

/// The PostgreSQL engine.
#[derive(Clone, Debug)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connects and applies pending migrations (nodes starting at once apply them once:
    /// sqlx holds an advisory lock while migrating).
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, sqlx::Error> {
        let options = PgConnectOptions::from_str(url)?.options([
            ("lock_timeout", LOCK_TIMEOUT),
            ("idle_in_transaction_session_timeout", IDLE_TIMEOUT),
        ]);
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await?;
        sqlx::migrate!("../migrations/postgres").run(&pool).await?;
        Ok(Self { pool })
    }

    /// The pool, for moving data in and out (`store::transfer`).
    pub(super) fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Begins a write transaction holding the database-wide write lock.
    async fn write(&self) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        lock(&mut tx, WRITE_LOCK_CLASS, "").await?;
        Ok(tx)
    }
}

/// Takes a transaction-scoped advisory lock: `(class, hashtext(name))`.
async fn lock(
    tx: &mut Transaction<'static, Postgres>,
    class: i32,
    name: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
        .bind(class)
        .bind(name)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// A transaction kept open only to hold its advisory locks; rolled back when dropped.
struct HeldLock(std::sync::Mutex<Option<Transaction<'static, Postgres>>>);

impl Drop for HeldLock {
    fn drop(&mut self) {
        let held = self.0.get_mut().ok().and_then(Option::take);
        if let (Some(tx), Ok(runtime)) = (held, tokio::runtime::Handle::try_current()) {
            // Ended at once rather than whenever the pooled connection is next used.
            runtime.spawn(async move {
                let _ = tx.rollback().await;
            });
        }
    }
}

impl super::Engine for PostgresStore {}
