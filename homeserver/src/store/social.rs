//! Friends, blocks and the index of direct-message guilds.

use guildhall_spec::{GuildId, UserId};
use sqlx::Row;

use super::{Store, now_ms, to_i64, to_u64};

/// One side of a relationship.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationshipRow {
    /// The other user.
    pub other: UserId,
    /// `outgoing`, `incoming` or `friends`.
    pub state: String,
    /// Since when.
    pub since_ts: u64,
}

impl Store {
    /// A user's relationships.
    pub async fn relationships(&self, user: &UserId) -> Result<Vec<RelationshipRow>, sqlx::Error> {
        let rows = sqlx::query("SELECT other_id, state, since_ts FROM relationships WHERE user_id = ? ORDER BY since_ts")
            .bind(user.as_str())
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .filter_map(|row| {
                let other: String = row.get("other_id");
                Some(RelationshipRow {
                    other: UserId::parse(&other).ok()?,
                    state: row.get("state"),
                    since_ts: to_u64(row.get("since_ts")),
                })
            })
            .collect())
    }

    /// The state of `user`'s relationship with `other`, if any.
    pub async fn relationship(
        &self,
        user: &UserId,
        other: &UserId,
    ) -> Result<Option<String>, sqlx::Error> {
        sqlx::query_scalar("SELECT state FROM relationships WHERE user_id = ? AND other_id = ?")
            .bind(user.as_str())
            .bind(other.as_str())
            .fetch_optional(&self.pool)
            .await
    }

    /// Sets both sides of a relationship at once.
    pub async fn set_relationship(
        &self,
        user: &UserId,
        other: &UserId,
        mine: &str,
        theirs: &str,
    ) -> Result<(), sqlx::Error> {
        let mut tx = self.write().await?;
        let now = to_i64(now_ms());
        for (from, to, state) in [(user, other, mine), (other, user, theirs)] {
            sqlx::query(
                "INSERT INTO relationships (user_id, other_id, state, since_ts) VALUES (?, ?, ?, ?)
                 ON CONFLICT (user_id, other_id) DO UPDATE SET state = excluded.state, since_ts = excluded.since_ts",
            )
            .bind(from.as_str())
            .bind(to.as_str())
            .bind(state)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await
    }

    /// Removes both sides of a relationship; returns whether there was one.
    pub async fn delete_relationship(
        &self,
        user: &UserId,
        other: &UserId,
    ) -> Result<bool, sqlx::Error> {
        let done = sqlx::query("DELETE FROM relationships WHERE (user_id = ? AND other_id = ?) OR (user_id = ? AND other_id = ?)")
            .bind(user.as_str())
            .bind(other.as_str())
            .bind(other.as_str())
            .bind(user.as_str())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Blocks a user; a block also ends any relationship.
    pub async fn block(&self, user: &UserId, blocked: &UserId) -> Result<(), sqlx::Error> {
        self.delete_relationship(user, blocked).await?;
        sqlx::query(
            "INSERT OR IGNORE INTO blocks (user_id, blocked_id, since_ts) VALUES (?, ?, ?)",
        )
        .bind(user.as_str())
        .bind(blocked.as_str())
        .bind(to_i64(now_ms()))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Lifts a block; returns whether there was one.
    pub async fn unblock(&self, user: &UserId, blocked: &UserId) -> Result<bool, sqlx::Error> {
        let done = sqlx::query("DELETE FROM blocks WHERE user_id = ? AND blocked_id = ?")
            .bind(user.as_str())
            .bind(blocked.as_str())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Users `user` blocked.
    pub async fn blocked_by(&self, user: &UserId) -> Result<Vec<UserId>, sqlx::Error> {
        let ids: Vec<String> =
            sqlx::query_scalar("SELECT blocked_id FROM blocks WHERE user_id = ? ORDER BY since_ts")
                .bind(user.as_str())
                .fetch_all(&self.pool)
                .await?;
        Ok(ids.iter().filter_map(|id| UserId::parse(id).ok()).collect())
    }

    /// Whether either user blocked the other.
    pub async fn is_blocked_between(&self, a: &UserId, b: &UserId) -> Result<bool, sqlx::Error> {
        let found: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM blocks WHERE (user_id = ? AND blocked_id = ?) OR (user_id = ? AND blocked_id = ?)",
        )
        .bind(a.as_str())
        .bind(b.as_str())
        .bind(b.as_str())
        .bind(a.as_str())
        .fetch_optional(&self.pool)
        .await?;
        Ok(found.is_some())
    }

    /// The DM guild between two users, if one exists.
    pub async fn direct_message(
        &self,
        a: &UserId,
        b: &UserId,
    ) -> Result<Option<GuildId>, sqlx::Error> {
        let (first, second) = if a <= b { (a, b) } else { (b, a) };
        let id: Option<String> = sqlx::query_scalar(
            "SELECT guild_id FROM direct_messages WHERE user_a = ? AND user_b = ?",
        )
        .bind(first.as_str())
        .bind(second.as_str())
        .fetch_optional(&self.pool)
        .await?;
        Ok(id.and_then(|id| GuildId::parse(&id).ok()))
    }

    /// Records the DM guild between two users.
    pub async fn record_direct_message(
        &self,
        a: &UserId,
        b: &UserId,
        guild: &GuildId,
    ) -> Result<(), sqlx::Error> {
        let (first, second) = if a <= b { (a, b) } else { (b, a) };
        sqlx::query(
            "INSERT OR IGNORE INTO direct_messages (user_a, user_b, guild_id) VALUES (?, ?, ?)",
        )
        .bind(first.as_str())
        .bind(second.as_str())
        .bind(guild.as_str())
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
