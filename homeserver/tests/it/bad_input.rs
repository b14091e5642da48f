//! Malformed requests: bodies, content types, sizes, ids, tokens, unknown resources and rate
//! limits. Every refusal has a stable code and leaves nothing behind.

use reqwest::Method;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};

use crate::harness::*;

async fn guild_count(user: &User) -> usize {
    user.get("/users/@me/guilds").await.1["guilds"].as_array().unwrap().len()
}

#[tokio::test]
async fn bodies_must_be_well_formed_json_of_the_right_shape() {
    let server = Server::start().await;
    let alice = server.register("alice").await;
    let raw = async |content_type: Option<&str>, body: &str| {
        let mut request = alice.request(Method::POST, "/guilds").body(body.to_owned());
        if let Some(content_type) = content_type {
            request = request.header(CONTENT_TYPE, content_type);
        }
        call(request).await
    };
    let json = Some("application/json");
    assert_error(&raw(json, "{\"name\": ").await, StatusCode::BAD_REQUEST, "malformed_json");
    assert_error(&raw(json, "not json").await, StatusCode::BAD_REQUEST, "malformed_json");
    assert_error(
        &raw(json, "{\"name\": \"x\", \"colour\": 1}").await,
        StatusCode::BAD_REQUEST,
        "invalid_body",
    );
    assert_error(&raw(json, "{\"name\": 5}").await, StatusCode::BAD_REQUEST, "invalid_body");
    assert_error(&raw(json, "{}").await, StatusCode::BAD_REQUEST, "invalid_body");
    assert_error(&raw(json, "[]").await, StatusCode::BAD_REQUEST, "invalid_body");
    assert_error(
        &raw(Some("text/plain"), "{\"name\": \"x\"}").await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );
    assert_error(
        &raw(None, "{\"name\": \"x\"}").await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );
    assert_eq!(guild_count(&alice).await, 0);

    // Optional bodies (a ban reason) are just as strict when present.
    let guild = alice.create_guild("Club").await;
    let bob = server.register("bob").await;
    let ban = format!("/guilds/{}/bans/{}", guild.id, bob.id);
    let request = alice
        .request(Method::PUT, &ban)
        .header(CONTENT_TYPE, "application/json")
        .body("{\"reason\": ");
    assert_error(&call(request).await, StatusCode::BAD_REQUEST, "malformed_json");
    assert_error(
        &alice.put(&ban, json!({"why": "x"})).await,
        StatusCode::BAD_REQUEST,
        "invalid_body",
    );
    assert_eq!(alice.get(&format!("/guilds/{}/bans", guild.id)).await.1["bans"], json!([]));
}

#[tokio::test]
async fn bodies_over_the_configured_limit_are_refused() {
    let server = Server::builder().env("GUILDHALL_LIMITS__MAX_BODY_BYTES", "512").start().await;
    let alice = server.register("alice").await;
    let guild = alice.create_guild("Club").await;
    let messages = format!("/channels/{}/messages", guild.general);

    let too_big = alice.post(&messages, json!({"content": "x".repeat(600)})).await;
    assert_error(&too_big, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    let optional = alice
        .put(
            &format!("/guilds/{}/bans/{}", guild.id, server.user_id("bob")),
            json!({"reason": "x".repeat(600)}),
        )
        .await;
    assert_error(&optional, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    let register = server
        .client()
        .post("/auth/register", json!({"username": "bob", "password": "x".repeat(600)}))
        .await;
    assert_error(&register, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");

    assert!(alice.history(&guild.general).await.is_empty());
    alice.send(&guild.general, &"x".repeat(400)).await;
    assert_eq!(alice.history(&guild.general).await.len(), 1);
}

#[tokio::test]
async fn malformed_ids_in_paths_are_invalid_id() {
    let server = Server::start().await;
    let (guild, users) = community(&server, &["alice", "bob"]).await;
    let alice = &users[0];
    let (g, c) = (&guild.id, &guild.general);
    let cases = [
        (Method::GET, "/guilds/not-a-guild".to_owned()),
        (Method::GET, "/guilds/!:".to_owned()),
        (Method::GET, format!("/guilds/{g}/members/bob")),
        (Method::GET, "/channels/bad.id".to_owned()),
        (Method::GET, format!("/channels/{c}/messages/not-an-event-id")),
        (Method::GET, "/users/alice".to_owned()),
        (Method::PUT, format!("/guilds/{g}/members/bob/roles/everyone")),
        (Method::PUT, format!("/guilds/{g}/members/{}/roles/bad.role", users[1].id)),
        (Method::DELETE, format!("/guilds/{g}/bans/bob")),
        (Method::GET, "/invites/bad.code".to_owned()),
        (Method::PUT, "/users/@me/relationships/bob".to_owned()),
    ];
    for (method, path) in cases {
        let response = call(
            alice
                .request(method.clone(), &path)
                .header(CONTENT_TYPE, "application/json")
                .body("{\"type\": \"friend\"}"),
        )
        .await;
        assert_eq!(
            (response.0, response.1["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_id")),
            "{method} {path}: {response:?}"
        );
    }
}

#[tokio::test]
async fn requests_without_a_valid_token_are_unauthorized() {
    let server = Server::start().await;
    let alice = server.register("alice").await;
    let anonymous = server.client();
    for header in [
        None,
        Some("Bearer nonsense".to_owned()),
        Some(format!("Basic {}", alice.token)),
        Some(alice.token.clone()),
        Some("Bearer ".to_owned()),
    ] {
        let mut request = anonymous.request(Method::GET, "/users/@me");
        if let Some(header) = &header {
            request = request.header(AUTHORIZATION, header);
        }
        assert_error(&call(request).await, StatusCode::UNAUTHORIZED, "unauthorized");
    }
    let create = anonymous.post("/guilds", json!({"name": "Club"})).await;
    assert_error(&create, StatusCode::UNAUTHORIZED, "unauthorized");
    assert_eq!(guild_count(&alice).await, 0);
}

#[tokio::test]
async fn unknown_resources_are_not_found() {
    let server = Server::start().await;
    let alice = server.register("alice").await;
    let unknown_guild = format!("!nosuchguild:{}", server.name());
    let remote_guild = "!someguild:elsewhere.example";
    assert_error(
        &alice.get(&format!("/guilds/{unknown_guild}")).await,
        StatusCode::NOT_FOUND,
        "unknown_guild",
    );
    assert_error(
        &alice.get(&format!("/guilds/{remote_guild}")).await,
        StatusCode::NOT_FOUND,
        "unknown_guild",
    );
    assert_error(
        &alice.get(&format!("/guilds/{unknown_guild}/channels")).await,
        StatusCode::NOT_FOUND,
        "unknown_guild",
    );
    assert_error(
        &alice.delete(&format!("/guilds/{unknown_guild}")).await,
        StatusCode::NOT_FOUND,
        "unknown_guild",
    );
    assert_error(
        &alice.get("/channels/nosuchchannel").await,
        StatusCode::NOT_FOUND,
        "unknown_channel",
    );
    assert_error(
        &alice.get("/channels/nosuchchannel/messages").await,
        StatusCode::NOT_FOUND,
        "unknown_channel",
    );
    assert_error(&alice.get("/no/such/endpoint").await, StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn sending_too_fast_is_rate_limited_and_the_refused_message_is_not_stored() {
    let server = Server::builder()
        .env("GUILDHALL_RATE_LIMITS__MESSAGES_PER_SECOND", "1")
        .env("GUILDHALL_RATE_LIMITS__MESSAGES_BURST", "2")
        .start()
        .await;
    let alice = server.register("alice").await;
    let guild = alice.create_guild("Club").await;
    alice.send(&guild.general, "one").await;
    alice.send(&guild.general, "two").await;

    let request = alice
        .request(Method::POST, &format!("/channels/{}/messages", guild.general))
        .json(&json!({"content": "three"}));
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = response.headers()[RETRY_AFTER].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry_after), "Retry-After: {retry_after}");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "rate_limited");
    let retry_after_ms = body["retry_after_ms"].as_u64().unwrap();
    assert!((1..=1000).contains(&retry_after_ms), "{body}");
    assert_eq!(alice.history_contents(&guild.general).await, ["two", "one"]);

    // Other requests are not message-limited, and after the delay sending works again.
    assert_eq!(alice.get("/users/@me").await.0, StatusCode::OK);
    tokio::time::sleep(std::time::Duration::from_millis(retry_after_ms + 50)).await;
    alice.send(&guild.general, "three").await;
    assert_eq!(alice.history_contents(&guild.general).await, ["three", "two", "one"]);
}

#[tokio::test]
async fn each_account_has_a_request_rate_limit() {
    let server = Server::builder()
        .env("GUILDHALL_RATE_LIMITS__PER_ACCOUNT_PER_SECOND", "1")
        .env("GUILDHALL_RATE_LIMITS__PER_ACCOUNT_BURST", "3")
        .start()
        .await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    for _ in 0..3 {
        assert_eq!(alice.get("/users/@me").await.0, StatusCode::OK);
    }
    assert_error(&alice.get("/users/@me").await, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    assert_eq!(bob.get("/users/@me").await.0, StatusCode::OK, "limits are per account");
}
