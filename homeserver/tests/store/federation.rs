//! Store cases: federation.

use guildhall_homeserver::store::{AppendedEvent, Store, StoredEvent, now_ms};
use guildhall_spec::event::JsonObject;
use guildhall_spec::state::GuildState;
use guildhall_spec::{GuildId, ServerName, TxnId, UserId};
use serde_json::json;

use crate::engines::on_both_engines;
use crate::guilds::{Log, content, new_event_id};

fn object(value: serde_json::Value) -> JsonObject {
    let serde_json::Value::Object(object) = value else { panic!("not an object: {value}") };
    object
}

fn seqs(events: &[StoredEvent]) -> Vec<u64> {
    events.iter().map(|event| event.seq).collect()
}

on_both_engines! {
    async fn outbound_events_are_batched_and_deleted_in_order(store: Store) {
        let mut log = Log::create(&store, "g").await;
        log.channel(&store, "general").await;
        let peer = ServerName::parse("peer.example").unwrap();
        let other = ServerName::parse("other.example").unwrap();
        let owner = log.owner.clone();
        let mut message_ids = Vec::new();
        for n in 0..3 {
            let create = content(
                "message.create",
                json!({ "channel_id": "general", "body": format!("m{n}") }),
            );
            let mut copy = object(serde_json::to_value(&create).unwrap());
            copy.insert("n".into(), n.into());
            let outbound = vec![(peer.clone(), copy.clone()), (other.clone(), copy)];
            message_ids.push(log.append_as(&store, &owner, &create, &outbound).await.0);
        }
        let mut destinations = store.outbound_destinations().await.unwrap();
        destinations.sort();
        assert_eq!(destinations, [other.clone(), peer.clone()]);
        let sizes = store.outbound_queue_sizes().await.unwrap();
        assert_eq!(sizes, [("other.example".to_owned(), 3, 0), ("peer.example".to_owned(), 3, 0)]);
        let batch = store.outbound_batch(&peer, 2).await.unwrap();
        assert_eq!(
            batch.iter().map(|row| row.event["n"].as_u64().unwrap()).collect::<Vec<_>>(),
            [0, 1]
        );
        assert!(batch[0].id < batch[1].id);
        assert_eq!(batch[0].event["content"]["body"], "m0");
        store.delete_outbound(&peer, batch[1].id).await.unwrap();
        let rest = store.outbound_batch(&peer, 10).await.unwrap();
        assert_eq!(
            rest.iter().map(|row| row.event["n"].as_u64().unwrap()).collect::<Vec<_>>(),
            [2]
        );
        assert_eq!(
            store.outbound_batch(&other, 10).await.unwrap().len(),
            3,
            "other queues untouched"
        );
        // An erased message's queued copies lose their content.
        let delete = content(
            "message.delete",
            json!({ "channel_id": "general", "message_id": message_ids[2].as_str() }),
        );
        log.append(&store, &delete).await;
        let queued = store.outbound_batch(&other, 10).await.unwrap();
        assert_eq!(queued[2].event["n"], 2);
        assert!(queued[2].event.get("content").is_none(), "{:?}", queued[2].event);
        assert_eq!(queued[1].event["content"]["body"], "m1");
        store.delete_outbound(&peer, rest[0].id).await.unwrap();
        assert_eq!(store.outbound_destinations().await.unwrap(), [other]);
    }
}

on_both_engines! {
    async fn proposals_queue_per_host(store: Store) {
        let guild = GuildId::parse("!g:host.example").unwrap();
        store.queue_proposal(&guild, &object(json!({ "n": 1 }))).await.unwrap();
        store.queue_proposal(&guild, &object(json!({ "n": 2 }))).await.unwrap();
        let host = ServerName::parse("host.example").unwrap();
        assert_eq!(store.proposal_hosts().await.unwrap(), std::slice::from_ref(&host));
        assert_eq!(
            store.outbound_queue_sizes().await.unwrap(),
            [("host.example".to_owned(), 0, 2)]
        );
        let first = store.next_proposal(&host).await.unwrap().unwrap();
        assert_eq!((&first.guild_id, &first.proposal["n"]), (&guild, &json!(1)));
        store.delete_proposal(first.id).await.unwrap();
        let second = store.next_proposal(&host).await.unwrap().unwrap();
        assert_eq!(second.proposal["n"], 2);
        store.delete_proposal(second.id).await.unwrap();
        assert!(store.next_proposal(&host).await.unwrap().is_none());
        assert!(store.proposal_hosts().await.unwrap().is_empty());
    }
}

on_both_engines! {
    async fn inbound_transactions_and_join_answers_are_kept_then_pruned(store: Store) {
        let origin = ServerName::parse("peer.example").unwrap();
        store.record_inbound_txn(&origin, "t1", "{\"first\":1}").await.unwrap();
        store.record_inbound_txn(&origin, "t1", "{\"second\":1}").await.unwrap();
        assert_eq!(
            store.inbound_txn(&origin, "t1").await.unwrap().as_deref(),
            Some("{\"first\":1}")
        );
        let stranger = ServerName::parse("stranger.example").unwrap();
        assert!(store.inbound_txn(&stranger, "t1").await.unwrap().is_none());
        let guild = GuildId::parse("!g:host.example").unwrap();
        let event = new_event_id();
        store.record_join_answer(&guild, &event, "answer").await.unwrap();
        store.record_join_answer(&guild, &event, "later").await.unwrap();
        assert_eq!(store.join_answer(&guild, &event).await.unwrap().as_deref(), Some("answer"));
        // Nothing is old yet.
        assert_eq!(store.prune_inbound_txns(now_ms()).await.unwrap(), 0);
        assert!(store.inbound_txn(&origin, "t1").await.unwrap().is_some());
        // A month later both are.
        let later = now_ms() + 30 * 24 * 3600 * 1000;
        assert_eq!(store.prune_inbound_txns(later).await.unwrap(), 2);
        assert!(store.inbound_txn(&origin, "t1").await.unwrap().is_none());
        assert!(store.join_answer(&guild, &event).await.unwrap().is_none());
    }
}

on_both_engines! {
    async fn equivocation_evidence_is_deduplicated_and_bounded(store: Store) {
        let guild = GuildId::parse("!g:host.example").unwrap();
        let event = |n: u64| object(json!({ "n": n }));
        for variant in 0..3 {
            store.record_equivocation(&guild, 1, &event(0), &event(variant + 1)).await.unwrap();
        }
        let recorded = store.equivocations().await.unwrap();
        assert_eq!(recorded.len(), 1);
        assert_eq!(recorded[0]["guild_id"], "!g:host.example");
        assert_eq!(recorded[0]["seq"], 1);
        assert_eq!(
            recorded[0]["events"],
            json!([{ "n": 0 }, { "n": 1 }]),
            "the first proof is kept"
        );
        for seq in 2..150 {
            store.record_equivocation(&guild, seq, &event(0), &event(seq)).await.unwrap();
        }
        let other = GuildId::parse("!other:host.example").unwrap();
        store.record_equivocation(&other, 1, &event(0), &event(1)).await.unwrap();
        let recorded = store.equivocations().await.unwrap();
        // The newest 100 are listed; this guild holds 100, the other guild its one.
        assert_eq!(recorded.len(), 100);
        assert_eq!(recorded[0]["guild_id"], "!other:host.example");
        assert_eq!(recorded[1]["seq"], 100, "nothing past the bound: {}", recorded[1]);
    }
}

on_both_engines! {
    async fn guild_events_are_read_by_range_seq_and_id(store: Store) {
        let mut log = Log::create(&store, "g").await;
        let mut ids = Vec::new();
        for n in 0..5 {
            ids.push(log.channel(&store, &format!("c{n}")).await);
        }
        // Seqs 1 (create) to 6.
        let guild = log.guild_id.clone();
        assert_eq!(seqs(&store.guild_events(&guild, 0, 100).await.unwrap()), [1, 2, 3, 4, 5, 6]);
        assert_eq!(seqs(&store.guild_events(&guild, 2, 3).await.unwrap()), [3, 4, 5]);
        assert!(store.guild_events(&guild, 6, 10).await.unwrap().is_empty());
        assert_eq!(seqs(&store.guild_events_before(&guild, 4, 2).await.unwrap()), [3, 4]);
        assert_eq!(seqs(&store.guild_events_before(&guild, 100, 3).await.unwrap()), [4, 5, 6]);
        let third = store.guild_event(&guild, 3).await.unwrap().unwrap();
        assert_eq!(third.event["content"]["channel_id"], "c1");
        assert!(store.guild_event(&guild, 7).await.unwrap().is_none());
        let elsewhere = GuildId::parse("!elsewhere:host.example").unwrap();
        assert!(store.guild_event(&elsewhere, 3).await.unwrap().is_none());
        let wanted = [
            third.event_id.clone(),
            new_event_id(),
            store.guild_event(&guild, 1).await.unwrap().unwrap().event_id,
        ];
        assert_eq!(seqs(&store.events_by_id(&guild, &wanted).await.unwrap()), [3, 1]);
        assert!(store.events_by_id(&elsewhere, &wanted).await.unwrap().is_empty());
    }
}

/// Stores an event of a replicated guild as received without its content.
async fn store_withheld(
    store: &Store,
    guild: &GuildId,
    seq: u64,
    content: &serde_json::Value,
) -> StoredEvent {
    let sender = UserId::parse("@author:host.example").unwrap();
    let event_id = new_event_id();
    let txn_id = TxnId::parse(&format!("t{seq}")).unwrap();
    let event = object(json!({
        "guild_id": guild.as_str(), "seq": seq, "type": content["type"], "sender": sender.as_str(),
        "origin": "host.example", "origin_ts": seq, "txn_id": txn_id.as_str(),
        "content_hash": "unchecked",
    }));
    let state = GuildState::new(
        guild.clone(),
        "g".into(),
        guildhall_spec::content::GuildKind::Guild,
        sender.clone(),
        0,
    );
    store
        .append_event(&AppendedEvent {
            guild_id: guild,
            seq,
            event_id: &event_id,
            event: &event,
            sender: &sender,
            txn_id: &txn_id,
            origin_ts: seq,
            event_type: content["type"].as_str().unwrap(),
            content: None,
            backfill: true,
            before: None,
            after: &state,
            outbound: &[],
        })
        .await
        .unwrap();
    let mut full = event;
    full.insert("content".into(), content["content"].clone());
    StoredEvent { stream_id: 0, guild_id: guild.clone(), seq, event_id, event: full }
}

on_both_engines! {
    async fn withheld_content_is_filled_once_and_never_after_erasure(store: Store) {
        let guild = GuildId::parse("!replica:host.example").unwrap();
        let mut withheld = Vec::new();
        for seq in 1..=4 {
            let create = json!({
                "type": "message.create",
                "content": { "channel_id": "general", "body": format!("late {seq}") },
            });
            withheld.push((store_withheld(&store, &guild, seq, &create).await, create));
        }
        let ids = |events: &[(StoredEvent, serde_json::Value)]| {
            events.iter().map(|(event, _)| event.event_id.clone()).collect::<Vec<_>>()
        };
        assert_eq!(store.withheld_events(&guild, 10).await.unwrap(), ids(&withheld));
        assert_eq!(store.withheld_events(&guild, 2).await.unwrap(), ids(&withheld[2..]));
        // The content of seq 1 arrives: the message is indexed as if it had come with it.
        let (first, create) = &withheld[0];
        let typed = content("message.create", create["content"].clone());
        assert!(store.fill_withheld(first, &typed).await.unwrap());
        assert!(!store.fill_withheld(first, &typed).await.unwrap(), "already filled");
        let message = store.message(&guild, &first.event_id).await.unwrap().unwrap();
        assert_eq!(message.body.as_deref(), Some("late 1"));
        assert_eq!(
            store.guild_event(&guild, 1).await.unwrap().unwrap().event["content"]["body"],
            "late 1"
        );
        // Seq 2's message is erased before its content comes: it stays erased and is not asked for.
        let (second, create) = &withheld[1];
        let delete = json!({
            "type": "message.delete",
            "content": { "channel_id": "general", "message_id": second.event_id.as_str() },
        });
        let delete_event = store_withheld(&store, &guild, 5, &delete).await;
        assert!(
            store
                .fill_withheld(&delete_event, &content("message.delete", delete["content"].clone()))
                .await
                .unwrap()
        );
        assert!(store.is_erased(&guild, &second.event_id).await.unwrap());
        let typed = content("message.create", create["content"].clone());
        assert!(!store.fill_withheld(second, &typed).await.unwrap());
        assert!(store.message(&guild, &second.event_id).await.unwrap().unwrap().body.is_none());
        assert_eq!(store.withheld_events(&guild, 10).await.unwrap(), ids(&withheld[2..]));
    }
}
