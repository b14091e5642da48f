//! Channels: kinds, updates, ordering, deletion, and hiding one with a permission overwrite.

use crate::harness::bits::{MANAGE_CHANNELS, VIEW_CHANNEL, text};
use crate::harness::*;

async fn channel_names(user: &User, guild: &str) -> Vec<String> {
    let (status, body) = user.get(&format!("/guilds/{guild}/channels")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    ids(&body["channels"], "name")
}

#[tokio::test]
async fn channels_are_created_updated_reordered_and_deleted() {
    let server = Server::start().await;
    let alice = server.register("alice").await;
    let guild = alice.create_guild("Club").await;
    let channels = format!("/guilds/{}/channels", guild.id);

    let (status, category) =
        alice.post(&channels, json!({"name": "Topics", "kind": "category"})).await;
    assert_eq!(status, StatusCode::CREATED, "{category}");
    assert_eq!(category["kind"], "category");
    let category = category["id"].as_str().unwrap().to_owned();
    let (status, voice) = alice.post(&channels, json!({"name": "Lounge", "kind": "voice"})).await;
    assert_eq!(status, StatusCode::CREATED, "{voice}");
    assert_eq!(voice["kind"], "voice");
    let voice = voice["id"].as_str().unwrap().to_owned();
    let (status, books) = alice
        .post(&channels, json!({"name": "books", "parent_id": category, "topic": "what we read"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{books}");
    assert_eq!(books["kind"], "text");
    assert_eq!(books["parent_id"], category);
    assert_eq!(books["topic"], "what we read");
    let books = books["id"].as_str().unwrap().to_owned();
    assert_eq!(channel_names(&alice, &guild.id).await, ["general", "Topics", "Lounge", "books"]);

    // Structure rules: only categories are parents, and categories do not nest.
    assert_error(
        &alice.post(&channels, json!({"name": "x", "parent_id": voice})).await,
        StatusCode::BAD_REQUEST,
        "invalid_event",
    );
    assert_error(
        &alice
            .post(&channels, json!({"name": "x", "kind": "category", "parent_id": category}))
            .await,
        StatusCode::BAD_REQUEST,
        "invalid_event",
    );
    assert_error(
        &alice.post(&channels, json!({"name": "x", "kind": "forum"})).await,
        StatusCode::BAD_REQUEST,
        "invalid_body",
    );
    assert_eq!(channel_names(&alice, &guild.id).await.len(), 4);
    // Voice channels carry no messages.
    assert_error(
        &alice.post(&format!("/channels/{voice}/messages"), json!({"content": "hi"})).await,
        StatusCode::BAD_REQUEST,
        "invalid_event",
    );

    let (status, updated) = alice
        .patch(&format!("/channels/{books}"), json!({"name": "novels", "topic": "fiction only"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["name"], "novels");
    assert_eq!(updated["topic"], "fiction only");
    assert_eq!(alice.get(&format!("/channels/{books}")).await.1["name"], "novels");

    let order = json!([{"id": books, "position": 0}, {"id": guild.general, "position": 1}, {"id": category, "position": 2}, {"id": voice, "position": 3}]);
    let (status, reordered) = alice.patch(&channels, order).await;
    assert_eq!(status, StatusCode::OK, "{reordered}");
    assert_eq!(ids(&reordered["channels"], "name"), ["novels", "general", "Topics", "Lounge"]);
    assert_eq!(channel_names(&alice, &guild.id).await, ["novels", "general", "Topics", "Lounge"]);
    let unknown = alice.patch(&channels, json!([{"id": "nosuchchannel", "position": 0}])).await;
    assert_error(&unknown, StatusCode::NOT_FOUND, "unknown_channel");

    assert_eq!(alice.delete(&format!("/channels/{voice}")).await.0, StatusCode::NO_CONTENT);
    assert_error(
        &alice.get(&format!("/channels/{voice}")).await,
        StatusCode::NOT_FOUND,
        "unknown_channel",
    );
    assert_eq!(channel_names(&alice, &guild.id).await, ["novels", "general", "Topics"]);
}

#[tokio::test]
async fn managing_channels_needs_manage_channels() {
    let server = Server::start().await;
    let (guild, users) = community(&server, &["alice", "bob", "carol"]).await;
    let [alice, bob, carol] = &users[..] else { unreachable!() };
    let channels = format!("/guilds/{}/channels", guild.id);
    let general = format!("/channels/{}", guild.general);

    assert_error(
        &bob.post(&channels, json!({"name": "mine"})).await,
        StatusCode::FORBIDDEN,
        "missing_permission",
    );
    assert_error(
        &bob.patch(&general, json!({"name": "bobs"})).await,
        StatusCode::FORBIDDEN,
        "missing_permission",
    );
    assert_error(&bob.delete(&general).await, StatusCode::FORBIDDEN, "missing_permission");
    assert_eq!(channel_names(alice, &guild.id).await, ["general"]);

    let role = alice.create_role(&guild.id, "builder", &text(MANAGE_CHANNELS), 1).await;
    alice.give_role(&guild.id, &bob.id, &role).await;
    let (status, created) = bob.post(&channels, json!({"name": "bobs"})).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(channel_names(carol, &guild.id).await, ["general", "bobs"]);
}

#[tokio::test]
async fn a_view_channel_overwrite_hides_a_channel_and_a_member_overwrite_restores_it() {
    let server = Server::start().await;
    let (guild, users) = community(&server, &["alice", "bob", "carol"]).await;
    let [alice, bob, carol] = &users[..] else { unreachable!() };
    let secret = private_channel(alice, &guild.id, "secret").await;
    let (_, channel) = alice.get(&format!("/channels/{secret}")).await;
    assert_eq!(
        channel["overwrites"],
        json!([{"kind": "role", "id": "everyone", "allow": "0", "deny": text(VIEW_CHANNEL)}])
    );
    alice.send(&secret, "owners only").await;

    for user in [bob, carol] {
        assert_error(
            &user.get(&format!("/channels/{secret}")).await,
            StatusCode::NOT_FOUND,
            "unknown_channel",
        );
        assert_error(
            &user.get(&format!("/channels/{secret}/messages")).await,
            StatusCode::NOT_FOUND,
            "unknown_channel",
        );
        let send = user
            .post(&format!("/channels/{secret}/messages"), json!({"content": "let me in"}))
            .await;
        assert_error(&send, StatusCode::NOT_FOUND, "unknown_channel");
        assert_eq!(channel_names(user, &guild.id).await, ["general"]);
        let (_, full) = user.get(&format!("/guilds/{}", guild.id)).await;
        assert_eq!(ids(&full["channels"], "name"), ["general"]);
    }
    assert_eq!(alice.history_contents(&secret).await, ["owners only"]);

    // A member overwrite lets bob see it again; carol still cannot.
    let allow = json!({"kind": "member", "allow": text(VIEW_CHANNEL)});
    let (status, body) =
        alice.put(&format!("/channels/{secret}/permissions/{}", bob.id), allow).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(bob.get(&format!("/channels/{secret}")).await.0, StatusCode::OK);
    assert_eq!(channel_names(bob, &guild.id).await, ["general", "secret"]);
    bob.send(&secret, "thanks").await;
    assert_eq!(bob.history_contents(&secret).await, ["thanks", "owners only"]);
    assert_error(
        &carol.get(&format!("/channels/{secret}")).await,
        StatusCode::NOT_FOUND,
        "unknown_channel",
    );

    // Removing the member overwrite hides it again.
    let (status, _) = alice
        .delete_with(
            &format!("/channels/{secret}/permissions/{}", bob.id),
            json!({"kind": "member"}),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_error(
        &bob.get(&format!("/channels/{secret}")).await,
        StatusCode::NOT_FOUND,
        "unknown_channel",
    );

    // Plain members cannot set overwrites.
    let sneak = carol
        .put(
            &format!("/channels/{}/permissions/{}", guild.general, carol.id),
            json!({"kind": "member", "allow": "8"}),
        )
        .await;
    assert_error(&sneak, StatusCode::FORBIDDEN, "missing_permission");
}

#[tokio::test]
async fn names_are_single_lines_and_topics_hold_no_control_characters() {
    let server = Server::start().await;
    let alice = server.register("alice").await;
    let (status, _) = alice.post("/guilds", json!({"name": "two\nlines"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let guild = alice.create_guild("Tidy").await;
    let channels = format!("/guilds/{}/channels", guild.id);
    for body in
        [json!({"name": "tab\there"}), json!({"name": "fine", "topic": "clear \u{1b}[2J screen"})]
    {
        let (status, answer) = alice.post(&channels, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    }
    let (status, _) =
        alice.post(&channels, json!({"name": "fine", "topic": "two\nlines ok"})).await;
    assert_eq!(status, StatusCode::CREATED);
}
