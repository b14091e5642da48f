//! Federation between real `guildhall` processes on loopback: a guild hosted on A, members on
//! B and C, and what must (and must not) cross between them.

mod e2e_keys;
mod e2ee;
mod identity;
mod libolm;
mod media;
mod replication;
mod security;
mod trust;
mod visibility;
mod voice;
mod voice_moderation;
mod voice_node;

use std::time::{Duration, Instant};

use crate::harness::{Server, StatusCode, User, Value};

/// A server that federates over plain HTTP on loopback.
pub(crate) async fn federating() -> Server {
    federating_builder().start().await
}

pub(crate) fn federating_builder() -> crate::harness::ServerBuilder {
    Server::builder()
        .env("GUILDHALL_FEDERATION__DANGER_ALLOW_PLAIN_HTTP", "true")
        .env("GUILDHALL_FEDERATION__DANGER_ALLOW_PRIVATE_ADDRESSES", "true")
}

/// Joins `user` (on another server) to a guild hosted on `host` through an invite code.
pub(crate) async fn join_remote(user: &User, host: &Server, code: &str) -> Value {
    let (status, body) = user.post_empty(&format!("/invites/{code}?server={}", host.name())).await;
    assert_eq!(status, StatusCode::OK, "{} joins {code} on {}: {body}", user.name, host.name());
    body
}

/// Polls until `check` holds or `within` passes; returns the last value seen.
pub(crate) async fn eventually<T, F, Fut>(
    within: Duration,
    mut probe: F,
    check: impl Fn(&T) -> bool,
) -> T
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

/// A channel's messages as `user`'s own server shows them, oldest first; empty while that
/// server does not (yet) know the channel or let the user see it.
pub(crate) async fn contents(user: &User, channel: &str) -> Vec<String> {
    let (status, body) = user.get(&format!("/channels/{channel}/messages?limit=100")).await;
    if status != StatusCode::OK {
        return Vec::new();
    }
    let mut list: Vec<String> = body["messages"]
        .as_array()
        .map(|messages| {
            messages.iter().filter_map(|m| m["content"].as_str().map(str::to_owned)).collect()
        })
        .unwrap_or_default();
    list.reverse();
    list
}
