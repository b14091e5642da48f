//! Registration, login, logout, sessions, closed registration and the admin CLI.

use crate::harness::*;

#[tokio::test]
async fn the_first_account_is_admin_and_later_ones_are_not() {
    let server = Server::start().await;
    let (status, alice) = server
        .client()
        .post("/auth/register", json!({"username": "alice", "password": PASSWORD}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{alice}");
    assert_eq!(alice["user"]["id"], server.user_id("alice"));
    assert_eq!(alice["user"]["username"], "alice");
    assert_eq!(alice["user"]["is_admin"], true);
    assert!(alice["token"].as_str().is_some_and(|t| t.len() > 20), "{alice}");

    let bob = server.register("bob").await;
    let (status, me) = bob.get("/users/@me").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["id"], server.user_id("bob"));
    assert_eq!(me["is_admin"], false);
}

#[tokio::test]
async fn registration_refuses_taken_weak_and_invalid_names() {
    let server = Server::start().await;
    server.register("alice").await;
    let check = async |username: &str, password: &str, status: StatusCode, code: &str| {
        let response = server
            .client()
            .post("/auth/register", json!({"username": username, "password": password}))
            .await;
        assert_error(&response, status, code);
    };
    check("alice", PASSWORD, StatusCode::CONFLICT, "username_taken").await;
    check("alice", "another password", StatusCode::CONFLICT, "username_taken").await;
    check("carol", "short", StatusCode::BAD_REQUEST, "weak_password").await;
    check("carol", "", StatusCode::BAD_REQUEST, "weak_password").await;
    check("carol", &"x".repeat(1025), StatusCode::BAD_REQUEST, "weak_password").await;
    check("Carol", PASSWORD, StatusCode::BAD_REQUEST, "invalid_username").await;
    check("carol smith", PASSWORD, StatusCode::BAD_REQUEST, "invalid_username").await;
    check("", PASSWORD, StatusCode::BAD_REQUEST, "invalid_username").await;
    check("carol:evil.example", PASSWORD, StatusCode::BAD_REQUEST, "invalid_username").await;
    check(&"c".repeat(65), PASSWORD, StatusCode::BAD_REQUEST, "invalid_username").await;

    // Nothing was created by the refusals: carol cannot log in, and alice keeps her password.
    let login = server
        .client()
        .post("/auth/login", json!({"username": "carol", "password": "short"}))
        .await;
    assert_error(&login, StatusCode::UNAUTHORIZED, "invalid_credentials");
    let login = server
        .client()
        .post("/auth/login", json!({"username": "alice", "password": "another password"}))
        .await;
    assert_error(&login, StatusCode::UNAUTHORIZED, "invalid_credentials");
    server.login("alice").await;
}

#[tokio::test]
async fn login_gives_a_new_token_and_logout_revokes_it() {
    let server = Server::start().await;
    let registered = server.register("alice").await;

    let wrong = server
        .client()
        .post("/auth/login", json!({"username": "alice", "password": "wrong password"}))
        .await;
    assert_error(&wrong, StatusCode::UNAUTHORIZED, "invalid_credentials");
    let unknown = server
        .client()
        .post("/auth/login", json!({"username": "nobody", "password": PASSWORD}))
        .await;
    assert_error(&unknown, StatusCode::UNAUTHORIZED, "invalid_credentials");

    let logged_in = server.login("alice").await;
    assert_ne!(logged_in.token, registered.token);
    assert_eq!(logged_in.id, registered.id);
    assert_eq!(logged_in.get("/users/@me").await.0, StatusCode::OK);

    let (status, _) = logged_in.post_empty("/auth/logout").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_error(&logged_in.get("/users/@me").await, StatusCode::UNAUTHORIZED, "unauthorized");
    // Logging out ends only that session.
    assert_eq!(registered.get("/users/@me").await.0, StatusCode::OK);
}

#[tokio::test]
async fn sessions_are_listed_and_another_one_can_be_revoked() {
    let server = Server::start().await;
    let first = server.register("alice").await;
    let second = server.login("alice").await;
    let third = server.login("alice").await;
    let bob = server.register("bob").await;

    let (status, listed) = first.get("/auth/sessions").await;
    assert_eq!(status, StatusCode::OK);
    let sessions = listed["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 3, "{listed}");
    assert_eq!(sessions.iter().filter(|s| s["current"] == true).count(), 1, "{listed}");

    let current_session = async |user: &User| {
        let (_, listed) = user.get("/auth/sessions").await;
        let current =
            listed["sessions"].as_array().unwrap().iter().find(|s| s["current"] == true).cloned();
        current.unwrap()["id"].as_str().unwrap().to_owned()
    };
    let second_id = current_session(&second).await;

    // Another user cannot revoke it, and an unknown id is reported as such.
    assert_error(
        &bob.delete(&format!("/auth/sessions/{second_id}")).await,
        StatusCode::NOT_FOUND,
        "unknown_session",
    );
    assert_eq!(second.get("/users/@me").await.0, StatusCode::OK);
    assert_error(
        &first.delete("/auth/sessions/nosuchsession").await,
        StatusCode::NOT_FOUND,
        "unknown_session",
    );

    let (status, _) = first.delete(&format!("/auth/sessions/{second_id}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_error(&second.get("/users/@me").await, StatusCode::UNAUTHORIZED, "unauthorized");
    assert_eq!(third.get("/users/@me").await.0, StatusCode::OK);
    let (_, listed) = first.get("/auth/sessions").await;
    let remaining = ids(&listed["sessions"], "id");
    assert_eq!(remaining.len(), 2, "{listed}");
    assert!(!remaining.contains(&second_id));
}

#[tokio::test]
async fn with_registration_closed_the_admin_cli_creates_accounts() {
    let mut server =
        Server::builder().env("GUILDHALL_REGISTRATION__ENABLED", "false").start().await;
    let refused = server
        .client()
        .post("/auth/register", json!({"username": "alice", "password": PASSWORD}))
        .await;
    assert_error(&refused, StatusCode::FORBIDDEN, "registration_closed");
    server.stop();

    let created = server.admin(&["create-user", "carol", "--password", PASSWORD]);
    assert!(created.status.success(), "{created:?}");
    // The first account of a server is its admin, however it was created.
    assert!(
        String::from_utf8_lossy(&created.stdout).contains(&server.user_id("carol")),
        "{created:?}"
    );
    let created =
        server.admin_with_env(&["create-user", "dave"], &[("GUILDHALL_PASSWORD", PASSWORD)]);
    assert!(created.status.success(), "{created:?}");
    assert!(
        !server.admin(&["create-user", "dave", "--password", PASSWORD]).status.success(),
        "a taken name"
    );
    assert!(
        !server.admin(&["create-user", "erin", "--password", "short"]).status.success(),
        "a weak password"
    );
    assert!(
        !server.admin(&["create-user", "Not Valid", "--password", PASSWORD]).status.success(),
        "an invalid name"
    );
    assert!(!server.admin(&["make-admin", "nobody"]).status.success(), "an unknown user");

    server.launch().await;
    let carol = server.login("carol").await;
    assert_eq!(carol.get("/users/@me").await.1["is_admin"], true);
    let dave = server.login("dave").await;
    assert_eq!(dave.get("/users/@me").await.1["is_admin"], false);
    let erin =
        server.client().post("/auth/login", json!({"username": "erin", "password": "short"})).await;
    assert_error(&erin, StatusCode::UNAUTHORIZED, "invalid_credentials");
    server.stop();

    let promoted = server.admin(&["make-admin", "dave"]);
    assert!(promoted.status.success(), "{promoted:?}");
    server.launch().await;
    assert_eq!(
        dave.get("/users/@me").await.1["is_admin"],
        true,
        "the earlier token survives the restart"
    );
}

#[tokio::test]
async fn the_data_directory_can_come_from_the_environment() {
    let server = Server::start().await;
    let migrated = std::process::Command::new(env!("CARGO_BIN_EXE_guildhall"))
        .arg("migrate")
        .env("GUILDHALL_DATA_DIR", server.dir())
        .output()
        .expect("run guildhall migrate");
    assert!(migrated.status.success(), "{migrated:?}");
    assert!(String::from_utf8_lossy(&migrated.stdout).contains("up to date"), "{migrated:?}");
}

#[tokio::test]
async fn failed_logins_are_limited_per_account_before_any_hashing() {
    let server = Server::builder()
        .env("GUILDHALL_RATE_LIMITS__FAILED_LOGINS_PER_MINUTE", "1")
        .env("GUILDHALL_RATE_LIMITS__FAILED_LOGINS_BURST", "3")
        .start()
        .await;
    server.register("alice").await;
    server.register("bob").await;
    let login = async |name: &str, password: &str| {
        server.client().post("/auth/login", json!({"username": name, "password": password})).await
    };
    for _ in 0..3 {
        assert_error(
            &login("alice", "wrong password").await,
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
        );
    }
    // The account's budget is spent: even the right password waits.
    assert_error(&login("alice", PASSWORD).await, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    // Other accounts are not affected, and neither are names that do not exist but still
    // take as long to refuse.
    assert_eq!(login("bob", PASSWORD).await.0, StatusCode::OK);
    assert_error(
        &login("nobody", "wrong password").await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    );
}
