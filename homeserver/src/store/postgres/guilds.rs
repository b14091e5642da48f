//! guilds: the PostgreSQL implementation of [`GuildStore`].

use super::{GUILD_LOCK_CLASS, HeldLock, PostgresStore, lock};
use crate::store::guilds::*;
use crate::store::to_u64;
use guildhall_spec::content::EventContent;
use guildhall_spec::event::JsonObject;
use guildhall_spec::state::GuildState;
use guildhall_spec::{ChannelId, EventId, GuildId, InviteCode, ServerName, TxnId, UserId};

#[async_trait::async_trait]
impl GuildStore for PostgresStore {
    async fn lock_guild(&self, guild_id: &GuildId) -> Result<GuildLock, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        lock(&mut tx, GUILD_LOCK_CLASS, guild_id.as_str()).await?;
        Ok(GuildLock::holding(HeldLock(std::sync::Mutex::new(Some(tx)))))
    }

    async fn head_seq(&self, guild_id: &GuildId) -> Result<Option<u64>, sqlx::Error> {
        let seq: Option<i64> =
            sqlx::query_scalar("SELECT head_seq FROM guilds WHERE guild_id = $1")
                .bind(guild_id.as_str())
                .fetch_optional(&self.pool)
                .await?;
        Ok(seq.map(to_u64))
    }

    async fn guild(
        &self,
        guild_id: &GuildId,
    ) -> Result<Option<(u64, EventId, GuildState)>, sqlx::Error> {
        todo!()
    }

    async fn install_snapshot(
        &self,
        state: &GuildState,
        seq: u64,
        event_id: &EventId,
    ) -> Result<(), sqlx::Error> {
        todo!()
    }

    async fn replicated_guilds(&self, me: &ServerName) -> Result<Vec<GuildId>, sqlx::Error> {
        todo!()
    }

    async fn withheld_events(
        &self,
        guild_id: &GuildId,
        limit: u32,
    ) -> Result<Vec<EventId>, sqlx::Error> {
        todo!()
    }

    async fn fill_withheld(
        &self,
        event: &StoredEvent,
        content: &EventContent,
    ) -> Result<bool, sqlx::Error> {
        todo!()
    }

    async fn is_erased(
        &self,
        guild_id: &GuildId,
        message_id: &EventId,
    ) -> Result<bool, sqlx::Error> {
        todo!()
    }

    async fn has_event(&self, event_id: &EventId) -> Result<bool, sqlx::Error> {
        todo!()
    }

    async fn guilds_of(&self, user_id: &UserId) -> Result<Vec<GuildId>, sqlx::Error> {
        todo!()
    }

    async fn member_channel_guilds(
        &self,
        channel_id: &ChannelId,
        member: &UserId,
    ) -> Result<Vec<GuildId>, sqlx::Error> {
        todo!()
    }

    async fn member_invite_guilds(
        &self,
        code: &InviteCode,
        member: &UserId,
    ) -> Result<Vec<GuildId>, sqlx::Error> {
        todo!()
    }

    async fn hosted_invite_guild(
        &self,
        code: &InviteCode,
        host: &ServerName,
    ) -> Result<Option<GuildId>, sqlx::Error> {
        todo!()
    }

    async fn channel_id_used_elsewhere(
        &self,
        channel_id: &ChannelId,
        guild_id: &GuildId,
    ) -> Result<bool, sqlx::Error> {
        todo!()
    }

    async fn invite_code_used_elsewhere(
        &self,
        code: &InviteCode,
        guild_id: &GuildId,
    ) -> Result<bool, sqlx::Error> {
        todo!()
    }

    async fn txn_event(
        &self,
        sender: &UserId,
        txn_id: &TxnId,
    ) -> Result<Option<StoredEvent>, sqlx::Error> {
        todo!()
    }

    async fn events_since(
        &self,
        stream_id: i64,
        guilds: &[GuildId],
        limit: u32,
    ) -> Result<Vec<StoredEvent>, sqlx::Error> {
        todo!()
    }

    async fn stream_head(&self) -> Result<i64, sqlx::Error> {
        todo!()
    }

    async fn append_event(&self, appended: &AppendedEvent<'_>) -> Result<i64, sqlx::Error> {
        todo!()
    }
}
