//! bots: the SQLite implementation of [`BotStore`].

use super::SqliteStore;
use crate::store::bots::{ApplicationRow, BotStore, SnowflakeTarget};
use crate::store::{to_i64, to_u64};
use guildhall_spec::UserId;
use sqlx::Row;

fn application_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<ApplicationRow, sqlx::Error> {
    let user = |column: &str| {
        let text: String = row.try_get(column)?;
        UserId::parse(&text).map_err(|error| sqlx::Error::Decode(Box::new(error)))
    };
    Ok(ApplicationRow {
        application_id: to_u64(row.try_get("application_id")?),
        bot_user: user("bot_user")?,
        owner: user("owner")?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        public: row.try_get::<i64, _>("bot_public")? != 0,
        intents: to_u64(row.try_get("intents")?),
        created_ts: to_u64(row.try_get("created_ts")?),
    })
}

#[async_trait::async_trait]
impl BotStore for SqliteStore {
    async fn create_application(&self, application: &ApplicationRow) -> Result<bool, sqlx::Error> {
        let mut tx = self.write().await?;
        let user = sqlx::query(
            "INSERT INTO users (user_id, localpart, password_hash, display_name, is_admin, created_ts)
             VALUES (?1, ?2, '', ?3, 0, ?4) ON CONFLICT DO NOTHING",
        )
        .bind(application.bot_user.as_str())
        .bind(application.bot_user.localpart())
        .bind(&application.name)
        .bind(to_i64(application.created_ts))
        .execute(&mut *tx)
        .await?;
        if user.rows_affected() == 0 {
            return Ok(false);
        }
        let inserted = sqlx::query(
            "INSERT INTO applications (application_id, bot_user, owner, name, description, bot_public, intents, created_ts)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT DO NOTHING",
        )
        .bind(to_i64(application.application_id))
        .bind(application.bot_user.as_str())
        .bind(application.owner.as_str())
        .bind(&application.name)
        .bind(&application.description)
        .bind(i64::from(application.public))
        .bind(to_i64(application.intents))
        .bind(to_i64(application.created_ts))
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 0 {
            return Ok(false);
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn application(
        &self,
        application_id: u64,
    ) -> Result<Option<ApplicationRow>, sqlx::Error> {
        sqlx::query("SELECT * FROM applications WHERE application_id = ?1")
            .bind(to_i64(application_id))
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(application_from_row)
            .transpose()
    }

    async fn application_of_bot(
        &self,
        bot: &UserId,
    ) -> Result<Option<ApplicationRow>, sqlx::Error> {
        sqlx::query("SELECT * FROM applications WHERE bot_user = ?1")
            .bind(bot.as_str())
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(application_from_row)
            .transpose()
    }

    async fn applications_of(&self, owner: &UserId) -> Result<Vec<ApplicationRow>, sqlx::Error> {
        sqlx::query(
            "SELECT * FROM applications WHERE owner = ?1 ORDER BY created_ts, application_id",
        )
        .bind(owner.as_str())
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(application_from_row)
        .collect()
    }

    async fn update_application(&self, application: &ApplicationRow) -> Result<bool, sqlx::Error> {
        let mut tx = self.write().await?;
        let updated = sqlx::query(
            "UPDATE applications SET description = ?1, bot_public = ?2, intents = ?3
             WHERE application_id = ?4",
        )
        .bind(&application.description)
        .bind(i64::from(application.public))
        .bind(to_i64(application.intents))
        .bind(to_i64(application.application_id))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(updated.rows_affected() == 1)
    }

    async fn assign_snowflake(
        &self,
        target: &SnowflakeTarget,
        candidate: u64,
    ) -> Result<Option<u64>, sqlx::Error> {
        // One statement: concurrent assignments of one object (on any node) agree on the
        // first, and a candidate another object holds inserts nothing.
        sqlx::query(
            "INSERT INTO snowflakes (snowflake, kind, guild_id, object_id) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT DO NOTHING",
        )
        .bind(to_i64(candidate))
        .bind(&target.kind)
        .bind(&target.guild_id)
        .bind(&target.object_id)
        .execute(&self.pool)
        .await?;
        self.snowflake_of(target).await
    }

    async fn snowflake_of(&self, target: &SnowflakeTarget) -> Result<Option<u64>, sqlx::Error> {
        let found: Option<i64> = sqlx::query_scalar(
            "SELECT snowflake FROM snowflakes WHERE kind = ?1 AND guild_id = ?2 AND object_id = ?3",
        )
        .bind(&target.kind)
        .bind(&target.guild_id)
        .bind(&target.object_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(found.map(to_u64))
    }

    async fn snowflake_target(
        &self,
        snowflake: u64,
    ) -> Result<Option<SnowflakeTarget>, sqlx::Error> {
        let row =
            sqlx::query("SELECT kind, guild_id, object_id FROM snowflakes WHERE snowflake = ?1")
                .bind(to_i64(snowflake))
                .fetch_optional(&self.pool)
                .await?;
        row.map(|row| {
            Ok(SnowflakeTarget {
                kind: row.try_get("kind")?,
                guild_id: row.try_get("guild_id")?,
                object_id: row.try_get("object_id")?,
            })
        })
        .transpose()
    }
}
