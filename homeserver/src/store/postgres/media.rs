//! media: the PostgreSQL implementation of [`MediaStore`].

use super::PostgresStore;
use crate::store::media::*;
use guildhall_spec::{GuildId, MediaId, ServerName, UserId};

#[async_trait::async_trait]
impl MediaStore for PostgresStore {
    async fn record_media(&self, media: &MediaRow) -> Result<(), sqlx::Error> {
        todo!()
    }

    async fn pending_upload_bytes(&self, user: &UserId) -> Result<u64, sqlx::Error> {
        todo!()
    }

    async fn uploaded_by(&self, media_id: &MediaId, user: &UserId) -> Result<bool, sqlx::Error> {
        todo!()
    }

    async fn lease_media(&self, ids: &[MediaId]) -> Result<Vec<MediaId>, sqlx::Error> {
        todo!()
    }

    async fn verify_media_refs(
        &self,
        media_id: &MediaId,
        source: &ServerName,
    ) -> Result<(), sqlx::Error> {
        todo!()
    }

    async fn media(&self, media_id: &MediaId) -> Result<Option<MediaRow>, sqlx::Error> {
        todo!()
    }

    async fn media_guild_refs(&self, media_id: &MediaId) -> Result<Vec<GuildRef>, sqlx::Error> {
        todo!()
    }

    async fn media_avatar_of(&self, media_id: &MediaId) -> Result<Vec<UserId>, sqlx::Error> {
        todo!()
    }

    async fn thumbnail_of(&self, media_id: &MediaId) -> Result<Option<MediaId>, sqlx::Error> {
        todo!()
    }

    async fn set_avatar_ref(
        &self,
        user: &UserId,
        avatar: Option<&MediaId>,
    ) -> Result<(), sqlx::Error> {
        todo!()
    }

    async fn collect_media(&self, cutoff_ms: u64, limit: u32) -> Result<Vec<MediaId>, sqlx::Error> {
        todo!()
    }
}
