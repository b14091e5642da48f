//! `PUT /_guildhall/v1/send/{txn_id}`: a batch of sequenced and ephemeral events from one server
//! to another (spec chapter 12). Idempotent per (origin, txn_id).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Auth, Endpoint, ErrorBody};
use crate::event::JsonObject;
use crate::ids::ServerName;

/// The endpoint.
pub struct SendTransaction;

impl Endpoint for SendTransaction {
    const METHOD: &'static str = "PUT";
    const PATH: &'static str = "/_guildhall/v1/send/{txn_id}";
    const AUTH: Auth = Auth::ServerSignature;
}

/// The most sequenced events in one transaction.
pub const MAX_EVENTS: usize = 100;
/// The most ephemeral events in one transaction.
pub const MAX_EPHEMERAL: usize = 100;

/// The request body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// The sending server; must equal the request signature's origin.
    pub origin: ServerName,
    /// When the sender built the transaction.
    pub origin_ts: u64,
    /// Host-signed events, kept raw for verification.
    #[serde(default)]
    pub events: Vec<JsonObject>,
    /// Ephemeral events, kept raw: each is parsed on its own with
    /// [`EphemeralEvent::parse`], and kinds this version does not know are skipped.
    #[serde(default)]
    pub ephemeral: Vec<serde_json::Value>,
}

/// The response: a result per sequenced event, by event id (`{}` = accepted or already held).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// Results.
    pub results: BTreeMap<String, EventResult>,
}

/// The outcome for one event.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventResult {
    /// Why the event was not accepted; absent when it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden() {
        let json = serde_json::json!({
            "origin": "a.example", "origin_ts": 5,
            "events": [{"seq": 1}],
            "ephemeral": [{"type": "typing", "content": {"guild_id": "!g:a.example", "channel_id": "c1", "user_id": "@u:a.example", "active": true}}]
        });
        let request: Request = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(serde_json::to_value(&request).unwrap(), json);
        let json = serde_json::json!({"results": {"$a": {}, "$b": {"error": {"code": "broken_chain", "message": "m"}}}});
        let response: Response = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(serde_json::to_value(&response).unwrap(), json);
    }
}
