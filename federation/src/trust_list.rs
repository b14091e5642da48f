//! Trust-list documents (spec 15.3): a publisher's signed list of servers to allow or deny,
//! which other operators subscribe to (15.4). Sans-I/O: publishing signs, subscribing verifies
//! against the publisher key the subscriber configured.

use std::collections::BTreeMap;

use guildhall_spec::event::JsonObject;
use guildhall_spec::{KeyId, PublicKeyMap, ServerName, ServerSigningKey, canonical, signing};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::policy::ListEntry;

/// The most entries a list may have.
pub const MAX_ENTRIES: usize = 100_000;
/// The longest `reason`, in characters.
pub const MAX_REASON_CHARS: usize = 512;
/// The largest document a subscriber reads, in bytes.
pub const MAX_DOCUMENT_BYTES: usize = 16 << 20;

/// A trust list's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustList {
    /// The publisher.
    pub server_name: ServerName,
    /// When this version was produced; strictly increasing across versions.
    pub updated_ts: u64,
    /// Server → entry.
    pub entries: BTreeMap<ServerName, ListEntry>,
}

/// Why a list was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TrustListError {
    /// Not JSON of the profile, or not the shape of spec 15.3.
    #[error("malformed trust list: {0}")]
    Malformed(String),
    /// Too many entries or too long a reason.
    #[error("trust list exceeds a limit: {0}")]
    TooLarge(String),
    /// Published under another name than the subscribed publisher's.
    #[error("the list is published by {found}, not {expected}")]
    WrongPublisher {
        /// The subscribed publisher.
        expected: ServerName,
        /// The name in the document.
        found: ServerName,
    },
    /// The publisher's signature is missing or does not verify with the configured key.
    #[error("bad signature: {0}")]
    Signature(String),
    /// Not newer than the version held (a list cannot be rolled back).
    #[error("not newer than the version held (updated_ts {found} <= {held})")]
    NotNewer {
        /// The document's `updated_ts`.
        found: u64,
        /// The held version's.
        held: u64,
    },
}

impl TrustList {
    /// The list signed by its publisher with `key`.
    pub fn sign(&self, key: &ServerSigningKey) -> Result<JsonObject, TrustListError> {
        if key.server_name() != &self.server_name {
            return Err(TrustListError::WrongPublisher {
                expected: self.server_name.clone(),
                found: key.server_name().clone(),
            });
        }
        let Ok(Value::Object(mut object)) = serde_json::to_value(self) else {
            return Err(TrustListError::Malformed("not an object".into()));
        };
        signing::sign_json(&mut object, key)
            .map_err(|e| TrustListError::Malformed(e.to_string()))?;
        Ok(object)
    }

    /// Checks a fetched document as a subscriber of `publisher`, whose key `key_id` is `key`,
    /// holding a version of `held_ts` (0 for none).
    pub fn verify(
        bytes: &[u8],
        publisher: &ServerName,
        key_id: &KeyId,
        key: &signing::VerifyingKey,
        held_ts: u64,
    ) -> Result<Self, TrustListError> {
        if bytes.len() > MAX_DOCUMENT_BYTES {
            return Err(TrustListError::TooLarge(format!("{} bytes", bytes.len())));
        }
        let value = canonical::parse_strict_slice(bytes)
            .map_err(|e| TrustListError::Malformed(e.to_string()))?;
        let Value::Object(object) = value else {
            return Err(TrustListError::Malformed("not an object".into()));
        };
        // Names are lowercase (spec 15.3): parsing would fold `Spam.Example` into
        // `spam.example`, and two spellings of one server would become one entry.
        let entries = object.get("entries").and_then(Value::as_object);
        if let Some(name) = entries.and_then(|entries| {
            entries.keys().find(|name| name.as_str() != name.to_ascii_lowercase())
        }) {
            return Err(TrustListError::Malformed(format!("{name:?} is not a lowercase name")));
        }
        let mut fields = object.clone();
        fields.remove("signatures");
        let list: Self = serde_json::from_value(Value::Object(fields))
            .map_err(|e| TrustListError::Malformed(e.to_string()))?;
        if &list.server_name != publisher {
            return Err(TrustListError::WrongPublisher {
                expected: publisher.clone(),
                found: list.server_name,
            });
        }
        if list.entries.len() > MAX_ENTRIES {
            return Err(TrustListError::TooLarge(format!("{} entries", list.entries.len())));
        }
        if let Some((server, _)) = list.entries.iter().find(|(_, entry)| {
            entry.reason.as_ref().is_some_and(|reason| reason.chars().count() > MAX_REASON_CHARS)
        }) {
            return Err(TrustListError::TooLarge(format!("the reason for {server}")));
        }
        let mut keys = PublicKeyMap::new();
        keys.insert(publisher.clone(), key_id.clone(), *key);
        signing::verify_json(&object, publisher, &keys)
            .map_err(|e| TrustListError::Signature(e.to_string()))?;
        if list.updated_ts <= held_ts {
            return Err(TrustListError::NotNewer { found: list.updated_ts, held: held_ts });
        }
        Ok(list)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Action;

    fn name(text: &str) -> ServerName {
        ServerName::parse(text).unwrap()
    }

    fn publisher_key(seed: u8) -> ServerSigningKey {
        ServerSigningKey::from_seed(
            name("curator.example"),
            KeyId::parse("ed25519:c1").unwrap(),
            &[seed; 32],
        )
    }

    fn list(ts: u64) -> TrustList {
        TrustList {
            server_name: name("curator.example"),
            updated_ts: ts,
            entries: [(
                name("spam.example"),
                ListEntry { action: Action::Deny, reason: Some("bulk".into()) },
            )]
            .into(),
        }
    }

    fn bytes(object: &JsonObject) -> Vec<u8> {
        serde_json::to_vec(object).unwrap()
    }

    #[test]
    fn a_signed_list_verifies_only_with_its_key_and_only_forward() {
        let key = publisher_key(1);
        let signed = bytes(&list(10).sign(&key).unwrap());
        let (key_id, public) = (key.key_id().clone(), key.verifying_key());
        let publisher = name("curator.example");
        assert_eq!(TrustList::verify(&signed, &publisher, &key_id, &public, 0).unwrap(), list(10));
        let other = publisher_key(2).verifying_key();
        assert!(matches!(
            TrustList::verify(&signed, &publisher, &key_id, &other, 0),
            Err(TrustListError::Signature(_))
        ));
        assert_eq!(
            TrustList::verify(&signed, &publisher, &key_id, &public, 10),
            Err(TrustListError::NotNewer { found: 10, held: 10 })
        );
        assert!(matches!(
            TrustList::verify(&signed, &name("other.example"), &key_id, &public, 0),
            Err(TrustListError::WrongPublisher { .. })
        ));
        let mut tampered: JsonObject = serde_json::from_slice(&signed).unwrap();
        tampered["entries"]["spam.example"]["action"] = "allow".into();
        assert!(matches!(
            TrustList::verify(&bytes(&tampered), &publisher, &key_id, &public, 0),
            Err(TrustListError::Signature(_))
        ));
    }

    #[test]
    fn limits_are_enforced() {
        let key = publisher_key(1);
        let mut long = list(1);
        long.entries.insert(
            name("x.example"),
            ListEntry { action: Action::Deny, reason: Some("r".repeat(MAX_REASON_CHARS + 1)) },
        );
        let signed = bytes(&long.sign(&key).unwrap());
        let publisher = name("curator.example");
        assert!(matches!(
            TrustList::verify(&signed, &publisher, key.key_id(), &key.verifying_key(), 0),
            Err(TrustListError::TooLarge(_))
        ));
        assert!(matches!(
            TrustList::verify(br#"{"a":1.5}"#, &publisher, key.key_id(), &key.verifying_key(), 0),
            Err(TrustListError::Malformed(_))
        ));
    }
}
