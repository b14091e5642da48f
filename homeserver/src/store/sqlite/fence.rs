//! Group commit for the guild log: one fsync makes every append before it durable.
//!
//! Appends commit on the writer thread's connection ([`super::writer`]) with
//! `synchronous=NORMAL`: the commit is written to the WAL (so this process sees it at once) but
//! not fsynced, and the guild's write lock is released
//! without waiting for the disk. Durability is a fence instead: [`WalFence::durable`] returns
//! once an fsync of the WAL file that *started after* the call has finished. Whoever finds no
//! fsync running starts one; everyone arriving meanwhile waits for it, then finds it covered
//! them or starts the next, which covers all of them together. Under load one fsync carries
//! every append that arrived while the previous one ran (group commit); a lone writer pays one
//! fsync, as before.
//!
//! The rule that makes this safe is the one database systems call early lock release: nothing
//! leaves the process before it is durable. Events are published to the gateway only after
//! the fence (`GuildService::settle`), every HTTP response waits for it
//! (`api::durable_responses`), and so do the delivery worker before it sends a batch and the
//! gateway before its handshake. A process crash loses nothing (the WAL's writes are in the
//! kernel's page cache); a power loss can lose appends no one outside the process has seen,
//! which SQLite's recovery drops as a clean suffix of the WAL.
//!
//! fsync applies to a file, not to a descriptor, so opening the WAL by name and calling
//! `fdatasync` flushes what SQLite's own connection wrote. A failed fsync cannot be retried
//! (Linux may already have dropped the dirty pages): like PostgreSQL, the server stops.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Counts appends and fsyncs, to tell when what was committed is on disk.
#[derive(Debug)]
pub(super) struct WalFence {
    wal: PathBuf,
    /// The WAL, opened once and kept: a write-back error is reported to every descriptor open
    /// when it happens, and one opened later would miss an error another connection's fsync
    /// already saw.
    wal_file: std::sync::OnceLock<std::sync::Arc<std::fs::File>>,
    /// Appends whose commit has started. Whatever another connection can read was counted here
    /// before it became readable.
    begun: AtomicU64,
    /// Appends whose commit has returned.
    committed: AtomicU64,
    /// The `committed` count read when the last finished fsync started: all of those are on
    /// disk.
    durable: AtomicU64,
    /// fsyncs started and finished, numbered from 1; written only under `flushing`.
    syncs_started: AtomicU64,
    syncs_finished: AtomicU64,
    /// Held by the task running an fsync; the others queue behind it.
    flushing: tokio::sync::Mutex<()>,
}

impl WalFence {
    /// The fence of the database at `database` (its WAL is `<database>-wal`, beside the file
    /// the path resolves to: SQLite names it after the resolved path).
    pub(super) fn new(database: &Path) -> Self {
        let database = std::fs::canonicalize(database).unwrap_or_else(|_| database.to_owned());
        let mut wal = database.into_os_string();
        wal.push("-wal");
        Self {
            wal: PathBuf::from(wal),
            wal_file: std::sync::OnceLock::new(),
            begun: AtomicU64::new(0),
            committed: AtomicU64::new(0),
            durable: AtomicU64::new(0),
            syncs_started: AtomicU64::new(0),
            syncs_finished: AtomicU64::new(0),
            flushing: tokio::sync::Mutex::new(()),
        }
    }

    /// Runs an append's `commit` (on the writer thread), counting it.
    pub(super) fn commit<T>(&self, commit: impl FnOnce() -> T) -> T {
        self.begun.fetch_add(1, Ordering::SeqCst);
        // Counted when the commit returns or unwinds (its outcome then unknown), so that
        // `begun` never stays ahead for good.
        let _count = Committed(&self.committed);
        commit()
    }

    /// Whether every append committed so far is known to be on disk.
    pub(super) fn settled(&self) -> bool {
        // `begun` is read first: everything it counts was committed before the fsync that
        // `durable` records started.
        self.begun.load(Ordering::SeqCst) <= self.durable.load(Ordering::SeqCst)
    }

    /// Returns once every append committed before the call is on disk.
    pub(super) async fn durable(&self) -> Result<(), sqlx::Error> {
        if self.settled() {
            return Ok(());
        }
        // An fsync numbered above this one starts after the call, so it covers every commit
        // that returned before it.
        let before_call = self.syncs_started.load(Ordering::SeqCst);
        let _flushing = self.flushing.lock().await;
        if self.settled() || self.syncs_finished.load(Ordering::SeqCst) > before_call {
            return Ok(());
        }
        let number = self.syncs_started.fetch_add(1, Ordering::SeqCst) + 1;
        let covers = self.committed.load(Ordering::SeqCst);
        let wal = match self.wal_file.get() {
            Some(file) => Some(std::sync::Arc::clone(file)),
            None => match std::fs::File::open(&self.wal) {
                Ok(file) => Some(std::sync::Arc::clone(self.wal_file.get_or_init(|| file.into()))),
                // None yet: SQLite removes the WAL only after checkpointing it into the (synced)
                // database file, so nothing is waiting in one.
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
                Err(error) => return Err(sqlx::Error::Io(error)),
            },
        };
        let synced =
            tokio::task::spawn_blocking(move || wal.map_or(Ok(()), |file| file.sync_data()))
                .await
                .map_err(|error| sqlx::Error::Io(std::io::Error::other(error)))?;
        if let Err(error) = synced {
            tracing::error!(%error, wal = %self.wal.display(), "fsync of the WAL failed; stopping, since what it held may be lost");
            std::process::abort();
        }
        self.durable.fetch_max(covers, Ordering::SeqCst);
        self.syncs_finished.store(number, Ordering::SeqCst);
        Ok(())
    }

    /// How many fsyncs have finished.
    #[cfg(test)]
    pub(super) fn syncs(&self) -> u64 {
        self.syncs_finished.load(Ordering::SeqCst)
    }
}

/// Counts a commit once it is over, however it ended.
struct Committed<'a>(&'a AtomicU64);

impl Drop for Committed<'_> {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::WalFence;

    /// A fence over a WAL file of its own, in a directory removed when the test ends.
    fn fence(test: &str) -> (Directory, Arc<WalFence>) {
        let dir = Directory::new(test);
        std::fs::write(dir.0.join("fence.db-wal"), b"frames").expect("a WAL file");
        let fence = Arc::new(WalFence::new(&dir.0.join("fence.db")));
        (dir, fence)
    }

    struct Directory(std::path::PathBuf);

    impl Directory {
        fn new(test: &str) -> Self {
            let path =
                std::env::temp_dir().join(format!("guildhall-fence-{test}-{}", std::process::id()));
            std::fs::create_dir_all(&path).expect("temporary directory");
            Self(path)
        }
    }

    impl Drop for Directory {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[tokio::test]
    async fn an_append_is_settled_only_after_an_fsync() {
        let (_dir, fence) = fence("settled");
        assert!(fence.settled(), "nothing appended yet");
        fence.commit(|| ());
        assert!(!fence.settled(), "committed, not yet synced");
        fence.durable().await.expect("fsync");
        assert_eq!(fence.syncs(), 1);
        assert!(fence.settled());
        fence.durable().await.expect("nothing new");
        assert_eq!(fence.syncs(), 1, "nothing new to sync");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writers_waiting_together_share_one_fsync() {
        let (_dir, fence) = fence("shared");
        for _ in 0..64 {
            fence.commit(|| ());
        }
        let waiters: Vec<_> = (0..64)
            .map(|_| {
                let fence = Arc::clone(&fence);
                tokio::spawn(async move { fence.durable().await })
            })
            .collect();
        for waiter in waiters {
            waiter.await.expect("waiter").expect("fsync");
        }
        assert!(fence.settled());
        assert_eq!(fence.syncs(), 1, "one fsync covers every commit before it");
    }

    #[tokio::test]
    async fn a_commit_that_panics_does_not_hold_the_fence_open() {
        let (_dir, fence) = fence("unwound");
        let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            fence.commit(|| panic!("a commit that never returns"))
        }));
        assert!(unwound.is_err());
        fence.durable().await.expect("fsync");
        assert!(fence.settled(), "an unwound commit counts as over");
    }

    #[tokio::test]
    async fn a_missing_wal_holds_nothing_to_sync() {
        let dir = Directory::new("missing");
        let fence = WalFence::new(&dir.0.join("absent.db"));
        fence.commit(|| ());
        fence.durable().await.expect("no WAL is no error");
        assert!(fence.settled());
    }
}
