use guildhall_spec::event::{self, ChainPosition};
use guildhall_spec::{EventId, KeyId, PublicKeyMap, ServerName};

fn public_keys(document: &serde_json::Value) -> PublicKeyMap {
    let mut keys = PublicKeyMap::new();
    for (server, by_key) in document["public_keys"].as_object().expect("public_keys") {
        for (key_id, key) in by_key.as_object().expect("keys of a server") {
            keys.insert_base64(
                ServerName::parse(server).expect("server name"),
                KeyId::parse(key_id).expect("key id"),
                key.as_str().expect("base64url key"),
            )
            .expect("valid public key");
        }
    }
    keys
}

#[test]
fn agrees_with_event_vectors() {
    let document = super::vectors("events.json");
    let keys = public_keys(&document);
    let cases = document["cases"].as_array().expect("cases");
    let mut failures = Vec::new();
    for case in cases {
        let name = case["name"].as_str().unwrap_or("?");
        let object = case["event"].as_object().expect("event is an object");
        let prev = case["prev_event_id"].as_str().map(|id| EventId::parse(id).expect("prev id"));
        let verdict = event::verify_event(object, &keys, ChainPosition::Follows(prev.as_ref()));
        let expected_reason = case["reason"].as_str();
        match (&verdict, case["valid"].as_bool()) {
            (Ok(verified), Some(true)) => {
                if Some(verified.event_id.as_str()) != case["event_id"].as_str() {
                    failures.push(format!(
                        "{name}: event id {} != {}",
                        verified.event_id, case["event_id"]
                    ));
                }
            }
            (Err(error), Some(false)) if Some(error.code()) == expected_reason => {}
            _ => failures.push(format!("{name}: expected {expected_reason:?}, got {verdict:?}")),
        }
        // The event id depends only on the envelope, whatever the verdict.
        if let (Ok(id), Some(expected)) = (event::event_id(object), case["event_id"].as_str())
            && id.as_str() != expected
        {
            failures.push(format!("{name}: computed id {id} != {expected}"));
        }
    }
    super::assert_no_failures("event", cases.len(), &failures);
}
