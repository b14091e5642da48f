//! Media fetch between servers (spec 19.3–19.4): the target serves a media id its user uploaded
//! and attached to a message of a guild it hosts to the suite's peer, a member server of that
//! guild, exactly as uploaded (the SHA-256 of the bytes is the id), with the headers 19.3 lists
//! and byte ranges if it supports them; and answers `404 not_found` alike to a server that is in
//! no guild referring to it, and for an id it never held; `400 bad_request` for a malformed id.
//! Media are uploaded and attached through test control.

use std::sync::Arc;

use guildhall_spec::base64url;
use serde_json::json;
use sha2::{Digest as _, Sha256};

use crate::context::{Fixture, unique};
use crate::target::encode;
use crate::{CaseResult, Context, ensure};

/// Uploads `bytes` as `user` through test control; answers the media id.
async fn upload(ctx: &Context, user: &str, bytes: &[u8]) -> Result<String, String> {
    let path = format!("/_guildhall/test/v1/users/{}/media", encode(user));
    let (status, body) =
        ctx.target.call("POST", &path, Some(&json!({"bytes": base64url::encode(bytes)}))).await;
    body["media_id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("test control: upload answered {status} {body}"))
}

/// A file of the guild: uploaded by the owner and attached to a message in the fixture's channel.
async fn attached(ctx: &Context, fixture: &Fixture) -> Result<(String, Vec<u8>), String> {
    let bytes = format!("conformance attachment {} {}\n", crate::peer::unix_now(), unique());
    let media_id = upload(ctx, &fixture.owner, bytes.as_bytes()).await?;
    ensure!(
        media_id == base64url::encode(Sha256::digest(bytes.as_bytes())),
        "a text file's media id is the SHA-256 of its bytes (19.1): got {media_id}"
    );
    let body = json!({"user_id": fixture.owner, "channel_id": fixture.channel, "body": "file",
                      "attachments": [media_id]});
    let path = format!("/_guildhall/test/v1/guilds/{}/messages", encode(&fixture.guild));
    let (status, answer) = ctx.target.call("POST", &path, Some(&body)).await;
    ensure!(status == 200, "test control: sending with an attachment answered {status} {answer}");
    Ok((media_id, bytes.into_bytes()))
}

fn media_path(media_id: &str) -> String {
    format!("/_guildhall/v1/media/{}", encode(media_id))
}

pub(super) async fn attachment_is_served_to_a_member_server(ctx: Arc<Context>) -> CaseResult {
    let fixture = ctx.fixture().await?;
    let (media_id, bytes) = attached(&ctx, &fixture).await?;
    let (status, headers, body) =
        ctx.peer.get_bytes(&ctx.target, &media_path(&media_id), None).await;
    ensure!(status == 200, "a member server's fetch answered {status}");
    ensure!(body == bytes, "the served bytes are not the uploaded ones ({} bytes)", body.len());
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default();
    ensure!(
        header("content-length") == bytes.len().to_string(),
        "Content-Length {:?}",
        header("content-length")
    );
    ensure!(
        header("content-disposition").starts_with("attachment"),
        "Content-Disposition {:?}",
        header("content-disposition")
    );
    ensure!(
        header("cache-control").contains("immutable"),
        "Cache-Control {:?}",
        header("cache-control")
    );
    ensure!(!header("content-type").is_empty(), "no Content-Type");
    // Ranges are optional (19.3); a server that answers 206 must answer the right bytes.
    let (status, _, part) =
        ctx.peer.get_bytes(&ctx.target, &media_path(&media_id), Some("bytes=0-9")).await;
    ensure!(
        status == 200 && part == bytes || status == 206 && part == bytes[..10],
        "a ranged fetch answered {status} with {} bytes",
        part.len()
    );
    Ok(())
}

pub(super) async fn non_member_server_is_refused(ctx: Arc<Context>) -> CaseResult {
    let fixture = ctx.fixture().await?;
    let (media_id, _) = attached(&ctx, &fixture).await?;
    // The same request from the peer succeeds, so the refusal below is membership's alone.
    let (status, _, _) = ctx.peer.get_bytes(&ctx.target, &media_path(&media_id), None).await;
    ensure!(status == 200, "a member server's fetch answered {status}");
    let (status, _, body) = ctx.stranger.get_bytes(&ctx.target, &media_path(&media_id), None).await;
    ensure!(status == 404, "a server in no guild referring to the media got {status}");
    ensure!(!body.windows(10).any(|w| w == b"conformanc"), "the refusal carries the bytes");
    Ok(())
}

pub(super) async fn unknown_media_is_not_found(ctx: Arc<Context>) -> CaseResult {
    let fixture = ctx.fixture().await?;
    attached(&ctx, &fixture).await?;
    let unknown = base64url::encode(Sha256::digest(format!("never uploaded {}", unique())));
    let (status, _) = ctx.peer.request(&ctx.target, "GET", &media_path(&unknown), None, None).await;
    ensure!(status == 404, "an id the target never held answered {status}");
    let (status, body) = ctx.peer.request(&ctx.target, "GET", &media_path("abc"), None, None).await;
    ensure!(
        status == 400 && body["code"] == "bad_request",
        "a malformed id answered {status} {body}"
    );
    Ok(())
}
