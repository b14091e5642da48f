//! `POST /_guildhall/v1/guilds/{guild_id}/content`: fetch withheld content once a server's users
//! may see it (spec chapter 13). The host re-checks access for every event.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Auth, Endpoint};
use crate::event::JsonObject;
use crate::ids::EventId;

/// The endpoint.
pub struct GetContent;

impl Endpoint for GetContent {
    const METHOD: &'static str = "POST";
    const PATH: &'static str = "/_guildhall/v1/guilds/{guild_id}/content";
    const AUTH: Auth = Auth::ServerSignature;
}

/// The largest number of events per request.
pub const MAX_EVENTS: usize = 500;

/// The request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// Events whose content the caller wants.
    pub event_ids: Vec<EventId>,
}

/// The response: content of the events the caller may now see (erased or still hidden events
/// are simply absent). The caller checks each against the envelope's `content_hash`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// Content by event id.
    pub contents: BTreeMap<EventId, JsonObject>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden() {
        let id = "$47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU";
        let json = serde_json::json!({"contents": {id: {"body": "x"}}});
        let response: Response = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(serde_json::to_value(&response).unwrap(), json);
        assert!(
            serde_json::from_value::<Request>(serde_json::json!({"event_ids": ["nope"]})).is_err()
        );
    }
}
