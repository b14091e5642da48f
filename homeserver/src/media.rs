//! Media (spec 19): uploads made into content-addressed media, copies fetched from other servers
//! and checked against their hash, the answers that serve bytes (with ranges), and the garbage
//! collector that deletes what nothing refers to any more.
//!
//! Who may see what is decided here too: a server is served a media id only when it is a member
//! server of a guild whose events refer to it, or shares a guild with the local user whose avatar
//! it is (19.3); this server fetches a media id from others only for a user of a guild whose
//! events refer to it, from the servers those events came from and the guild's host (19.2).

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
use guildhall_spec::{MediaId, ServerName, UserId};
use tokio::sync::{RwLock, Semaphore};

use crate::config::{MediaBackend, MediaConfig};
use crate::error::{ApiError, ApiResult};
use crate::store::{MediaRow, Store, now_ms};
use crate::{AppState, DataDir};

/// Every server accepts and serves media up to this size (spec 19.4).
pub const MIN_MEDIA_LIMIT: u64 = 8 << 20;
/// No server accepts more in v1 (spec 19.4).
pub const MAX_MEDIA_LIMIT: u64 = 100 << 20;
/// Garbage collected per round, at most.
const GC_BATCH: u32 = 500;

/// How served media is presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presentation {
    /// To this server's own clients: pictures inline, anything else as a download.
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
    fetches: Semaphore,
    /// Background fetches by the host (beyond these, it leaves the fetch to a client's request).
    keepers: Arc<Semaphore>,
    /// One fetch of a media id at a time; the others wait for it and find the copy.
    fetching: Mutex<HashMap<MediaId, Arc<tokio::sync::Mutex<()>>>>,
    /// Writers (uploads, fetched copies) hold it shared while they record and store; the
    /// collector holds it alone while it deletes, so it never deletes bytes just recorded.
    gate: RwLock<()>,
    scanner: Option<Clamd>,
}

impl std::fmt::Debug for Media {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Media").field("store", &self.store).finish_non_exhaustive()
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
                if s3.endpoint.starts_with("http://") && !s3.danger_allow_plain_http {
                    anyhow::bail!(
                        "[media.s3] endpoint is plain http: set danger_allow_plain_http to allow it"
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
            fetches: Semaphore::new(config.max_concurrent_fetches),
            keepers: Arc::new(Semaphore::new(config.max_concurrent_fetches)),
            fetching: Mutex::default(),
            gate: RwLock::new(()),
            scanner,
            config: config.clone(),
        })
    }

    /// Holds off the collector while the caller makes a reference to media it checked is
    /// held (a message's attachments), so the media cannot go in between.
    pub async fn keep_alive(&self) -> tokio::sync::RwLockReadGuard<'_, ()> {
        self.gate.read().await
    }

    /// The largest upload.
    pub fn max_upload_bytes(&self) -> u64 {
        self.config.max_upload_bytes
    }

    /// Turns an upload's bytes into stored media: sniffed, checked against the declared type,
    /// pictures decoded, stripped of metadata and thumbnailed (on a blocking thread), scanned,
    /// then recorded and stored under their hash.
    pub async fn upload(
        &self,
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
        self.keep(store, prepared, Some(uploader)).await
    }

    /// Records and stores prepared media (and its thumbnail).
    async fn keep(
        &self,
        store: &Store,
        prepared: Prepared,
        uploader: Option<&UserId>,
    ) -> ApiResult<MediaRow> {
        let _writing = self.gate.read().await;
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
            // The row first: from then on the collector leaves the id alone for a grace period.
            store.record_media(&row).await?;
            self.store.put(&id, bytes).await.map_err(storage)?;
            thumbnail_id = Some(id);
        }
        let row = MediaRow {
            media_id: prepared.id.clone(),
            size: prepared.bytes.len() as u64,
            content_type: prepared.content_type.to_owned(),
            dimensions: prepared.dimensions,
            thumbnail_id,
            uploader: uploader.cloned(),
        };
        store.record_media(&row).await?;
        self.store.put(&prepared.id, prepared.bytes).await.map_err(storage)?;
        Ok(store.media(&row.media_id).await?.unwrap_or(row))
    }

    /// The media row of an id whose bytes this server holds.
    pub async fn held(&self, store: &Store, media_id: &MediaId) -> ApiResult<Option<MediaRow>> {
        Ok(store.media(media_id).await?)
    }

    /// Whether another server may be served a media id (spec 19.3): it is a member server of a
    /// guild whose events refer to it, or shares a guild with the local user who uploaded it or
    /// whose avatar it is.
    pub async fn may_serve(
        &self,
        state: &AppState,
        requester: &ServerName,
        media_id: &MediaId,
    ) -> ApiResult<bool> {
        let has_member = |guild: &guildhall_spec::state::GuildState| {
            guild.members.keys().any(|member| &member.server_name() == requester)
        };
        for reference in state.store.media_guild_refs(media_id).await? {
            if let Ok(guild) = state.guilds.state(&reference.guild_id).await
                && has_member(&guild)
            {
                return Ok(true);
            }
        }
        // The uploader's guilds cover the moment between a message's sequencing and the
        // reference reaching this server's copy of the log.
        let mut people = state.store.media_avatar_of(media_id).await?;
        let uploader = state.store.media(media_id).await?.and_then(|row| row.uploader);
        people.extend(uploader.filter(|uploader| !people.contains(uploader)));
        for user in people {
            for guild_id in state.store.guilds_of(&user).await? {
                if let Ok(guild) = state.guilds.state(&guild_id).await
                    && has_member(&guild)
                {
                    return Ok(true);
                }
            }
        }
        // A thumbnail goes wherever its picture may.
        let picture = state.store.thumbnail_of(media_id).await?;
        if let Some(picture) = picture
            && Box::pin(self.may_serve(state, requester, &picture)).await?
        {
            return Ok(true);
        }
        Ok(false)
    }

    /// A media id this server does not hold, fetched for `user` (spec 19.2): from the servers
    /// whose events in `user`'s guilds refer to it, then those guilds' hosts. Bytes whose hash
    /// is not the id are discarded and the next server is asked. `Ok(None)`: no guild of the
    /// user refers to it; `502 media_unavailable`: none of the servers sent it.
    pub async fn fetch_for(
        &self,
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
        &self,
        state: &AppState,
        media_id: &MediaId,
        sources: &[ServerName],
    ) -> ApiResult<MediaRow> {
        // One fetch per id: whoever comes second finds the copy the first one kept.
        let lock = {
            let mut fetching = self.fetching.lock().map_err(|_| ApiError::internal("poisoned"))?;
            Arc::clone(fetching.entry(media_id.clone()).or_default())
        };
        let _one_fetch = lock.lock().await;
        let fetched = async {
            if let Some(row) = state.store.media(media_id).await? {
                return Ok(row);
            }
            let _permit = self.fetches.acquire().await.map_err(ApiError::internal)?;
            for server in sources {
                match self.fetch_from(state, server, media_id).await {
                    Ok(bytes) => return self.keep_copy(&state.store, media_id, bytes).await,
                    Err(error) => {
                        tracing::info!(%server, %media_id, %error, "media not fetched from this server");
                    }
                }
            }
            Err(ApiError::new(
                StatusCode::BAD_GATEWAY,
                "media_unavailable",
                "no server holding this media sent it",
            ))
        }
        .await;
        if let Ok(mut fetching) = self.fetching.lock()
            && fetching.get(media_id).is_some_and(|l| Arc::strong_count(l) <= 2)
        {
            fetching.remove(media_id);
        }
        fetched
    }

    /// One `GET /_guildhall/v1/media/{id}`, read up to the remote limit, hash checked.
    async fn fetch_from(
        &self,
        state: &AppState,
        server: &ServerName,
        media_id: &MediaId,
    ) -> Result<Bytes, String> {
        let cap = usize::try_from(self.config.max_remote_bytes).unwrap_or(usize::MAX);
        let path = format!("/_guildhall/v1/media/{media_id}");
        let answer = state
            .federation
            .client
            .request_capped("GET", server, &path, None, None, cap)
            .await
            .map_err(|e| e.to_string())?;
        if answer.status != 200 {
            return Err(format!("answered {}", answer.status));
        }
        let bytes = Bytes::from(answer.body);
        let digest = relay::media_id(&bytes);
        if &digest != media_id {
            // Never stored, never shown (spec 19.4).
            tracing::warn!(%server, %media_id, "a server sent bytes that are not the media id asked for");
            return Err("the bytes do not hash to the media id".into());
        }
        Ok(bytes)
    }

    /// Keeps a verified copy from another server: exactly its bytes, its type sniffed, and for a
    /// picture its size and a thumbnail (a separate media id; the copy itself is never altered).
    async fn keep_copy(
        &self,
        store: &Store,
        media_id: &MediaId,
        bytes: Bytes,
    ) -> ApiResult<MediaRow> {
        let side = self.config.thumbnail_side;
        let copy = bytes.clone();
        let prepared = tokio::task::spawn_blocking(move || {
            let content_type = sniff::sniff(&copy);
            let picture = ImageKind::of(content_type)
                .and_then(|kind| relay::picture::inspect(kind, &copy, side).ok());
            (content_type, picture)
        })
        .await
        .map_err(ApiError::internal)?;
        let (content_type, picture) = prepared;
        let prepared = Prepared {
            bytes,
            id: media_id.clone(),
            content_type,
            dimensions: picture.as_ref().map(|p| (p.width, p.height)),
            thumbnail: picture
                .and_then(|p| p.thumbnail)
                .map(|t| (relay::media_id(&t), Bytes::from(t))),
        };
        self.keep(store, prepared, None).await
    }

    /// The host keeps the media of events it sequences for other servers' users (spec 19.2), so
    /// that history survives the origin's outage: fetched from the origin as each event is
    /// sequenced, as far as spare fetch capacity allows (a client's request fetches the rest).
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
                    update.icon.iter().filter_map(|icon| icon.parse().ok()).collect()
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
                        match state.media.fetch(&state, &media_id, &[origin.clone()]).await {
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

    /// Deletes media nothing has referred to for the grace period: rows first, then bytes.
    pub async fn collect_garbage(&self, store: &Store) -> ApiResult<usize> {
        let cutoff = now_ms().saturating_sub(self.config.gc_grace_secs.saturating_mul(1000));
        let mut collected = 0;
        loop {
            let _alone = self.gate.write().await;
            let ids = store.collect_media(cutoff, GC_BATCH).await?;
            for id in &ids {
                if let Err(error) = self.store.delete(id).await {
                    // The row is gone; the bytes are an orphan a later upload overwrites.
                    tracing::warn!(%id, %error, "deleting collected media");
                }
            }
            collected += ids.len();
            if ids.len() < GC_BATCH as usize {
                return Ok(collected);
            }
        }
    }

    /// Collects garbage every `gc_interval_secs`.
    pub async fn run_collector(state: AppState) {
        let interval = Duration::from_secs(state.config.media.gc_interval_secs.max(1));
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            match state.media.collect_garbage(&state.store).await {
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
                return Ok(response);
            }
            Ranged::Part(range) => Some(range.clone()),
            Ranged::Full => None,
        };
        let download = self
            .store
            .get(&row.media_id, wanted.clone())
            .await
            .map_err(ApiError::internal)?
            .ok_or_else(|| ApiError::not_found("unknown_media", "no such media"))?;
        let status = if wanted.is_some() { StatusCode::PARTIAL_CONTENT } else { StatusCode::OK };
        let length = download.range.end - download.range.start;
        let mut response = Response::new(Body::from_stream(download.stream));
        *response.status_mut() = status;
        if wanted.is_some() {
            let range = &download.range;
            let value = format!("bytes {}-{}/{}", range.start, range.end - 1, download.size);
            insert(&mut response, header::CONTENT_RANGE, &value);
        }
        let inline =
            presentation == Presentation::Client && ImageKind::of(&row.content_type).is_some();
        let headers = [
            (header::CONTENT_TYPE, row.content_type.as_str()),
            (header::CONTENT_LENGTH, &length.to_string()),
            (header::ACCEPT_RANGES, "bytes"),
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
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
        ApiError::new(StatusCode::REQUEST_TIMEOUT, "timeout", "the upload took too long")
    })?
}

impl Media {
    /// A permit to process one upload, or `503 busy` when `max_concurrent_uploads` are running.
    pub fn upload_permit(&self) -> ApiResult<tokio::sync::SemaphorePermit<'_>> {
        self.uploads.try_acquire().map_err(|_| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "too many uploads in progress; try again shortly",
            )
        })
    }
}

/// Checks that `media_id` is a picture this server holds (an avatar or icon must be one).
pub async fn require_picture(store: &Store, media_id: &MediaId) -> ApiResult<()> {
    let row = store
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
