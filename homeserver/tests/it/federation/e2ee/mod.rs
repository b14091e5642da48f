//! End-to-end encrypted DMs between real servers, through the client library (spec 17): people
//! on two servers write to each other with vodozemac Olm sessions, devices added later (even in
//! the middle of a send) get what is sent after, a group DM spans both servers, a tampered
//! ciphertext is dropped, a lost session recovers with `dm.reset`, and no server ever holds the
//! text. Identity keys are pinned (a change is held until accepted, a server hiding the sending
//! device gets nothing), one recipient's limit fails only that recipient, and a message whose
//! sender cannot be checked for now, or that could not be saved, is read again later. The
//! protocol details servers check (claims, limits, refusals) are in `e2e_keys.rs`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use guildhall_client::e2e::{
    DecryptError, Device, E2eError, InboxItem, Incoming, ResetOutcome, SendReport, ShareFailure,
    StoreError,
};
use guildhall_client::{Client, GatewayEvent, Identity, ServerName, Session, UserId};
use guildhall_identity::attestation::sign_binding;
use guildhall_identity::rotation::IdentityRotation;
use guildhall_spec::base64url;
use tokio::sync::{Mutex, oneshot};

use super::*;
use crate::harness::{PASSWORD, json};

mod support;
use support::*;

/// The hash of an empty device list (spec 17.2).
const EMPTY_LIST_HASH: &str = "T1PNoYwrqgwDVLtfmj7L5e0Sq02OEbqHPC8RFhICuUU";

/// How long a message may take to arrive on a busy machine.
const ARRIVAL: Duration = Duration::from_secs(60);

#[tokio::test]
async fn two_people_on_two_servers_write_both_ways_and_no_server_holds_the_text() {
    let (a, b) = tokio::join!(
        federating_builder().sqlite().recorded().start(),
        federating_builder().sqlite().recorded().start()
    );
    let scratch = Scratch::new();
    let mut alice = Person::new(&a, "alice", &scratch).await;
    let mut bob = Person::new(&b, "bob", &scratch).await;
    let texts: Vec<String> = (1..=4).map(|n| secret(&format!("message {n}"))).collect();

    let report = alice.send("lunch", &[&bob], &texts[0]).await;
    assert_delivered(&report, &[&bob]);
    // A ciphertext as bob's server holds it: the search below must find it where it went.
    let raw = b.client().with_token(bob.session.token());
    let (status, inbox) = raw.get("/users/@me/to_device").await;
    assert_eq!(status, StatusCode::OK, "{inbox}");
    let ciphertexts = inbox["messages"][0]["content"]["ciphertext"].as_object().expect("one");
    let body = ciphertexts.values().next().and_then(|c| c["body"].as_str()).expect("a body");
    let ciphertext = base64url::decode(body).expect("base64url");
    let received = bob.receive_until(|all| bodies(all).contains(&texts[0])).await;
    let Some(Incoming::Message(first)) = received.first() else {
        panic!("bob expected alice's message, got {received:?}")
    };
    assert_eq!((&first.sender, first.conversation.as_str()), (alice.id(), "lunch"));
    assert_eq!(first.members, sorted(&[alice.id(), bob.id()]));

    // Alice reads bob's answer live from the gateway; the inbox read after it does not repeat it.
    let mut gateway = alice.session.gateway().await.expect("alice's gateway");
    let report = bob.send("lunch", &[&alice], &texts[1]).await;
    assert_delivered(&report, &[&alice]);
    let live = tokio::time::timeout(ARRIVAL, async {
        loop {
            let event = gateway.next().await.expect("the gateway is open").expect("an event");
            if matches!(event, GatewayEvent::ToDevice(_)) {
                return alice.device.handle(&alice.session, &event).await.expect("handle");
            }
        }
    })
    .await
    .expect("TO_DEVICE within the deadline");
    assert_eq!(bodies(&live), [texts[1].clone()], "{live:?}");
    // Handling the dispatch acknowledged it: the inbox is empty, and a read finds nothing.
    assert_eq!(inbox_len(&a, &alice).await, 0, "acknowledged by handle");
    let again = alice.device.receive(&alice.session).await.expect("read the inbox");
    assert!(again.is_empty(), "a dispatched message is not read twice: {again:?}");

    // Established sessions: normal messages now, both ways.
    assert_delivered(&alice.send("lunch", &[&bob], &texts[2]).await, &[&bob]);
    assert_eq!(bodies(&bob.receive_until(|all| !all.is_empty()).await), [texts[2].clone()]);
    assert_delivered(&bob.send("lunch", &[&alice], &texts[3]).await, &[&alice]);
    assert_eq!(bodies(&alice.receive_until(|all| !all.is_empty()).await), [texts[3].clone()]);
    let history = |person: &Person| -> Vec<String> {
        let conversation = person.device.conversation("lunch").expect("the conversation");
        conversation.messages.iter().map(|message| message.body.clone()).collect()
    };
    assert_eq!(history(&alice), texts);
    assert_eq!(history(&bob), texts);

    // Neither database (nor its WAL, its log, nor anything else in the data directories) holds
    // a text, in any encoding a server might use; the same search finds what the servers do
    // store, such as the device ids.
    for (server, device) in [(&a, &alice), (&b, &bob)] {
        let stored = files_under(server.dir());
        for suffix in ["-wal", "server.log"] {
            let found = stored.iter().any(|(path, _)| path.to_string_lossy().ends_with(suffix));
            assert!(found, "no {suffix} under {:?}", server.dir());
        }
        let marker = device.device.device_id().as_str().as_bytes();
        assert!(stored.iter().any(|(_, bytes)| contains(bytes, marker)), "the search works");
        for text in &texts {
            let holders: Vec<&PathBuf> = stored
                .iter()
                .filter(|(_, bytes)| holds_any(bytes, text.as_bytes()))
                .map(|(p, _)| p)
                .collect();
            assert!(holders.is_empty(), "{text:?} found in {holders:?}");
        }
    }
    // Nor did it cross between the servers, where the ciphertexts did (found by the same
    // search).
    let traffic = [a.federation_traffic(), b.federation_traffic()].concat();
    assert!(holds_any(&traffic, &ciphertext), "the ciphertext crossed the recording proxies");
    for text in &texts {
        assert!(!holds_any(&traffic, text.as_bytes()), "{text:?} crossed between the servers");
    }
}

/// Whether `haystack` holds `secret` raw, in base64 or base64url (at any of the three
/// alignments it may have inside a longer encoded value), with every character escaped as
/// JSON `\uXXXX`, or in UTF-16LE.
fn holds_any(haystack: &[u8], secret: &[u8]) -> bool {
    encodings(secret).iter().any(|needle| contains(haystack, needle))
}

fn encodings(secret: &[u8]) -> Vec<Vec<u8>> {
    let mut found = vec![secret.to_vec()];
    for shift in 0..3 {
        let mut shifted = vec![0; shift];
        shifted.extend_from_slice(secret);
        let url = base64url::encode(&shifted);
        // The characters that depend only on the secret: not the first ones, which carry the
        // shift's bytes, nor the last ones, which depend on what follows.
        let inner = &url[(shift * 4).div_ceil(3)..url.len().saturating_sub(3)];
        found.push(inner.as_bytes().to_vec());
        found.push(inner.replace('-', "+").replace('_', "/").into_bytes());
    }
    if let Ok(text) = std::str::from_utf8(secret) {
        let escaped: String = text.encode_utf16().map(|c| format!("\\u{c:04x}")).collect();
        found.push(escaped.clone().into_bytes());
        found.push(escaped.to_uppercase().replace("\\U", "\\u").into_bytes());
        found.push(text.encode_utf16().flat_map(u16::to_le_bytes).collect());
    }
    found
}

/// The number of items in `person`'s inbox on `server`, through the client API.
async fn inbox_len(server: &Server, person: &Person) -> usize {
    let raw = server.client().with_token(person.session.token());
    let (status, inbox) = raw.get("/users/@me/to_device").await;
    assert_eq!(status, StatusCode::OK, "{inbox}");
    inbox["messages"].as_array().map_or(0, Vec::len)
}

#[tokio::test]
async fn a_device_added_later_gets_what_is_sent_after_and_copies_of_its_own_users_messages() {
    let (a, b) = tokio::join!(federating(), federating());
    let scratch = Scratch::new();
    let mut alice = Person::new(&a, "alice", &scratch).await;
    let mut bob = Person::new(&b, "bob", &scratch).await;
    assert_delivered(&alice.send("c", &[&bob], "before the phone").await, &[&bob]);
    assert_eq!(bodies(&bob.receive_until(|all| !all.is_empty()).await), ["before the phone"]);

    let mut phone = bob.second_device(&b, &scratch).await;
    assert_delivered(&alice.send("c", &[&bob], "after the phone").await, &[&bob]);
    assert_eq!(bodies(&bob.receive_until(|all| !all.is_empty()).await), ["after the phone"]);
    assert_eq!(
        bodies(&phone.receive_until(|all| !all.is_empty()).await),
        ["after the phone"],
        "the new device reads from when it appeared"
    );

    // Whatever one of bob's devices sends, the other gets too.
    let report = bob.send("c", &[&alice], "from the laptop").await;
    assert_delivered(&report, &[&alice, &bob]);
    assert_eq!(bodies(&alice.receive_until(|all| !all.is_empty()).await), ["from the laptop"]);
    let copy = phone.receive_until(|all| !all.is_empty()).await;
    let Some(Incoming::Message(copy)) = copy.first() else { panic!("no copy: {copy:?}") };
    assert_eq!((copy.body.as_str(), &copy.sender), ("from the laptop", bob.id()));
    assert_eq!(copy.sender_device, *bob.device.device_id());

    assert_delivered(&phone.send("c", &[&alice], "from the phone").await, &[&alice, &bob]);
    assert_eq!(bodies(&alice.receive_until(|all| !all.is_empty()).await), ["from the phone"]);
    assert_eq!(bodies(&bob.receive_until(|all| !all.is_empty()).await), ["from the phone"]);
}

#[tokio::test]
async fn a_group_dm_of_three_spans_both_servers() {
    let (a, b) = tokio::join!(federating(), federating());
    let scratch = Scratch::new();
    let mut alice = Person::new(&a, "alice", &scratch).await;
    let mut bob = Person::new(&b, "bob", &scratch).await;
    let mut carol = Person::new(&a, "carol", &scratch).await;
    let members = sorted(&[alice.id(), bob.id(), carol.id()]);

    assert_delivered(&alice.send("trio", &[&bob, &carol], "hello both").await, &[&bob, &carol]);
    for person in [&mut bob, &mut carol] {
        let received = person.receive_until(|all| !all.is_empty()).await;
        let Some(Incoming::Message(message)) = received.first() else { panic!("{received:?}") };
        assert_eq!((message.body.as_str(), message.conversation.as_str()), ("hello both", "trio"));
        assert_eq!(message.members, members);
    }
    // Each answers the whole conversation, as its members came with the message.
    let members_of =
        |person: &Person| person.device.conversation("trio").expect("known").members.clone();
    let to_carol = members_of(&carol);
    let report =
        carol.device.send(&carol.session, "trio", &to_carol, "hi from carol").await.expect("send");
    assert_delivered(&report, &[&alice, &bob]);
    let to_bob = members_of(&bob);
    let report = bob.device.send(&bob.session, "trio", &to_bob, "hi from bob").await.expect("send");
    assert_delivered(&report, &[&alice, &carol]);
    let expected = ["hello both", "hi from carol", "hi from bob"];
    for person in [&mut alice, &mut bob, &mut carol] {
        person.receive_until(|_| true).await;
        let conversation = person.device.conversation("trio").expect("the conversation");
        let history: Vec<&str> = conversation.messages.iter().map(|m| m.body.as_str()).collect();
        assert_eq!(history, expected, "{}'s history", person.id());
        assert_eq!(conversation.members, members);
    }

    // Carol reuses the id without bob: alice is told, and the trio's members stay.
    let pair = [alice.id().clone()];
    let report = carol.device.send(&carol.session, "trio", &pair, "just us").await.expect("send");
    assert_delivered(&report, &[&alice]);
    let received = alice.receive_until(|all| !all.is_empty()).await;
    let [Incoming::Message(message)] = received.as_slice() else { panic!("{received:?}") };
    assert_eq!(message.members_changed.as_ref(), Some(&members));
    let trio: Vec<_> = alice.device.conversations().filter(|c| c.members == members).collect();
    assert_eq!(trio.len(), 1, "one trio conversation");
    assert_eq!(trio[0].messages.len(), expected.len(), "nothing added to the trio");
}

#[tokio::test]
async fn a_tampered_ciphertext_is_dropped_and_the_session_starts_again() {
    let (a, b) = tokio::join!(federating(), federating());
    let scratch = Scratch::new();
    let mut alice = Person::new(&a, "alice", &scratch).await;
    let mut bob = Person::new(&b, "bob", &scratch).await;
    assert_delivered(&alice.send("c", &[&bob], "the original").await, &[&bob]);

    // Bob's server hands out the item with one bit of the ciphertext flipped (its MAC, the
    // message's last byte).
    let raw = b.client().with_token(bob.session.token());
    let (status, inbox) = raw.get("/users/@me/to_device").await;
    assert_eq!(status, StatusCode::OK, "{inbox}");
    let mut item: InboxItem =
        serde_json::from_value(inbox["messages"][0].clone()).expect("an inbox item");
    let ciphertexts = item.content["ciphertext"].as_object_mut().expect("ciphertexts");
    let body = ciphertexts.values_mut().next().expect("one ciphertext");
    let mut bytes = base64url::decode(body["body"].as_str().expect("a body")).expect("base64url");
    *bytes.last_mut().expect("bytes") ^= 1;
    body["body"] = base64url::encode(bytes).into();
    let outcome =
        bob.device.handle(&bob.session, &GatewayEvent::ToDevice(item)).await.expect("handle");
    let [Incoming::Undecryptable(dropped)] = outcome.as_slice() else { panic!("{outcome:?}") };
    assert!(matches!(dropped.error, DecryptError::Olm(_)), "{:?}", dropped.error);
    assert_eq!((&dropped.sender, &dropped.reset), (alice.id(), &Some(ResetOutcome::Sent)));
    // The item is done with: the inbox read acknowledges it and does not show the text.
    let after = bob.device.receive(&bob.session).await.expect("receive");
    assert!(after.is_empty(), "{after:?}");
    assert_eq!(inbox_len(&b, &bob).await, 0, "acknowledged");

    // Alice learns of the new session, and from then on both sides use it.
    let reset = alice.receive_until(|all| !all.is_empty()).await;
    assert!(
        matches!(reset.as_slice(), [Incoming::SessionReset { sender, .. }] if sender == bob.id()),
        "{reset:?}"
    );
    assert_delivered(&alice.send("c", &[&bob], "once more").await, &[&bob]);
    assert_eq!(bodies(&bob.receive_until(|all| !all.is_empty()).await), ["once more"]);
    assert_delivered(&bob.send("c", &[&alice], "got it").await, &[&alice]);
    assert_eq!(bodies(&alice.receive_until(|all| !all.is_empty()).await), ["got it"]);
}

#[tokio::test]
async fn a_lost_session_recovers_with_a_reset() {
    let (a, b) = tokio::join!(federating(), federating());
    let scratch = Scratch::new();
    let mut alice = Person::new(&a, "alice", &scratch).await;
    let mut phone = alice.second_device(&a, &scratch).await;
    let mut bob = Person::new(&b, "bob", &scratch).await;
    // Bob's store as it was before any session with alice: a restore from an old backup.
    let backup = scratch.path("bob-backup");
    std::fs::copy(&bob.store, &backup).expect("back up bob's store");
    assert_delivered(&alice.send("c", &[&bob], "one").await, &[&alice, &bob]);
    assert_eq!(bodies(&bob.receive_until(|all| !all.is_empty()).await), ["one"]);
    assert_delivered(&bob.send("c", &[&alice], "two").await, &[&alice]);
    assert_eq!(bodies(&alice.receive_until(|all| !all.is_empty()).await), ["two"]);
    assert_eq!(bodies(&phone.receive_until(|all| all.len() == 2).await), ["one", "two"]);

    let Person { identity, session, device, store } = bob;
    let second = Device::open(&store, &identity);
    assert!(
        matches!(second, Err(E2eError::Store(StoreError::InUse { .. }))),
        "one device per store at a time: {second:?}"
    );
    drop(device);
    std::fs::copy(&backup, &store).expect("restore bob's store");
    // The lock goes with the last copy of its file descriptor: a server process another test
    // forks at this moment holds one until it execs, so the store may stay busy an instant.
    let reopened = super::eventually(
        Duration::from_secs(10),
        || async { Device::open(&store, &identity) },
        |opened| !matches!(opened, Err(E2eError::Store(StoreError::InUse { .. }))),
    )
    .await;
    let device = reopened.expect("open the restored store");
    let mut bob = Person { identity, session, device, store };
    // Alice's session has heard from bob, so this is a normal message bob cannot read.
    assert_delivered(&alice.send("c", &[&bob], "three").await, &[&alice, &bob]);
    let wedged = bob.receive_until(|all| !all.is_empty()).await;
    let [Incoming::Undecryptable(dropped)] = wedged.as_slice() else { panic!("{wedged:?}") };
    assert!(matches!(dropped.error, DecryptError::Olm(_)), "{:?}", dropped.error);
    // The reset went to both of alice's devices: a share covers every device of a user.
    assert_eq!(dropped.reset, Some(ResetOutcome::Sent));

    let reset = alice.receive_until(|all| !all.is_empty()).await;
    assert!(matches!(reset.as_slice(), [Incoming::SessionReset { .. }]), "{reset:?}");
    let on_phone = phone.receive_until(|all| all.len() == 2).await;
    assert_eq!(bodies(&on_phone), ["three"]);
    assert!(on_phone.iter().any(|item| matches!(item, Incoming::SessionReset { .. })));
    assert_delivered(&alice.send("c", &[&bob], "four").await, &[&alice, &bob]);
    assert_eq!(bodies(&bob.receive_until(|all| !all.is_empty()).await), ["four"]);
    assert_delivered(&bob.send("c", &[&alice], "five").await, &[&alice]);
    assert_eq!(bodies(&alice.receive_until(|all| !all.is_empty()).await), ["five"]);
    assert_eq!(bodies(&phone.receive_until(|all| all.len() == 2).await), ["four", "five"]);
}

#[tokio::test]
async fn a_device_added_between_the_key_query_and_the_send_is_not_skipped() {
    let (a, b) = tokio::join!(federating(), federating());
    let scratch = Scratch::new();
    let proxy = PausingProxy::start(&a).await;
    let mut alice = Person::new_at(&a, &proxy.url, "alice", &scratch).await;
    let mut bob = Person::new(&b, "bob", &scratch).await;

    // Alice's first to-device request waits at the proxy while bob adds a device; it was
    // encrypted for bob's old list, so bob's server refuses it, and the client sends again.
    let (reached, resume) = proxy.pause_next_send().await;
    let members = [bob.id().clone()];
    let sending = alice.device.send(&alice.session, "c", &members, "to every device");
    let adding = async {
        reached.await.expect("the send reaches the proxy");
        let phone = bob.second_device(&b, &scratch).await;
        resume.send(()).expect("resume the send");
        phone
    };
    let (report, mut phone) = tokio::join!(sending, adding);
    let report = report.expect("send");
    assert_delivered(&report, &[&bob]);
    assert_eq!(proxy.sends(), 2, "refused as stale once, then sent again");
    assert_eq!(bodies(&bob.receive_until(|all| !all.is_empty()).await), ["to every device"]);
    assert_eq!(bodies(&phone.receive_until(|all| !all.is_empty()).await), ["to every device"]);
}

#[tokio::test]
async fn an_own_device_added_between_the_key_query_and_the_send_gets_its_copy() {
    let (a, b) = tokio::join!(federating(), federating());
    let scratch = Scratch::new();
    let proxy = PausingProxy::start(&a).await;
    let mut alice = Person::new_at(&a, &proxy.url, "alice", &scratch).await;
    let bob = Person::new(&b, "bob", &scratch).await;

    // Alice has no other device when her client asks for the keys, so her first request has
    // no share for her own user; her phone appears while it waits at the proxy. Her server
    // answers `stale` for her, and the client sends her phone its copy.
    let (reached, resume) = proxy.pause_next_send().await;
    let members = [bob.id().clone()];
    let identity = alice.identity.clone();
    let sending = alice.device.send(&alice.session, "c", &members, "to my phone too");
    let adding = async {
        reached.await.expect("the send reaches the proxy");
        let session = client(&a, &a.base_url()).login("alice", PASSWORD).await.expect("login");
        let phone = Person::with_device(session, identity, scratch.path("alice-phone")).await;
        resume.send(()).expect("resume the send");
        phone
    };
    let (report, mut phone) = tokio::join!(sending, adding);
    let report = report.expect("send");
    assert_delivered(&report, &[&alice, &bob]);
    assert_eq!(proxy.sends(), 2, "the copy went in a second request");
    assert_eq!(bodies(&phone.receive_until(|all| !all.is_empty()).await), ["to my phone too"]);
}

#[tokio::test]
async fn a_server_that_leaves_the_sending_device_out_of_its_own_list_gets_nothing() {
    let (a, b) = tokio::join!(federating(), federating());
    let scratch = Scratch::new();
    let proxy = PausingProxy::start(&a).await;
    let mut alice = Person::new_at(&a, &proxy.url, "alice", &scratch).await;
    let bob = Person::new(&b, "bob", &scratch).await;

    // Alice's server (the proxy plays it) answers for alice with a list that verifies but
    // is not hers: it does not hold the very device asking.
    proxy.hide_devices_of(alice.id());
    let members = [bob.id().clone()];
    let sent = alice.device.send(&alice.session, "c", &members, "not to a fake list").await;
    assert!(matches!(sent, Err(E2eError::OwnKeys(_))), "{sent:?}");
    assert_eq!(proxy.sends(), 0, "nothing was sent");
}

#[tokio::test]
async fn a_message_whose_senders_keys_cannot_be_had_for_now_waits_in_the_inbox() {
    let (a, mut b) = tokio::join!(federating(), federating());
    let scratch = Scratch::new();
    let mut alice = Person::new(&a, "alice", &scratch).await;
    let mut bob = Person::new(&b, "bob", &scratch).await;
    assert_delivered(&bob.send("c", &[&alice], "while you were away").await, &[&alice]);

    // Bob's server is down when alice first reads: she cannot check his keys, which says
    // nothing about them, so the message is neither dropped nor acknowledged.
    b.stop();
    let read = alice.device.receive(&alice.session).await;
    assert!(matches!(read, Err(E2eError::Postponed(_))), "{read:?}");
    assert_eq!(inbox_len(&a, &alice).await, 1, "still in the inbox");
    b.launch().await;
    let deadline = Instant::now() + ARRIVAL;
    let mut received = Vec::new();
    while received.is_empty() && Instant::now() < deadline {
        match alice.device.receive(&alice.session).await {
            Ok(items) => received = items,
            Err(E2eError::Postponed(_)) => tokio::time::sleep(Duration::from_millis(200)).await,
            Err(error) => panic!("receive: {error}"),
        }
    }
    assert_eq!(bodies(&received), ["while you were away"], "{received:?}");
}

#[tokio::test]
async fn a_message_read_when_the_store_cannot_be_written_is_read_again_later() {
    let (a, b) = tokio::join!(federating(), federating());
    let scratch = Scratch::new();
    let mut alice = Person::new(&a, "alice", &scratch).await;
    let mut bob = Person::new(&b, "bob", &scratch).await;
    assert_delivered(&alice.send("c", &[&bob], "kept").await, &[&bob]);

    // A directory where the store's next version is written makes every save fail.
    let mut temporary = bob.store.clone().into_os_string();
    temporary.push(format!(".{}.tmp", std::process::id()));
    std::fs::create_dir_all(&temporary).expect("block the store's writes");
    let read = bob.device.receive(&bob.session).await;
    assert!(matches!(read, Err(E2eError::Store(_))), "{read:?}");
    assert_eq!(inbox_len(&b, &bob).await, 1, "not acknowledged");
    std::fs::remove_dir(&temporary).expect("unblock");
    assert_eq!(bodies(&bob.receive_until(|all| !all.is_empty()).await), ["kept"]);
}

#[tokio::test]
async fn after_a_rotation_the_device_is_certified_again_and_its_peers_are_told() {
    let (a, b) = tokio::join!(federating(), federating());
    let scratch = Scratch::new();
    let mut alice = Person::new(&a, "alice", &scratch).await;
    let mut bob = Person::new(&b, "bob", &scratch).await;
    assert_delivered(&alice.send("c", &[&bob], "before").await, &[&bob]);
    assert_eq!(bodies(&bob.receive_until(|all| !all.is_empty()).await), ["before"]);

    // Bob rotates to the next key of his phrase; his device's certificate is now the old key's.
    let next = rotate(&bob, &b).await;

    // Alice is told his identity changed, and nothing is encrypted for the new key until she
    // accepts it, not even once his device is certified by it.
    let report = alice.send("c", &[&bob], "in between").await;
    assert_eq!(report.failed.get(bob.id()), Some(&ShareFailure::IdentityChanged), "{report:?}");
    assert_eq!(report.identity_changed, [bob.id().clone()]);
    bob.identity = next;
    bob.device.certify(&bob.session, &bob.identity).await.expect("certify again");
    let report = alice.send("c", &[&bob], "not yet").await;
    assert_eq!(report.failed.get(bob.id()), Some(&ShareFailure::IdentityChanged), "{report:?}");
    assert_eq!(alice.device.identity_changes().collect::<Vec<_>>(), [bob.id()]);
    assert!(alice.device.accept_identity(bob.id()).expect("accept"));
    // Certified again with the new key, the same device (and store) goes on.
    let report = alice.send("c", &[&bob], "after").await;
    assert_delivered(&report, &[&bob]);
    assert!(report.identity_changed.is_empty(), "told once: {report:?}");
    assert_eq!(bodies(&bob.receive_until(|all| !all.is_empty()).await), ["after"]);
    assert_delivered(&bob.send("c", &[&alice], "still me").await, &[&alice]);
    assert_eq!(bodies(&alice.receive_until(|all| !all.is_empty()).await), ["still me"]);
}

/// Rotates `person`'s identity to the next key of their phrase (spec 16.6); returns it. Their
/// devices' certificates are then the old key's.
async fn rotate(person: &Person, server: &Server) -> Identity {
    let next = Identity::recover(&person.identity.phrase().words(), 1).expect("key 1");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("time");
    let rotation = IdentityRotation {
        user_id: person.id().clone(),
        old_key: person.identity.public_key(),
        new_key: next.public_key(),
        new_index: Some(1),
        ts: u64::try_from(now.as_millis()).expect("ms"),
    }
    .sign(person.identity.key_pair(), next.key_pair())
    .expect("sign the rotation");
    let body = json!({"rotation": rotation, "binding": sign_binding(next.key_pair(), person.id())});
    let raw = server.client().with_token(person.session.token());
    let (status, answer) = raw.post("/users/@me/identity/rotate", body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");

    next
}

#[tokio::test]
async fn a_changed_identity_seen_first_on_receive_is_held_until_accepted() {
    let (a, b) = tokio::join!(federating(), federating());
    let scratch = Scratch::new();
    let mut alice = Person::new(&a, "alice", &scratch).await;
    let mut bob = Person::new(&b, "bob", &scratch).await;
    assert_delivered(&alice.send("c", &[&bob], "before").await, &[&bob]);
    assert_eq!(bodies(&bob.receive_until(|all| !all.is_empty()).await), ["before"]);

    // Bob rotates and writes from a new device certified by the new key: alice hears of the
    // change first from that message, which she does not read until she accepts the key.
    bob.identity = rotate(&bob, &b).await;
    let mut phone = bob.second_device(&b, &scratch).await;
    assert_delivered(&phone.send("c", &[&alice], "new key").await, &[&alice]);
    let received = alice.receive_until(|all| !all.is_empty()).await;
    assert!(
        matches!(received.as_slice(), [Incoming::IdentityChanged { sender, .. }] if sender == bob.id()),
        "{received:?}"
    );
    // Nor does her next send go to the new key's devices; it says why.
    let report = alice.send("c", &[&bob], "held").await;
    assert_eq!(report.failed.get(bob.id()), Some(&ShareFailure::IdentityChanged), "{report:?}");
    assert_eq!(report.identity_changed, [bob.id().clone()]);
    assert!(alice.device.accept_identity(bob.id()).expect("accept"));
    // The message held meanwhile is read now.
    let released = alice.device.receive(&alice.session).await.expect("receive");
    assert_eq!(bodies(&released), ["new key"], "{released:?}");
    assert_delivered(&alice.send("c", &[&bob], "accepted").await, &[&bob]);
    assert_eq!(bodies(&phone.receive_until(|all| !all.is_empty()).await), ["accepted"]);
    assert_delivered(&phone.send("c", &[&alice], "hello again").await, &[&alice]);
    assert_eq!(bodies(&alice.receive_until(|all| !all.is_empty()).await), ["hello again"]);
}

#[tokio::test]
async fn a_claim_refused_for_one_recipient_does_not_fail_the_others() {
    // A burst of 2 claims: bob's three devices are more than one claim may name.
    let server =
        Server::builder().env("GUILDHALL_RATE_LIMITS__KEY_CLAIMS_PER_MINUTE", "2").start().await;
    let scratch = Scratch::new();
    let mut alice = Person::new(&server, "alice", &scratch).await;
    let bob = Person::new(&server, "bob", &scratch).await;
    let _tablet = bob.second_device(&server, &scratch).await;
    let name = "bob-third";
    let session = client(&server, &server.base_url()).login("bob", PASSWORD).await.expect("login");
    let _phone = Person::with_device(session, bob.identity.clone(), scratch.path(name)).await;
    let mut carol = Person::new(&server, "carol", &scratch).await;

    let report = alice.send("trio", &[&bob, &carol], "to both").await;
    assert_eq!(report.delivered, [carol.id().clone()], "{report:?}");
    let failure = report.failed.get(bob.id()).map(ToString::to_string).unwrap_or_default();
    assert!(failure.contains("bad_request"), "{report:?}");
    assert_eq!(bodies(&carol.receive_until(|all| !all.is_empty()).await), ["to both"]);
}

#[tokio::test]
async fn a_send_over_the_limit_for_one_recipient_still_reaches_the_others() {
    // One share a minute per sender and recipient user: bob's is used up by the first send.
    let server =
        Server::builder().env("GUILDHALL_RATE_LIMITS__TO_DEVICE_PER_MINUTE", "1").start().await;
    let scratch = Scratch::new();
    let mut alice = Person::new(&server, "alice", &scratch).await;
    let mut bob = Person::new(&server, "bob", &scratch).await;
    let mut carol = Person::new(&server, "carol", &scratch).await;
    assert_delivered(&alice.send("c", &[&bob], "first").await, &[&bob]);

    let report = alice.send("trio", &[&bob, &carol], "to both").await;
    assert_eq!(report.delivered, [carol.id().clone()], "{report:?}");
    let failure = report.failed.get(bob.id()).map(ToString::to_string).unwrap_or_default();
    assert!(failure.contains("rate_limited"), "{report:?}");
    assert_eq!(bodies(&carol.receive_until(|all| !all.is_empty()).await), ["to both"]);
    assert_eq!(bodies(&bob.receive_until(|all| !all.is_empty()).await), ["first"]);
}

#[tokio::test]
async fn a_device_told_its_keys_run_low_uploads_more() {
    let server =
        Server::builder().env("GUILDHALL_RATE_LIMITS__KEY_CLAIMS_PER_MINUTE", "1000").start().await;
    let scratch = Scratch::new();
    let alice = Person::new(&server, "alice", &scratch).await;
    let mut bob = Person::new(&server, "bob", &scratch).await;
    let bobs_raw = server.client().with_token(bob.session.token());
    let count = || async {
        let (status, counts) = bobs_raw.post("/keys/upload", json!({})).await;
        assert_eq!(status, StatusCode::OK, "{counts}");
        counts["one_time_key_count"].as_u64().expect("a count")
    };
    assert_eq!(count().await, 100, "a new device publishes 100 one-time keys");

    let mut gateway = bob.session.gateway().await.expect("bob's gateway");
    let (bob_id, bob_device) = (bob.id().to_string(), bob.device.device_id().to_string());
    let claim = json!({"one_time_keys": {bob_id.as_str(): [bob_device.as_str()]}});
    let alices_raw = server.client().with_token(alice.session.token());
    for _ in 0..81 {
        let (status, answer) = alices_raw.post("/keys/claim", claim.clone()).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
    }
    assert_eq!(count().await, 19);
    let low = tokio::time::timeout(ARRIVAL, async {
        loop {
            let event = gateway.next().await.expect("the gateway is open").expect("an event");
            if matches!(event, GatewayEvent::OneTimeKeysLow(_)) {
                return event;
            }
        }
    })
    .await
    .expect("ONE_TIME_KEYS_LOW within the deadline");
    assert!(bob.device.handle(&bob.session, &low).await.expect("handle").is_empty());
    assert_eq!(count().await, 100, "topped up");
}

#[tokio::test]
async fn a_fallback_key_that_started_a_session_is_replaced() {
    let server =
        Server::builder().env("GUILDHALL_RATE_LIMITS__KEY_CLAIMS_PER_MINUTE", "1000").start().await;
    let scratch = Scratch::new();
    let mut alice = Person::new(&server, "alice", &scratch).await;
    let mut bob = Person::new(&server, "bob", &scratch).await;
    let carol = Person::new(&server, "carol", &scratch).await;
    let carols_raw = server.client().with_token(carol.session.token());
    let (bob_id, bob_device) = (bob.id().to_string(), bob.device.device_id().to_string());
    let claim = json!({"one_time_keys": {bob_id.as_str(): [bob_device.as_str()]}});
    // Claims bob's one-time keys until the server hands out his fallback key; returns it.
    let fallback = || async {
        for _ in 0..=100 {
            let (status, answer) = carols_raw.post("/keys/claim", claim.clone()).await;
            assert_eq!(status, StatusCode::OK, "{answer}");
            let object = &answer["one_time_keys"][bob_id.as_str()][bob_device.as_str()];
            if object["fallback"] == true {
                return object["key"].as_str().expect("a key").to_owned();
            }
        }
        panic!("no fallback key after 101 claims")
    };
    let first = fallback().await;

    // Alice's session with bob starts from his fallback key; once bob read it, he publishes
    // another (and more one-time keys).
    assert_delivered(&alice.send("c", &[&bob], "via the fallback key").await, &[&bob]);
    let read = bob.receive_until(|all| !all.is_empty()).await;
    assert_eq!(bodies(&read), ["via the fallback key"]);
    assert_ne!(fallback().await, first, "the used fallback key was replaced");
}

#[tokio::test]
async fn the_command_line_says_what_is_encrypted_and_who_did_not_get_it() {
    let (a, b) = tokio::join!(federating(), federating());
    let scratch = Scratch::new();
    let alice = Shell::new(&scratch, "alice");
    let bob = Shell::new(&scratch, "bob");
    for (shell, server, name) in [(&alice, &a, "alice"), (&bob, &b, "bob")] {
        shell.ok(&["identity", "new"]).await;
        shell.ok(&["login", &server.base_url(), "--register", name]).await;
        let setup = shell.ok(&["e2e", "setup"]).await;
        assert!(setup.contains("is now device"), "{setup}");
        assert!(shell.fails(&["e2e", "setup"]).await.contains("is a device already"));
    }
    let (alice_id, bob_id) = (a.user_id("alice"), b.user_id("bob"));

    // The text comes from standard input, where no other user of the machine sees it.
    let output =
        alice.run_with_input(&["e2e", "send", &bob_id], Some("hello from the shell\n")).await;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let sent = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(sent.contains("end-to-end encrypted"), "{sent}");
    assert!(sent.contains(&format!("delivered to {bob_id} (every device)")), "{sent}");
    let read = bob.ok(&["e2e", "read"]).await;
    let line = read.lines().find(|line| line.contains("[encrypted] conversation "));
    let line = line.unwrap_or_else(|| panic!("{read}"));
    assert!(
        line.ends_with(&format!("(with {alice_id}) {alice_id}: hello from the shell")),
        "{read}"
    );
    let conversation = line.split_whitespace().nth(4).expect("the conversation id").to_owned();
    assert_eq!(bob.ok(&["e2e", "read"]).await.trim(), "no new encrypted messages");

    // The answer goes to the same conversation; a recipient who cannot get it is named, and
    // the command fails, while the others still get the message.
    bob.ok(&["e2e", "send", &alice_id, "--text", "hi back"]).await;
    let read = alice.ok(&["e2e", "read"]).await;
    assert!(
        read.contains(&format!("conversation {conversation} (with {bob_id}) {bob_id}: hi back")),
        "{read}"
    );
    let nobody = a.user_id("nobody");
    let partial = alice.run(&["e2e", "send", &bob_id, &nobody, "--text", "to both"]).await;
    assert!(!partial.status.success());
    let printed = String::from_utf8_lossy(&partial.stdout);
    assert!(printed.contains(&format!("NOT DELIVERED to {nobody}: unknown_user")), "{printed}");
    assert!(printed.contains(&format!("delivered to {bob_id} (every device)")), "{printed}");
    let error = String::from_utf8_lossy(&partial.stderr);
    assert!(
        error.contains("did not reach 1 of the recipients (it was not sent unencrypted)"),
        "{error}"
    );
    assert!(bob.ok(&["e2e", "read"]).await.contains(": to both"));
    // Bob's key did not change, so there is nothing to accept.
    let accepted = alice.ok(&["e2e", "accept", &bob_id]).await;
    assert!(accepted.contains(&format!("no identity change of {bob_id}")), "{accepted}");
    let listed = bob.ok(&["e2e", "conversations"]).await;
    assert!(
        listed.contains(&format!("[encrypted] {conversation} with {alice_id} (2 messages")),
        "{listed}"
    );
}
