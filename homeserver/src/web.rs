//! The web client (`web/` in the repository), compiled into the binary and served at `/`, so a
//! server and a browser are all a community needs. It has no build step: the files are ES
//! modules and a style sheet, served as they are in the repository.
//!
//! Routes: `/` and `/invite/{code}` (the link a guild's host hands out) answer the page; the
//! client itself is under `/app/`. Every answer carries a strict Content-Security-Policy (no
//! inline script, nothing from other origins) and an `ETag`, so a browser revalidates instead
//! of downloading again.

use std::sync::LazyLock;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

use crate::AppState;
use crate::error::ApiError;

/// One file of the client.
struct Asset {
    /// Its path under `web/`.
    path: &'static str,
    media_type: &'static str,
    body: &'static [u8],
}

macro_rules! assets {
    ($($path:literal => $media_type:expr),* $(,)?) => {
        &[$(Asset {
            path: $path,
            media_type: $media_type,
            body: include_bytes!(concat!("../../web/", $path)),
        }),*]
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every file of the client (a test checks that none under `web/app/` is missing).
static ASSETS: &[Asset] = assets![
    "index.html" => "text/html; charset=utf-8",
    "app/style.css" => "text/css; charset=utf-8",
    "app/main.js" => JS,
    "app/api.js" => JS,
    "app/chat.js" => JS,
    "app/dom.js" => JS,
    "app/gateway.js" => JS,
    "app/invite.js" => JS,
    "app/markdown.js" => JS,
    "app/model.js" => JS,
    "app/sidebar.js" => JS,
];

/// The page's policy: scripts, styles and connections (the API, the gateway) from this origin
/// only; images also from `blob:` and `data:` (previews of files being uploaded).
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' blob: data:; connect-src 'self'; font-src 'self'; form-action 'self'; \
     base-uri 'none'; frame-ancestors 'none'";

/// Strong validators, one per asset, computed once.
static ETAGS: LazyLock<Vec<String>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|asset| {
            let digest = Sha256::digest(asset.body);
            let hex: String = digest[..12].iter().map(|byte| format!("{byte:02x}")).collect();
            format!("\"{hex}\"")
        })
        .collect()
});

/// The routes of the client.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(page))
        .route("/invite/{code}", get(page))
        .route("/app/{*file}", get(app_file))
}

async fn page(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

async fn app_file(Path(file): Path<String>, headers: HeaderMap) -> Response {
    serve(&format!("app/{file}"), &headers)
}

fn serve(path: &str, request: &HeaderMap) -> Response {
    let Some(index) = ASSETS.iter().position(|asset| asset.path == path) else {
        return ApiError::not_found("not_found", "no such file").into_response();
    };
    let (asset, etag) = (&ASSETS[index], &ETAGS[index]);
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|tag| tag.trim() == etag));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, asset.media_type)], asset.body).into_response()
    };
    let headers = response.headers_mut();
    // Quoted hex, so always a valid header value.
    if let Ok(etag) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, etag);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers
        .insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_of_the_client_is_served() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../web/app");
        for entry in std::fs::read_dir(&dir).expect("web/app exists") {
            let name = entry.expect("a directory entry").file_name();
            let path = format!("app/{}", name.to_string_lossy());
            assert!(ASSETS.iter().any(|asset| asset.path == path), "{path} is not in ASSETS");
        }
    }

    #[test]
    fn a_matching_etag_is_answered_not_modified() {
        let etag = ETAGS[0].clone();
        let mut headers = HeaderMap::new();
        headers.insert(header::IF_NONE_MATCH, HeaderValue::from_str(&etag).unwrap());
        assert_eq!(serve("index.html", &headers).status(), StatusCode::NOT_MODIFIED);
        assert_eq!(serve("index.html", &HeaderMap::new()).status(), StatusCode::OK);
        assert_eq!(serve("app/../Cargo.toml", &HeaderMap::new()).status(), StatusCode::NOT_FOUND);
    }
}
