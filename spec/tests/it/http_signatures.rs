use guildhall_spec::request_auth::{self, HttpRequest};
use guildhall_spec::signing::decode_public_key;
use guildhall_spec::{KeyId, PublicKeyMap, ServerName};

/// Splits `https://authority/path?query` without a URL library, keeping percent-encoding.
fn split_uri(uri: &str) -> (&str, &str, Option<&str>) {
    let rest = uri.split_once("://").map_or(uri, |(_, rest)| rest);
    let (authority, target) = rest.find('/').map_or((rest, "/"), |index| rest.split_at(index));
    match target.split_once('?') {
        Some((path, query)) => (authority, path, Some(query)),
        None => (authority, target, None),
    }
}

fn verdict(case: &serde_json::Value, document: &serde_json::Value) -> Result<(), String> {
    let request = &case["request"];
    let (authority, path, query) = split_uri(request["uri"].as_str().expect("uri"));
    let headers: Vec<(&str, &str)> = request["headers"]
        .as_array()
        .expect("headers")
        .iter()
        .map(|pair| (pair[0].as_str().expect("name"), pair[1].as_str().expect("value")))
        .collect();
    let http = HttpRequest {
        method: request["method"].as_str().expect("method"),
        authority,
        path,
        query,
        headers: &headers,
        body: request["body"].as_str().unwrap_or("").as_bytes(),
    };
    let code = |error: request_auth::RequestAuthError| error.code().to_owned();
    match case["profile"].as_str() {
        Some("rfc9421") => {
            // Opaque RFC key ids are stored as public_keys[K][K].
            let key = document["public_keys"]["test-key-ed25519"]["test-key-ed25519"]
                .as_str()
                .and_then(decode_public_key)
                .expect("RFC 9421 B.1.4 key");
            request_auth::verify_rfc9421(&http, "sig-b26", &key).map_err(code)
        }
        _ => {
            let mut keys = PublicKeyMap::new();
            for (server, by_key) in document["public_keys"].as_object().expect("public_keys") {
                let (Ok(server), Some(by_key)) = (ServerName::parse(server), by_key.as_object())
                else {
                    continue;
                };
                for (key_id, key) in by_key {
                    if let (Ok(key_id), Some(key)) = (KeyId::parse(key_id), key.as_str()) {
                        keys.insert_base64(server.clone(), key_id, key).expect("valid key");
                    }
                }
            }
            let authorities: Vec<&str> = case["authorities"]
                .as_array()
                .expect("authorities")
                .iter()
                .filter_map(|a| a.as_str())
                .collect();
            let now = case["now"].as_u64().expect("now");
            let checked = request_auth::check_request(&http, now, &authorities).map_err(code)?;
            checked.verify_with(&keys).map_err(code)
        }
    }
}

#[test]
fn agrees_with_http_signature_vectors() {
    let document = super::vectors("http_signatures.json");
    let cases = document["cases"].as_array().expect("cases");
    let mut failures = Vec::new();
    for case in cases {
        let name = case["name"].as_str().unwrap_or("?");
        let expected = if case["valid"].as_bool() == Some(true) {
            Ok(())
        } else {
            Err(case["reason"].as_str().unwrap_or("?").to_owned())
        };
        let actual = verdict(case, &document);
        if actual != expected {
            failures.push(format!("{name}: expected {expected:?}, got {actual:?}"));
        }
    }
    super::assert_no_failures("HTTP signature", cases.len(), &failures);
}

#[test]
fn accepts_requests_signed_by_a_stock_rfc9421_library() {
    // Signed by Python's `http-message-signatures` (spec/vectors/tools/stock_rfc9421.py),
    // which puts the parameters in an order of its own.
    let document = super::vectors("stock_rfc9421.json");
    let cases = document["cases"].as_array().expect("cases");
    let mut failures = Vec::new();
    for case in cases {
        let name = case["name"].as_str().unwrap_or("?");
        let signature_input = case["request"]["headers"]
            .as_array()
            .expect("headers")
            .iter()
            .find(|pair| {
                pair[0].as_str().is_some_and(|n| n.eq_ignore_ascii_case("signature-input"))
            })
            .and_then(|pair| pair[1].as_str())
            .expect("a Signature-Input header");
        let documented_order = request_auth::PARAMETERS.map(|name| format!(";{name}="));
        let positions: Vec<usize> = documented_order
            .iter()
            .map(|name| signature_input.find(name.as_str()).expect("every parameter"))
            .collect();
        assert!(
            !positions.is_sorted(),
            "{name}: the stock library used the documented order, so this proves nothing"
        );
        if let Err(code) = verdict(case, &document) {
            failures.push(format!("{name}: refused with {code}"));
        }
    }
    super::assert_no_failures("stock RFC 9421", cases.len(), &failures);
}

#[test]
fn our_signer_produces_what_the_vectors_accept() {
    // Sign with our own implementation, then check the request the way the vectors' verifier
    // does: the two sides must agree on the signature base.
    let key = guildhall_spec::ServerSigningKey::from_seed(
        ServerName::parse("origin.example").unwrap(),
        KeyId::parse("ed25519:k1").unwrap(),
        &[9; 32],
    );
    let body = br#"{"origin":"origin.example"}"#;
    let unsigned = HttpRequest {
        method: "PUT",
        authority: "host.example:8448",
        path: "/_guildhall/v1/send/t%201",
        query: Some("a=1"),
        headers: &[],
        body,
    };
    let signed =
        request_auth::sign_request(&unsigned, &key, 1_700_000_000, "bm9uY2UtMDAwMDAwMDE").unwrap();
    let digest = signed.content_digest.clone().unwrap();
    let headers = [
        ("Signature-Input", signed.signature_input.as_str()),
        ("Signature", signed.signature.as_str()),
        ("Content-Digest", digest.as_str()),
    ];
    let request = HttpRequest { headers: &headers, ..unsigned };
    let checked =
        request_auth::check_request(&request, 1_700_000_010, &["host.example:8448"]).unwrap();
    checked.verify(&key.verifying_key()).unwrap();
    assert_eq!(checked.nonce(), "bm9uY2UtMDAwMDAwMDE");
}

/// `check_request` over generated headers: a verdict for every input, never a panic.
mod properties {
    use guildhall_spec::request_auth::{self, HttpRequest};
    use proptest::prelude::*;

    /// Fragments of RFC 8941 syntax and of the profile, to build near-misses from.
    const FRAGMENTS: &[&str] = &[
        "gh=",
        "sig1=",
        "(",
        ")",
        " ",
        ",",
        ";",
        "=",
        "\"@method\"",
        "\"@authority\"",
        "\"@path\"",
        "\"@query\"",
        "\"content-digest\"",
        "\"@bogus\"",
        "created=",
        "expires=",
        "nonce=",
        "alg=",
        "keyid=",
        "tag=",
        "1700000000",
        "1700000060",
        "-1",
        "0",
        "999999999999999",
        "1.5",
        "?1",
        "\"ed25519\"",
        "\"guildhall-fed-v1\"",
        "\"origin.example#ed25519:k1\"",
        "\"AAAAAAAAAAAAAAAAAAAAAA\"",
        "\"\\\"\"",
        "token",
        ":AAAA:",
        ":",
        "\u{e9}",
    ];

    fn header_text() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::collection::vec(prop::sample::select(FRAGMENTS), 0..16)
                .prop_map(|fragments| fragments.concat()),
            "\\PC{0,40}",
        ]
    }

    /// The six parameters in the documented order, each as (name, well-typed value, ill-typed
    /// value): integers for `created`/`expires`, strings for the rest.
    const PARAMETERS: [(&str, &str, &str); 6] = [
        ("created", "1700000000", "\"1700000000\""),
        ("expires", "1700000060", "\"1700000060\""),
        ("nonce", "\"bm9uY2UtMDAwMDAwMDE\"", "bm9uY2UtMDAwMDAwMDE"),
        ("alg", "\"ed25519\"", "ed25519"),
        ("keyid", "\"origin.example#ed25519:k1\"", "origin.example#ed25519:k1"),
        ("tag", "\"guildhall-fed-v1\"", "guildhall-fed-v1"),
    ];

    /// One change to the parameter list a signer sends, after any reordering.
    #[derive(Debug, Clone)]
    enum Edit {
        Drop(prop::sample::Index),
        Repeat(prop::sample::Index),
        RepeatWithOtherValue(prop::sample::Index),
        IllTyped(prop::sample::Index),
        Unknown(&'static str),
    }

    fn edit() -> impl Strategy<Value = Edit> {
        prop_oneof![
            any::<prop::sample::Index>().prop_map(Edit::Drop),
            any::<prop::sample::Index>().prop_map(Edit::Repeat),
            any::<prop::sample::Index>().prop_map(Edit::RepeatWithOtherValue),
            any::<prop::sample::Index>().prop_map(Edit::IllTyped),
            prop::sample::select(vec!["purpose=\"x\"", "created2=1", "flag", "sig=:AAAA:"])
                .prop_map(Edit::Unknown),
        ]
    }

    /// Applies the edits; returns the `;name=value` list as sent and the code a receiver
    /// must answer (`None`: accepted), or `None` when a repetition's other value was left
    /// alone: then the value's own rule decides, which this model does not follow.
    fn apply(order: &[usize], edits: &[Edit]) -> Option<(Vec<String>, Option<&'static str>)> {
        let mut other_values = 0;
        let mut sent: Vec<(String, String, bool)> = order
            .iter()
            .map(|&index| {
                let (name, value, _) = PARAMETERS[index];
                (name.to_owned(), value.to_owned(), true)
            })
            .collect();
        for edit in edits {
            if sent.is_empty() {
                break;
            }
            match edit {
                Edit::Drop(index) => {
                    sent.remove(index.index(sent.len()));
                }
                Edit::Repeat(index) => {
                    let repeated = sent[index.index(sent.len())].clone();
                    sent.push(repeated);
                }
                Edit::RepeatWithOtherValue(index) => {
                    let (name, _, _) = sent[index.index(sent.len())].clone();
                    let other = if matches!(name.as_str(), "created" | "expires") {
                        "1700000001".to_owned()
                    } else {
                        "\"other-value-0000\"".to_owned()
                    };
                    sent.insert(0, (name, other, true));
                    other_values += 1;
                }
                Edit::IllTyped(index) => {
                    let position = index.index(sent.len());
                    let name = sent[position].0.clone();
                    let ill = PARAMETERS.iter().find(|(n, _, _)| *n == name).map(|p| p.2);
                    sent[position] = (name, ill.unwrap_or_default().to_owned(), false);
                }
                Edit::Unknown(text) => sent.push(((*text).to_owned(), String::new(), true)),
            }
        }
        let names: Vec<&str> = sent.iter().map(|(name, _, _)| name.as_str()).collect();
        let known = |name: &str| PARAMETERS.iter().any(|(n, _, _)| *n == name);
        let repeated = (1..names.len()).any(|i| names[..i].contains(&names[i]));
        if other_values > 0 && !repeated {
            return None;
        }
        let expected = if repeated
            || names.iter().any(|name| !known(name))
            || sent.iter().any(|(_, _, well_typed)| !well_typed)
        {
            Some("malformed_signature")
        } else if !names.contains(&"tag") {
            Some("wrong_tag")
        } else if names.len() < PARAMETERS.len() {
            Some("malformed_signature")
        } else {
            None
        };
        let text = sent
            .into_iter()
            .map(
                |(name, value, _)| {
                    if value.is_empty() { format!(";{name}") } else { format!(";{name}={value}") }
                },
            )
            .collect();
        Some((text, expected))
    }

    proptest! {
        #![proptest_config(crate::config(256))]

        #[test]
        fn parameters_are_accepted_in_any_order_each_exactly_once(
            order in Just((0..PARAMETERS.len()).collect::<Vec<_>>()).prop_shuffle(),
            edits in prop::collection::vec(edit(), 0..3),
            with_body in any::<bool>(),
        ) {
            let modelled = apply(&order, &edits);
            prop_assume!(modelled.is_some());
            let (parameters, expected) = modelled.expect("assumed above");
            let key = guildhall_spec::ServerSigningKey::from_seed(
                guildhall_spec::ServerName::parse("origin.example").unwrap(),
                guildhall_spec::KeyId::parse("ed25519:k1").unwrap(),
                &[3; 32],
            );
            let body: &[u8] = if with_body { b"{}" } else { b"" };
            let digest = request_auth::content_digest(body);
            let mut components = String::from("(\"@method\" \"@authority\" \"@path\" \"@query\"");
            let mut base = String::from(
                "\"@method\": PUT\n\"@authority\": host.example\n\"@path\": /_guildhall/v1/send/t1\n\"@query\": ?\n",
            );
            if with_body {
                components.push_str(" \"content-digest\"");
                base.push_str(&format!("\"content-digest\": {digest}\n"));
            }
            components.push(')');
            let signature_params = format!("{components}{}", parameters.concat());
            base.push_str(&format!("\"@signature-params\": {signature_params}"));
            let signature = base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                key.sign_bytes(base.as_bytes()),
            );
            let signature_input = format!("gh={signature_params}");
            let signature = format!("gh=:{signature}:");
            let headers = [
                ("Signature-Input", signature_input.as_str()),
                ("Signature", signature.as_str()),
                ("Content-Digest", digest.as_str()),
            ];
            let request = HttpRequest {
                method: "PUT",
                authority: "host.example",
                path: "/_guildhall/v1/send/t1",
                query: None,
                headers: &headers,
                body,
            };
            let verdict = request_auth::check_request(&request, 1_700_000_030, &["host.example"])
                .and_then(|checked| checked.verify(&key.verifying_key()))
                .map_err(|error| error.code());
            prop_assert_eq!(verdict, expected.map_or(Ok(()), Err), "{}", signature_input);
        }

        #[test]
        fn any_signature_headers_get_a_verdict_not_a_panic(
            signature_input in header_text(),
            signature in prop_oneof![header_text(), Just("gh=:AAAA:".to_owned())],
            body in prop::sample::select(vec![&b""[..], &b"{}"[..]]),
        ) {
            let headers = [
                ("Signature-Input", signature_input.as_str()),
                ("Signature", signature.as_str()),
                ("Content-Digest", "sha-256=:RBNvo1WzZ4oRRq0W9+hknpT7T8If536DEMBg9hyq/4o=:"),
            ];
            let request = HttpRequest {
                method: "PUT",
                authority: "host.example",
                path: "/_guildhall/v1/send/t1",
                query: None,
                headers: &headers,
                body,
            };
            if let Ok(checked) = request_auth::check_request(&request, 1_700_000_030, &["host.example"]) {
                let _ = checked.verify_with(&guildhall_spec::PublicKeyMap::new());
            }
            let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]).verifying_key();
            let _ = request_auth::verify_rfc9421(&request, "gh", &key);
            let _ = request_auth::verify_rfc9421(&request, "sig1", &key);
        }
    }
}
