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

    proptest! {
        #![proptest_config(crate::config(256))]

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
