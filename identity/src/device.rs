//! Device certificates (spec 16.3): the identity key's statement that a device and its keys
//! belong to the user, countersigned by the device's Ed25519 key to prove the device holds it.
//!
//! Both signatures cover the same bytes, [`DeviceCertificate::signing_bytes`], so the device can
//! sign with a key this crate never sees (vodozemac's `Account::sign`) and hand the signature to
//! whoever holds the identity secret, which assembles the certificate with
//! [`DeviceCertificate::sign`].

use ed25519_dalek::VerifyingKey;
use guildhall_spec::event::JsonObject;
use guildhall_spec::{DeviceId, UserId, base64url, canonical, signing};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::attestation::Attestation;
use crate::key::{self, IDENTITY_KEY_ID, IdentityKeyPair};

/// Device ids a certificate may not use: with them the device's key id would name an identity
/// key (`ed25519:identity`, `ed25519:identity_next`) in the same `signatures` map.
pub const RESERVED_DEVICE_IDS: [&str; 2] = ["identity", "identity_next"];

/// What a device certificate says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceCertificate {
    /// The user the device belongs to.
    pub user_id: UserId,
    /// The device, as named by the user's home server.
    pub device_id: DeviceId,
    /// The device's public keys.
    pub device_keys: DeviceKeys,
    /// The identity key that certifies the device, base64url.
    pub identity_key: String,
    /// When the certificate stops being valid (ms); `None`: when replaced or revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_until_ts: Option<u64>,
}

/// A device's public keys (spec 17), each 32 bytes, base64url.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceKeys {
    /// The Curve25519 key Olm sessions are made with.
    pub curve25519: String,
    /// The Ed25519 key the device signs with, under key id `ed25519:<device_id>`.
    pub ed25519: String,
}

/// Why a device certificate cannot be made or is not valid.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DeviceCertificateError {
    /// Not the shape of spec 16.3 (unknown or missing members, wrong types), or no canonical
    /// form.
    #[error("malformed device certificate: {0}")]
    Malformed(String),
    /// The device id is one of [`RESERVED_DEVICE_IDS`].
    #[error("device id {0} is reserved")]
    ReservedDeviceId(DeviceId),
    /// A device key is not 32 bytes of base64url, or the Ed25519 one is not a valid key.
    #[error("the device keys are not valid")]
    BadDeviceKeys,
    /// `identity_key` is not a valid Ed25519 key.
    #[error("the identity key is not a valid Ed25519 key")]
    BadIdentityKey,
    /// The certificate is for another user than the attestation it is checked against.
    #[error("certificate of {certificate}, checked against the attestation of {attestation}")]
    WrongUser {
        /// The certificate's user.
        certificate: UserId,
        /// The attestation's user.
        attestation: UserId,
    },
    /// The user's current attestation revokes the identity key.
    #[error("the user's identity key is revoked")]
    Revoked,
    /// `identity_key` is not the user's current identity key (or, when signing, not the key of
    /// the pair that signs).
    #[error("not certified by the user's current identity key")]
    WrongIdentityKey,
    /// The identity key's signature is missing or does not verify.
    #[error("the identity signature is missing or does not verify")]
    IdentitySignature,
    /// The device key's signature is missing or does not verify.
    #[error("the device signature is missing or does not verify")]
    DeviceSignature,
    /// `valid_until_ts` has passed.
    #[error("expired at {valid_until_ts}")]
    Expired {
        /// When the certificate stopped being valid (ms).
        valid_until_ts: u64,
    },
}

impl DeviceCertificate {
    /// The key id the device signs under: `ed25519:<device_id>`.
    pub fn device_key_id(&self) -> String {
        format!("ed25519:{}", self.device_id)
    }

    /// The bytes both signatures cover: `JCS(certificate without signatures)`.
    pub fn signing_bytes(&self) -> Result<Vec<u8>, DeviceCertificateError> {
        canonical::to_canonical_bytes(self)
            .map_err(|e| DeviceCertificateError::Malformed(e.to_string()))
    }

    /// The signed certificate: signs with `identity`, which must hold `identity_key`, and adds
    /// `device_signature`, the device's signature over [`Self::signing_bytes`], after checking
    /// it with `device_keys.ed25519`.
    pub fn sign(
        &self,
        identity: &IdentityKeyPair,
        device_signature: &[u8; 64],
    ) -> Result<JsonObject, DeviceCertificateError> {
        let (_, device_key) = self.keys()?;
        if identity.public_base64url() != self.identity_key {
            return Err(DeviceCertificateError::WrongIdentityKey);
        }
        let message = self.signing_bytes()?;
        if !key::is_valid_signature(&device_key, &message, device_signature) {
            return Err(DeviceCertificateError::DeviceSignature);
        }
        let Ok(Value::Object(mut object)) = serde_json::to_value(self) else {
            return Err(DeviceCertificateError::Malformed("not an object".into()));
        };
        key::insert_signature(
            &mut object,
            &self.user_id,
            IDENTITY_KEY_ID,
            &identity.sign(&message),
        );
        key::insert_signature(&mut object, &self.user_id, &self.device_key_id(), device_signature);
        Ok(object)
    }

    /// Checks a certificate as received (spec 16.3): its shape and keys, that it is certified by
    /// the identity key of `current`, the user's current attestation (already verified), both
    /// signatures, and that it has not expired at `now_ms`.
    pub fn verify(
        object: &JsonObject,
        current: &Attestation,
        now_ms: u64,
    ) -> Result<Self, DeviceCertificateError> {
        let mut fields = object.clone();
        fields.remove("signatures");
        let certificate: Self = serde_json::from_value(Value::Object(fields))
            .map_err(|e| DeviceCertificateError::Malformed(e.to_string()))?;
        let (identity_key, device_key) = certificate.keys()?;
        if certificate.user_id != current.user_id {
            return Err(DeviceCertificateError::WrongUser {
                certificate: certificate.user_id,
                attestation: current.user_id.clone(),
            });
        }
        let current_key = current.usable_key().map_err(|_| DeviceCertificateError::Revoked)?;
        if certificate.identity_key != current_key {
            return Err(DeviceCertificateError::WrongIdentityKey);
        }
        let message = signing::signing_bytes(object, &[])
            .map_err(|e| DeviceCertificateError::Malformed(e.to_string()))?;
        let user = &certificate.user_id;
        if !key::has_valid_signature(object, &message, user, IDENTITY_KEY_ID, &identity_key) {
            return Err(DeviceCertificateError::IdentitySignature);
        }
        let device_key_id = certificate.device_key_id();
        if !key::has_valid_signature(object, &message, user, &device_key_id, &device_key) {
            return Err(DeviceCertificateError::DeviceSignature);
        }
        if let Some(valid_until_ts) = certificate.valid_until_ts.filter(|&ts| ts <= now_ms) {
            return Err(DeviceCertificateError::Expired { valid_until_ts });
        }
        Ok(certificate)
    }

    /// The identity key and the device's Ed25519 key, after checking every key and the device
    /// id.
    fn keys(&self) -> Result<(VerifyingKey, VerifyingKey), DeviceCertificateError> {
        if RESERVED_DEVICE_IDS.contains(&self.device_id.as_str()) {
            return Err(DeviceCertificateError::ReservedDeviceId(self.device_id.clone()));
        }
        let identity_key = key::parse_public_key(&self.identity_key)
            .ok_or(DeviceCertificateError::BadIdentityKey)?;
        let device_key = key::parse_public_key(&self.device_keys.ed25519)
            .ok_or(DeviceCertificateError::BadDeviceKeys)?;
        if base64url::decode_array::<32>(&self.device_keys.curve25519).is_none() {
            return Err(DeviceCertificateError::BadDeviceKeys);
        }
        Ok((identity_key, device_key))
    }
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::{Signer as _, SigningKey};

    use super::*;
    use crate::phrase::RecoveryPhrase;
    use crate::vectors;

    const NOW: u64 = 1_700_000_000_000;

    fn identity(index: u32) -> IdentityKeyPair {
        IdentityKeyPair::from_phrase(&RecoveryPhrase::from_entropy([0; 32]), index)
    }

    fn attestation(identity_key: &str, revoked: bool) -> Attestation {
        Attestation {
            user_id: UserId::parse("@bob:origin.example").unwrap(),
            identity_key: identity_key.to_owned(),
            issued_ts: NOW,
            revoked,
            binding: None,
        }
    }

    fn certificate(device_key: &SigningKey, identity: &IdentityKeyPair) -> DeviceCertificate {
        DeviceCertificate {
            user_id: UserId::parse("@bob:origin.example").unwrap(),
            device_id: DeviceId::parse("PHONE1").unwrap(),
            device_keys: DeviceKeys {
                curve25519: base64url::encode([4; 32]),
                ed25519: base64url::encode(device_key.verifying_key().as_bytes()),
            },
            identity_key: identity.public_base64url(),
            valid_until_ts: Some(NOW + 1),
        }
    }

    fn device_sign(device_key: &SigningKey, certificate: &DeviceCertificate) -> [u8; 64] {
        device_key.sign(&certificate.signing_bytes().unwrap()).to_bytes()
    }

    #[test]
    fn signed_by_both_keys_and_checked_against_the_current_attestation() {
        let (device_key, pair) = (SigningKey::from_bytes(&[3; 32]), identity(0));
        let certificate = certificate(&device_key, &pair);
        let signed = certificate.sign(&pair, &device_sign(&device_key, &certificate)).unwrap();
        assert!(signed["signatures"]["@bob:origin.example"]["ed25519:PHONE1"].is_string());
        let current = attestation(&pair.public_base64url(), false);
        assert_eq!(DeviceCertificate::verify(&signed, &current, NOW), Ok(certificate.clone()));

        let check = |current: &Attestation, now, expected| {
            assert_eq!(DeviceCertificate::verify(&signed, current, now), Err(expected));
        };
        check(&current, NOW + 1, DeviceCertificateError::Expired { valid_until_ts: NOW + 1 });
        check(&attestation(&pair.public_base64url(), true), NOW, DeviceCertificateError::Revoked);
        check(
            &attestation(&identity(1).public_base64url(), false),
            NOW,
            DeviceCertificateError::WrongIdentityKey,
        );
        let eve = Attestation { user_id: UserId::parse("@eve:origin.example").unwrap(), ..current };
        assert!(matches!(
            DeviceCertificate::verify(&signed, &eve, NOW),
            Err(DeviceCertificateError::WrongUser { .. })
        ));
    }

    #[test]
    fn signing_refuses_a_foreign_identity_or_a_wrong_device_signature() {
        let (device_key, pair) = (SigningKey::from_bytes(&[3; 32]), identity(0));
        let certificate = certificate(&device_key, &pair);
        let device_signature = device_sign(&device_key, &certificate);
        assert_eq!(
            certificate.sign(&identity(1), &device_signature),
            Err(DeviceCertificateError::WrongIdentityKey)
        );
        let by_another_device = device_sign(&SigningKey::from_bytes(&[5; 32]), &certificate);
        assert_eq!(
            certificate.sign(&pair, &by_another_device),
            Err(DeviceCertificateError::DeviceSignature)
        );
        let reserved =
            DeviceCertificate { device_id: DeviceId::parse("identity").unwrap(), ..certificate };
        assert!(matches!(
            reserved.sign(&pair, &device_signature),
            Err(DeviceCertificateError::ReservedDeviceId(_))
        ));
    }

    /// `spec/vectors/identity.json`, `device_certificates`: made and judged by the independent
    /// generator.
    #[test]
    fn device_certificate_vectors() {
        let doc = &vectors::identity()["device_certificates"];
        let keys = vectors::server_keys(&doc["keys"]);
        let now = doc["now_ms"].as_u64().unwrap();
        for case in doc["cases"].as_array().unwrap() {
            let current = vectors::attestation(&case["attestation"], &keys, now);
            let object = case["certificate"].as_object().unwrap();
            let result = DeviceCertificate::verify(object, &current, now);
            let reason = result.as_ref().err().map(|error| match error {
                DeviceCertificateError::Malformed(_) => "malformed",
                DeviceCertificateError::ReservedDeviceId(_) => "reserved_device_id",
                DeviceCertificateError::BadDeviceKeys => "bad_device_keys",
                DeviceCertificateError::BadIdentityKey => "bad_identity_key",
                DeviceCertificateError::WrongUser { .. } => "wrong_user",
                DeviceCertificateError::Revoked => "revoked",
                DeviceCertificateError::WrongIdentityKey => "wrong_identity_key",
                DeviceCertificateError::IdentitySignature => "bad_identity_signature",
                DeviceCertificateError::DeviceSignature => "bad_device_signature",
                DeviceCertificateError::Expired { .. } => "expired",
            });
            vectors::check_verdict(case, reason);
        }
    }
}
