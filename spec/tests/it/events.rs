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

/// Verification of arbitrary objects: every input gets a verdict, none a panic.
mod properties {
    use guildhall_spec::canonical::MAX_SAFE_INTEGER;
    use guildhall_spec::content::EventContent;
    use guildhall_spec::event::{self, ChainPosition, JsonObject};
    use guildhall_spec::{GuildId, KeyId, Proposal, PublicKeyMap, ServerName, ServerSigningKey};
    use guildhall_spec::{TxnId, UserId};
    use proptest::prelude::*;
    use serde_json::{Value, json};

    use crate::strategies::json_value;

    const MEMBERS: [&str; 13] = [
        "guild_id",
        "seq",
        "prev",
        "type",
        "sender",
        "origin",
        "origin_ts",
        "txn_id",
        "content_hash",
        "content",
        "signatures",
        "unsigned",
        "extra",
    ];

    const EVENT_TYPES: [&str; 8] = [
        "guild.create",
        "message.create",
        "message.edit",
        "role.update",
        "member.join",
        "channel.create",
        "channel.overwrite.set",
        "x.unknown",
    ];

    fn key(server: &str, seed: u8) -> ServerSigningKey {
        ServerSigningKey::from_seed(
            ServerName::parse(server).unwrap(),
            KeyId::parse("ed25519:p1").unwrap(),
            &[seed; 32],
        )
    }

    /// A correctly signed proposal and the event the host makes of it.
    fn signed(event_type: &str) -> (JsonObject, JsonObject) {
        let (host, origin) = (key("host.example", 1), key("origin.example", 2));
        let proposal = Proposal {
            guild_id: GuildId::parse("!g:host.example").unwrap(),
            event_type: event_type.into(),
            sender: UserId::parse("@bob:origin.example").unwrap(),
            origin: ServerName::parse("origin.example").unwrap(),
            origin_ts: 1_700_000_000_000,
            txn_id: TxnId::parse("t1").unwrap(),
            content: json!({"channel_id": "general", "body": "hi"}).as_object().unwrap().clone(),
        }
        .sign(&origin)
        .unwrap();
        let (_, event) = event::sequence(proposal.clone(), 2, None, &host).unwrap();
        (proposal, event)
    }

    fn keys() -> PublicKeyMap {
        let mut keys = PublicKeyMap::new();
        for key in [key("host.example", 1), key("origin.example", 2)] {
            keys.insert(key.server_name().clone(), key.key_id().clone(), key.verifying_key());
        }
        keys
    }

    /// Values a member might plausibly hold, plus anything at all.
    fn member_value() -> impl Strategy<Value = Value> {
        prop_oneof![
            json_value(),
            prop::sample::select(vec![
                json!(0),
                json!(-1),
                json!(9_007_199_254_740_991_i64),
                json!(""),
                json!("!g:host.example"),
                json!("@bob:origin.example"),
                json!("origin.example"),
                json!("$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
                json!("message.create"),
                json!({"origin.example": {"ed25519:p1": "AAAA"}}),
                json!({"origin.example": {"ed25519:p1": 1}, "host.example": {}}),
                json!({"stranger.example": {"bad key id": "x"}}),
                json!({"origin.example": "not an object"}),
                json!({"channel_id": "general", "body": 5}),
                json!({"withheld": true}),
                json!(i64::MIN),
                json!(u64::MAX),
                json!(1.5),
            ]),
        ]
    }

    #[derive(Debug, Clone)]
    enum Mutation {
        Remove(&'static str),
        Set(&'static str, Value),
        SetContentMember(String, Value),
    }

    fn mutation() -> impl Strategy<Value = Mutation> {
        let member = prop::sample::select(&MEMBERS[..]);
        prop_oneof![
            member.clone().prop_map(Mutation::Remove),
            (member, member_value()).prop_map(|(name, value)| Mutation::Set(name, value)),
            (prop::sample::select(vec!["body", "channel_id", "name", "x"]), member_value())
                .prop_map(|(name, value)| Mutation::SetContentMember(name.into(), value)),
        ]
    }

    fn mutate(object: &mut JsonObject, mutations: &[Mutation]) {
        for mutation in mutations {
            match mutation {
                Mutation::Remove(name) => {
                    object.remove(*name);
                }
                Mutation::Set(name, value) => {
                    object.insert((*name).into(), value.clone());
                }
                Mutation::SetContentMember(name, value) => {
                    if let Some(Value::Object(content)) = object.get_mut("content") {
                        content.insert(name.clone(), value.clone());
                    }
                }
            }
        }
    }

    /// Runs everything that reads an event from the network over `object`.
    fn verify_everything(object: &JsonObject, keys: &PublicKeyMap) {
        let _ = event::verify_proposal(object, keys);
        let _ = event::verify_event(object, keys, ChainPosition::Unchecked);
        let _ = event::verify_event(object, keys, ChainPosition::Follows(None));
        if let Ok(id) = event::event_id(object) {
            let _ = event::verify_event(object, keys, ChainPosition::Follows(Some(&id)));
        }
        if let (Some(Value::String(event_type)), Some(Value::Object(content))) =
            (object.get("type"), object.get("content"))
        {
            let _ = EventContent::parse(event_type, content);
        }
    }

    proptest! {
        #![proptest_config(crate::config(128))]

        #[test]
        fn a_mutated_event_gets_a_verdict_not_a_panic(
            event_type in prop::sample::select(&EVENT_TYPES[..]),
            mutations in prop::collection::vec(mutation(), 0..4),
        ) {
            let keys = keys();
            let (mut proposal, mut sequenced) = signed(event_type);
            if mutations.is_empty() {
                // Unchanged, both verify: the mutations below start from something valid.
                prop_assert!(event::verify_proposal(&proposal, &keys).is_ok());
                prop_assert!(event::verify_event(&sequenced, &keys, ChainPosition::Unchecked).is_ok());
            }
            mutate(&mut proposal, &mutations);
            mutate(&mut sequenced, &mutations);
            verify_everything(&proposal, &keys);
            verify_everything(&sequenced, &keys);
        }

        #[test]
        fn an_integer_outside_the_profile_makes_the_event_malformed(
            integer in prop_oneof![
                i64::MIN..=i64::MIN + 2,
                i64::MIN..-MAX_SAFE_INTEGER,
                MAX_SAFE_INTEGER + 1..=i64::MAX,
            ],
            member in prop::sample::select(vec!["content", "origin_ts", "unsigned"]),
        ) {
            let keys = keys();
            let (mut proposal, mut sequenced) = signed("message.create");
            let mutation = if member == "content" {
                Mutation::SetContentMember("n".into(), json!(integer))
            } else {
                Mutation::Set(member, json!(integer))
            };
            mutate(&mut proposal, std::slice::from_ref(&mutation));
            mutate(&mut sequenced, &[mutation]);
            let refused = event::verify_proposal(&proposal, &keys).map(|_| ()).map_err(|e| e.code());
            prop_assert_eq!(refused, Err("malformed"));
            let refused = event::verify_event(&sequenced, &keys, ChainPosition::Unchecked)
                .map(|_| ())
                .map_err(|e| e.code());
            prop_assert_eq!(refused, Err("malformed"));
        }

        #[test]
        fn an_arbitrary_object_gets_a_verdict_not_a_panic(
            members in prop::collection::btree_map(
                prop::sample::select(&MEMBERS[..]),
                member_value(),
                0..MEMBERS.len(),
            ),
        ) {
            let object: JsonObject =
                members.into_iter().map(|(name, value)| (name.to_owned(), value)).collect();
            verify_everything(&object, &keys());
        }

        #[test]
        fn any_json_is_a_malformed_event_or_a_verdict(value in json_value()) {
            if let Value::Object(object) = value {
                verify_everything(&object, &keys());
            }
        }
    }
}
