//! e2e: the PostgreSQL implementation of [`E2eStore`].

use super::PostgresStore;
use crate::store::e2e::{
    Claimed, E2eStore, InboxItem, InboxLimits, InboxShare, KeysRefused, Reservation, ShareOutcome,
};
use crate::store::{now_ms, to_i64, to_u64};
use guildhall_spec::UserId;
use serde_json::Value;
use sqlx::{PgConnection, Row};

/// How long send answers are kept for replays.
const TXN_RETENTION_MS: u64 = 24 * 60 * 60 * 1000;

/// How long the ids of claimed one-time keys are remembered (a retried upload comes sooner).
const CLAIMED_RETENTION_MS: u64 = 7 * 24 * 60 * 60 * 1000;

/// A reservation of a send's transaction id older than this was abandoned (its server stopped
/// while working on it) and may be taken over.
const TXN_ABANDONED_MS: u64 = 2 * 60 * 1000;

/// How long a watcher is told of device-list changes after it last asked.
const WATCH_MS: u64 = 30 * 24 * 60 * 60 * 1000;

/// A device row as far as delivery cares: id, login, certificate as stored.
type DeviceRowKey = (String, String, String);

async fn device_rows(
    connection: &mut PgConnection,
    user_id: &UserId,
) -> Result<Vec<DeviceRowKey>, sqlx::Error> {
    sqlx::query_as(
        "SELECT device_id, session_id, certificate FROM devices WHERE user_id = $1 ORDER BY device_id",
    )
    .bind(user_id.as_str())
    .fetch_all(connection)
    .await
}

/// See [`Store::device_fingerprint`].
fn device_rows_fingerprint(rows: &[DeviceRowKey]) -> String {
    use sha2::Digest as _;
    let mut hasher = sha2::Sha256::new();
    for (device_id, login, certificate) in rows {
        for part in [device_id, login, certificate] {
            hasher.update(part.len().to_be_bytes());
            hasher.update(part.as_bytes());
        }
    }
    guildhall_spec::base64url::encode(hasher.finalize())
}

async fn inbox_full(
    connection: &mut PgConnection,
    share: &InboxShare,
    limits: InboxLimits,
) -> Result<bool, sqlx::Error> {
    for item in &share.items {
        let (all, from_sender): (i64, i64) = sqlx::query_as(
            "SELECT COUNT(*), COUNT(*) FILTER (WHERE sender = $1) FROM to_device_inbox
             WHERE user_id = $2 AND device_id = $3",
        )
        .bind(item.sender.as_str())
        .bind(share.user_id.as_str())
        .bind(&item.device_id)
        .fetch_one(&mut *connection)
        .await?;
        if all + 1 > limits.per_device || from_sender + 1 > limits.per_sender {
            return Ok(true);
        }
    }
    Ok(false)
}

async fn count_keys(
    connection: &mut PgConnection,
    user_id: &UserId,
    device_id: &str,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COUNT(*) FROM one_time_keys WHERE user_id = $1 AND device_id = $2")
        .bind(user_id.as_str())
        .bind(device_id)
        .fetch_one(connection)
        .await
}

async fn has_fallback(
    connection: &mut PgConnection,
    user_id: &UserId,
    device_id: &str,
) -> Result<bool, sqlx::Error> {
    let count: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM fallback_keys WHERE user_id = $1 AND device_id = $2",
    )
    .bind(user_id.as_str())
    .bind(device_id)
    .fetch_one(connection)
    .await?;
    Ok(count > 0)
}

#[async_trait::async_trait]
impl E2eStore for PostgresStore {
    async fn put_device_keys(
        &self,
        user_id: &UserId,
        device_id: &str,
        signed_by: &str,
        one_time_keys: &[(String, Value)],
        fallback: Option<&Value>,
        max_unclaimed: i64,
    ) -> Result<Result<(i64, bool), KeysRefused>, sqlx::Error> {
        let mut tx = self.write().await?;
        let certificate: Option<String> = sqlx::query_scalar(
            "SELECT certificate FROM devices WHERE user_id = $1 AND device_id = $2",
        )
        .bind(user_id.as_str())
        .bind(device_id)
        .fetch_optional(&mut *tx)
        .await?;
        let current_key = certificate
            .and_then(|text| serde_json::from_str::<Value>(&text).ok())
            .and_then(|c| c["device_keys"]["ed25519"].as_str().map(str::to_owned));
        if current_key.as_deref() != Some(signed_by) {
            return Ok(Err(KeysRefused::Rekeyed));
        }
        for (key_id, object) in one_time_keys {
            let claimed: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM claimed_keys
                 WHERE user_id = $1 AND device_id = $2 AND key_id = $3",
            )
            .bind(user_id.as_str())
            .bind(device_id)
            .bind(key_id)
            .fetch_one(&mut *tx)
            .await?;
            if claimed > 0 {
                continue;
            }
            let held: Option<String> = sqlx::query_scalar(
                "SELECT key_object FROM one_time_keys
                 WHERE user_id = $1 AND device_id = $2 AND key_id = $3",
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
                         VALUES ($1, $2, $3, $4)",
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
                "INSERT INTO fallback_keys (user_id, device_id, key_object) VALUES ($1, $2, $3)
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

    async fn claim_key(
        &self,
        user_id: &UserId,
        device_id: &str,
    ) -> Result<Option<Claimed>, sqlx::Error> {
        let mut tx = self.write().await?;
        // `DELETE … RETURNING` removes the key in the same statement that reads it. The write
        // lock already serializes claims; `FOR UPDATE SKIP LOCKED` would keep two concurrent
        // claims on different keys without it.
        let taken: Option<(String, String)> = sqlx::query_as(
            "DELETE FROM one_time_keys WHERE id = (
                 SELECT id FROM one_time_keys WHERE user_id = $1 AND device_id = $2
                 ORDER BY key_id LIMIT 1 FOR UPDATE SKIP LOCKED)
             RETURNING key_id, key_object",
        )
        .bind(user_id.as_str())
        .bind(device_id)
        .fetch_optional(&mut *tx)
        .await?;
        let (object, fallback) = match taken {
            Some((key_id, object)) => {
                let now = now_ms();
                sqlx::query("DELETE FROM claimed_keys WHERE claimed_ts <= $1")
                    .bind(to_i64(now.saturating_sub(CLAIMED_RETENTION_MS)))
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "INSERT INTO claimed_keys (user_id, device_id, key_id, claimed_ts)
                     VALUES ($1, $2, $3, $4)
                     ON CONFLICT (user_id, device_id, key_id)
                     DO UPDATE SET claimed_ts = excluded.claimed_ts",
                )
                .bind(user_id.as_str())
                .bind(device_id)
                .bind(key_id)
                .bind(to_i64(now))
                .execute(&mut *tx)
                .await?;
                (object, false)
            }
            None => {
                let fallback: Option<String> = sqlx::query_scalar(
                    "SELECT key_object FROM fallback_keys WHERE user_id = $1 AND device_id = $2",
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

    async fn key_counts(
        &self,
        user_id: &UserId,
        device_id: &str,
    ) -> Result<(i64, bool), sqlx::Error> {
        let mut connection = self.pool.acquire().await?;
        let count = count_keys(&mut connection, user_id, device_id).await?;
        let fallback = has_fallback(&mut connection, user_id, device_id).await?;
        Ok((count, fallback))
    }

    async fn deliver_shares(
        &self,
        shares: &[InboxShare],
        limits: InboxLimits,
    ) -> Result<Vec<ShareOutcome>, sqlx::Error> {
        let mut tx = self.write().await?;
        let mut outcomes = Vec::with_capacity(shares.len());
        let now = now_ms();
        for share in shares {
            let rows = device_rows(&mut tx, &share.user_id).await?;
            if device_rows_fingerprint(&rows) != share.fingerprint {
                outcomes.push(ShareOutcome::Stale);
                continue;
            }
            if inbox_full(&mut tx, share, limits).await? {
                outcomes.push(ShareOutcome::InboxFull);
                continue;
            }
            let mut stored = Vec::with_capacity(share.items.len());
            for item in &share.items {
                let inserted: Option<i64> = sqlx::query_scalar(
                    "INSERT INTO to_device_inbox (user_id, device_id, sender, sender_device,
                         message_id, message_type, content, received_ts)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                     ON CONFLICT (user_id, device_id, sender, sender_device, message_id)
                     DO NOTHING
                     RETURNING id",
                )
                .bind(share.user_id.as_str())
                .bind(&item.device_id)
                .bind(item.sender.as_str())
                .bind(&item.sender_device)
                .bind(&item.message_id)
                .bind(&item.message_type)
                .bind(item.content.to_string())
                .bind(to_i64(now))
                .fetch_optional(&mut *tx)
                .await?;
                let login =
                    rows.iter().find(|row| row.0 == item.device_id).map(|row| row.1.clone());
                if let Some(id) = inserted
                    && let Some(login) = login
                {
                    stored.push((
                        login,
                        InboxItem {
                            id,
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
            outcomes.push(ShareOutcome::Delivered(stored));
        }
        tx.commit().await?;
        Ok(outcomes)
    }

    async fn device_fingerprint(&self, user_id: &UserId) -> Result<String, sqlx::Error> {
        let mut connection = self.pool.acquire().await?;
        Ok(device_rows_fingerprint(&device_rows(&mut connection, user_id).await?))
    }

    async fn inbox(
        &self,
        user_id: &UserId,
        device_id: &str,
        limit: i64,
    ) -> Result<(Vec<InboxItem>, bool), sqlx::Error> {
        let rows = sqlx::query(
            "SELECT id, sender, sender_device, message_id, message_type, content, received_ts
             FROM to_device_inbox WHERE user_id = $1 AND device_id = $2 ORDER BY id LIMIT $3",
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

    async fn ack_inbox(
        &self,
        user_id: &UserId,
        device_id: &str,
        up_to: i64,
    ) -> Result<u64, sqlx::Error> {
        let done = sqlx::query(
            "DELETE FROM to_device_inbox WHERE user_id = $1 AND device_id = $2 AND id <= $3",
        )
        .bind(user_id.as_str())
        .bind(device_id)
        .bind(up_to)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    async fn reserve_txn(
        &self,
        scope: &str,
        txn_id: &str,
        request_hash: &str,
    ) -> Result<Reservation, sqlx::Error> {
        let mut tx = self.write().await?;
        let now = now_ms();
        sqlx::query("DELETE FROM to_device_txns WHERE created_ts <= $1")
            .bind(to_i64(now.saturating_sub(TXN_RETENTION_MS)))
            .execute(&mut *tx)
            .await?;
        let held: Option<(String, String, i64)> = sqlx::query_as(
            "SELECT request_hash, result, created_ts FROM to_device_txns
             WHERE scope = $1 AND txn_id = $2",
        )
        .bind(scope)
        .bind(txn_id)
        .fetch_optional(&mut *tx)
        .await?;
        let reservation = match held {
            Some((hash, _, _)) if hash != request_hash => Reservation::Conflict,
            Some((_, result, _)) if !result.is_empty() => Reservation::Answered(
                serde_json::from_str(&result).map_err(|e| sqlx::Error::Decode(e.into()))?,
            ),
            Some((_, _, created_ts)) if to_u64(created_ts) + TXN_ABANDONED_MS > now => {
                Reservation::InProgress
            }
            _ => {
                sqlx::query(
                    "INSERT INTO to_device_txns (scope, txn_id, request_hash, result, created_ts)
                     VALUES ($1, $2, $3, '', $4)
                     ON CONFLICT (scope, txn_id) DO UPDATE SET created_ts = excluded.created_ts",
                )
                .bind(scope)
                .bind(txn_id)
                .bind(request_hash)
                .bind(to_i64(now))
                .execute(&mut *tx)
                .await?;
                Reservation::New
            }
        };
        tx.commit().await?;
        Ok(reservation)
    }

    async fn complete_txn(
        &self,
        scope: &str,
        txn_id: &str,
        result: &Value,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE to_device_txns SET result = $1 WHERE scope = $2 AND txn_id = $3 AND result = ''",
        )
        .bind(result.to_string())
        .bind(scope)
        .bind(txn_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn release_txn(&self, scope: &str, txn_id: &str) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM to_device_txns WHERE scope = $1 AND txn_id = $2 AND result = ''")
            .bind(scope)
            .bind(txn_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn swap_device_list_hash(
        &self,
        user_id: &UserId,
        hash: &str,
    ) -> Result<bool, sqlx::Error> {
        let changed = sqlx::query(
            "INSERT INTO device_lists (user_id, hash) VALUES ($1, $2)
             ON CONFLICT (user_id) DO UPDATE SET hash = excluded.hash
             WHERE device_lists.hash != excluded.hash",
        )
        .bind(user_id.as_str())
        .bind(hash)
        .execute(&self.pool)
        .await?;
        Ok(changed.rows_affected() == 1)
    }

    async fn watch_device_lists(&self, users: &[UserId], watcher: &str) -> Result<(), sqlx::Error> {
        if users.is_empty() {
            return Ok(());
        }
        let mut tx = self.write().await?;
        let now = to_i64(now_ms());
        sqlx::query("DELETE FROM device_list_watchers WHERE updated_ts <= $1")
            .bind(to_i64(now_ms().saturating_sub(WATCH_MS)))
            .execute(&mut *tx)
            .await?;
        for user_id in users {
            sqlx::query(
                "INSERT INTO device_list_watchers (user_id, watcher, updated_ts) VALUES ($1, $2, $3)
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

    async fn device_list_watchers(&self, user_id: &UserId) -> Result<Vec<String>, sqlx::Error> {
        // A read only: expired rows are deleted when watchers are recorded.
        sqlx::query_scalar(
            "SELECT watcher FROM device_list_watchers WHERE user_id = $1 AND updated_ts > $2",
        )
        .bind(user_id.as_str())
        .bind(to_i64(now_ms().saturating_sub(WATCH_MS)))
        .fetch_all(&self.pool)
        .await
    }
}
