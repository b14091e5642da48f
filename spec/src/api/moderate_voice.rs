//! `POST /_guildhall/v1/guilds/{guild_id}/voice/moderate`: a moderator on another server asks
//! the guild's host to server-mute, server-deafen or disconnect a user in voice (spec 18.5).

use serde::{Deserialize, Serialize};

use super::{Auth, Endpoint};
use crate::ids::UserId;

/// The endpoint.
pub struct ModerateVoice;

impl Endpoint for ModerateVoice {
    const METHOD: &'static str = "POST";
    const PATH: &'static str = "/_guildhall/v1/guilds/{guild_id}/voice/moderate";
    const AUTH: Auth = Auth::ServerSignature;
}

/// The request: at least one of `mute`, `deaf` and `disconnect`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// Who acts: a user of the requesting server.
    pub moderator: UserId,
    /// Whom it acts on: a user in one of the guild's voice channels.
    pub user_id: UserId,
    /// Server-mute (`true`) or unmute (`false`); absent: unchanged. Needs MUTE_MEMBERS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mute: Option<bool>,
    /// Server-deafen or undeafen; absent: unchanged. Needs DEAFEN_MEMBERS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deaf: Option<bool>,
    /// `true`: disconnect the user from voice. Needs MOVE_MEMBERS.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disconnect: bool,
}

impl Request {
    /// Whether the request asks for anything.
    pub fn is_empty(&self) -> bool {
        self.mute.is_none() && self.deaf.is_none() && !self.disconnect
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden() {
        let json = serde_json::json!({"moderator": "@mod:b.example", "user_id": "@u:a.example", "mute": true, "disconnect": true});
        let request: Request = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(serde_json::to_value(&request).unwrap(), json);
        assert!(!request.is_empty());
        let empty: Request = serde_json::from_value(
            serde_json::json!({"moderator": "@mod:b.example", "user_id": "@u:a.example"}),
        )
        .unwrap();
        assert!(empty.is_empty());
    }
}
