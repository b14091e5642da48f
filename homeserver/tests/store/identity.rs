//! Store cases: attestations, rotations, linked accounts, challenges, moves and devices.

use guildhall_homeserver::store::Store;
use guildhall_spec::UserId;
use serde_json::{Map, Value, json};

use crate::engines::on_both_engines;

fn user(name: &str) -> UserId {
    UserId::parse(&format!("@{name}:example.org")).unwrap()
}

fn object(value: Value) -> Map<String, Value> {
    value.as_object().unwrap().clone()
}

/// A certificate for the device keys `key`.
fn certificate(key: &str, issued: u64) -> Map<String, Value> {
    object(json!({ "device_keys": { "ed25519": key }, "issued": issued }))
}

/// An account with one login, `session`.
async fn account_with_login(store: &Store, name: &str, session: &str) -> UserId {
    let id = user(name);
    if store.user(&id).await.unwrap().is_none() {
        store.create_user(&id, "hash").await.unwrap().unwrap();
    }
    store.create_session(&id, session, session.as_bytes(), None, None).await.unwrap();
    id
}

on_both_engines! {
    async fn only_a_newer_attestation_becomes_current(store: Store) {
        let (alice, bob, carol) = (user("alice"), user("bob"), user("carol"));
        let issued_10 = object(json!({ "key": "A1", "ts": 10 }));
        assert!(store.put_attestation(&alice, Some("A1"), 10, &issued_10).await.unwrap());
        let stored = store.attestation(&alice).await.unwrap().unwrap();
        assert_eq!((stored.identity_key.as_deref(), stored.issued_ts), (Some("A1"), 10));
        assert_eq!(stored.attestation, issued_10);
        assert_eq!(stored.user_id, alice);

        let older = object(json!({ "key": "A0", "ts": 5 }));
        assert!(!store.put_attestation(&alice, Some("A0"), 5, &older).await.unwrap());
        assert!(!store.put_attestation(&alice, Some("A1"), 10, &issued_10).await.unwrap(), "same");
        let stored = store.attestation(&alice).await.unwrap().unwrap();
        assert_eq!(stored.identity_key.as_deref(), Some("A1"), "the older one was not taken");
        assert!(stored.checked_ts > 0);

        let newer = object(json!({ "key": "A2", "ts": 20 }));
        assert!(store.put_attestation(&alice, Some("A2"), 20, &newer).await.unwrap());
        assert!(store.put_attestation(&bob, Some("B1"), 10, &object(json!({}))).await.unwrap());
        // Carol's binding is revoked: known, but no key.
        assert!(store.put_attestation(&carol, None, 10, &object(json!({}))).await.unwrap());
        let keys = store.identity_keys(&[&alice, &bob, &carol, &user("nobody")]).await.unwrap();
        assert_eq!(keys.len(), 2, "{keys:?}");
        assert_eq!(keys[&alice], "A2");
        assert_eq!(keys[&bob], "B1");
        assert!(store.identity_keys(&[]).await.unwrap().is_empty());
        assert!(store.attestation(&user("nobody")).await.unwrap().is_none());
    }
}

on_both_engines! {
    async fn attested_keys_are_remembered_for_good(store: Store) {
        let alice = user("alice");
        assert!(!store.was_attested(&alice, "A1").await.unwrap());
        store.remember_attested_key(&alice, "A1").await.unwrap();
        store.remember_attested_key(&alice, "A1").await.unwrap();
        assert!(store.was_attested(&alice, "A1").await.unwrap());
        assert!(!store.was_attested(&alice, "A2").await.unwrap());
        assert!(!store.was_attested(&user("bob"), "A1").await.unwrap(), "per user");
    }
}

on_both_engines! {
    async fn linked_accounts_are_never_admin_and_go_with_their_link(store: Store) {
        let account = user("remote_alice");
        let remote = UserId::parse("@alice:elsewhere.example").unwrap();
        let row = store.create_linked_account(&account, &remote).await.unwrap().unwrap();
        assert!(!row.is_admin, "not even the first account");
        assert_eq!(row.password_hash, "");
        assert_eq!(store.linked_account(&remote).await.unwrap(), Some(account.clone()));
        let other = UserId::parse("@bob:elsewhere.example").unwrap();
        assert!(
            store.create_linked_account(&account, &other).await.unwrap().is_none(),
            "name taken"
        );
        assert_eq!(store.linked_account(&other).await.unwrap(), None, "nothing was linked");
        assert!(
            store.create_linked_account(&user("second"), &remote).await.is_err(),
            "a remote user has one account here"
        );
        assert!(store.user(&user("second")).await.unwrap().is_none(), "rolled back");

        store.delete_linked_account(&account).await.unwrap();
        assert!(store.user(&account).await.unwrap().is_none());
        assert_eq!(store.linked_account(&remote).await.unwrap(), None);
        store.delete_linked_account(&account).await.unwrap();
    }
}

on_both_engines! {
    async fn rotations_are_kept_once_per_time_oldest_first(store: Store) {
        let alice = user("alice");
        store.put_rotation(&alice, 20, &object(json!({ "n": 2 }))).await.unwrap();
        store.put_rotation(&alice, 10, &object(json!({ "n": 1 }))).await.unwrap();
        store.put_rotation(&alice, 20, &object(json!({ "n": 3 }))).await.unwrap();
        store.put_rotation(&user("bob"), 5, &object(json!({ "n": 0 }))).await.unwrap();
        let rotations = store.rotations(&alice).await.unwrap();
        assert_eq!(rotations, [json!({ "n": 1 }), json!({ "n": 2 })]);
    }
}

on_both_engines! {
    async fn a_challenge_is_used_once_until_it_expires(store: Store) {
        let later = guildhall_homeserver::store::now_ms() + 60_000;
        assert!(store.use_challenge("c1", later).await.unwrap());
        assert!(!store.use_challenge("c1", later).await.unwrap(), "replayed");
        assert!(store.use_challenge("c2", later).await.unwrap());
        // An expired one is forgotten (its expiry refuses it anyway).
        assert!(store.use_challenge("old", 1).await.unwrap());
        assert!(store.use_challenge("old", 1).await.unwrap());
        let tries =
            futures_util::future::join_all((0..8).map(|_| store.use_challenge("c3", later))).await;
        assert_eq!(tries.into_iter().filter(|used| *used.as_ref().unwrap()).count(), 1);
    }
}

on_both_engines! {
    async fn only_a_later_move_replaces_the_one_known(store: Store) {
        let (old, first, second) = (user("old"), user("first"), user("second"));
        assert_eq!(store.moved_to(&old).await.unwrap(), None);
        assert!(store.put_move(&old, &first, 10, &object(json!({ "to": "first" }))).await.unwrap());
        assert!(!store.put_move(&old, &second, 5, &object(json!({}))).await.unwrap());
        assert!(!store.put_move(&old, &second, 10, &object(json!({}))).await.unwrap());
        assert_eq!(store.moved_to(&old).await.unwrap(), Some(first));
        assert!(store.put_move(&old, &second, 11, &object(json!({}))).await.unwrap());
        assert_eq!(store.moved_to(&old).await.unwrap(), Some(second));
    }
}

on_both_engines! {
    async fn a_login_has_one_device_and_a_device_one_login(store: Store) {
        let alice = account_with_login(&store, "alice", "s1").await;
        account_with_login(&store, "alice", "s2").await;
        account_with_login(&store, "alice", "s3").await;
        assert!(store.put_device(&alice, "D1", "s1", &certificate("K1", 1), 2).await.unwrap());
        assert!(
            !store.put_device(&alice, "D1", "s2", &certificate("K9", 1), 2).await.unwrap(),
            "s1's"
        );
        assert_eq!(store.device_session(&alice, "D1").await.unwrap().as_deref(), Some("s1"));
        // Certified again by its login: kept, with the new certificate.
        assert!(store.put_device(&alice, "D1", "s1", &certificate("K1", 2), 2).await.unwrap());
        assert!(store.put_device(&alice, "D2", "s2", &certificate("K2", 1), 2).await.unwrap());
        assert!(
            !store.put_device(&alice, "D3", "s3", &certificate("K3", 1), 2).await.unwrap(),
            "limit"
        );
        assert_eq!(store.device_session(&alice, "D3").await.unwrap(), None);
        // A login's new device replaces its old one, which makes room at the limit.
        assert!(store.put_device(&alice, "D0", "s1", &certificate("K0", 1), 2).await.unwrap());
        let devices = store.devices(&alice).await.unwrap();
        let listed: Vec<(&str, &str)> =
            devices.iter().map(|d| (d.device_id.as_str(), d.session_id.as_str())).collect();
        assert_eq!(listed, [("D0", "s1"), ("D2", "s2")], "by device id");
        assert_eq!(devices[0].certificate, certificate("K0", 1));
        assert!(devices[0].updated_ts > 0);
        assert_eq!(store.device_session(&alice, "D1").await.unwrap(), None);

        // The login's end takes its device along.
        assert!(store.delete_session(&alice, "s2").await.unwrap());
        assert_eq!(store.device_session(&alice, "D2").await.unwrap(), None);
        assert!(store.devices(&user("bob")).await.unwrap().is_empty());
    }
}
