//! Store cases: device keys, one-time keys, to-device inboxes, send answers and watchers.

use guildhall_homeserver::store::{
    InboxLimits, InboxShare, KeysRefused, NewInboxItem, Reservation, ShareOutcome, Store,
};
use guildhall_spec::UserId;
use serde_json::{Value, json};

use crate::engines::on_both_engines;

fn user(name: &str) -> UserId {
    UserId::parse(&format!("@{name}:example.org")).unwrap()
}

/// Registers `device` of `name` (creating the account), on a login of its own, with the
/// Ed25519 key `key`.
async fn device(store: &Store, name: &str, device: &str, key: &str) -> UserId {
    let id = user(name);
    if store.user(&id).await.unwrap().is_none() {
        store.create_user(&id, "hash").await.unwrap().unwrap();
    }
    let login = format!("{name}-{device}");
    store.create_session(&id, &login, login.as_bytes(), None, None).await.unwrap();
    let certificate = json!({ "device_keys": { "ed25519": key } });
    let certificate = certificate.as_object().unwrap();
    assert!(store.put_device(&id, device, &login, certificate, 10).await.unwrap());
    id
}

fn keys(ids: &[&str]) -> Vec<(String, Value)> {
    ids.iter().map(|id| ((*id).to_owned(), json!({ "key": format!("otk-{id}") }))).collect()
}

fn message(device_id: &str, sender: &UserId, message_id: &str) -> NewInboxItem {
    NewInboxItem {
        device_id: device_id.to_owned(),
        sender: sender.clone(),
        sender_device: "SENDER".to_owned(),
        message_id: message_id.to_owned(),
        message_type: "olm.v1".to_owned(),
        content: json!({ "ciphertext": message_id }),
    }
}

const ROOMY: InboxLimits = InboxLimits { per_device: 100, per_sender: 100 };

on_both_engines! {
    async fn uploads_are_checked_against_the_device_key_and_stored_all_or_none(store: Store) {
        let alice = device(&store, "alice", "D1", "K1").await;
        let fallback = json!({ "key": "fallback" });
        let refused =
            store.put_device_keys(&alice, "D1", "OTHER", &keys(&["a"]), None, 10).await.unwrap();
        assert_eq!(refused, Err(KeysRefused::Rekeyed));
        let refused =
            store.put_device_keys(&alice, "NONE", "K1", &keys(&["a"]), None, 10).await.unwrap();
        assert_eq!(refused, Err(KeysRefused::Rekeyed), "no such device");
        assert_eq!(store.key_counts(&alice, "D1").await.unwrap(), (0, false));

        let (first, more) = (keys(&["a", "b"]), keys(&["c", "d"]));
        let stored = store.put_device_keys(&alice, "D1", "K1", &first, Some(&fallback), 3).await;
        assert_eq!(stored.unwrap(), Ok((2, true)));
        // A retried upload is accepted and stores nothing twice.
        let again =
            store.put_device_keys(&alice, "D1", "K1", &keys(&["a", "b"]), None, 3).await.unwrap();
        assert_eq!(again, Ok((2, true)));

        let mut conflicting = keys(&["c"]);
        conflicting.push(("a".to_owned(), json!({ "key": "something else" })));
        let refused =
            store.put_device_keys(&alice, "D1", "K1", &conflicting, None, 10).await.unwrap();
        assert_eq!(refused, Err(KeysRefused::Conflict("a".to_owned())));
        assert_eq!(store.key_counts(&alice, "D1").await.unwrap(), (2, true), "c was not kept");

        let other_fallback = json!({ "key": "fallback 2" });
        let refused =
            store.put_device_keys(&alice, "D1", "K1", &more, Some(&other_fallback), 3).await;
        assert_eq!(refused.unwrap(), Err(KeysRefused::TooMany));
        assert_eq!(store.key_counts(&alice, "D1").await.unwrap(), (2, true));
        let mut claimed = Vec::new();
        for _ in 0..3 {
            claimed.push(store.claim_key(&alice, "D1").await.unwrap().unwrap().key_object);
        }
        assert_eq!(claimed[2], fallback, "the fallback key was not replaced: {claimed:?}");
    }
}

on_both_engines! {
    async fn claims_hand_out_each_key_once_then_the_fallback(store: Store) {
        let alice = device(&store, "alice", "D1", "K1").await;
        let fallback = json!({ "key": "fallback" });
        store
            .put_device_keys(&alice, "D1", "K1", &keys(&["c", "a", "b"]), Some(&fallback), 10)
            .await
            .unwrap()
            .unwrap();
        let mut handed = Vec::new();
        for remaining in [2, 1, 0] {
            let claim = store.claim_key(&alice, "D1").await.unwrap().unwrap();
            assert_eq!((claim.remaining, claim.fallback), (remaining, false));
            handed.push(claim.key_object);
        }
        assert_eq!(
            handed,
            [json!({ "key": "otk-a" }), json!({ "key": "otk-b" }), json!({ "key": "otk-c" })],
            "by key id"
        );
        for _ in 0..2 {
            let claim = store.claim_key(&alice, "D1").await.unwrap().unwrap();
            assert_eq!(
                (claim.key_object, claim.remaining, claim.fallback),
                (fallback.clone(), 0, true)
            );
        }
        // A retried upload of claimed keys does not bring them back.
        let retried = store
            .put_device_keys(&alice, "D1", "K1", &keys(&["a", "b", "d"]), None, 10)
            .await
            .unwrap();
        assert_eq!(retried, Ok((1, true)));

        device(&store, "bob", "B1", "KB").await;
        assert!(store.claim_key(&user("bob"), "B1").await.unwrap().is_none(), "no keys at all");
        assert!(store.claim_key(&alice, "NONE").await.unwrap().is_none());
    }
}

on_both_engines! {
    async fn concurrent_claims_never_share_a_key(store: Store) {
        let alice = device(&store, "alice", "D1", "K1").await;
        let ids: Vec<String> = (0..6).map(|n| format!("k{n}")).collect();
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        let fallback = json!({ "key": "fallback" });
        store
            .put_device_keys(&alice, "D1", "K1", &keys(&ids), Some(&fallback), 10)
            .await
            .unwrap()
            .unwrap();
        let claims =
            futures_util::future::join_all((0..10).map(|_| store.claim_key(&alice, "D1"))).await;
        let claims: Vec<_> = claims.into_iter().map(|claim| claim.unwrap().unwrap()).collect();
        let mut one_time: Vec<String> =
            claims.iter().filter(|c| !c.fallback).map(|c| c.key_object.to_string()).collect();
        one_time.sort();
        one_time.dedup();
        assert_eq!(one_time.len(), 6, "every key once: {one_time:?}");
        assert_eq!(claims.iter().filter(|c| c.fallback).count(), 4);
    }
}

on_both_engines! {
    async fn certifying_other_keys_starts_the_device_over(store: Store) {
        let alice = device(&store, "alice", "D1", "K1").await;
        let fallback = json!({ "key": "fallback" });
        store
            .put_device_keys(&alice, "D1", "K1", &keys(&["a", "b"]), Some(&fallback), 10)
            .await
            .unwrap()
            .unwrap();
        store.claim_key(&alice, "D1").await.unwrap().unwrap();
        let same = json!({ "device_keys": { "ed25519": "K1" }, "again": true });
        assert!(
            store
                .put_device(&alice, "D1", "alice-D1", same.as_object().unwrap(), 10)
                .await
                .unwrap()
        );
        assert_eq!(store.key_counts(&alice, "D1").await.unwrap(), (1, true), "same keys: kept");
        let other = json!({ "device_keys": { "ed25519": "K2" } });
        assert!(
            store
                .put_device(&alice, "D1", "alice-D1", other.as_object().unwrap(), 10)
                .await
                .unwrap()
        );
        assert_eq!(store.key_counts(&alice, "D1").await.unwrap(), (0, false));
        // Claimed ids are forgotten too: the new keys may reuse them.
        let fresh =
            store.put_device_keys(&alice, "D1", "K2", &keys(&["a"]), None, 10).await.unwrap();
        assert_eq!(fresh, Ok((1, false)));
    }
}

on_both_engines! {
    async fn shares_are_delivered_once_within_the_limits_of_unchanged_devices(store: Store) {
        let bob = device(&store, "bob", "B1", "KB1").await;
        device(&store, "bob", "B2", "KB2").await;
        let (alice, carol) = (user("alice"), user("carol"));
        let fingerprint = store.device_fingerprint(&bob).await.unwrap();
        assert_eq!(fingerprint, store.device_fingerprint(&bob).await.unwrap(), "stable");
        let share =
            |items| InboxShare { user_id: bob.clone(), fingerprint: fingerprint.clone(), items };

        let outcomes = store
            .deliver_shares(
                &[share(vec![message("B1", &alice, "m1"), message("B2", &alice, "m1")])],
                ROOMY,
            )
            .await
            .unwrap();
        let [ShareOutcome::Delivered(stored)] = &outcomes[..] else { panic!("{outcomes:?}") };
        let logins: Vec<&str> = stored.iter().map(|(login, _)| login.as_str()).collect();
        assert_eq!(logins, ["bob-B1", "bob-B2"]);
        assert_eq!(stored[0].1.content, json!({ "ciphertext": "m1" }));
        assert!(stored[0].1.id < stored[1].1.id);

        // A repeat is kept as it was and not listed again.
        let outcomes = store
            .deliver_shares(
                &[share(vec![message("B1", &alice, "m1"), message("B1", &alice, "m2")])],
                ROOMY,
            )
            .await
            .unwrap();
        let [ShareOutcome::Delivered(stored)] = &outcomes[..] else { panic!("{outcomes:?}") };
        let ids: Vec<&str> = stored.iter().map(|(_, item)| item.message_id.as_str()).collect();
        assert_eq!(ids, ["m2"]);

        // B1 holds 2 messages, both from alice.
        let per_sender = InboxLimits { per_device: 10, per_sender: 2 };
        let outcomes = store
            .deliver_shares(
                &[
                    share(vec![message("B1", &alice, "m3")]),
                    share(vec![message("B1", &carol, "c1")]),
                ],
                per_sender,
            )
            .await
            .unwrap();
        assert!(matches!(outcomes[0], ShareOutcome::InboxFull), "{outcomes:?}");
        assert!(
            matches!(&outcomes[1], ShareOutcome::Delivered(stored) if stored.len() == 1),
            "{outcomes:?}"
        );
        let per_device = InboxLimits { per_device: 3, per_sender: 10 };
        let both = [share(vec![message("B2", &carol, "c2"), message("B1", &carol, "c3")])];
        let outcomes = store.deliver_shares(&both, per_device).await.unwrap();
        assert!(matches!(outcomes[0], ShareOutcome::InboxFull), "all or none: {outcomes:?}");

        // Another device changes the fingerprint.
        device(&store, "bob", "B3", "KB3").await;
        let outcomes =
            store.deliver_shares(&[share(vec![message("B1", &carol, "c4")])], ROOMY).await.unwrap();
        assert!(matches!(outcomes[0], ShareOutcome::Stale), "{outcomes:?}");

        let (page, more) = store.inbox(&bob, "B1", 2).await.unwrap();
        let ids: Vec<&str> = page.iter().map(|item| item.message_id.as_str()).collect();
        assert_eq!((ids, more), (vec!["m1", "m2"], true), "oldest first");
        assert_eq!(page[0].sender, "@alice:example.org");
        assert_eq!(
            (page[0].sender_device.as_str(), page[0].message_type.as_str()),
            ("SENDER", "olm.v1")
        );
        assert!(page[0].received_ts > 0);
        assert_eq!(store.ack_inbox(&bob, "B1", page[1].id).await.unwrap(), 2);
        assert_eq!(store.ack_inbox(&bob, "B1", page[1].id).await.unwrap(), 0);
        let (page, more) = store.inbox(&bob, "B1", 2).await.unwrap();
        let ids: Vec<&str> = page.iter().map(|item| item.message_id.as_str()).collect();
        assert_eq!((ids, more), (vec!["c1"], false));
        assert_eq!(store.inbox(&bob, "B2", 10).await.unwrap().0.len(), 1, "B2 untouched");
    }
}

on_both_engines! {
    async fn concurrent_shares_never_overfill_an_inbox(store: Store) {
        let bob = device(&store, "bob", "B1", "KB1").await;
        let fingerprint = store.device_fingerprint(&bob).await.unwrap();
        let alice = user("alice");
        let shares: Vec<InboxShare> = (0..8)
            .map(|n| InboxShare {
                user_id: bob.clone(),
                fingerprint: fingerprint.clone(),
                items: vec![message("B1", &alice, &format!("m{n}"))],
            })
            .collect();
        let limits = InboxLimits { per_device: 3, per_sender: 3 };
        let outcomes = futures_util::future::join_all(
            shares.chunks(1).map(|share| store.deliver_shares(share, limits)),
        )
        .await;
        let delivered = outcomes
            .into_iter()
            .filter(|outcome| matches!(outcome.as_ref().unwrap()[..], [ShareOutcome::Delivered(_)]))
            .count();
        assert_eq!(delivered, 3);
        assert_eq!(store.inbox(&bob, "B1", 10).await.unwrap().0.len(), 3);
    }
}

on_both_engines! {
    async fn a_send_id_is_reserved_answered_and_released(store: Store) {
        assert!(matches!(store.reserve_txn("alice", "t1", "h1").await.unwrap(), Reservation::New));
        assert!(matches!(
            store.reserve_txn("alice", "t1", "h1").await.unwrap(),
            Reservation::InProgress
        ));
        assert!(matches!(
            store.reserve_txn("alice", "t1", "h2").await.unwrap(),
            Reservation::Conflict
        ));
        assert!(
            matches!(store.reserve_txn("bob", "t1", "h2").await.unwrap(), Reservation::New),
            "per scope"
        );

        store.complete_txn("alice", "t1", &json!({ "sent": 1 })).await.unwrap();
        store.complete_txn("alice", "t1", &json!({ "sent": 2 })).await.unwrap();
        store.release_txn("alice", "t1").await.unwrap();
        match store.reserve_txn("alice", "t1", "h1").await.unwrap() {
            Reservation::Answered(answer) => {
                assert_eq!(answer, json!({ "sent": 1 }), "the first answer stays")
            }
            other => panic!("expected the answer, got {other:?}"),
        }

        store.release_txn("bob", "t1").await.unwrap();
        assert!(
            matches!(store.reserve_txn("bob", "t1", "h3").await.unwrap(), Reservation::New),
            "free again"
        );

        let tries =
            futures_util::future::join_all((0..8).map(|_| store.reserve_txn("carol", "t", "h")))
                .await;
        let new = tries.iter().filter(|r| matches!(r.as_ref().unwrap(), Reservation::New)).count();
        assert_eq!(new, 1, "{tries:?}");
    }
}

on_both_engines! {
    async fn device_list_hashes_and_watchers(store: Store) {
        let (alice, bob) = (user("alice"), user("bob"));
        assert!(store.swap_device_list_hash(&alice, "h1").await.unwrap());
        assert!(!store.swap_device_list_hash(&alice, "h1").await.unwrap());
        assert!(store.swap_device_list_hash(&alice, "h2").await.unwrap());
        assert!(store.swap_device_list_hash(&bob, "h2").await.unwrap(), "per user");

        store.watch_device_lists(&[], "one.example").await.unwrap();
        store.watch_device_lists(&[alice.clone(), bob.clone()], "one.example").await.unwrap();
        store.watch_device_lists(std::slice::from_ref(&alice), "two.example").await.unwrap();
        store.watch_device_lists(std::slice::from_ref(&alice), "two.example").await.unwrap();
        let mut watchers = store.device_list_watchers(&alice).await.unwrap();
        watchers.sort();
        assert_eq!(watchers, ["one.example", "two.example"]);
        assert_eq!(store.device_list_watchers(&bob).await.unwrap(), ["one.example"]);
        assert!(store.device_list_watchers(&user("carol")).await.unwrap().is_empty());
    }
}
