//! Identity key rotation and recovery (spec 16.6).
//!
//! A rotation statement replaces the current identity key with the next one derived from the
//! same phrase. Both keys sign it: the old key's signature shows that the holder of the current
//! identity wants the change, the new key's that the user holds the key it is moving to. The home
//! server then attests the new key. Recovery derives keys from the phrase, index after index,
//! until one is the key of the current attestation.

use guildhall_spec::event::JsonObject;
use guildhall_spec::{UserId, signing};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use zeroize::Zeroizing;

use crate::attestation::Attestation;
use crate::key::{self, IDENTITY_KEY_ID, IdentityKeyPair};
use crate::phrase::{IDENTITY_PATH, RecoveryPhrase, slip10_ed25519};

/// The key id the new identity key signs a rotation under.
pub const NEXT_IDENTITY_KEY_ID: &str = "ed25519:identity_next";

/// How many key indices [`recover`] tries (spec 16.6: at least the first 1024).
pub const RECOVERY_SEARCH_LIMIT: u32 = 1024;

/// Key indices are SLIP-0010 hardened indices, below 2^31 (spec 16.1).
const INDEX_LIMIT: u32 = 1 << 31;

/// What a rotation statement says. On the wire it carries
/// `"type": "guildhall.identity_rotation.v1"` and both keys' signatures under `user_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename = "guildhall.identity_rotation.v1", from = "WireRotation")]
pub struct IdentityRotation {
    /// The user whose identity key changes.
    pub user_id: UserId,
    /// The current identity key, base64url; signs as `ed25519:identity`.
    pub old_key: String,
    /// The key replacing it, base64url; signs as `ed25519:identity_next`.
    pub new_key: String,
    /// The derivation index of `new_key` (spec 16.1), below 2^31; a hint for recovery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_index: Option<u32>,
    /// When the statement was made (ms).
    pub ts: u64,
}

/// A rotation as read from the wire. Serde ignores `tag` when deserializing a struct, so the
/// `type` member is checked here, with an enum of the one allowed value.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireRotation {
    #[serde(rename = "type")]
    _type: RotationType,
    user_id: UserId,
    old_key: String,
    new_key: String,
    new_index: Option<u32>,
    ts: u64,
}

#[derive(Deserialize)]
enum RotationType {
    #[serde(rename = "guildhall.identity_rotation.v1")]
    V1,
}

impl From<WireRotation> for IdentityRotation {
    fn from(wire: WireRotation) -> Self {
        Self {
            user_id: wire.user_id,
            old_key: wire.old_key,
            new_key: wire.new_key,
            new_index: wire.new_index,
            ts: wire.ts,
        }
    }
}

/// Why a rotation cannot be signed or is not valid.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RotationError {
    /// Not the shape of spec 16.6 (unknown or missing members, wrong types, wrong `type`,
    /// `new_index` out of range), or no canonical form.
    #[error("malformed rotation: {0}")]
    Malformed(String),
    /// `old_key` or `new_key` is not a valid Ed25519 key.
    #[error("a key of the rotation is not a valid Ed25519 key")]
    BadKey,
    /// `old_key` and `new_key` are the same.
    #[error("a rotation to the same key")]
    SameKey,
    /// The statement is of another user than the attestation it is checked against.
    #[error("rotation of {statement}, checked against the attestation of {attestation}")]
    WrongUser {
        /// The statement's user.
        statement: UserId,
        /// The attestation's user.
        attestation: UserId,
    },
    /// The user's current attestation revokes the identity key, so there is no key to rotate.
    #[error("the user's identity key is revoked")]
    Revoked,
    /// `old_key` is not the user's current identity key.
    #[error("the old key is not the current identity key")]
    NotCurrent,
    /// The old key's signature (`ed25519:identity`) is missing or does not verify.
    #[error("the old key's signature is missing or does not verify")]
    OldKeySignature,
    /// The new key's signature (`ed25519:identity_next`) is missing or does not verify.
    #[error("the new key's signature is missing or does not verify")]
    NewKeySignature,
    /// When signing: a key pair does not hold the key the statement names for it.
    #[error("a signing key pair does not hold the key the statement names")]
    WrongSigner,
}

impl IdentityRotation {
    /// The statement signed by `old` (holding `old_key`) and `new` (holding `new_key`), both
    /// over `JCS(statement without signatures)`.
    pub fn sign(
        &self,
        old: &IdentityKeyPair,
        new: &IdentityKeyPair,
    ) -> Result<JsonObject, RotationError> {
        if self.old_key == self.new_key {
            return Err(RotationError::SameKey);
        }
        if old.public_base64url() != self.old_key || new.public_base64url() != self.new_key {
            return Err(RotationError::WrongSigner);
        }
        self.check_index()?;
        let Ok(Value::Object(mut object)) = serde_json::to_value(self) else {
            return Err(RotationError::Malformed("not an object".into()));
        };
        let message = signing::signing_bytes(&object, &[])
            .map_err(|e| RotationError::Malformed(e.to_string()))?;
        key::insert_signature(&mut object, &self.user_id, IDENTITY_KEY_ID, &old.sign(&message));
        key::insert_signature(
            &mut object,
            &self.user_id,
            NEXT_IDENTITY_KEY_ID,
            &new.sign(&message),
        );
        Ok(object)
    }

    /// Checks a rotation as received (spec 16.6): its shape and keys, that `old_key` is the
    /// identity key of `current`, the user's current attestation (already verified), and both
    /// signatures.
    pub fn verify(object: &JsonObject, current: &Attestation) -> Result<Self, RotationError> {
        let mut fields = object.clone();
        fields.remove("signatures");
        let rotation: Self = serde_json::from_value(Value::Object(fields))
            .map_err(|e| RotationError::Malformed(e.to_string()))?;
        rotation.check_index()?;
        let old_key = key::parse_public_key(&rotation.old_key).ok_or(RotationError::BadKey)?;
        let new_key = key::parse_public_key(&rotation.new_key).ok_or(RotationError::BadKey)?;
        if rotation.old_key == rotation.new_key {
            return Err(RotationError::SameKey);
        }
        if rotation.user_id != current.user_id {
            return Err(RotationError::WrongUser {
                statement: rotation.user_id,
                attestation: current.user_id.clone(),
            });
        }
        let current_key = current.usable_key().map_err(|_| RotationError::Revoked)?;
        if rotation.old_key != current_key {
            return Err(RotationError::NotCurrent);
        }
        let message = signing::signing_bytes(object, &[])
            .map_err(|e| RotationError::Malformed(e.to_string()))?;
        let user = &rotation.user_id;
        if !key::has_valid_signature(object, &message, user, IDENTITY_KEY_ID, &old_key) {
            return Err(RotationError::OldKeySignature);
        }
        if !key::has_valid_signature(object, &message, user, NEXT_IDENTITY_KEY_ID, &new_key) {
            return Err(RotationError::NewKeySignature);
        }
        Ok(rotation)
    }

    fn check_index(&self) -> Result<(), RotationError> {
        match self.new_index {
            Some(index) if index >= INDEX_LIMIT => {
                Err(RotationError::Malformed(format!("new_index {index} is not below 2^31")))
            }
            _ => Ok(()),
        }
    }
}

/// Finds which of the phrase's keys is `identity_key` (base64url, the usable key of the user's
/// current attestation), trying indices `0..RECOVERY_SEARCH_LIMIT` in order. Returns the index
/// and the key pair, or `None` if the phrase does not hold the key.
pub fn recover(phrase: &RecoveryPhrase, identity_key: &str) -> Option<(u32, IdentityKeyPair)> {
    let wanted = key::parse_public_key(identity_key)?;
    // The BIP39 seed costs 2048 PBKDF2 rounds: derive it once, not once per index.
    let seed = Zeroizing::new(phrase.seed());
    (0..RECOVERY_SEARCH_LIMIT).find_map(|index| {
        let path = [IDENTITY_PATH[0], IDENTITY_PATH[1], index];
        let secret = Zeroizing::new(slip10_ed25519(seed.as_slice(), &path).0);
        let pair = IdentityKeyPair::from_secret(&secret);
        (pair.public_key() == wanted).then_some((index, pair))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vectors;

    fn phrase() -> RecoveryPhrase {
        RecoveryPhrase::from_entropy([0; 32])
    }

    fn identity(index: u32) -> IdentityKeyPair {
        IdentityKeyPair::from_phrase(&phrase(), index)
    }

    fn bob_rotates(old: u32, new: u32) -> IdentityRotation {
        IdentityRotation {
            user_id: UserId::parse("@bob:origin.example").unwrap(),
            old_key: identity(old).public_base64url(),
            new_key: identity(new).public_base64url(),
            new_index: Some(new),
            ts: 1_700_000_000_000,
        }
    }

    fn attestation(identity_key: String, revoked: bool) -> Attestation {
        Attestation {
            user_id: UserId::parse("@bob:origin.example").unwrap(),
            identity_key,
            issued_ts: 1_600_000_000_000,
            revoked,
            binding: None,
        }
    }

    #[test]
    fn both_keys_sign_and_the_old_one_must_be_current() {
        let rotation = bob_rotates(0, 1);
        let signed = rotation.sign(&identity(0), &identity(1)).unwrap();
        let by_key = signed["signatures"]["@bob:origin.example"].as_object().unwrap();
        assert_eq!(by_key.keys().collect::<Vec<_>>(), [IDENTITY_KEY_ID, NEXT_IDENTITY_KEY_ID]);
        let current = attestation(identity(0).public_base64url(), false);
        assert_eq!(IdentityRotation::verify(&signed, &current), Ok(rotation.clone()));

        let rotated = attestation(identity(1).public_base64url(), false);
        assert_eq!(IdentityRotation::verify(&signed, &rotated), Err(RotationError::NotCurrent));
        let revoked = attestation(identity(0).public_base64url(), true);
        assert_eq!(IdentityRotation::verify(&signed, &revoked), Err(RotationError::Revoked));

        let mut only_old = signed.clone();
        only_old["signatures"]["@bob:origin.example"]
            .as_object_mut()
            .unwrap()
            .remove(NEXT_IDENTITY_KEY_ID);
        assert_eq!(
            IdentityRotation::verify(&only_old, &current),
            Err(RotationError::NewKeySignature)
        );
    }

    #[test]
    fn signing_needs_both_named_keys() {
        let rotation = bob_rotates(0, 1);
        assert_eq!(rotation.sign(&identity(0), &identity(2)), Err(RotationError::WrongSigner));
        assert_eq!(rotation.sign(&identity(1), &identity(0)), Err(RotationError::WrongSigner));
        assert_eq!(bob_rotates(1, 1).sign(&identity(1), &identity(1)), Err(RotationError::SameKey));
    }

    #[test]
    fn recovery_finds_the_current_index() {
        let (index, pair) = recover(&phrase(), &identity(3).public_base64url()).unwrap();
        assert_eq!((index, pair.public_key()), (3, identity(3).public_key()));
        let stranger = IdentityKeyPair::from_secret(&[9; 32]).public_base64url();
        assert!(recover(&phrase(), &stranger).is_none());
        assert!(recover(&phrase(), "AAAA").is_none());
    }

    /// `spec/vectors/identity.json`, `rotations`: made and judged by the independent generator.
    #[test]
    fn rotation_vectors() {
        let doc = &vectors::identity()["rotations"];
        let keys = vectors::server_keys(&doc["keys"]);
        let now = doc["now_ms"].as_u64().unwrap();
        for case in doc["cases"].as_array().unwrap() {
            let current = vectors::attestation(&case["attestation"], &keys, now);
            let result = IdentityRotation::verify(case["rotation"].as_object().unwrap(), &current);
            let reason = result.err().map(|error| match error {
                RotationError::Malformed(_) => "malformed",
                RotationError::BadKey => "bad_key",
                RotationError::SameKey => "same_key",
                RotationError::WrongUser { .. } => "wrong_user",
                RotationError::Revoked => "revoked",
                RotationError::NotCurrent => "old_key_not_current",
                RotationError::OldKeySignature => "bad_old_key_signature",
                RotationError::NewKeySignature => "bad_new_key_signature",
                RotationError::WrongSigner => "wrong_signer",
            });
            vectors::check_verdict(case, reason);
        }
    }
}
