//! Hot reads on SQLite in one hop.
//!
//! sqlx runs each SQLite connection on a thread of its own and makes every statement — and
//! every row of a result — a message between that thread and the async task (a channel send,
//! a futex wake, a context switch: 50–250 µs each on a busy 2-core machine, far more than
//! SQLite's own work). A history page took six such statements and fifty rows. Here a whole
//! read runs as one closure on the blocking pool, on a connection of a small pool of
//! read-only `rusqlite` connections to the same file (WAL: readers see every committed write
//! and never block the writer), so it costs one hop to a thread and one back.
//!
//! The pool is bounded ([`MAX_READERS`] reads at once; more wait their turn) and every
//! connection has the store's busy timeout.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use guildhall_spec::{ChannelId, EventId, GuildId, MediaId, UserId};
use rusqlite::types::Value;
use rusqlite::{Connection, OpenFlags, Row, params_from_iter};
use tokio::sync::Semaphore;

use super::writer::to_sqlx;
use crate::store::messages::{MessagePage, MessageQuery, MessageRow, ReactionCount};
use crate::store::{to_i64, to_u64};

/// Reads running at once (each on a blocking-pool thread with a connection of its own).
const MAX_READERS: usize = 4;

/// A pool of read-only connections, opened as needed up to [`MAX_READERS`].
pub(super) struct Readers {
    path: PathBuf,
    busy_timeout: Duration,
    permits: Arc<Semaphore>,
    idle: Mutex<Vec<Connection>>,
}

impl std::fmt::Debug for Readers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readers").field("path", &self.path).finish_non_exhaustive()
    }
}

impl Readers {
    pub(super) fn new(path: &Path, busy_timeout: Duration) -> Self {
        Self {
            path: path.to_owned(),
            busy_timeout,
            permits: Arc::new(Semaphore::new(MAX_READERS)),
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Runs `read` on a pooled connection on the blocking pool.
    async fn run<T: Send + 'static>(
        self: &Arc<Self>,
        read: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, sqlx::Error> {
        // The permit goes with the read onto its thread: a request dropped meanwhile (its
        // client gone) does not free a place while the read still runs.
        let permit =
            Arc::clone(&self.permits).acquire_owned().await.map_err(|_| sqlx::Error::PoolClosed)?;
        let readers = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let connection = match readers.take() {
                Some(connection) => connection,
                None => readers.open()?,
            };
            let result = read(&connection);
            readers.give_back(connection);
            result
        })
        .await
        .map_err(|_| sqlx::Error::Protocol("a read on the blocking pool panicked".into()))?
        .map_err(to_sqlx)
    }

    fn take(&self) -> Option<Connection> {
        self.idle.lock().ok()?.pop()
    }

    /// Keeps a connection for the next read — at most [`MAX_READERS`] of them, and never one
    /// left inside a transaction (it would hold an old snapshot, and the WAL, forever).
    fn give_back(&self, connection: Connection) {
        if !connection.is_autocommit() {
            return;
        }
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < MAX_READERS
        {
            idle.push(connection);
        }
    }

    fn open(&self) -> rusqlite::Result<Connection> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let connection = Connection::open_with_flags(&self.path, flags)?;
        connection.busy_timeout(self.busy_timeout)?;
        Ok(connection)
    }

    /// [`crate::store::MessageStore::page`]: the page, its reactions and its pins in one read
    /// transaction.
    pub(super) async fn page(
        self: &Arc<Self>,
        guild_id: &GuildId,
        channel_id: &ChannelId,
        query: &MessageQuery,
        viewer: &UserId,
    ) -> Result<MessagePage, sqlx::Error> {
        let (guild, channel, viewer) =
            (guild_id.to_string(), channel_id.to_string(), viewer.to_string());
        let query = query.clone();
        self.run(move |connection| read_page(connection, &guild, &channel, &query, &viewer)).await
    }
}

fn read_page(
    connection: &Connection,
    guild: &str,
    channel: &str,
    query: &MessageQuery,
    viewer: &str,
) -> rusqlite::Result<MessagePage> {
    // One snapshot for the three reads.
    let transaction = connection.unchecked_transaction()?;
    let (sql, bounds) = page_sql(query);
    let mut statement = transaction.prepare_cached(&sql)?;
    let texts = [guild, channel].map(|text| Value::Text(text.to_owned()));
    let values = texts.into_iter().chain(bounds.into_iter().map(Value::Integer));
    let mut rows = statement
        .query_map(params_from_iter(values), message_from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    drop(statement);
    if query.oldest_first() {
        rows.reverse();
    }
    if rows.is_empty() {
        return Ok(MessagePage::default());
    }
    let marks = vec!["?"; rows.len()].join(", ");
    let ids = || rows.iter().map(|row| row.message_id.as_str());
    let reactions = transaction
        .prepare_cached(&format!(
            "SELECT message_id, emoji, COUNT(*), MAX(user_id = ?), MIN(seq) AS first
             FROM reactions WHERE guild_id = ? AND message_id IN ({marks})
             GROUP BY message_id, emoji ORDER BY first"
        ))?
        .query_map(params_from_iter([viewer, guild].into_iter().chain(ids())), |row| {
            Ok(ReactionCount {
                message_id: parsed(row, 0, EventId::parse)?,
                emoji: row.get(1)?,
                count: to_u64(row.get(2)?),
                me: row.get(3)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let pinned = transaction
        .prepare_cached(&format!(
            "SELECT message_id FROM pins WHERE guild_id = ? AND message_id IN ({marks})"
        ))?
        .query_map(params_from_iter([guild].into_iter().chain(ids())), |row| {
            parsed(row, 0, EventId::parse)
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(MessagePage { rows, reactions, pinned })
}

/// The page query for `query` and its bound values after the guild and the channel. Each bound
/// is in the SQL only when given, so that SQLite ranges over the index (`guild_id, channel_id,
/// created_seq`) instead of filtering a whole channel's rows.
fn page_sql(query: &MessageQuery) -> (String, Vec<i64>) {
    let mut sql = String::from(
        "SELECT * FROM messages WHERE deleted = 0 AND guild_id = ? AND channel_id = ?",
    );
    let mut bounds = Vec::new();
    if let Some(before) = query.before_seq {
        sql.push_str(" AND created_seq < ?");
        bounds.push(to_i64(before));
    }
    if let Some(after) = query.after_seq {
        sql.push_str(" AND created_seq > ?");
        bounds.push(to_i64(after));
    }
    sql.push_str(if query.oldest_first() {
        " ORDER BY created_seq ASC LIMIT ?"
    } else {
        " ORDER BY created_seq DESC LIMIT ?"
    });
    bounds.push(i64::from(query.limit));
    (sql, bounds)
}

/// A `messages` row, decoded as the sqlx engine decodes it.
fn message_from_row(row: &Row<'_>) -> rusqlite::Result<MessageRow> {
    let mentions: String = row.get("mentions")?;
    let attachments: Option<String> = row.get("attachments")?;
    let reply_to: Option<String> = row.get("reply_to")?;
    let edited_ts: Option<i64> = row.get("edited_ts")?;
    Ok(MessageRow {
        message_id: parsed(row, "message_id", EventId::parse)?,
        guild_id: parsed(row, "guild_id", GuildId::parse)?,
        channel_id: parsed(row, "channel_id", ChannelId::parse)?,
        author: parsed(row, "author", UserId::parse)?,
        body: row.get("body")?,
        reply_to: reply_to.and_then(|id| EventId::parse(&id).ok()),
        mentions: serde_json::from_str(&mentions).unwrap_or_default(),
        created_seq: to_u64(row.get("created_seq")?),
        created_ts: to_u64(row.get("created_ts")?),
        edited_ts: edited_ts.map(to_u64),
        deleted: row.get("deleted")?,
        attachments: attachments
            .and_then(|json| serde_json::from_str::<Vec<MediaId>>(&json).ok())
            .unwrap_or_default(),
    })
}

/// A text column parsed into an id; a malformed one is a conversion error.
fn parsed<I: rusqlite::RowIndex + Copy, T, E: std::error::Error + Send + Sync + 'static>(
    row: &Row<'_>,
    index: I,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> rusqlite::Result<T> {
    let text: String = row.get(index)?;
    parse(&text).map_err(|e| {
        let column = index.idx(row.as_ref()).unwrap_or_default();
        rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Text, Box::new(e))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every page shape is a range over the channel's index, never a scan of its messages.
    #[tokio::test]
    async fn every_page_shape_ranges_over_the_index() {
        let dir = std::env::temp_dir().join(format!("guildhall-direct-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("db.sqlite3");
        super::super::SqliteStore::open(&path).await.unwrap();
        let connection = Connection::open(&path).unwrap();
        let shapes = [(None, None), (Some(500), None), (None, Some(10)), (Some(500), Some(10))];
        for (before_seq, after_seq) in shapes {
            let (sql, bounds) = page_sql(&MessageQuery { before_seq, after_seq, limit: 50 });
            let texts = ["g", "c"].map(|text| Value::Text(text.to_owned()));
            let values = texts.into_iter().chain(bounds.into_iter().map(Value::Integer));
            let mut plan = connection.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            let details: Vec<String> = plan
                .query_map(params_from_iter(values), |row| row.get(3))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            let plan = details.join("; ");
            assert!(plan.contains("USING INDEX messages_channel"), "{plan}");
            if before_seq.is_some() || after_seq.is_some() {
                assert!(plan.contains("created_seq"), "a bound is not in the range: {plan}");
            }
            assert!(!plan.contains("TEMP B-TREE"), "sorted outside the index: {plan}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
