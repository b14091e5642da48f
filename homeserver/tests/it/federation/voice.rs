//! Voice tokens (spec 18.1–18.2): minted by the guild's host for its own members and, over
//! federation, for other servers' members; checked with LiveKit's own token verifier. No
//! LiveKit server runs here: what the SFU would do with a token is what the verifier checks.

use livekit_api::access_token::{Claims, TokenVerifier};

use super::*;
use crate::harness::{assert_error, json};

const KEY: &str = "devkey";
const SECRET: &str = "a LiveKit API secret for the tests";
const URL: &str = "ws://127.0.0.1:7880";

fn with_voice(builder: crate::harness::ServerBuilder) -> crate::harness::ServerBuilder {
    builder
        .env("GUILDHALL_VOICE__URL", URL)
        .env("GUILDHALL_VOICE__API_KEY", KEY)
        .env("GUILDHALL_VOICE__API_SECRET", SECRET)
}

/// Creates a voice channel in `guild`; returns its id.
async fn voice_channel(owner: &User, guild: &str, name: &str) -> String {
    let body = json!({"name": name, "kind": "voice"});
    let (status, channel) = owner.post(&format!("/guilds/{guild}/channels"), body).await;
    assert_eq!(status, StatusCode::CREATED, "create {name}: {channel}");
    channel["id"].as_str().expect("channel id").to_owned()
}

/// Asks for a token as `user`; verifies it as LiveKit would and returns its claims.
async fn token(user: &User, channel: &str) -> Claims {
    let (status, body) = user.post_empty(&format!("/channels/{channel}/voice/token")).await;
    assert_eq!(status, StatusCode::OK, "voice token: {body}");
    assert_eq!(body["url"], URL);
    let claims = TokenVerifier::with_api_key(KEY, SECRET)
        .verify(body["token"].as_str().expect("a token"))
        .expect("LiveKit accepts the token");
    assert_eq!(body["expires_ts"].as_u64(), Some(claims.exp as u64 * 1000));
    assert!(claims.exp - claims.nbf <= 600, "a token lives at most 10 minutes");
    claims
}

#[tokio::test]
async fn voice_is_off_unless_configured() {
    let a = Server::start().await;
    let owner = a.register("owner").await;
    let guild = owner.create_guild("g").await;
    let lounge = voice_channel(&owner, &guild.id, "lounge").await;
    let refused = owner.post_empty(&format!("/channels/{lounge}/voice/token")).await;
    assert_error(&refused, StatusCode::SERVICE_UNAVAILABLE, "voice_unavailable");
}

#[tokio::test]
async fn a_member_gets_a_token_with_the_grants_of_their_permissions() {
    let a = with_voice(Server::builder()).start().await;
    let owner = a.register("owner").await;
    let guild = owner.create_guild("g").await;
    let lounge = voice_channel(&owner, &guild.id, "lounge").await;
    let member = a.register("member").await;
    member.join(&owner.invite(&guild.general).await).await;

    let claims = token(&member, &lounge).await;
    assert_eq!(claims.sub, member.id);
    assert_eq!(claims.video.room, format!("{}/{lounge}", guild.id));
    assert!(claims.video.room_join && claims.video.can_subscribe());
    // @everyone may speak and stream by default.
    assert_eq!(
        claims.video.can_publish_sources,
        ["microphone", "camera", "screen_share", "screen_share_audio"]
    );
    // A text channel is no voice channel; without CONNECT there is no token.
    let text = member.post_empty(&format!("/channels/{}/voice/token", guild.general)).await;
    assert_error(&text, StatusCode::NOT_FOUND, "unknown_channel");
    let connect = 1u64 << 20;
    let overwrite = json!({"kind": "role", "deny": connect.to_string()});
    let path = format!("/channels/{lounge}/permissions/everyone");
    assert_eq!(owner.put(&path, overwrite).await.0, StatusCode::OK);
    let refused = member.post_empty(&format!("/channels/{lounge}/voice/token")).await;
    assert_error(&refused, StatusCode::FORBIDDEN, "missing_permission");
    // Without SPEAK and STREAM: listen only.
    let quiet = json!({"kind": "role", "deny": ((1u64 << 21) | (1u64 << 9)).to_string()});
    assert_eq!(owner.put(&path, quiet).await.0, StatusCode::OK);
    let claims = token(&member, &lounge).await;
    assert!(!claims.video.can_publish() && claims.video.can_publish_sources.is_empty());
}

#[tokio::test]
async fn a_remote_member_gets_a_token_from_the_guilds_host() {
    let a = with_voice(federating_builder()).start().await;
    let b = federating().await;
    let owner = a.register("owner").await;
    let guild = owner.create_guild("g").await;
    let lounge = voice_channel(&owner, &guild.id, "lounge").await;
    let bob = b.register("bob").await;
    // The lounge exists before bob joins: the snapshot he joins with holds it.
    join_remote(&bob, &a, &owner.invite(&guild.general).await).await;

    // B has no voice of its own: the token is A's, for A's LiveKit, naming bob.
    let claims = token(&bob, &lounge).await;
    assert_eq!((claims.sub.as_str(), claims.iss.as_str()), (bob.id.as_str(), KEY));
    assert_eq!(claims.video.room, format!("{}/{lounge}", guild.id));

    // Over federation, a server asks only for its own members.
    let peer = super::security::Peer::of(&b);
    let path = format!("/_guildhall/v1/guilds/{}/voice/token", guild.id);
    let ask = |user: &str| json!({"user_id": user, "channel_id": lounge});
    let stranger = peer.signed(&a, "POST", &path, Some(&ask(&b.user_id("stranger"))));
    assert_error(&peer.send("POST", &stranger).await, StatusCode::FORBIDDEN, "not_member");
    let forged = peer.signed(&a, "POST", &path, Some(&ask(&owner.id)));
    assert_error(
        &peer.send("POST", &forged).await,
        StatusCode::FORBIDDEN,
        "sender_not_from_origin",
    );
    let elsewhere = peer.signed(&b, "POST", &path, Some(&ask(&bob.id)));
    assert_error(&peer.send("POST", &elsewhere).await, StatusCode::NOT_FOUND, "unknown_guild");
}
