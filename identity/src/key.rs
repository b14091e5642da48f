//! The identity key pair (spec 16.1) and the signatures users make with their keys.
//!
//! A user signs a JSON object the way a server does (spec 04), over `JCS(object without
//! signatures)`, but files the signature under the user id instead of a server name:
//! `"signatures": {"@bob:origin.example": {"ed25519:identity": "<base64url>"}}`. Device keys
//! (`ed25519:<device_id>`) and a rotation's next identity key (`ed25519:identity_next`) sign under
//! the same user id.

use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use guildhall_spec::canonical::CanonicalJsonError;
use guildhall_spec::event::JsonObject;
use guildhall_spec::{UserId, base64url, signing};
use serde_json::Value;

use crate::phrase::RecoveryPhrase;

/// The key id of a user's identity key in `signatures` maps (spec 16.1).
pub const IDENTITY_KEY_ID: &str = "ed25519:identity";

/// A user's identity key pair: the secret that certifies devices and signs login proofs, moves
/// and rotations. The secret is wiped from memory when the value is dropped.
#[derive(Clone)]
pub struct IdentityKeyPair {
    key: SigningKey,
}

impl IdentityKeyPair {
    /// The key pair for a 32-byte secret (RFC 8032 private key), e.g.
    /// [`RecoveryPhrase::identity_secret`].
    pub fn from_secret(secret: &[u8; 32]) -> Self {
        Self { key: SigningKey::from_bytes(secret) }
    }

    /// Identity key number `index` of a recovery phrase (spec 16.1).
    pub fn from_phrase(phrase: &RecoveryPhrase, index: u32) -> Self {
        Self::from_secret(&phrase.identity_secret(index))
    }

    /// The public identity key.
    pub fn public_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// The public identity key as it appears on the wire (unpadded base64url).
    pub fn public_base64url(&self) -> String {
        base64url::encode(self.key.verifying_key().as_bytes())
    }

    /// Signs `object` as `user_id`'s identity: the signature over `JCS(object without
    /// signatures)` goes to `signatures[user_id]["ed25519:identity"]`, beside any already there.
    pub fn sign_json(
        &self,
        object: &mut JsonObject,
        user_id: &UserId,
    ) -> Result<(), CanonicalJsonError> {
        let message = signing::signing_bytes(object, &[])?;
        insert_signature(object, user_id, IDENTITY_KEY_ID, &self.sign(&message));
        Ok(())
    }

    /// Signs raw bytes.
    pub(crate) fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.key.sign(message).to_bytes()
    }
}

impl std::fmt::Debug for IdentityKeyPair {
    // The secret never goes to logs; the public key identifies the pair.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityKeyPair").field("public", &self.public_base64url()).finish()
    }
}

/// Records `signature` in `object["signatures"][user_id][key_id]`, keeping the other entries
/// and replacing members of the wrong shape.
pub(crate) fn insert_signature(
    object: &mut JsonObject,
    user_id: &UserId,
    key_id: &str,
    signature: &[u8; 64],
) {
    let mut by_user = match object.remove("signatures") {
        Some(Value::Object(by_user)) => by_user,
        _ => JsonObject::new(),
    };
    let mut by_key = match by_user.remove(user_id.as_str()) {
        Some(Value::Object(by_key)) => by_key,
        _ => JsonObject::new(),
    };
    by_key.insert(key_id.to_owned(), Value::String(base64url::encode(signature)));
    by_user.insert(user_id.as_str().to_owned(), Value::Object(by_key));
    object.insert("signatures".to_owned(), Value::Object(by_user));
}

/// Whether `object["signatures"][user_id][key_id]` is a valid signature by `key` over
/// `message` (spec 06 §6.5). A missing or malformed entry is not.
pub(crate) fn has_valid_signature(
    object: &JsonObject,
    message: &[u8],
    user_id: &UserId,
    key_id: &str,
    key: &VerifyingKey,
) -> bool {
    object
        .get("signatures")
        .and_then(|by_user| by_user.get(user_id.as_str()))
        .and_then(|by_key| by_key.get(key_id))
        .and_then(Value::as_str)
        .and_then(base64url::decode_array::<64>)
        .is_some_and(|bytes| {
            signing::verify_ed25519(key, message, &ed25519_dalek::Signature::from_bytes(&bytes))
        })
}

/// Whether `signature` (64 bytes) by `key` over `message` is valid (spec 06 §6.5).
pub(crate) fn is_valid_signature(key: &VerifyingKey, message: &[u8], signature: &[u8; 64]) -> bool {
    signing::verify_ed25519(key, message, &ed25519_dalek::Signature::from_bytes(signature))
}

/// Parses a base64url Ed25519 public key as the wire carries it.
pub(crate) fn parse_public_key(text: &str) -> Option<VerifyingKey> {
    signing::decode_public_key(text)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn phrase() -> RecoveryPhrase {
        RecoveryPhrase::from_entropy([0; 32])
    }

    /// Spec 16.1's example: key 0 of the all-zero-entropy phrase.
    #[test]
    fn public_key_of_the_spec_example() {
        let pair = IdentityKeyPair::from_phrase(&phrase(), 0);
        assert_eq!(pair.public_base64url(), "gAdf49xk3FcGUhzo_Z63Z4z3QSVfE7ZAa9hrgZv8Nbg");
        assert_eq!(parse_public_key(&pair.public_base64url()), Some(pair.public_key()));
        assert!(!format!("{pair:?}").contains(&format!("{:?}", phrase().identity_secret(0))));
    }

    #[test]
    fn signs_under_the_user_id_over_the_object_without_signatures() {
        let pair = IdentityKeyPair::from_phrase(&phrase(), 0);
        let user = UserId::parse("@bob:origin.example").unwrap();
        let mut object =
            json!({"b": 2, "a": "x", "signatures": {"origin.example": {"ed25519:k1": "s"}}})
                .as_object()
                .unwrap()
                .clone();
        pair.sign_json(&mut object, &user).unwrap();
        let signed_bytes = br#"{"a":"x","b":2}"#;
        assert!(has_valid_signature(
            &object,
            signed_bytes,
            &user,
            IDENTITY_KEY_ID,
            &pair.public_key()
        ));
        assert_eq!(object["signatures"]["origin.example"]["ed25519:k1"], "s", "others are kept");

        let other = IdentityKeyPair::from_phrase(&phrase(), 1);
        assert!(!has_valid_signature(
            &object,
            signed_bytes,
            &user,
            IDENTITY_KEY_ID,
            &other.public_key()
        ));
        assert!(!has_valid_signature(&object, b"{}", &user, IDENTITY_KEY_ID, &pair.public_key()));
        let eve = UserId::parse("@eve:origin.example").unwrap();
        assert!(!has_valid_signature(
            &object,
            signed_bytes,
            &eve,
            IDENTITY_KEY_ID,
            &pair.public_key()
        ));
    }
}
