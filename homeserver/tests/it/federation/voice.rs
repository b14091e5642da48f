//! Voice tokens (spec 18.1–18.2): minted by the guild's host for its own members and, over
//! federation, for other servers' members; checked with LiveKit's own token verifier. No
//! LiveKit server runs here: what the SFU would do with a token is what the verifier checks.

use livekit_api::access_token::{Claims, TokenVerifier};

use super::*;
use crate::harness::{assert_error, json};

pub(super) const KEY: &str = "devkey";
pub(super) const SECRET: &str = "a LiveKit API secret for the tests";
pub(super) const URL: &str = "ws://127.0.0.1:7880";

pub(super) fn with_voice(builder: crate::harness::ServerBuilder) -> crate::harness::ServerBuilder {
    with_voice_at(builder, URL)
}

/// A server whose LiveKit is at `url`.
pub(super) fn with_voice_at(
    builder: crate::harness::ServerBuilder,
    url: &str,
) -> crate::harness::ServerBuilder {
    builder
        .env("GUILDHALL_VOICE__URL", url)
        .env("GUILDHALL_VOICE__API_KEY", KEY)
        .env("GUILDHALL_VOICE__API_SECRET", SECRET)
}

/// Creates a voice channel in `guild`; returns its id.
pub(super) async fn voice_channel(owner: &User, guild: &str, name: &str) -> String {
    let body = json!({"name": name, "kind": "voice"});
    let (status, channel) = owner.post(&format!("/guilds/{guild}/channels"), body).await;
    assert_eq!(status, StatusCode::CREATED, "create {name}: {channel}");
    channel["id"].as_str().expect("channel id").to_owned()
}

/// A guild with a voice channel on A, a host with voice, and bob from B (no voice of its own)
/// as a member: the lounge exists before bob joins, so the snapshot he joins with holds it.
pub(super) struct VoiceGuild {
    pub(super) a: Server,
    pub(super) b: Server,
    pub(super) owner: User,
    pub(super) guild: crate::harness::Guild,
    pub(super) lounge: String,
    pub(super) bob: User,
}

pub(super) async fn voice_guild() -> VoiceGuild {
    voice_guild_at(URL).await
}

/// [`voice_guild`] with A's LiveKit at `url`.
pub(super) async fn voice_guild_at(url: &str) -> VoiceGuild {
    let a = with_voice_at(federating_builder(), url).start().await;
    let b = federating().await;
    let owner = a.register("owner").await;
    let guild = owner.create_guild("g").await;
    let lounge = voice_channel(&owner, &guild.id, "lounge").await;
    let bob = b.register("bob").await;
    join_remote(&bob, &a, &owner.invite(&guild.general).await).await;
    VoiceGuild { a, b, owner, guild, lounge, bob }
}

/// Asks for a token as `user`; verifies it as LiveKit would and returns its claims.
pub(super) async fn token(user: &User, channel: &str) -> Claims {
    let (status, body) = user.post_empty(&format!("/channels/{channel}/voice/token")).await;
    assert_eq!(status, StatusCode::OK, "voice token: {body}");
    assert!(body["url"].as_str().is_some_and(|url| url.starts_with("ws://127.0.0.1:")), "{body}");
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
    let VoiceGuild { a, b, owner, guild, lounge, bob } = voice_guild().await;

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

/// A webhook request as LiveKit sends one: the body, and a token carrying its SHA-256 signed
/// with `secret`.
pub(super) fn livekit_webhook(body: &str, secret: &str) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    let hash = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(body));
    livekit_api::access_token::AccessToken::with_api_key(KEY, secret)
        .with_sha256(&hash)
        .to_jwt()
        .expect("webhook token")
}

#[tokio::test]
async fn voice_states_reach_every_member_and_the_hosts_livekit_ends_them() {
    use crate::harness::{Encoding, Gateway};
    let VoiceGuild { a, b, owner, guild, lounge, bob } = voice_guild().await;
    let (mut owners, _) = Gateway::identified(&a, &owner.token, Encoding::Json).await;
    let (mut bobs, _) = Gateway::identified(&b, &bob.token, Encoding::Json).await;
    let path = format!("/guilds/{}/voice-state", guild.id);

    // Bob joins the lounge, muted, through B; the host tells A's members.
    let joined = json!({"channel_id": lounge, "self_mute": true});
    assert_eq!(bob.put(&path, joined).await.0, StatusCode::NO_CONTENT);
    owners
        .expect_dispatch("VOICE_STATE_UPDATE", |d| {
            d["user_id"] == bob.id.as_str()
                && d["channel_id"] == lounge.as_str()
                && d["self_mute"] == true
        })
        .await;
    // The owner joins on A; B's members hear it from the host.
    assert_eq!(owner.put(&path, json!({"channel_id": lounge})).await.0, StatusCode::NO_CONTENT);
    bobs.expect_dispatch("VOICE_STATE_UPDATE", |d| d["user_id"] == owner.id.as_str()).await;
    let (_, listed) = owner.get(&format!("/guilds/{}/voice-states", guild.id)).await;
    assert_eq!(listed["voice_states"].as_array().map(Vec::len), Some(2), "{listed}");
    // A text channel is no place for voice.
    let text = bob.put(&path, json!({"channel_id": guild.general})).await;
    assert_error(&text, StatusCode::NOT_FOUND, "unknown_channel");

    // A's LiveKit reports that bob left: a forged report changes nothing, a signed one takes
    // bob out of voice everywhere, his own server included.
    let body =
        json!({"event": "participant_left", "room": {"name": format!("{}/{lounge}", guild.id)},
                      "participant": {"identity": bob.id}})
        .to_string();
    let webhook = |secret: &str| {
        reqwest::Client::new()
            .post(format!("{}/livekit/webhook", a.base_url()))
            .header("Authorization", livekit_webhook(&body, secret))
            .header("Content-Type", "application/webhook+json")
            .body(body.clone())
    };
    let forged = webhook("not the secret").send().await.expect("webhook");
    assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);
    let signed = webhook(SECRET).send().await.expect("webhook");
    assert_eq!(signed.status(), StatusCode::NO_CONTENT);
    let left = |d: &serde_json::Value| d["user_id"] == bob.id.as_str() && d["channel_id"].is_null();
    owners.expect_dispatch("VOICE_STATE_UPDATE", left).await;
    bobs.expect_dispatch("VOICE_STATE_UPDATE", left).await;
    let (_, listed) = owner.get(&format!("/guilds/{}/voice-states", guild.id)).await;
    assert_eq!(listed["voice_states"].as_array().map(Vec::len), Some(1), "{listed}");
}
