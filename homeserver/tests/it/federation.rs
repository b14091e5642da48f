//! Federation between real `guildhall` processes on loopback: a guild hosted on A, members on
//! B and C, and what must (and must not) cross between them.

use std::time::{Duration, Instant};

use crate::harness::{Encoding, Gateway, Server, StatusCode, User, Value, json};

/// A server that federates over plain HTTP on loopback.
async fn federating() -> Server {
    federating_builder().start().await
}

fn federating_builder() -> crate::harness::ServerBuilder {
    Server::builder().env("GUILDHALL_FEDERATION__DANGER_ALLOW_PLAIN_HTTP", "true")
}

/// Joins `user` (on another server) to a guild hosted on `host` through an invite code.
async fn join_remote(user: &User, host: &Server, code: &str) -> Value {
    let (status, body) = user.post_empty(&format!("/invites/{code}?server={}", host.name())).await;
    assert_eq!(status, StatusCode::OK, "{} joins {code} on {}: {body}", user.name, host.name());
    body
}

/// Polls until `check` holds or `within` passes; returns the last value seen.
async fn eventually<T, F, Fut>(within: Duration, mut probe: F, check: impl Fn(&T) -> bool) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let deadline = Instant::now() + within;
    loop {
        let value = probe().await;
        if check(&value) || Instant::now() > deadline {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn contents(user: &User, channel: &str) -> Vec<String> {
    let mut list = user.history_contents(channel).await;
    list.reverse();
    list
}

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
    assert!(mine.1["guilds"].as_array().is_some_and(|g| g.iter().any(|g| g["id"] == guild.id.as_str())), "{mine:?}");
    let (mut bob_gateway, ready) = Gateway::identified(&b, &bob.token, Encoding::Json).await;
    assert!(ready["guilds"].as_array().is_some_and(|g| g.iter().any(|g| g["id"] == guild.id.as_str())), "{ready}");
    alice.send(&guild.general, "hello bob").await;
    let seen = bob_gateway.expect_dispatch("MESSAGE_CREATE", |d| d["content"] == "hello bob").await;
    assert_eq!(seen["d"]["author_id"], alice.id.as_str());

    bob.send(&guild.general, "hello alice").await;
    let on_a = eventually(Duration::from_secs(10), || contents(&alice, &guild.general), |c| c.len() == 3).await;
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
        let history = eventually(Duration::from_secs(10), || contents(user, &guild.general), |h| h.len() == sent.len()).await;
        assert_eq!(history, sent, "history on {}'s server", user.name);
    }
}

#[tokio::test]
async fn a_private_channel_never_reaches_a_server_without_a_viewer() {
    let (a, b, c) = (federating().await, federating().await, federating().await);
    let alice = a.register("alice").await;
    let bob = b.register("bob").await;
    let carol = c.register("carol").await;
    let guild = alice.create_guild("Secrets").await;
    let code = alice.invite(&guild.general).await;
    join_remote(&bob, &a, &code).await;
    join_remote(&carol, &a, &code).await;
    let secret = crate::harness::private_channel(&alice, &guild.id, "staff").await;
    // Bob may see the channel; nobody on C may.
    let (status, body) = alice
        .put(&format!("/channels/{secret}/permissions/{}", bob.id), json!({"kind": "member", "allow": "1024", "deny": "0"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    alice.send(&secret, "the launch code is 0000").await;
    alice.send(&guild.general, "sentinel").await;

    let on_b = eventually(Duration::from_secs(10), || contents(&bob, &secret), |h| !h.is_empty()).await;
    assert_eq!(on_b, vec!["the launch code is 0000"]);
    eventually(Duration::from_secs(10), || contents(&carol, &guild.general), |h| h.contains(&"sentinel".to_owned())).await;
    // C holds the event (the chain stays complete) but never its content, anywhere.
    let dump = std::fs::read(c.dir().join("guildhall.sqlite3")).unwrap_or_default();
    let wal = std::fs::read(c.dir().join("guildhall.sqlite3-wal")).unwrap_or_default();
    let needle = b"launch code";
    let leaked = |bytes: &[u8]| bytes.windows(needle.len()).any(|window| window == needle);
    assert!(!leaked(&dump) && !leaked(&wal), "C's database contains the private message");
    let (status, _) = carol.get(&format!("/channels/{secret}/messages")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
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
        let (speaker, text) = if index % 2 == 0 { (&alice, format!("a{index}")) } else { (&carol, format!("c{index}")) };
        speaker.send(&guild.general, &text).await;
        expected.push(text);
    }
    b.launch().await;
    let bob = b.login("bob").await;
    let on_b = eventually(Duration::from_secs(20), || contents(&bob, &guild.general), |h| h.len() >= expected.len()).await;
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
        let (status, body) = bob.post(&format!("/channels/{}/messages", guild.general), json!({"content": text})).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        assert_eq!(body["code"], "queued");
    }
    a.launch().await;
    let alice = a.login("alice").await;
    let on_a = eventually(Duration::from_secs(40), || contents(&alice, &guild.general), |h| h.len() == 2).await;
    assert_eq!(on_a, vec!["queued one", "queued two"]);
    let on_b = eventually(Duration::from_secs(10), || contents(&bob, &guild.general), |h| h.len() == 2).await;
    assert_eq!(on_b, on_a);
}
