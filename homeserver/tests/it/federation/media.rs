//! Media across servers (spec 19.2–19.4): a member's server fetches an attachment from the server
//! it came from, checks the bytes against the id, keeps a copy and serves it; other servers are
//! refused; bytes that do not hash to the id are never kept.

use super::*;
use crate::harness::{assert_error, json};
use crate::media::{fetch, files_in, media_id, phone_photo, uploaded};

/// A guild on A with an owner, bob from B as a member, and C federating but in no guild.
struct Setup {
    a: Server,
    b: Server,
    c: Server,
    owner: User,
    bob: User,
    guild: String,
    general: String,
}

async fn setup() -> Setup {
    let a = federating().await;
    // B's test control lets it make its user send what a hostile server would.
    let b = federating_builder()
        .env("GUILDHALL_SERVER__DANGER_ENABLE_TEST_CONTROL", "true")
        .start()
        .await;
    let c = federating().await;
    let owner = a.register("owner").await;
    let guild = owner.create_guild("g").await;
    let bob = b.register("bob").await;
    join_remote(&bob, &a, &owner.invite(&guild.general).await).await;
    Setup { a, b, c, owner, bob, guild: guild.id, general: guild.general }
}

/// Sends a message with `attachments` as `user`; waits until `reader` sees it.
async fn attach(user: &User, reader: &User, channel: &str, attachments: &[&str]) {
    let path = format!("/channels/{channel}/messages");
    let (status, sent) =
        user.post(&path, json!({"content": "see attached", "attachments": attachments})).await;
    assert_eq!(status, StatusCode::CREATED, "{sent}");
    let seen = eventually(
        Duration::from_secs(20),
        || reader.history(channel),
        |history| history.iter().any(|m| m["id"] == sent["id"]),
    )
    .await;
    let message = seen.iter().find(|m| m["id"] == sent["id"]).expect("the message arrived");
    assert_eq!(message["attachments"], json!(attachments));
}

#[tokio::test]
async fn attachments_are_fetched_from_their_origin_checked_and_kept() {
    let Setup { a, b, owner, bob, general, .. } = setup().await;

    // A picture from A's user, seen on B.
    let photo = uploaded(&owner, &phone_photo(), None).await;
    attach(&owner, &bob, &general, &[&photo]).await;
    assert!(files_in(&b.dir().join("media")).is_empty(), "fetched only when asked for");
    let (status, headers, bytes) = fetch(&bob, &format!("/media/{photo}"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(media_id(&bytes), photo, "B serves exactly the bytes the id names");
    assert_eq!(headers["content-type"], "image/jpeg");
    // B keeps the copy, and made a thumbnail of its own.
    let kept = files_in(&b.dir().join("media"));
    assert!(kept.iter().any(|f| f.ends_with(&photo)), "B keeps a copy");
    let (status, _, thumbnail) = fetch(&bob, &format!("/media/{photo}/thumbnail"), None).await;
    assert_eq!(status, StatusCode::OK);
    let thumbnail = image::load_from_memory(&thumbnail).unwrap();
    assert_eq!((thumbnail.width(), thumbnail.height()), (171, 256), "upright, as shown");
    let (status, _, part) = fetch(&bob, &format!("/media/{photo}"), Some("bytes=0-1")).await;
    assert_eq!((status, part.as_slice()), (StatusCode::PARTIAL_CONTENT, &[0xFF, 0xD8][..]));

    // A file from B's user: the host keeps a copy as it sequences the message, so the file
    // outlives its origin.
    let notes = uploaded(&bob, b"bob's notes from B", None).await;
    attach(&bob, &owner, &general, &[&notes]).await;
    let a_media = a.dir().join("media");
    let kept = eventually(
        Duration::from_secs(30),
        || async { files_in(&a_media).iter().any(|f| f.ends_with(&notes)) },
        |kept| *kept,
    )
    .await;
    assert!(kept, "the host keeps a copy of what it sequenced");
    let mut b = b;
    b.stop();
    // The file is written before the host records and vouches for it: with B gone, whatever A
    // serves is its own copy, once its records catch up.
    let path = format!("/media/{notes}");
    let (status, _, bytes) = eventually(
        Duration::from_secs(10),
        || fetch(&owner, &path, None),
        |(status, _, _)| *status == StatusCode::OK,
    )
    .await;
    assert_eq!((status, bytes.as_slice()), (StatusCode::OK, &b"bob's notes from B"[..]));
}

#[tokio::test]
async fn only_member_servers_are_served_and_unknown_ids_are_not_found() {
    let Setup { a, b, c, owner, bob, guild, general } = setup().await;
    let notes = uploaded(&owner, b"for members only", None).await;
    let unattached = uploaded(&owner, b"uploaded, not attached", None).await;
    let loner = a.register("loner").await;
    let private = uploaded(&loner, b"a file of someone in no guild", None).await;
    attach(&owner, &bob, &general, &[&notes]).await;
    let path = |id: &str| format!("/_guildhall/v1/media/{id}");

    let member = super::security::Peer::of(&b);
    let response =
        member.send_raw("GET", &member.signed(&a, "GET", &path(&notes), None), &[]).await;
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers().clone();
    assert_eq!(headers["content-disposition"], "attachment");
    assert_eq!(headers["cache-control"], "public, max-age=31536000, immutable");
    assert_eq!(headers["content-type"], "text/plain; charset=utf-8");
    assert_eq!(response.bytes().await.unwrap().as_ref(), b"for members only");
    let ranged = member
        .send_raw("GET", &member.signed(&a, "GET", &path(&notes), None), &[("range", "bytes=4-10")])
        .await;
    assert_eq!(ranged.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(ranged.bytes().await.unwrap().as_ref(), b"members");

    // Held, but referred to by no guild B is in (even when uploaded by someone B shares a guild
    // with); never held; not an id.
    for id in [&unattached, &private] {
        let refused = member.send("GET", &member.signed(&a, "GET", &path(id), None)).await;
        assert_error(&refused, StatusCode::NOT_FOUND, "not_found");
    }
    let unknown = media_id(b"nobody has this");
    let never = member.send("GET", &member.signed(&a, "GET", &path(&unknown), None)).await;
    assert_error(&never, StatusCode::NOT_FOUND, "not_found");
    let malformed = member.send("GET", &member.signed(&a, "GET", &path("abc"), None)).await;
    assert_error(&malformed, StatusCode::BAD_REQUEST, "bad_request");

    // B names the loner's file in a message of the guild, as if its user had it: a reference
    // alone proves nothing, so A still does not hand the file to B.
    let claim = json!({"user_id": bob.id, "channel_id": general, "body": "mine, honest",
                       "attachments": [private]});
    let url = format!("{}/_guildhall/test/v1/guilds/{guild}/messages", b.base_url());
    let (status, body) = crate::harness::call(reqwest::Client::new().post(url).json(&claim)).await;
    assert_eq!(status, StatusCode::OK, "B's claim was sequenced: {body}");
    let refused = member.send("GET", &member.signed(&a, "GET", &path(&private), None)).await;
    assert_error(&refused, StatusCode::NOT_FOUND, "not_found");

    // C shares no guild with A: the same request is refused as if A held nothing.
    let outsider = super::security::Peer::of(&c);
    let refused = outsider.send("GET", &outsider.signed(&a, "GET", &path(&notes), None)).await;
    assert_error(&refused, StatusCode::NOT_FOUND, "not_found");
    // Unsigned: refused.
    let anonymous = reqwest::Client::new().get(format!("{}{}", a.base_url(), path(&notes)));
    assert_eq!(crate::harness::call(anonymous).await.0, StatusCode::UNAUTHORIZED);

    // B's users can only make B fetch what their guilds refer to.
    let carol = b.register("carol").await;
    let not_for_carol = carol.get(&format!("/media/{notes}")).await;
    assert_error(&not_for_carol, StatusCode::NOT_FOUND, "unknown_media");
}

#[tokio::test]
async fn bytes_that_do_not_hash_to_the_id_are_refused_and_not_kept() {
    let Setup { a, b, owner, bob, general, .. } = setup().await;
    let original = b"the real attachment".to_vec();
    let notes = uploaded(&owner, &original, None).await;
    attach(&owner, &bob, &general, &[&notes]).await;

    // A's copy is corrupted on disk: A now serves bytes that are not the id.
    let stored = files_in(&a.dir().join("media"));
    assert_eq!(stored.len(), 1);
    std::fs::write(&stored[0], b"the fake attachment").unwrap();
    let refused = bob.get(&format!("/media/{notes}")).await;
    assert_error(&refused, StatusCode::BAD_GATEWAY, "media_unavailable");
    assert!(files_in(&b.dir().join("media")).is_empty(), "B kept nothing");

    // Repaired: the next request fetches and keeps the real bytes.
    std::fs::write(&stored[0], &original).unwrap();
    let (status, _, bytes) = fetch(&bob, &format!("/media/{notes}"), None).await;
    assert_eq!((status, bytes), (StatusCode::OK, original));
}

#[tokio::test]
async fn a_guild_icon_set_before_a_server_joined_is_fetched_from_the_host_later() {
    let a = federating().await;
    let b = federating().await;
    let owner = a.register("owner").await;
    let guild = owner.create_guild("g").await;
    let icon = uploaded(&owner, &crate::media::small_png(), None).await;
    let (status, body) = owner.patch(&format!("/guilds/{}", guild.id), json!({"icon": icon})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Bob's server joins later (the icon comes with its join: the state, and the history).
    let bob = b.register("bob").await;
    join_remote(&bob, &a, &owner.invite(&guild.general).await).await;
    let (status, seen) = bob.get(&format!("/guilds/{}", guild.id)).await;
    assert_eq!((status, &seen["icon"]), (StatusCode::OK, &json!(icon)), "{seen}");
    let (status, _, bytes) = fetch(&bob, &format!("/media/{icon}"), None).await;
    assert_eq!((status, media_id(&bytes)), (StatusCode::OK, icon));
}
