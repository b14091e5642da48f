//! messages: the PostgreSQL implementation of [`MessageStore`].

use super::PostgresStore;
use crate::store::messages::*;
use guildhall_spec::state::MessageFacts;
use guildhall_spec::{ChannelId, EventId, GuildId, MediaId, UserId};

#[async_trait::async_trait]
impl MessageStore for PostgresStore {
    async fn message(
        &self,
        guild_id: &GuildId,
        message_id: &EventId,
    ) -> Result<Option<MessageRow>, sqlx::Error> {
        todo!()
    }

    async fn message_facts(
        &self,
        guild_id: &GuildId,
        message_id: &EventId,
    ) -> Result<Option<MessageFacts>, sqlx::Error> {
        todo!()
    }

    async fn messages(
        &self,
        guild_id: &GuildId,
        channel_id: &ChannelId,
        query: &MessageQuery,
    ) -> Result<Vec<MessageRow>, sqlx::Error> {
        todo!()
    }

    async fn reactions(
        &self,
        guild_id: &GuildId,
        message_ids: &[EventId],
        viewer: &UserId,
    ) -> Result<Vec<ReactionCount>, sqlx::Error> {
        todo!()
    }

    async fn reactors(
        &self,
        guild_id: &GuildId,
        message_id: &EventId,
        emoji: &str,
        limit: u32,
    ) -> Result<Vec<UserId>, sqlx::Error> {
        todo!()
    }

    async fn has_reacted(
        &self,
        guild_id: &GuildId,
        message_id: &EventId,
        user: &UserId,
        emoji: &str,
    ) -> Result<bool, sqlx::Error> {
        todo!()
    }

    async fn pins(
        &self,
        guild_id: &GuildId,
        channel_id: &ChannelId,
    ) -> Result<Vec<MessageRow>, sqlx::Error> {
        todo!()
    }

    async fn is_pinned(
        &self,
        guild_id: &GuildId,
        message_id: &EventId,
    ) -> Result<bool, sqlx::Error> {
        todo!()
    }

    async fn search(
        &self,
        guild_id: &GuildId,
        query: &SearchQuery,
    ) -> Result<Vec<MessageRow>, sqlx::Error> {
        todo!()
    }
}
