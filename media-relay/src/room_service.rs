//! The host's calls to its LiveKit server's RoomService (spec 18.3, 18.5): removing a
//! participant, changing what it may publish or hear, and muting tracks it already publishes.
//!
//! LiveKit serves RoomService over Twirp: `POST {http url}/twirp/livekit.RoomService/<Method>`
//! with a JSON body in protobuf's JSON names and `Authorization: Bearer <JWT>`, the JWT signed
//! with the API secret and granting `video.roomAdmin` for `video.room`.
//!
//! This is a small client of our own on reqwest rather than `livekit_api::services::RoomClient`:
//! that client enables rustls' `ring` provider beside the `aws-lc-rs` the rest of the server uses
//! (a process with both and no installed default panics in `ClientConfig::builder()`), reads
//! answers of any size, panics on a `MutePublishedTrack` answer without a track, and sends
//! protobuf; here every answer is bounded in size and time, every failure is an error, and the
//! bodies are JSON, which LiveKit's Twirp server takes as well.

use std::fmt;
use std::time::Duration;

use livekit_api::access_token::{AccessToken, VideoGrants};
use serde::{Deserialize, Serialize};

use crate::voice::VoicePermissions;

/// How long one call may take, connection included: a moderator waits for it.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest answer read from LiveKit (a participant's info with its tracks is a few KiB).
const MAX_ANSWER_BYTES: usize = 256 << 10;
/// How long the admin token of one call is valid.
const ADMIN_TOKEN_TTL: Duration = Duration::from_secs(60);

/// A client of one LiveKit server's RoomService.
#[derive(Clone)]
pub struct RoomService {
    base: String,
    api_key: String,
    api_secret: String,
    http: reqwest::Client,
}

impl fmt::Debug for RoomService {
    // The API secret signs admin tokens: it never reaches a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RoomService").field("base", &self.base).finish_non_exhaustive()
    }
}

/// Why a RoomService call failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RoomServiceError {
    /// The HTTP client could not be built.
    #[error("the LiveKit API client could not be set up: {0}")]
    Client(String),
    /// No answer: connection refused, timeout, or an answer too large.
    #[error("LiveKit could not be reached: {0}")]
    Unreachable(String),
    /// LiveKit answered with a Twirp error.
    #[error("LiveKit refused ({status} {code}): {message}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The Twirp error code, e.g. `not_found`, `unauthenticated`.
        code: String,
        /// LiveKit's message.
        message: String,
    },
    /// A `200` answer that is not the message the method returns.
    #[error("LiveKit's answer could not be read: {0}")]
    BadAnswer(String),
    /// The admin token could not be made.
    #[error("the admin token could not be made: {0}")]
    Token(String),
}

impl RoomServiceError {
    /// Whether LiveKit said the room or participant does not exist (the user is not connected:
    /// there is nothing to enforce).
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Refused { code, .. } if code == "not_found")
    }
}

/// What a participant may do in its room: LiveKit's `ParticipantPermission`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ParticipantPermission {
    /// Receive others' tracks.
    pub can_subscribe: bool,
    /// Publish tracks at all.
    pub can_publish: bool,
    /// Publish data messages.
    pub can_publish_data: bool,
    /// The track sources it may publish (`MICROPHONE`, `CAMERA`, `SCREEN_SHARE`,
    /// `SCREEN_SHARE_AUDIO`).
    pub can_publish_sources: Vec<&'static str>,
}

impl From<VoicePermissions> for ParticipantPermission {
    fn from(permissions: VoicePermissions) -> Self {
        let sources: Vec<&'static str> = permissions
            .sources()
            .into_iter()
            .map(|source| match source {
                "microphone" => "MICROPHONE",
                "camera" => "CAMERA",
                "screen_share" => "SCREEN_SHARE",
                _ => "SCREEN_SHARE_AUDIO",
            })
            .collect();
        Self {
            can_subscribe: permissions.can_subscribe(),
            can_publish: !sources.is_empty(),
            can_publish_data: permissions.speak,
            can_publish_sources: sources,
        }
    }
}

/// A track a participant publishes, as LiveKit's `TrackInfo` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TrackInfo {
    /// The track's id.
    #[serde(default)]
    pub sid: String,
    /// Where it comes from (`MICROPHONE`, `CAMERA`, …; absent means unknown).
    #[serde(default)]
    pub source: String,
    /// Whether it is muted.
    #[serde(default)]
    pub muted: bool,
}

/// LiveKit's `RoomParticipantIdentity`, the request of `RemoveParticipant`.
#[derive(Serialize)]
struct RoomParticipantIdentity<'a> {
    room: &'a str,
    identity: &'a str,
}

/// LiveKit's `UpdateParticipantRequest`, with the one member we change.
#[derive(Serialize)]
struct UpdateParticipantRequest<'a> {
    room: &'a str,
    identity: &'a str,
    permission: &'a ParticipantPermission,
}

/// LiveKit's `MuteRoomTrackRequest`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MuteRoomTrackRequest<'a> {
    room: &'a str,
    identity: &'a str,
    track_sid: &'a str,
    muted: bool,
}

/// LiveKit's `ParticipantInfo`, as far as it is read.
#[derive(Debug, Deserialize)]
struct ParticipantInfo {
    #[serde(default)]
    tracks: Vec<TrackInfo>,
}

#[derive(Debug, Deserialize)]
struct TwirpError {
    #[serde(default)]
    code: String,
    #[serde(default)]
    msg: String,
}

impl RoomService {
    /// A client for the LiveKit server whose client URL is `url` (`wss://` or `ws://`): the API
    /// is the same host over `https://` or `http://`.
    pub fn new(url: &str, api_key: &str, api_secret: &str) -> Result<Self, RoomServiceError> {
        let base = if let Some(rest) = url.strip_prefix("wss://") {
            format!("https://{rest}")
        } else if let Some(rest) = url.strip_prefix("ws://") {
            format!("http://{rest}")
        } else {
            url.to_owned()
        };
        let http = reqwest::Client::builder()
            .timeout(CALL_TIMEOUT)
            .connect_timeout(CALL_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            // The host's own LiveKit: an `HTTP(S)_PROXY` meant for the outside must not see its
            // admin tokens.
            .no_proxy()
            .build()
            .map_err(|e| RoomServiceError::Client(e.to_string()))?;
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            api_key: api_key.to_owned(),
            api_secret: api_secret.to_owned(),
            http,
        })
    }

    /// `RemoveParticipant`: disconnects `identity` from `room`.
    pub async fn remove_participant(
        &self,
        room: &str,
        identity: &str,
    ) -> Result<(), RoomServiceError> {
        let body = RoomParticipantIdentity { room, identity };
        self.call("RemoveParticipant", room, &body).await.map(drop)
    }

    /// `UpdateParticipant`: replaces what `identity` may do in `room`; answers the tracks it
    /// publishes.
    pub async fn update_participant(
        &self,
        room: &str,
        identity: &str,
        permission: &ParticipantPermission,
    ) -> Result<Vec<TrackInfo>, RoomServiceError> {
        let body = UpdateParticipantRequest { room, identity, permission };
        let answer = self.call("UpdateParticipant", room, &body).await?;
        let info: ParticipantInfo = serde_json::from_slice(&answer)
            .map_err(|e| RoomServiceError::BadAnswer(e.to_string()))?;
        Ok(info.tracks)
    }

    /// `MutePublishedTrack`: mutes (or unmutes) a track `identity` publishes in `room`.
    pub async fn mute_published_track(
        &self,
        room: &str,
        identity: &str,
        track_sid: &str,
        muted: bool,
    ) -> Result<(), RoomServiceError> {
        let body = MuteRoomTrackRequest { room, identity, track_sid, muted };
        self.call("MutePublishedTrack", room, &body).await.map(drop)
    }

    /// One Twirp call with an admin token for `room`; the answer's body on `200`.
    async fn call(
        &self,
        method: &str,
        room: &str,
        body: &impl Serialize,
    ) -> Result<Vec<u8>, RoomServiceError> {
        let grants =
            VideoGrants { room_admin: true, room: room.to_owned(), ..VideoGrants::default() };
        let token = AccessToken::with_api_key(&self.api_key, &self.api_secret)
            .with_ttl(ADMIN_TOKEN_TTL)
            .with_grants(grants)
            .to_jwt()
            .map_err(|e| RoomServiceError::Token(e.to_string()))?;
        let url = format!("{}/twirp/livekit.RoomService/{method}", self.base);
        let unreachable =
            |e: reqwest::Error| RoomServiceError::Unreachable(e.without_url().to_string());
        let mut response = self
            .http
            .post(url)
            .bearer_auth(token)
            // `Content-Type: application/json`: LiveKit's Twirp server then reads protobuf's JSON.
            .json(body)
            .send()
            .await
            .map_err(unreachable)?;
        let status = response.status();
        let mut answer = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(unreachable)? {
            if answer.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(RoomServiceError::Unreachable("the answer is too large".to_owned()));
            }
            answer.extend_from_slice(&chunk);
        }
        if status.is_success() {
            return Ok(answer);
        }
        let error: TwirpError = serde_json::from_slice(&answer)
            .unwrap_or(TwirpError { code: String::new(), msg: String::new() });
        Err(RoomServiceError::Refused {
            status: status.as_u16(),
            code: if error.code.is_empty() { "unknown".to_owned() } else { error.code },
            message: error.msg.chars().take(200).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(permissions: VoicePermissions, expected: serde_json::Value) {
        let permission = ParticipantPermission::from(permissions);
        assert_eq!(serde_json::to_value(permission).unwrap(), expected, "{permissions:?}");
    }

    #[test]
    fn permissions_follow_the_grants_of_a_token() {
        let speaker = VoicePermissions { speak: true, stream: true, ..VoicePermissions::default() };
        check(
            speaker,
            serde_json::json!({"canSubscribe": true, "canPublish": true, "canPublishData": true,
                "canPublishSources": ["MICROPHONE", "CAMERA", "SCREEN_SHARE", "SCREEN_SHARE_AUDIO"]}),
        );
        check(
            VoicePermissions { muted: true, ..speaker },
            serde_json::json!({"canSubscribe": true, "canPublish": true, "canPublishData": true,
                "canPublishSources": ["CAMERA", "SCREEN_SHARE", "SCREEN_SHARE_AUDIO"]}),
        );
        check(
            VoicePermissions {
                speak: true,
                muted: true,
                deafened: true,
                ..VoicePermissions::default()
            },
            serde_json::json!({"canSubscribe": false, "canPublish": false, "canPublishData": true,
                "canPublishSources": []}),
        );
    }

    #[test]
    fn the_api_is_the_client_urls_host_over_http() {
        let service = |url| RoomService::new(url, "k", "s").unwrap().base;
        assert_eq!(service("wss://voice.example/"), "https://voice.example");
        assert_eq!(service("ws://127.0.0.1:7880"), "http://127.0.0.1:7880");
        assert!(
            !format!("{:?}", RoomService::new("ws://h", "k", "hidden").unwrap()).contains("hidden")
        );
    }

    /// A server on loopback that answers one request with `answer` (a whole HTTP response).
    async fn answering(answer: Vec<u8>) -> RoomService {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut request = vec![0; 64 << 10];
            let _ = stream.read(&mut request).await;
            let _ = stream.write_all(&answer).await;
        });
        RoomService::new(&url, "k", "s").unwrap()
    }

    fn response(status: &str, body: &[u8]) -> Vec<u8> {
        let head = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        );
        [head.as_bytes(), body].concat()
    }

    #[tokio::test]
    async fn a_twirp_error_is_read_and_a_huge_answer_is_refused() {
        let refusal = br#"{"code": "unauthenticated", "msg": "invalid token"}"#;
        let service = answering(response("401 Unauthorized", refusal)).await;
        let error = service.remove_participant("!g:h/lounge", "@u:h").await.unwrap_err();
        assert_eq!(
            error,
            RoomServiceError::Refused {
                status: 401,
                code: "unauthenticated".to_owned(),
                message: "invalid token".to_owned()
            }
        );
        assert!(!error.is_not_found());
        let missing = br#"{"code": "not_found", "msg": "participant not found"}"#;
        let service = answering(response("404 Not Found", missing)).await;
        assert!(
            service.remove_participant("!g:h/lounge", "@u:h").await.unwrap_err().is_not_found()
        );

        let huge = vec![b' '; MAX_ANSWER_BYTES + 1];
        let service = answering(response("200 OK", &huge)).await;
        let permission = ParticipantPermission::from(VoicePermissions::default());
        let error =
            service.update_participant("!g:h/lounge", "@u:h", &permission).await.unwrap_err();
        assert!(matches!(error, RoomServiceError::Unreachable(_)), "{error:?}");

        let tracks = br#"{"sid": "PA_1", "tracks": [{"sid": "TR_1", "type": "AUDIO", "source": "MICROPHONE"}]}"#;
        let service = answering(response("200 OK", tracks)).await;
        let answer = service.update_participant("!g:h/lounge", "@u:h", &permission).await.unwrap();
        assert_eq!(
            answer,
            [TrackInfo { sid: "TR_1".to_owned(), source: "MICROPHONE".to_owned(), muted: false }]
        );
    }

    #[tokio::test]
    async fn an_unreachable_server_is_an_error() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let service = RoomService::new(&format!("ws://127.0.0.1:{port}"), "k", "s").unwrap();
        let error = service.remove_participant("!g:h/lounge", "@u:h").await.unwrap_err();
        assert!(matches!(error, RoomServiceError::Unreachable(_)), "{error:?}");
    }
}
