//! Media rows and the references that keep them (spec 19): which media ids this server holds,
//! what they are, and what refers to them.

use guildhall_spec::{GuildId, MediaId, ServerName, UserId};

/// A media id this server holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaRow {
    /// The id.
    pub media_id: MediaId,
    /// Size in bytes.
    pub size: u64,
    /// The sniffed type.
    pub content_type: String,
    /// Width and height of a picture.
    pub dimensions: Option<(u32, u32)>,
    /// The thumbnail of a picture larger than the thumbnail square.
    pub thumbnail_id: Option<MediaId>,
    /// The local user who uploaded it first; `None` for a copy fetched from another server.
    pub uploader: Option<UserId>,
}

/// What refers to a media id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefKind {
    /// An attachment of a message (owner: the message id).
    Message,
    /// A guild's icon (owner: the guild id).
    GuildIcon,
    /// A local user's avatar (owner: the user id; no guild).
    Avatar,
    /// A picture's thumbnail (owner: the picture's media id; no guild).
    Thumbnail,
}

impl RefKind {
    /// The name stored in the `kind` column.
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::Message => "message",
            Self::GuildIcon => "guild_icon",
            Self::Avatar => "avatar",
            Self::Thumbnail => "thumbnail",
        }
    }
}

/// A reference from a guild: which guild, and which server put it there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuildRef {
    /// The guild.
    pub guild_id: GuildId,
    /// The server whose user's event made the reference (asked first for the bytes).
    pub source: Option<ServerName>,
    /// This server got the bytes from `source` or from the guild's host.
    pub verified: bool,
}

impl GuildRef {
    /// Whether the reference stands for the bytes: `me`'s own user made it, or `me` got the
    /// bytes from where it came from (a reference alone proves nothing: anyone can name a hash).
    pub fn vouched(&self, me: &ServerName) -> bool {
        self.verified || self.source.as_ref() == Some(me)
    }
}

/// Media records and references.
#[async_trait::async_trait]
pub trait MediaStore: Send + Sync {
    /// Records stored media (or media stored again). An unreferenced row starts its grace period
    /// anew. `uploader` is remembered as one of the users who uploaded it.
    async fn record_media(&self, media: &MediaRow) -> Result<(), sqlx::Error>;

    /// The bytes of the media `user` uploaded that nothing refers to (yet).
    async fn pending_upload_bytes(&self, user: &UserId) -> Result<u64, sqlx::Error>;

    /// Whether `user` uploaded `media_id`.
    async fn uploaded_by(&self, media_id: &MediaId, user: &UserId) -> Result<bool, sqlx::Error>;

    /// Gives media about to be referenced a fresh grace period (a message that names them may
    /// take a while to reach the log); answers the ids this server does not hold.
    async fn lease_media(&self, ids: &[MediaId]) -> Result<Vec<MediaId>, sqlx::Error>;

    /// This server got `media_id`'s bytes from `source`: its references from `source`, and those
    /// in guilds `source` hosts, now stand for the bytes.
    async fn verify_media_refs(
        &self,
        media_id: &MediaId,
        source: &ServerName,
    ) -> Result<(), sqlx::Error>;

    /// A media row, if this server holds the media.
    async fn media(&self, media_id: &MediaId) -> Result<Option<MediaRow>, sqlx::Error>;

    /// The guilds whose events refer to a media id (attachments, icons), verified references
    /// first, at most 1,000.
    async fn media_guild_refs(&self, media_id: &MediaId) -> Result<Vec<GuildRef>, sqlx::Error>;

    /// The local users whose avatar a media id is.
    async fn media_avatar_of(&self, media_id: &MediaId) -> Result<Vec<UserId>, sqlx::Error>;

    /// The picture a media id is the thumbnail of, if it is one.
    async fn thumbnail_of(&self, media_id: &MediaId) -> Result<Option<MediaId>, sqlx::Error>;

    /// A local user's avatar is now `avatar`: the old one loses its reference.
    async fn set_avatar_ref(
        &self,
        user: &UserId,
        avatar: Option<&MediaId>,
    ) -> Result<(), sqlx::Error>;

    /// Forgets media that nothing has referred to since before `cutoff_ms`, at most `limit` at a
    /// time, and answers their ids; the caller deletes the bytes. Thumbnails of forgotten
    /// pictures lose their reference (and go in a later round).
    async fn collect_media(&self, cutoff_ms: u64, limit: u32) -> Result<Vec<MediaId>, sqlx::Error>;
}
