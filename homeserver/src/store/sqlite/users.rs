//! users: the SQLite implementation of [`UserStore`].

use super::SqliteStore;
use crate::store::users::{SessionRow, TokenSession, UserRow, UserStore};
use crate::store::{now_ms, to_i64, to_u64};
use guildhall_spec::UserId;
use sqlx::Row;

fn user_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<UserRow, sqlx::Error> {
    let user_id: String = row.try_get("user_id")?;
    Ok(UserRow {
        user_id: UserId::parse(&user_id).map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
        password_hash: row.try_get("password_hash")?,
        display_name: row.try_get("display_name")?,
        avatar: row.try_get("avatar")?,
        is_admin: row.try_get("is_admin")?,
        created_ts: to_u64(row.try_get("created_ts")?),
    })
}

#[async_trait::async_trait]
impl UserStore for SqliteStore {
    async fn create_user(
        &self,
        user_id: &UserId,
        password_hash: &str,
    ) -> Result<Option<UserRow>, sqlx::Error> {
        let mut tx = self.write().await?;
        let existing: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM users").fetch_one(&mut *tx).await?;
        let inserted = sqlx::query(
            "INSERT INTO users (user_id, localpart, password_hash, is_admin, created_ts)
             VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(user_id.as_str())
        .bind(user_id.localpart())
        .bind(password_hash)
        .bind(existing == 0)
        .bind(to_i64(now_ms()))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        if inserted.rows_affected() == 0 {
            return Ok(None);
        }
        self.user(user_id).await
    }

    async fn user(&self, user_id: &UserId) -> Result<Option<UserRow>, sqlx::Error> {
        let row = sqlx::query("SELECT * FROM users WHERE user_id = ?")
            .bind(user_id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn update_profile(
        &self,
        user_id: &UserId,
        display_name: Option<Option<&str>>,
        avatar: Option<Option<&str>>,
    ) -> Result<(), sqlx::Error> {
        if let Some(display_name) = display_name {
            sqlx::query("UPDATE users SET display_name = ? WHERE user_id = ?")
                .bind(display_name)
                .bind(user_id.as_str())
                .execute(&self.pool)
                .await?;
        }
        if let Some(avatar) = avatar {
            sqlx::query("UPDATE users SET avatar = ? WHERE user_id = ?")
                .bind(avatar)
                .bind(user_id.as_str())
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    async fn make_admin(&self, user_id: &UserId) -> Result<bool, sqlx::Error> {
        let done = sqlx::query("UPDATE users SET is_admin = 1 WHERE user_id = ?")
            .bind(user_id.as_str())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn create_session(
        &self,
        user_id: &UserId,
        session_id: &str,
        token_hash: &[u8],
        user_agent: Option<&str>,
        ip: Option<&str>,
    ) -> Result<(), sqlx::Error> {
        let now = to_i64(now_ms());
        sqlx::query(
            "INSERT INTO sessions (session_id, token_hash, user_id, created_ts, last_seen_ts, user_agent, ip)
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(session_id)
        .bind(token_hash)
        .bind(user_id.as_str())
        .bind(now)
        .bind(now)
        .bind(user_agent)
        .bind(ip)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn session_user(&self, token_hash: &[u8]) -> Result<Option<TokenSession>, sqlx::Error> {
        let row = sqlx::query(
            "SELECT user_id, session_id, last_seen_ts FROM sessions WHERE token_hash = ?",
        )
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let user_id: String = row.try_get("user_id")?;
        Ok(UserId::parse(&user_id).ok().map(|user_id| TokenSession {
            user_id,
            session_id: row.get("session_id"),
            last_seen_ts: to_u64(row.get("last_seen_ts")),
        }))
    }

    async fn touch_session(&self, session_id: &str) -> Result<(), sqlx::Error> {
        let now = to_i64(now_ms());
        sqlx::query(
            "UPDATE sessions SET last_seen_ts = ? WHERE session_id = ? AND last_seen_ts < ?",
        )
        .bind(now)
        .bind(session_id)
        .bind(now - 60_000)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn sessions(&self, user_id: &UserId) -> Result<Vec<SessionRow>, sqlx::Error> {
        let rows = sqlx::query("SELECT * FROM sessions WHERE user_id = ? ORDER BY created_ts DESC")
            .bind(user_id.as_str())
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(SessionRow {
                    session_id: row.try_get("session_id")?,
                    created_ts: to_u64(row.try_get("created_ts")?),
                    last_seen_ts: to_u64(row.try_get("last_seen_ts")?),
                    user_agent: row.try_get("user_agent")?,
                    ip: row.try_get("ip")?,
                })
            })
            .collect()
    }

    async fn delete_session(
        &self,
        user_id: &UserId,
        session_id: &str,
    ) -> Result<bool, sqlx::Error> {
        let done = sqlx::query("DELETE FROM sessions WHERE user_id = ? AND session_id = ?")
            .bind(user_id.as_str())
            .bind(session_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }
}
