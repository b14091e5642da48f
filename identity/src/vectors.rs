//! Test helpers for `spec/vectors/identity.json` and `spec/vectors/e2e.json`, written by the
//! independent Python generator (`spec/vectors/tools/generate.py`).

use guildhall_spec::{KeyId, PublicKeyMap, ServerName};
use serde_json::Value;

use crate::attestation::Attestation;

/// The whole vector file.
pub(crate) fn identity() -> Value {
    serde_json::from_str(include_str!("../../spec/vectors/identity.json")).unwrap()
}

/// The whole `e2e.json`: signed key objects and device lists (spec 17.2).
pub(crate) fn e2e() -> Value {
    serde_json::from_str(include_str!("../../spec/vectors/e2e.json")).unwrap()
}

/// A `{server: {key id: base64url key}}` map of trusted server keys.
pub(crate) fn server_keys(value: &Value) -> PublicKeyMap {
    let mut keys = PublicKeyMap::new();
    for (server, by_id) in value.as_object().unwrap() {
        for (key_id, key) in by_id.as_object().unwrap() {
            let (server, key_id) =
                (ServerName::parse(server).unwrap(), KeyId::parse(key_id).unwrap());
            keys.insert_base64(server, key_id, key.as_str().unwrap()).unwrap();
        }
    }
    keys
}

/// An attestation the vectors give as valid, verified.
pub(crate) fn attestation(value: &Value, keys: &PublicKeyMap, now_ms: u64) -> Attestation {
    Attestation::verify(value.as_object().unwrap(), keys, now_ms)
        .unwrap_or_else(|e| panic!("the vectors' attestation {value} is valid, got {e}"))
}

/// Asserts that a case's label agrees with a verdict: valid, or invalid for `reason`.
pub(crate) fn check_verdict(case: &Value, reason: Option<&str>) {
    let name = &case["name"];
    assert_eq!(reason.is_none(), case["valid"].as_bool().unwrap(), "{name}: got {reason:?}");
    assert_eq!(reason, case["reason"].as_str(), "{name}");
}
