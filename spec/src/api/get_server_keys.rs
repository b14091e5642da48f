//! `GET /_guildhall/v1/keys/server`: a server's self-signed key document (spec chapter 04).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Auth, Endpoint};
use crate::ids::{KeyId, ServerName};

/// The endpoint.
pub struct GetServerKeys;

impl Endpoint for GetServerKeys {
    const METHOD: &'static str = "GET";
    const PATH: &'static str = "/_guildhall/v1/keys/server";
    const AUTH: Auth = Auth::None;
}

/// A key document. Signed by the server over its canonical form without `signatures`;
/// verify it on the raw JSON object with [`crate::signing::verify_json`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerKeys {
    /// The server the keys belong to.
    pub server_name: ServerName,
    /// Keys in use.
    pub verify_keys: BTreeMap<KeyId, VerifyKey>,
    /// Retired keys, valid for events signed before `expired_ts`, never for new requests.
    #[serde(default)]
    pub old_verify_keys: BTreeMap<KeyId, OldVerifyKey>,
    /// Until when receivers may cache the document (they use at most now + 7 days).
    pub valid_until_ts: u64,
    /// `{server: {key id: signature}}`.
    #[serde(default)]
    pub signatures: BTreeMap<String, BTreeMap<String, String>>,
}

/// A current public key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyKey {
    /// The unpadded base64url Ed25519 public key.
    pub key: String,
}

/// A retired public key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OldVerifyKey {
    /// The unpadded base64url Ed25519 public key.
    pub key: String,
    /// When the key stopped being used, ms since the epoch.
    pub expired_ts: u64,
}

/// The longest time a receiver may cache a key document: 7 days.
pub const MAX_KEY_VALIDITY_MS: u64 = 7 * 24 * 3600 * 1000;

impl ServerKeys {
    /// How long a receiver may rely on this document: `min(valid_until_ts, now + 7 days)`.
    pub fn effective_valid_until(&self, now_ms: u64) -> u64 {
        self.valid_until_ts.min(now_ms.saturating_add(MAX_KEY_VALIDITY_MS))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden() {
        let json = serde_json::json!({
            "server_name": "example.org",
            "verify_keys": {"ed25519:a1": {"key": "Q0E"}},
            "old_verify_keys": {"ed25519:a0": {"key": "Q0Q", "expired_ts": 1_700_000_000_000_u64}},
            "valid_until_ts": 1_700_600_000_000_u64,
            "signatures": {"example.org": {"ed25519:a1": "c2ln"}}
        });
        let keys: ServerKeys = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(serde_json::to_value(&keys).unwrap(), json);
        assert_eq!(keys.effective_valid_until(1_700_000_000_000), 1_700_600_000_000);
        assert_eq!(keys.effective_valid_until(0), MAX_KEY_VALIDITY_MS);
    }
}
