//! `POST /_guildhall/v1/guilds/{guild_id}/join`: a remote user joins through an invite and gets
//! the guild's state at the head of the log plus recent events (spec chapter 10).

use serde::{Deserialize, Serialize};

use super::{Auth, Endpoint};
use crate::event::JsonObject;
use crate::ids::{InviteCode, UserId};

/// The endpoint.
pub struct JoinGuild;

impl Endpoint for JoinGuild {
    const METHOD: &'static str = "POST";
    const PATH: &'static str = "/_guildhall/v1/guilds/{guild_id}/join";
    const AUTH: Auth = Auth::ServerSignature;
}

/// The request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// The joining user, a user of the calling server.
    pub user_id: UserId,
    /// The invite; absent when joining a DM the user was invited to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invite_code: Option<InviteCode>,
    /// The origin-signed `member.join` proposal.
    pub proposal: JsonObject,
}

/// The response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// The sequenced `member.join` event.
    pub event: JsonObject,
    /// A host-signed state snapshot at the join event's seq (see [`super::get_state`]).
    pub snapshot: JsonObject,
    /// Recent events up to the join, oldest first, for the joiner's servers to show history.
    pub events: Vec<JsonObject>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden() {
        let json =
            serde_json::json!({"user_id": "@a:b.example", "invite_code": "x1", "proposal": {}});
        let request: Request = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(serde_json::to_value(&request).unwrap(), json);
        let json = serde_json::json!({"event": {}, "snapshot": {"seq": 3}, "events": [{}]});
        let response: Response = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(serde_json::to_value(&response).unwrap(), json);
    }
}
