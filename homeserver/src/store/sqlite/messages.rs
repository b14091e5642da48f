//! messages: the SQLite implementation of [`MessageStore`].

use super::SqliteStore;
use crate::store::messages::{
    MessagePage, MessageQuery, MessageRow, MessageStore, ReactionCount, SearchQuery,
};
use crate::store::{to_i64, to_u64};
use guildhall_spec::state::MessageFacts;
use guildhall_spec::{ChannelId, EventId, GuildId, MediaId, UserId};
use sqlx::{QueryBuilder, Row, Sqlite};

fn message_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<MessageRow, sqlx::Error> {
    let decode = |e: String| sqlx::Error::Decode(e.into());
    let text = |name: &str| -> Result<String, sqlx::Error> { row.try_get(name) };
    let reply_to: Option<String> = row.try_get("reply_to")?;
    let mentions: Vec<UserId> = serde_json::from_str(&text("mentions")?).unwrap_or_default();
    let edited: Option<i64> = row.try_get("edited_ts")?;
    let attachments: Option<String> = row.try_get("attachments")?;
    Ok(MessageRow {
        message_id: EventId::parse(&text("message_id")?).map_err(|e| decode(e.to_string()))?,
        guild_id: GuildId::parse(&text("guild_id")?).map_err(|e| decode(e.to_string()))?,
        channel_id: ChannelId::parse(&text("channel_id")?).map_err(|e| decode(e.to_string()))?,
        author: UserId::parse(&text("author")?).map_err(|e| decode(e.to_string()))?,
        body: row.try_get("body")?,
        reply_to: reply_to.and_then(|id| EventId::parse(&id).ok()),
        mentions,
        created_seq: to_u64(row.try_get("created_seq")?),
        created_ts: to_u64(row.try_get("created_ts")?),
        edited_ts: edited.map(to_u64),
        deleted: row.try_get("deleted")?,
        attachments: attachments
            .and_then(|json| serde_json::from_str::<Vec<MediaId>>(&json).ok())
            .unwrap_or_default(),
    })
}

#[async_trait::async_trait]
impl MessageStore for SqliteStore {
    async fn message(
        &self,
        guild_id: &GuildId,
        message_id: &EventId,
    ) -> Result<Option<MessageRow>, sqlx::Error> {
        let row = sqlx::query("SELECT * FROM messages WHERE guild_id = ? AND message_id = ?")
            .bind(guild_id.as_str())
            .bind(message_id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(message_from_row).transpose()
    }

    async fn message_facts(
        &self,
        guild_id: &GuildId,
        message_id: &EventId,
    ) -> Result<Option<MessageFacts>, sqlx::Error> {
        Ok(self.message(guild_id, message_id).await?.map(|m| MessageFacts {
            author: m.author,
            channel_id: m.channel_id,
            deleted: m.deleted,
        }))
    }

    async fn messages(
        &self,
        guild_id: &GuildId,
        channel_id: &ChannelId,
        query: &MessageQuery,
    ) -> Result<Vec<MessageRow>, sqlx::Error> {
        let mut sql =
            QueryBuilder::<Sqlite>::new("SELECT * FROM messages WHERE deleted = 0 AND guild_id = ");
        sql.push_bind(guild_id.as_str()).push(" AND channel_id = ").push_bind(channel_id.as_str());
        if let Some(before) = query.before_seq {
            sql.push(" AND created_seq < ").push_bind(to_i64(before));
        }
        if let Some(after) = query.after_seq {
            sql.push(" AND created_seq > ").push_bind(to_i64(after));
        }
        let oldest_first = query.oldest_first();
        sql.push(if oldest_first {
            " ORDER BY created_seq ASC"
        } else {
            " ORDER BY created_seq DESC"
        });
        sql.push(" LIMIT ").push_bind(i64::from(query.limit));
        let rows = sql.build().fetch_all(&self.pool).await?;
        let mut messages = rows.iter().map(message_from_row).collect::<Result<Vec<_>, _>>()?;
        if oldest_first {
            messages.reverse();
        }
        Ok(messages)
    }

    async fn page(
        &self,
        guild_id: &GuildId,
        channel_id: &ChannelId,
        query: &MessageQuery,
        viewer: &UserId,
    ) -> Result<MessagePage, sqlx::Error> {
        self.readers.page(guild_id, channel_id, query, viewer).await
    }

    async fn reactions(
        &self,
        guild_id: &GuildId,
        message_ids: &[EventId],
        viewer: &UserId,
    ) -> Result<Vec<ReactionCount>, sqlx::Error> {
        if message_ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut sql = QueryBuilder::<Sqlite>::new(
            "SELECT message_id, emoji, COUNT(*) AS count, MAX(user_id = ",
        );
        sql.push_bind(viewer.as_str())
            .push(") AS me, MIN(seq) AS first FROM reactions WHERE guild_id = ")
            .push_bind(guild_id.as_str())
            .push(" AND message_id IN (");
        let mut ids = sql.separated(", ");
        for id in message_ids {
            ids.push_bind(id.as_str());
        }
        sql.push(") GROUP BY message_id, emoji ORDER BY first");
        let rows = sql.build().fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| {
                let id: String = row.try_get("message_id")?;
                Ok(ReactionCount {
                    message_id: EventId::parse(&id)
                        .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
                    emoji: row.try_get("emoji")?,
                    count: to_u64(row.try_get("count")?),
                    me: row.try_get("me")?,
                })
            })
            .collect()
    }

    async fn reactors(
        &self,
        guild_id: &GuildId,
        message_id: &EventId,
        emoji: &str,
        limit: u32,
    ) -> Result<Vec<UserId>, sqlx::Error> {
        let users: Vec<String> = sqlx::query_scalar(
            "SELECT user_id FROM reactions WHERE guild_id = ? AND message_id = ? AND emoji = ?
             ORDER BY seq LIMIT ?",
        )
        .bind(guild_id.as_str())
        .bind(message_id.as_str())
        .bind(emoji)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(users.iter().filter_map(|user| UserId::parse(user).ok()).collect())
    }

    async fn has_reacted(
        &self,
        guild_id: &GuildId,
        message_id: &EventId,
        user: &UserId,
        emoji: &str,
    ) -> Result<bool, sqlx::Error> {
        let found: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM reactions WHERE guild_id = ? AND message_id = ? AND user_id = ? AND emoji = ?",
        )
        .bind(guild_id.as_str())
        .bind(message_id.as_str())
        .bind(user.as_str())
        .bind(emoji)
        .fetch_optional(&self.pool)
        .await?;
        Ok(found.is_some())
    }

    async fn pins(
        &self,
        guild_id: &GuildId,
        channel_id: &ChannelId,
    ) -> Result<Vec<MessageRow>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT m.* FROM pins p
             JOIN messages m ON m.guild_id = p.guild_id AND m.message_id = p.message_id
             WHERE p.guild_id = ? AND p.channel_id = ? ORDER BY p.pinned_ts DESC",
        )
        .bind(guild_id.as_str())
        .bind(channel_id.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(message_from_row).collect()
    }

    async fn is_pinned(
        &self,
        guild_id: &GuildId,
        message_id: &EventId,
    ) -> Result<bool, sqlx::Error> {
        let found: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM pins WHERE guild_id = ? AND message_id = ?")
                .bind(guild_id.as_str())
                .bind(message_id.as_str())
                .fetch_optional(&self.pool)
                .await?;
        Ok(found.is_some())
    }

    async fn pinned_among(
        &self,
        guild_id: &GuildId,
        message_ids: &[EventId],
    ) -> Result<std::collections::HashSet<EventId>, sqlx::Error> {
        if message_ids.is_empty() {
            return Ok(std::collections::HashSet::new());
        }
        let mut sql = QueryBuilder::<Sqlite>::new("SELECT message_id FROM pins WHERE guild_id = ");
        sql.push_bind(guild_id.as_str()).push(" AND message_id IN (");
        let mut ids = sql.separated(", ");
        for id in message_ids {
            ids.push_bind(id.as_str());
        }
        sql.push(")");
        let pinned: Vec<String> = sql.build_query_scalar().fetch_all(&self.pool).await?;
        pinned
            .iter()
            .map(|id| EventId::parse(id).map_err(|e| sqlx::Error::Decode(Box::new(e))))
            .collect()
    }

    async fn search(
        &self,
        guild_id: &GuildId,
        query: &SearchQuery,
    ) -> Result<Vec<MessageRow>, sqlx::Error> {
        if query.channels.is_empty() || query.words.is_empty() {
            return Ok(Vec::new());
        }
        // Each word becomes a quoted FTS5 string, so user input can never be FTS syntax.
        let matcher = query
            .words
            .iter()
            .map(|word| format!("\"{}\"", word.replace('"', "\"\"")))
            .collect::<Vec<_>>()
            .join(" ");
        let mut sql = QueryBuilder::<Sqlite>::new(
            "SELECT m.* FROM messages_fts f JOIN messages m ON m.rowid = f.rowid WHERE messages_fts MATCH ",
        );
        sql.push_bind(matcher)
            .push(" AND m.deleted = 0 AND m.guild_id = ")
            .push_bind(guild_id.as_str());
        sql.push(" AND m.channel_id IN (");
        let mut channels = sql.separated(", ");
        for channel in &query.channels {
            channels.push_bind(channel.as_str());
        }
        sql.push(")");
        if let Some(author) = &query.author {
            sql.push(" AND m.author = ").push_bind(author.as_str());
        }
        if let Some(after) = query.after_ts {
            sql.push(" AND m.created_ts >= ").push_bind(to_i64(after));
        }
        if let Some(before) = query.before_ts {
            sql.push(" AND m.created_ts < ").push_bind(to_i64(before));
        }
        sql.push(" ORDER BY m.created_seq DESC LIMIT ").push_bind(i64::from(query.limit));
        let rows = sql.build().fetch_all(&self.pool).await?;
        rows.iter().map(message_from_row).collect()
    }
}
