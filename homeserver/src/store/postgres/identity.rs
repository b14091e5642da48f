//! identity: the PostgreSQL implementation of [`IdentityStore`].

use super::PostgresStore;
use crate::store::UserStore;
use crate::store::identity::{AttestationRow, DeviceRow, IdentityStore};
use crate::store::{now_ms, to_i64, to_u64};
use guildhall_spec::UserId;
use sqlx::Row;
use sqlx::postgres::PgRow;

fn attestation_from_row(row: &PgRow) -> Result<AttestationRow, sqlx::Error> {
    let decode = |e: Box<dyn std::error::Error + Send + Sync>| sqlx::Error::Decode(e);
    let user_id: String = row.try_get("user_id")?;
    let attestation: String = row.try_get("attestation")?;
    Ok(AttestationRow {
        user_id: UserId::parse(&user_id).map_err(|e| decode(Box::new(e)))?,
        identity_key: row.try_get("identity_key")?,
        issued_ts: to_u64(row.try_get("issued_ts")?),
        attestation: serde_json::from_str(&attestation).map_err(|e| decode(Box::new(e)))?,
        checked_ts: to_u64(row.try_get("checked_ts")?),
    })
}

#[async_trait::async_trait]
impl IdentityStore for PostgresStore {
    async fn put_attestation(
        &self,
        user_id: &UserId,
        identity_key: Option<&str>,
        issued_ts: u64,
        attestation: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<bool, sqlx::Error> {
        let now = to_i64(now_ms());
        let text = serde_json::Value::Object(attestation.clone()).to_string();
        let done = sqlx::query(
            "INSERT INTO identity_attestations (user_id, identity_key, issued_ts, attestation, checked_ts)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (user_id) DO UPDATE SET identity_key = excluded.identity_key,
                 issued_ts = excluded.issued_ts, attestation = excluded.attestation,
                 checked_ts = excluded.checked_ts
             WHERE excluded.issued_ts > identity_attestations.issued_ts",
        )
        .bind(user_id.as_str())
        .bind(identity_key)
        .bind(to_i64(issued_ts))
        .bind(text)
        .bind(now)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            sqlx::query("UPDATE identity_attestations SET checked_ts = $1 WHERE user_id = $2")
                .bind(now)
                .bind(user_id.as_str())
                .execute(&self.pool)
                .await?;
        }
        Ok(done.rows_affected() == 1)
    }

    async fn remember_attested_key(
        &self,
        user_id: &UserId,
        identity_key: &str,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO attested_keys (user_id, identity_key, first_ts) VALUES ($1, $2, $3)
             ON CONFLICT DO NOTHING",
        )
        .bind(user_id.as_str())
        .bind(identity_key)
        .bind(to_i64(now_ms()))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn was_attested(
        &self,
        user_id: &UserId,
        identity_key: &str,
    ) -> Result<bool, sqlx::Error> {
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM attested_keys WHERE user_id = $1 AND identity_key = $2)",
        )
        .bind(user_id.as_str())
        .bind(identity_key)
        .fetch_one(&self.pool)
        .await
    }

    async fn attestation(&self, user_id: &UserId) -> Result<Option<AttestationRow>, sqlx::Error> {
        let row = sqlx::query("SELECT * FROM identity_attestations WHERE user_id = $1")
            .bind(user_id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(attestation_from_row).transpose()
    }

    async fn identity_keys(
        &self,
        users: &[&UserId],
    ) -> Result<std::collections::HashMap<UserId, String>, sqlx::Error> {
        let mut keys = std::collections::HashMap::new();
        // One query for them all: the ids travel as one array parameter.
        let ids: Vec<&str> = users.iter().map(|user| user.as_str()).collect();
        let rows = sqlx::query(
            "SELECT user_id, identity_key FROM identity_attestations
             WHERE identity_key IS NOT NULL AND user_id = ANY($1)",
        )
        .bind(ids)
        .fetch_all(&self.pool)
        .await?;
        for row in rows {
            let user_id: String = row.try_get("user_id")?;
            if let Ok(user_id) = UserId::parse(&user_id) {
                keys.insert(user_id, row.try_get("identity_key")?);
            }
        }
        Ok(keys)
    }

    async fn linked_account(&self, remote_user: &UserId) -> Result<Option<UserId>, sqlx::Error> {
        let row: Option<String> =
            sqlx::query_scalar("SELECT account FROM account_links WHERE remote_user = $1")
                .bind(remote_user.as_str())
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.and_then(|user_id| UserId::parse(&user_id).ok()))
    }

    async fn create_linked_account(
        &self,
        account: &UserId,
        remote_user: &UserId,
    ) -> Result<Option<crate::store::UserRow>, sqlx::Error> {
        let now = to_i64(now_ms());
        let mut tx = self.write().await?;
        let inserted = sqlx::query(
            "INSERT INTO users (user_id, localpart, password_hash, is_admin, created_ts)
             VALUES ($1, $2, '', FALSE, $3) ON CONFLICT DO NOTHING",
        )
        .bind(account.as_str())
        .bind(account.localpart())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 0 {
            return Ok(None);
        }
        sqlx::query(
            "INSERT INTO account_links (account, remote_user, created_ts) VALUES ($1, $2, $3)",
        )
        .bind(account.as_str())
        .bind(remote_user.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.user(account).await
    }

    async fn delete_linked_account(&self, account: &UserId) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM users WHERE user_id = $1")
            .bind(account.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn put_rotation(
        &self,
        user_id: &UserId,
        ts: u64,
        statement: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO identity_rotations (user_id, ts, statement) VALUES ($1, $2, $3)
             ON CONFLICT DO NOTHING",
        )
        .bind(user_id.as_str())
        .bind(to_i64(ts))
        .bind(serde_json::Value::Object(statement.clone()).to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn rotations(&self, user_id: &UserId) -> Result<Vec<serde_json::Value>, sqlx::Error> {
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT statement FROM identity_rotations WHERE user_id = $1 ORDER BY ts",
        )
        .bind(user_id.as_str())
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().filter_map(|text| serde_json::from_str(text).ok()).collect())
    }

    async fn use_challenge(&self, challenge: &str, expires_ts: u64) -> Result<bool, sqlx::Error> {
        let mut tx = self.write().await?;
        sqlx::query("DELETE FROM identity_challenges WHERE expires_ts < $1")
            .bind(to_i64(now_ms()))
            .execute(&mut *tx)
            .await?;
        let done = sqlx::query(
            "INSERT INTO identity_challenges (challenge, user_id, expires_ts) VALUES ($1, '', $2)
             ON CONFLICT DO NOTHING",
        )
        .bind(challenge)
        .bind(to_i64(expires_ts))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    async fn put_move(
        &self,
        from: &UserId,
        to: &UserId,
        ts: u64,
        statement: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<bool, sqlx::Error> {
        let done = sqlx::query(
            "INSERT INTO identity_moves (from_user, to_user, ts, statement) VALUES ($1, $2, $3, $4)
             ON CONFLICT (from_user) DO UPDATE SET to_user = excluded.to_user, ts = excluded.ts,
                 statement = excluded.statement
             WHERE excluded.ts > identity_moves.ts",
        )
        .bind(from.as_str())
        .bind(to.as_str())
        .bind(to_i64(ts))
        .bind(serde_json::Value::Object(statement.clone()).to_string())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn moved_to(&self, user_id: &UserId) -> Result<Option<UserId>, sqlx::Error> {
        let row: Option<String> =
            sqlx::query_scalar("SELECT to_user FROM identity_moves WHERE from_user = $1")
                .bind(user_id.as_str())
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.and_then(|user_id| UserId::parse(&user_id).ok()))
    }

    async fn put_device(
        &self,
        user_id: &UserId,
        device_id: &str,
        session_id: &str,
        certificate: &serde_json::Map<String, serde_json::Value>,
        max_devices: i64,
    ) -> Result<bool, sqlx::Error> {
        let mut tx = self.write().await?;
        let owner: Option<String> = sqlx::query_scalar(
            "SELECT session_id FROM devices WHERE user_id = $1 AND device_id = $2",
        )
        .bind(user_id.as_str())
        .bind(device_id)
        .fetch_optional(&mut *tx)
        .await?;
        if owner.as_deref().is_some_and(|owner| owner != session_id) {
            return Ok(false);
        }
        // This login's earlier device (under another id) is replaced.
        sqlx::query("DELETE FROM devices WHERE session_id = $1 AND device_id != $2")
            .bind(session_id)
            .bind(device_id)
            .execute(&mut *tx)
            .await?;
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM devices WHERE user_id = $1")
            .bind(user_id.as_str())
            .fetch_one(&mut *tx)
            .await?;
        if owner.is_none() && count >= max_devices {
            return Ok(false);
        }
        // One-time and fallback keys belong to the device's keys: certified with other keys,
        // the device starts over (spec 17.2).
        let before: Option<String> = sqlx::query_scalar(
            "SELECT certificate FROM devices WHERE user_id = $1 AND device_id = $2",
        )
        .bind(user_id.as_str())
        .bind(device_id)
        .fetch_optional(&mut *tx)
        .await?;
        let keys_of = |certificate: &serde_json::Map<String, serde_json::Value>| {
            certificate.get("device_keys").cloned()
        };
        let rekeyed = before
            .and_then(|text| {
                serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&text).ok()
            })
            .is_some_and(|before| keys_of(&before) != keys_of(certificate));
        if rekeyed {
            for statement in [
                "DELETE FROM one_time_keys WHERE user_id = $1 AND device_id = $2",
                "DELETE FROM fallback_keys WHERE user_id = $1 AND device_id = $2",
                "DELETE FROM claimed_keys WHERE user_id = $1 AND device_id = $2",
            ] {
                sqlx::query(statement)
                    .bind(user_id.as_str())
                    .bind(device_id)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        sqlx::query(
            "INSERT INTO devices (user_id, device_id, session_id, certificate, updated_ts)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (user_id, device_id) DO UPDATE SET certificate = excluded.certificate,
                 updated_ts = excluded.updated_ts",
        )
        .bind(user_id.as_str())
        .bind(device_id)
        .bind(session_id)
        .bind(serde_json::Value::Object(certificate.clone()).to_string())
        .bind(to_i64(now_ms()))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn devices(&self, user_id: &UserId) -> Result<Vec<DeviceRow>, sqlx::Error> {
        let rows = sqlx::query("SELECT * FROM devices WHERE user_id = $1 ORDER BY device_id")
            .bind(user_id.as_str())
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                let certificate: String = row.try_get("certificate")?;
                Ok(DeviceRow {
                    device_id: row.try_get("device_id")?,
                    session_id: row.try_get("session_id")?,
                    certificate: serde_json::from_str(&certificate)
                        .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
                    updated_ts: to_u64(row.try_get("updated_ts")?),
                })
            })
            .collect()
    }

    async fn device_session(
        &self,
        user_id: &UserId,
        device_id: &str,
    ) -> Result<Option<String>, sqlx::Error> {
        sqlx::query_scalar("SELECT session_id FROM devices WHERE user_id = $1 AND device_id = $2")
            .bind(user_id.as_str())
            .bind(device_id)
            .fetch_optional(&self.pool)
            .await
    }
}
