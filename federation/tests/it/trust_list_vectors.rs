//! `spec/vectors/trust.json`, written by the independent Python generator: every trust-list
//! document gets the verdict the generator's own verifier gave it, for the same reason.

use guildhall_federation::trust_list::{TrustList, TrustListError};
use guildhall_spec::{KeyId, ServerName, signing};
use serde_json::Value;

fn vectors() -> Value {
    serde_json::from_str(include_str!("../../../spec/vectors/trust.json")).unwrap()
}

/// The reason code of the vectors for a refusal.
fn reason(error: &TrustListError) -> &'static str {
    match error {
        TrustListError::Malformed(_) => "malformed",
        TrustListError::TooLarge(_) => "too_large",
        TrustListError::WrongPublisher { .. } => "wrong_publisher",
        TrustListError::Signature(_) => "bad_signature",
        TrustListError::NotNewer { .. } => "not_newer",
    }
}

#[test]
fn every_trust_list_vector_gets_its_verdict() {
    let vectors = vectors();
    let publisher = ServerName::parse(vectors["publisher"].as_str().unwrap()).unwrap();
    let key_id = KeyId::parse(vectors["key_id"].as_str().unwrap()).unwrap();
    let key = signing::decode_public_key(vectors["key"].as_str().unwrap()).unwrap();
    let cases = vectors["cases"].as_array().unwrap();
    assert!(cases.len() >= 20, "only {} cases", cases.len());
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let document = case["document"].as_str().unwrap();
        let held_ts = case["held_ts"].as_u64().unwrap();
        let verdict = TrustList::verify(document.as_bytes(), &publisher, &key_id, &key, held_ts);
        match (case["valid"].as_bool().unwrap(), verdict) {
            (true, Ok(list)) => {
                // What was accepted is what was published.
                let published: Value = serde_json::from_str(document).unwrap();
                assert_eq!(list.server_name, publisher, "{name}");
                assert_eq!(Some(list.updated_ts), published["updated_ts"].as_u64(), "{name}");
                let entries = published["entries"].as_object().unwrap();
                assert_eq!(list.entries.len(), entries.len(), "{name}");
                for (server, entry) in &list.entries {
                    assert_eq!(
                        serde_json::to_value(entry).unwrap(),
                        entries[server.as_str()],
                        "{name}"
                    );
                }
            }
            (true, Err(error)) => panic!("{name}: expected the list accepted, got {error}"),
            (false, Ok(_)) => panic!("{name}: expected {}, the list was accepted", case["reason"]),
            (false, Err(error)) => {
                assert_eq!(reason(&error), case["reason"].as_str().unwrap(), "{name}: {error}");
                if let TrustListError::NotNewer { held, .. } = error {
                    assert_eq!(held, held_ts, "{name}");
                }
            }
        }
    }
}
