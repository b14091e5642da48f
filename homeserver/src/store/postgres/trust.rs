//! trust: the PostgreSQL implementation of [`TrustStore`].

use super::PostgresStore;
use crate::store::trust::{Audit, AuditRow, SubscriptionRow, TrustEntryRow, TrustStore};
use crate::store::{now_ms, to_i64, to_u64};
use sqlx::postgres::PgRow;
use sqlx::{Postgres, Row, Transaction};

async fn record(
    tx: &mut Transaction<'_, Postgres>,
    audit: Audit<'_>,
    bump_trust: bool,
) -> Result<(), sqlx::Error> {
    let now = to_i64(now_ms());
    sqlx::query(
        "INSERT INTO audit_log (ts, actor, action, target, detail) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(now)
    .bind(audit.actor)
    .bind(audit.action)
    .bind(audit.target)
    .bind(audit.detail.map(ToString::to_string))
    .execute(&mut **tx)
    .await?;
    if bump_trust {
        // `changed_ts` strictly increases: it is the `updated_ts` of the published list.
        sqlx::query(
            "UPDATE trust_settings SET version = version + 1, changed_ts = GREATEST(changed_ts + 1, $1)",
        )
        .bind(now)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

fn subscription_from_row(row: &PgRow) -> Result<SubscriptionRow, sqlx::Error> {
    Ok(SubscriptionRow {
        id: row.try_get("id")?,
        url: row.try_get("url")?,
        publisher: row.try_get("publisher")?,
        key_id: row.try_get("key_id")?,
        key: row.try_get("key")?,
        refresh_secs: to_u64(row.try_get("refresh_secs")?),
        document: row.try_get("document")?,
        updated_ts: to_u64(row.try_get("updated_ts")?),
        fetched_ts: to_u64(row.try_get("fetched_ts")?),
        accepted_ts: to_u64(row.try_get("accepted_ts")?),
        last_error: row.try_get("last_error")?,
    })
}

#[async_trait::async_trait]
impl TrustStore for PostgresStore {
    async fn trust_version(&self) -> Result<(i64, u64), sqlx::Error> {
        let row = sqlx::query("SELECT version, changed_ts FROM trust_settings WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        Ok((row.try_get("version")?, to_u64(row.try_get("changed_ts")?)))
    }

    async fn trust_mode(&self) -> Result<Option<String>, sqlx::Error> {
        sqlx::query_scalar("SELECT mode FROM trust_settings WHERE id = 1")
            .fetch_one(&self.pool)
            .await
    }

    async fn set_trust_mode(&self, mode: &str, audit: Audit<'_>) -> Result<(), sqlx::Error> {
        let mut tx = self.write().await?;
        sqlx::query("UPDATE trust_settings SET mode = $1 WHERE id = 1")
            .bind(mode)
            .execute(&mut *tx)
            .await?;
        record(&mut tx, audit, true).await?;
        tx.commit().await
    }

    async fn trust_entries(&self) -> Result<Vec<TrustEntryRow>, sqlx::Error> {
        let rows = sqlx::query("SELECT * FROM trust_entries ORDER BY server")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                let key_id: Option<String> = row.try_get("key_id")?;
                let key: Option<String> = row.try_get("key")?;
                Ok(TrustEntryRow {
                    server: row.try_get("server")?,
                    action: row.try_get("action")?,
                    reason: row.try_get("reason")?,
                    key: key_id.zip(key),
                    updated_ts: to_u64(row.try_get("updated_ts")?),
                })
            })
            .collect()
    }

    async fn put_trust_entry(
        &self,
        entry: &TrustEntryRow,
        audit: Audit<'_>,
    ) -> Result<(), sqlx::Error> {
        let mut tx = self.write().await?;
        sqlx::query(
            "INSERT INTO trust_entries (server, action, reason, key_id, key, updated_ts)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (server) DO UPDATE SET action = excluded.action, reason = excluded.reason,
                 key_id = excluded.key_id, key = excluded.key, updated_ts = excluded.updated_ts",
        )
        .bind(&entry.server)
        .bind(&entry.action)
        .bind(&entry.reason)
        .bind(entry.key.as_ref().map(|(key_id, _)| key_id))
        .bind(entry.key.as_ref().map(|(_, key)| key))
        .bind(to_i64(entry.updated_ts))
        .execute(&mut *tx)
        .await?;
        record(&mut tx, audit, true).await?;
        tx.commit().await
    }

    async fn delete_trust_entry(
        &self,
        server: &str,
        audit: Audit<'_>,
    ) -> Result<bool, sqlx::Error> {
        self.delete_audited("DELETE FROM trust_entries WHERE server = $1", server, audit).await
    }

    async fn replace_trust_policy(
        &self,
        mode: &str,
        entries: &[TrustEntryRow],
        audit: Audit<'_>,
    ) -> Result<(), sqlx::Error> {
        let mut tx = self.write().await?;
        sqlx::query("UPDATE trust_settings SET mode = $1 WHERE id = 1")
            .bind(mode)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM trust_entries").execute(&mut *tx).await?;
        for entry in entries {
            sqlx::query(
                "INSERT INTO trust_entries (server, action, reason, key_id, key, updated_ts)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&entry.server)
            .bind(&entry.action)
            .bind(&entry.reason)
            .bind(entry.key.as_ref().map(|(key_id, _)| key_id))
            .bind(entry.key.as_ref().map(|(_, key)| key))
            .bind(to_i64(entry.updated_ts))
            .execute(&mut *tx)
            .await?;
        }
        record(&mut tx, audit, true).await?;
        tx.commit().await
    }

    async fn subscriptions(&self) -> Result<Vec<SubscriptionRow>, sqlx::Error> {
        let rows = sqlx::query("SELECT * FROM trust_subscriptions ORDER BY created_ts")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(subscription_from_row).collect()
    }

    async fn subscription(&self, id: &str) -> Result<Option<SubscriptionRow>, sqlx::Error> {
        let row = sqlx::query("SELECT * FROM trust_subscriptions WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(subscription_from_row).transpose()
    }

    async fn add_subscription(
        &self,
        subscription: &SubscriptionRow,
        audit: Audit<'_>,
    ) -> Result<bool, sqlx::Error> {
        let mut tx = self.write().await?;
        let done = sqlx::query(
            "INSERT INTO trust_subscriptions (id, url, publisher, key_id, key, refresh_secs, created_ts)
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
        )
        .bind(&subscription.id)
        .bind(&subscription.url)
        .bind(&subscription.publisher)
        .bind(&subscription.key_id)
        .bind(&subscription.key)
        .bind(to_i64(subscription.refresh_secs))
        .bind(to_i64(now_ms()))
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        record(&mut tx, audit, true).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn delete_subscription(&self, id: &str, audit: Audit<'_>) -> Result<bool, sqlx::Error> {
        self.delete_audited("DELETE FROM trust_subscriptions WHERE id = $1", id, audit).await
    }

    async fn accept_trust_list(
        &self,
        id: &str,
        document: &str,
        updated_ts: u64,
        audit: Audit<'_>,
    ) -> Result<bool, sqlx::Error> {
        let now = to_i64(now_ms());
        let mut tx = self.write().await?;
        let done = sqlx::query(
            "UPDATE trust_subscriptions SET document = $1, updated_ts = $2, fetched_ts = $3,
                 accepted_ts = $4, last_error = NULL
             WHERE id = $5 AND updated_ts < $6",
        )
        .bind(document)
        .bind(to_i64(updated_ts))
        .bind(now)
        .bind(now)
        .bind(id)
        .bind(to_i64(updated_ts))
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        record(&mut tx, audit, true).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn note_trust_fetch(&self, id: &str, error: Option<&str>) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE trust_subscriptions SET fetched_ts = $1, last_error = $2 WHERE id = $3",
        )
        .bind(to_i64(now_ms()))
        .bind(error)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn audit(&self, audit: Audit<'_>) -> Result<(), sqlx::Error> {
        let mut tx = self.write().await?;
        record(&mut tx, audit, false).await?;
        tx.commit().await
    }

    async fn audit_log(
        &self,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<AuditRow>, sqlx::Error> {
        let rows = sqlx::query("SELECT * FROM audit_log WHERE id < $1 ORDER BY id DESC LIMIT $2")
            .bind(before.unwrap_or(i64::MAX))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                let detail: Option<String> = row.try_get("detail")?;
                Ok(AuditRow {
                    id: row.try_get("id")?,
                    ts: to_u64(row.try_get("ts")?),
                    actor: row.try_get("actor")?,
                    action: row.try_get("action")?,
                    target: row.try_get("target")?,
                    detail: detail.and_then(|text| serde_json::from_str(&text).ok()),
                })
            })
            .collect()
    }
}

impl PostgresStore {
    /// Runs a one-row trust delete and, if it deleted something, records it in the same
    /// transaction. Returns whether a row was deleted.
    async fn delete_audited(
        &self,
        sql: &'static str,
        key: &str,
        audit: Audit<'_>,
    ) -> Result<bool, sqlx::Error> {
        let mut tx = self.write().await?;
        let done = sqlx::query(sql).bind(key).execute(&mut *tx).await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        record(&mut tx, audit, true).await?;
        tx.commit().await?;
        Ok(true)
    }
}
