//! The public parts of end-to-end encryption (spec 17) that clients and servers both check:
//! signed one-time and fallback key objects (17.2), device-list hashes (17.2), and the shape of
//! an `olm.v1` to-device message (17.7). Olm itself lives in the client.

use std::collections::BTreeMap;

use guildhall_spec::event::JsonObject;
use guildhall_spec::{UserId, base64url, canonical, signing};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::device::DeviceCertificate;
use crate::key;

/// The one message type of v1.
pub const OLM_MESSAGE_TYPE: &str = "olm.v1";

/// The one algorithm of v1.
pub const OLM_ALGORITHM: &str = "olm.v1.curve25519-aes-sha2";

/// What a signed key object says (without its `signatures`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyObject {
    /// The device's id for the key, `[A-Za-z0-9_-]{1,64}`.
    pub key_id: String,
    /// The Curve25519 public key, base64url.
    pub key: String,
    /// Whether this is the device's fallback key.
    pub fallback: bool,
}

/// Why a key object or an Olm message is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum E2eError {
    /// Not the shape the spec gives (unknown or missing members, wrong types or lengths).
    #[error("malformed: {0}")]
    Malformed(String),
    /// The signature is missing or does not verify with the device's key.
    #[error("the signature does not verify with the device's key")]
    Signature,
    /// A key other than the certified one.
    #[error("{0}")]
    WrongKey(String),
}

impl KeyObject {
    /// The bytes the device signs: `JCS(object without signatures)`.
    pub fn signing_bytes(&self) -> Result<Vec<u8>, E2eError> {
        canonical::to_canonical_bytes(self).map_err(|e| E2eError::Malformed(e.to_string()))
    }

    /// The signed object, with `signature` (the device's, over [`Self::signing_bytes`]) filed
    /// under `ed25519:<device_id>`.
    pub fn signed(
        &self,
        user_id: &UserId,
        device_id: &str,
        signature: &[u8; 64],
    ) -> Result<JsonObject, E2eError> {
        let Ok(Value::Object(mut object)) = serde_json::to_value(self) else {
            return Err(E2eError::Malformed("not an object".into()));
        };
        key::insert_signature(&mut object, user_id, &format!("ed25519:{device_id}"), signature);
        Ok(object)
    }

    /// Checks a signed key object of `user_id`'s device `device_id`, whose certified Ed25519
    /// key is `device_ed25519` (base64url): its shape, and that the device signed it, and no one
    /// else.
    pub fn verify(
        object: &JsonObject,
        user_id: &UserId,
        device_id: &str,
        device_ed25519: &str,
    ) -> Result<Self, E2eError> {
        let mut fields = object.clone();
        let signatures = fields.remove("signatures");
        let parsed: Self = serde_json::from_value(Value::Object(fields))
            .map_err(|e| E2eError::Malformed(e.to_string()))?;
        if !is_key_id(&parsed.key_id) {
            return Err(E2eError::Malformed(format!("key_id {:?}", parsed.key_id)));
        }
        if base64url::decode_array::<32>(&parsed.key).is_none() {
            return Err(E2eError::Malformed("key is not 32 bytes of base64url".into()));
        }
        let key_id = format!("ed25519:{device_id}");
        let only_the_device = signatures.as_ref().and_then(Value::as_object).is_some_and(|users| {
            users.len() == 1
                && users
                    .get(user_id.as_str())
                    .and_then(Value::as_object)
                    .is_some_and(|keys| keys.len() == 1 && keys.contains_key(&key_id))
        });
        if !only_the_device {
            return Err(E2eError::Signature);
        }
        let device_key = key::parse_public_key(device_ed25519)
            .ok_or_else(|| E2eError::WrongKey("the device key is not an Ed25519 key".into()))?;
        let message =
            signing::signing_bytes(object, &[]).map_err(|e| E2eError::Malformed(e.to_string()))?;
        if !key::has_valid_signature(object, &message, user_id, &key_id, &device_key) {
            return Err(E2eError::Signature);
        }
        Ok(parsed)
    }
}

/// Whether `text` is a valid one-time key id, `[A-Za-z0-9_-]{1,64}`.
fn is_key_id(text: &str) -> bool {
    (1..=64).contains(&text.len())
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The device-list hash of spec 17.2: base64url(SHA-256(JCS(devices sorted by id))), over each
/// device's id and certified keys.
pub fn device_list_hash<'a>(devices: impl IntoIterator<Item = &'a DeviceCertificate>) -> String {
    let list: BTreeMap<&str, Value> = devices
        .into_iter()
        .map(|device| {
            let entry = serde_json::json!({
                "device_id": device.device_id,
                "curve25519": device.device_keys.curve25519,
                "ed25519": device.device_keys.ed25519,
            });
            (device.device_id.as_str(), entry)
        })
        .collect();
    let array = Value::Array(list.into_values().collect());
    // A JSON array of strings always has a canonical form.
    let bytes = canonical::to_canonical_bytes(&array).unwrap_or_default();
    base64url::encode(Sha256::digest(bytes))
}

/// An `olm.v1` to-device message's `content` (spec 17.7).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OlmContent {
    /// [`OLM_ALGORITHM`].
    pub algorithm: String,
    /// The sending device's Curve25519 key, base64url.
    pub sender_key: String,
    /// Exactly one member: the target device's Curve25519 key → the message.
    pub ciphertext: BTreeMap<String, OlmCiphertext>,
}

/// One Olm message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OlmCiphertext {
    /// 0: pre-key message; 1: normal message.
    #[serde(rename = "type")]
    pub message_type: u8,
    /// The Olm message bytes, base64url.
    pub body: String,
}

impl OlmContent {
    /// Parses and checks the shape of an `olm.v1` content: the algorithm, 32-byte keys, exactly
    /// one recipient, a message type of 0 or 1 and a base64url body.
    pub fn parse(content: &JsonObject) -> Result<Self, E2eError> {
        let parsed: Self = serde_json::from_value(Value::Object(content.clone()))
            .map_err(|e| E2eError::Malformed(e.to_string()))?;
        if parsed.algorithm != OLM_ALGORITHM {
            return Err(E2eError::Malformed(format!("unknown algorithm {:?}", parsed.algorithm)));
        }
        if base64url::decode_array::<32>(&parsed.sender_key).is_none() {
            return Err(E2eError::Malformed("sender_key is not 32 bytes of base64url".into()));
        }
        let mut ciphertexts = parsed.ciphertext.iter();
        let (Some((target, message)), None) = (ciphertexts.next(), ciphertexts.next()) else {
            return Err(E2eError::Malformed("ciphertext must have exactly one member".into()));
        };
        if base64url::decode_array::<32>(target).is_none() {
            return Err(E2eError::Malformed(
                "a ciphertext key is not 32 bytes of base64url".into(),
            ));
        }
        if message.message_type > 1 {
            return Err(E2eError::Malformed(format!("message type {}", message.message_type)));
        }
        if message.body.is_empty() || base64url::decode(&message.body).is_err() {
            return Err(E2eError::Malformed("the body is not base64url".into()));
        }
        Ok(parsed)
    }

    /// The target device's Curve25519 key (the one member of `ciphertext`).
    pub fn target_key(&self) -> &str {
        self.ciphertext.keys().next().map_or("", String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::{Signer as _, SigningKey};
    use serde_json::json;

    use super::*;

    fn device_key() -> SigningKey {
        SigningKey::from_bytes(&[7; 32])
    }

    fn signed(object: &KeyObject, user: &UserId) -> JsonObject {
        let signature = device_key().sign(&object.signing_bytes().unwrap()).to_bytes();
        object.signed(user, "PHONE1", &signature).unwrap()
    }

    #[test]
    fn key_objects_verify_only_with_the_device_key() {
        let user: UserId = "@bob:origin.example".parse().unwrap();
        let public = base64url::encode(device_key().verifying_key().as_bytes());
        let object =
            KeyObject { key_id: "AAAAAQ".into(), key: base64url::encode([9; 32]), fallback: false };
        let signed = signed(&object, &user);
        assert_eq!(KeyObject::verify(&signed, &user, "PHONE1", &public), Ok(object.clone()));
        // Another device id, another key, a changed member: refused.
        assert_eq!(KeyObject::verify(&signed, &user, "LAPTOP", &public), Err(E2eError::Signature));
        let other = base64url::encode(SigningKey::from_bytes(&[8; 32]).verifying_key().as_bytes());
        assert_eq!(KeyObject::verify(&signed, &user, "PHONE1", &other), Err(E2eError::Signature));
        let mut changed = signed.clone();
        changed.insert("fallback".into(), json!(true));
        assert_eq!(KeyObject::verify(&changed, &user, "PHONE1", &public), Err(E2eError::Signature));
        let mut extra = signed;
        extra.insert("note".into(), json!("x"));
        assert!(matches!(
            KeyObject::verify(&extra, &user, "PHONE1", &public),
            Err(E2eError::Malformed(_))
        ));
    }

    #[test]
    fn olm_content_has_one_recipient_and_the_v1_algorithm() {
        let key = base64url::encode([1; 32]);
        let good = json!({"algorithm": OLM_ALGORITHM, "sender_key": key,
            "ciphertext": {base64url::encode([2; 32]): {"type": 0, "body": "AAEC"}}});
        let parsed = OlmContent::parse(good.as_object().unwrap()).unwrap();
        assert_eq!(parsed.target_key(), base64url::encode([2; 32]));
        let plaintext = json!({"algorithm": "plaintext", "sender_key": key,
            "ciphertext": {base64url::encode([2; 32]): {"type": 0, "body": "AAEC"}}});
        assert!(OlmContent::parse(plaintext.as_object().unwrap()).is_err());
        let two = json!({"algorithm": OLM_ALGORITHM, "sender_key": key, "ciphertext": {
            base64url::encode([2; 32]): {"type": 0, "body": "AAEC"},
            base64url::encode([3; 32]): {"type": 0, "body": "AAEC"}}});
        assert!(OlmContent::parse(two.as_object().unwrap()).is_err());
        let extra = json!({"algorithm": OLM_ALGORITHM, "sender_key": key, "body": "hello",
            "ciphertext": {base64url::encode([2; 32]): {"type": 0, "body": "AAEC"}}});
        assert!(OlmContent::parse(extra.as_object().unwrap()).is_err());
    }

    /// `spec/vectors/e2e.json`, `key_objects`: made and judged by the independent generator.
    #[test]
    fn key_object_vectors() {
        for case in crate::vectors::e2e()["key_objects"]["cases"].as_array().unwrap() {
            let user: UserId = case["user_id"].as_str().unwrap().parse().unwrap();
            let result = KeyObject::verify(
                case["object"].as_object().unwrap(),
                &user,
                case["device_id"].as_str().unwrap(),
                case["device_key"].as_str().unwrap(),
            );
            let reason = result.as_ref().err().map(|error| match error {
                E2eError::Malformed(_) => "malformed",
                E2eError::Signature => "bad_signature",
                E2eError::WrongKey(_) => "bad_device_key",
            });
            crate::vectors::check_verdict(case, reason);
            if let Ok(parsed) = result {
                let object = &case["object"];
                assert_eq!(json!(parsed.key_id), object["key_id"], "{}", case["name"]);
                assert_eq!(json!(parsed.key), object["key"], "{}", case["name"]);
                assert_eq!(json!(parsed.fallback), object["fallback"], "{}", case["name"]);
            }
        }
    }

    /// `spec/vectors/e2e.json`, `device_lists`: lists in no particular order and their hashes.
    #[test]
    fn device_list_vectors() {
        for case in crate::vectors::e2e()["device_lists"]["cases"].as_array().unwrap() {
            let devices: Vec<DeviceCertificate> = case["devices"]
                .as_array()
                .unwrap()
                .iter()
                .map(|device| DeviceCertificate {
                    user_id: "@bob:origin.example".parse().unwrap(),
                    device_id: device["device_id"].as_str().unwrap().parse().unwrap(),
                    device_keys: crate::device::DeviceKeys {
                        curve25519: device["curve25519"].as_str().unwrap().to_owned(),
                        ed25519: device["ed25519"].as_str().unwrap().to_owned(),
                    },
                    identity_key: base64url::encode([1; 32]),
                    valid_until_ts: None,
                })
                .collect();
            assert_eq!(
                device_list_hash(&devices),
                case["device_list_hash"].as_str().unwrap(),
                "{} (the generator hashed {})",
                case["name"],
                case["canonical"]
            );
        }
    }

    #[test]
    fn an_empty_device_list_hashes_the_empty_array() {
        let expected = base64url::encode(Sha256::digest(b"[]"));
        assert_eq!(device_list_hash([]), expected);
    }
}
