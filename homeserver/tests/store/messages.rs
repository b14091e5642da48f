//! Store cases: messages.

use guildhall_homeserver::store::{MessageQuery, MessageRow, SearchQuery, Store};
use guildhall_spec::{ChannelId, EventId, UserId};
use serde_json::json;

use crate::engines::on_both_engines;
use crate::guilds::{Log, content};

async fn say(store: &Store, log: &mut Log, channel: &ChannelId, body: &str) -> EventId {
    let create = content("message.create", json!({ "channel_id": channel.as_str(), "body": body }));
    log.append(store, &create).await.0
}

fn search(words: &[&str], channels: &[&ChannelId]) -> SearchQuery {
    SearchQuery {
        words: words.iter().map(|word| (*word).to_owned()).collect(),
        channels: channels.iter().map(|channel| (*channel).clone()).collect(),
        author: None,
        after_ts: None,
        before_ts: None,
        limit: 50,
    }
}

fn bodies(messages: &[MessageRow]) -> Vec<&str> {
    messages.iter().map(|message| message.body.as_deref().unwrap_or("<none>")).collect()
}

on_both_engines! {
    async fn a_message_is_created_edited_and_erased(store: Store) {
        let mut log = Log::create(&store, "g").await;
        let channel = log.channel(&store, "general").await;
        let create = content(
            "message.create",
            json!({
                "channel_id": "general",
                "body": "hello brave new world",
                "mentions": [log.owner.as_str()],
            }),
        );
        let (id, _) = log.append(&store, &create).await;
        let message = store.message(&log.guild_id, &id).await.unwrap().unwrap();
        assert_eq!(message.body.as_deref(), Some("hello brave new world"));
        assert_eq!((message.created_seq, message.created_ts), (3, 3_000));
        assert_eq!((&message.author, &message.channel_id), (&log.owner, &channel));
        assert_eq!(message.mentions, [log.owner.clone()]);
        assert_eq!((message.edited_ts, message.deleted), (None, false));

        let edit = content(
            "message.edit",
            json!({
                "channel_id": "general",
                "message_id": id.as_str(),
                "body": "goodbye old world",
            }),
        );
        log.append(&store, &edit).await;
        let message = store.message(&log.guild_id, &id).await.unwrap().unwrap();
        assert_eq!(
            (message.body.as_deref(), message.edited_ts),
            (Some("goodbye old world"), Some(4_000))
        );
        // The search index follows the edit.
        assert!(
            store.search(&log.guild_id, &search(&["brave"], &[&channel])).await.unwrap().is_empty()
        );
        assert_eq!(
            bodies(
                &store
                    .search(&log.guild_id, &search(&["old", "WORLD"], &[&channel]))
                    .await
                    .unwrap()
            ),
            ["goodbye old world"]
        );

        let target = json!({ "channel_id": "general", "message_id": id.as_str() });
        let react = content(
            "reaction.add",
            json!({ "channel_id": "general", "message_id": id.as_str(), "emoji": "👍" }),
        );
        log.append(&store, &react).await;
        log.append(&store, &content("pin.add", target.clone())).await;
        assert!(store.is_pinned(&log.guild_id, &id).await.unwrap());
        assert!(store.has_reacted(&log.guild_id, &id, &log.owner, "👍").await.unwrap());

        log.append(&store, &content("message.delete", target)).await;
        let message = store.message(&log.guild_id, &id).await.unwrap().unwrap();
        assert!(message.deleted && message.body.is_none(), "erased: {message:?}");
        let facts = store.message_facts(&log.guild_id, &id).await.unwrap().unwrap();
        assert!(facts.deleted);
        assert!(store.is_erased(&log.guild_id, &id).await.unwrap());
        let page = MessageQuery { before_seq: None, after_seq: None, limit: 50 };
        assert!(store.messages(&log.guild_id, &channel, &page).await.unwrap().is_empty());
        assert!(
            store.search(&log.guild_id, &search(&["world"], &[&channel])).await.unwrap().is_empty()
        );
        assert!(
            store.reactions(&log.guild_id, std::slice::from_ref(&id), &log.owner).await.unwrap().is_empty()
        );
        assert!(store.pins(&log.guild_id, &channel).await.unwrap().is_empty());
        assert!(!store.is_pinned(&log.guild_id, &id).await.unwrap());
        // The content of the create and the edit is gone from the log; the envelopes stay.
        let events = store.guild_events(&log.guild_id, 2, 10).await.unwrap();
        assert_eq!(events.len(), 5);
        assert!(
            events[0].event.get("content").is_none() && events[1].event.get("content").is_none()
        );
        assert_eq!(events[0].event["type"], "message.create");
        assert!(events[2].event.get("content").is_some(), "the reaction keeps its content");
    }
}

on_both_engines! {
    async fn history_pages_run_newest_first(store: Store) {
        let mut log = Log::create(&store, "g").await;
        let channel = log.channel(&store, "general").await;
        let other = log.channel(&store, "other").await;
        for n in 1..=5 {
            say(&store, &mut log, &channel, &format!("message {n}")).await;
        }
        say(&store, &mut log, &other, "elsewhere").await;
        let page = |before_seq, after_seq, limit| MessageQuery { before_seq, after_seq, limit };
        let read = |query: MessageQuery| {
            let (store, guild, channel) = (store.clone(), log.guild_id.clone(), channel.clone());
            async move {
                let rows = store.messages(&guild, &channel, &query).await.unwrap();
                rows.iter().map(|row| row.body.clone().unwrap()).collect::<Vec<_>>()
            }
        };
        // Seqs: messages 1..5 are seqs 4..8.
        assert_eq!(read(page(None, None, 2)).await, ["message 5", "message 4"]);
        assert_eq!(read(page(Some(6), None, 10)).await, ["message 2", "message 1"]);
        // Only `after`: the page just after it, still newest first.
        assert_eq!(read(page(None, Some(5), 2)).await, ["message 4", "message 3"]);
        assert_eq!(read(page(Some(8), Some(4), 10)).await, ["message 4", "message 3", "message 2"]);
    }
}

on_both_engines! {
    async fn reactions_are_counted_per_emoji_in_order(store: Store) {
        let mut log = Log::create(&store, "g").await;
        let channel = log.channel(&store, "general").await;
        let first = say(&store, &mut log, &channel, "first").await;
        let second = say(&store, &mut log, &channel, "second").await;
        let bob = UserId::parse("@bob:peer.example").unwrap();
        let react = |message: &EventId, emoji: &str| {
            content(
                "reaction.add",
                json!({ "channel_id": "general", "message_id": message.as_str(), "emoji": emoji }),
            )
        };
        let owner = log.owner.clone();
        log.append_as(&store, &bob, &react(&first, "🎉"), &[]).await;
        log.append_as(&store, &owner, &react(&first, "👍"), &[]).await;
        log.append_as(&store, &bob, &react(&first, "👍"), &[]).await;
        log.append_as(&store, &bob, &react(&first, "👍"), &[]).await;
        log.append_as(&store, &owner, &react(&second, "🎉"), &[]).await;
        let counts =
            store.reactions(&log.guild_id, &[first.clone(), second.clone()], &owner).await.unwrap();
        let summary: Vec<(bool, &str, u64, bool)> = counts
            .iter()
            .map(|count| (count.message_id == first, count.emoji.as_str(), count.count, count.me))
            .collect();
        assert_eq!(
            summary,
            [(true, "🎉", 1, false), (true, "👍", 2, true), (false, "🎉", 1, true)]
        );
        assert_eq!(
            store.reactors(&log.guild_id, &first, "👍", 10).await.unwrap(),
            [owner.clone(), bob.clone()]
        );
        assert_eq!(store.reactors(&log.guild_id, &first, "👍", 1).await.unwrap(), std::slice::from_ref(&owner));
        let remove = content(
            "reaction.remove",
            json!({ "channel_id": "general", "message_id": first.as_str(), "emoji": "👍" }),
        );
        log.append_as(&store, &bob, &remove, &[]).await;
        assert!(!store.has_reacted(&log.guild_id, &first, &bob, "👍").await.unwrap());
        assert!(store.has_reacted(&log.guild_id, &first, &bob, "🎉").await.unwrap());
        assert!(store.reactions(&log.guild_id, &[], &owner).await.unwrap().is_empty());
    }
}

on_both_engines! {
    async fn pins_come_most_recent_first(store: Store) {
        let mut log = Log::create(&store, "g").await;
        let channel = log.channel(&store, "general").await;
        let first = say(&store, &mut log, &channel, "first").await;
        let second = say(&store, &mut log, &channel, "second").await;
        for message in [&first, &second] {
            let pin = content(
                "pin.add",
                json!({ "channel_id": "general", "message_id": message.as_str() }),
            );
            log.append(&store, &pin).await;
        }
        assert_eq!(
            bodies(&store.pins(&log.guild_id, &channel).await.unwrap()),
            ["second", "first"]
        );
        let unpin = content(
            "pin.remove",
            json!({ "channel_id": "general", "message_id": second.as_str() }),
        );
        log.append(&store, &unpin).await;
        assert_eq!(bodies(&store.pins(&log.guild_id, &channel).await.unwrap()), ["first"]);
        log.append(&store, &content("channel.delete", json!({ "channel_id": "general" }))).await;
        assert!(store.pins(&log.guild_id, &channel).await.unwrap().is_empty());
    }
}

on_both_engines! {
    async fn search_matches_every_word_with_filters(store: Store) {
        let mut log = Log::create(&store, "g").await;
        let channel = log.channel(&store, "general").await;
        let hidden = log.channel(&store, "hidden").await;
        say(&store, &mut log, &channel, "the quick brown fox").await;
        say(&store, &mut log, &channel, "a quick red fox").await;
        say(&store, &mut log, &channel, "slow brown dog").await;
        say(&store, &mut log, &hidden, "quick secret fox").await;
        let bob = UserId::parse("@bob:peer.example").unwrap();
        let create = content(
            "message.create",
            json!({ "channel_id": "general", "body": "quick fox by bob" }),
        );
        log.append_as(&store, &bob, &create, &[]).await;
        let found = |query: SearchQuery| {
            let (store, guild) = (store.clone(), log.guild_id.clone());
            async move {
                let rows = store.search(&guild, &query).await.unwrap();
                rows.iter().map(|row| row.body.clone().unwrap()).collect::<Vec<_>>()
            }
        };
        assert_eq!(
            found(search(&["quick", "fox"], &[&channel])).await,
            ["quick fox by bob", "a quick red fox", "the quick brown fox"]
        );
        assert_eq!(
            found(search(&["Brown"], &[&channel, &hidden])).await,
            ["slow brown dog", "the quick brown fox"]
        );
        assert_eq!(found(search(&["secret"], &[&channel, &hidden])).await, ["quick secret fox"]);
        assert!(found(search(&["secret"], &[&channel])).await.is_empty());
        assert!(found(search(&["quick", "cat"], &[&channel])).await.is_empty());
        // Search syntax in the input is text.
        assert!(found(search(&["\"fox\"", "OR", "cat"], &[&channel])).await.is_empty());
        assert_eq!(found(search(&["\"fox\""], &[&channel])).await.len(), 3);
        // A word without any letter or digit matches nothing alone and is ignored beside others.
        assert!(found(search(&["!!!"], &[&channel])).await.is_empty());
        assert_eq!(found(search(&["red", "!!!"], &[&channel])).await, ["a quick red fox"]);
        let mut by_bob = search(&["fox"], &[&channel]);
        by_bob.author = Some(bob);
        assert_eq!(found(by_bob).await, ["quick fox by bob"]);
        // Each event is created at 1000 × its seq: the red fox is seq 5, bob's fox seq 8.
        let mut window = search(&["fox"], &[&channel]);
        window.after_ts = Some(5_000);
        window.before_ts = Some(8_000);
        assert_eq!(found(window).await, ["a quick red fox"]);
        let mut one = search(&["fox"], &[&channel]);
        one.limit = 1;
        assert_eq!(found(one).await, ["quick fox by bob"]);
        assert!(found(search(&[], &[&channel])).await.is_empty());
        assert!(found(search(&["fox"], &[])).await.is_empty());
    }
}
