//! media: the SQLite implementation of [`MediaStore`].

use super::SqliteStore;
use crate::store::media::{GuildRef, MediaRow, MediaStore, RefKind};
use crate::store::{now_ms, to_i64, to_u64};
use guildhall_spec::{GuildId, MediaId, ServerName, UserId};
use sqlx::{Row, Sqlite, Transaction};

fn media_row(row: &sqlx::sqlite::SqliteRow) -> Option<MediaRow> {
    let id: String = row.get("media_id");
    let width: Option<i64> = row.get("width");
    let height: Option<i64> = row.get("height");
    let thumbnail: Option<String> = row.get("thumbnail_id");
    let uploader: Option<String> = row.get("uploader");
    Some(MediaRow {
        media_id: MediaId::parse(&id).ok()?,
        size: to_u64(row.get("size")),
        content_type: row.get("content_type"),
        dimensions: width
            .zip(height)
            .and_then(|(w, h)| Some((u32::try_from(w).ok()?, u32::try_from(h).ok()?))),
        thumbnail_id: thumbnail.and_then(|t| MediaId::parse(&t).ok()),
        uploader: uploader.and_then(|u| UserId::parse(&u).ok()),
    })
}

const ADD_REF: &str = "INSERT OR IGNORE INTO media_refs (media_id, kind, guild_id, owner, source) VALUES (?, ?, ?, ?, ?)";
const DROP_REFS: &str =
    "DELETE FROM media_refs WHERE kind = ? AND guild_id = ? AND owner = ? RETURNING media_id";
/// Starts the grace period of media nothing references any more.
const UNREFERENCED: &str = "UPDATE media SET unreferenced_since = ?
     WHERE media_id = ? AND NOT EXISTS (SELECT 1 FROM media_refs WHERE media_id = ?)";

/// [`add_ref`] in a transaction of the writer thread ([`super::writer`]).
pub(super) fn add_ref_direct(
    tx: &rusqlite::Connection,
    media_id: &MediaId,
    kind: RefKind,
    guild_id: Option<&GuildId>,
    owner: &str,
    source: Option<&ServerName>,
) -> rusqlite::Result<()> {
    tx.prepare_cached(ADD_REF)?.execute(rusqlite::params![
        media_id.as_str(),
        kind.as_str(),
        guild_id.map_or("", GuildId::as_str),
        owner,
        source.map(ServerName::as_str),
    ])?;
    Ok(())
}

/// [`drop_refs`] in a transaction of the writer thread ([`super::writer`]).
pub(super) fn drop_refs_direct(
    tx: &rusqlite::Connection,
    kind: RefKind,
    guild_id: Option<&GuildId>,
    owner: &str,
) -> rusqlite::Result<()> {
    let guild = guild_id.map_or("", GuildId::as_str);
    let dropped: Vec<String> = tx
        .prepare_cached(DROP_REFS)?
        .query_map(rusqlite::params![kind.as_str(), guild, owner], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let now = to_i64(now_ms());
    for id in dropped {
        tx.prepare_cached(UNREFERENCED)?.execute(rusqlite::params![now, id, id])?;
    }
    Ok(())
}

/// Adds a reference (no change if it exists).
pub(super) async fn add_ref(
    tx: &mut Transaction<'_, Sqlite>,
    media_id: &MediaId,
    kind: RefKind,
    guild_id: Option<&GuildId>,
    owner: &str,
    source: Option<&ServerName>,
) -> Result<(), sqlx::Error> {
    sqlx::query(ADD_REF)
        .bind(media_id.as_str())
        .bind(kind.as_str())
        .bind(guild_id.map_or("", GuildId::as_str))
        .bind(owner)
        .bind(source.map(ServerName::as_str))
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Removes the references of one owner; media left unreferenced starts its grace period.
pub(super) async fn drop_refs(
    tx: &mut Transaction<'_, Sqlite>,
    kind: RefKind,
    guild_id: Option<&GuildId>,
    owner: &str,
) -> Result<(), sqlx::Error> {
    let guild = guild_id.map_or("", GuildId::as_str);
    let dropped: Vec<String> = sqlx::query_scalar(DROP_REFS)
        .bind(kind.as_str())
        .bind(guild)
        .bind(owner)
        .fetch_all(&mut **tx)
        .await?;
    for id in dropped {
        sqlx::query(UNREFERENCED)
            .bind(to_i64(now_ms()))
            .bind(&id)
            .bind(&id)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

#[async_trait::async_trait]
impl MediaStore for SqliteStore {
    async fn record_media(&self, media: &MediaRow) -> Result<(), sqlx::Error> {
        let now = to_i64(now_ms());
        let mut tx = self.write().await?;
        sqlx::query(
            "INSERT INTO media (media_id, size, content_type, width, height, thumbnail_id, uploader, created_ts, unreferenced_since)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (media_id) DO UPDATE SET unreferenced_since = excluded.unreferenced_since,
                 thumbnail_id = COALESCE(media.thumbnail_id, excluded.thumbnail_id)",
        )
        .bind(media.media_id.as_str())
        .bind(to_i64(media.size))
        .bind(&media.content_type)
        .bind(media.dimensions.map(|(w, _)| i64::from(w)))
        .bind(media.dimensions.map(|(_, h)| i64::from(h)))
        .bind(media.thumbnail_id.as_ref().map(MediaId::as_str))
        .bind(media.uploader.as_ref().map(UserId::as_str))
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if let Some(thumbnail) = &media.thumbnail_id {
            add_ref(&mut tx, thumbnail, RefKind::Thumbnail, None, media.media_id.as_str(), None)
                .await?;
        }
        if let Some(uploader) = &media.uploader {
            sqlx::query(
                "INSERT INTO media_uploads (media_id, user_id, uploaded_ts) VALUES (?, ?, ?)
                 ON CONFLICT (media_id, user_id) DO UPDATE SET uploaded_ts = excluded.uploaded_ts",
            )
            .bind(media.media_id.as_str())
            .bind(uploader.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await
    }

    async fn pending_upload_bytes(&self, user: &UserId) -> Result<u64, sqlx::Error> {
        let total: Option<i64> = sqlx::query_scalar(
            "SELECT SUM(m.size) FROM media_uploads u JOIN media m ON m.media_id = u.media_id
             WHERE u.user_id = ?
               AND NOT EXISTS (SELECT 1 FROM media_refs r WHERE r.media_id = u.media_id)",
        )
        .bind(user.as_str())
        .fetch_one(&self.pool)
        .await?;
        Ok(total.map_or(0, to_u64))
    }

    async fn uploaded_by(&self, media_id: &MediaId, user: &UserId) -> Result<bool, sqlx::Error> {
        let found: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM media_uploads WHERE media_id = ? AND user_id = ?")
                .bind(media_id.as_str())
                .bind(user.as_str())
                .fetch_optional(&self.pool)
                .await?;
        Ok(found.is_some())
    }

    async fn lease_media(&self, ids: &[MediaId]) -> Result<Vec<MediaId>, sqlx::Error> {
        let now = to_i64(now_ms());
        let mut tx = self.write().await?;
        let mut missing = Vec::new();
        for id in ids {
            let leased = sqlx::query(
                "UPDATE media SET unreferenced_since = MAX(unreferenced_since, ?) WHERE media_id = ?",
            )
            .bind(now)
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
            if leased.rows_affected() == 0 {
                missing.push(id.clone());
            }
        }
        tx.commit().await?;
        Ok(missing)
    }

    async fn verify_media_refs(
        &self,
        media_id: &MediaId,
        source: &ServerName,
    ) -> Result<(), sqlx::Error> {
        let mut tx = self.write().await?;
        sqlx::query(
            "UPDATE media_refs SET verified = 1
             WHERE media_id = ? AND (source = ? OR substr(guild_id, -length(?) - 1) = ':' || ?)",
        )
        .bind(media_id.as_str())
        .bind(source.as_str())
        .bind(source.as_str())
        .bind(source.as_str())
        .execute(&mut *tx)
        .await?;
        tx.commit().await
    }

    async fn media(&self, media_id: &MediaId) -> Result<Option<MediaRow>, sqlx::Error> {
        let row = sqlx::query("SELECT * FROM media WHERE media_id = ?")
            .bind(media_id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().and_then(media_row))
    }

    async fn media_guild_refs(&self, media_id: &MediaId) -> Result<Vec<GuildRef>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT guild_id, source, MAX(verified) AS verified FROM media_refs
             WHERE media_id = ? AND guild_id != ''
             GROUP BY guild_id, source ORDER BY verified DESC LIMIT 1000",
        )
        .bind(media_id.as_str())
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .filter_map(|row| {
                let guild: String = row.get("guild_id");
                let source: Option<String> = row.get("source");
                let verified: i64 = row.get("verified");
                Some(GuildRef {
                    guild_id: GuildId::parse(&guild).ok()?,
                    source: source.and_then(|s| ServerName::parse(&s).ok()),
                    verified: verified != 0,
                })
            })
            .collect())
    }

    async fn media_avatar_of(&self, media_id: &MediaId) -> Result<Vec<UserId>, sqlx::Error> {
        let owners: Vec<String> = sqlx::query_scalar(
            "SELECT owner FROM media_refs WHERE media_id = ? AND kind = 'avatar' LIMIT 100",
        )
        .bind(media_id.as_str())
        .fetch_all(&self.pool)
        .await?;
        Ok(owners.iter().filter_map(|o| UserId::parse(o).ok()).collect())
    }

    async fn thumbnail_of(&self, media_id: &MediaId) -> Result<Option<MediaId>, sqlx::Error> {
        let owner: Option<String> = sqlx::query_scalar(
            "SELECT owner FROM media_refs WHERE media_id = ? AND kind = 'thumbnail' LIMIT 1",
        )
        .bind(media_id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        Ok(owner.and_then(|o| MediaId::parse(&o).ok()))
    }

    async fn set_avatar_ref(
        &self,
        user: &UserId,
        avatar: Option<&MediaId>,
    ) -> Result<(), sqlx::Error> {
        let mut tx = self.write().await?;
        drop_refs(&mut tx, RefKind::Avatar, None, user.as_str()).await?;
        if let Some(avatar) = avatar {
            add_ref(&mut tx, avatar, RefKind::Avatar, None, user.as_str(), None).await?;
        }
        tx.commit().await
    }

    async fn collect_media(&self, cutoff_ms: u64, limit: u32) -> Result<Vec<MediaId>, sqlx::Error> {
        let mut tx = self.write().await?;
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT media_id FROM media m
             WHERE unreferenced_since < ?
               AND NOT EXISTS (SELECT 1 FROM media_refs r WHERE r.media_id = m.media_id)
             LIMIT ?",
        )
        .bind(to_i64(cutoff_ms))
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        for id in &ids {
            sqlx::query("DELETE FROM media WHERE media_id = ?").bind(id).execute(&mut *tx).await?;
            sqlx::query("DELETE FROM media_uploads WHERE media_id = ?")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            drop_refs(&mut tx, RefKind::Thumbnail, None, id).await?;
        }
        tx.commit().await?;
        Ok(ids.iter().filter_map(|id| MediaId::parse(id).ok()).collect())
    }
}
