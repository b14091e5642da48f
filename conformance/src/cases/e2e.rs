//! End-to-end encrypted DMs, the server's part (spec chapter 17), seen from another server:
//! key queries and claims of the target's users' devices, to-device messages into their inboxes
//! (read and acknowledged through test control), and device-list changes. The suite's peer plays
//! the other users' home server; fixtures are in [`super::devices`].

use std::sync::Arc;

use guildhall_spec::request_auth::{HttpRequest, check_request};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use super::devices::{
    Person, check_device_list, check_inbox, claim, list_hash, olm_content, query, send, send_body,
    txn,
};
use crate::peer::{DEVICES_NOTIFY_PATH, unix_now};
use crate::target::encode;
use crate::{CaseResult, Context, ensure};

/// Claims one device may lose to one claimer before the suite calls the limit missing. The
/// spec's default is 20 a minute (`rate_limits.key_claims_per_minute`).
const MOST_CLAIMS_BEFORE_THE_LIMIT: u64 = 99;

pub(super) async fn key_query_serves_attested_devices(ctx: Arc<Context>) -> CaseResult {
    let bob = Person::new(&ctx, "keyed", &["PHONE", "LAPTOP"]).await?;
    let keyless = ctx.target.user("keyless").await?;
    let revoked = Person::new(&ctx, "revoked", &["OLD"]).await?;
    let path = format!("/_guildhall/test/v1/users/{}/identity", encode(&revoked.user));
    let (status, body) = ctx.target.call("DELETE", &path, None).await;
    ensure!(status == 200, "test control: revoking answered {status} {body}");
    let ghost = format!("@ghost{}:{}", crate::context::unique(), ctx.target.name);
    let foreign = ctx.peer.user("elsewhere");
    let asked = [bob.user.as_str(), &keyless, &revoked.user, &ghost, &foreign];
    let (status, body) = query(&ctx, &asked).await;
    ensure!(status == 200, "POST /user/keys/query answered {status} {body}");
    let answered: Vec<&String> =
        body["users"].as_object().map(|u| u.keys().collect()).unwrap_or_default();
    ensure!(
        answered == [&bob.user],
        "only {} has a usable identity key, but the answer is for {answered:?}",
        bob.user
    );
    check_device_list(&ctx, &body["users"][&bob.user], &bob).await?;
    let path = "/_guildhall/v1/user/keys/query";
    let (status, body) = ctx.target.call("POST", path, Some(&json!({"users": [bob.user]}))).await;
    ensure!(status == 401, "an unsigned key query answered {status} {body}");
    let (status, body) = query(&ctx, &[]).await;
    ensure!(
        status == 400 && body["code"] == "invalid_body",
        "a query of no users: expected 400 invalid_body, got {status} {body}"
    );
    Ok(())
}

pub(super) async fn device_list_hash_is_the_spec_formula(ctx: Arc<Context>) -> CaseResult {
    // Registered out of order; byte order puts digits, capitals, "_", then small letters.
    let many = Person::new(&ctx, "many", &["zeta", "Alpha", "_under", "9nine", "alpha"]).await?;
    let none = Person::new(&ctx, "deviceless", &[]).await?;
    let (status, body) = query(&ctx, &[&many.user, &none.user]).await;
    ensure!(status == 200, "POST /user/keys/query answered {status} {body}");
    check_device_list(&ctx, &body["users"][&many.user], &many).await?;
    let served = &body["users"][&none.user];
    ensure!(
        served["devices"] == json!([]),
        "a user with an identity key and no device: expected no devices, got {served}"
    );
    let empty = guildhall_spec::base64url::encode(Sha256::digest(b"[]"));
    ensure!(
        served["device_list_hash"] == empty && list_hash([]) == empty,
        "the hash of no devices is base64url(SHA-256(\"[]\")) = {empty}, got {}",
        served["device_list_hash"]
    );
    Ok(())
}

pub(super) async fn new_device_changes_the_served_hash(ctx: Arc<Context>) -> CaseResult {
    let mut bob = Person::new(&ctx, "growing", &["PHONE"]).await?;
    let before = bob.hash();
    let (status, body) = query(&ctx, &[&bob.user]).await;
    ensure!(status == 200, "POST /user/keys/query answered {status} {body}");
    check_device_list(&ctx, &body["users"][&bob.user], &bob).await?;
    bob.add_device(&ctx, "LAPTOP").await?;
    ensure!(bob.hash() != before, "the suite's two device lists hash alike");
    let (status, body) = query(&ctx, &[&bob.user]).await;
    ensure!(status == 200, "POST /user/keys/query answered {status} {body}");
    check_device_list(&ctx, &body["users"][&bob.user], &bob).await?;
    // A send encrypted for the old list is refused.
    let messages =
        vec![bob.message(bob.device("PHONE")?, "m1"), bob.message(bob.device("LAPTOP")?, "m2")];
    let body = send_body(&ctx.peer.user("alice"), messages, json!({&bob.user: before}));
    let (status, answer) = send(&ctx, &txn(), &body).await;
    let expected =
        json!({"results": {&bob.user: {"status": "stale", "device_list_hash": bob.hash()}}});
    ensure!(
        status == 200 && answer == expected,
        "a send for the list before the new device: expected {expected}, got {status} {answer}"
    );
    bob.inboxes_are_empty(&ctx, "after a stale send").await
}

pub(super) async fn device_list_change_is_notified_to_a_querying_server(
    ctx: Arc<Context>,
) -> CaseResult {
    let mut bob = Person::new(&ctx, "watched", &["PHONE"]).await?;
    let (status, body) = query(&ctx, &[&bob.user]).await;
    ensure!(status == 200, "POST /user/keys/query answered {status} {body}");
    bob.add_device(&ctx, "LAPTOP").await?;
    let expected = json!({"user_id": bob.user, "device_list_hash": bob.hash()});
    let mut found = None;
    for _ in 0..400 {
        found = ctx.peer.device_notifications().into_iter().find(|request| {
            serde_json::from_slice::<Value>(&request.body).is_ok_and(|body| body == expected)
        });
        if found.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let Some(request) = found else {
        let received = ctx.peer.device_notifications();
        let first = received.first().map(|r| String::from_utf8_lossy(&r.body).into_owned());
        return Err(format!(
            "within 20 s the peer, which queried {}'s keys, got no POST {DEVICES_NOTIFY_PATH} with \
             {expected} ({} notifications, the first {first:?})",
            bob.user,
            received.len()
        ));
    };
    ensure!(request.method == "POST", "the notification came as {}", request.method);
    let headers: Vec<(&str, &str)> =
        request.headers.iter().map(|(name, value)| (name.as_str(), value.as_str())).collect();
    let authority = ctx.peer.name().to_string();
    let http = HttpRequest {
        method: &request.method,
        authority: &authority,
        path: &request.path,
        query: request.query.as_deref(),
        headers: &headers,
        body: &request.body,
    };
    let checked = check_request(&http, unix_now(), &[&authority])
        .map_err(|e| format!("the notification's request signature is refused: {e}"))?;
    ensure!(
        checked.origin().as_str() == ctx.target.name,
        "the notification is signed by {}, not the target",
        checked.origin()
    );
    checked
        .verify_with(&ctx.keys().await?)
        .map_err(|e| format!("the notification's signature does not verify: {e}"))
}

pub(super) async fn claim_hands_out_each_one_time_key_once_then_the_fallback(
    ctx: Arc<Context>,
) -> CaseResult {
    let bob = Person::new(&ctx, "claimed", &["PHONE", "BARE"]).await?;
    let phone = bob.device("PHONE")?;
    let one_time = [bob.key_object(phone, "AAAAAQ", false), bob.key_object(phone, "AAAAAg", false)];
    let fallback = bob.key_object(phone, "FALLBACK", true);
    let upload = json!({"one_time_keys": one_time, "fallback_key": fallback});
    let (status, body) = bob.upload(&ctx, "PHONE", upload).await;
    ensure!(
        status == 200 && body == json!({"one_time_key_count": 2, "fallback_key": true}),
        "test control: uploading two one-time keys and a fallback key answered {status} {body}"
    );
    let claimers = [ctx.peer.user("claimer"), ctx.peer.user("claimer")];
    let mut handed = Vec::new();
    for claimer in claimers.iter().chain(&claimers) {
        let (status, body) = claim(&ctx, claimer, &bob.user, &["PHONE", "BARE", "NOPE"]).await;
        ensure!(status == 200, "POST /user/keys/claim answered {status} {body}");
        let keys = &body["one_time_keys"][&bob.user];
        ensure!(
            keys.as_object().is_some_and(|keys| keys.len() == 1),
            "only PHONE has keys (BARE has none, NOPE does not exist), but the claim answered {body}"
        );
        handed.push(keys["PHONE"].clone());
    }
    ensure!(
        handed[0] != handed[1] && handed[..2].iter().all(|key| one_time.contains(key)),
        "the first two claims did not hand out the two one-time keys, once each: {} and {}",
        handed[0],
        handed[1]
    );
    ensure!(
        handed[2] == fallback && handed[3] == fallback,
        "with no one-time key left a claim hands out the fallback key, got {} and {}",
        handed[2],
        handed[3]
    );
    let counts = bob.key_counts(&ctx, "PHONE").await?;
    ensure!(counts == (0, true), "after the claims the device holds (count, fallback) {counts:?}");
    Ok(())
}

pub(super) async fn claims_are_limited_per_claimer(ctx: Arc<Context>) -> CaseResult {
    let bob = Person::new(&ctx, "drained", &["PHONE"]).await?;
    let phone = bob.device("PHONE")?;
    let keys: Vec<Value> =
        (0..100).map(|index| bob.key_object(phone, &format!("K{index}"), false)).collect();
    let (status, body) = bob.upload(&ctx, "PHONE", json!({"one_time_keys": keys})).await;
    ensure!(status == 200, "test control: uploading 100 one-time keys answered {status} {body}");
    let greedy = ctx.peer.user("greedy");
    let mut granted = 0;
    let refused = loop {
        let (status, body) = claim(&ctx, &greedy, &bob.user, &["PHONE"]).await;
        match status {
            200 if body["one_time_keys"][&bob.user]["PHONE"].is_object() => granted += 1,
            429 => break body,
            _ => return Err(format!("claim {} answered {status} {body}", granted + 1)),
        }
        ensure!(
            granted <= MOST_CLAIMS_BEFORE_THE_LIMIT,
            "{granted} claims of one device by one claimer were all answered: no claim limit"
        );
    };
    ensure!(
        refused["code"] == "rate_limited"
            && (refused.get("retry_after_ms").is_none() || refused["retry_after_ms"].is_u64()),
        "expected 429 rate_limited (retry_after_ms an integer if given), got {refused}"
    );
    let (count, _) = bob.key_counts(&ctx, "PHONE").await?;
    ensure!(
        count == 100 - granted,
        "{granted} claims were answered and one refused, yet {count} of 100 one-time keys are left"
    );
    // The limit is the claimer's: another user of the same server still gets a one-time key.
    let (status, body) = claim(&ctx, &ctx.peer.user("patient"), &bob.user, &["PHONE"]).await;
    ensure!(
        status == 200 && keys.contains(&body["one_time_keys"][&bob.user]["PHONE"]),
        "another claimer, after {greedy} was limited: expected a one-time key, got {status} {body}"
    );
    Ok(())
}

pub(super) async fn claimer_must_be_from_the_requesting_server(ctx: Arc<Context>) -> CaseResult {
    let bob = Person::new(&ctx, "guarded", &["PHONE"]).await?;
    let key = bob.key_object(bob.device("PHONE")?, "AAAAAQ", false);
    let (status, body) = bob.upload(&ctx, "PHONE", json!({"one_time_keys": [key]})).await;
    ensure!(status == 200, "test control: uploading a one-time key answered {status} {body}");
    let local = format!("@someone{}:{}", crate::context::unique(), ctx.target.name);
    for claimer in [ctx.stranger.user("other"), local] {
        let (status, body) = claim(&ctx, &claimer, &bob.user, &["PHONE"]).await;
        ensure!(
            status == 403 && body["code"] == "sender_not_from_origin",
            "the peer claiming for {claimer}: expected 403 sender_not_from_origin, got {status} {body}"
        );
    }
    let counts = bob.key_counts(&ctx, "PHONE").await?;
    ensure!(counts.0 == 1, "refused claims took keys: {} one-time key(s) left of 1", counts.0);
    Ok(())
}

pub(super) async fn to_device_is_delivered_into_the_inbox(ctx: Arc<Context>) -> CaseResult {
    let bob = Person::new(&ctx, "recipient", &["PHONE", "LAPTOP"]).await?;
    let alice = ctx.peer.user("alice");
    let (to_phone, to_laptop) = (
        bob.message(bob.device("PHONE")?, "m-phone"),
        bob.message(bob.device("LAPTOP")?, "m-laptop"),
    );
    let messages = vec![to_phone.clone(), to_laptop.clone()];
    let body = send_body(&alice, messages, json!({&bob.user: bob.hash()}));
    let (status, answer) = send(&ctx, &txn(), &body).await;
    let delivered = json!({"results": {&bob.user: {"status": "delivered"}}});
    ensure!(
        status == 200 && answer == delivered,
        "a send for the current list: expected {delivered}, got {status} {answer}"
    );
    check_inbox(&bob.inbox(&ctx, "PHONE").await?, &alice, &[&to_phone])?;
    check_inbox(&bob.inbox(&ctx, "LAPTOP").await?, &alice, &[&to_laptop])?;
    Ok(())
}

pub(super) async fn to_device_replay_returns_the_first_answer(ctx: Arc<Context>) -> CaseResult {
    let mut bob = Person::new(&ctx, "replayed", &["PHONE"]).await?;
    let alice = ctx.peer.user("alice");
    let message = bob.message(bob.device("PHONE")?, "m1");
    let body = send_body(&alice, vec![message.clone()], json!({&bob.user: bob.hash()}));
    let txn_id = txn();
    let first = send(&ctx, &txn_id, &body).await;
    ensure!(first.0 == 200, "the first send answered {} {}", first.0, first.1);
    // The list changes in between: a replay still gets the first answer, and stores nothing.
    bob.add_device(&ctx, "TABLET").await?;
    let again = send(&ctx, &txn_id, &body).await;
    ensure!(
        again == first,
        "the replay answered {} {}, the first send {} {}",
        again.0,
        again.1,
        first.0,
        first.1
    );
    // Another body under the same id is a conflict, and is not delivered either.
    let other = bob.message(bob.device("PHONE")?, "m-other");
    let body = send_body(&alice, vec![other], json!({&bob.user: bob.hash()}));
    let (status, answer) = send(&ctx, &txn_id, &body).await;
    ensure!(
        status == 409 && answer["code"] == "txn_conflict",
        "another body under a used transaction id: expected 409 txn_conflict, got {status} {answer}"
    );
    let ids = check_inbox(&bob.inbox(&ctx, "PHONE").await?, &alice, &[&message])?;
    let tablet = bob.inbox(&ctx, "TABLET").await?;
    ensure!(tablet.is_empty(), "the device registered later got {}", tablet.len());
    // The same message id under a new transaction: the inbox keeps one copy (17.5).
    let for_tablet = bob.message(bob.device("TABLET")?, "m2");
    let messages = vec![message.clone(), for_tablet.clone()];
    let body = send_body(&alice, messages, json!({&bob.user: bob.hash()}));
    let (status, answer) = send(&ctx, &txn(), &body).await;
    ensure!(status == 200, "a send under a new transaction answered {status} {answer}");
    let again = check_inbox(&bob.inbox(&ctx, "PHONE").await?, &alice, &[&message])?;
    ensure!(
        again == ids,
        "a message id sent again is a new inbox item: ids {ids:?}, then {again:?}"
    );
    check_inbox(&bob.inbox(&ctx, "TABLET").await?, &alice, &[&for_tablet])?;
    Ok(())
}

pub(super) async fn stale_device_list_stores_nothing(ctx: Arc<Context>) -> CaseResult {
    let mut bob = Person::new(&ctx, "stale", &["PHONE"]).await?;
    let old = bob.hash();
    bob.add_device(&ctx, "LAPTOP").await?;
    let carol = Person::new(&ctx, "fresh", &["PHONE"]).await?;
    let alice = ctx.peer.user("alice");
    let (phone, laptop) = (bob.device("PHONE")?, bob.device("LAPTOP")?);
    let stale = json!({"status": "stale", "device_list_hash": bob.hash()});
    let sends = [
        ("an old hash", vec![bob.message(phone, "m1"), bob.message(laptop, "m2")], old.clone()),
        ("the current hash with a device left out", vec![bob.message(phone, "m3")], bob.hash()),
    ];
    for (what, messages, hash) in sends {
        let body = send_body(&alice, messages, json!({&bob.user: hash}));
        let (status, answer) = send(&ctx, &txn(), &body).await;
        let expected = json!({"results": {&bob.user: stale}});
        ensure!(
            status == 200 && answer == expected,
            "a send with {what}: expected {expected}, got {status} {answer}"
        );
        bob.inboxes_are_empty(&ctx, &format!("after a send with {what}")).await?;
    }
    // One user's share is refused, another's in the same send delivered.
    let for_carol = carol.message(carol.device("PHONE")?, "m4");
    let messages = vec![bob.message(phone, "m5"), bob.message(laptop, "m6"), for_carol.clone()];
    let body = send_body(&alice, messages, json!({&bob.user: old, &carol.user: carol.hash()}));
    let (status, answer) = send(&ctx, &txn(), &body).await;
    let expected = json!({"results": {&bob.user: stale, &carol.user: {"status": "delivered"}}});
    ensure!(
        status == 200 && answer == expected,
        "a send stale for one user and current for another: expected {expected}, got {status} {answer}"
    );
    bob.inboxes_are_empty(&ctx, "after the share refused as stale").await?;
    check_inbox(&carol.inbox(&ctx, "PHONE").await?, &alice, &[&for_carol])?;
    Ok(())
}

pub(super) async fn to_device_refuses_content_other_than_olm(ctx: Arc<Context>) -> CaseResult {
    let bob = Person::new(&ctx, "plain", &["PHONE"]).await?;
    let alice = ctx.peer.user("alice");
    let phone = bob.device("PHONE")?;
    let good = bob.message(phone, "m1");
    let other_key = guildhall_spec::base64url::encode(rand::random::<[u8; 32]>());
    let mut variants: Vec<(&str, Value)> = Vec::new();
    for message_type in ["m.room.encrypted", "plaintext", "olm.v2"] {
        variants.push((message_type, with(&good, "message_type", json!(message_type))));
    }
    let mut content = good["content"].clone();
    content["body"] = json!("hello in plaintext");
    variants.push(("content with a plaintext member", with(&good, "content", content)));
    let mut content = good["content"].clone();
    content["algorithm"] = json!("m.olm.v1.curve25519-aes-sha2");
    variants.push(("another algorithm", with(&good, "content", content)));
    let mut content = olm_content(&phone.curve25519);
    content["ciphertext"][&other_key] = content["ciphertext"][&phone.curve25519].clone();
    variants.push(("a ciphertext for two keys", with(&good, "content", content)));
    variants
        .push(("a ciphertext for another key", with(&good, "content", olm_content(&other_key))));
    let mut content = good["content"].clone();
    content["ciphertext"][&phone.curve25519]["type"] = json!(2);
    variants.push(("an Olm message type other than 0 and 1", with(&good, "content", content)));
    let mut content = good["content"].clone();
    content["ciphertext"][&phone.curve25519]["body"] = json!("not base64url!");
    variants.push(("a body not base64url", with(&good, "content", content)));
    for (what, message) in variants {
        let body = send_body(&alice, vec![message], json!({&bob.user: bob.hash()}));
        let (status, answer) = send(&ctx, &txn(), &body).await;
        ensure!(
            status == 400 && answer["code"] == "invalid_content",
            "{what}: expected 400 invalid_content, got {status} {answer}"
        );
    }
    // Over 32 KiB of content (17.10): refused, as malformed content or as a malformed body.
    let mut content = good["content"].clone();
    let large = guildhall_spec::base64url::encode(vec![7u8; 33 * 1024]);
    content["ciphertext"][&phone.curve25519]["body"] = json!(large);
    let body =
        send_body(&alice, vec![with(&good, "content", content)], json!({&bob.user: bob.hash()}));
    let (status, answer) = send(&ctx, &txn(), &body).await;
    ensure!(
        status == 400 && (answer["code"] == "invalid_content" || answer["code"] == "invalid_body"),
        "content over 32 KiB: expected 400 invalid_content or invalid_body, got {status} {answer}"
    );
    bob.inboxes_are_empty(&ctx, "after refused sends").await
}

/// A send is refused whole when one user's share has content the target refuses, also when
/// another user's share was good: all shares are checked before any is stored (17.3, 17.7).
pub(super) async fn invalid_share_refuses_the_whole_send(ctx: Arc<Context>) -> CaseResult {
    // Named so that the good share's user comes first in any order a server may go by.
    let anna = Person::new(&ctx, "e2ea", &["PHONE"]).await?;
    let bert = Person::new(&ctx, "e2eb", &["PHONE"]).await?;
    let good = anna.message(anna.device("PHONE")?, "m1");
    let other_key = guildhall_spec::base64url::encode(rand::random::<[u8; 32]>());
    let bad = with(&bert.message(bert.device("PHONE")?, "m2"), "content", olm_content(&other_key));
    let body = send_body(
        &ctx.peer.user("alice"),
        vec![good, bad],
        json!({&anna.user: anna.hash(), &bert.user: bert.hash()}),
    );
    let (status, answer) = send(&ctx, &txn(), &body).await;
    ensure!(
        status == 400 && answer["code"] == "invalid_content",
        "a ciphertext for a key not the device's: expected 400 invalid_content, got {status} {answer}"
    );
    anna.inboxes_are_empty(&ctx, "after a send refused for another user's share").await?;
    bert.inboxes_are_empty(&ctx, "after a refused send").await
}

pub(super) async fn to_device_sender_must_be_from_the_requesting_server(
    ctx: Arc<Context>,
) -> CaseResult {
    let bob = Person::new(&ctx, "spoofed", &["PHONE"]).await?;
    let message = bob.message(bob.device("PHONE")?, "m1");
    let local = format!("@someone{}:{}", crate::context::unique(), ctx.target.name);
    for sender in [ctx.stranger.user("other"), local] {
        let body = send_body(&sender, vec![message.clone()], json!({&bob.user: bob.hash()}));
        let (status, answer) = send(&ctx, &txn(), &body).await;
        ensure!(
            status == 403 && answer["code"] == "sender_not_from_origin",
            "the peer sending as {sender}: expected 403 sender_not_from_origin, got {status} {answer}"
        );
    }
    bob.inboxes_are_empty(&ctx, "after refused sends").await
}

pub(super) async fn inbox_keeps_messages_until_acknowledged(ctx: Arc<Context>) -> CaseResult {
    let bob = Person::new(&ctx, "acking", &["PHONE"]).await?;
    let alice = ctx.peer.user("alice");
    let phone = bob.device("PHONE")?;
    let sent: Vec<Value> = (1..=3).map(|n| bob.message(phone, &format!("m{n}"))).collect();
    for message in &sent {
        let body = send_body(&alice, vec![message.clone()], json!({&bob.user: bob.hash()}));
        let (status, answer) = send(&ctx, &txn(), &body).await;
        ensure!(status == 200, "a send answered {status} {answer}");
    }
    let all: Vec<&Value> = sent.iter().collect();
    let ids = check_inbox(&bob.inbox(&ctx, "PHONE").await?, &alice, &all)?;
    let again = check_inbox(&bob.inbox(&ctx, "PHONE").await?, &alice, &all)?;
    ensure!(ids == again, "reading the inbox twice gave ids {ids:?}, then {again:?}");
    let (status, page) = bob.inbox_page(&ctx, "PHONE", 1).await;
    ensure!(
        status == 200
            && page["messages"].as_array().is_some_and(|m| m.len() == 1)
            && page["messages"][0]["id"] == ids[0]
            && page["more"] == true,
        "limit=1: expected the oldest item and more = true, got {status} {page}"
    );
    for (up_to, deleted, left) in
        [(ids[1], 2, &all[2..]), (ids[2], 1, &[][..]), (ids[2], 0, &[][..])]
    {
        let (status, answer) = bob.ack(&ctx, "PHONE", up_to).await;
        ensure!(
            status == 200 && answer == json!({"deleted": deleted}),
            "ack up to {up_to}: expected {{\"deleted\": {deleted}}}, got {status} {answer}"
        );
        check_inbox(&bob.inbox(&ctx, "PHONE").await?, &alice, left)?;
    }
    Ok(())
}

/// `message` with `member` set to `value`.
fn with(message: &Value, member: &str, value: Value) -> Value {
    let mut changed = message.clone();
    changed[member] = value;
    changed
}
