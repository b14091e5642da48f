//! The server's part of E2E DMs (spec 17), at the protocol level: published keys, claims and
//! their limits, to-device inboxes across servers, device-list hashes and refusals. The
//! ciphertexts here are opaque bytes (servers cannot tell); real Olm runs in `e2ee.rs`.

use guildhall_identity::e2e::{KeyObject, OLM_ALGORITHM};
use guildhall_identity::key::IdentityKeyPair;
use guildhall_identity::phrase::RecoveryPhrase;
use guildhall_spec::{KeyId, ServerName, ServerSigningKey, UserId, base64url};

use super::identity::{bind_identity, certificate};
use super::*;
use crate::harness::{Encoding, Gateway, assert_error, json};

/// A device as the tests drive it: a login of a user with a certified device and its keys.
struct Device {
    user: User,
    device_id: String,
    signer: ServerSigningKey,
    curve25519: String,
}

impl Device {
    /// Registers a certified device `device_id` for the login `user` (keys derived from `seed`,
    /// as `identity::certificate` derives them).
    async fn register(user: User, identity: &IdentityKeyPair, device_id: &str, seed: u8) -> Self {
        let path = format!("/users/@me/devices/{device_id}");
        let certificate = certificate(identity, &user.id, device_id, seed);
        let (status, body) = user.put(&path, json!({"certificate": certificate})).await;
        assert_eq!(status, StatusCode::OK, "register {device_id}: {body}");
        let signer = ServerSigningKey::from_seed(
            ServerName::parse("device.invalid").expect("name"),
            KeyId::parse("ed25519:d").expect("key id"),
            &[seed; 32],
        );
        let curve25519 = base64url::encode([seed.wrapping_add(1); 32]);
        Self { user, device_id: device_id.to_owned(), signer, curve25519 }
    }

    fn key_object(&self, key_id: &str, fallback: bool) -> Value {
        let object = KeyObject {
            key_id: key_id.to_owned(),
            key: base64url::encode(
                key_id.as_bytes().iter().cycle().take(32).copied().collect::<Vec<_>>(),
            ),
            fallback,
        };
        let signature = self.signer.sign_bytes(&object.signing_bytes().expect("bytes"));
        let user = UserId::parse(&self.user.id).expect("user id");
        Value::Object(object.signed(&user, &self.device_id, &signature).expect("signed"))
    }

    async fn upload(&self, body: Value) -> (StatusCode, Value) {
        self.user.post("/keys/upload", body).await
    }

    /// An `olm.v1` content from this device to `target` (opaque bytes as the body).
    fn olm_to(&self, target: &Device) -> Value {
        json!({
            "algorithm": OLM_ALGORITHM,
            "sender_key": self.curve25519,
            "ciphertext": {target.curve25519.clone(): {"type": 0, "body": base64url::encode(b"opaque olm bytes")}},
        })
    }

    async fn send(&self, txn: &str, targets: &[&Device], lists: Value) -> (StatusCode, Value) {
        let messages: Vec<Value> = targets
            .iter()
            .enumerate()
            .map(|(i, target)| {
                json!({"recipient": target.user.id, "device_id": target.device_id,
                       "message_id": format!("{txn}-{i}"), "message_type": "olm.v1",
                       "content": self.olm_to(target)})
            })
            .collect();
        let body = json!({"messages": messages, "device_lists": lists});
        self.user.put(&format!("/users/@me/to_device/{txn}"), body).await
    }

    async fn inbox(&self) -> Vec<Value> {
        let (status, body) = self.user.get("/users/@me/to_device").await;
        assert_eq!(status, StatusCode::OK, "inbox: {body}");
        body["messages"].as_array().cloned().unwrap_or_default()
    }
}

/// A user with an identity key and one certified device.
async fn person(
    server: &Server,
    name: &str,
    device_id: &str,
    seed: u8,
) -> (Device, IdentityKeyPair) {
    let identity = IdentityKeyPair::from_phrase(&RecoveryPhrase::generate(), 0);
    let user = server.register(name).await;
    bind_identity(server, &user, &identity).await;
    (Device::register(user, &identity, device_id, seed).await, identity)
}

/// `user`'s device-list hash as `asker`'s server answers a key query.
async fn list_hash(asker: &Device, user: &str) -> String {
    let (status, body) = asker.user.post("/keys/query", json!({"users": [user]})).await;
    assert_eq!(status, StatusCode::OK, "query {user}: {body}");
    body["users"][user]["device_list_hash"]
        .as_str()
        .unwrap_or_else(|| panic!("no hash: {body}"))
        .to_owned()
}

#[tokio::test]
async fn one_time_keys_are_handed_out_once_then_the_fallback() {
    let a = Server::start().await;
    let (bob, _) = person(&a, "bob", "PHONE1", 1).await;
    let (alice, _) = person(&a, "alice", "LAPTOP", 2).await;

    // A login without a device has no keys to publish.
    let other = a.login("bob").await;
    assert_error(&other.post("/keys/upload", json!({})).await, StatusCode::CONFLICT, "no_device");
    // A key signed by another key, or marked wrongly, is refused and nothing is stored.
    let mut forged = bob.key_object("AAAA", false);
    forged["key"] = json!(base64url::encode([5; 32]));
    let refused =
        bob.upload(json!({"one_time_keys": [bob.key_object("AAAB", false), forged]})).await;
    assert_error(&refused, StatusCode::BAD_REQUEST, "invalid_key");
    let wrong_kind = bob.upload(json!({"fallback_key": bob.key_object("F", false)})).await;
    assert_error(&wrong_kind, StatusCode::BAD_REQUEST, "invalid_key");
    let (_, counts) = bob.upload(json!({})).await;
    assert_eq!(counts, json!({"one_time_key_count": 0, "fallback_key": false}));

    let keys: Vec<Value> = ["K1", "K2", "K3"].iter().map(|id| bob.key_object(id, false)).collect();
    let body = json!({"one_time_keys": keys, "fallback_key": bob.key_object("F1", true)});
    let (status, counts) = bob.upload(body.clone()).await;
    assert_eq!(
        (status, counts),
        (StatusCode::OK, json!({"one_time_key_count": 3, "fallback_key": true}))
    );
    // Uploading the same again changes nothing; the same id with another key is refused.
    assert_eq!(bob.upload(body).await.1["one_time_key_count"], 3);
    let mut changed = bob.key_object("K1", false);
    changed["key"] = json!(base64url::encode([6; 32]));
    assert_eq!(bob.upload(json!({"one_time_keys": [changed]})).await.0, StatusCode::BAD_REQUEST);

    let claim = json!({"one_time_keys": {bob.user.id.clone(): ["PHONE1"]}});
    let mut handed_out = Vec::new();
    for _ in 0..5 {
        let (status, body) = alice.user.post("/keys/claim", claim.clone()).await;
        assert_eq!(status, StatusCode::OK, "claim: {body}");
        handed_out.push(body["one_time_keys"][&bob.user.id]["PHONE1"].clone());
    }
    let ids: Vec<&str> = handed_out.iter().map(|k| k["key_id"].as_str().unwrap_or("-")).collect();
    assert_eq!(ids, ["K1", "K2", "K3", "F1", "F1"], "one-time keys once each, then the fallback");
    assert_eq!(handed_out[3]["fallback"], true);
    let (_, counts) = bob.upload(json!({})).await;
    assert_eq!(counts, json!({"one_time_key_count": 0, "fallback_key": true}));

    // At most 100 unclaimed keys per device.
    let many: Vec<Value> = (0..100).map(|i| bob.key_object(&format!("M{i:03}"), false)).collect();
    assert_eq!(bob.upload(json!({"one_time_keys": many})).await.0, StatusCode::OK);
    let over = bob.upload(json!({"one_time_keys": [bob.key_object("X", false)]})).await;
    assert_error(&over, StatusCode::BAD_REQUEST, "too_many_keys");
}

#[tokio::test]
async fn the_home_server_tells_a_device_when_its_keys_run_low() {
    let a = Server::start().await;
    let (bob, _) = person(&a, "bob", "PHONE1", 1).await;
    let (alice, _) = person(&a, "alice", "LAPTOP", 2).await;
    let keys: Vec<Value> = (0..21).map(|i| bob.key_object(&format!("K{i:02}"), false)).collect();
    assert_eq!(bob.upload(json!({"one_time_keys": keys})).await.0, StatusCode::OK);
    let (mut gateway, _) = Gateway::identified(&a, &bob.user.token, Encoding::Json).await;
    let claim = json!({"one_time_keys": {bob.user.id.clone(): ["PHONE1"]}});
    for _ in 0..2 {
        assert_eq!(alice.user.post("/keys/claim", claim.clone()).await.0, StatusCode::OK);
    }
    let low = gateway.expect_dispatch("ONE_TIME_KEYS_LOW", |_| true).await;
    assert_eq!(
        low["d"],
        json!({"device_id": "PHONE1", "one_time_key_count": 19, "fallback_key": false})
    );
}

#[tokio::test]
async fn claims_beyond_the_limit_are_refused_without_spending_keys() {
    let builder = || federating_builder().env("GUILDHALL_RATE_LIMITS__KEY_CLAIMS_PER_MINUTE", "3");
    let (a, b) = (builder().start().await, builder().start().await);
    let (bob, _) = person(&a, "bob", "PHONE1", 1).await;
    let keys: Vec<Value> = (0..10).map(|i| bob.key_object(&format!("K{i}"), false)).collect();
    assert_eq!(bob.upload(json!({"one_time_keys": keys})).await.0, StatusCode::OK);
    let claim = json!({"one_time_keys": {bob.user.id.clone(): ["PHONE1"]}});

    // A local claimer: three claims a minute, the fourth refused.
    let (mallory, _) = person(&a, "mallory", "M1", 3).await;
    for _ in 0..3 {
        assert_eq!(mallory.user.post("/keys/claim", claim.clone()).await.0, StatusCode::OK);
    }
    assert_error(
        &mallory.user.post("/keys/claim", claim.clone()).await,
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
    );
    // A remote claimer, through its server: the same limit, reported per user.
    let (eve, _) = person(&b, "eve", "E1", 4).await;
    for _ in 0..3 {
        let (status, body) = eve.user.post("/keys/claim", claim.clone()).await;
        assert!(body["one_time_keys"][&bob.user.id]["PHONE1"].is_object(), "{status} {body}");
    }
    let (_, body) = eve.user.post("/keys/claim", claim).await;
    assert_eq!(body["failures"][&bob.user.id]["code"], "rate_limited", "{body}");
    assert!(body["one_time_keys"].get(&bob.user.id).is_none());
    // Six keys went out; the refused claims took none.
    assert_eq!(bob.upload(json!({})).await.1["one_time_key_count"], 4);
}

#[tokio::test]
async fn to_device_messages_cross_servers_and_wait_until_acknowledged() {
    let (a, b) = (
        federating_builder().recorded().start().await,
        federating_builder().recorded().start().await,
    );
    let (alice, _) = person(&a, "alice", "LAPTOP", 1).await;
    let (bob, _) = person(&b, "bob", "PHONE1", 2).await;
    let (mut bobs_gateway, _) = Gateway::identified(&b, &bob.user.token, Encoding::Json).await;

    let hash = list_hash(&alice, &bob.user.id).await;
    let lists = json!({bob.user.id.clone(): hash});
    let (status, answer) = alice.send("t1", &[&bob], lists.clone()).await;
    assert_eq!(status, StatusCode::OK, "send: {answer}");
    assert_eq!(answer, json!({"results": {bob.user.id.clone(): {"status": "delivered"}}}));
    let live = bobs_gateway.expect_dispatch("TO_DEVICE", |_| true).await;
    assert_eq!(
        (&live["d"]["sender"], &live["d"]["sender_device"]),
        (&json!(alice.user.id), &json!("LAPTOP"))
    );
    assert_eq!(live["d"]["content"], alice.olm_to(&bob));
    // The message crossed between the servers as it was sent (what the recorder sees is what
    // the privacy tests of `e2ee.rs` search for plaintext).
    let body = base64url::encode(b"opaque olm bytes");
    let traffic = String::from_utf8_lossy(&b.federation_traffic()).into_owned();
    assert!(
        traffic.contains(&body) && traffic.contains("/user/to_device/"),
        "B's traffic lacks the send"
    );

    // The same transaction again: the first answer, and no second copy in the inbox.
    assert_eq!(alice.send("t1", &[&bob], lists.clone()).await.1, answer);
    let inbox = bob.inbox().await;
    assert_eq!(inbox.len(), 1, "one message waits");
    assert_eq!(inbox[0]["id"], live["d"]["id"]);
    // Another body under the same transaction id is a conflict.
    let other = alice.send("t1", &[&bob], json!({bob.user.id.clone(): "x"})).await;
    assert_error(&other, StatusCode::CONFLICT, "txn_conflict");

    // It survives a restart of B, and goes when acknowledged.
    let mut b = b;
    b.stop();
    b.launch().await;
    assert_eq!(bob.inbox().await.len(), 1, "the inbox is durable");
    let up_to = inbox[0]["id"].as_i64().expect("id");
    let (_, acked) = bob.user.post("/users/@me/to_device/ack", json!({"up_to": up_to})).await;
    assert_eq!(acked["deleted"], 1);
    assert!(bob.inbox().await.is_empty());
}

#[tokio::test]
async fn a_changed_device_list_is_refused_then_every_device_gets_the_message() {
    let (a, b) = (federating().await, federating().await);
    let (alice, _) = person(&a, "alice", "LAPTOP", 1).await;
    let (bob, bobs_identity) = person(&b, "bob", "PHONE1", 2).await;
    let old_hash = list_hash(&alice, &bob.user.id).await;
    let (mut alices_gateway, _) = Gateway::identified(&a, &alice.user.token, Encoding::Json).await;

    // Bob adds a device after Alice looked: B tells A, A tells Alice.
    let tablet = Device::register(b.login("bob").await, &bobs_identity, "TABLET", 3).await;
    let update = alices_gateway
        .expect_dispatch("DEVICE_LIST_UPDATE", |d| d["user_id"] == bob.user.id.as_str())
        .await;
    let new_hash = list_hash(&alice, &bob.user.id).await;
    assert_ne!(new_hash, old_hash);
    assert_eq!(update["d"]["device_list_hash"], new_hash.as_str());

    // A send encrypted for the old list is refused for Bob, whole: nothing reaches PHONE1.
    let (_, answer) = alice.send("s1", &[&bob], json!({bob.user.id.clone(): old_hash})).await;
    assert_eq!(
        answer["results"][&bob.user.id],
        json!({"status": "stale", "device_list_hash": new_hash})
    );
    assert!(bob.inbox().await.is_empty());
    // The right hash with a device left out is refused the same way.
    let (_, answer) = alice.send("s2", &[&bob], json!({bob.user.id.clone(): new_hash})).await;
    assert_eq!(answer["results"][&bob.user.id]["status"], "stale");
    // Encrypted for both: both get it.
    let (_, answer) =
        alice.send("s3", &[&bob, &tablet], json!({bob.user.id.clone(): new_hash})).await;
    assert_eq!(answer["results"][&bob.user.id]["status"], "delivered");
    assert_eq!((bob.inbox().await.len(), tablet.inbox().await.len()), (1, 1));

    // Logging the tablet out changes the list again.
    assert_eq!(tablet.user.post_empty("/auth/logout").await.0, StatusCode::NO_CONTENT);
    alices_gateway
        .expect_dispatch("DEVICE_LIST_UPDATE", |d| d["device_list_hash"] == old_hash.as_str())
        .await;
}

#[tokio::test]
async fn plaintext_and_misaddressed_content_is_refused() {
    let (a, b) = (federating().await, federating().await);
    let (alice, _) = person(&a, "alice", "LAPTOP", 1).await;
    let (bob, _) = person(&b, "bob", "PHONE1", 2).await;
    let hash = list_hash(&alice, &bob.user.id).await;
    let send = |message_type: &str, content: Value| {
        json!({"messages": [{"recipient": bob.user.id, "device_id": "PHONE1", "message_id": "m1",
               "message_type": message_type, "content": content}],
               "device_lists": {bob.user.id.clone(): hash}})
    };
    let put = |body: Value| alice.user.put("/users/@me/to_device/p1", body);
    let plain = put(send("m.text", json!({"body": "hello in the clear"}))).await;
    assert_error(&plain, StatusCode::BAD_REQUEST, "invalid_content");
    let mut content = alice.olm_to(&bob);
    content["body"] = json!("hello in the clear");
    assert_error(&put(send("olm.v1", content)).await, StatusCode::BAD_REQUEST, "invalid_content");
    let mut content = alice.olm_to(&bob);
    content["algorithm"] = json!("plaintext");
    assert_error(&put(send("olm.v1", content)).await, StatusCode::BAD_REQUEST, "invalid_content");
    // A sender key that is not the sending device's, checked by A.
    let mut content = alice.olm_to(&bob);
    content["sender_key"] = json!(base64url::encode([9; 32]));
    assert_error(&put(send("olm.v1", content)).await, StatusCode::BAD_REQUEST, "invalid_content");
    // A ciphertext for a key that is not the device's, checked by B and reported to Alice.
    let content = json!({"algorithm": OLM_ALGORITHM, "sender_key": alice.curve25519,
        "ciphertext": {base64url::encode([9; 32]): {"type": 0, "body": "AAAA"}}});
    let (status, answer) = put(send("olm.v1", content)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["results"][&bob.user.id]["status"], "unreachable", "{answer}");
    assert!(bob.inbox().await.is_empty());

    // Over federation, a server speaks only for its own users.
    let peer = super::security::Peer::of(&a);
    let forged = json!({"sender": b.user_id("mallory"), "sender_device": "X",
        "messages": [{"recipient": bob.user.id, "device_id": "PHONE1", "message_id": "f1",
                      "message_type": "olm.v1", "content": alice.olm_to(&bob)}],
        "device_lists": {bob.user.id.clone(): hash}});
    let request = peer.signed(&b, "PUT", "/_guildhall/v1/user/to_device/f1", Some(&forged));
    assert_error(
        &peer.send("PUT", &request).await,
        StatusCode::FORBIDDEN,
        "sender_not_from_origin",
    );
}

#[tokio::test]
async fn an_unreachable_server_is_reported_not_skipped() {
    let (a, mut b) = (federating().await, federating().await);
    let (alice, _) = person(&a, "alice", "LAPTOP", 1).await;
    let (bob, _) = person(&b, "bob", "PHONE1", 2).await;
    let (carol, _) = person(&a, "carol", "C1", 3).await;
    let (bob_hash, carol_hash) =
        (list_hash(&alice, &bob.user.id).await, list_hash(&alice, &carol.user.id).await);
    b.stop();
    let lists = json!({bob.user.id.clone(): bob_hash, carol.user.id.clone(): carol_hash});
    let (status, answer) = alice.send("u1", &[&bob, &carol], lists).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["results"][&bob.user.id]["status"], "unreachable");
    assert_eq!(answer["results"][&carol.user.id]["status"], "delivered");
    let (_, failed) = alice.user.post("/keys/query", json!({"users": [bob.user.id]})).await;
    assert_eq!(failed["failures"][&bob.user.id]["code"], "unreachable");
}

#[tokio::test]
async fn a_claimed_key_uploaded_again_is_not_handed_out_again() {
    let a = Server::start().await;
    let (bob, _) = person(&a, "bob", "PHONE1", 1).await;
    let (alice, _) = person(&a, "alice", "LAPTOP", 2).await;
    let upload = json!({"one_time_keys": [bob.key_object("K1", false)]});
    assert_eq!(bob.upload(upload.clone()).await.1["one_time_key_count"], 1);
    let claim = json!({"one_time_keys": {bob.user.id.clone(): ["PHONE1"]}});
    let (_, first) = alice.user.post("/keys/claim", claim.clone()).await;
    assert_eq!(first["one_time_keys"][&bob.user.id]["PHONE1"]["key_id"], "K1");
    // The upload is retried (its answer was lost): the claimed key does not come back.
    assert_eq!(bob.upload(upload).await.1["one_time_key_count"], 0);
    let (_, second) = alice.user.post("/keys/claim", claim).await;
    assert!(second["one_time_keys"].get(&bob.user.id).is_none(), "{second}");
}

#[tokio::test]
async fn e2e_requests_need_a_device_and_stay_within_their_bounds() {
    let a = Server::start().await;
    let (bob, _) = person(&a, "bob", "PHONE1", 1).await;
    let (alice, _) = person(&a, "alice", "LAPTOP", 2).await;
    let deviceless = a.login("alice").await;
    let query = json!({"users": [bob.user.id]});
    assert_error(&deviceless.post("/keys/query", query).await, StatusCode::CONFLICT, "no_device");
    // More devices of one user than the claim limit allows at once: refused, not 429 forever.
    let many: Vec<String> = (0..21).map(|i| format!("D{i}")).collect();
    let claim = json!({"one_time_keys": {bob.user.id.clone(): many}});
    let big =
        Server::builder().env("GUILDHALL_RATE_LIMITS__KEY_CLAIMS_PER_MINUTE", "20").start().await;
    let (carol, _) = person(&big, "carol", "C1", 3).await;
    assert_error(
        &carol.user.post("/keys/claim", claim).await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    );
    let (status, body) = alice.user.get("/users/@me/to_device?limit=abc").await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::BAD_REQUEST, Some("bad_request")));
}

#[tokio::test]
async fn one_bad_share_stores_nothing_for_anyone() {
    let a = Server::start().await;
    let (alice, _) = person(&a, "alice", "LAPTOP", 1).await;
    let (bob, _) = person(&a, "bob", "PHONE1", 2).await;
    let (carol, _) = person(&a, "carol", "C1", 3).await;
    let lists = json!({bob.user.id.clone(): list_hash(&alice, &bob.user.id).await,
                       carol.user.id.clone(): list_hash(&alice, &carol.user.id).await});
    let messages = json!([
        {"recipient": bob.user.id, "device_id": "PHONE1", "message_id": "m1",
         "message_type": "olm.v1", "content": alice.olm_to(&bob)},
        {"recipient": carol.user.id, "device_id": "C1", "message_id": "m2",
         "message_type": "olm.v1", "content": alice.olm_to(&bob)},
    ]);
    let body = json!({"messages": messages, "device_lists": lists});
    let refused = alice.user.put("/users/@me/to_device/b1", body).await;
    assert_error(&refused, StatusCode::BAD_REQUEST, "invalid_content");
    assert!(bob.inbox().await.is_empty(), "bob's share was stored although the send failed");
}

#[tokio::test]
async fn one_sender_cannot_flood_a_user() {
    let a = Server::builder().env("GUILDHALL_RATE_LIMITS__TO_DEVICE_PER_MINUTE", "3").start().await;
    let (alice, _) = person(&a, "alice", "LAPTOP", 1).await;
    let (bob, _) = person(&a, "bob", "PHONE1", 2).await;
    let (carol, _) = person(&a, "carol", "C1", 3).await;
    let lists = json!({bob.user.id.clone(): list_hash(&alice, &bob.user.id).await});
    for i in 0..3 {
        let (status, answer) = alice.send(&format!("f{i}"), &[&bob], lists.clone()).await;
        assert_eq!(status, StatusCode::OK, "send {i}: {answer}");
    }
    let refused = alice.send("f3", &[&bob], lists.clone()).await;
    assert_error(&refused, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    assert_eq!(bob.inbox().await.len(), 3);
    // Others still reach bob, and alice still reaches others.
    assert_eq!(carol.send("c1", &[&bob], lists).await.0, StatusCode::OK);
    let to_carol = json!({carol.user.id.clone(): list_hash(&alice, &carol.user.id).await});
    assert_eq!(alice.send("a1", &[&carol], to_carol).await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_send_that_leaves_out_the_senders_other_devices_is_told_so() {
    let a = Server::start().await;
    let (alice, alices_identity) = person(&a, "alice", "LAPTOP", 1).await;
    let (bob, _) = person(&a, "bob", "PHONE1", 2).await;
    let lists = json!({bob.user.id.clone(): list_hash(&alice, &bob.user.id).await});
    // Alone, alice need not name herself.
    let (_, answer) = alice.send("o1", &[&bob], lists.clone()).await;
    assert!(answer["results"].get(&alice.user.id).is_none(), "{answer}");
    // With a second device, a send that does not reach it says so (bob's share still goes).
    let phone = Device::register(a.login("alice").await, &alices_identity, "PHONE2", 3).await;
    let (_, answer) = alice.send("o2", &[&bob], lists).await;
    assert_eq!(answer["results"][&bob.user.id]["status"], "delivered");
    assert_eq!(answer["results"][&alice.user.id]["status"], "stale", "{answer}");
    let own = list_hash(&alice, &alice.user.id).await;
    let (_, answer) = alice.send("o3", &[&phone], json!({alice.user.id.clone(): own})).await;
    assert_eq!(answer["results"][&alice.user.id]["status"], "delivered");
    assert_eq!(phone.inbox().await.len(), 1);
}
