//! `GET /_guildhall/v1/guilds/{guild_id}/state?at=<seq>`: a host-signed snapshot of guild state
//! (spec chapter 10).

use serde::{Deserialize, Serialize};

use super::{Auth, Endpoint};
use crate::event::JsonObject;
use crate::ids::{EventId, GuildId};

/// The endpoint.
pub struct GetState;

impl Endpoint for GetState {
    const METHOD: &'static str = "GET";
    const PATH: &'static str = "/_guildhall/v1/guilds/{guild_id}/state";
    const AUTH: Auth = Auth::ServerSignature;
}

/// The query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Query {
    /// The seq the snapshot describes; absent = the head.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<u64>,
}

/// A state snapshot, signed by the host over its canonical form without `signatures`.
/// Verify the raw object with [`crate::signing::verify_json`] before trusting the typed view.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The guild.
    pub guild_id: GuildId,
    /// The seq the state is at.
    pub seq: u64,
    /// The id of the event at `seq`, binding the snapshot to the chain.
    pub event_id: EventId,
    /// The folded state (spec chapter 10 lists its members).
    pub state: JsonObject,
    /// The host's signature.
    #[serde(default)]
    pub signatures: JsonObject,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden() {
        let json = serde_json::json!({
            "guild_id": "!g:h.example", "seq": 3,
            "event_id": "$47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU",
            "state": {"guild": {"name": "g"}}, "signatures": {"h.example": {"ed25519:a": "x"}}
        });
        let snapshot: Snapshot = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(serde_json::to_value(&snapshot).unwrap(), json);
    }
}
