//! End-to-end encryption records (spec 17): published keys, to-device inboxes, idempotent send
//! answers and device-list watchers. The server stores ciphertext and public keys only.

use guildhall_spec::UserId;
use serde_json::Value;
use sqlx::Row;

use super::{Store, now_ms, to_i64, to_u64};

/// A message waiting in a device's inbox.
#[derive(Debug, Clone)]
pub struct InboxItem {
    /// Its position in the inbox.
    pub id: i64,
    /// The sending user.
    pub sender: String,
    /// The sending device.
    pub sender_device: String,
    /// The sender's id for the message.
    pub message_id: String,
    /// `olm.v1`.
    pub message_type: String,
    /// The ciphertext object.
    pub content: Value,
    /// When this server stored it.
    pub received_ts: u64,
}

/// A message to store: target device, sender device, id, type, content.
#[derive(Debug, Clone)]
pub struct NewInboxItem {
    /// The target user (local).
    pub user_id: UserId,
    /// The target device.
    pub device_id: String,
    /// The sending user.
    pub sender: UserId,
    /// The sending device.
    pub sender_device: String,
    /// The sender's id for the message.
    pub message_id: String,
    /// `olm.v1`.
    pub message_type: String,
    /// The ciphertext object.
    pub content: Value,
}

/// What a claim handed out for one device.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// The signed key object.
    pub key_object: Value,
    /// One-time keys the device has left.
    pub remaining: i64,
    /// Whether the fallback key was handed out (no one-time key was left).
    pub fallback: bool,
}

/// A stored send answer.
#[derive(Debug, Clone)]
pub struct TxnAnswer {
    /// The hash of the request it answered.
    pub request_hash: String,
    /// The answer.
    pub result: Value,
}

/// How long send answers are kept for replays.
const TXN_RETENTION_MS: u64 = 24 * 60 * 60 * 1000;

/// How long a watcher is told of device-list changes after it last asked.
const WATCH_MS: u64 = 30 * 24 * 60 * 60 * 1000;

impl Store {
    /// Stores one-time keys and, if given, the fallback key of a device, all or none, and
    /// returns the device's unclaimed key count and whether it has a fallback key.
    pub async fn put_device_keys(
        &self,
        user_id: &UserId,
        device_id: &str,
        one_time_keys: &[(String, Value)],
        fallback: Option<&Value>,
        max_unclaimed: i64,
    ) -> Result<Result<(i64, bool), KeysRefused>, sqlx::Error> {
        let mut tx = self.write().await?;
        for (key_id, object) in one_time_keys {
            let held: Option<String> = sqlx::query_scalar(
                "SELECT key_object FROM one_time_keys
                 WHERE user_id = ? AND device_id = ? AND key_id = ?",
            )
            .bind(user_id.as_str())
            .bind(device_id)
            .bind(key_id)
            .fetch_optional(&mut *tx)
            .await?;
            match held {
                Some(held)
                    if serde_json::from_str::<Value>(&held).ok().as_ref() == Some(object) => {}
                Some(_) => return Ok(Err(KeysRefused::Conflict(key_id.clone()))),
                None => {
                    sqlx::query(
                        "INSERT INTO one_time_keys (user_id, device_id, key_id, key_object)
                         VALUES (?, ?, ?, ?)",
                    )
                    .bind(user_id.as_str())
                    .bind(device_id)
                    .bind(key_id)
                    .bind(object.to_string())
                    .execute(&mut *tx)
                    .await?;
                }
            }
        }
        let count = count_keys(&mut tx, user_id, device_id).await?;
        // Dropping the transaction rolls the upload back.
        if count > max_unclaimed {
            return Ok(Err(KeysRefused::TooMany));
        }
        if let Some(fallback) = fallback {
            sqlx::query(
                "INSERT INTO fallback_keys (user_id, device_id, key_object) VALUES (?, ?, ?)
                 ON CONFLICT (user_id, device_id) DO UPDATE SET key_object = excluded.key_object",
            )
            .bind(user_id.as_str())
            .bind(device_id)
            .bind(fallback.to_string())
            .execute(&mut *tx)
            .await?;
        }
        let has_fallback = has_fallback(&mut tx, user_id, device_id).await?;
        tx.commit().await?;
        Ok(Ok((count, has_fallback)))
    }

    /// Removes and returns one one-time key of a device, or returns its fallback key when none
    /// is left; `None` when it has neither. Atomic: a key is never handed out twice.
    pub async fn claim_key(
        &self,
        user_id: &UserId,
        device_id: &str,
    ) -> Result<Option<Claimed>, sqlx::Error> {
        let mut tx = self.write().await?;
        // `DELETE … RETURNING` removes the key in the same statement that reads it.
        let taken: Option<String> = sqlx::query_scalar(
            "DELETE FROM one_time_keys WHERE rowid = (
                 SELECT rowid FROM one_time_keys WHERE user_id = ? AND device_id = ?
                 ORDER BY key_id LIMIT 1)
             RETURNING key_object",
        )
        .bind(user_id.as_str())
        .bind(device_id)
        .fetch_optional(&mut *tx)
        .await?;
        let (object, fallback) = match taken {
            Some(object) => (object, false),
            None => {
                let fallback: Option<String> = sqlx::query_scalar(
                    "SELECT key_object FROM fallback_keys WHERE user_id = ? AND device_id = ?",
                )
                .bind(user_id.as_str())
                .bind(device_id)
                .fetch_optional(&mut *tx)
                .await?;
                match fallback {
                    Some(object) => (object, true),
                    None => return Ok(None),
                }
            }
        };
        let remaining = count_keys(&mut tx, user_id, device_id).await?;
        tx.commit().await?;
        let key_object =
            serde_json::from_str(&object).map_err(|e| sqlx::Error::Decode(e.into()))?;
        Ok(Some(Claimed { key_object, remaining, fallback }))
    }

    /// Forgets a device's one-time and fallback keys (its Curve25519 key changed).
    pub async fn drop_device_keys(
        &self,
        user_id: &UserId,
        device_id: &str,
    ) -> Result<(), sqlx::Error> {
        let mut tx = self.write().await?;
        for statement in [
            "DELETE FROM one_time_keys WHERE user_id = ? AND device_id = ?",
            "DELETE FROM fallback_keys WHERE user_id = ? AND device_id = ?",
        ] {
            sqlx::query(statement).bind(user_id.as_str()).bind(device_id).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Unclaimed one-time keys of a device, and whether it has a fallback key.
    pub async fn key_counts(
        &self,
        user_id: &UserId,
        device_id: &str,
    ) -> Result<(i64, bool), sqlx::Error> {
        let mut connection = self.pool.acquire().await?;
        let count = count_keys(&mut connection, user_id, device_id).await?;
        let fallback = has_fallback(&mut connection, user_id, device_id).await?;
        Ok((count, fallback))
    }

    /// Stores messages in their devices' inboxes in one transaction; a message stored before
    /// (same target device, sender device and message id) is kept as it was. Returns the inbox
    /// items as stored, for live delivery.
    pub async fn put_inbox(
        &self,
        items: &[NewInboxItem],
    ) -> Result<Vec<(NewInboxItem, InboxItem)>, sqlx::Error> {
        let mut tx = self.write().await?;
        let mut stored = Vec::with_capacity(items.len());
        let now = now_ms();
        for item in items {
            let inserted = sqlx::query(
                "INSERT INTO to_device_inbox (user_id, device_id, sender, sender_device,
                     message_id, message_type, content, received_ts)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                 ON CONFLICT (user_id, device_id, sender, sender_device, message_id) DO NOTHING",
            )
            .bind(item.user_id.as_str())
            .bind(&item.device_id)
            .bind(item.sender.as_str())
            .bind(&item.sender_device)
            .bind(&item.message_id)
            .bind(&item.message_type)
            .bind(item.content.to_string())
            .bind(to_i64(now))
            .execute(&mut *tx)
            .await?;
            if inserted.rows_affected() == 1 {
                stored.push((
                    item.clone(),
                    InboxItem {
                        id: inserted.last_insert_rowid(),
                        sender: item.sender.to_string(),
                        sender_device: item.sender_device.clone(),
                        message_id: item.message_id.clone(),
                        message_type: item.message_type.clone(),
                        content: item.content.clone(),
                        received_ts: now,
                    },
                ));
            }
        }
        tx.commit().await?;
        Ok(stored)
    }

    /// The oldest `limit` messages of a device's inbox, and whether more wait.
    pub async fn inbox(
        &self,
        user_id: &UserId,
        device_id: &str,
        limit: i64,
    ) -> Result<(Vec<InboxItem>, bool), sqlx::Error> {
        let rows = sqlx::query(
            "SELECT id, sender, sender_device, message_id, message_type, content, received_ts
             FROM to_device_inbox WHERE user_id = ? AND device_id = ? ORDER BY id LIMIT ?",
        )
        .bind(user_id.as_str())
        .bind(device_id)
        .bind(limit + 1)
        .fetch_all(&self.pool)
        .await?;
        let more = i64::try_from(rows.len()).unwrap_or(i64::MAX) > limit;
        let items = rows
            .iter()
            .take(usize::try_from(limit).unwrap_or(0))
            .map(|row| {
                let content: String = row.try_get("content")?;
                Ok(InboxItem {
                    id: row.try_get("id")?,
                    sender: row.try_get("sender")?,
                    sender_device: row.try_get("sender_device")?,
                    message_id: row.try_get("message_id")?,
                    message_type: row.try_get("message_type")?,
                    content: serde_json::from_str(&content)
                        .map_err(|e| sqlx::Error::Decode(e.into()))?,
                    received_ts: to_u64(row.try_get("received_ts")?),
                })
            })
            .collect::<Result<_, sqlx::Error>>()?;
        Ok((items, more))
    }

    /// Deletes a device's inbox messages up to and including `up_to`.
    pub async fn ack_inbox(
        &self,
        user_id: &UserId,
        device_id: &str,
        up_to: i64,
    ) -> Result<u64, sqlx::Error> {
        let done = sqlx::query(
            "DELETE FROM to_device_inbox WHERE user_id = ? AND device_id = ? AND id <= ?",
        )
        .bind(user_id.as_str())
        .bind(device_id)
        .bind(up_to)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// The stored answer to a send, if it is still kept.
    pub async fn txn_answer(
        &self,
        scope: &str,
        txn_id: &str,
    ) -> Result<Option<TxnAnswer>, sqlx::Error> {
        let row = sqlx::query(
            "SELECT request_hash, result FROM to_device_txns
             WHERE scope = ? AND txn_id = ? AND created_ts > ?",
        )
        .bind(scope)
        .bind(txn_id)
        .bind(to_i64(now_ms().saturating_sub(TXN_RETENTION_MS)))
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            let result: String = row.try_get("result")?;
            Ok(TxnAnswer {
                request_hash: row.try_get("request_hash")?,
                result: serde_json::from_str(&result).map_err(|e| sqlx::Error::Decode(e.into()))?,
            })
        })
        .transpose()
    }

    /// Keeps the answer to a send (the first one stands), and forgets expired ones.
    pub async fn put_txn_answer(
        &self,
        scope: &str,
        txn_id: &str,
        request_hash: &str,
        result: &Value,
    ) -> Result<(), sqlx::Error> {
        let now = now_ms();
        sqlx::query("DELETE FROM to_device_txns WHERE created_ts <= ?")
            .bind(to_i64(now.saturating_sub(TXN_RETENTION_MS)))
            .execute(&self.pool)
            .await?;
        sqlx::query(
            "INSERT INTO to_device_txns (scope, txn_id, request_hash, result, created_ts)
             VALUES (?, ?, ?, ?, ?)
             ON CONFLICT (scope, txn_id) DO UPDATE SET request_hash = excluded.request_hash,
                 result = excluded.result, created_ts = excluded.created_ts",
        )
        .bind(scope)
        .bind(txn_id)
        .bind(request_hash)
        .bind(result.to_string())
        .bind(to_i64(now))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records the last device-list hash told of; `true` when it differs from the one before.
    pub async fn swap_device_list_hash(
        &self,
        user_id: &UserId,
        hash: &str,
    ) -> Result<bool, sqlx::Error> {
        let before: Option<String> =
            sqlx::query_scalar("SELECT hash FROM device_lists WHERE user_id = ?")
                .bind(user_id.as_str())
                .fetch_optional(&self.pool)
                .await?;
        if before.as_deref() == Some(hash) {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO device_lists (user_id, hash) VALUES (?, ?)
             ON CONFLICT (user_id) DO UPDATE SET hash = excluded.hash",
        )
        .bind(user_id.as_str())
        .bind(hash)
        .execute(&self.pool)
        .await?;
        Ok(true)
    }

    /// Remembers that `watcher` asked for the keys of `users`, in one transaction.
    pub async fn watch_device_lists(
        &self,
        users: &[UserId],
        watcher: &str,
    ) -> Result<(), sqlx::Error> {
        if users.is_empty() {
            return Ok(());
        }
        let mut tx = self.write().await?;
        let now = to_i64(now_ms());
        for user_id in users {
            sqlx::query(
                "INSERT INTO device_list_watchers (user_id, watcher, updated_ts) VALUES (?, ?, ?)
                 ON CONFLICT (user_id, watcher) DO UPDATE SET updated_ts = excluded.updated_ts",
            )
            .bind(user_id.as_str())
            .bind(watcher)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await
    }

    /// Messages waiting in a device's inbox.
    pub async fn inbox_len(&self, user_id: &UserId, device_id: &str) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar(
            "SELECT COUNT(*) FROM to_device_inbox WHERE user_id = ? AND device_id = ?",
        )
        .bind(user_id.as_str())
        .bind(device_id)
        .fetch_one(&self.pool)
        .await
    }

    /// Who asked for `user_id`'s keys within the watch period (and forgets the others).
    pub async fn device_list_watchers(&self, user_id: &UserId) -> Result<Vec<String>, sqlx::Error> {
        let since = to_i64(now_ms().saturating_sub(WATCH_MS));
        sqlx::query("DELETE FROM device_list_watchers WHERE user_id = ? AND updated_ts <= ?")
            .bind(user_id.as_str())
            .bind(since)
            .execute(&self.pool)
            .await?;
        sqlx::query_scalar("SELECT watcher FROM device_list_watchers WHERE user_id = ?")
            .bind(user_id.as_str())
            .fetch_all(&self.pool)
            .await
    }
}

/// Why an upload stored nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeysRefused {
    /// This key id was uploaded before with another object.
    Conflict(String),
    /// The device would hold more unclaimed one-time keys than allowed.
    TooMany,
}

async fn count_keys(
    connection: &mut sqlx::SqliteConnection,
    user_id: &UserId,
    device_id: &str,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COUNT(*) FROM one_time_keys WHERE user_id = ? AND device_id = ?")
        .bind(user_id.as_str())
        .bind(device_id)
        .fetch_one(connection)
        .await
}

async fn has_fallback(
    connection: &mut sqlx::SqliteConnection,
    user_id: &UserId,
    device_id: &str,
) -> Result<bool, sqlx::Error> {
    let count: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM fallback_keys WHERE user_id = ? AND device_id = ?",
    )
    .bind(user_id.as_str())
    .bind(device_id)
    .fetch_one(connection)
    .await?;
    Ok(count > 0)
}
