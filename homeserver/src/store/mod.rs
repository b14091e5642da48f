//! Storage: one interface, two engines.
//!
//! The rest of the server sees [`Store`], a cheap handle to an [`Engine`]: the union of one
//! trait per area (accounts, guild logs, messages, federation queues, identity, end-to-end
//! keys, media, relationships, trust lists). Each engine implements every area with its own
//! SQL and its own migrations: [`SqliteStore`] (the embedded default, `migrations/sqlite`) and
//! [`PostgresStore`] (several nodes on one database, `migrations/postgres`), chosen by the
//! `[database] url`. All SQL of the project lives under this module.
//!
//! The guild log is the source of truth; [`GuildStore::append_event`] writes an event together
//! with every projection it implies (guild state, membership index, messages, reactions, pins,
//! full-text index) in one transaction.

mod bots;
mod cluster;
mod e2e;
mod federation;
mod guilds;
mod identity;
mod media;
mod messages;
mod postgres;
mod social;
mod sqlite;
pub mod transfer;
mod trust;
mod users;

use std::path::Path;
use std::sync::Arc;

pub use bots::{ApplicationRow, BotStore, SnowflakeTarget};
pub use cluster::ClusterStore;
pub use e2e::{
    Claimed, E2eStore, InboxItem, InboxLimits, InboxShare, KeysRefused, NewInboxItem, Reservation,
    ShareOutcome,
};
pub use federation::{FederationStore, OutboundRow, ProposalRow};
pub use guilds::{AppendedEvent, GuildLock, GuildStore, StoredEvent};
pub use identity::{AttestationRow, DeviceRow, IdentityStore};
pub use media::{GuildRef, MediaRow, MediaStore, RefKind};
pub use messages::{
    MessagePage, MessageQuery, MessageRow, MessageStore, ReactionCount, SearchQuery,
};
pub use postgres::PostgresStore;
pub use social::{RelationshipRow, SocialStore};
pub use sqlite::SqliteStore;
pub use trust::{Audit, AuditRow, SubscriptionRow, TrustEntryRow, TrustStore};
pub use users::{SessionRow, TokenSession, UserRow, UserStore};

/// Everything the server stores, in one engine.
pub trait Engine:
    UserStore
    + GuildStore
    + MessageStore
    + FederationStore
    + IdentityStore
    + E2eStore
    + MediaStore
    + SocialStore
    + TrustStore
    + ClusterStore
    + BotStore
    + std::fmt::Debug
{
}

/// The database: a handle to one engine, cheap to clone. Every area's methods are called on
/// it directly (`store.user(..)`).
#[derive(Clone, Debug)]
pub struct Store {
    engine: Arc<dyn Engine>,
}

impl std::ops::Deref for Store {
    type Target = dyn Engine;

    fn deref(&self) -> &Self::Target {
        &*self.engine
    }
}

impl Store {
    /// Opens (creating if needed) an SQLite database file and applies pending migrations.
    pub async fn open(path: &Path) -> Result<Self, sqlx::Error> {
        Ok(Self { engine: Arc::new(SqliteStore::open(path).await?) })
    }

    /// Opens the database a URL names: `postgres://…` (or `postgresql://…`) connects to
    /// PostgreSQL with a pool of at most `max_connections`; `sqlite://PATH` opens a file.
    /// Pending migrations are applied.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, sqlx::Error> {
        let engine: Arc<dyn Engine> = if let Some(path) = url.strip_prefix("sqlite://") {
            Arc::new(SqliteStore::open(Path::new(path)).await?)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Arc::new(PostgresStore::connect(url, max_connections).await?)
        } else {
            return Err(sqlx::Error::Configuration(
                "database url must start with sqlite:// or postgres://".into(),
            ));
        };
        Ok(Self { engine })
    }
}

/// The current time in milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
}

/// Database integers are signed; timestamps and sequence numbers fit easily.
fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn to_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}
