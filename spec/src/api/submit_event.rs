//! `POST /_guildhall/v1/guilds/{guild_id}/submit`: an origin server proposes an event to the
//! guild's host (spec chapter 11).

use serde::{Deserialize, Serialize};

use super::{Auth, Endpoint};
use crate::event::JsonObject;

/// The endpoint.
pub struct SubmitEvent;

impl Endpoint for SubmitEvent {
    const METHOD: &'static str = "POST";
    const PATH: &'static str = "/_guildhall/v1/guilds/{guild_id}/submit";
    const AUTH: Auth = Auth::ServerSignature;
}

/// The request: one origin-signed proposal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// The proposal, kept raw so that the host verifies exactly what the origin signed.
    pub proposal: JsonObject,
}

/// The success response: the sequenced, host-signed event. A repeated (sender, txn_id) gets the
/// event sequenced the first time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// The event.
    pub event: JsonObject,
}

/// Why a host refuses a proposal; sent as the `code` of an [`super::ErrorBody`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rejection {
    /// The guild does not exist on this host.
    UnknownGuild,
    /// The sender is not a member.
    NotMember,
    /// The sender lacks a permission, or outranks no one it acts on.
    MissingPermission,
    /// The sender is banned from the guild.
    Banned,
    /// The sender's server is banned from the guild.
    ServerBanned,
    /// The sender submits too fast.
    RateLimited,
    /// The proposal is malformed, badly signed, or its content invalid for its type.
    InvalidEvent,
    /// The sender is not a user of the server that signed the request.
    SenderNotFromOrigin,
}

impl Rejection {
    /// The HTTP status for this rejection.
    pub fn status(self) -> u16 {
        match self {
            Self::UnknownGuild => 404,
            Self::NotMember
            | Self::MissingPermission
            | Self::Banned
            | Self::ServerBanned
            | Self::SenderNotFromOrigin => 403,
            Self::RateLimited => 429,
            Self::InvalidEvent => 400,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden() {
        let json = serde_json::json!({"proposal": {"type": "message.create"}});
        let request: Request = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(serde_json::to_value(&request).unwrap(), json);
        assert_eq!(
            serde_json::to_value(Rejection::SenderNotFromOrigin).unwrap(),
            "sender_not_from_origin"
        );
        assert_eq!(Rejection::RateLimited.status(), 429);
    }
}
