//! `GET /_guildhall/v1/guilds/{guild_id}/events?after=<seq>&limit=<n>`: exact-range catch-up
//! (spec chapter 10). Only servers with members in the guild may call it.

use serde::{Deserialize, Serialize};

use super::{Auth, Endpoint};
use crate::event::JsonObject;

/// The endpoint.
pub struct GetEvents;

impl Endpoint for GetEvents {
    const METHOD: &'static str = "GET";
    const PATH: &'static str = "/_guildhall/v1/guilds/{guild_id}/events";
    const AUTH: Auth = Auth::ServerSignature;
}

/// The default page size.
pub const DEFAULT_LIMIT: u32 = 100;
/// The largest page size a host serves.
pub const MAX_LIMIT: u32 = 500;

/// The query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Query {
    /// Return events with `seq > after`.
    pub after: u64,
    /// At most this many (default 100, capped at 500).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

impl Query {
    /// The page size the host serves.
    pub fn effective_limit(&self) -> u32 {
        self.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT)
    }
}

/// The response: consecutive events from `after + 1`, oldest first. Events whose channel the
/// caller's users may not see come without `content`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// The events.
    pub events: Vec<JsonObject>,
    /// The host's current head seq.
    pub head: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden() {
        let query: Query = serde_json::from_value(serde_json::json!({"after": 10})).unwrap();
        assert_eq!(query.effective_limit(), DEFAULT_LIMIT);
        assert_eq!(Query { after: 0, limit: Some(10_000) }.effective_limit(), MAX_LIMIT);
        let json = serde_json::json!({"events": [{"seq": 11}], "head": 40});
        let response: Response = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(serde_json::to_value(&response).unwrap(), json);
    }
}
