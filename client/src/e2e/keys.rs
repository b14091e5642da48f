//! Checking what servers pass on about other devices, before anything is encrypted with it:
//! a user's attestation, device certificates and device-list hash (spec 17.2, 17.3). Sans-I/O:
//! every function takes the time and the keys it judges by. (Key objects and the hash itself
//! are [`guildhall_identity::e2e`]'s, shared with servers.)

use std::collections::BTreeMap;

use guildhall_identity::attestation::Attestation;
use guildhall_identity::device::{DeviceCertificate, DeviceKeys};
use guildhall_identity::e2e::device_list_hash;
use guildhall_spec::api::get_server_keys::ServerKeys;
use guildhall_spec::{DeviceId, JsonObject, KeyId, PublicKeyMap, ServerName, UserId, signing};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::wire::UserKeys;

/// A user's devices after every check of spec 17.3 passed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct VerifiedUser {
    /// The identity key of the user's current attestation.
    pub(crate) identity_key: String,
    /// The certified keys of each device.
    pub(crate) devices: BTreeMap<DeviceId, DeviceKeys>,
    /// The hash of exactly these devices.
    pub(crate) device_list_hash: String,
}

/// Why a server's answer about a user's keys cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeysError {
    /// No key document of the user's home server could be had, or none verifies.
    #[error("no verified key document of {0}")]
    NoServerKeys(ServerName),
    /// The attestation does not verify (spec 16.2).
    #[error("the attestation does not verify: {0}")]
    Attestation(String),
    /// The attestation is about someone else.
    #[error("the attestation is about {0}")]
    WrongUser(UserId),
    /// The user's current attestation revokes their identity key.
    #[error("the identity key is revoked")]
    Revoked,
    /// A device certificate does not verify against the attestation (spec 16.3).
    #[error("the certificate of device {device} does not verify: {reason}")]
    Certificate {
        /// The device, as the certificate names it (or its position when unreadable).
        device: String,
        /// Why.
        reason: String,
    },
    /// Two certificates name the same device.
    #[error("device {0} appears twice")]
    DuplicateDevice(DeviceId),
    /// The hash the server gave is not the hash of the certificates it gave.
    #[error("the device-list hash does not match the certificates")]
    HashMismatch,
}

/// Checks a user's keys as a server passed them on: the attestation with the keys of the
/// user's home server (`home_keys`, a verified key document), every certificate against it,
/// and the hash against the certificates.
pub(crate) fn verify_user(
    user_id: &UserId,
    answer: &UserKeys,
    home_keys: &ServerKeys,
    now_ms: u64,
) -> Result<VerifiedUser, KeysError> {
    let issued_ts = answer.attestation.get("issued_ts").and_then(Value::as_u64).unwrap_or(0);
    let keys = attestation_keys(home_keys, issued_ts);
    let attestation = Attestation::verify(&answer.attestation, &keys, now_ms)
        .map_err(|error| KeysError::Attestation(error.to_string()))?;
    if attestation.user_id != *user_id {
        return Err(KeysError::WrongUser(attestation.user_id));
    }
    let identity_key = attestation.usable_key().map_err(|_| KeysError::Revoked)?.to_owned();
    let mut certificates = Vec::with_capacity(answer.devices.len());
    let mut devices = BTreeMap::new();
    for (position, object) in answer.devices.iter().enumerate() {
        let certificate =
            DeviceCertificate::verify(object, &attestation, now_ms).map_err(|error| {
                let device = object
                    .get("device_id")
                    .and_then(Value::as_str)
                    .map_or_else(|| format!("#{position}"), str::to_owned);
                KeysError::Certificate { device, reason: error.to_string() }
            })?;
        if devices.insert(certificate.device_id.clone(), certificate.device_keys.clone()).is_some()
        {
            return Err(KeysError::DuplicateDevice(certificate.device_id));
        }
        certificates.push(certificate);
    }
    let device_list_hash = device_list_hash(&certificates);
    if device_list_hash != answer.device_list_hash {
        return Err(KeysError::HashMismatch);
    }
    Ok(VerifiedUser { identity_key, devices, device_list_hash })
}

/// Checks a key document (spec 04 §4.2, rule 2): it is `server`'s, and signed by its current
/// keys. Where it came from is the caller's business.
pub(crate) fn verify_server_keys(
    server: &ServerName,
    object: &JsonObject,
) -> Result<ServerKeys, KeysError> {
    let unusable = || KeysError::NoServerKeys(server.clone());
    let document: ServerKeys =
        serde_json::from_value(Value::Object(object.clone())).map_err(|_| unusable())?;
    if !document.server_name.as_str().eq_ignore_ascii_case(server.as_str()) {
        return Err(unusable());
    }
    let mut current = PublicKeyMap::new();
    for (key_id, key) in &document.verify_keys {
        current.insert_base64(server.clone(), key_id.clone(), &key.key).map_err(|_| unusable())?;
    }
    signing::verify_json(object, server, &current).map_err(|_| unusable())?;
    Ok(document)
}

/// The keys that may have signed an attestation issued at `issued_ts`: the current keys, and
/// the retired ones retired after it (spec 04 §4.3).
fn attestation_keys(document: &ServerKeys, issued_ts: u64) -> PublicKeyMap {
    let mut keys = PublicKeyMap::new();
    let server = &document.server_name;
    let current = document.verify_keys.iter().map(|(id, key)| (id, &key.key));
    let retired = document
        .old_verify_keys
        .iter()
        .filter(|(_, key)| issued_ts < key.expired_ts)
        .map(|(id, key)| (id, &key.key));
    for (key_id, key) in current.chain(retired) {
        // A key that does not decode verifies nothing; leaving it out has the same effect.
        let _ = keys.insert_base64(server.clone(), KeyId::clone(key_id), key);
    }
    keys
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::{Signer as _, SigningKey};
    use guildhall_identity::attestation::sign_binding;
    use guildhall_identity::key::IdentityKeyPair;
    use guildhall_spec::{ServerSigningKey, base64url};

    use super::*;

    const NOW: u64 = 1_700_000_000_000;

    fn certificate_of(device_id: &str, curve: u8, ed: u8) -> DeviceCertificate {
        DeviceCertificate {
            user_id: UserId::parse("@bob:origin.example").unwrap(),
            device_id: DeviceId::parse(device_id).unwrap(),
            device_keys: DeviceKeys {
                curve25519: base64url::encode([curve; 32]),
                ed25519: base64url::encode([ed; 32]),
            },
            identity_key: base64url::encode([1; 32]),
            valid_until_ts: None,
        }
    }

    /// The shared hash function against hashes computed independently with Python:
    /// `base64.urlsafe_b64encode(hashlib.sha256(json.dumps(list, separators=(",", ":"),
    /// sort_keys=True).encode()).digest()).rstrip(b"=")`, for `[]` and two devices.
    #[test]
    fn device_list_hashes() {
        assert_eq!(device_list_hash([]), "T1PNoYwrqgwDVLtfmj7L5e0Sq02OEbqHPC8RFhICuUU");
        let list = [certificate_of("PHONE1", 2, 3), certificate_of("LAPTOP", 4, 5)];
        assert_eq!(device_list_hash(&list), "LdAW5sZcG7gVTW8POrFadpnKyJS1Ez0_GdArO-_iS3Q");
    }

    struct World {
        home: ServerSigningKey,
        identity: IdentityKeyPair,
        user: UserId,
        device_key: SigningKey,
    }

    impl World {
        fn new() -> Self {
            let name = ServerName::parse("origin.example").unwrap();
            let home =
                ServerSigningKey::from_seed(name, KeyId::parse("ed25519:k1").unwrap(), &[1; 32]);
            Self {
                home,
                identity: IdentityKeyPair::from_secret(&[9; 32]),
                user: UserId::parse("@bob:origin.example").unwrap(),
                device_key: SigningKey::from_bytes(&[3; 32]),
            }
        }

        fn key_document(&self) -> JsonObject {
            let key = base64url::encode(self.home.verifying_key().as_bytes());
            let mut object = serde_json::json!({
                "server_name": "origin.example",
                "verify_keys": {"ed25519:k1": {"key": key}},
                "old_verify_keys": {},
                "valid_until_ts": NOW + 1000,
            })
            .as_object()
            .cloned()
            .unwrap();
            signing::sign_json(&mut object, &self.home).unwrap();
            object
        }

        fn attestation(&self) -> JsonObject {
            Attestation {
                user_id: self.user.clone(),
                identity_key: self.identity.public_base64url(),
                issued_ts: NOW - 10,
                revoked: false,
                binding: Some(sign_binding(&self.identity, &self.user)),
            }
            .sign(&self.home)
            .unwrap()
        }

        fn certificate(&self, device_id: &str) -> (JsonObject, DeviceCertificate) {
            let keys = DeviceKeys {
                curve25519: base64url::encode([7; 32]),
                ed25519: base64url::encode(self.device_key.verifying_key().as_bytes()),
            };
            let certificate = DeviceCertificate {
                user_id: self.user.clone(),
                device_id: DeviceId::parse(device_id).unwrap(),
                device_keys: keys,
                identity_key: self.identity.public_base64url(),
                valid_until_ts: None,
            };
            let signature = self.device_key.sign(&certificate.signing_bytes().unwrap()).to_bytes();
            (certificate.sign(&self.identity, &signature).unwrap(), certificate)
        }

        fn answer(&self) -> UserKeys {
            let (certificate, parsed) = self.certificate("PHONE1");
            UserKeys {
                attestation: self.attestation(),
                devices: vec![certificate],
                device_list_hash: device_list_hash([&parsed]),
            }
        }
    }

    #[test]
    fn a_users_keys_are_checked_from_the_key_document_to_the_hash() {
        let world = World::new();
        let server = ServerName::parse("origin.example").unwrap();
        let document = verify_server_keys(&server, &world.key_document()).unwrap();
        let verified = verify_user(&world.user, &world.answer(), &document, NOW).unwrap();
        assert_eq!(verified.identity_key, world.identity.public_base64url());
        assert_eq!(verified.devices.len(), 1);

        let check = |answer: &UserKeys, expected: fn(&KeysError) -> bool| {
            let error = verify_user(&world.user, answer, &document, NOW).unwrap_err();
            assert!(expected(&error), "{error}");
        };
        let mut wrong_hash = world.answer();
        wrong_hash.device_list_hash = device_list_hash([]);
        check(&wrong_hash, |e| *e == KeysError::HashMismatch);
        let mut hidden_device = world.answer();
        hidden_device.devices.clear();
        check(&hidden_device, |e| *e == KeysError::HashMismatch);
        let mut twice = world.answer();
        twice.devices.push(twice.devices[0].clone());
        check(&twice, |e| matches!(e, KeysError::DuplicateDevice(_)));
        let mut forged = world.answer();
        forged.devices[0].insert("valid_until_ts".into(), Value::from(NOW + 5));
        check(&forged, |e| matches!(e, KeysError::Certificate { .. }));
        let mut tampered = world.answer();
        tampered.attestation.insert("issued_ts".into(), Value::from(NOW - 5));
        check(&tampered, |e| matches!(e, KeysError::Attestation(_)));
        let eve = UserId::parse("@eve:origin.example").unwrap();
        assert_eq!(
            verify_user(&eve, &world.answer(), &document, NOW),
            Err(KeysError::WrongUser(world.user.clone()))
        );

        // A key document that is not the server's, or not signed by its keys, is not used.
        let other = ServerName::parse("other.example").unwrap();
        assert!(verify_server_keys(&other, &world.key_document()).is_err());
        let mut unsigned = world.key_document();
        unsigned.insert("valid_until_ts".into(), Value::from(NOW + 2000));
        assert!(verify_server_keys(&server, &unsigned).is_err());
    }
}
