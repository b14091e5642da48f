//! `POST /_guildhall/v1/keys/query`: ask a notary for other servers' key documents
//! (spec chapter 04).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Auth, Endpoint};
use crate::event::JsonObject;
use crate::ids::{KeyId, ServerName};

/// The endpoint.
pub struct QueryKeys;

impl Endpoint for QueryKeys {
    const METHOD: &'static str = "POST";
    const PATH: &'static str = "/_guildhall/v1/keys/query";
    const AUTH: Auth = Auth::None;
}

/// The request: which keys of which servers, valid at least until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// `{server: {key id: criteria}}`; an empty key map asks for all current keys.
    pub server_keys: BTreeMap<ServerName, BTreeMap<KeyId, KeyCriteria>>,
}

/// What the caller needs of a key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyCriteria {
    /// The document must be valid at least until this time (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum_valid_until_ts: Option<u64>,
}

/// The response: key documents, each self-signed by its server and countersigned by the notary.
/// Kept as raw objects so that callers verify exactly what was signed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// The documents.
    pub server_keys: Vec<JsonObject>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden() {
        let json = serde_json::json!({"server_keys": {"b.example": {"ed25519:k1": {"minimum_valid_until_ts": 5}}}});
        let request: Request = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(serde_json::to_value(&request).unwrap(), json);
        let response: Response = serde_json::from_value(
            serde_json::json!({"server_keys": [{"server_name": "b.example"}]}),
        )
        .unwrap();
        assert_eq!(response.server_keys.len(), 1);
    }
}
