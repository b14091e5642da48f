//! Content reaches only servers with a user who may see it, and erased content never arrives.

use std::time::Duration;

use super::*;
use crate::harness::{StatusCode, json};

#[tokio::test]
async fn a_private_channel_never_reaches_a_server_without_a_viewer() {
    let (a, b) = (federating().await, federating().await);
    // C's database file is searched below.
    let c = federating_builder().sqlite().start().await;
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
        .put(
            &format!("/channels/{secret}/permissions/{}", bob.id),
            json!({"kind": "member", "allow": "1024", "deny": "0"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    alice.send(&secret, "the launch code is 0000").await;
    alice.send(&guild.general, "sentinel").await;

    let on_b =
        eventually(Duration::from_secs(10), || contents(&bob, &secret), |h| !h.is_empty()).await;
    assert_eq!(on_b, vec!["the launch code is 0000"]);
    eventually(
        Duration::from_secs(10),
        || contents(&carol, &guild.general),
        |h| h.contains(&"sentinel".to_owned()),
    )
    .await;
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
async fn withheld_content_arrives_once_access_is_granted() {
    let (a, c) = (federating().await, federating().await);
    let alice = a.register("alice").await;
    let carol = c.register("carol").await;
    let guild = alice.create_guild("Later").await;
    let code = alice.invite(&guild.general).await;
    join_remote(&carol, &a, &code).await;
    let secret = crate::harness::private_channel(&alice, &guild.id, "vault").await;
    alice.send(&secret, "written while carol could not look").await;
    alice.send(&guild.general, "sentinel").await;
    eventually(
        Duration::from_secs(10),
        || contents(&carol, &guild.general),
        |h| h.contains(&"sentinel".to_owned()),
    )
    .await;
    assert_eq!(carol.get(&format!("/channels/{secret}/messages")).await.0, StatusCode::NOT_FOUND);

    let (status, body) = alice
        .put(
            &format!("/channels/{secret}/permissions/{}", carol.id),
            json!({"kind": "member", "allow": "1024", "deny": "0"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let seen = eventually(
        Duration::from_secs(15),
        || async {
            let (status, body) = carol.get(&format!("/channels/{secret}/messages")).await;
            if status == StatusCode::OK {
                body["messages"].as_array().cloned().unwrap_or_default()
            } else {
                Vec::new()
            }
        },
        |messages| !messages.is_empty(),
    )
    .await;
    assert_eq!(
        seen.first().map(|m| m["content"].clone()),
        Some(json!("written while carol could not look"))
    );
}

#[tokio::test]
async fn a_message_deleted_while_a_member_server_is_down_never_reaches_it() {
    // B's database file is searched below.
    let (a, mut b) = (federating().await, federating_builder().sqlite().start().await);
    let alice = a.register("alice").await;
    let bob = b.register("bob").await;
    let guild = alice.create_guild("Regrets").await;
    let code = alice.invite(&guild.general).await;
    join_remote(&bob, &a, &code).await;
    b.stop();
    let message = alice.send(&guild.general, "a regrettable sentence").await;
    let (status, _) = alice
        .delete(&format!(
            "/channels/{}/messages/{}",
            guild.general,
            crate::harness::encode(message["id"].as_str().unwrap())
        ))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    alice.send(&guild.general, "after").await;
    b.launch().await;
    let bob = b.login("bob").await;
    let seen = eventually(
        Duration::from_secs(20),
        || contents(&bob, &guild.general),
        |h| h == &vec!["after".to_owned()],
    )
    .await;
    assert_eq!(seen, vec!["after"]);
    // Give the queued delivery a moment to arrive, then look for the words anywhere on B.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let needle = b"regrettable";
    for file in ["guildhall.sqlite3", "guildhall.sqlite3-wal"] {
        let bytes = std::fs::read(b.dir().join(file)).unwrap_or_default();
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle),
            "{file} on B holds the deleted message"
        );
    }
}
