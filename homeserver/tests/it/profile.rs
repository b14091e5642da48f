//! The signed-in user's profile and other users' public profiles.

use crate::harness::*;

#[tokio::test]
async fn display_names_are_set_cleared_and_seen_by_others() {
    let server = Server::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;

    let (status, me) = alice.patch("/users/@me", json!({"display_name": "Alice A."})).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["display_name"], "Alice A.");
    let (status, seen) = bob.get(&format!("/users/{}", alice.id)).await;
    assert_eq!(status, StatusCode::OK, "{seen}");
    assert_eq!(seen["id"], alice.id);
    assert_eq!(seen["username"], "alice");
    assert_eq!(seen["display_name"], "Alice A.");
    assert!(seen.get("is_admin").is_none(), "a public profile hides account details: {seen}");

    // Refused names change nothing.
    for bad in [json!("   "), json!("x".repeat(65)), json!(42)] {
        let (status, body) = alice.patch("/users/@me", json!({"display_name": bad})).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
    assert_eq!(bob.get(&format!("/users/{}", alice.id)).await.1["display_name"], "Alice A.");

    // An absent field is unchanged; null clears it.
    let (_, me) = alice.patch("/users/@me", json!({})).await;
    assert_eq!(me["display_name"], "Alice A.");
    let (_, me) = alice.patch("/users/@me", json!({"display_name": null})).await;
    assert_eq!(me["display_name"], Value::Null);
    assert_eq!(bob.get(&format!("/users/{}", alice.id)).await.1["display_name"], Value::Null);
}

#[tokio::test]
async fn unknown_and_malformed_user_ids() {
    let server = Server::start().await;
    let alice = server.register("alice").await;
    let unknown = server.user_id("nobody");
    assert_error(
        &alice.get(&format!("/users/{unknown}")).await,
        StatusCode::NOT_FOUND,
        "unknown_user",
    );
    assert_error(&alice.get("/users/nobody").await, StatusCode::BAD_REQUEST, "invalid_id");
    assert_error(
        &server.client().get(&format!("/users/{}", alice.id)).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
}
