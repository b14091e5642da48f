//! Media (spec 19): uploads made into content-addressed media, copies fetched from other servers
//! and checked against their hash, the answers that serve bytes (with ranges), and the garbage
//! collector that deletes what nothing refers to any more.
//!
//! Who may see what is decided here too. A client may read media it uploaded, media an event of
//! one of its guilds refers to, and avatars (19.5). Another server is served a media id when it
//! is a member server of a guild in which this server's own user referred to it, or in which a
//! reference came from a server this server got the bytes from (a reference alone proves
//! nothing: anyone can name a hash), or when it shares a guild with the user whose avatar it is
//! (19.3). This server fetches a media id for a user only from the servers whose events in the
//! user's guilds refer to it, and those guilds' hosts (19.2).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::BytesMut;
use futures_util::StreamExt;
use guildhall_media_relay::media::range::{self, Ranged};
use guildhall_media_relay::media::scan::{Clamd, Verdict};
use guildhall_media_relay::media::{
    self as relay, ImageKind, MediaStore, Prepared, Refused, S3Settings, sniff,
};
use guildhall_spec::content::EventContent;
use guildhall_spec::state::GuildState;
use guildhall_spec::{MediaId, ServerName, UserId};
use tokio::sync::{RwLock, Semaphore};

use crate::config::{MediaBackend, MediaConfig};
use crate::error::{ApiError, ApiResult};
use crate::ratelimit::RateLimiter;
use crate::store::{MediaRow, Store, now_ms};
use crate::{AppState, DataDir};

/// Every server accepts and serves media up to this size (spec 19.4).
pub const MIN_MEDIA_LIMIT: u64 = 8 << 20;
/// No server accepts more in v1 (spec 19.4).
pub const MAX_MEDIA_LIMIT: u64 = 100 << 20;
/// Uploads one user may have in progress at once.
const UPLOADS_PER_USER: usize = 2;
/// Garbage collected per round, at most.
const GC_BATCH: u32 = 200;

/// How served media is presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presentation {
    /// To this server's own clients: pictures inline, anything else as a download; cacheable
    /// by the client only (the request carried its token).
    Client,
    /// To another server: always `attachment` (spec 19.3).
    Federation,
}

/// The media service.
pub struct Media {
    /// Where the bytes are.
    pub store: MediaStore,
    config: MediaConfig,
    uploads: Semaphore,
    /// Uploads in progress per user.
    uploading: Mutex<HashMap<UserId, usize>>,
    /// Uploads per user per minute.
    upload_rate: RateLimiter,
    fetches: Semaphore,
    /// Background fetches by the host: at most half the fetch capacity, so clients' requests
    /// always have the rest.
    keepers: Arc<Semaphore>,
    /// One fetch of a media id at a time; the others wait for it and find the copy.
    fetching: Mutex<HashMap<MediaId, Arc<tokio::sync::Mutex<()>>>>,
    /// Writers (storing bytes and rows, leasing media for a message) hold it shared for a moment;
    /// the collector holds it alone while it deletes, so it never deletes what was just stored.
    gate: RwLock<()>,
    scanner: Option<Clamd>,
}

impl std::fmt::Debug for Media {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Media").field("store", &self.store).finish_non_exhaustive()
    }
}

/// A user's upload slot; given back when dropped.
pub struct UploadSlot<'a> {
    media: &'a Media,
    user: UserId,
    _permit: tokio::sync::SemaphorePermit<'a>,
}

impl Drop for UploadSlot<'_> {
    fn drop(&mut self) {
        if let Ok(mut uploading) = self.media.uploading.lock()
            && let Some(count) = uploading.get_mut(&self.user)
        {
            *count -= 1;
            if *count == 0 {
                uploading.remove(&self.user);
            }
        }
    }
}

/// The one fetch of a media id in progress; its entry goes when the last waiter is done, even
/// if a waiter's request is dropped half-way.
struct FetchSlot<'a> {
    fetching: &'a Mutex<HashMap<MediaId, Arc<tokio::sync::Mutex<()>>>>,
    media_id: MediaId,
    lock: Option<Arc<tokio::sync::Mutex<()>>>,
}

impl Drop for FetchSlot<'_> {
    fn drop(&mut self) {
        drop(self.lock.take());
        if let Ok(mut fetching) = self.fetching.lock()
            && fetching.get(&self.media_id).is_some_and(|lock| Arc::strong_count(lock) == 1)
        {
            fetching.remove(&self.media_id);
        }
    }
}

impl Media {
    /// The media service `[media]` configures, its store opened (a local directory is created).
    pub fn open(config: &MediaConfig, data_dir: &DataDir) -> anyhow::Result<Self> {
        for (name, value) in [
            ("max_upload_bytes", config.max_upload_bytes),
            ("max_remote_bytes", config.max_remote_bytes),
        ] {
            if !(MIN_MEDIA_LIMIT..=MAX_MEDIA_LIMIT).contains(&value) {
                anyhow::bail!("[media] {name} must be 8 MiB to 100 MiB (spec 19.4)");
            }
        }
        if config.max_concurrent_uploads == 0 || config.max_concurrent_fetches == 0 {
            anyhow::bail!("[media] max_concurrent_uploads and max_concurrent_fetches must be ≥ 1");
        }
        if !(16..=1024).contains(&config.thumbnail_side) {
            anyhow::bail!("[media] thumbnail_side must be 16 to 1024");
        }
        let at_least_one = [
            ("gc_grace_secs", config.gc_grace_secs),
            ("gc_interval_secs", config.gc_interval_secs),
            ("upload_timeout_secs", config.upload_timeout_secs),
            ("scan_timeout_secs", config.scan_timeout_secs),
            ("uploads_per_minute", u64::from(config.uploads_per_minute)),
        ];
        if let Some((name, _)) = at_least_one.iter().find(|(_, value)| *value == 0) {
            anyhow::bail!("[media] {name} must be at least 1");
        }
        let store = match config.backend {
            MediaBackend::Local => {
                let dir = if config.path.is_empty() {
                    data_dir.root().join("media")
                } else {
                    config.path.clone().into()
                };
                MediaStore::local(&dir)?
            }
            MediaBackend::S3 => {
                let s3 = &config.s3;
                if !s3.endpoint.to_ascii_lowercase().starts_with("https://")
                    && !s3.danger_allow_plain_http
                {
                    anyhow::bail!(
                        "[media.s3] endpoint must be https:// (danger_allow_plain_http allows http)"
                    );
                }
                MediaStore::s3(&S3Settings {
                    endpoint: s3.endpoint.clone(),
                    region: s3.region.clone(),
                    bucket: s3.bucket.clone(),
                    access_key_id: s3.access_key_id.clone(),
                    secret_access_key: s3.secret_access_key.clone(),
                    allow_http: s3.danger_allow_plain_http,
                })?
            }
        };
        let scanner = (!config.clamd.is_empty())
            .then(|| Clamd::new(&config.clamd, Duration::from_secs(config.scan_timeout_secs)));
        Ok(Self {
            store,
            uploads: Semaphore::new(config.max_concurrent_uploads),
            uploading: Mutex::default(),
            upload_rate: RateLimiter::per_minute(
                config.uploads_per_minute,
                config.uploads_per_minute,
            ),
            fetches: Semaphore::new(config.max_concurrent_fetches),
            keepers: Arc::new(Semaphore::new(config.max_concurrent_fetches.div_ceil(2))),
            fetching: Mutex::default(),
            gate: RwLock::new(()),
            scanner,
            config: config.clone(),
        })
    }

    /// The largest upload.
    pub fn max_upload_bytes(&self) -> u64 {
        self.config.max_upload_bytes
    }

    /// A slot for one upload by `user`: `429 rate_limited` past the user's uploads per minute or
    /// with two of theirs in progress, `503 busy` when `max_concurrent_uploads` are running.
    pub fn upload_slot(&self, user: &UserId) -> ApiResult<UploadSlot<'_>> {
        self.upload_rate.check(user.as_str()).map_err(ApiError::rate_limited)?;
        let permit = self.uploads.try_acquire().map_err(|_| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "too many uploads in progress; try again shortly",
            )
        })?;
        let mut uploading = self.uploading.lock().map_err(|_| ApiError::internal("poisoned"))?;
        let count = uploading.entry(user.clone()).or_default();
        if *count >= UPLOADS_PER_USER {
            return Err(ApiError::rate_limited(1000));
        }
        *count += 1;
        Ok(UploadSlot { media: self, user: user.clone(), _permit: permit })
    }

    /// Turns an upload's bytes into stored media: sniffed, checked against the declared type,
    /// pictures decoded, stripped of metadata and thumbnailed (on a blocking thread), scanned,
    /// then stored under their hash and recorded.
    pub async fn upload(
        self: &Arc<Self>,
        store: &Store,
        uploader: &UserId,
        bytes: Bytes,
        declared: Option<String>,
    ) -> ApiResult<MediaRow> {
        let side = self.config.thumbnail_side;
        let prepared =
            tokio::task::spawn_blocking(move || relay::prepare(bytes, declared.as_deref(), side))
                .await
                .map_err(ApiError::internal)?
                .map_err(refused)?;
        // Uploads nobody uses yet are the user's to account for, until used or collected.
        let pending = store.pending_upload_bytes(uploader).await?;
        let size = prepared.bytes.len() as u64;
        if pending.saturating_add(size) > self.config.max_pending_bytes_per_user {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "upload_quota_exceeded",
                "your uploads not yet used in a message, avatar or icon take all the space you \
                 have; use or wait for them to expire",
            ));
        }
        if let Some(scanner) = &self.scanner {
            match scanner.scan(&prepared.bytes).await {
                Ok(Verdict::Clean) => {}
                Ok(Verdict::Infected(name)) => {
                    tracing::warn!(%uploader, media_id = %prepared.id, %name, "upload refused by the scanner");
                    return Err(ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "media_rejected",
                        "the malware scanner refused this file",
                    ));
                }
                Err(error) => {
                    tracing::warn!(%error, "scanning an upload");
                    return Err(ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "scan_unavailable",
                        "uploads cannot be checked right now; try again later",
                    ));
                }
            }
        }
        self.keep(store, prepared, Some(uploader.clone())).await
    }

    /// Stores prepared media (and its thumbnail), then records it. The work runs as a task of
    /// its own, so a request dropped half-way cannot leave a row without its bytes; bytes without
    /// a row (a failure in between) are harmless, and overwritten by the next equal upload.
    async fn keep(
        self: &Arc<Self>,
        store: &Store,
        prepared: Prepared,
        uploader: Option<UserId>,
    ) -> ApiResult<MediaRow> {
        let (media, store) = (Arc::clone(self), store.clone());
        let work = async move {
            let _writing = media.gate.read().await;
            let storage = |e: relay::StorageError| ApiError::internal(e);
            let mut thumbnail_id = None;
            if let Some((id, bytes)) = prepared.thumbnail {
                let row = MediaRow {
                    media_id: id.clone(),
                    size: bytes.len() as u64,
                    content_type: sniff::sniff(&bytes).to_owned(),
                    dimensions: None,
                    thumbnail_id: None,
                    uploader: None,
                };
                media.store.put(&id, bytes).await.map_err(storage)?;
                store.record_media(&row).await?;
                thumbnail_id = Some(id);
            }
            let row = MediaRow {
                media_id: prepared.id.clone(),
                size: prepared.bytes.len() as u64,
                content_type: prepared.content_type.to_owned(),
                dimensions: prepared.dimensions,
                thumbnail_id,
                uploader,
            };
            media.store.put(&prepared.id, prepared.bytes).await.map_err(storage)?;
            store.record_media(&row).await?;
            Ok(store.media(&row.media_id).await?.unwrap_or(row))
        };
        tokio::spawn(work).await.map_err(ApiError::internal)?
    }

    /// Gives the media `user` is about to refer to (in a message, as an avatar or icon) a fresh
    /// grace period, so they stay until the reference is made (whenever the message's host
    /// sequences it); `404 unknown_media` for one this server does not hold or `user` may not
    /// read — a hash learned elsewhere does not let anyone publish the file it names.
    pub async fn lease(&self, state: &AppState, user: &UserId, ids: &[MediaId]) -> ApiResult<()> {
        for id in ids {
            let row = state.store.media(id).await?;
            if !matches!(&row, Some(row) if self.may_see(state, user, row).await?) {
                return Err(ApiError::not_found(
                    "unknown_media",
                    format!("{id} is not media of yours on this server"),
                ));
            }
        }
        let _writing = self.gate.read().await;
        match state.store.lease_media(ids).await?.first() {
            None => Ok(()),
            Some(missing) => Err(ApiError::not_found(
                "unknown_media",
                format!("{missing} is not uploaded to this server"),
            )),
        }
    }

    /// Whether a local client may read a media id this server holds: they uploaded it, an event
    /// of one of their guilds refers to it with a vouched reference, or it is an avatar; a
    /// thumbnail as its picture.
    pub async fn may_see(
        &self,
        state: &AppState,
        user: &UserId,
        row: &MediaRow,
    ) -> ApiResult<bool> {
        let mut media_id = row.media_id.clone();
        // A thumbnail is seen as its picture (one level: thumbnails have none).
        for _ in 0..2 {
            if state.store.uploaded_by(&media_id, user).await?
                || !state.store.media_avatar_of(&media_id).await?.is_empty()
            {
                return Ok(true);
            }
            for reference in state.store.media_guild_refs(&media_id).await? {
                if reference.vouched(&state.server_name)
                    && let Ok(guild) = state.guilds.state(&reference.guild_id).await
                    && guild.members.contains_key(user)
                {
                    return Ok(true);
                }
            }
            match state.store.thumbnail_of(&media_id).await? {
                Some(picture) => media_id = picture,
                None => break,
            }
        }
        Ok(false)
    }

    /// Whether another server may be served a media id (spec 19.3): it is a member server of a
    /// guild with a reference to it that this server's own user made or that came from a server
    /// this server got the bytes from, or it shares a guild with the local user whose avatar it
    /// is; a thumbnail as its picture.
    pub async fn may_serve(
        &self,
        state: &AppState,
        requester: &ServerName,
        media_id: &MediaId,
    ) -> ApiResult<bool> {
        let has_member = |guild: &GuildState| {
            guild.members.keys().any(|member| &member.server_name() == requester)
        };
        let mut media_id = media_id.clone();
        for _ in 0..2 {
            for reference in state.store.media_guild_refs(&media_id).await? {
                if reference.vouched(&state.server_name)
                    && let Ok(guild) = state.guilds.state(&reference.guild_id).await
                    && has_member(&guild)
                {
                    return Ok(true);
                }
            }
            for user in state.store.media_avatar_of(&media_id).await? {
                for guild_id in state.store.guilds_of(&user).await? {
                    if let Ok(guild) = state.guilds.state(&guild_id).await
                        && has_member(&guild)
                    {
                        return Ok(true);
                    }
                }
            }
            match state.store.thumbnail_of(&media_id).await? {
                Some(picture) => media_id = picture,
                None => break,
            }
        }
        Ok(false)
    }

    /// A media id this server does not hold, fetched for `user` (spec 19.2): from the servers
    /// whose events in `user`'s guilds refer to it, then those guilds' hosts. `Ok(None)`: no
    /// guild of the user refers to it; `502 media_unavailable`: none of the servers sent it.
    pub async fn fetch_for(
        self: &Arc<Self>,
        state: &AppState,
        user: &UserId,
        media_id: &MediaId,
    ) -> ApiResult<Option<MediaRow>> {
        let mut sources: Vec<ServerName> = Vec::new();
        for reference in state.store.media_guild_refs(media_id).await? {
            let Ok(guild) = state.guilds.state(&reference.guild_id).await else { continue };
            if !guild.members.contains_key(user) {
                continue;
            }
            for server in reference.source.into_iter().chain([reference.guild_id.host()]) {
                if server != state.server_name && !sources.contains(&server) {
                    sources.push(server);
                }
            }
        }
        if sources.is_empty() {
            return Ok(None);
        }
        self.fetch(state, media_id, &sources).await.map(Some)
    }

    /// A media id fetched from the first of `sources` that sends bytes hashing to it, kept, and
    /// answered; `502 media_unavailable` when none does.
    async fn fetch(
        self: &Arc<Self>,
        state: &AppState,
        media_id: &MediaId,
        sources: &[ServerName],
    ) -> ApiResult<MediaRow> {
        // One fetch per id: whoever comes second finds the copy the first one kept.
        let lock = {
            let mut fetching = self.fetching.lock().map_err(|_| ApiError::internal("poisoned"))?;
            Arc::clone(fetching.entry(media_id.clone()).or_default())
        };
        let slot =
            FetchSlot { fetching: &self.fetching, media_id: media_id.clone(), lock: Some(lock) };
        let _one_fetch = match &slot.lock {
            Some(lock) => lock.lock().await,
            None => return Err(ApiError::internal("no fetch lock")),
        };
        if let Some(row) = state.store.media(media_id).await? {
            return Ok(row);
        }
        let _permit = self.fetches.acquire().await.map_err(ApiError::internal)?;
        for server in sources {
            let bytes = match self.fetch_from(state, server, media_id).await {
                Ok(bytes) => bytes,
                Err(error) => {
                    tracing::debug!(%server, %media_id, %error, "media not fetched from this server");
                    continue;
                }
            };
            match self.keep_copy(&state.store, media_id, bytes).await? {
                Some(row) => {
                    state.store.verify_media_refs(media_id, server).await?;
                    return Ok(row);
                }
                // Never stored, never shown (spec 19.4).
                None => {
                    tracing::warn!(%server, %media_id, "a server sent bytes that are not the media id")
                }
            }
        }
        Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            "media_unavailable",
            "no server holding this media sent it",
        ))
    }

    /// One `GET /_guildhall/v1/media/{id}`, read up to the remote limit.
    async fn fetch_from(
        &self,
        state: &AppState,
        server: &ServerName,
        media_id: &MediaId,
    ) -> Result<Bytes, String> {
        let cap = usize::try_from(self.config.max_remote_bytes).unwrap_or(usize::MAX);
        // 30 s, and one more for each MiB the answer may hold (a slow link still gets a file).
        let timeout = Duration::from_secs(30 + (self.config.max_remote_bytes >> 20));
        let path = format!("/_guildhall/v1/media/{media_id}");
        let answer = state
            .federation
            .client
            .request_capped_within("GET", server, &path, None, None, cap, timeout)
            .await
            .map_err(|e| e.to_string())?;
        if answer.status != 200 {
            return Err(format!("answered {}", answer.status));
        }
        Ok(Bytes::from(answer.body))
    }

    /// Keeps a copy from another server if its bytes hash to the id (checked on a blocking
    /// thread): exactly its bytes, its type sniffed, and for a picture its size and a thumbnail
    /// (a separate media id; the copy itself is never altered). `None`: the bytes are not the id.
    async fn keep_copy(
        self: &Arc<Self>,
        store: &Store,
        media_id: &MediaId,
        bytes: Bytes,
    ) -> ApiResult<Option<MediaRow>> {
        let side = self.config.thumbnail_side;
        let (copy, expected) = (bytes.clone(), media_id.clone());
        let inspected = tokio::task::spawn_blocking(move || {
            if relay::media_id(&copy) != expected {
                return None;
            }
            let content_type = sniff::sniff(&copy);
            let picture = ImageKind::of(content_type)
                .and_then(|kind| relay::picture::inspect(kind, &copy, side).ok());
            Some((content_type, picture))
        })
        .await
        .map_err(ApiError::internal)?;
        let Some((content_type, picture)) = inspected else { return Ok(None) };
        let prepared = Prepared {
            bytes,
            id: media_id.clone(),
            content_type,
            dimensions: picture.as_ref().map(|p| (p.width, p.height)),
            thumbnail: picture
                .and_then(|p| p.thumbnail)
                .map(|t| (relay::media_id(&t), Bytes::from(t))),
        };
        self.keep(store, prepared, None).await.map(Some)
    }

    /// The host keeps the media of events it sequences for other servers' users (spec 19.2), so
    /// that history survives the origin's outage: fetched from the origin as each event is
    /// sequenced, as far as its share of the fetch capacity allows (a client's request fetches
    /// the rest).
    pub async fn run_host_keeper(state: AppState) {
        let mut events = state.bus.subscribe();
        loop {
            let message = match events.recv().await {
                Ok(crate::bus::BusMessage::GuildEvent(message)) => message,
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            };
            let origin = message.sender.server_name();
            if origin == state.server_name || !state.guilds.hosts(&message.guild_id) {
                continue;
            }
            let referenced: Vec<MediaId> = match &message.content {
                EventContent::MessageCreate(create) => {
                    create.attachments.iter().flatten().filter_map(|a| a.parse().ok()).collect()
                }
                EventContent::GuildUpdate(update) => {
                    update.icon.iter().flatten().filter_map(|icon| icon.parse().ok()).collect()
                }
                _ => continue,
            };
            for media_id in referenced {
                let Ok(permit) = Arc::clone(&state.media.keepers).try_acquire_owned() else {
                    break;
                };
                let (state, origin) = (state.clone(), origin.clone());
                tokio::spawn(async move {
                    let _permit = permit;
                    // The origin may not have applied the sequenced event yet: a few tries.
                    for wait in [0, 1, 4, 16] {
                        tokio::time::sleep(Duration::from_secs(wait)).await;
                        let sources = std::slice::from_ref(&origin);
                        match state.media.fetch(&state, &media_id, sources).await {
                            Ok(_) => return,
                            Err(error) => {
                                tracing::debug!(%media_id, ?error, "the host could not keep a copy yet");
                            }
                        }
                    }
                });
            }
        }
    }

    /// Deletes media nothing has referred to for `grace`: rows first, then bytes, in batches,
    /// each with writers held off only for the batch.
    pub async fn collect_garbage(&self, store: &Store, grace: Duration) -> ApiResult<usize> {
        let grace_ms = u64::try_from(grace.as_millis()).unwrap_or(u64::MAX);
        let cutoff = now_ms().saturating_sub(grace_ms);
        let mut collected = 0;
        loop {
            let _alone = self.gate.write().await;
            let ids = store.collect_media(cutoff, GC_BATCH).await?;
            if let Err(error) = self.store.delete_all(&ids).await {
                // The rows are gone; the bytes are orphans the next equal upload overwrites.
                tracing::warn!(%error, "deleting collected media");
            }
            collected += ids.len();
            if ids.len() < GC_BATCH as usize {
                return Ok(collected);
            }
        }
    }

    /// Collects garbage every `gc_interval_secs`.
    pub async fn run_collector(state: AppState) {
        let media = &state.config.media;
        let grace = Duration::from_secs(media.gc_grace_secs);
        let mut ticks = tokio::time::interval(Duration::from_secs(media.gc_interval_secs.max(1)));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            match state.media.collect_garbage(&state.store, grace).await {
                Ok(0) => {}
                Ok(collected) => tracing::info!(collected, "deleted unreferenced media"),
                Err(error) => tracing::warn!(?error, "collecting unreferenced media"),
            }
        }
    }

    /// An answer serving a held media id: the whole of it, or the range asked for.
    pub async fn serve(
        &self,
        row: &MediaRow,
        range_header: Option<&str>,
        presentation: Presentation,
    ) -> ApiResult<Response> {
        let ranged = range::resolve(range_header, row.size);
        let wanted = match &ranged {
            Ranged::Unsatisfiable => {
                let mut response = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
                insert(&mut response, header::CONTENT_RANGE, &format!("bytes */{}", row.size));
                insert(&mut response, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
                return Ok(response);
            }
            Ranged::Part(range) => Some(range.clone()),
            Ranged::Full => None,
        };
        let not_held = || match presentation {
            Presentation::Client => ApiError::not_found("unknown_media", "no such media"),
            Presentation::Federation => ApiError::not_found("not_found", "no such media"),
        };
        let download = self
            .store
            .get(&row.media_id, wanted.clone())
            .await
            .map_err(ApiError::internal)?
            .ok_or_else(not_held)?;
        let range = download.range.clone();
        let length = range.end.saturating_sub(range.start);
        let mut response = Response::new(Body::from_stream(download.stream));
        if wanted.is_some() && length > 0 {
            *response.status_mut() = StatusCode::PARTIAL_CONTENT;
            let value = format!("bytes {}-{}/{}", range.start, range.end - 1, download.size);
            insert(&mut response, header::CONTENT_RANGE, &value);
        }
        let (inline, cache) = match presentation {
            Presentation::Client => {
                (ImageKind::of(&row.content_type).is_some(), "private, max-age=31536000, immutable")
            }
            Presentation::Federation => (false, "public, max-age=31536000, immutable"),
        };
        let headers = [
            (header::CONTENT_TYPE, row.content_type.as_str()),
            (header::CONTENT_LENGTH, &length.to_string()),
            (header::ACCEPT_RANGES, "bytes"),
            (header::CACHE_CONTROL, cache),
            (header::ETAG, &format!("\"{}\"", row.media_id)),
            (header::CONTENT_DISPOSITION, if inline { "inline" } else { "attachment" }),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CONTENT_SECURITY_POLICY, "default-src 'none'; sandbox"),
        ];
        for (name, value) in headers {
            insert(&mut response, name, value);
        }
        Ok(response)
    }
}

fn insert(response: &mut Response, name: header::HeaderName, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        response.headers_mut().insert(name, value);
    }
}

/// An upload refused for what it is.
fn refused(refused: Refused) -> ApiError {
    match refused {
        Refused::Mislabelled { .. } => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "media_type_mismatch",
            refused.to_string(),
        ),
        Refused::Corrupt(_) => {
            ApiError::new(StatusCode::BAD_REQUEST, "corrupt_media", refused.to_string())
        }
        Refused::Empty => {
            ApiError::new(StatusCode::BAD_REQUEST, "empty_media", refused.to_string())
        }
    }
}

/// Reads an upload's body, at most `max` bytes within `timeout`: `413 media_too_large` as soon
/// as it is known to be larger (its `Content-Length`, or the bytes that arrived).
pub async fn read_upload(
    body: Body,
    content_length: Option<u64>,
    max: u64,
    timeout: Duration,
) -> ApiResult<Bytes> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "media_too_large",
            format!("uploads are at most {max} bytes"),
        )
    };
    if content_length.is_some_and(|length| length > max) {
        return Err(too_large());
    }
    let max = usize::try_from(max).unwrap_or(usize::MAX);
    let read = async {
        let mut buffer = BytesMut::with_capacity(
            content_length.and_then(|l| usize::try_from(l).ok()).unwrap_or(0).min(max),
        );
        let mut stream = body.into_data_stream();
        while let Some(chunk) = stream.next().await {
            let chunk =
                chunk.map_err(|e| ApiError::bad_request(format!("reading the upload: {e}")))?;
            if buffer.len() + chunk.len() > max {
                return Err(too_large());
            }
            buffer.extend_from_slice(&chunk);
        }
        Ok(buffer.freeze())
    };
    tokio::time::timeout(timeout, read).await.map_err(|_| {
        ApiError::new(StatusCode::REQUEST_TIMEOUT, "body_timeout", "the upload took too long")
    })?
}

/// Checks that `media_id` is a picture this server holds and `user` may read (an avatar or icon
/// must be one), and gives it a fresh grace period until the reference is made.
pub async fn require_picture(state: &AppState, user: &UserId, media_id: &MediaId) -> ApiResult<()> {
    state.media.lease(state, user, std::slice::from_ref(media_id)).await?;
    let row = state
        .store
        .media(media_id)
        .await?
        .ok_or_else(|| ApiError::not_found("unknown_media", "upload the picture first"))?;
    if ImageKind::of(&row.content_type).is_none() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "not_a_picture",
            "this must be a JPEG, PNG, GIF or WebP picture",
        ));
    }
    Ok(())
}
