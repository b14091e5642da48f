//! social: the PostgreSQL implementation of [`SocialStore`].

use super::PostgresStore;
use crate::store::social::{RelationshipRow, SocialStore};
use crate::store::{now_ms, to_i64, to_u64};
use guildhall_spec::{GuildId, UserId};
use sqlx::Row;

#[async_trait::async_trait]
impl SocialStore for PostgresStore {
    async fn relationships(&self, user: &UserId) -> Result<Vec<RelationshipRow>, sqlx::Error> {
        let rows = sqlx::query("SELECT other_id, state, since_ts FROM relationships WHERE user_id = $1 ORDER BY since_ts")
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

    async fn relationship(
        &self,
        user: &UserId,
        other: &UserId,
    ) -> Result<Option<String>, sqlx::Error> {
        sqlx::query_scalar("SELECT state FROM relationships WHERE user_id = $1 AND other_id = $2")
            .bind(user.as_str())
            .bind(other.as_str())
            .fetch_optional(&self.pool)
            .await
    }

    async fn set_relationship(
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
                "INSERT INTO relationships (user_id, other_id, state, since_ts) VALUES ($1, $2, $3, $4)
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

    async fn delete_relationship(
        &self,
        user: &UserId,
        other: &UserId,
    ) -> Result<bool, sqlx::Error> {
        let done = sqlx::query(
            "DELETE FROM relationships
             WHERE (user_id = $1 AND other_id = $2) OR (user_id = $2 AND other_id = $1)",
        )
        .bind(user.as_str())
        .bind(other.as_str())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn block(&self, user: &UserId, blocked: &UserId) -> Result<(), sqlx::Error> {
        self.delete_relationship(user, blocked).await?;
        sqlx::query(
            "INSERT INTO blocks (user_id, blocked_id, since_ts) VALUES ($1, $2, $3)
             ON CONFLICT DO NOTHING",
        )
        .bind(user.as_str())
        .bind(blocked.as_str())
        .bind(to_i64(now_ms()))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn unblock(&self, user: &UserId, blocked: &UserId) -> Result<bool, sqlx::Error> {
        let done = sqlx::query("DELETE FROM blocks WHERE user_id = $1 AND blocked_id = $2")
            .bind(user.as_str())
            .bind(blocked.as_str())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn blocked_by(&self, user: &UserId) -> Result<Vec<UserId>, sqlx::Error> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT blocked_id FROM blocks WHERE user_id = $1 ORDER BY since_ts",
        )
        .bind(user.as_str())
        .fetch_all(&self.pool)
        .await?;
        Ok(ids.iter().filter_map(|id| UserId::parse(id).ok()).collect())
    }

    async fn is_blocked_between(&self, a: &UserId, b: &UserId) -> Result<bool, sqlx::Error> {
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM blocks
                 WHERE (user_id = $1 AND blocked_id = $2) OR (user_id = $2 AND blocked_id = $1))",
        )
        .bind(a.as_str())
        .bind(b.as_str())
        .fetch_one(&self.pool)
        .await
    }

    async fn direct_message(&self, a: &UserId, b: &UserId) -> Result<Option<GuildId>, sqlx::Error> {
        let (first, second) = if a <= b { (a, b) } else { (b, a) };
        let id: Option<String> = sqlx::query_scalar(
            "SELECT guild_id FROM direct_messages WHERE user_a = $1 AND user_b = $2",
        )
        .bind(first.as_str())
        .bind(second.as_str())
        .fetch_optional(&self.pool)
        .await?;
        Ok(id.and_then(|id| GuildId::parse(&id).ok()))
    }

    async fn record_direct_message(
        &self,
        a: &UserId,
        b: &UserId,
        guild: &GuildId,
    ) -> Result<(), sqlx::Error> {
        let (first, second) = if a <= b { (a, b) } else { (b, a) };
        sqlx::query(
            "INSERT INTO direct_messages (user_a, user_b, guild_id) VALUES ($1, $2, $3)
             ON CONFLICT DO NOTHING",
        )
        .bind(first.as_str())
        .bind(second.as_str())
        .bind(guild.as_str())
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
