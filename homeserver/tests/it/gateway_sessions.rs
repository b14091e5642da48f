//! Gateway sessions over time: what a resume tells a client that was away, rate limits on what
//! a client sends, logins that end, and dispatches that must not reach everyone.

use crate::harness::{
    Encoding, Gateway, Server, StatusCode, User, Value, bits, community, json, names,
    private_channel,
};

/// READ_MESSAGE_HISTORY.
const READ_MESSAGE_HISTORY: u64 = 1 << 16;

/// Identifies `user`, then disconnects; returns the session id and the last position seen.
async fn leave(server: &Server, user: &User) -> (String, i64) {
    let (gateway, ready) = Gateway::identified(server, &user.token, Encoding::Json).await;
    let session_id = ready["session_id"].as_str().expect("a session id").to_owned();
    let seq = gateway.last_seq.expect("READY carries a position");
    gateway.close().await;
    (session_id, seq)
}

/// Resumes a session; returns the connection and every frame up to and including RESUMED.
async fn resume(server: &Server, user: &User, session_id: &str, seq: i64) -> (Gateway, Vec<Value>) {
    let mut gateway = Gateway::connect(server, Encoding::Json).await;
    let resume = json!({"op": 6, "d": {"token": user.token, "session_id": session_id, "seq": seq}});
    gateway.send(&resume).await;
    let frames = gateway.collect_until("RESUMED", |_| true).await;
    (gateway, frames)
}

#[tokio::test]
async fn a_resumed_session_learns_of_kicks_and_channels_it_lost() {
    let server = Server::start().await;
    let (guild, users) = community(&server, &["alice", "bob"]).await;
    let [alice, bob] = &users[..] else { unreachable!() };
    let staff = private_channel(alice, &guild.id, "staff").await;
    let allow = json!({"kind": "member", "allow": bits::text(bits::VIEW_CHANNEL)});
    let (status, _) = alice.put(&format!("/channels/{staff}/permissions/{}", bob.id), allow).await;
    assert_eq!(status, StatusCode::OK);
    let other = alice.create_guild("Other").await;
    bob.join(&alice.invite(&other.general).await).await;

    let (session_id, seq) = leave(&server, bob).await;
    let kind = json!({"kind": "member"});
    let (status, _) =
        alice.delete_with(&format!("/channels/{staff}/permissions/{}", bob.id), kind).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = alice.delete(&format!("/guilds/{}/members/{}", other.id, bob.id)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    let (_, frames) = resume(&server, bob, &session_id, seq).await;
    let lost_channel = frames.iter().any(|f| f["t"] == "CHANNEL_DELETE" && f["d"]["id"] == staff);
    let lost_guild = frames.iter().any(|f| f["t"] == "GUILD_DELETE" && f["d"]["id"] == other.id);
    assert!(lost_channel && lost_guild, "got {:?}", names(&frames));
}

#[tokio::test]
async fn a_resume_replays_messages_only_where_history_may_be_read() {
    let server = Server::start().await;
    let (guild, users) = community(&server, &["alice", "bob"]).await;
    let [alice, bob] = &users[..] else { unreachable!() };
    let (status, body) =
        alice.post(&format!("/guilds/{}/channels", guild.id), json!({"name": "live-only"})).await;
    assert_eq!(status, StatusCode::CREATED);
    let live_only = body["id"].as_str().unwrap().to_owned();
    let deny = json!({"kind": "role", "deny": bits::text(READ_MESSAGE_HISTORY)});
    let (status, _) = alice.put(&format!("/channels/{live_only}/permissions/everyone"), deny).await;
    assert_eq!(status, StatusCode::OK);

    let (session_id, seq) = leave(&server, bob).await;
    alice.send(&live_only, "said while bob was away").await;
    alice.send(&guild.general, "history bob may read").await;

    let (_, frames) = resume(&server, bob, &session_id, seq).await;
    let replayed: Vec<&Value> =
        frames.iter().filter(|f| f["t"] == "MESSAGE_CREATE").map(|f| &f["d"]["content"]).collect();
    assert_eq!(replayed, [&json!("history bob may read")]);
}

#[tokio::test]
async fn invisible_stays_invisible_across_a_resume() {
    let server = Server::start().await;
    let (_, users) = community(&server, &["alice", "bob"]).await;
    let [alice, bob] = &users[..] else { unreachable!() };
    let (mut alices, _) = Gateway::identified(&server, &alice.token, Encoding::Json).await;
    let (mut bobs, ready) = Gateway::identified(&server, &bob.token, Encoding::Json).await;
    let session_id = ready["session_id"].as_str().unwrap().to_owned();
    alices.expect_dispatch("PRESENCE_UPDATE", |d| d["user_id"] == bob.id).await;
    bobs.send(&json!({"op": 3, "d": {"status": "invisible"}})).await;
    let hidden = alices.expect_dispatch("PRESENCE_UPDATE", |d| d["user_id"] == bob.id).await;
    assert_eq!(hidden["d"]["status"], "offline");
    let seq = bobs.last_seq.unwrap();
    bobs.close().await;

    let (mut bobs, _) = resume(&server, bob, &session_id, seq).await;
    // The next status alice sees is the one bob chooses next, not "online" from the resume.
    bobs.send(&json!({"op": 3, "d": {"status": "dnd"}})).await;
    let next = alices.expect_dispatch("PRESENCE_UPDATE", |d| d["user_id"] == bob.id).await;
    assert_eq!(next["d"]["status"], "dnd");
}

#[tokio::test]
async fn logging_out_or_revoking_a_session_closes_its_gateway_connections() {
    let server = Server::start().await;
    let bob = server.register("bob").await;
    let (mut gateway, ready) = Gateway::identified(&server, &bob.token, Encoding::Json).await;
    let session_id = ready["session_id"].as_str().unwrap().to_owned();
    let seq = gateway.last_seq.unwrap();
    let (status, _) = bob.post_empty("/auth/logout").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(gateway.expect_close().await, 4004);
    // Nor can the session be resumed with another login of the same user.
    let again = server.login("bob").await;
    let mut gateway = Gateway::connect(&server, Encoding::Json).await;
    let resume =
        json!({"op": 6, "d": {"token": again.token, "session_id": session_id, "seq": seq}});
    gateway.send(&resume).await;
    assert_eq!(gateway.expect_op(9).await["d"], false);

    // Revoked from another device.
    let (mut gateway, _) = Gateway::identified(&server, &again.token, Encoding::Json).await;
    let third = server.login("bob").await;
    let (_, sessions) = third.get("/auth/sessions").await;
    let target = sessions["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["current"] == false)
        .and_then(|s| s["id"].as_str())
        .unwrap()
        .to_owned();
    let (status, _) = third.delete(&format!("/auth/sessions/{target}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(gateway.expect_close().await, 4004);
}

#[tokio::test]
async fn a_client_over_its_frame_budget_is_closed() {
    let server = Server::builder().env("GUILDHALL_GATEWAY__FRAMES_PER_MINUTE", "20").start().await;
    let bob = server.register("bob").await;
    let (mut gateway, _) = Gateway::identified(&server, &bob.token, Encoding::Json).await;
    for _ in 0..25 {
        gateway.send(&json!({"op": 1, "d": null})).await;
    }
    assert_eq!(gateway.expect_close().await, 4008);

    // Presence has its own, smaller budget (5 a minute by default).
    let (mut gateway, _) = Gateway::identified(&server, &bob.token, Encoding::Json).await;
    for status in ["idle", "dnd", "online", "idle", "dnd", "online"] {
        gateway.send(&json!({"op": 3, "d": {"status": status}})).await;
    }
    assert_eq!(gateway.expect_close().await, 4008);
}

#[tokio::test]
async fn invite_and_hidden_channel_events_reach_only_those_allowed() {
    let server = Server::start().await;
    let (guild, users) = community(&server, &["alice", "bob"]).await;
    let [alice, bob] = &users[..] else { unreachable!() };
    let secret = private_channel(alice, &guild.id, "secret").await;
    let (mut alices, _) = Gateway::identified(&server, &alice.token, Encoding::Json).await;
    let (mut bobs, _) = Gateway::identified(&server, &bob.token, Encoding::Json).await;

    alice.invite(&guild.general).await;
    let (status, _) =
        alice.patch(&format!("/channels/{secret}"), json!({"name": "renamed-secret"})).await;
    assert_eq!(status, StatusCode::OK);
    alice.send(&guild.general, "marker").await;

    let alice_saw = alices.collect_until("MESSAGE_CREATE", |d| d["content"] == "marker").await;
    assert!(names(&alice_saw).contains(&"INVITE_CREATE"), "{:?}", names(&alice_saw));
    let bob_saw = bobs.collect_until("MESSAGE_CREATE", |d| d["content"] == "marker").await;
    let bob_saw: Vec<&str> =
        names(&bob_saw).into_iter().filter(|name| *name != "PRESENCE_UPDATE").collect();
    assert_eq!(bob_saw, ["MESSAGE_CREATE"], "bob may see neither");

    // A member's own invite is theirs to see.
    bob.invite(&guild.general).await;
    let invite = bobs.expect_dispatch("INVITE_CREATE", |_| true).await;
    assert_eq!(invite["d"]["creator"], bob.id);
}

#[tokio::test]
async fn a_channel_created_private_never_shows_its_name_to_others() {
    let server = Server::start().await;
    let (guild, users) = community(&server, &["alice", "bob"]).await;
    let [alice, bob] = &users[..] else { unreachable!() };
    let (mut bobs, _) = Gateway::identified(&server, &bob.token, Encoding::Json).await;
    let staff = private_channel(alice, &guild.id, "secret-plans").await;
    alice.send(&guild.general, "marker").await;
    let seen = bobs.collect_until("MESSAGE_CREATE", |d| d["content"] == "marker").await;
    let leaked = seen.iter().any(|frame| frame.to_string().contains("secret-plans"));
    assert!(!leaked, "bob saw the private channel: {:?}", names(&seen));
    let (status, _) = bob.get(&format!("/channels/{staff}/messages")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
