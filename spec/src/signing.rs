//! Ed25519 signatures over canonical JSON (spec chapters 04 and 06).
//!
//! A signed JSON object carries `"signatures": {"<server>": {"<key id>": "<base64url>"}}`. The
//! signature covers the canonical form of the object without `signatures` and `unsigned`. These
//! functions take keys as arguments and never fetch anything: whoever verifies decides first
//! which keys it trusts.

use std::collections::BTreeMap;

use ed25519_dalek::Signer as _;
use serde_json::{Map, Value};

pub use ed25519_dalek::VerifyingKey;

use crate::base64url;
use crate::canonical::{self, CanonicalJsonError};
use crate::ids::{KeyId, ServerName};

/// A server's private signing key together with the names it signs under.
#[derive(Clone)]
pub struct ServerSigningKey {
    server_name: ServerName,
    key_id: KeyId,
    key: ed25519_dalek::SigningKey,
}

impl ServerSigningKey {
    /// Wraps a 32-byte Ed25519 seed.
    pub fn from_seed(server_name: ServerName, key_id: KeyId, seed: &[u8; 32]) -> Self {
        Self { server_name, key_id, key: ed25519_dalek::SigningKey::from_bytes(seed) }
    }

    /// The server this key signs for.
    pub fn server_name(&self) -> &ServerName {
        &self.server_name
    }

    /// The key's id, e.g. `ed25519:a1`.
    pub fn key_id(&self) -> &KeyId {
        &self.key_id
    }

    /// The public half.
    pub fn verifying_key(&self) -> ed25519_dalek::VerifyingKey {
        self.key.verifying_key()
    }

    /// The 32-byte seed, for persisting the key.
    pub fn seed(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// Signs raw bytes.
    pub fn sign_bytes(&self, message: &[u8]) -> [u8; 64] {
        self.key.sign(message).to_bytes()
    }
}

impl std::fmt::Debug for ServerSigningKey {
    // Never print the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerSigningKey")
            .field("server_name", &self.server_name)
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// The public keys a verifier trusts, by server and key id.
#[derive(Debug, Clone, Default)]
pub struct PublicKeyMap {
    keys: BTreeMap<ServerName, BTreeMap<KeyId, ed25519_dalek::VerifyingKey>>,
}

impl PublicKeyMap {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Trusts `key` as `server`'s key `key_id`.
    pub fn insert(&mut self, server: ServerName, key_id: KeyId, key: ed25519_dalek::VerifyingKey) {
        self.keys.entry(server).or_default().insert(key_id, key);
    }

    /// Trusts a base64url-encoded public key; fails if it is not a valid Ed25519 point.
    pub fn insert_base64(
        &mut self,
        server: ServerName,
        key_id: KeyId,
        key: &str,
    ) -> Result<(), SignatureError> {
        let key = decode_public_key(key).ok_or(SignatureError::InvalidPublicKey)?;
        self.insert(server, key_id, key);
        Ok(())
    }

    /// The key `key_id` of `server`, if trusted.
    pub fn get(&self, server: &ServerName, key_id: &KeyId) -> Option<&ed25519_dalek::VerifyingKey> {
        self.keys.get(server)?.get(key_id)
    }
}

/// Decodes a base64url Ed25519 public key.
pub fn decode_public_key(text: &str) -> Option<ed25519_dalek::VerifyingKey> {
    ed25519_dalek::VerifyingKey::from_bytes(&base64url::decode_array::<32>(text)?).ok()
}

/// Ed25519 verification as the specification defines it (06-events.md §6.5), the only one the
/// protocol uses. With A the public key's 32 bytes, R and s the signature's halves and
/// k = SHA-512(R ‖ A ‖ M) mod L, it accepts exactly when:
///
/// * s, little-endian, is below L (no `s + L`);
/// * A and R are canonical encodings (y < p; no sign bit on x = 0) of curve points;
/// * neither A nor R has small order;
/// * R is the encoding of [s]B − [k]A (the cofactorless equation).
///
/// `verify_strict` checks all of this but the canonical encoding of A: ed25519-dalek decodes A
/// leniently (ZIP 215), so that is checked here by re-encoding the point. R needs no such check,
/// as `verify_strict` compares it by its encoding with the canonical recomputed R. Together these
/// rules leave every message with at most one valid signature per key and refuse keys that would
/// accept a signature on anything.
pub fn verify_ed25519(
    key: &ed25519_dalek::VerifyingKey,
    message: &[u8],
    signature: &ed25519_dalek::Signature,
) -> bool {
    key.to_edwards().compress().as_bytes() == key.as_bytes()
        && key.verify_strict(message, signature).is_ok()
}

/// Why a signature check failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The object has no signature by the server at all.
    #[error("no signature by {0}")]
    Missing(ServerName),
    /// The server signed only with keys the verifier does not know.
    #[error("no signature by {0} with a known key")]
    UnknownKey(ServerName),
    /// A signature by a known key does not verify.
    #[error("signature by {server} with {key_id} does not verify")]
    Invalid {
        /// The signing server.
        server: ServerName,
        /// The key the signature claims.
        key_id: KeyId,
    },
    /// The `signatures` member is not `{server: {key id: base64url}}`.
    #[error("malformed signatures object")]
    Malformed,
    /// A public key is not valid Ed25519.
    #[error("invalid public key")]
    InvalidPublicKey,
    /// The object has no canonical form.
    #[error(transparent)]
    Canonical(#[from] CanonicalJsonError),
}

/// The bytes a signature over `object` covers: its canonical form without the members that
/// are never signed (`signatures`, `unsigned`) and without `also_excluded`.
pub fn signing_bytes(
    object: &Map<String, Value>,
    also_excluded: &[&str],
) -> Result<Vec<u8>, CanonicalJsonError> {
    let mut covered = object.clone();
    for name in ["signatures", "unsigned"].iter().chain(also_excluded) {
        covered.remove(*name);
    }
    Ok(canonical::to_canonical_string(&Value::Object(covered))?.into_bytes())
}

/// Signs `message` and records the signature in `object["signatures"]` under the key's server.
pub fn add_signature(object: &mut Map<String, Value>, key: &ServerSigningKey, message: &[u8]) {
    let signature = base64url::encode(key.sign_bytes(message));
    let signatures = object.entry("signatures").or_insert_with(|| Value::Object(Map::new()));
    if !signatures.is_object() {
        *signatures = Value::Object(Map::new());
    }
    if let Value::Object(by_server) = signatures {
        let entry = by_server
            .entry(key.server_name().as_str())
            .or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        if let Value::Object(by_key) = entry {
            by_key.insert(key.key_id().as_str().to_owned(), Value::String(signature));
        }
    }
}

/// Signs a JSON object in place (used for key documents, state snapshots, attestations).
pub fn sign_json(
    object: &mut Map<String, Value>,
    key: &ServerSigningKey,
) -> Result<(), CanonicalJsonError> {
    let message = signing_bytes(object, &[])?;
    add_signature(object, key, &message);
    Ok(())
}

/// Verifies `server`'s signatures on a JSON object signed with [`sign_json`].
pub fn verify_json(
    object: &Map<String, Value>,
    server: &ServerName,
    keys: &PublicKeyMap,
) -> Result<(), SignatureError> {
    let message = signing_bytes(object, &[])?;
    verify_signatures(object, server, keys, &message)
}

/// Checks `server`'s signatures over `message`: signatures by unknown key ids are ignored, at
/// least one by a known key must exist, and every one by a known key must verify.
pub fn verify_signatures(
    object: &Map<String, Value>,
    server: &ServerName,
    keys: &PublicKeyMap,
    message: &[u8],
) -> Result<(), SignatureError> {
    let by_server = match object.get("signatures") {
        Some(Value::Object(by_server)) => by_server,
        Some(_) => return Err(SignatureError::Malformed),
        None => return Err(SignatureError::Missing(server.clone())),
    };
    // Server names are case-insensitive; the map may spell them in any case.
    let by_key = by_server
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(server.as_str()))
        .map(|(_, by_key)| by_key);
    let Some(by_key) = by_key else {
        return Err(SignatureError::Missing(server.clone()));
    };
    let Value::Object(by_key) = by_key else {
        return Err(SignatureError::Malformed);
    };
    if by_key.is_empty() {
        return Err(SignatureError::Missing(server.clone()));
    }
    let mut verified_any = false;
    for (key_id, signature) in by_key {
        let Ok(key_id) = KeyId::parse(key_id) else {
            continue;
        };
        let Some(public_key) = keys.get(server, &key_id) else {
            continue;
        };
        let signature = signature
            .as_str()
            .and_then(base64url::decode_array::<64>)
            .map(|bytes| ed25519_dalek::Signature::from_bytes(&bytes));
        let invalid = || SignatureError::Invalid { server: server.clone(), key_id: key_id.clone() };
        let signature = signature.ok_or_else(invalid)?;
        if !verify_ed25519(public_key, message, &signature) {
            return Err(invalid());
        }
        verified_any = true;
    }
    if verified_any { Ok(()) } else { Err(SignatureError::UnknownKey(server.clone())) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(server: &str) -> ServerSigningKey {
        ServerSigningKey::from_seed(
            ServerName::parse(server).unwrap(),
            KeyId::parse("ed25519:t1").unwrap(),
            &[7; 32],
        )
    }

    fn keys_for(key: &ServerSigningKey) -> PublicKeyMap {
        let mut keys = PublicKeyMap::new();
        keys.insert(key.server_name().clone(), key.key_id().clone(), key.verifying_key());
        keys
    }

    #[test]
    fn signs_and_verifies_ignoring_unsigned() {
        let key = key("a.example");
        let mut object = serde_json::json!({"b": 1, "a": "x"}).as_object().unwrap().clone();
        sign_json(&mut object, &key).unwrap();
        object.insert("unsigned".into(), serde_json::json!({"age": 5}));
        assert_eq!(verify_json(&object, key.server_name(), &keys_for(&key)), Ok(()));

        object.insert("b".into(), serde_json::json!(2));
        assert!(matches!(
            verify_json(&object, key.server_name(), &keys_for(&key)),
            Err(SignatureError::Invalid { .. })
        ));
    }

    #[test]
    fn unknown_keys_and_missing_servers() {
        let key = key("a.example");
        let mut object = Map::new();
        sign_json(&mut object, &key).unwrap();
        let other = ServerName::parse("b.example").unwrap();
        assert_eq!(
            verify_json(&object, &other, &keys_for(&key)),
            Err(SignatureError::Missing(other))
        );
        assert_eq!(
            verify_json(&object, key.server_name(), &PublicKeyMap::new()),
            Err(SignatureError::UnknownKey(key.server_name().clone()))
        );
    }
}
