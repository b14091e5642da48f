//! Friends, blocks and direct messages between local users.

use crate::harness::*;

async fn relationships(user: &User) -> Vec<(String, String)> {
    let (status, body) = user.get("/users/@me/relationships").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["relationships"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (r["user_id"].as_str().unwrap().to_owned(), r["type"].as_str().unwrap().to_owned())
        })
        .collect()
}

fn pair(user: &User, kind: &str) -> (String, String) {
    (user.id.clone(), kind.to_owned())
}

#[tokio::test]
async fn a_friend_request_is_accepted_and_the_friendship_removed() {
    let server = Server::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let friend = json!({"type": "friend"});

    let (status, sent) =
        alice.put(&format!("/users/@me/relationships/{}", bob.id), friend.clone()).await;
    assert_eq!(status, StatusCode::OK, "{sent}");
    assert_eq!(sent["type"], "outgoing");
    assert_eq!(relationships(&alice).await, [pair(&bob, "outgoing")]);
    assert_eq!(relationships(&bob).await, [pair(&alice, "incoming")]);

    let (status, accepted) =
        bob.put(&format!("/users/@me/relationships/{}", alice.id), friend.clone()).await;
    assert_eq!(status, StatusCode::OK, "{accepted}");
    assert_eq!(accepted["type"], "friends");
    assert_eq!(relationships(&alice).await, [pair(&bob, "friends")]);
    assert_eq!(relationships(&bob).await, [pair(&alice, "friends")]);

    assert_eq!(
        alice.delete(&format!("/users/@me/relationships/{}", bob.id)).await.0,
        StatusCode::NO_CONTENT
    );
    assert!(relationships(&alice).await.is_empty());
    assert!(relationships(&bob).await.is_empty());
    let again = alice.delete(&format!("/users/@me/relationships/{}", bob.id)).await;
    assert_error(&again, StatusCode::NOT_FOUND, "unknown_relationship");

    let nobody = server.user_id("nobody");
    assert_error(
        &alice.put(&format!("/users/@me/relationships/{nobody}"), friend.clone()).await,
        StatusCode::NOT_FOUND,
        "unknown_user",
    );
    assert_error(
        &alice.put(&format!("/users/@me/relationships/{}", alice.id), friend.clone()).await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    );
    assert_error(
        &alice.put(&format!("/users/@me/relationships/{}", bob.id), json!({"type": "enemy"})).await,
        StatusCode::BAD_REQUEST,
        "invalid_body",
    );
    assert!(relationships(&alice).await.is_empty());
}

#[tokio::test]
async fn a_block_prevents_friend_requests_and_direct_messages_both_ways() {
    let server = Server::start().await;
    let alice = server.register("alice").await;
    let carol = server.register("carol").await;

    assert_eq!(
        alice
            .put(&format!("/users/@me/relationships/{}", carol.id), json!({"type": "friend"}))
            .await
            .0,
        StatusCode::OK
    );
    let (status, blocked) = carol
        .put(&format!("/users/@me/relationships/{}", alice.id), json!({"type": "block"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{blocked}");
    assert_eq!(blocked["type"], "blocked");
    // The block ended the pending request.
    assert_eq!(relationships(&carol).await, [pair(&alice, "blocked")]);
    assert!(relationships(&alice).await.is_empty());

    for (from, to) in [(&alice, &carol), (&carol, &alice)] {
        let request = from
            .put(&format!("/users/@me/relationships/{}", to.id), json!({"type": "friend"}))
            .await;
        assert_error(&request, StatusCode::FORBIDDEN, "blocked");
        assert_error(
            &from.post("/users/@me/channels", json!({"recipient": to.id})).await,
            StatusCode::FORBIDDEN,
            "blocked",
        );
    }
    assert!(alice.get("/users/@me/channels").await.1["channels"].as_array().unwrap().is_empty());

    // Unblocking allows them again.
    assert_eq!(
        carol.delete(&format!("/users/@me/relationships/{}", alice.id)).await.0,
        StatusCode::NO_CONTENT
    );
    assert!(relationships(&carol).await.is_empty());
    let request = alice
        .put(&format!("/users/@me/relationships/{}", carol.id), json!({"type": "friend"}))
        .await;
    assert_eq!(request.0, StatusCode::OK, "{request:?}");
}

#[tokio::test]
async fn a_direct_message_is_private_to_its_two_users() {
    let server = Server::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let eve = server.register("eve").await;

    let (status, dm) = alice.post("/users/@me/channels", json!({"recipient": bob.id})).await;
    assert_eq!(status, StatusCode::OK, "{dm}");
    assert_eq!(dm["kind"], "dm");
    assert_eq!(dm["recipient"], bob.id);
    let mut members = ids(&dm["members"], "user_id");
    members.sort();
    let mut expected = vec![alice.id.clone(), bob.id.clone()];
    expected.sort();
    assert_eq!(members, expected);
    let channel = dm["channels"][0]["id"].as_str().unwrap().to_owned();

    // Opening it again, from either side, finds the same conversation.
    assert_eq!(
        alice.post("/users/@me/channels", json!({"recipient": bob.id})).await.1["id"],
        dm["id"]
    );
    assert_eq!(
        bob.post("/users/@me/channels", json!({"recipient": alice.id})).await.1["id"],
        dm["id"]
    );
    assert_eq!(
        ids(&bob.get("/users/@me/channels").await.1["channels"], "id"),
        [dm["id"].as_str().unwrap()]
    );

    alice.send(&channel, "hi bob").await;
    bob.send(&channel, "hi alice").await;
    assert_eq!(alice.history_contents(&channel).await, ["hi alice", "hi bob"]);
    assert_eq!(bob.history_contents(&channel).await, ["hi alice", "hi bob"]);

    assert_error(
        &eve.get(&format!("/channels/{channel}/messages")).await,
        StatusCode::NOT_FOUND,
        "unknown_channel",
    );
    let intrusion =
        eve.post(&format!("/channels/{channel}/messages"), json!({"content": "hello?"})).await;
    assert_error(&intrusion, StatusCode::NOT_FOUND, "unknown_channel");
    assert!(eve.get("/users/@me/channels").await.1["channels"].as_array().unwrap().is_empty());
    assert_eq!(alice.history(&channel).await.len(), 2);

    // A block after the fact stops new messages in the existing conversation.
    assert_eq!(
        alice
            .put(&format!("/users/@me/relationships/{}", bob.id), json!({"type": "block"}))
            .await
            .0,
        StatusCode::OK
    );
    let refused =
        bob.post(&format!("/channels/{channel}/messages"), json!({"content": "why?"})).await;
    assert_error(&refused, StatusCode::FORBIDDEN, "blocked");
    assert_eq!(alice.history_contents(&channel).await, ["hi alice", "hi bob"]);

    assert_error(
        &alice.post("/users/@me/channels", json!({"recipient": alice.id})).await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    );
    let nobody = server.user_id("nobody");
    assert_error(
        &alice.post("/users/@me/channels", json!({"recipient": nobody})).await,
        StatusCode::NOT_FOUND,
        "unknown_user",
    );
}
