//! One ordered log on every server: joins, writes both ways, catch-up after downtime, queued
//! proposals, remote moderation, cross-server DMs.

use std::time::Duration;

use super::*;
use crate::harness::{Encoding, Gateway, Received, StatusCode, json, short};

#[tokio::test]
async fn a_remote_member_joins_reads_and_writes() {
    let a = federating().await;
    let b = federating().await;
    let alice = a.register("alice").await;
    let bob = b.register("bob").await;
    let guild = alice.create_guild("Across").await;
    alice.send(&guild.general, "before bob").await;
    let code = alice.invite(&guild.general).await;

    let joined = join_remote(&bob, &a, &code).await;
    assert_eq!(joined["id"], guild.id.as_str());
    // Bob's server shows the history the host sent with the join.
    assert_eq!(contents(&bob, &guild.general).await, vec!["before bob"]);

    let mine = bob.get("/users/@me/guilds").await;
    assert!(
        mine.1["guilds"].as_array().is_some_and(|g| g.iter().any(|g| g["id"] == guild.id.as_str())),
        "{mine:?}"
    );
    let (mut bob_gateway, ready) = Gateway::identified(&b, &bob.token, Encoding::Json).await;
    assert!(
        ready["guilds"].as_array().is_some_and(|g| g.iter().any(|g| g["id"] == guild.id.as_str())),
        "{ready}"
    );
    alice.send(&guild.general, "hello bob").await;
    let seen = bob_gateway.expect_dispatch("MESSAGE_CREATE", |d| d["content"] == "hello bob").await;
    assert_eq!(seen["d"]["author_id"], alice.id.as_str());

    bob.send(&guild.general, "hello alice").await;
    let on_a =
        eventually(Duration::from_secs(10), || contents(&alice, &guild.general), |c| c.len() == 3)
            .await;
    assert_eq!(on_a, vec!["before bob", "hello bob", "hello alice"]);
    assert_eq!(contents(&bob, &guild.general).await, on_a);
}

/// Collects `count` MESSAGE_CREATE contents from a gateway, in arrival order.
async fn collect_messages(gateway: &mut Gateway, count: usize) -> Vec<String> {
    let mut seen = Vec::new();
    while seen.len() < count {
        let frame = gateway.expect_dispatch("MESSAGE_CREATE", |_| true).await;
        seen.push(frame["d"]["content"].as_str().unwrap_or_default().to_owned());
    }
    seen
}

#[tokio::test]
async fn three_servers_see_one_log_in_one_order() {
    let (a, b, c) = (federating().await, federating().await, federating().await);
    let alice = a.register("alice").await;
    let bob = b.register("bob").await;
    let carol = c.register("carol").await;
    let guild = alice.create_guild("Three").await;
    let code = alice.invite(&guild.general).await;
    join_remote(&bob, &a, &code).await;
    join_remote(&carol, &a, &code).await;

    let mut gateways = Vec::new();
    for (server, user) in [(&a, &alice), (&b, &bob), (&c, &carol)] {
        gateways.push(Gateway::identified(server, &user.token, Encoding::Json).await.0);
    }
    let mut sent = Vec::new();
    for round in 0..3 {
        for user in [&alice, &bob, &carol] {
            let text = format!("{} says {round}", user.name);
            user.send(&guild.general, &text).await;
            sent.push(text);
        }
    }
    for gateway in &mut gateways {
        assert_eq!(collect_messages(gateway, sent.len()).await, sent);
    }
    for user in [&alice, &bob, &carol] {
        let history = eventually(
            Duration::from_secs(10),
            || contents(user, &guild.general),
            |h| h.len() == sent.len(),
        )
        .await;
        assert_eq!(history, sent, "history on {}'s server", user.name);
    }
}

#[tokio::test]
async fn a_stopped_member_server_catches_up_exactly() {
    let (a, mut b, c) = (federating().await, federating().await, federating().await);
    let alice = a.register("alice").await;
    let bob = b.register("bob").await;
    let carol = c.register("carol").await;
    let guild = alice.create_guild("Resilient").await;
    let code = alice.invite(&guild.general).await;
    join_remote(&bob, &a, &code).await;
    join_remote(&carol, &a, &code).await;
    alice.send(&guild.general, "one").await;
    eventually(Duration::from_secs(10), || contents(&bob, &guild.general), |h| h.len() == 1).await;

    b.stop();
    let mut expected = vec!["one".to_owned()];
    for index in 0..6 {
        let (speaker, text) = if index % 2 == 0 {
            (&alice, format!("a{index}"))
        } else {
            (&carol, format!("c{index}"))
        };
        speaker.send(&guild.general, &text).await;
        expected.push(text);
    }
    b.launch().await;
    let bob = b.login("bob").await;
    let on_b = eventually(
        Duration::from_secs(20),
        || contents(&bob, &guild.general),
        |h| h.len() >= expected.len(),
    )
    .await;
    assert_eq!(on_b, expected, "B has every message once, in order");
    assert_eq!(contents(&alice, &guild.general).await, expected);
}

#[tokio::test]
async fn proposals_queued_while_the_host_is_down_arrive_after_it_restarts() {
    let (mut a, b) = (federating().await, federating().await);
    let alice = a.register("alice").await;
    let bob = b.register("bob").await;
    let guild = alice.create_guild("Patient").await;
    let code = alice.invite(&guild.general).await;
    join_remote(&bob, &a, &code).await;

    a.stop();
    for text in ["queued one", "queued two"] {
        let (status, body) = bob
            .post(&format!("/channels/{}/messages", guild.general), json!({"content": text}))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        assert_eq!(body["code"], "queued");
    }
    a.launch().await;
    let alice = a.login("alice").await;
    let on_a =
        eventually(Duration::from_secs(40), || contents(&alice, &guild.general), |h| h.len() == 2)
            .await;
    assert_eq!(on_a, vec!["queued one", "queued two"]);
    let on_b =
        eventually(Duration::from_secs(10), || contents(&bob, &guild.general), |h| h.len() == 2)
            .await;
    assert_eq!(on_b, on_a);
}

#[tokio::test]
async fn remote_members_edit_delete_react_pin_type_moderate_and_leave() {
    let (a, b, c) = (federating().await, federating().await, federating().await);
    let alice = a.register("alice").await;
    let bob = b.register("bob").await;
    let carol = c.register("carol").await;
    let guild = alice.create_guild("Busy").await;
    let code = alice.invite(&guild.general).await;
    join_remote(&bob, &a, &code).await;
    join_remote(&carol, &a, &code).await;
    let general = guild.general.clone();
    let (mut alice_gateway, _) = Gateway::identified(&a, &alice.token, Encoding::Json).await;

    // Presence and typing of a remote member reach the host's users.
    let (_bob_gateway, _) = Gateway::identified(&b, &bob.token, Encoding::Msgpack).await;
    alice_gateway
        .expect_dispatch("PRESENCE_UPDATE", |d| {
            d["user_id"] == bob.id.as_str() && d["status"] == "online"
        })
        .await;
    let (status, _) = bob.post_empty(&format!("/channels/{general}/typing")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    alice_gateway.expect_dispatch("TYPING_START", |d| d["user_id"] == bob.id.as_str()).await;

    // Edit and delete by the remote author.
    let typo = bob.send(&general, "helo").await;
    let (status, body) = bob
        .patch(
            &format!(
                "/channels/{general}/messages/{}",
                crate::harness::encode(typo["id"].as_str().unwrap())
            ),
            json!({"content": "hello"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let doomed = bob.send(&general, "delete me").await;
    let (status, body) = bob
        .delete(&format!(
            "/channels/{general}/messages/{}",
            crate::harness::encode(doomed["id"].as_str().unwrap())
        ))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    for user in [&alice, &carol] {
        let seen = eventually(
            Duration::from_secs(10),
            || contents(user, &general),
            |h| h == &vec!["hello".to_owned()],
        )
        .await;
        assert_eq!(seen, vec!["hello"], "on {}'s server", user.name);
    }

    // A remote reaction shows on a third server.
    let announcement = alice.send(&general, "announcement").await;
    let message_id = crate::harness::encode(announcement["id"].as_str().unwrap());
    eventually(
        Duration::from_secs(10),
        || contents(&carol, &general),
        |h| h.contains(&"announcement".to_owned()),
    )
    .await;
    let (status, body) = carol
        .put_empty(&format!(
            "/channels/{general}/messages/{message_id}/reactions/{}/@me",
            crate::harness::encode("👍")
        ))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let reacted = eventually(
        Duration::from_secs(10),
        || async { bob.history(&general).await },
        |h| h.iter().any(|m| m["content"] == "announcement" && m["reactions"][0]["count"] == 1),
    )
    .await;
    assert!(reacted.iter().any(|m| m["reactions"][0]["emoji"] == "👍"), "{reacted:?}");

    // A remote moderator pins and kicks.
    let moderator =
        alice.create_role(&guild.id, "mods", &((1u64 << 13) | (1 << 1)).to_string(), 1).await;
    alice.give_role(&guild.id, &bob.id, &moderator).await;
    eventually(
        Duration::from_secs(10),
        || async {
            bob.get(&format!(
                "/guilds/{}/members/{}",
                crate::harness::encode(&guild.id),
                crate::harness::encode(&bob.id)
            ))
            .await
        },
        |r| r.1["roles"].as_array().is_some_and(|r| !r.is_empty()),
    )
    .await;
    let (status, body) = bob.put_empty(&format!("/channels/{general}/pins/{message_id}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let pins = eventually(
        Duration::from_secs(10),
        || async { carol.get(&format!("/channels/{general}/pins")).await },
        |r| r.1["messages"].as_array().is_some_and(|m| m.len() == 1),
    )
    .await;
    assert_eq!(pins.1["messages"][0]["content"], "announcement");
    let (status, body) = bob
        .delete(&format!(
            "/guilds/{}/members/{}",
            crate::harness::encode(&guild.id),
            crate::harness::encode(&carol.id)
        ))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let gone = eventually(
        Duration::from_secs(10),
        || async { carol.get(&format!("/guilds/{}", crate::harness::encode(&guild.id))).await },
        |r| r.0 == StatusCode::NOT_FOUND,
    )
    .await;
    assert_eq!(gone.0, StatusCode::NOT_FOUND, "carol's server knows she was kicked");
    assert!(!alice.member_ids(&guild.id).await.contains(&carol.id));

    // A remote member leaves.
    let (status, body) =
        bob.delete(&format!("/guilds/{}/members/@me", crate::harness::encode(&guild.id))).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let members = eventually(
        Duration::from_secs(10),
        || alice.member_ids(&guild.id),
        |m| !m.contains(&bob.id),
    )
    .await;
    assert_eq!(members, vec![alice.id.clone()]);
}

#[tokio::test]
async fn a_direct_message_between_two_servers() {
    let (a, b) = (federating().await, federating().await);
    let alice = a.register("alice").await;
    let bob = b.register("bob").await;
    let (status, dm) = alice.post("/users/@me/channels", json!({"recipient": bob.id})).await;
    assert_eq!(status, StatusCode::OK, "{dm}");
    let channel = dm["channels"][0]["id"].as_str().expect("the DM's channel").to_owned();
    // Bob's server accepts the invitation on his behalf when it arrives.
    let bobs = eventually(
        Duration::from_secs(15),
        || async { bob.get("/users/@me/channels").await },
        |r| r.1["channels"].as_array().is_some_and(|c| !c.is_empty()),
    )
    .await;
    assert_eq!(bobs.1["channels"][0]["id"], dm["id"], "{bobs:?}");
    alice.send(&channel, "hi bob, across servers").await;
    bob.send(&channel, "hi alice").await;
    for user in [&alice, &bob] {
        let seen =
            eventually(Duration::from_secs(10), || contents(user, &channel), |h| h.len() == 2)
                .await;
        assert_eq!(seen, vec!["hi bob, across servers", "hi alice"], "on {}'s server", user.name);
    }
}

#[tokio::test]
async fn a_queued_message_survives_a_key_rotation_and_a_refusal_is_announced() {
    let (mut a, mut b) = (federating().await, federating().await);
    let alice = a.register("alice").await;
    let bob = b.register("bob").await;
    let guild = alice.create_guild("Rotating").await;
    join_remote(&bob, &a, &alice.invite(&guild.general).await).await;

    // Queued while the host is down, then B rotates its key before delivering it.
    a.stop();
    let (status, body) = bob
        .post(&format!("/channels/{}/messages", guild.general), json!({"content": "kept"}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    b.stop();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_guildhall"))
        .arg("--data-dir")
        .arg(b.dir())
        .env("GUILDHALL_SERVER__LISTEN", b.name())
        .args(["keys", "rotate"])
        .output()
        .expect("run guildhall keys rotate");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    b.launch().await;
    a.launch().await;
    let alice = a.login("alice").await;
    let on_a = eventually(
        Duration::from_secs(40),
        || contents(&alice, &guild.general),
        |h| h.contains(&"kept".to_owned()),
    )
    .await;
    assert!(on_a.contains(&"kept".to_owned()), "the queued message was lost: {on_a:?}");

    // A queued message the host refuses for good is announced to its sender. The host bans
    // B's server while B is down, then goes down itself before B learns of the ban.
    b.stop();
    let server_ban = format!("/guilds/{}/server-bans/{}", guild.id, b.name());
    let (status, _) = alice.put(&server_ban, json!({})).await;
    assert!(status.is_success(), "{status}");
    a.stop();
    b.launch().await;
    let bob = b.login("bob").await;
    let (mut bobs, _) = Gateway::identified(&b, &bob.token, Encoding::Json).await;
    let (status, body) = bob
        .post(&format!("/channels/{}/messages", guild.general), json!({"content": "refused"}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    a.launch().await;
    // The retry waits for B's backoff or A's first contact: longer than one frame's timeout.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let refused = loop {
        let within = deadline.saturating_duration_since(tokio::time::Instant::now());
        match bobs.receive(within).await {
            Some(Received::Frame(frame)) if frame["t"] == "PROPOSAL_REFUSED" => break frame,
            Some(Received::Frame(_)) => {}
            other => panic!("no PROPOSAL_REFUSED: {}", short(other.as_ref())),
        }
    };
    assert_eq!(refused["d"]["guild_id"], guild.id);
    assert_eq!(refused["d"]["code"], "server_banned");
}
