//! Voice through the guild host's LiveKit (spec 18): which LiveKit room a voice channel is, and
//! the short-lived access tokens the host mints for a member who may connect to it.
//!
//! The host decides *whether* a user may connect (membership, bans, CONNECT); this module turns
//! the user's permissions in the channel into LiveKit grants (§18.2) and signs the token with the
//! host's LiveKit API secret. LiveKit itself enforces the grants.

use std::fmt;
use std::time::Duration;

use guildhall_spec::{ChannelId, GuildId, UserId};
use livekit_api::access_token::{AccessToken, Claims, TokenVerifier, VideoGrants};
use livekit_api::webhooks::WebhookReceiver;

use crate::room_service::RoomService;

/// The longest a token may be valid (§18.2).
pub const MAX_TOKEN_TTL: Duration = Duration::from_secs(600);
/// The shortest lifetime a token may be given (a client needs time to connect with it).
pub const MIN_TOKEN_TTL: Duration = Duration::from_secs(10);

/// A LiveKit server this host runs its voice channels on.
#[derive(Clone)]
pub struct VoiceService {
    url: String,
    api_key: String,
    api_secret: String,
    ttl: Duration,
    rooms: RoomService,
}

impl fmt::Debug for VoiceService {
    // The API secret signs every token: it never reaches a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VoiceService")
            .field("url", &self.url)
            .field("api_key", &self.api_key)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

/// Why a voice service cannot be set up or a token cannot be made.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VoiceError {
    /// The LiveKit URL is not `ws://` or `wss://`.
    #[error("the LiveKit URL must start with wss:// (or ws:// for testing)")]
    BadUrl,
    /// No API key or secret.
    #[error("a LiveKit API key and secret are required")]
    MissingKeys,
    /// A token lifetime below [`MIN_TOKEN_TTL`] or above [`MAX_TOKEN_TTL`].
    #[error("the token lifetime must be 10 to 600 seconds")]
    BadTtl,
    /// LiveKit's token library refused (it should not, with the checks above).
    #[error("the token could not be made: {0}")]
    Token(String),
    /// A webhook request not signed with this service's key pair, or not a webhook event.
    #[error("not a webhook of this LiveKit server: {0}")]
    Webhook(String),
    /// The RoomService client could not be set up.
    #[error("{0}")]
    RoomService(String),
}

/// What a LiveKit webhook reports about a room, as far as voice states care (§18.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomEvent {
    /// The event, e.g. `participant_joined`, `participant_left`, `room_finished`.
    pub event: String,
    /// The room's name (`<guild_id>/<channel_id>` for ours).
    pub room: String,
    /// The participant's identity (a user id), for participant events.
    pub identity: Option<String>,
}

/// What a member may do in a voice channel, from their permissions there and the host's server
/// mute and deafen (spec 18.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VoicePermissions {
    /// SPEAK: publish the microphone and data.
    pub speak: bool,
    /// STREAM: publish the camera and screen shares.
    pub stream: bool,
    /// Server-muted: no microphone, whatever SPEAK says.
    pub muted: bool,
    /// Server-deafened: subscribes to nothing.
    pub deafened: bool,
}

impl VoicePermissions {
    /// The track sources the member may publish, in LiveKit's token spelling.
    pub fn sources(&self) -> Vec<&'static str> {
        let mut sources = Vec::new();
        if self.speak && !self.muted {
            sources.push("microphone");
        }
        if self.stream {
            sources.extend(["camera", "screen_share", "screen_share_audio"]);
        }
        sources
    }

    /// Whether the member may hear (and see) others.
    pub fn can_subscribe(&self) -> bool {
        !self.deafened
    }
}

/// A token for one member and one room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoiceToken {
    /// The LiveKit server URL the client connects to.
    pub url: String,
    /// The signed access token.
    pub token: String,
    /// When it stops admitting (ms since the epoch): its `exp` × 1000.
    pub expires_ts: u64,
}

impl VoiceService {
    /// A service at `url` with the API key pair, minting tokens valid for `ttl`.
    pub fn new(
        url: &str,
        api_key: &str,
        api_secret: &str,
        ttl: Duration,
    ) -> Result<Self, VoiceError> {
        if !(url.starts_with("wss://") || url.starts_with("ws://")) || url.len() <= "wss://".len() {
            return Err(VoiceError::BadUrl);
        }
        if api_key.is_empty() || api_secret.is_empty() {
            return Err(VoiceError::MissingKeys);
        }
        if ttl < MIN_TOKEN_TTL || ttl > MAX_TOKEN_TTL {
            return Err(VoiceError::BadTtl);
        }
        let rooms = RoomService::new(url, api_key, api_secret)
            .map_err(|e| VoiceError::RoomService(e.to_string()))?;
        Ok(Self {
            url: url.to_owned(),
            api_key: api_key.to_owned(),
            api_secret: api_secret.to_owned(),
            ttl,
            rooms,
        })
    }

    /// The LiveKit server URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The LiveKit server's RoomService, for enforcement and moderation (spec 18.3, 18.5).
    pub fn rooms(&self) -> &RoomService {
        &self.rooms
    }

    /// Checks a webhook request from the LiveKit server (its body and `Authorization` header:
    /// a token signed with the API secret that carries the body's SHA-256) and reads the event.
    pub fn verify_webhook(&self, body: &str, authorization: &str) -> Result<RoomEvent, VoiceError> {
        let token = authorization.strip_prefix("Bearer ").unwrap_or(authorization);
        let receiver =
            WebhookReceiver::new(TokenVerifier::with_api_key(&self.api_key, &self.api_secret));
        let event =
            receiver.receive(body, token).map_err(|e| VoiceError::Webhook(e.to_string()))?;
        Ok(RoomEvent {
            event: event.event,
            room: event.room.map(|room| room.name).unwrap_or_default(),
            identity: event.participant.map(|participant| participant.identity),
        })
    }

    /// The LiveKit room of a voice channel: `<guild_id>/<channel_id>` (§18.2).
    pub fn room(guild_id: &GuildId, channel_id: &ChannelId) -> String {
        format!("{guild_id}/{channel_id}")
    }

    /// A token admitting `user` (shown as `name`) to `room` with the grants `permissions` give
    /// (§18.2): everyone who may connect subscribes unless server-deafened; SPEAK publishes the
    /// microphone (unless server-muted) and data; STREAM publishes the camera and screen shares.
    pub fn token(
        &self,
        room: &str,
        user: &UserId,
        name: &str,
        permissions: VoicePermissions,
    ) -> Result<VoiceToken, VoiceError> {
        let sources: Vec<String> = permissions.sources().into_iter().map(str::to_owned).collect();
        let grants = VideoGrants {
            room_join: true,
            room: room.to_owned(),
            can_subscribe: Some(permissions.can_subscribe()),
            can_publish: Some(!sources.is_empty()),
            can_publish_data: Some(permissions.speak),
            can_publish_sources: sources,
            ..VideoGrants::default()
        };
        // LiveKit's library reads the clock once for `nbf` and again for `exp`: a second may
        // tick between, so it is asked for one second less, and `exp − nbf` never exceeds the
        // lifetime. The answer's expiry is read back from the token itself.
        let token = AccessToken::with_api_key(&self.api_key, &self.api_secret)
            .with_identity(user.as_str())
            .with_name(name)
            .with_ttl(self.ttl.saturating_sub(Duration::from_secs(1)))
            .with_grants(grants)
            .to_jwt()
            .map_err(|e| VoiceError::Token(e.to_string()))?;
        let claims =
            Claims::from_unverified(&token).map_err(|e| VoiceError::Token(e.to_string()))?;
        let expires_ts = u64::try_from(claims.exp).unwrap_or(u64::MAX).saturating_mul(1000);
        Ok(VoiceToken { url: self.url.clone(), token, expires_ts })
    }
}

#[cfg(test)]
mod tests {
    use livekit_api::access_token::TokenVerifier;

    use super::*;

    fn service() -> VoiceService {
        VoiceService::new("wss://voice.example", "APIkey", "a secret of some length", MAX_TOKEN_TTL)
            .unwrap()
    }

    #[test]
    fn tokens_carry_the_room_identity_and_the_grants_of_the_permissions() {
        let user: UserId = "@bob:origin.example".parse().unwrap();
        let guild: GuildId = "!Wq3b9xKc2LmN8pRt5vYz1A:host.example".parse().unwrap();
        let room = VoiceService::room(&guild, &"lounge".parse().unwrap());
        let speaker = service()
            .token(
                &room,
                &user,
                "Bob",
                VoicePermissions { speak: true, ..VoicePermissions::default() },
            )
            .unwrap();
        let claims = TokenVerifier::with_api_key("APIkey", "a secret of some length")
            .verify(&speaker.token)
            .unwrap();
        assert_eq!((claims.sub.as_str(), claims.name.as_str()), ("@bob:origin.example", "Bob"));
        assert_eq!(claims.video.room, "!Wq3b9xKc2LmN8pRt5vYz1A:host.example/lounge");
        assert!(
            claims.video.room_join && claims.video.can_subscribe() && claims.video.can_publish()
        );
        assert_eq!(claims.video.can_publish_sources, ["microphone"]);
        assert!(claims.video.can_publish_data());
        assert_eq!(claims.exp as u64 * 1000, speaker.expires_ts);
        assert!(claims.exp - claims.nbf <= 600);

        let listener = service().token(&room, &user, "Bob", VoicePermissions::default()).unwrap();
        let claims = TokenVerifier::with_api_key("APIkey", "a secret of some length")
            .verify(&listener.token)
            .unwrap();
        assert!(!claims.video.can_publish() && !claims.video.can_publish_data());
        assert!(claims.video.can_publish_sources.is_empty() && claims.video.can_subscribe());
        // A server-muted speaker has no microphone; a server-deafened one hears nothing.
        let muted = VoicePermissions { speak: true, stream: true, muted: true, deafened: true };
        let claims = TokenVerifier::with_api_key("APIkey", "a secret of some length")
            .verify(&service().token(&room, &user, "Bob", muted).unwrap().token)
            .unwrap();
        assert_eq!(
            claims.video.can_publish_sources,
            ["camera", "screen_share", "screen_share_audio"]
        );
        assert!(claims.video.can_publish() && !claims.video.can_subscribe());
        // Another secret does not verify it.
        assert!(
            TokenVerifier::with_api_key("APIkey", "another secret")
                .verify(&listener.token)
                .is_err()
        );
    }

    /// A webhook request as LiveKit signs it: a token with the body's SHA-256, by `secret`.
    fn webhook(body: &str, secret: &str) -> String {
        use base64::Engine as _;
        use sha2::Digest as _;
        let hash = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(body));
        AccessToken::with_api_key("APIkey", secret).with_sha256(&hash).to_jwt().unwrap()
    }

    #[test]
    fn webhooks_are_read_only_when_signed_with_the_key_pair() {
        let body = r#"{"event":"participant_left","room":{"name":"!g:h.example/lounge"},"participant":{"identity":"@bob:origin.example"}}"#;
        let event =
            service().verify_webhook(body, &webhook(body, "a secret of some length")).unwrap();
        assert_eq!(event.event, "participant_left");
        assert_eq!(
            (event.room.as_str(), event.identity.as_deref()),
            ("!g:h.example/lounge", Some("@bob:origin.example"))
        );
        let forged = webhook(body, "another secret");
        assert!(matches!(service().verify_webhook(body, &forged), Err(VoiceError::Webhook(_))));
        let altered = body.replace("bob", "eve");
        let signed = webhook(body, "a secret of some length");
        assert!(matches!(service().verify_webhook(&altered, &signed), Err(VoiceError::Webhook(_))));
    }

    #[test]
    fn a_service_needs_a_websocket_url_keys_and_a_short_ttl() {
        let new =
            |url, secret, ttl| VoiceService::new(url, "key", secret, Duration::from_secs(ttl));
        assert_eq!(new("https://voice.example", "s", 60).unwrap_err(), VoiceError::BadUrl);
        assert_eq!(new("wss://voice.example", "", 60).unwrap_err(), VoiceError::MissingKeys);
        assert_eq!(new("wss://voice.example", "s", 601).unwrap_err(), VoiceError::BadTtl);
        assert_eq!(new("wss://voice.example", "s", 9).unwrap_err(), VoiceError::BadTtl);
        assert!(
            !format!("{:?}", new("ws://127.0.0.1:7880", "hidden", 60).unwrap()).contains("hidden")
        );
    }
}
