//! Guild appends on SQLite in one hop.
//!
//! An append is six to a dozen statements in one transaction. Through sqlx each statement is a
//! round trip to the connection's own thread (a channel send, a futex wake, a context switch:
//! 50–250 µs each on a busy 2-core machine), all of it under the guild write lock: 0.9 ms of
//! the lock's ~1 ms per send was spent handing statements over (bench/README.md). Here the
//! whole transaction is one closure run by a thread that owns a `rusqlite` connection to the
//! same file, so an append costs one hop there and one back, and SQLite's own work.
//!
//! Every other write still goes through sqlx; the two take SQLite's write lock in turn (each
//! transaction begins `IMMEDIATE` and waits up to the busy timeout for it).

use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};

use super::fence::WalFence;

/// Writes queued for the writer thread before senders wait for room (each sender holds the
/// guild write lock or is one of the few other writers, so the queue stays short).
const QUEUE: usize = 64;

/// Prepared statements kept by the writer's connection (an append uses about a dozen).
const STATEMENT_CACHE: usize = 64;

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// The writer thread's inbox; the thread ends when the store (every clone) is dropped.
#[derive(Debug)]
pub(super) struct Writer {
    jobs: tokio::sync::mpsc::Sender<Job>,
    fence: Arc<WalFence>,
}

impl Writer {
    /// Opens a read-write connection to the (already created and migrated) database and
    /// starts the thread that owns it. Its commits are written to the WAL but not fsynced
    /// (`synchronous=NORMAL`): each is counted by `fence`, which makes them durable together.
    pub(super) fn open(
        path: &Path,
        busy_timeout: Duration,
        fence: Arc<WalFence>,
    ) -> Result<Self, sqlx::Error> {
        let mut connection = open(path, busy_timeout).map_err(to_sqlx)?;
        let (jobs, mut inbox) = tokio::sync::mpsc::channel::<Job>(QUEUE);
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || {
                while let Some(job) = inbox.blocking_recv() {
                    job(&mut connection);
                }
            })
            .map_err(sqlx::Error::Io)?;
        Ok(Self { jobs, fence })
    }

    /// Runs `write` in one `BEGIN IMMEDIATE` transaction on the writer thread and commits it
    /// (visible at once, durable after the fence); an error (or a panic) rolls the whole
    /// transaction back.
    ///
    /// A write whose caller has stopped waiting by the time its turn comes is skipped; once
    /// begun, it runs to its end: a caller that may be cancelled must treat "no answer" as
    /// "maybe committed".
    pub(super) async fn transaction<T: Send + 'static>(
        &self,
        write: impl FnOnce(&Transaction<'_>) -> Result<T, sqlx::Error> + Send + 'static,
    ) -> Result<T, sqlx::Error> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let fence = Arc::clone(&self.fence);
        let job: Job = Box::new(move |connection| {
            // A caller that stopped waiting before its write began (its request cancelled) gets
            // nothing written: it will never cache, publish or answer what it would have
            // appended.
            if reply.is_closed() {
                return;
            }
            let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
                let tx = connection
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(to_sqlx)?;
                let value = write(&tx)?;
                fence.commit(|| tx.commit()).map_err(to_sqlx)?;
                Ok(value)
            }))
            .unwrap_or_else(|_| Err(sqlx::Error::Protocol("a write panicked".into())));
            // The caller may have stopped waiting; the write stands either way.
            let _ = reply.send(result);
        });
        self.jobs.send(job).await.map_err(|_| sqlx::Error::PoolClosed)?;
        answer.await.map_err(|_| sqlx::Error::PoolClosed)?
    }
}

fn open(path: &Path, busy_timeout: Duration) -> rusqlite::Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let connection = Connection::open_with_flags(path, flags)?;
    connection.busy_timeout(busy_timeout)?;
    // journal_mode=WAL is a property of the file. NORMAL: a commit does not wait for the disk;
    // the fence does (and nothing leaves the process before it).
    connection.pragma_update(None, "synchronous", "NORMAL")?;
    connection.pragma_update(None, "foreign_keys", true)?;
    connection.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(connection)
}

/// A `rusqlite` error as the store's error type.
pub(super) fn to_sqlx(error: rusqlite::Error) -> sqlx::Error {
    sqlx::Error::Protocol(format!("sqlite: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_failed_or_panicking_write_leaves_nothing_and_the_writer_goes_on() {
        let dir = std::env::temp_dir().join(format!("guildhall-writer-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("db.sqlite3");
        let _ = std::fs::remove_file(&path);
        Connection::open(&path).unwrap().execute_batch("CREATE TABLE t (v INTEGER)").unwrap();
        let fence = Arc::new(WalFence::new(&path));
        let writer = Writer::open(&path, Duration::from_secs(1), Arc::clone(&fence)).unwrap();
        fn insert(v: i64) -> impl Fn(&Transaction<'_>) -> Result<usize, sqlx::Error> {
            move |tx| tx.execute("INSERT INTO t (v) VALUES (?)", [v]).map_err(to_sqlx)
        }
        writer.transaction(insert(1)).await.unwrap();
        let failed = writer
            .transaction(|tx| {
                insert(2)(tx)?;
                Err::<(), _>(sqlx::Error::RowNotFound)
            })
            .await;
        assert!(failed.is_err());
        let panicked: Result<(), _> = writer
            .transaction(|tx| {
                insert(3)(tx)?;
                panic!("a bug in a write");
            })
            .await;
        assert!(matches!(panicked, Err(sqlx::Error::Protocol(_))));
        writer.transaction(insert(4)).await.unwrap();
        let values: Vec<i64> = writer
            .transaction(|tx| {
                let mut statement = tx.prepare("SELECT v FROM t ORDER BY v").map_err(to_sqlx)?;
                let rows = statement.query_map([], |row| row.get(0)).map_err(to_sqlx)?;
                rows.collect::<Result<_, _>>().map_err(to_sqlx)
            })
            .await
            .unwrap();
        assert_eq!(values, [1, 4]);
        assert!(!fence.settled(), "committed, not yet durable");
        fence.durable().await.unwrap();
        assert!(fence.settled());
        let _ = std::fs::remove_dir_all(dir);
    }
}
