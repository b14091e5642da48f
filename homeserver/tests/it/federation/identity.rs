//! One identity across servers (spec chapter 16): a user with one recovery phrase logs in to
//! several servers with it, and everyone sees one identity; replayed, misdirected, forged and
//! revoked proofs are refused.

use std::time::Duration;

use guildhall_identity::key::IdentityKeyPair;
use guildhall_identity::login::{self, Challenge};
use guildhall_identity::phrase::RecoveryPhrase;
use guildhall_spec::{ServerName, UserId};

use super::*;
use crate::harness::{StatusCode, Value, assert_error, json};

/// A challenge from `server` for `user_id`.
async fn challenge(server: &Server, user_id: &str) -> Challenge {
    let (status, body) = server
        .client()
        .post_at("/_guildhall/v1/identity/challenge", json!({"user_id": user_id}))
        .await;
    assert_eq!(status, StatusCode::OK, "challenge: {body}");
    Challenge::parse(body["challenge"].as_str().expect("a challenge")).expect("a valid challenge")
}

/// The proof that `key` answers `challenge` for `user_id` logging in to `server_name`.
fn proof(key: &IdentityKeyPair, server_name: &str, user_id: &str, challenge: &Challenge) -> String {
    let server = ServerName::parse(server_name).expect("server name");
    let user = UserId::parse(user_id).expect("user id");
    login::sign(key, &server, &user, challenge)
}

/// Posts a key login to `server` and returns the raw answer.
async fn prove(
    server: &Server,
    user_id: &str,
    challenge: &Challenge,
    signature: &str,
    extra: Value,
) -> (StatusCode, Value) {
    let mut body =
        json!({"user_id": user_id, "challenge": challenge.as_str(), "signature": signature});
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    server.client().post_at("/_guildhall/v1/identity/prove", body).await
}

/// Binds `key` to `user` on its home server `home`, proving possession.
pub(super) async fn bind_identity(home: &Server, user: &User, key: &IdentityKeyPair) -> Value {
    let challenge = challenge(home, &user.id).await;
    let signature = proof(key, &home.name(), &user.id, &challenge);
    let (status, body) = user
        .put(
            "/users/@me/identity",
            json!({
                "identity_key": key.public_base64url(),
                "challenge": challenge.as_str(),
                "signature": signature,
                "binding": binding(key, &user.id),
            }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "bind identity: {body}");
    body
}

/// The body of a revocation: the test password.
fn revoke_body() -> Value {
    json!({"password": crate::harness::PASSWORD})
}

/// `key`'s consent to be bound to `user_id` (spec 16.2).
fn binding(key: &IdentityKeyPair, user_id: &str) -> String {
    guildhall_identity::attestation::sign_binding(key, &UserId::parse(user_id).expect("user id"))
}

/// Logs in to `server` with `key` as `user_id` (consenting to an account there with the same
/// localpart); returns the local account's user.
pub(super) async fn key_login(server: &Server, user_id: &str, key: &IdentityKeyPair) -> User {
    let challenge = challenge(server, user_id).await;
    let signature = proof(key, &server.name(), user_id, &challenge);
    let localpart = UserId::parse(user_id).expect("user id").localpart().to_owned();
    let consent = binding(key, &server.user_id(&localpart));
    let (status, body) =
        prove(server, user_id, &challenge, &signature, json!({"binding": consent})).await;
    assert_eq!(status, StatusCode::OK, "key login to {}: {body}", server.name());
    User::from_auth(server.client(), &body)
}

/// The identity keys a guild's member list shows, by user id, as `viewer` sees them.
async fn member_keys(viewer: &User, guild: &str) -> Vec<(String, Option<String>)> {
    let (status, body) = viewer.get(&format!("/guilds/{guild}/members")).await;
    assert_eq!(status, StatusCode::OK, "members: {body}");
    body["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| {
            let id = m["user_id"].as_str().unwrap_or_default().to_owned();
            (id, m["identity_key"].as_str().map(str::to_owned))
        })
        .collect()
}

#[tokio::test]
async fn one_phrase_logs_in_to_two_servers_and_is_one_identity_in_a_guild_on_a_third() {
    let (a, b, c) = (federating().await, federating().await, federating().await);
    let phrase = RecoveryPhrase::generate();
    let key = IdentityKeyPair::from_phrase(&phrase, 0);

    let bob_a = a.register("bob").await;
    bind_identity(&a, &bob_a, &key).await;
    let (status, me) = bob_a.get("/users/@me").await;
    assert_eq!(
        (status, me["identity_key"].as_str()),
        (StatusCode::OK, Some(&*key.public_base64url()))
    );

    // On B, nobody registered bob: the key login creates @bob:B, bound to the same key.
    let bob_b = key_login(&b, &bob_a.id, &key).await;
    assert_eq!(bob_b.id, b.user_id("bob"));
    // A second login to B with the same key is the same account.
    assert_eq!(key_login(&b, &bob_a.id, &key).await.id, bob_b.id);
    // And the phrase alone recovers it: a new device derives the same key.
    let recovered = RecoveryPhrase::parse(&phrase.words()).expect("the phrase parses");
    assert_eq!(
        key_login(&b, &bob_a.id, &IdentityKeyPair::from_phrase(&recovered, 0)).await.id,
        bob_b.id
    );

    let carol = c.register("carol").await;
    let guild = carol.create_guild("meeting place").await;
    let code = carol.invite(&guild.general).await;
    join_remote(&bob_a, &c, &code).await;
    join_remote(&bob_b, &c, &code).await;

    let expected = Some(key.public_base64url());
    let keys = eventually(
        Duration::from_secs(20),
        || member_keys(&carol, &guild.id),
        |keys| {
            [&bob_a.id, &bob_b.id]
                .iter()
                .all(|bob| keys.iter().any(|(id, key)| id == *bob && *key == expected))
        },
    )
    .await;
    for bob in [&bob_a.id, &bob_b.id] {
        let shown = keys.iter().find(|(id, _)| id == bob).map(|(_, key)| key.clone());
        assert_eq!(shown, Some(expected.clone()), "C shows {bob} with the identity key");
    }
    let carol_key = keys.iter().find(|(id, _)| *id == carol.id).and_then(|(_, key)| key.clone());
    assert_eq!(carol_key, None, "carol set no identity key");
}

#[tokio::test]
async fn replayed_misdirected_forged_and_revoked_proofs_are_refused() {
    let (mut a, b, c) = (federating().await, federating().await, federating().await);
    let key = IdentityKeyPair::from_phrase(&RecoveryPhrase::generate(), 0);
    let bob = a.register("bob").await;
    bind_identity(&a, &bob, &key).await;

    // A proof is good once: replaying it (same challenge) is refused.
    // Without the key's consent to an account on B, none is made.
    let first = challenge(&b, &bob.id).await;
    let signature = proof(&key, &b.name(), &bob.id, &first);
    let refused = prove(&b, &bob.id, &first, &signature, json!({})).await;
    assert_error(&refused, StatusCode::BAD_REQUEST, "binding_required");
    let consent = json!({"binding": binding(&key, &b.user_id("bob"))});
    let first = challenge(&b, &bob.id).await;
    let signature = proof(&key, &b.name(), &bob.id, &first);
    assert_eq!(prove(&b, &bob.id, &first, &signature, consent.clone()).await.0, StatusCode::OK);
    let replayed = prove(&b, &bob.id, &first, &signature, consent).await;
    assert_error(&replayed, StatusCode::UNAUTHORIZED, "invalid_challenge");

    // A proof made for B does not open C, neither with B's challenge nor with one of C's.
    let for_b = challenge(&b, &bob.id).await;
    let signature = proof(&key, &b.name(), &bob.id, &for_b);
    let elsewhere = prove(&c, &bob.id, &for_b, &signature, json!({})).await;
    assert_error(&elsewhere, StatusCode::UNAUTHORIZED, "invalid_challenge");
    let for_c = challenge(&c, &bob.id).await;
    let misdirected = proof(&key, &b.name(), &bob.id, &for_c);
    let refused = prove(&c, &bob.id, &for_c, &misdirected, json!({})).await;
    assert_error(&refused, StatusCode::UNAUTHORIZED, "bad_proof");
    // A challenge is bound to the user it was issued for.
    let for_other = challenge(&c, &a.user_id("someone")).await;
    let signature = proof(&key, &c.name(), &bob.id, &for_other);
    let refused = prove(&c, &bob.id, &for_other, &signature, json!({})).await;
    assert_error(&refused, StatusCode::UNAUTHORIZED, "invalid_challenge");

    // Mallory on A has no identity key; an attestation she forges for herself is worthless,
    // whether A can be asked (it says she has none) or not (the signature is not A's).
    let mallory = a.register("mallory").await;
    let mallory_key = IdentityKeyPair::from_phrase(&RecoveryPhrase::generate(), 0);
    let forger = guildhall_spec::ServerSigningKey::from_seed(
        ServerName::parse(&a.name()).expect("name"),
        guildhall_spec::KeyId::parse("ed25519:k1").expect("key id"),
        &[7; 32],
    );
    let forged = guildhall_identity::attestation::Attestation {
        user_id: UserId::parse(&mallory.id).expect("user id"),
        identity_key: mallory_key.public_base64url(),
        issued_ts: now_ms(),
        revoked: false,
        binding: Some(binding(&mallory_key, &mallory.id)),
    }
    .sign(&forger)
    .expect("sign");
    let mallory_id = mallory.id.clone();
    assert_error(
        &forged_login(&c, &mallory_id, &mallory_key, &forged).await,
        StatusCode::UNAUTHORIZED,
        "no_identity",
    );

    // Bob revokes his key on A: B, which knew it, learns so on the next login and refuses.
    // A session token alone does not revoke: the password (or a proof by the key) must come too.
    let (status, _) = bob.delete_with("/users/@me/identity", json!({})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let wrong = json!({"password": "not the password"});
    assert_eq!(bob.delete_with("/users/@me/identity", wrong).await.0, StatusCode::UNAUTHORIZED);
    let (status, body) = bob.delete_with("/users/@me/identity", revoke_body()).await;
    assert_eq!(status, StatusCode::OK, "revoke: {body}");
    let after = challenge(&b, &bob.id).await;
    let signature = proof(&key, &b.name(), &bob.id, &after);
    let refused = prove(&b, &bob.id, &after, &signature, json!({})).await;
    assert_error(&refused, StatusCode::UNAUTHORIZED, "identity_revoked");

    // With A down, the forged attestation is all C has to go on, and it does not verify.
    a.stop();
    assert_error(
        &forged_login(&c, &mallory_id, &mallory_key, &forged).await,
        StatusCode::UNAUTHORIZED,
        "invalid_attestation",
    );
}

#[tokio::test]
async fn a_move_from_a_to_b_keeps_membership_roles_and_history() {
    let (a, b, c) = (federating().await, federating().await, federating().await);
    let key = IdentityKeyPair::from_phrase(&RecoveryPhrase::generate(), 0);
    let alice_a = a.register("alice").await;
    bind_identity(&a, &alice_a, &key).await;
    let carol = c.register("carol").await;
    let guild = carol.create_guild("staying together").await;
    join_remote(&alice_a, &c, &carol.invite(&guild.general).await).await;
    let role = carol.create_role(&guild.id, "regular", "0", 1).await;
    carol.give_role(&guild.id, &alice_a.id, &role).await;
    alice_a.send(&guild.general, "before the move").await;

    let alice_b = key_login(&b, &alice_a.id, &key).await;
    let statement = guildhall_identity::moves::AccountMove {
        from: UserId::parse(&alice_a.id).expect("user id"),
        to: UserId::parse(&alice_b.id).expect("user id"),
        identity_key: key.public_base64url(),
        ts: now_ms(),
    }
    .sign(&key)
    .expect("sign the move");
    let (status, body) = alice_b.post("/users/@me/identity/move", json!({"move": statement})).await;
    assert_eq!(status, StatusCode::OK, "move: {body}");
    assert_eq!(body["guilds"], json!([guild.id]), "A named the guild and it moved: {body}");

    // On the host: the new account holds the old one's membership and role; the old one is gone.
    let (_, member) = carol.get(&format!("/guilds/{}/members/{}", guild.id, alice_b.id)).await;
    assert_eq!(member["roles"], json!([role]), "{member}");
    assert_eq!(member["identity_key"].as_str(), Some(&*key.public_base64url()));
    let members = carol.member_ids(&guild.id).await;
    assert!(!members.contains(&alice_a.id), "the old account left: {members:?}");
    // On B, the new account reads the history (written by the old account) and writes on.
    let history = eventually(
        Duration::from_secs(20),
        || contents(&alice_b, &guild.general),
        |history| history.iter().any(|m| m == "before the move"),
    )
    .await;
    assert!(history.iter().any(|m| m == "before the move"), "history on B: {history:?}");
    alice_b.send(&guild.general, "after the move").await;
    let seen = eventually(
        Duration::from_secs(20),
        || contents(&carol, &guild.general),
        |seen| seen.iter().any(|m| m == "after the move"),
    )
    .await;
    assert!(seen.iter().any(|m| m == "after the move"), "carol sees the moved account: {seen:?}");
    // The old account logs in no more.
    let (status, body) = a
        .client()
        .post("/auth/login", json!({"username": "alice", "password": crate::harness::PASSWORD}))
        .await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::FORBIDDEN, Some("account_moved")));
    // A move nobody signed is refused.
    let forged = guildhall_identity::moves::AccountMove {
        from: UserId::parse(&carol.id).expect("user id"),
        to: UserId::parse(&alice_b.id).expect("user id"),
        identity_key: key.public_base64url(),
        ts: now_ms(),
    }
    .sign(&key)
    .expect("sign");
    let (status, body) = alice_b.post("/users/@me/identity/move", json!({"move": forged})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "carol has no identity key: {body}");
}

/// A certificate for device `device_id` of `user_id`, with a device key made from `seed`.
pub(super) fn certificate(
    identity: &IdentityKeyPair,
    user_id: &str,
    device_id: &str,
    seed: u8,
) -> guildhall_spec::event::JsonObject {
    use guildhall_identity::device::{DeviceCertificate, DeviceKeys};
    // Any Ed25519 signer stands in for the device's Olm account here.
    let device = guildhall_spec::ServerSigningKey::from_seed(
        ServerName::parse("device.invalid").expect("name"),
        guildhall_spec::KeyId::parse("ed25519:d").expect("key id"),
        &[seed; 32],
    );
    let unsigned = DeviceCertificate {
        user_id: UserId::parse(user_id).expect("user id"),
        device_id: device_id.parse().expect("device id"),
        device_keys: DeviceKeys {
            curve25519: guildhall_spec::base64url::encode([seed.wrapping_add(1); 32]),
            ed25519: guildhall_spec::base64url::encode(device.verifying_key().as_bytes()),
        },
        identity_key: identity.public_base64url(),
        valid_until_ts: None,
    };
    let device_signature = device.sign_bytes(&unsigned.signing_bytes().expect("bytes"));
    unsigned.sign(identity, &device_signature).expect("certify")
}

#[tokio::test]
async fn identities_reach_the_gateway() {
    use crate::harness::{Encoding, Gateway};
    let (a, c) = (federating().await, federating().await);
    let carol = c.register("carol").await;
    let guild = carol.create_guild("watching").await;
    let bob = a.register("bob").await;
    let (mut bobs, _) = Gateway::identified(&a, &bob.token, Encoding::Json).await;
    let phrase = RecoveryPhrase::generate();
    let (key, next) =
        (IdentityKeyPair::from_phrase(&phrase, 0), IdentityKeyPair::from_phrase(&phrase, 1));
    bind_identity(&a, &bob, &key).await;
    let public = key.public_base64url();
    let is_bobs =
        |d: &Value| d["user_id"] == bob.id.as_str() && d["identity_key"] == public.as_str();
    bobs.expect_dispatch("IDENTITY_UPDATE", is_bobs).await;
    // C learns bob's identity when he joins its guild, and tells the members there.
    let (mut carols, _) = Gateway::identified(&c, &carol.token, Encoding::Json).await;
    join_remote(&bob, &c, &carol.invite(&guild.general).await).await;
    carols.expect_dispatch("IDENTITY_UPDATE", is_bobs).await;
    // Bob rotates: A tells C at once, C fetches the new attestation and tells carol.
    let rotation = guildhall_identity::rotation::IdentityRotation {
        user_id: UserId::parse(&bob.id).expect("user id"),
        old_key: public.clone(),
        new_key: next.public_base64url(),
        new_index: Some(1),
        ts: now_ms(),
    }
    .sign(&key, &next)
    .expect("sign");
    let body = json!({"rotation": rotation, "binding": binding(&next, &bob.id)});
    assert_eq!(bob.post("/users/@me/identity/rotate", body).await.0, StatusCode::OK);
    let rotated = next.public_base64url();
    carols
        .expect_dispatch("IDENTITY_UPDATE", |d| {
            d["user_id"] == bob.id.as_str() && d["identity_key"] == rotated.as_str()
        })
        .await;
    let keys = member_keys(&carol, &guild.id).await;
    assert!(keys.contains(&(bob.id.clone(), Some(rotated))), "C's member list: {keys:?}");
}

#[tokio::test]
async fn devices_are_certified_by_the_identity_and_served_while_valid() {
    let (a, b) = (federating().await, federating().await);
    let phrase = RecoveryPhrase::generate();
    let (old, new) =
        (IdentityKeyPair::from_phrase(&phrase, 0), IdentityKeyPair::from_phrase(&phrase, 1));
    let bob = a.register("bob").await;
    bind_identity(&a, &bob, &old).await;
    let served = async || {
        let peer = super::security::Peer::of(&b);
        let path = format!("/_guildhall/v1/identity/{}/devices", bob.id);
        let (status, body) = peer.send("GET", &peer.signed(&a, "GET", &path, None)).await;
        assert_eq!(status, StatusCode::OK, "devices of bob: {body}");
        body["devices"].as_array().map_or(0, Vec::len)
    };

    let path = "/users/@me/devices/PHONE1";
    let stranger = IdentityKeyPair::from_phrase(&RecoveryPhrase::generate(), 0);
    let (status, body) =
        bob.put(path, json!({"certificate": certificate(&stranger, &bob.id, "PHONE1", 1)})).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_certificate"))
    );
    let (status, body) =
        bob.put(path, json!({"certificate": certificate(&old, &bob.id, "PHONE1", 1)})).await;
    assert_eq!(status, StatusCode::OK, "certify: {body}");
    let (_, listed) = bob.get("/users/@me/devices").await;
    assert_eq!(
        (&listed["devices"][0]["valid"], &listed["devices"][0]["current"]),
        (&json!(true), &json!(true))
    );
    assert_eq!(served().await, 1);

    // A rotation invalidates the certificate until the device is certified again.
    let rotation = guildhall_identity::rotation::IdentityRotation {
        user_id: UserId::parse(&bob.id).expect("user id"),
        old_key: old.public_base64url(),
        new_key: new.public_base64url(),
        new_index: Some(1),
        ts: now_ms(),
    }
    .sign(&old, &new)
    .expect("sign");
    let (status, _) = bob
        .post(
            "/users/@me/identity/rotate",
            json!({"rotation": rotation, "binding": binding(&new, &bob.id)}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, listed) = bob.get("/users/@me/devices").await;
    assert_eq!(listed["devices"][0]["valid"], false);
    assert_eq!(served().await, 0, "a certificate by the old key is not served");
    let (status, _) =
        bob.put(path, json!({"certificate": certificate(&new, &bob.id, "PHONE1", 1)})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(served().await, 1);

    // Removing the device logs its login out.
    let (status, _) = bob.delete(path).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(bob.get("/users/@me").await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(served().await, 0);
}

/// A key login presenting a (forged) attestation.
async fn forged_login(
    server: &Server,
    user_id: &str,
    key: &IdentityKeyPair,
    attestation: &guildhall_spec::event::JsonObject,
) -> (StatusCode, Value) {
    let challenge = challenge(server, user_id).await;
    let signature = proof(key, &server.name(), user_id, &challenge);
    prove(server, user_id, &challenge, &signature, json!({"attestation": attestation})).await
}

#[tokio::test]
async fn a_bound_key_is_replaced_only_by_rotation_and_the_server_can_make_one() {
    let a = federating().await;
    let phrase = RecoveryPhrase::generate();
    let (old, new) =
        (IdentityKeyPair::from_phrase(&phrase, 0), IdentityKeyPair::from_phrase(&phrase, 1));
    let bob = a.register("bob").await;
    bind_identity(&a, &bob, &old).await;
    // Binding another key over it is refused: that would let a stolen password swap identities.
    let challenge_ = challenge(&a, &bob.id).await;
    let signature = proof(&new, &a.name(), &bob.id, &challenge_);
    let (status, _) = bob
        .put(
            "/users/@me/identity",
            json!({
                "identity_key": new.public_base64url(),
                "challenge": challenge_.as_str(),
                "signature": signature,
                "binding": binding(&new, &bob.id),
            }),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);

    let rotation = guildhall_identity::rotation::IdentityRotation {
        user_id: UserId::parse(&bob.id).expect("user id"),
        old_key: old.public_base64url(),
        new_key: new.public_base64url(),
        new_index: Some(1),
        ts: now_ms(),
    }
    .sign(&old, &new)
    .expect("sign the rotation");
    let (status, body) = bob
        .post(
            "/users/@me/identity/rotate",
            json!({"rotation": rotation, "binding": binding(&new, &bob.id)}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "rotate: {body}");
    let (_, mine) = bob.get("/users/@me/identity").await;
    assert_eq!(mine["identity_key"].as_str(), Some(&*new.public_base64url()));
    assert_eq!(mine["rotations"].as_array().map(Vec::len), Some(1));
    // The same statement again is refused: the old key is no longer current.
    let (status, _) = bob
        .post(
            "/users/@me/identity/rotate",
            json!({"rotation": rotation, "binding": binding(&new, &bob.id)}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // A simple client lets the server generate the phrase; it gets the words once.
    let alice = a.register("alice").await;
    let (status, body) = alice.post_empty("/users/@me/identity/generate").await;
    assert_eq!(status, StatusCode::CREATED, "generate: {body}");
    let words =
        RecoveryPhrase::parse(body["phrase"].as_str().expect("a phrase")).expect("24 words");
    assert_eq!(
        body["identity_key"].as_str(),
        Some(&*IdentityKeyPair::from_phrase(&words, 0).public_base64url())
    );
    let (status, _) = alice.post_empty("/users/@me/identity/generate").await;
    assert_eq!(status, StatusCode::CONFLICT, "a bound key is not replaced by a new phrase");
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[tokio::test]
async fn a_key_given_up_opens_nothing_it_left() {
    let (a, b) = (federating().await, federating().await);
    let old = IdentityKeyPair::from_phrase(&RecoveryPhrase::generate(), 0);
    let bob = a.register("bob").await;
    bind_identity(&a, &bob, &old).await;
    let bob_b = key_login(&b, &bob.id, &old).await;
    let carol = b.register("carol").await;
    let guild = carol.create_guild("on b").await;
    join_remote(&bob, &b, &carol.invite(&guild.general).await).await;
    // The key leaks: bob revokes it and binds a new one.
    assert_eq!(bob.delete_with("/users/@me/identity", revoke_body()).await.0, StatusCode::OK);
    // The leaked key cannot be bound to bob again (by him, or by whoever holds his session).
    let again = challenge(&a, &bob.id).await;
    let body = json!({
        "identity_key": old.public_base64url(),
        "challenge": again.as_str(),
        "signature": proof(&old, &a.name(), &bob.id, &again),
        "binding": binding(&old, &bob.id),
    });
    let refused = bob.put("/users/@me/identity", body).await;
    assert_error(&refused, StatusCode::CONFLICT, "key_used_before");
    let new = IdentityKeyPair::from_phrase(&RecoveryPhrase::generate(), 0);
    bind_identity(&a, &bob, &new).await;

    // The thief binds the leaked key to an account of his own and logs in to B with it: he gets
    // an account of his own there, not bob's.
    let thief = a.register("thief").await;
    bind_identity(&a, &thief, &old).await;
    let thief_b = key_login(&b, &thief.id, &old).await;
    assert_ne!(thief_b.id, bob_b.id);
    let (_, me) = thief_b.get("/users/@me").await;
    assert_eq!(me["is_admin"], false, "an account made by key login is no administrator");
    // Nor can he move bob's account: B holds bob's newer attestation, which no longer names it.
    let stolen = guildhall_identity::moves::AccountMove {
        from: UserId::parse(&bob.id).expect("user id"),
        to: UserId::parse(&thief_b.id).expect("user id"),
        identity_key: old.public_base64url(),
        ts: now_ms(),
    }
    .sign(&old)
    .expect("sign");
    let (status, body) = thief_b.post("/users/@me/identity/move", json!({"move": stolen})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a move by a key given up: {body}");
    assert!(carol.member_ids(&guild.id).await.contains(&bob.id), "bob is still a member");

    // Bob logs in to B with his new key: his own account, now attested with it.
    assert_eq!(key_login(&b, &bob.id, &new).await.id, bob_b.id);
    let (_, profile) = carol.get(&format!("/users/{}", bob_b.id)).await;
    assert_eq!(profile["identity_key"].as_str(), Some(&*new.public_base64url()));
}

#[tokio::test]
async fn concurrent_first_key_logins_make_one_account() {
    let (a, b) = (federating().await, federating().await);
    let key = IdentityKeyPair::from_phrase(&RecoveryPhrase::generate(), 0);
    let bob = a.register("bob").await;
    bind_identity(&a, &bob, &key).await;
    let attempts = (0..8).map(|i| {
        let (b, bob_id, key) = (&b, bob.id.clone(), key.clone());
        async move {
            let challenge = challenge(b, &bob_id).await;
            let signature = proof(&key, &b.name(), &bob_id, &challenge);
            let localpart = format!("bob{i}");
            let body =
                json!({"localpart": localpart, "binding": binding(&key, &b.user_id(&localpart))});
            prove(b, &bob_id, &challenge, &signature, body).await
        }
    });
    let answers = futures_util::future::join_all(attempts).await;
    let mut accounts: Vec<&str> =
        answers.iter().filter_map(|(_, body)| body["user_id"].as_str()).collect();
    accounts.dedup();
    let statuses: Vec<StatusCode> = answers.iter().map(|(status, _)| *status).collect();
    assert!(statuses.iter().all(|s| *s == StatusCode::OK), "every login succeeds: {statuses:?}");
    let distinct: std::collections::BTreeSet<&str> = accounts.into_iter().collect();
    assert_eq!(distinct.len(), 1, "one account for one user: {distinct:?}");
}

#[tokio::test]
async fn challenges_are_bounded_and_denied_servers_users_cannot_log_in() {
    let a = federating().await;
    let b =
        federating_builder().env("GUILDHALL_RATE_LIMITS__CHALLENGES_PER_MINUTE", "5").start().await;
    let key = IdentityKeyPair::from_phrase(&RecoveryPhrase::generate(), 0);
    let eve = a.register("eve").await;
    bind_identity(&a, &eve, &key).await;
    let anonymous = b.client();
    let mut statuses = Vec::new();
    for _ in 0..8 {
        let body = json!({"user_id": eve.id});
        statuses.push(anonymous.post_at("/_guildhall/v1/identity/challenge", body).await.0);
    }
    assert!(statuses.contains(&StatusCode::TOO_MANY_REQUESTS), "{statuses:?}");

    let c = federating().await;
    let admin = c.register("admin").await;
    let deny = json!({"action": "deny"});
    let (status, _) = admin.put(&format!("/admin/trust/entries/{}", a.name()), deny).await;
    assert_eq!(status, StatusCode::OK);
    let challenge = challenge(&c, &eve.id).await;
    let signature = proof(&key, &c.name(), &eve.id, &challenge);
    let consent = json!({"binding": binding(&key, &c.user_id("eve"))});
    let refused = prove(&c, &eve.id, &challenge, &signature, consent).await;
    assert_error(&refused, StatusCode::FORBIDDEN, "server_denied");
}
