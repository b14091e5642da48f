//! `GET /_guildhall/v1/invites/{code}`: what an invite hosted on this server leads to, so that a
//! remote user's server can join by invite code alone (spec chapter 10).

use serde::{Deserialize, Serialize};

use super::{Auth, Endpoint};
use crate::ids::{ChannelId, GuildId, InviteCode};

/// The endpoint.
pub struct GetInvite;

impl Endpoint for GetInvite {
    const METHOD: &'static str = "GET";
    const PATH: &'static str = "/_guildhall/v1/invites/{code}";
    const AUTH: Auth = Auth::ServerSignature;
}

/// The answer for a usable invite (an unknown or used-up one is 404 `unknown_invite`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// The code.
    pub code: InviteCode,
    /// The guild it admits to.
    pub guild_id: GuildId,
    /// The guild's name.
    pub guild_name: String,
    /// The channel it lands in.
    pub channel_id: ChannelId,
    /// How many members the guild has.
    pub member_count: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden() {
        let json = serde_json::json!({"code": "abc123", "guild_id": "!g:h.example", "guild_name": "G", "channel_id": "c1", "member_count": 3});
        let response: Response = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(serde_json::to_value(&response).unwrap(), json);
    }
}
