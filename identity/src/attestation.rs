//! Attestations (spec 16.2): a homeserver's signed statement that one of its users is bound to
//! an identity key, or, with `"revoked": true`, that the binding has ended. Sans-I/O: verifying
//! takes the home server's keys usable at `issued_ts`, which the caller fetches.

use guildhall_spec::event::JsonObject;
use guildhall_spec::signing::{self, SignatureError};
use guildhall_spec::{PublicKeyMap, ServerSigningKey, UserId, base64url, canonical};

use crate::key::{self, IdentityKeyPair};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// How far in the future an attestation's `issued_ts` may lie (clock skew), in milliseconds.
pub const MAX_SKEW_MS: u64 = 60_000;

/// What an attestation says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attestation {
    /// The user, a user of the signing server.
    pub user_id: UserId,
    /// The identity key, base64url.
    pub identity_key: String,
    /// When it was issued (ms); among valid attestations of a user, the latest is current.
    pub issued_ts: u64,
    /// Whether this attestation ends the binding of `user_id` to `identity_key`. On the wire
    /// only when true; absent means false.
    #[serde(default, skip_serializing_if = "is_false")]
    pub revoked: bool,
    /// The identity key's consent to the binding ([`sign_binding`]): without it a home server
    /// could attest someone else's key for its user. Required unless `revoked`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binding: Option<String>,
}

/// The object an identity key signs to consent to being bound to `user_id` (spec 16.2).
#[derive(Serialize)]
#[serde(tag = "type", rename = "guildhall.identity_binding.v1")]
struct Binding<'a> {
    user_id: &'a UserId,
    identity_key: &'a str,
}

/// The canonical bytes of the binding of `identity_key` to `user_id`.
pub fn binding_bytes(user_id: &UserId, identity_key: &str) -> Vec<u8> {
    // Strings only: every string has a canonical form.
    #[allow(clippy::expect_used)]
    canonical::to_canonical_bytes(&Binding { user_id, identity_key }).expect("strings only")
}

/// The identity key's signature consenting to be bound to `user_id` (base64url), for an
/// attestation's `binding`.
pub fn sign_binding(identity: &IdentityKeyPair, user_id: &UserId) -> String {
    let message = binding_bytes(user_id, &identity.public_base64url());
    base64url::encode(identity.sign(&message))
}

/// Whether `binding` is `identity_key`'s consent to be bound to `user_id`.
pub fn check_binding(user_id: &UserId, identity_key: &str, binding: &str) -> bool {
    let (Some(key), Some(signature)) =
        (key::parse_public_key(identity_key), base64url::decode_array::<64>(binding))
    else {
        return false;
    };
    key::is_valid_signature(&key, &binding_bytes(user_id, identity_key), &signature)
}

/// Why an attestation is not valid.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AttestationError {
    /// Not the shape of spec 16.2 (unknown or missing members, wrong types).
    #[error("malformed attestation: {0}")]
    Malformed(String),
    /// `identity_key` is not a valid Ed25519 public key.
    #[error("the identity key is not a valid Ed25519 key")]
    BadIdentityKey,
    /// `issued_ts` lies further in the future than clocks may disagree.
    #[error("issued in the future")]
    FromTheFuture,
    /// The home server's signature is missing or does not verify.
    #[error(transparent)]
    Signature(#[from] SignatureError),
    /// The signer is not the user's home server.
    #[error("signed by {0}, not by the user's home server")]
    WrongSigner(String),
    /// A binding attestation lacks the identity key's consent, or it does not verify.
    #[error("the identity key did not consent to this binding")]
    Binding,
    /// The attestation revokes the identity key, so the user has none that is usable. Only
    /// [`Attestation::usable_key`] says this: a revoking attestation is itself valid.
    #[error("the identity key is revoked")]
    Revoked,
}

impl Attestation {
    /// The attestation signed by the user's home server with `home_key`. A binding one must
    /// carry the identity key's consent (`binding`).
    pub fn sign(&self, home_key: &ServerSigningKey) -> Result<JsonObject, AttestationError> {
        if home_key.server_name() != &self.user_id.server_name() {
            return Err(AttestationError::WrongSigner(home_key.server_name().to_string()));
        }
        let consented = self
            .binding
            .as_deref()
            .is_some_and(|binding| check_binding(&self.user_id, &self.identity_key, binding));
        if !self.revoked && !consented {
            return Err(AttestationError::Binding);
        }
        let Ok(Value::Object(mut object)) = serde_json::to_value(self) else {
            return Err(AttestationError::Malformed("not an object".into()));
        };
        signing::sign_json(&mut object, home_key)
            .map_err(|e| AttestationError::Malformed(e.to_string()))?;
        Ok(object)
    }

    /// Checks an attestation as received: its shape, its identity key, its time against
    /// `now_ms`, and the home server's signature with `home_keys` (the keys of the user's home
    /// server usable at `issued_ts`, spec 04 §4.3).
    pub fn verify(
        object: &JsonObject,
        home_keys: &PublicKeyMap,
        now_ms: u64,
    ) -> Result<Self, AttestationError> {
        let mut fields = object.clone();
        fields.remove("signatures");
        let attestation: Self = serde_json::from_value(Value::Object(fields))
            .map_err(|e| AttestationError::Malformed(e.to_string()))?;
        if signing::decode_public_key(&attestation.identity_key).is_none() {
            return Err(AttestationError::BadIdentityKey);
        }
        if attestation.issued_ts > now_ms.saturating_add(MAX_SKEW_MS) {
            return Err(AttestationError::FromTheFuture);
        }
        let consented = attestation.binding.as_deref().is_some_and(|binding| {
            check_binding(&attestation.user_id, &attestation.identity_key, binding)
        });
        if !attestation.revoked && !consented {
            return Err(AttestationError::Binding);
        }
        let home = attestation.user_id.server_name();
        signing::verify_json(object, &home, home_keys)?;
        Ok(attestation)
    }

    /// The current one among valid attestations of one user: the latest issued, whether it
    /// revokes or not.
    pub fn current<'a>(valid: impl IntoIterator<Item = &'a Self>) -> Option<&'a Self> {
        valid.into_iter().max_by_key(|attestation| attestation.issued_ts)
    }

    /// The identity key this attestation makes usable (base64url), or [`AttestationError::Revoked`]
    /// if it revokes it. Called on the current attestation, this is the user's identity key.
    pub fn usable_key(&self) -> Result<&str, AttestationError> {
        if self.revoked { Err(AttestationError::Revoked) } else { Ok(&self.identity_key) }
    }
}

fn is_false(value: &bool) -> bool {
    !value
}

#[cfg(test)]
mod tests {
    use guildhall_spec::{KeyId, ServerName};

    use super::*;

    fn key(server: &str, seed: u8) -> ServerSigningKey {
        let name = ServerName::parse(server).unwrap();
        ServerSigningKey::from_seed(name, KeyId::parse("ed25519:k1").unwrap(), &[seed; 32])
    }

    fn keys_of(key: &ServerSigningKey) -> PublicKeyMap {
        let mut keys = PublicKeyMap::new();
        keys.insert(key.server_name().clone(), key.key_id().clone(), key.verifying_key());
        keys
    }

    /// `spec/vectors/identity.json`, `attestations`: signed by the independent generator.
    #[test]
    fn attestation_vectors() {
        let doc = &crate::vectors::identity()["attestations"];
        let keys = crate::vectors::server_keys(&doc["keys"]);
        let now = doc["now_ms"].as_u64().unwrap();
        for case in doc["cases"].as_array().unwrap() {
            let object = case["attestation"].as_object().unwrap();
            let verified = Attestation::verify(object, &keys, now);
            assert_eq!(verified.is_ok(), case["valid"].as_bool().unwrap(), "{}", case["name"]);
            let usable =
                verified.as_ref().is_ok_and(|attestation| attestation.usable_key().is_ok());
            assert_eq!(usable, case["usable"].as_bool().unwrap(), "{}", case["name"]);
        }
    }

    #[test]
    fn only_the_home_server_attests_and_the_latest_is_current() {
        let home = key("origin.example", 1);
        let user = UserId::parse("@bob:origin.example").unwrap();
        let identity = IdentityKeyPair::from_secret(&[9; 32]);
        let first = Attestation {
            user_id: user.clone(),
            identity_key: identity.public_base64url(),
            issued_ts: 1,
            revoked: false,
            binding: Some(sign_binding(&identity, &user)),
        };
        let signed = first.sign(&home).unwrap();
        assert_eq!(Attestation::verify(&signed, &keys_of(&home), 2).unwrap(), first);
        // Another server cannot attest for bob, nor sign under origin's name with its own key.
        assert!(first.sign(&key("other.example", 2)).is_err());
        let mut tampered = signed.clone();
        tampered.insert("issued_ts".into(), 5.into());
        assert!(Attestation::verify(&tampered, &keys_of(&home), 10).is_err());
        assert_eq!(
            Attestation::verify(&signed, &keys_of(&home), 0).map(|a| a.issued_ts),
            Ok(1),
            "a second ahead is within the allowed skew"
        );
        let later = Attestation { issued_ts: 7, ..first.clone() };
        assert_eq!(Attestation::current([&first, &later]), Some(&later));
    }

    #[test]
    fn a_home_server_cannot_bind_a_key_without_its_consent() {
        let home = key("origin.example", 1);
        let bob = UserId::parse("@bob:origin.example").unwrap();
        let eve = UserId::parse("@eve:origin.example").unwrap();
        let identity = IdentityKeyPair::from_secret(&[9; 32]);
        let unbound = Attestation {
            user_id: eve.clone(),
            identity_key: identity.public_base64url(),
            issued_ts: 1,
            revoked: false,
            binding: None,
        };
        assert_eq!(unbound.sign(&home), Err(AttestationError::Binding));
        // Bob's consent does not bind the key to eve.
        let borrowed =
            Attestation { binding: Some(sign_binding(&identity, &bob)), ..unbound.clone() };
        assert_eq!(borrowed.sign(&home), Err(AttestationError::Binding));
        // Forced through with the home server's key, it still does not verify.
        let mut object = serde_json::to_value(&borrowed).unwrap().as_object().cloned().unwrap();
        signing::sign_json(&mut object, &home).unwrap();
        assert_eq!(
            Attestation::verify(&object, &keys_of(&home), 2),
            Err(AttestationError::Binding)
        );
        // Revoking needs no consent.
        let revoking = Attestation { revoked: true, ..unbound };
        assert!(Attestation::verify(&revoking.sign(&home).unwrap(), &keys_of(&home), 2).is_ok());
    }

    #[test]
    fn a_later_revoking_attestation_leaves_no_usable_key() {
        let home = key("origin.example", 1);
        let pair = IdentityKeyPair::from_secret(&[9; 32]);
        let identity = pair.public_base64url();
        let user = UserId::parse("@bob:origin.example").unwrap();
        let bound = Attestation {
            binding: Some(sign_binding(&pair, &user)),
            user_id: user,
            identity_key: identity.clone(),
            issued_ts: 1,
            revoked: false,
        };
        let revoking = Attestation { issued_ts: 2, revoked: true, ..bound.clone() };
        assert!(!bound.sign(&home).unwrap().contains_key("revoked"), "false is left out");
        let signed = revoking.sign(&home).unwrap();
        assert_eq!(signed["revoked"], true);
        let verified = Attestation::verify(&signed, &keys_of(&home), 2).unwrap();
        assert_eq!(verified, revoking);
        assert_eq!(bound.usable_key(), Ok(identity.as_str()));
        let current = Attestation::current([&bound, &verified]).unwrap();
        assert_eq!(current.usable_key(), Err(AttestationError::Revoked));
    }
}
