//! The WebSocket gateway, in both encodings: handshake, heartbeats, dispatches and who gets
//! them, resuming, and the close codes.

use crate::harness::bits::{VIEW_CHANNEL, text};
use crate::harness::*;
use std::time::Duration;

/// Runs each scenario once per encoding, as `<scenario>::json` and `<scenario>::msgpack`.
macro_rules! in_both_encodings {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            use crate::harness::Encoding;

            #[tokio::test]
            async fn json() {
                super::$scenario(Encoding::Json).await;
            }

            #[tokio::test]
            async fn msgpack() {
                super::$scenario(Encoding::Msgpack).await;
            }
        }
    )*};
}

in_both_encodings!(
    hello_identify_and_heartbeat,
    messages_reach_members_with_a_stream_position,
    private_channel_messages_reach_only_viewers,
    typing_reaches_other_members,
    presence_follows_connections,
    joins_are_announced,
    resume_replays_missed_events_in_order,
    resuming_a_session_that_is_not_resumable_is_refused,
    protocol_errors_close_with_their_codes,
);

async fn hello_identify_and_heartbeat(encoding: Encoding) {
    let server =
        Server::builder().env("GUILDHALL_GATEWAY__HEARTBEAT_INTERVAL_MS", "30000").start().await;
    let alice = server.register("alice").await;
    let guild = alice.create_guild("Club").await;

    let mut gateway = Gateway::connect(&server, encoding).await;
    assert_eq!(gateway.hello, json!({"heartbeat_interval": 30000}));
    gateway.send(&json!({"op": 2, "d": {"token": alice.token}})).await;
    let ready = gateway.expect_dispatch("READY", |_| true).await;
    assert!(ready["s"].is_i64(), "{ready}");
    let data = &ready["d"];
    assert_eq!(data["user"]["id"], alice.id);
    assert!(data["session_id"].as_str().is_some_and(|id| !id.is_empty()), "{data}");
    assert_eq!(ids(&data["guilds"], "id"), [guild.id.as_str()]);
    assert_eq!(ids(&data["guilds"][0]["channels"], "id"), [guild.general.as_str()]);
    assert_eq!(ids(&data["guilds"][0]["members"], "user_id"), [alice.id.as_str()]);

    gateway.send(&json!({"op": 1, "d": gateway.last_seq})).await;
    assert_eq!(gateway.expect_op(11).await["d"], Value::Null);
    // A status change is accepted, and the connection stays up.
    gateway.send(&json!({"op": 3, "d": {"status": "idle"}})).await;
    gateway.send(&json!({"op": 1, "d": null})).await;
    gateway.expect_op(11).await;
}

async fn messages_reach_members_with_a_stream_position(encoding: Encoding) {
    let server = Server::start().await;
    let (guild, users) = community(&server, &["alice", "bob"]).await;
    let [alice, bob] = &users[..] else { unreachable!() };
    let (mut gateway, _) = Gateway::identified(&server, &bob.token, encoding).await;
    let ready_seq = gateway.last_seq.unwrap();

    let sent = alice.send(&guild.general, "hello bob").await;
    let id = sent["id"].as_str().unwrap();
    let created = gateway.expect_dispatch("MESSAGE_CREATE", |_| true).await;
    assert!(created["s"].as_i64().unwrap() > ready_seq, "{created}");
    assert_eq!(created["d"]["id"], id);
    assert_eq!(created["d"]["content"], "hello bob");
    assert_eq!(created["d"]["author_id"], alice.id);
    assert_eq!(created["d"]["channel_id"], guild.general);
    assert_eq!(created["d"]["guild_id"], guild.id);

    let path = format!("/channels/{}/messages/{id}", guild.general);
    assert_eq!(alice.patch(&path, json!({"content": "hello again"})).await.0, StatusCode::OK);
    let updated = gateway.expect_dispatch("MESSAGE_UPDATE", |_| true).await;
    assert_eq!(updated["d"]["content"], "hello again");
    assert!(updated["s"].as_i64().unwrap() > created["s"].as_i64().unwrap());
    assert_eq!(alice.delete(&path).await.0, StatusCode::NO_CONTENT);
    let deleted = gateway.expect_dispatch("MESSAGE_DELETE", |_| true).await;
    assert_eq!(deleted["d"]["id"], id);
}

async fn private_channel_messages_reach_only_viewers(encoding: Encoding) {
    let server = Server::start().await;
    let (guild, users) = community(&server, &["alice", "bob", "dora"]).await;
    let [alice, bob, dora] = &users[..] else { unreachable!() };
    let secret = private_channel(alice, &guild.id, "secret").await;
    let allow = json!({"kind": "member", "allow": text(VIEW_CHANNEL)});
    assert_eq!(
        alice.put(&format!("/channels/{secret}/permissions/{}", dora.id), allow).await.0,
        StatusCode::OK
    );
    let (mut bobs, _) = Gateway::identified(&server, &bob.token, encoding).await;
    let (mut doras, _) = Gateway::identified(&server, &dora.token, encoding).await;

    alice.send(&secret, "the secret").await;
    // A later public message is the sentinel: once bob has it, he would have had the secret.
    alice.send(&guild.general, "the sentinel").await;

    let seen_by_bob =
        bobs.collect_until("MESSAGE_CREATE", |d| d["content"] == "the sentinel").await;
    let leaked: Vec<&Value> = seen_by_bob
        .iter()
        .filter(|f| f["d"]["channel_id"] == secret || f["d"]["content"] == "the secret")
        .collect();
    assert!(leaked.is_empty(), "bob saw {leaked:?}");
    let seen_by_dora =
        doras.collect_until("MESSAGE_CREATE", |d| d["content"] == "the sentinel").await;
    let messages: Vec<&Value> = seen_by_dora
        .iter()
        .filter(|f| f["t"] == "MESSAGE_CREATE")
        .map(|f| &f["d"]["content"])
        .collect();
    assert_eq!(messages, [&json!("the secret"), &json!("the sentinel")]);
}

async fn typing_reaches_other_members(encoding: Encoding) {
    let server = Server::start().await;
    let (guild, users) = community(&server, &["alice", "bob"]).await;
    let [alice, bob] = &users[..] else { unreachable!() };
    let (mut gateway, _) = Gateway::identified(&server, &bob.token, encoding).await;

    assert_eq!(
        alice.post_empty(&format!("/channels/{}/typing", guild.general)).await.0,
        StatusCode::NO_CONTENT
    );
    let typing = gateway.expect_dispatch("TYPING_START", |_| true).await;
    assert_eq!(typing["d"]["user_id"], alice.id);
    assert_eq!(typing["d"]["channel_id"], guild.general);
    assert_eq!(typing["d"]["guild_id"], guild.id);
    assert_eq!(typing["s"], Value::Null, "typing is ephemeral");
}

async fn presence_follows_connections(encoding: Encoding) {
    let server = Server::start().await;
    let (_, users) = community(&server, &["alice", "bob"]).await;
    let [alice, bob] = &users[..] else { unreachable!() };
    let (mut alices, _) = Gateway::identified(&server, &alice.token, encoding).await;

    let (bobs, _) = Gateway::identified(&server, &bob.token, encoding).await;
    let online = alices.expect_dispatch("PRESENCE_UPDATE", |d| d["user_id"] == bob.id).await;
    assert_eq!(online["d"]["status"], "online");
    assert_eq!(online["s"], Value::Null);
    bobs.close().await;
    let offline = alices.expect_dispatch("PRESENCE_UPDATE", |d| d["user_id"] == bob.id).await;
    assert_eq!(offline["d"]["status"], "offline");
}

async fn joins_are_announced(encoding: Encoding) {
    let server = Server::start().await;
    let alice = server.register("alice").await;
    let carol = server.register("carol").await;
    let guild = alice.create_guild("Club").await;
    let (mut alices, _) = Gateway::identified(&server, &alice.token, encoding).await;
    let (mut carols, ready) = Gateway::identified(&server, &carol.token, encoding).await;
    assert_eq!(ready["guilds"], json!([]));

    carol.join(&alice.invite(&guild.general).await).await;
    let added = alices.expect_dispatch("GUILD_MEMBER_ADD", |_| true).await;
    assert_eq!(added["d"]["user_id"], carol.id);
    assert_eq!(added["d"]["guild_id"], guild.id);
    let created = carols.expect_dispatch("GUILD_CREATE", |_| true).await;
    assert_eq!(created["d"]["id"], guild.id);
    assert_eq!(created["d"]["member_count"], 2);
}

async fn resume_replays_missed_events_in_order(encoding: Encoding) {
    let server = Server::start().await;
    let (guild, users) = community(&server, &["alice", "bob"]).await;
    let [alice, bob] = &users[..] else { unreachable!() };
    let (gateway, ready) = Gateway::identified(&server, &bob.token, encoding).await;
    let session_id = ready["session_id"].as_str().unwrap().to_owned();
    let seq = gateway.last_seq.unwrap();
    gateway.close().await;

    for text in ["one", "two", "three"] {
        alice.send(&guild.general, text).await;
    }
    let mut gateway = Gateway::connect(&server, encoding).await;
    gateway
        .send(&json!({"op": 6, "d": {"token": bob.token, "session_id": session_id, "seq": seq}}))
        .await;
    let frames = gateway.collect_until("RESUMED", |_| true).await;
    assert_eq!(
        names(&frames),
        ["MESSAGE_CREATE", "MESSAGE_CREATE", "MESSAGE_CREATE", "RESUMED"],
        "{frames:?}"
    );
    let replayed: Vec<&Value> = frames[..3].iter().map(|f| &f["d"]["content"]).collect();
    assert_eq!(replayed, [&json!("one"), &json!("two"), &json!("three")]);
    let positions: Vec<i64> = frames[..3].iter().map(|f| f["s"].as_i64().unwrap()).collect();
    assert!(positions[0] > seq && positions.is_sorted(), "{positions:?}");
    assert_eq!(frames[3]["d"]["session_id"], session_id);

    // Live dispatches continue after the replay.
    alice.send(&guild.general, "four").await;
    let live = gateway.expect_dispatch("MESSAGE_CREATE", |_| true).await;
    assert_eq!(live["d"]["content"], "four");
    assert!(live["s"].as_i64().unwrap() > positions[2]);
}

async fn resuming_a_session_that_is_not_resumable_is_refused(encoding: Encoding) {
    let server = Server::start().await;
    let (_, users) = community(&server, &["alice", "bob"]).await;
    let [alice, bob] = &users[..] else { unreachable!() };
    let (_alices, ready) = Gateway::identified(&server, &alice.token, encoding).await;
    let live_session = ready["session_id"].as_str().unwrap().to_owned();

    let attempts = [
        (&bob.token, "nosuchsession".to_owned()),
        // Someone else's session, and a session that is still connected.
        (&bob.token, live_session.clone()),
        (&alice.token, live_session),
    ];
    for (token, session_id) in attempts {
        let mut gateway = Gateway::connect(&server, encoding).await;
        gateway
            .send(&json!({"op": 6, "d": {"token": token, "session_id": session_id, "seq": 0}}))
            .await;
        let invalid = gateway.expect_op(9).await;
        assert_eq!(invalid["d"], false, "{invalid}");
    }
}

async fn protocol_errors_close_with_their_codes(encoding: Encoding) {
    let server = Server::start().await;
    let alice = server.register("alice").await;

    let (mut gateway, _) = Gateway::identified(&server, &alice.token, encoding).await;
    gateway.send(&json!({"op": 99, "d": null})).await;
    assert_eq!(gateway.expect_close().await, 4001, "unknown opcode");

    let mut gateway = Gateway::connect(&server, encoding).await;
    gateway.send(&json!({"op": 2, "d": {"token": "gh_not_a_real_token"}})).await;
    assert_eq!(gateway.expect_close().await, 4004, "bad token");

    let mut gateway = Gateway::connect(&server, encoding).await;
    gateway.send(&json!({"op": 1, "d": null})).await;
    assert_eq!(gateway.expect_close().await, 4003, "heartbeat before identify");

    let (mut gateway, _) = Gateway::identified(&server, &alice.token, encoding).await;
    gateway.send(&json!({"op": 2, "d": {"token": alice.token}})).await;
    assert_eq!(gateway.expect_close().await, 4005, "identify twice");

    // After logout the token no longer opens a session.
    assert_eq!(alice.post_empty("/auth/logout").await.0, StatusCode::NO_CONTENT);
    let mut gateway = Gateway::connect(&server, encoding).await;
    gateway.send(&json!({"op": 2, "d": {"token": alice.token}})).await;
    assert_eq!(gateway.expect_close().await, 4004, "revoked token");
}

#[tokio::test]
async fn an_undecodable_frame_closes_with_4002() {
    let server = Server::start().await;
    let alice = server.register("alice").await;
    for encoding in [Encoding::Json, Encoding::Msgpack] {
        let (mut gateway, _) = Gateway::identified(&server, &alice.token, encoding).await;
        // Broken JSON, and on a msgpack connection any text frame.
        gateway.send_text("{\"op\": 1,").await;
        assert_eq!(gateway.expect_close().await, 4002, "{encoding:?}");
    }
}

#[tokio::test]
async fn a_silent_client_is_closed_with_4009() {
    let server =
        Server::builder().env("GUILDHALL_GATEWAY__HEARTBEAT_INTERVAL_MS", "1000").start().await;
    let alice = server.register("alice").await;
    let (mut gateway, _) = Gateway::identified(&server, &alice.token, Encoding::Json).await;
    assert_eq!(gateway.hello["heartbeat_interval"], 1000);
    assert_eq!(gateway.expect_close().await, 4009);
}

#[tokio::test]
async fn an_unknown_encoding_is_refused() {
    let server = Server::start().await;
    let url = server.gateway_url("xml");
    assert!(tokio_tungstenite::connect_async(url).await.is_err());
}

#[tokio::test]
async fn a_client_that_stops_reading_is_closed_with_4008_and_resumes_without_loss() {
    let server = Server::builder().env("GUILDHALL_GATEWAY__SESSION_QUEUE", "16").start().await;
    let (guild, users) = community(&server, &["alice", "bob"]).await;
    let [alice, bob] = &users[..] else { unreachable!() };
    let (mut slow, ready) = Gateway::identified(&server, &bob.token, Encoding::Json).await;
    let session_id = ready["session_id"].as_str().unwrap().to_owned();

    // Bob's client stops reading while far more arrives than the socket buffers can hold.
    const MESSAGES: usize = 4000;
    let padding = "x".repeat(3900);
    let senders: Vec<_> = (0..4)
        .map(|sender| {
            let (alice, channel, padding) = (alice.clone(), guild.general.clone(), padding.clone());
            tokio::spawn(async move {
                for index in (sender..MESSAGES).step_by(4) {
                    alice.send(&channel, &format!("{index:05} {padding}")).await;
                }
            })
        })
        .collect();
    for sender in senders {
        sender.await.unwrap();
    }

    // Reading again: what was buffered, then the resumable close; no other user was slowed.
    let mut seen = std::collections::BTreeSet::new();
    let code = loop {
        match slow.receive(Duration::from_secs(30)).await {
            Some(Received::Frame(frame)) if frame["t"] == "MESSAGE_CREATE" => {
                seen.insert(frame["d"]["content"].as_str().unwrap()[..5].to_owned());
            }
            Some(Received::Frame(_)) => {}
            Some(Received::Closed(code)) => break code,
            None => panic!("no close after {} messages", seen.len()),
        }
    };
    assert_eq!(code, Some(4008), "after {} messages", seen.len());
    assert!(seen.len() < MESSAGES, "the client was not slow enough to fall behind");

    // Resuming from the last position seen replays exactly the rest.
    let mut resumed = Gateway::connect(&server, Encoding::Json).await;
    let seq = slow.last_seq.unwrap();
    resumed
        .send(&json!({"op": 6, "d": {"token": bob.token, "session_id": session_id, "seq": seq}}))
        .await;
    let frames = resumed.collect_until("RESUMED", |_| true).await;
    let mut duplicates = 0;
    for frame in frames.iter().filter(|f| f["t"] == "MESSAGE_CREATE") {
        if !seen.insert(frame["d"]["content"].as_str().unwrap()[..5].to_owned()) {
            duplicates += 1;
        }
    }
    assert_eq!(
        (seen.len(), duplicates),
        (MESSAGES, 0),
        "every message exactly once across the close"
    );
}
