//! guilds: the SQLite implementation of [`GuildStore`].

use super::SqliteStore;
use super::projections::{MembershipChange, Projected, message_target, messages_projection};
use super::writer::to_sqlx;
use crate::store::guilds::{AppendedEvent, GuildLock, GuildStore, StoredEvent};
use crate::store::{to_i64, to_u64};
use guildhall_spec::content::{EventContent, GuildKind};
use guildhall_spec::event::JsonObject;
use guildhall_spec::state::GuildState;
use guildhall_spec::{ChannelId, EventId, GuildId, InviteCode, MediaId, ServerName, TxnId, UserId};
use rusqlite::params;
use sqlx::{Row, Sqlite};

fn state_json(state: &GuildState) -> Result<String, sqlx::Error> {
    serde_json::to_string(state).map_err(|e| sqlx::Error::Encode(Box::new(e)))
}

pub(super) fn stored_event(row: &sqlx::sqlite::SqliteRow) -> Result<StoredEvent, sqlx::Error> {
    let decode = |e: String| sqlx::Error::Decode(e.into());
    let guild_id: String = row.try_get("guild_id")?;
    let event_id: String = row.try_get("event_id")?;
    let envelope: String = row.try_get("envelope")?;
    let content: Option<String> = row.try_get("content")?;
    let mut event: JsonObject =
        serde_json::from_str(&envelope).map_err(|e| decode(e.to_string()))?;
    if let Some(content) = content {
        let content: serde_json::Value =
            serde_json::from_str(&content).map_err(|e| decode(e.to_string()))?;
        event.insert("content".into(), content);
    }
    Ok(StoredEvent {
        stream_id: row.try_get("stream_id")?,
        guild_id: GuildId::parse(&guild_id).map_err(|e| decode(e.to_string()))?,
        seq: to_u64(row.try_get("seq")?),
        event_id: EventId::parse(&event_id).map_err(|e| decode(e.to_string()))?,
        event,
    })
}

#[async_trait::async_trait]
impl GuildStore for SqliteStore {
    async fn lock_guild(&self, _guild_id: &GuildId) -> Result<GuildLock, sqlx::Error> {
        Ok(GuildLock::unshared())
    }

    async fn head_seq(&self, guild_id: &GuildId) -> Result<Option<u64>, sqlx::Error> {
        let seq: Option<i64> = sqlx::query_scalar("SELECT head_seq FROM guilds WHERE guild_id = ?")
            .bind(guild_id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        Ok(seq.map(to_u64))
    }

    async fn guild(
        &self,
        guild_id: &GuildId,
    ) -> Result<Option<(u64, EventId, GuildState)>, sqlx::Error> {
        let row =
            sqlx::query("SELECT head_seq, head_event_id, state FROM guilds WHERE guild_id = ?")
                .bind(guild_id.as_str())
                .fetch_optional(&self.pool)
                .await?;
        let Some(row) = row else { return Ok(None) };
        let head_event_id: String = row.try_get("head_event_id")?;
        let state: String = row.try_get("state")?;
        let decode = |e: String| sqlx::Error::Decode(e.into());
        Ok(Some((
            to_u64(row.try_get("head_seq")?),
            EventId::parse(&head_event_id).map_err(|e| decode(e.to_string()))?,
            serde_json::from_str(&state).map_err(|e| decode(e.to_string()))?,
        )))
    }

    async fn install_snapshot(
        &self,
        state: &GuildState,
        seq: u64,
        event_id: &EventId,
    ) -> Result<(), sqlx::Error> {
        let mut tx = self.write().await?;
        let guild = state.guild_id.as_str();
        let kind = match state.kind {
            GuildKind::Guild => "guild",
            GuildKind::Dm => "dm",
        };
        sqlx::query("INSERT OR REPLACE INTO guilds (guild_id, kind, head_seq, head_event_id, state) VALUES (?, ?, ?, ?, ?)")
            .bind(guild)
            .bind(kind)
            .bind(to_i64(seq))
            .bind(event_id.as_str())
            .bind(state_json(state)?)
            .execute(&mut *tx)
            .await?;
        for table in ["guild_members", "channels", "invites"] {
            sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {table} WHERE guild_id = ?")))
                .bind(guild)
                .execute(&mut *tx)
                .await?;
        }
        for user in state.members.keys() {
            sqlx::query("INSERT OR IGNORE INTO guild_members (guild_id, user_id) VALUES (?, ?)")
                .bind(guild)
                .bind(user.as_str())
                .execute(&mut *tx)
                .await?;
        }
        for channel in state.channels.keys() {
            sqlx::query("INSERT OR IGNORE INTO channels (channel_id, guild_id) VALUES (?, ?)")
                .bind(channel.as_str())
                .bind(guild)
                .execute(&mut *tx)
                .await?;
        }
        for code in state.invites.keys() {
            sqlx::query("INSERT OR IGNORE INTO invites (code, guild_id) VALUES (?, ?)")
                .bind(code.as_str())
                .bind(guild)
                .execute(&mut *tx)
                .await?;
        }
        // The icon as of the snapshot (the event that set it may be older than the history a
        // joining server replays), fetched from the host, which keeps it.
        let kind = crate::store::RefKind::GuildIcon;
        super::media::drop_refs(&mut tx, kind, Some(&state.guild_id), guild).await?;
        if let Some(icon) = state.icon.as_deref().and_then(|icon| MediaId::parse(icon).ok()) {
            let host = state.guild_id.host();
            super::media::add_ref(&mut tx, &icon, kind, Some(&state.guild_id), guild, Some(&host))
                .await?;
        }
        tx.commit().await
    }

    async fn replicated_guilds(&self, me: &ServerName) -> Result<Vec<GuildId>, sqlx::Error> {
        let ids: Vec<String> =
            sqlx::query_scalar("SELECT guild_id FROM guilds").fetch_all(&self.pool).await?;
        Ok(ids
            .iter()
            .filter_map(|id| GuildId::parse(id).ok())
            .filter(|id| &id.host() != me)
            .collect())
    }

    async fn withheld_events(
        &self,
        guild_id: &GuildId,
        limit: u32,
    ) -> Result<Vec<EventId>, sqlx::Error> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT event_id FROM (
                 SELECT e.event_id, e.seq FROM events e
                 WHERE e.guild_id = ? AND e.content IS NULL
                   AND NOT EXISTS (SELECT 1 FROM messages m
                                   WHERE m.guild_id = e.guild_id AND m.deleted = 1
                                     AND m.message_id = COALESCE(e.message_id, e.event_id))
                 ORDER BY e.seq DESC LIMIT ?)
             ORDER BY seq",
        )
        .bind(guild_id.as_str())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(ids.iter().filter_map(|id| EventId::parse(id).ok()).collect())
    }

    async fn fill_withheld(
        &self,
        event: &StoredEvent,
        content: &EventContent,
    ) -> Result<bool, sqlx::Error> {
        let Some(content_object) = event.event.get("content") else { return Ok(false) };
        if let Some(target) = message_target(content, &event.event_id)
            && self.is_erased(&event.guild_id, &target).await?
        {
            return Ok(false);
        }
        let envelope: guildhall_spec::event::Envelope = serde_json::from_value(
            serde_json::Value::Object(guildhall_spec::event::envelope(&event.event)),
        )
        .map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
        let target = message_target(content, &event.event_id).map(|id| id.to_string());
        let content_json = content_object.to_string();
        let projected = Projected {
            guild_id: event.guild_id.clone(),
            event_id: event.event_id.clone(),
            sender: envelope.sender,
            seq: event.seq,
            origin_ts: envelope.origin_ts,
            content: content.clone(),
        };
        self.writer
            .transaction(move |tx| {
                let fill = || -> rusqlite::Result<bool> {
                    let updated = tx
                        .prepare_cached(
                            "UPDATE events SET content = ?, message_id = ?
                             WHERE event_id = ? AND content IS NULL
                               AND NOT EXISTS (SELECT 1 FROM messages m
                                               WHERE m.guild_id = ? AND m.message_id = ? AND m.deleted = 1)",
                        )?
                        .execute(params![
                            content_json,
                            target,
                            projected.event_id.as_str(),
                            projected.guild_id.as_str(),
                            target,
                        ])?;
                    if updated == 0 {
                        return Ok(false);
                    }
                    messages_projection(tx, &projected)?;
                    Ok(true)
                };
                fill().map_err(to_sqlx)
            })
            .await
    }

    async fn is_erased(
        &self,
        guild_id: &GuildId,
        message_id: &EventId,
    ) -> Result<bool, sqlx::Error> {
        let found: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM messages WHERE guild_id = ? AND message_id = ? AND deleted = 1",
        )
        .bind(guild_id.as_str())
        .bind(message_id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        Ok(found.is_some())
    }

    async fn has_event(&self, event_id: &EventId) -> Result<bool, sqlx::Error> {
        let found: Option<i64> = sqlx::query_scalar("SELECT 1 FROM events WHERE event_id = ?")
            .bind(event_id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        Ok(found.is_some())
    }

    async fn guilds_of(&self, user_id: &UserId) -> Result<Vec<GuildId>, sqlx::Error> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT guild_id FROM guild_members WHERE user_id = ? ORDER BY guild_id",
        )
        .bind(user_id.as_str())
        .fetch_all(&self.pool)
        .await?;
        Ok(ids.iter().filter_map(|id| GuildId::parse(id).ok()).collect())
    }

    async fn member_channel_guilds(
        &self,
        channel_id: &ChannelId,
        member: &UserId,
    ) -> Result<Vec<GuildId>, sqlx::Error> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT c.guild_id FROM channels c
             JOIN guild_members m ON m.guild_id = c.guild_id AND m.user_id = ?
             WHERE c.channel_id = ? ORDER BY c.guild_id LIMIT 16",
        )
        .bind(member.as_str())
        .bind(channel_id.as_str())
        .fetch_all(&self.pool)
        .await?;
        Ok(ids.iter().filter_map(|id| GuildId::parse(id).ok()).collect())
    }

    async fn member_invite_guilds(
        &self,
        code: &InviteCode,
        member: &UserId,
    ) -> Result<Vec<GuildId>, sqlx::Error> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT i.guild_id FROM invites i
             JOIN guild_members m ON m.guild_id = i.guild_id AND m.user_id = ?
             WHERE i.code = ? ORDER BY i.guild_id LIMIT 16",
        )
        .bind(member.as_str())
        .bind(code.as_str())
        .fetch_all(&self.pool)
        .await?;
        Ok(ids.iter().filter_map(|id| GuildId::parse(id).ok()).collect())
    }

    async fn hosted_invite_guild(
        &self,
        code: &InviteCode,
        host: &ServerName,
    ) -> Result<Option<GuildId>, sqlx::Error> {
        // A guild id is `!opaque:host`, and the opaque part holds no colon.
        let id: Option<String> = sqlx::query_scalar(
            "SELECT guild_id FROM invites
             WHERE code = ? AND substr(guild_id, instr(guild_id, ':') + 1) = ? LIMIT 1",
        )
        .bind(code.as_str())
        .bind(host.as_str())
        .fetch_optional(&self.pool)
        .await?;
        Ok(id.and_then(|id| GuildId::parse(&id).ok()))
    }

    async fn channel_id_used_elsewhere(
        &self,
        channel_id: &ChannelId,
        guild_id: &GuildId,
    ) -> Result<bool, sqlx::Error> {
        let found: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM channels WHERE channel_id = ? AND guild_id != ? LIMIT 1",
        )
        .bind(channel_id.as_str())
        .bind(guild_id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        Ok(found.is_some())
    }

    async fn invite_code_used_elsewhere(
        &self,
        code: &InviteCode,
        guild_id: &GuildId,
    ) -> Result<bool, sqlx::Error> {
        let found: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM invites WHERE code = ? AND guild_id != ? LIMIT 1")
                .bind(code.as_str())
                .bind(guild_id.as_str())
                .fetch_optional(&self.pool)
                .await?;
        Ok(found.is_some())
    }

    async fn txn_event(
        &self,
        sender: &UserId,
        txn_id: &TxnId,
    ) -> Result<Option<StoredEvent>, sqlx::Error> {
        let row = sqlx::query(
            "SELECT e.* FROM txns t JOIN events e ON e.event_id = t.event_id WHERE t.sender = ? AND t.txn_id = ?",
        )
        .bind(sender.as_str())
        .bind(txn_id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(stored_event).transpose()
    }

    async fn events_since(
        &self,
        stream_id: i64,
        guilds: &[GuildId],
        limit: u32,
    ) -> Result<Vec<StoredEvent>, sqlx::Error> {
        if guilds.is_empty() {
            return Ok(Vec::new());
        }
        let mut sql = sqlx::QueryBuilder::<Sqlite>::new("SELECT * FROM events WHERE stream_id > ");
        sql.push_bind(stream_id).push(" AND guild_id IN (");
        let mut ids = sql.separated(", ");
        for guild in guilds {
            ids.push_bind(guild.as_str());
        }
        sql.push(") ORDER BY stream_id LIMIT ").push_bind(i64::from(limit));
        let rows = sql.build().fetch_all(&self.pool).await?;
        rows.iter().map(stored_event).collect()
    }

    async fn stream_head(&self) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar("SELECT COALESCE(MAX(stream_id), 0) FROM events")
            .fetch_one(&self.pool)
            .await
    }

    async fn append_event(&self, appended: &AppendedEvent<'_>) -> Result<i64, sqlx::Error> {
        let append = Append::new(appended)?;
        self.writer.transaction(move |tx| append.write(tx)).await
    }

    async fn append_events(&self, run: &[AppendedEvent<'_>]) -> Result<Vec<i64>, sqlx::Error> {
        let appends = run.iter().map(Append::new).collect::<Result<Vec<_>, _>>()?;
        self.writer
            .transaction(move |tx| appends.iter().map(|append| append.write(tx)).collect())
            .await
    }

    fn settled(&self) -> bool {
        self.fence.settled()
    }

    async fn durable(&self) -> Result<(), sqlx::Error> {
        self.fence.durable().await
    }
}

/// How an append moves the guild's row.
#[derive(Debug)]
enum HeadChange {
    /// The first event stored here (`guild.create`, or a replica's first event without a
    /// snapshot): the row is written whole.
    Create { kind: &'static str, state: String },
    /// The state changed: the head and the state.
    Replace { state: String },
    /// The state is unchanged (a message, most of the log): only the head moves.
    Advance,
}

/// Everything an append writes, owned, so that the whole transaction runs on the writer
/// thread in one hop.
#[derive(Debug)]
struct Append {
    guild: String,
    seq: u64,
    event_id: String,
    event_type: String,
    sender: String,
    txn_id: String,
    origin_ts: u64,
    message_id: Option<String>,
    envelope: String,
    content: Option<String>,
    /// `None` for history stored below the head (a backfill).
    head: Option<HeadChange>,
    membership: Option<MembershipChange>,
    projected: Option<Projected>,
    outbound: Vec<(String, String)>,
}

impl Append {
    fn new(appended: &AppendedEvent<'_>) -> Result<Self, sqlx::Error> {
        let mut envelope = appended.event.clone();
        let content = envelope.remove("content").map(|content| content.to_string());
        let message_id =
            appended.content.and_then(|content| message_target(content, appended.event_id));
        // Most events (messages) change no state: nothing to rewrite, and no walk over every
        // member of a large guild.
        let state_changed = !appended.backfill && appended.state_changed();
        let head = match (appended.backfill, appended.before) {
            (true, _) => None,
            (false, None) => Some(HeadChange::Create {
                kind: match appended.after.kind {
                    GuildKind::Guild => "guild",
                    GuildKind::Dm => "dm",
                },
                state: state_json(appended.after)?,
            }),
            (false, Some(_)) if state_changed => {
                Some(HeadChange::Replace { state: state_json(appended.after)? })
            }
            (false, Some(_)) => Some(HeadChange::Advance),
        };
        Ok(Self {
            guild: appended.guild_id.to_string(),
            seq: appended.seq,
            event_id: appended.event_id.to_string(),
            event_type: appended.event_type.to_owned(),
            sender: appended.sender.to_string(),
            txn_id: appended.txn_id.to_string(),
            origin_ts: appended.origin_ts,
            message_id: message_id.map(|id| id.to_string()),
            envelope: serde_json::Value::Object(envelope).to_string(),
            content,
            head,
            membership: state_changed
                .then(|| MembershipChange::between(appended.before, appended.after)),
            projected: appended.content.map(|content| Projected {
                guild_id: appended.guild_id.clone(),
                event_id: appended.event_id.clone(),
                sender: appended.sender.clone(),
                seq: appended.seq,
                origin_ts: appended.origin_ts,
                content: content.clone(),
            }),
            outbound: appended
                .outbound
                .iter()
                .map(|(destination, event)| {
                    (destination.to_string(), serde_json::Value::Object(event.clone()).to_string())
                })
                .collect(),
        })
    }

    /// Writes the event, its transaction id, the guild's head (and state), the projections and
    /// the outbound copies; returns the event's stream position.
    fn write(&self, tx: &rusqlite::Transaction<'_>) -> Result<i64, sqlx::Error> {
        self.write_rows(tx).map_err(to_sqlx)?.ok_or_else(|| {
            // The head stored is not this event's predecessor: a concurrent writer, or a
            // cached head older than the store. Nothing is written; the caller reloads.
            sqlx::Error::Protocol(format!(
                "{}: the stored head is not seq {}",
                self.guild,
                self.seq - 1
            ))
        })
    }

    fn write_rows(&self, tx: &rusqlite::Connection) -> rusqlite::Result<Option<i64>> {
        let seq = to_i64(self.seq);
        tx.prepare_cached(
            "INSERT INTO events (guild_id, seq, event_id, event_type, sender, origin_ts, message_id, envelope, content)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )?
        .execute(params![
            self.guild,
            seq,
            self.event_id,
            self.event_type,
            self.sender,
            to_i64(self.origin_ts),
            self.message_id,
            self.envelope,
            self.content,
        ])?;
        let stream_id = tx.last_insert_rowid();
        tx.prepare_cached(
            "INSERT OR IGNORE INTO txns (sender, txn_id, event_id) VALUES (?, ?, ?)",
        )?
        .execute(params![self.sender, self.txn_id, self.event_id])?;
        let moved = match &self.head {
            None => 1,
            Some(HeadChange::Create { kind, state }) => tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO guilds (guild_id, kind, head_seq, head_event_id, state) VALUES (?, ?, ?, ?, ?)",
                )?
                .execute(params![self.guild, kind, seq, self.event_id, state])?,
            Some(HeadChange::Replace { state }) => tx
                .prepare_cached(
                    "UPDATE guilds SET head_seq = ?, head_event_id = ?, state = ? WHERE guild_id = ? AND head_seq = ?",
                )?
                .execute(params![seq, self.event_id, state, self.guild, seq - 1])?,
            Some(HeadChange::Advance) => tx
                .prepare_cached(
                    "UPDATE guilds SET head_seq = ?, head_event_id = ? WHERE guild_id = ? AND head_seq = ?",
                )?
                .execute(params![seq, self.event_id, self.guild, seq - 1])?,
        };
        if moved != 1 {
            return Ok(None);
        }
        if let Some(membership) = &self.membership {
            membership.write(tx, &self.guild)?;
        }
        if let Some(projected) = &self.projected {
            messages_projection(tx, projected)?;
        }
        let mut outbound = tx.prepare_cached(
            "INSERT INTO outbound_events (destination, event, event_id) VALUES (?, ?, ?)",
        )?;
        for (destination, event) in &self.outbound {
            outbound.execute(params![destination, event, self.event_id])?;
        }
        Ok(Some(stream_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn withheld_events_leave_out_erased_messages_and_are_capped() {
        let dir = std::env::temp_dir().join(format!("guildhall-withheld-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = SqliteStore::open(&dir.join("db.sqlite3")).await.unwrap();
        let guild = GuildId::parse("!g:host.example").unwrap();
        let id = |seq: i64| format!("${seq:0>42}A");
        for seq in 1..=10_i64 {
            sqlx::query(
                "INSERT INTO events (guild_id, seq, event_id, event_type, sender, origin_ts, message_id, envelope, content)
                 VALUES (?, ?, ?, 'message.create', '@a:host.example', 0, NULL, '{}', NULL)",
            )
            .bind(guild.as_str())
            .bind(seq)
            .bind(id(seq))
            .execute(&store.pool)
            .await
            .unwrap();
        }
        // The message of seq 10 was erased (its withheld create names no message: the content
        // is unknown, but a create's event id is the message id): never asked for again.
        sqlx::query(
            "INSERT INTO messages (guild_id, message_id, channel_id, author, created_seq, created_ts, deleted)
             VALUES (?, ?, 'c', '@a:host.example', 10, 0, 1)",
        )
        .bind(guild.as_str())
        .bind(id(10))
        .execute(&store.pool)
        .await
        .unwrap();
        let ids = |list: Vec<EventId>| list.iter().map(ToString::to_string).collect::<Vec<_>>();
        assert_eq!(ids(store.withheld_events(&guild, 3).await.unwrap()), [id(7), id(8), id(9)]);
        assert_eq!(store.withheld_events(&guild, 100).await.unwrap().len(), 9);
        let _ = std::fs::remove_dir_all(dir);
    }
}
