//! Messages: history paging, edits, deletion, pins, reactions, mentions, limits, idempotent
//! sends and search.

use std::time::Duration;

use crate::harness::bits::{MANAGE_MESSAGES, VIEW_CHANNEL, text};
use crate::harness::*;

/// An event id of the right shape that no message has.
const NO_SUCH_MESSAGE: &str = "$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

fn contents(body: &Value) -> Vec<String> {
    ids(&body["messages"], "content")
}

/// A guild with a moderator role holding MANAGE_MESSAGES, given to the second user.
async fn moderated(server: &Server, names: &[&str]) -> (Guild, Vec<User>) {
    let (guild, users) = community(server, names).await;
    let role = users[0].create_role(&guild.id, "moderator", &text(MANAGE_MESSAGES), 1).await;
    users[0].give_role(&guild.id, &users[1].id, &role).await;
    (guild, users)
}

#[tokio::test]
async fn history_is_newest_first_and_pages_with_before_and_after() {
    let server = Server::start().await;
    let (guild, users) = community(&server, &["alice", "bob"]).await;
    let [alice, bob] = &users[..] else { unreachable!() };
    let mut sent = Vec::new();
    for n in 1..=5 {
        sent.push(
            alice.send(&guild.general, &format!("m{n}")).await["id"].as_str().unwrap().to_owned(),
        );
    }
    let messages = format!("/channels/{}/messages", guild.general);
    let page = async |query: &[(&str, &str)]| {
        let (status, body) = bob.get(&with_query(&messages, query)).await;
        assert_eq!(status, StatusCode::OK, "{query:?}: {body}");
        contents(&body)
    };
    assert_eq!(page(&[("limit", "100")]).await, ["m5", "m4", "m3", "m2", "m1"]);
    assert_eq!(page(&[("limit", "2")]).await, ["m5", "m4"]);
    assert_eq!(page(&[("limit", "2"), ("before", &sent[3])]).await, ["m3", "m2"]);
    assert_eq!(page(&[("limit", "2"), ("after", &sent[1])]).await, ["m4", "m3"]);
    assert_eq!(page(&[("after", &sent[0]), ("before", &sent[4])]).await, ["m4", "m3", "m2"]);
    assert!(page(&[("before", &sent[0])]).await.is_empty());

    assert_error(
        &bob.get(&with_query(&messages, &[("before", NO_SUCH_MESSAGE)])).await,
        StatusCode::NOT_FOUND,
        "unknown_message",
    );
    assert_error(
        &bob.get(&with_query(&messages, &[("before", "m3")])).await,
        StatusCode::BAD_REQUEST,
        "invalid_id",
    );
    // An anchor from another channel is not a message of this one.
    let (_, other) =
        alice.post(&format!("/guilds/{}/channels", guild.id), json!({"name": "other"})).await;
    let other = other["id"].as_str().unwrap();
    let elsewhere = alice.send(other, "elsewhere").await;
    let anchor = elsewhere["id"].as_str().unwrap();
    assert_error(
        &bob.get(&with_query(&messages, &[("before", anchor)])).await,
        StatusCode::NOT_FOUND,
        "unknown_message",
    );
}

#[tokio::test]
async fn a_message_is_fetched_replied_to_and_edited_only_by_its_author() {
    let server = Server::start().await;
    let (guild, users) = community(&server, &["alice", "bob"]).await;
    let [alice, bob] = &users[..] else { unreachable!() };
    let sent = bob.send(&guild.general, "first draft").await;
    let id = sent["id"].as_str().unwrap();
    assert_eq!(sent["author_id"], bob.id);
    assert_eq!(sent["channel_id"], guild.general);
    assert_eq!(sent["edited_ts"], Value::Null);
    let path = format!("/channels/{}/messages/{id}", guild.general);

    let (status, fetched) = alice.get(&path).await;
    assert_eq!(status, StatusCode::OK, "{fetched}");
    assert_eq!(fetched["content"], "first draft");
    assert_error(
        &alice.get(&format!("/channels/{}/messages/{NO_SUCH_MESSAGE}", guild.general)).await,
        StatusCode::NOT_FOUND,
        "unknown_message",
    );

    let (status, reply) = alice
        .post(
            &format!("/channels/{}/messages", guild.general),
            json!({"content": "nice", "reply_to": id}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
    assert_eq!(reply["reply_to"], id);
    let dangling = alice
        .post(
            &format!("/channels/{}/messages", guild.general),
            json!({"content": "?", "reply_to": NO_SUCH_MESSAGE}),
        )
        .await;
    assert_error(&dangling, StatusCode::NOT_FOUND, "unknown_message");

    // Nobody but the author edits, not even the owner.
    assert_error(
        &alice.patch(&path, json!({"content": "vandalised"})).await,
        StatusCode::FORBIDDEN,
        "missing_permission",
    );
    assert_error(
        &bob.patch(&path, json!({"content": "  "})).await,
        StatusCode::BAD_REQUEST,
        "invalid_event",
    );
    assert_eq!(alice.get(&path).await.1["content"], "first draft");
    let (status, edited) = bob.patch(&path, json!({"content": "final text"})).await;
    assert_eq!(status, StatusCode::OK, "{edited}");
    assert_eq!(edited["content"], "final text");
    assert!(edited["edited_ts"].is_u64(), "{edited}");
    assert_eq!(alice.history_contents(&guild.general).await, ["nice", "final text"]);
}

#[tokio::test]
async fn messages_are_deleted_by_their_author_or_a_moderator_only() {
    let server = Server::start().await;
    let (guild, users) = moderated(&server, &["alice", "mona", "bob", "carol"]).await;
    let [_, mona, bob, carol] = &users[..] else { unreachable!() };
    let path = |message: &Value| {
        format!("/channels/{}/messages/{}", guild.general, message["id"].as_str().unwrap())
    };
    let bobs = bob.send(&guild.general, "by bob").await;
    let carols = carol.send(&guild.general, "by carol").await;

    assert_error(&carol.delete(&path(&bobs)).await, StatusCode::FORBIDDEN, "missing_permission");
    assert_eq!(carol.history_contents(&guild.general).await, ["by carol", "by bob"]);

    assert_eq!(bob.delete(&path(&bobs)).await.0, StatusCode::NO_CONTENT);
    assert_eq!(mona.delete(&path(&carols)).await.0, StatusCode::NO_CONTENT);
    assert!(carol.history(&guild.general).await.is_empty());
    assert_error(&carol.get(&path(&bobs)).await, StatusCode::NOT_FOUND, "unknown_message");
    assert_error(&bob.delete(&path(&bobs)).await, StatusCode::NOT_FOUND, "unknown_message");
    assert_error(
        &bob.patch(&path(&bobs), json!({"content": "back"})).await,
        StatusCode::NOT_FOUND,
        "unknown_message",
    );
}

#[tokio::test]
async fn pinning_needs_manage_messages() {
    let server = Server::start().await;
    let (guild, users) = moderated(&server, &["alice", "mona", "bob"]).await;
    let [_, mona, bob] = &users[..] else { unreachable!() };
    let message = bob.send(&guild.general, "pin me").await;
    let id = message["id"].as_str().unwrap();
    let pin = format!("/channels/{}/pins/{id}", guild.general);
    let pins = format!("/channels/{}/pins", guild.general);

    assert_error(&bob.put_empty(&pin).await, StatusCode::FORBIDDEN, "missing_permission");
    assert!(bob.get(&pins).await.1["messages"].as_array().unwrap().is_empty());

    assert_eq!(mona.put_empty(&pin).await.0, StatusCode::NO_CONTENT);
    let (status, listed) = bob.get(&pins).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ids(&listed["messages"], "id"), [id]);
    assert_eq!(listed["messages"][0]["pinned"], true);
    assert_eq!(
        bob.get(&format!("/channels/{}/messages/{id}", guild.general)).await.1["pinned"],
        true
    );
    // A page says which of its messages are pinned (one query for the page).
    let other = bob.send(&guild.general, "do not pin me").await;
    let page = bob.get(&format!("/channels/{}/messages", guild.general)).await.1;
    let flags: Vec<(&str, bool)> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["id"].as_str().unwrap(), m["pinned"].as_bool().unwrap()))
        .collect();
    assert!(flags.contains(&(id, true)), "the pinned message is not marked");
    assert!(flags.contains(&(other["id"].as_str().unwrap(), false)), "another is marked pinned");

    assert_error(&bob.delete(&pin).await, StatusCode::FORBIDDEN, "missing_permission");
    assert_eq!(bob.get(&pins).await.1["messages"].as_array().unwrap().len(), 1);
    assert_eq!(mona.delete(&pin).await.0, StatusCode::NO_CONTENT);
    assert!(bob.get(&pins).await.1["messages"].as_array().unwrap().is_empty());
    assert_error(&mona.delete(&pin).await, StatusCode::NOT_FOUND, "not_pinned");
}

#[tokio::test]
async fn pinning_an_already_pinned_message_still_needs_manage_messages() {
    let server = Server::start().await;
    let (guild, users) = moderated(&server, &["alice", "mona", "bob"]).await;
    let [_, mona, bob] = &users[..] else { unreachable!() };
    let id = bob.send(&guild.general, "pin me").await["id"].as_str().unwrap().to_owned();
    let pin = format!("/channels/{}/pins/{id}", guild.general);
    assert_eq!(mona.put_empty(&pin).await.0, StatusCode::NO_CONTENT);
    assert_error(&bob.put_empty(&pin).await, StatusCode::FORBIDDEN, "missing_permission");
}

#[tokio::test]
async fn reactions_are_unicode_emoji_added_listed_and_removed() {
    let server = Server::start().await;
    let (guild, users) = community(&server, &["alice", "bob", "carol"]).await;
    let [alice, bob, carol] = &users[..] else { unreachable!() };
    let id = alice.send(&guild.general, "react to me").await["id"].as_str().unwrap().to_owned();
    let message = format!("/channels/{}/messages/{id}", guild.general);
    let thumbs = encode("👍");
    let mine = format!("{message}/reactions/{thumbs}/@me");

    assert_eq!(bob.put_empty(&mine).await.0, StatusCode::NO_CONTENT);
    assert_eq!(bob.put_empty(&mine).await.0, StatusCode::NO_CONTENT, "reacting twice is a no-op");
    assert_eq!(carol.put_empty(&mine).await.0, StatusCode::NO_CONTENT);
    assert_eq!(
        carol.put_empty(&format!("{message}/reactions/{}/@me", encode("🎉"))).await.0,
        StatusCode::NO_CONTENT
    );

    let (status, reactors) = alice.get(&format!("{message}/reactions/{thumbs}")).await;
    assert_eq!(status, StatusCode::OK, "{reactors}");
    assert_eq!(reactors["users"], json!([bob.id, carol.id]));
    let (_, seen_by_bob) = bob.get(&message).await;
    assert_eq!(
        seen_by_bob["reactions"],
        json!([{"emoji": "👍", "count": 2, "me": true}, {"emoji": "🎉", "count": 1, "me": false}])
    );
    let (_, seen_by_alice) = alice.get(&message).await;
    assert_eq!(seen_by_alice["reactions"][0], json!({"emoji": "👍", "count": 2, "me": false}));

    assert_eq!(bob.delete(&mine).await.0, StatusCode::NO_CONTENT);
    assert_eq!(
        alice.get(&format!("{message}/reactions/{thumbs}")).await.1["users"],
        json!([carol.id])
    );
    assert_error(&bob.delete(&mine).await, StatusCode::NOT_FOUND, "unknown_reaction");

    for text in ["abc", ":thumbsup:", "a👍"] {
        let path = format!("{message}/reactions/{}/@me", encode(text));
        assert_error(&bob.put_empty(&path).await, StatusCode::BAD_REQUEST, "invalid_emoji");
    }
    assert_eq!(alice.get(&message).await.1["reactions"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn mentions_of_members_are_extracted() {
    let server = Server::start().await;
    let (guild, users) = community(&server, &["alice", "bob", "carol"]).await;
    let [alice, bob, carol] = &users[..] else { unreachable!() };
    let outsider = server.register("dave").await;
    let content = format!(
        "hey <@{}> and <@{}>, not <@{}> nor <@{}> nor <@bob>, and <@{}> again",
        bob.id,
        carol.id,
        outsider.id,
        server.user_id("nobody"),
        bob.id
    );
    let sent = alice.send(&guild.general, &content).await;
    assert_eq!(sent["mentions"], json!([bob.id, carol.id]));
    let (_, fetched) = bob
        .get(&format!("/channels/{}/messages/{}", guild.general, sent["id"].as_str().unwrap()))
        .await;
    assert_eq!(fetched["mentions"], json!([bob.id, carol.id]));
    assert_eq!(fetched["content"], content);
    assert_eq!(alice.send(&guild.general, "no mentions here").await["mentions"], json!([]));
}

#[tokio::test]
async fn messages_over_4000_characters_are_refused() {
    let server = Server::start().await;
    let alice = server.register("alice").await;
    let guild = alice.create_guild("Club").await;
    let messages = format!("/channels/{}/messages", guild.general);

    assert_error(
        &alice.post(&messages, json!({"content": "x".repeat(4001)})).await,
        StatusCode::BAD_REQUEST,
        "message_too_long",
    );
    assert_error(
        &alice.post(&messages, json!({"content": "é".repeat(4001)})).await,
        StatusCode::BAD_REQUEST,
        "message_too_long",
    );
    assert_error(
        &alice.post(&messages, json!({"content": ""})).await,
        StatusCode::BAD_REQUEST,
        "invalid_event",
    );
    assert!(alice.history(&guild.general).await.is_empty());
    // The limit counts characters, not bytes.
    alice.send(&guild.general, &"é".repeat(4000)).await;
    assert_eq!(alice.history(&guild.general).await.len(), 1);
}

#[tokio::test]
async fn a_resend_with_the_same_nonce_returns_the_same_message() {
    let server = Server::start().await;
    let alice = server.register("alice").await;
    let guild = alice.create_guild("Club").await;
    let messages = format!("/channels/{}/messages", guild.general);

    let (status, first) =
        alice.post(&messages, json!({"content": "only once", "nonce": "client-1"})).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let (status, again) =
        alice.post(&messages, json!({"content": "only once", "nonce": "client-1"})).await;
    assert!(status.is_success(), "{again}");
    assert_eq!(again["id"], first["id"]);
    let (_, other) =
        alice.post(&messages, json!({"content": "another", "nonce": "client-2"})).await;
    assert_ne!(other["id"], first["id"]);
    assert_eq!(alice.history_contents(&guild.general).await, ["another", "only once"]);

    assert_error(
        &alice.post(&messages, json!({"content": "bad", "nonce": "a/b"})).await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    );
    assert_eq!(alice.history(&guild.general).await.len(), 2);
}

#[tokio::test]
async fn search_matches_all_words_and_filters_by_author_and_time() {
    let server = Server::start().await;
    let (guild, users) = community(&server, &["alice", "bob"]).await;
    let [alice, bob] = &users[..] else { unreachable!() };
    let pie = alice.send(&guild.general, "apple pie").await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let tart = bob.send(&guild.general, "apple tart").await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    alice.send(&guild.general, "banana split").await;
    let tart_ts = tart["created_ts"].as_u64().unwrap();
    assert!(pie["created_ts"].as_u64().unwrap() < tart_ts);

    let search_path = format!("/guilds/{}/messages/search", guild.id);
    let search = async |query: &[(&str, &str)]| {
        let (status, body) = alice.get(&with_query(&search_path, query)).await;
        assert_eq!(status, StatusCode::OK, "{query:?}: {body}");
        contents(&body)
    };
    let tart_ts = tart_ts.to_string();
    assert_eq!(search(&[("q", "apple")]).await, ["apple tart", "apple pie"]);
    assert_eq!(search(&[("q", "APPLE")]).await, ["apple tart", "apple pie"]);
    assert_eq!(search(&[("q", "apple tart")]).await, ["apple tart"]);
    assert_eq!(search(&[("q", "apple"), ("author", &alice.id)]).await, ["apple pie"]);
    assert_eq!(search(&[("q", "apple"), ("after_ts", &tart_ts)]).await, ["apple tart"]);
    assert_eq!(search(&[("q", "apple"), ("before_ts", &tart_ts)]).await, ["apple pie"]);
    assert_eq!(search(&[("q", "apple"), ("limit", "1")]).await, ["apple tart"]);
    assert!(search(&[("q", "cherry")]).await.is_empty());
    assert!(
        search(&[("q", "\"apple\" OR pie*")]).await.is_empty(),
        "search words are never FTS syntax"
    );

    // Edits are re-indexed and deleted messages are gone from search.
    let tart_path =
        format!("/channels/{}/messages/{}", guild.general, tart["id"].as_str().unwrap());
    assert_eq!(bob.patch(&tart_path, json!({"content": "cherry tart"})).await.0, StatusCode::OK);
    assert_eq!(search(&[("q", "cherry")]).await, ["cherry tart"]);
    let pie_path = format!("/channels/{}/messages/{}", guild.general, pie["id"].as_str().unwrap());
    assert_eq!(alice.delete(&pie_path).await.0, StatusCode::NO_CONTENT);
    assert!(search(&[("q", "apple")]).await.is_empty());

    assert_error(
        &alice.get(&with_query(&search_path, &[("q", "  ")])).await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    );
    assert_error(
        &alice.get(&with_query(&search_path, &[("q", "x"), ("author", "bob")])).await,
        StatusCode::BAD_REQUEST,
        "invalid_id",
    );
    let outsider = server.register("outsider").await;
    assert_error(
        &outsider.get(&with_query(&search_path, &[("q", "banana")])).await,
        StatusCode::NOT_FOUND,
        "unknown_guild",
    );
}

#[tokio::test]
async fn search_never_returns_messages_the_searcher_cannot_view() {
    let server = Server::start().await;
    let (guild, users) = community(&server, &["alice", "bob"]).await;
    let [alice, bob] = &users[..] else { unreachable!() };
    let secret = private_channel(alice, &guild.id, "secret").await;
    alice.send(&secret, "launch codes").await;
    alice.send(&guild.general, "launch party").await;

    let search_path = format!("/guilds/{}/messages/search", guild.id);
    let search = async |user: &User, query: &[(&str, &str)]| {
        let (status, body) = user.get(&with_query(&search_path, query)).await;
        assert_eq!(status, StatusCode::OK, "{query:?}: {body}");
        contents(&body)
    };
    assert_eq!(search(alice, &[("q", "launch")]).await, ["launch party", "launch codes"]);
    assert_eq!(search(bob, &[("q", "launch")]).await, ["launch party"]);
    assert!(search(bob, &[("q", "codes")]).await.is_empty());
    assert!(search(bob, &[("q", "launch"), ("channel_id", &secret)]).await.is_empty());

    let allow = json!({"kind": "member", "allow": text(VIEW_CHANNEL)});
    assert_eq!(
        alice.put(&format!("/channels/{secret}/permissions/{}", bob.id), allow).await.0,
        StatusCode::OK
    );
    assert_eq!(search(bob, &[("q", "launch")]).await, ["launch party", "launch codes"]);
}

#[tokio::test]
async fn history_needs_read_message_history_for_single_messages_and_pins_too() {
    let server = Server::start().await;
    let (guild, users) = community(&server, &["alice", "bob"]).await;
    let [alice, bob] = &users[..] else { unreachable!() };
    let sent = alice.send(&guild.general, "said before bob looked").await;
    let id = sent["id"].as_str().unwrap().to_owned();
    let (status, _) = alice.put_empty(&format!("/channels/{}/pins/{id}", guild.general)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    // READ_MESSAGE_HISTORY (1 << 16) taken from @everyone.
    let deny = json!({"kind": "role", "deny": (1u64 << 16).to_string()});
    let (status, _) =
        alice.put(&format!("/channels/{}/permissions/everyone", guild.general), deny).await;
    assert_eq!(status, StatusCode::OK);

    let single = bob.get(&format!("/channels/{}/messages/{id}", guild.general)).await;
    assert_error(&single, StatusCode::FORBIDDEN, "missing_permission");
    let (status, pins) = bob.get(&format!("/channels/{}/pins", guild.general)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(pins["messages"], json!([]), "pins are history too");
    // The owner may still read it all.
    let (status, _) = alice.get(&format!("/channels/{}/messages/{id}", guild.general)).await;
    assert_eq!(status, StatusCode::OK);
}
