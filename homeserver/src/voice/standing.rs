//! One lock per (guild, user) that everything changing a user's voice standing on the host takes
//! (spec 18.3, 18.5): moderators' actions, enforcement, what LiveKit's webhooks report. Whoever
//! holds it reads the record and the guild's state, calls LiveKit and records the result, so no
//! two of them interleave and none writes back a state read before another's change.
//!
//! An entry lives only while someone holds or waits for its lock, and the map is bounded: past
//! [`MAX_KEYS`] waiting users, a new one is refused rather than queued.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use guildhall_spec::{GuildId, UserId};
use tokio::sync::OwnedMutexGuard;

/// The most (guild, user) pairs with a holder or waiter at once.
pub const MAX_KEYS: usize = 4096;

type Key = (GuildId, UserId);
type Locks = Mutex<HashMap<Key, Arc<tokio::sync::Mutex<()>>>>;

/// The locks of the (guild, user) pairs someone is acting on.
#[derive(Debug, Default)]
pub struct Standings {
    locks: Arc<Locks>,
}

/// Too many users are being acted on at once.
#[derive(Debug, thiserror::Error)]
#[error("too many voice users are being acted on at once")]
pub struct Busy;

/// Held while acting on one (guild, user); the entry goes when nobody else waits for it.
#[derive(Debug)]
pub struct Standing {
    guard: Option<OwnedMutexGuard<()>>,
    key: Key,
    locks: Arc<Locks>,
}

impl Standings {
    /// Waits for the lock of (`guild_id`, `user_id`).
    pub async fn lock(&self, guild_id: &GuildId, user_id: &UserId) -> Result<Standing, Busy> {
        let key = (guild_id.clone(), user_id.clone());
        let lock = {
            let mut locks = self.locks.lock().map_err(|_| Busy)?;
            match locks.get(&key) {
                Some(lock) => Arc::clone(lock),
                None if locks.len() >= MAX_KEYS => return Err(Busy),
                None => Arc::clone(locks.entry(key.clone()).or_default()),
            }
        };
        let guard = lock.lock_owned().await;
        Ok(Standing { guard: Some(guard), key, locks: Arc::clone(&self.locks) })
    }

    /// How many pairs have a holder or waiter (for tests and metrics).
    pub fn len(&self) -> usize {
        self.locks.lock().map(|locks| locks.len()).unwrap_or_default()
    }

    /// Whether nobody is being acted on.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for Standing {
    fn drop(&mut self) {
        drop(self.guard.take());
        let Ok(mut locks) = self.locks.lock() else { return };
        // Only the map holds it now: nobody waits (a waiter clones it under this map's lock).
        if locks.get(&self.key).is_some_and(|lock| Arc::strong_count(lock) == 1) {
            locks.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_holder_per_pair_and_no_entry_left_behind() {
        let standings = Arc::new(Standings::default());
        let guild: GuildId = "!g:a.example".parse().unwrap();
        let user: UserId = "@u:a.example".parse().unwrap();
        let first = standings.lock(&guild, &user).await.unwrap();
        let waiting = {
            let (standings, guild, user) = (standings.clone(), guild.clone(), user.clone());
            tokio::spawn(async move { standings.lock(&guild, &user).await.map(drop) })
        };
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        assert_eq!(standings.len(), 1);
        drop(first);
        waiting.await.unwrap().unwrap();
        assert!(standings.is_empty());
    }
}
