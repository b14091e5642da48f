//! Guilds: creation, reading, renaming, deletion, member lists, nicknames and leaving.

use crate::harness::*;

#[tokio::test]
async fn a_new_guild_has_everyone_and_a_general_channel() {
    let server = Server::start().await;
    let alice = server.register("alice").await;
    let (status, created) = alice.post("/guilds", json!({"name": "Book Club"})).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let guild_id = created["id"].as_str().unwrap();
    assert!(
        guild_id.starts_with('!') && guild_id.ends_with(&format!(":{}", server.name())),
        "{guild_id}"
    );
    assert_eq!(created["name"], "Book Club");
    assert_eq!(created["owner_id"], alice.id);
    assert_eq!(created["member_count"], 1);
    let roles = created["roles"].as_array().unwrap();
    assert_eq!(roles.len(), 1, "{created}");
    assert_eq!(roles[0]["id"], "everyone");
    assert_eq!(roles[0]["name"], "@everyone");
    assert_eq!(roles[0]["position"], 0);
    let channels = created["channels"].as_array().unwrap();
    assert_eq!(channels.len(), 1, "{created}");
    assert_eq!(channels[0]["name"], "general");
    assert_eq!(channels[0]["kind"], "text");

    let (status, fetched) = alice.get(&format!("/guilds/{guild_id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(fetched, created);
    let (_, mine) = alice.get("/users/@me/guilds").await;
    assert_eq!(ids(&mine["guilds"], "id"), [guild_id]);

    for bad in ["", "   ", &"x".repeat(101)] {
        let response = alice.post("/guilds", json!({"name": bad})).await;
        assert_eq!(response.0, StatusCode::BAD_REQUEST, "{bad:?}: {response:?}");
    }
    assert_eq!(alice.get("/users/@me/guilds").await.1["guilds"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn guilds_are_invisible_to_non_members() {
    let server = Server::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let guild = alice.create_guild("Private").await;
    assert_error(
        &bob.get(&format!("/guilds/{}", guild.id)).await,
        StatusCode::NOT_FOUND,
        "unknown_guild",
    );
    assert_error(
        &bob.get(&format!("/guilds/{}/members", guild.id)).await,
        StatusCode::NOT_FOUND,
        "unknown_guild",
    );
    assert_error(
        &bob.get(&format!("/channels/{}", guild.general)).await,
        StatusCode::NOT_FOUND,
        "unknown_channel",
    );
    assert!(bob.get("/users/@me/guilds").await.1["guilds"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn the_owner_renames_the_guild_and_a_plain_member_cannot() {
    let server = Server::start().await;
    let (guild, users) = community(&server, &["alice", "bob"]).await;
    let [alice, bob] = &users[..] else { unreachable!() };
    let path = format!("/guilds/{}", guild.id);

    let (status, renamed) =
        alice.patch(&path, json!({"name": "Renamed", "description": "about"})).await;
    assert_eq!(status, StatusCode::OK, "{renamed}");
    assert_eq!(renamed["name"], "Renamed");
    assert_eq!(renamed["description"], "about");

    assert_error(
        &bob.patch(&path, json!({"name": "Bob's"})).await,
        StatusCode::FORBIDDEN,
        "missing_permission",
    );
    assert_error(
        &alice.patch(&path, json!({"name": "  "})).await,
        StatusCode::BAD_REQUEST,
        "invalid_event",
    );
    assert_eq!(bob.get(&path).await.1["name"], "Renamed");
    let (_, mine) = bob.get("/users/@me/guilds").await;
    assert_eq!(mine["guilds"][0]["name"], "Renamed");
}

#[tokio::test]
async fn only_the_owner_deletes_a_guild() {
    let server = Server::start().await;
    let (guild, users) = community(&server, &["alice", "bob"]).await;
    let [alice, bob] = &users[..] else { unreachable!() };
    let path = format!("/guilds/{}", guild.id);

    assert_error(&bob.delete(&path).await, StatusCode::FORBIDDEN, "missing_permission");
    assert_eq!(bob.get(&path).await.0, StatusCode::OK);

    let (status, _) = alice.delete(&path).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    for user in [alice, bob] {
        assert_error(&user.get(&path).await, StatusCode::NOT_FOUND, "unknown_guild");
        assert!(user.get("/users/@me/guilds").await.1["guilds"].as_array().unwrap().is_empty());
        let send = user
            .post(&format!("/channels/{}/messages", guild.general), json!({"content": "hello?"}))
            .await;
        assert_error(&send, StatusCode::NOT_FOUND, "unknown_channel");
    }
}

#[tokio::test]
async fn members_are_paged_by_user_id() {
    let server = Server::start().await;
    let (guild, users) = community(&server, &["alice", "bob", "carol", "dave", "erin"]).await;
    let alice = &users[0];
    let mut expected: Vec<String> = users.iter().map(|u| u.id.clone()).collect();
    expected.sort();

    let page = async |after: Option<&str>| {
        let mut query = vec![("limit", "2")];
        if let Some(after) = after {
            query.push(("after", after));
        }
        let (status, body) =
            alice.get(&with_query(&format!("/guilds/{}/members", guild.id), &query)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        ids(&body["members"], "user_id")
    };
    let first = page(None).await;
    assert_eq!(first, expected[0..2]);
    let second = page(Some(&first[1])).await;
    assert_eq!(second, expected[2..4]);
    let third = page(Some(&second[1])).await;
    assert_eq!(third, expected[4..]);
    assert!(page(Some(&third[0])).await.is_empty());

    let (_, member) = alice.get(&format!("/guilds/{}/members/{}", guild.id, users[1].id)).await;
    assert_eq!(member["user_id"], users[1].id);
    assert_eq!(member["roles"], json!([]));
    let bad =
        alice.get(&with_query(&format!("/guilds/{}/members", guild.id), &[("after", "bob")])).await;
    assert_error(&bad, StatusCode::BAD_REQUEST, "invalid_id");
}

#[tokio::test]
async fn members_set_their_own_nickname_but_not_others() {
    let server = Server::start().await;
    let (guild, users) = community(&server, &["alice", "bob", "carol"]).await;
    let [alice, bob, carol] = &users[..] else { unreachable!() };
    let member = |user: &str| format!("/guilds/{}/members/{user}", guild.id);

    let (status, updated) = bob.patch(&member("@me"), json!({"nick": "Bobby"})).await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["nick"], "Bobby");
    assert_eq!(alice.get(&member(&bob.id)).await.1["nick"], "Bobby");

    assert_error(
        &carol.patch(&member(&bob.id), json!({"nick": "Bob the Bad"})).await,
        StatusCode::FORBIDDEN,
        "missing_permission",
    );
    assert_error(
        &bob.patch(&member("@me"), json!({"nick": "x".repeat(33)})).await,
        StatusCode::BAD_REQUEST,
        "invalid_event",
    );
    assert_eq!(alice.get(&member(&bob.id)).await.1["nick"], "Bobby");

    // The owner outranks everyone and may rename anyone.
    let (status, _) = alice.patch(&member(&bob.id), json!({"nick": "Robert"})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, cleared) = bob.patch(&member("@me"), json!({"nick": null})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(cleared["nick"], Value::Null);
}

#[tokio::test]
async fn members_leave_but_the_owner_cannot() {
    let server = Server::start().await;
    let (guild, users) = community(&server, &["alice", "bob"]).await;
    let [alice, bob] = &users[..] else { unreachable!() };
    let leave = format!("/guilds/{}/members/@me", guild.id);

    assert_error(&alice.delete(&leave).await, StatusCode::BAD_REQUEST, "invalid_event");
    let (status, _) = bob.delete(&leave).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_error(
        &bob.get(&format!("/guilds/{}", guild.id)).await,
        StatusCode::NOT_FOUND,
        "unknown_guild",
    );
    assert!(bob.get("/users/@me/guilds").await.1["guilds"].as_array().unwrap().is_empty());
    assert_eq!(alice.member_ids(&guild.id).await, [alice.id.as_str()]);
    assert_eq!(alice.get(&format!("/guilds/{}", guild.id)).await.1["member_count"], 1);
}

#[tokio::test]
async fn the_number_of_owned_guilds_is_limited() {
    let server = Server::builder().env("GUILDHALL_LIMITS__MAX_GUILDS_PER_USER", "1").start().await;
    let alice = server.register("alice").await;
    alice.create_guild("One").await;
    assert_error(
        &alice.post("/guilds", json!({"name": "Two"})).await,
        StatusCode::FORBIDDEN,
        "limit_reached",
    );
    assert_eq!(alice.get("/users/@me/guilds").await.1["guilds"].as_array().unwrap().len(), 1);
}
