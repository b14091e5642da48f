//! Password hashing (argon2id) off the async workers.
//!
//! Hashing a password costs tens of milliseconds of CPU by design. On an async worker it would
//! stall every other request that worker serves, so it runs on the blocking pool, at most one
//! hash per core at a time; a bounded number of requests may wait for a turn, and past that
//! they are refused (`503 busy`) rather than queued without end.

use std::sync::Arc;

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use axum::http::StatusCode;
use tokio::sync::Semaphore;

use crate::error::{ApiError, ApiResult};

/// Requests that may wait for a hashing turn per hashing thread.
const WAITING_PER_THREAD: usize = 16;

/// The server's password hashing: a few threads, a bounded queue.
#[derive(Debug)]
pub struct Passwords {
    /// Hashes running at once.
    running: Arc<Semaphore>,
    /// Hashes running or waiting.
    admitted: Arc<Semaphore>,
    /// A hash of a random password, verified against when the account does not exist, so that
    /// a login takes as long for an unknown name as for a wrong password. Made on first use, on
    /// the blocking pool like every other hash.
    decoy: Arc<std::sync::OnceLock<String>>,
}

impl Passwords {
    /// Hashing on `threads` blocking threads at most (at least one).
    pub fn new(threads: usize) -> Self {
        let threads = threads.max(1);
        Self {
            running: Arc::new(Semaphore::new(threads)),
            admitted: Arc::new(Semaphore::new(threads * (1 + WAITING_PER_THREAD))),
            decoy: Arc::default(),
        }
    }

    /// One hashing thread per core.
    pub fn per_core() -> Self {
        Self::new(std::thread::available_parallelism().map_or(1, usize::from))
    }

    /// Hashes a password with argon2id and a random salt.
    pub async fn hash(&self, password: &str) -> ApiResult<String> {
        let password = password.to_owned();
        self.run(move || {
            Argon2::default()
                .hash_password(password.as_bytes())
                .map(|hash| hash.to_string())
                .map_err(ApiError::internal)
        })
        .await?
    }

    /// Whether `password` matches `stored`; with no stored hash (no such account) it spends the
    /// same effort and answers `false`.
    pub async fn verify(&self, password: &str, stored: Option<&str>) -> ApiResult<bool> {
        let exists = stored.is_some();
        let stored = stored.map(str::to_owned);
        let decoy = Arc::clone(&self.decoy);
        let password = password.to_owned();
        let matches = self
            .run(move || {
                let stored = stored.as_deref().unwrap_or_else(|| {
                    decoy.get_or_init(|| {
                        Argon2::default()
                            .hash_password(crate::guilds::random_id(32).as_bytes())
                            .map(|hash| hash.to_string())
                            .unwrap_or_default()
                    })
                });
                PasswordHash::new(stored).is_ok_and(|hash| {
                    Argon2::default().verify_password(password.as_bytes(), &hash).is_ok()
                })
            })
            .await?;
        Ok(exists && matches)
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> ApiResult<T> {
        let busy = || {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "too many logins under way; retry shortly",
            )
        };
        let admitted = Arc::clone(&self.admitted).try_acquire_owned().map_err(|_| busy())?;
        let running = Arc::clone(&self.running).acquire_owned().await.map_err(|_| busy())?;
        // The permits travel with the work: if the request is cancelled (the client went away),
        // the hash still running keeps its place until it is done.
        tokio::task::spawn_blocking(move || {
            let _permits = (admitted, running);
            work()
        })
        .await
        .map_err(ApiError::internal)
    }
}
