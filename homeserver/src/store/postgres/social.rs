//! social: the PostgreSQL implementation of [`SocialStore`].

use super::PostgresStore;
use crate::store::social::*;
use guildhall_spec::{GuildId, UserId};

#[async_trait::async_trait]
impl SocialStore for PostgresStore {
    async fn relationships(&self, user: &UserId) -> Result<Vec<RelationshipRow>, sqlx::Error> {
        todo!()
    }

    async fn relationship(
        &self,
        user: &UserId,
        other: &UserId,
    ) -> Result<Option<String>, sqlx::Error> {
        todo!()
    }

    async fn set_relationship(
        &self,
        user: &UserId,
        other: &UserId,
        mine: &str,
        theirs: &str,
    ) -> Result<(), sqlx::Error> {
        todo!()
    }

    async fn delete_relationship(
        &self,
        user: &UserId,
        other: &UserId,
    ) -> Result<bool, sqlx::Error> {
        todo!()
    }

    async fn block(&self, user: &UserId, blocked: &UserId) -> Result<(), sqlx::Error> {
        todo!()
    }

    async fn unblock(&self, user: &UserId, blocked: &UserId) -> Result<bool, sqlx::Error> {
        todo!()
    }

    async fn blocked_by(&self, user: &UserId) -> Result<Vec<UserId>, sqlx::Error> {
        todo!()
    }

    async fn is_blocked_between(&self, a: &UserId, b: &UserId) -> Result<bool, sqlx::Error> {
        todo!()
    }

    async fn direct_message(&self, a: &UserId, b: &UserId) -> Result<Option<GuildId>, sqlx::Error> {
        todo!()
    }

    async fn record_direct_message(
        &self,
        a: &UserId,
        b: &UserId,
        guild: &GuildId,
    ) -> Result<(), sqlx::Error> {
        todo!()
    }
}
