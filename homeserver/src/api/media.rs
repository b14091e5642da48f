//! Media endpoints (spec 19): uploads and downloads for this server's clients, and the signed
//! fetch other servers use.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use guildhall_spec::MediaId;
use serde_json::{Value, json};

use super::federation::Federated;
use super::{AuthUser, Json, parse_id};
use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::media::{Presentation, read_upload};
use crate::store::MediaRow;

/// The view of a media row.
fn view(row: &MediaRow) -> Value {
    json!({
        "media_id": row.media_id,
        "size": row.size,
        "content_type": row.content_type,
        "width": row.dimensions.map(|(w, _)| w),
        "height": row.dimensions.map(|(_, h)| h),
        "thumbnail_id": row.thumbnail_id,
    })
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

/// `POST /api/v1/media`: the body is the file. Its type is sniffed from the bytes; a declared
/// `Content-Type` that contradicts them is refused. Answers `201` with the media's view.
pub(super) async fn upload(
    State(state): State<AppState>,
    auth: AuthUser,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let _slot = state.media.upload_slot(&auth.user_id)?;
    let length = header_str(&headers, header::CONTENT_LENGTH).and_then(|l| l.parse::<u64>().ok());
    let declared = header_str(&headers, header::CONTENT_TYPE).map(str::to_owned);
    let timeout = Duration::from_secs(state.config.media.upload_timeout_secs);
    let bytes = read_upload(body, length, state.media.max_upload_bytes(), timeout).await?;
    let row = state.media.upload(&state.store, &auth.user_id, bytes, declared).await?;
    Ok((StatusCode::CREATED, Json(view(&row))))
}

/// The row of a media id for a client: held here and theirs to see (19.5), or fetched from the
/// servers of the user's guilds whose events refer to it. Not held and not theirs look the same.
async fn for_client(state: &AppState, auth: &AuthUser, media_id: &str) -> ApiResult<MediaRow> {
    let media_id: MediaId = parse_id("media id", media_id)?;
    let unknown = || ApiError::not_found("unknown_media", "no such media");
    if let Some(row) = state.store.media(&media_id).await? {
        return match state.media.may_see(state, &auth.user_id, &row).await? {
            true => Ok(row),
            false => Err(unknown()),
        };
    }
    state.media.fetch_for(state, &auth.user_id, &media_id).await?.ok_or_else(unknown)
}

/// `GET /api/v1/media/{media_id}`: the bytes (`Range` honoured).
pub(super) async fn download(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(media_id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let row = for_client(&state, &auth, &media_id).await?;
    state.media.serve(&row, header_str(&headers, header::RANGE), Presentation::Client).await
}

/// `GET /api/v1/media/{media_id}/info`: size, type, picture size and thumbnail.
pub(super) async fn info(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(media_id): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(view(&for_client(&state, &auth, &media_id).await?)))
}

/// `GET /api/v1/media/{media_id}/thumbnail`: the thumbnail of a picture, or the picture itself
/// when it is small enough to be its own; `404 no_thumbnail` for anything else.
pub(super) async fn thumbnail(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(media_id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let row = for_client(&state, &auth, &media_id).await?;
    let shown = match (&row.thumbnail_id, row.dimensions) {
        (Some(thumbnail), _) => state.store.media(thumbnail).await?,
        (None, Some(_)) => Some(row),
        (None, None) => None,
    }
    .ok_or_else(|| ApiError::not_found("no_thumbnail", "this media has no thumbnail"))?;
    state.media.serve(&shown, header_str(&headers, header::RANGE), Presentation::Client).await
}

/// `GET /_guildhall/v1/media/{media_id}` (spec 19.3): the bytes, to a server that may see them.
pub(super) async fn federated(
    State(state): State<AppState>,
    Path(media_id): Path<String>,
    headers: HeaderMap,
    request: Federated<0>,
) -> ApiResult<Response> {
    let media_id = MediaId::parse(&media_id)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", e.to_string()))?;
    let not_found = || ApiError::not_found("not_found", "no such media");
    // Not held and not served look the same: a guessed hash learns nothing.
    if !state.media.may_serve(&state, &request.origin, &media_id).await? {
        return Err(not_found());
    }
    let row = state.store.media(&media_id).await?.ok_or_else(not_found)?;
    state.media.serve(&row, header_str(&headers, header::RANGE), Presentation::Federation).await
}
