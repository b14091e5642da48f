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
