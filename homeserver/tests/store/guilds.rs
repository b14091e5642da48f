//! Store cases: guilds.

use std::sync::atomic::{AtomicU64, Ordering};

use guildhall_homeserver::store::{AppendedEvent, Store, StoredEvent};
use guildhall_spec::content::{EventContent, GuildKind};
use guildhall_spec::event::JsonObject;
use guildhall_spec::state::GuildState;
use guildhall_spec::{ChannelId, EventId, GuildId, InviteCode, ServerName, TxnId, UserId};
use serde_json::{Value, json};

use crate::engines::on_both_engines;

/// A guild log written straight to the store (events are neither signed nor authorized: the
/// store keeps what it is given).
pub(crate) struct Log {
    pub(crate) guild_id: GuildId,
    pub(crate) owner: UserId,
    pub(crate) state: Option<GuildState>,
    pub(crate) seq: u64,
}

/// A well-formed event id, unique within a test binary.
pub(crate) fn new_event_id() -> EventId {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    EventId::parse(&format!("${n:0>42}A")).unwrap()
}

/// Typed content from its wire form.
pub(crate) fn content(event_type: &str, content: Value) -> EventContent {
    serde_json::from_value(json!({ "type": event_type, "content": content })).unwrap()
}

impl Log {
    /// A guild hosted by `host.example`, created by `@owner:host.example` (seq 1).
    pub(crate) async fn create(store: &Store, name: &str) -> Self {
        let mut log = Self {
            guild_id: GuildId::parse(&format!("!{name}:host.example")).unwrap(),
            owner: UserId::parse("@owner:host.example").unwrap(),
            state: None,
            seq: 0,
        };
        let create = content(
            "guild.create",
            json!({ "name": name, "kind": "guild", "owner": log.owner.as_str() }),
        );
        log.append(store, &create).await;
        log
    }

    /// Appends an event by the owner; returns its id and stream position.
    pub(crate) async fn append(&mut self, store: &Store, content: &EventContent) -> (EventId, i64) {
        let owner = self.owner.clone();
        self.append_as(store, &owner, content, &[]).await
    }

    /// Appends an event by `sender` with the deliveries it implies.
    pub(crate) async fn append_as(
        &mut self,
        store: &Store,
        sender: &UserId,
        content: &EventContent,
        outbound: &[(ServerName, JsonObject)],
    ) -> (EventId, i64) {
        self.seq += 1;
        let origin_ts = 1_000 * self.seq;
        let event_id = new_event_id();
        let txn_id =
            TxnId::parse(&format!("txn-{}", event_id.as_str().trim_start_matches('$'))).unwrap();
        let Value::Object(mut event) = serde_json::to_value(content).unwrap() else {
            unreachable!("content serializes as an object")
        };
        event.insert("guild_id".into(), self.guild_id.as_str().into());
        event.insert("seq".into(), self.seq.into());
        event.insert("sender".into(), sender.as_str().into());
        event.insert("origin".into(), "host.example".into());
        event.insert("origin_ts".into(), origin_ts.into());
        event.insert("txn_id".into(), txn_id.as_str().into());
        let before = self.state.clone();
        let after = match &before {
            Some(state) => {
                let mut after = state.clone();
                after.apply(sender, origin_ts, content);
                after
            }
            None => GuildState::new(
                self.guild_id.clone(),
                "guild".into(),
                GuildKind::Guild,
                self.owner.clone(),
                origin_ts,
            ),
        };
        let stream_id = store
            .append_event(&AppendedEvent {
                guild_id: &self.guild_id,
                seq: self.seq,
                event_id: &event_id,
                event: &event,
                sender,
                txn_id: &txn_id,
                origin_ts,
                event_type: content.event_type(),
                content: Some(content),
                backfill: false,
                before: before.as_ref(),
                after: &after,
                outbound,
            })
            .await
            .unwrap();
        self.state = Some(after);
        (event_id, stream_id)
    }

    /// Creates a text channel.
    pub(crate) async fn channel(&mut self, store: &Store, id: &str) -> ChannelId {
        let create = content(
            "channel.create",
            json!({ "channel_id": id, "name": id, "kind": "text", "position": 0 }),
        );
        self.append(store, &create).await;
        ChannelId::parse(id).unwrap()
    }
}

fn seqs(events: &[StoredEvent]) -> Vec<u64> {
    events.iter().map(|event| event.seq).collect()
}

on_both_engines! {
    async fn appends_keep_the_head_state_and_indexes(store: Store) {
        let mut log = Log::create(&store, "g1").await;
        let channel = log.channel(&store, "general").await;
        let invite = content("invite.create", json!({ "code": "abc", "channel_id": "general" }));
        let (invite_event, _) = log.append(&store, &invite).await;
        let (seq, head, state) = store.guild(&log.guild_id).await.unwrap().unwrap();
        assert_eq!((seq, &head), (3, &invite_event));
        assert_eq!(&state, log.state.as_ref().unwrap());
        assert_eq!(store.head_seq(&log.guild_id).await.unwrap(), Some(3));
        assert_eq!(store.guilds_of(&log.owner).await.unwrap(), [log.guild_id.clone()]);
        assert_eq!(
            store.member_channel_guilds(&channel, &log.owner).await.unwrap(),
            [log.guild_id.clone()]
        );
        let code = InviteCode::parse("abc").unwrap();
        assert_eq!(
            store.member_invite_guilds(&code, &log.owner).await.unwrap(),
            [log.guild_id.clone()]
        );
        let host = ServerName::parse("host.example").unwrap();
        let other = ServerName::parse("other.example").unwrap();
        assert_eq!(
            store.hosted_invite_guild(&code, &host).await.unwrap(),
            Some(log.guild_id.clone())
        );
        assert_eq!(store.hosted_invite_guild(&code, &other).await.unwrap(), None);
        let elsewhere = GuildId::parse("!g2:host.example").unwrap();
        assert!(!store.channel_id_used_elsewhere(&channel, &log.guild_id).await.unwrap());
        assert!(store.channel_id_used_elsewhere(&channel, &elsewhere).await.unwrap());
        assert!(!store.invite_code_used_elsewhere(&code, &log.guild_id).await.unwrap());
        assert!(store.invite_code_used_elsewhere(&code, &elsewhere).await.unwrap());
        assert!(store.has_event(&invite_event).await.unwrap());
        assert!(!store.has_event(&new_event_id()).await.unwrap());
        assert!(store.guild(&elsewhere).await.unwrap().is_none());
        // Hosted here, not replicated; a guild of another host is.
        assert!(store.replicated_guilds(&host).await.unwrap().is_empty());
        assert_eq!(store.replicated_guilds(&other).await.unwrap(), [log.guild_id.clone()]);
    }
}

on_both_engines! {
    async fn the_stream_orders_events_across_guilds(store: Store) {
        assert_eq!(store.stream_head().await.unwrap(), 0);
        let mut one = Log::create(&store, "one").await;
        let mut two = Log::create(&store, "two").await;
        one.channel(&store, "a").await;
        two.channel(&store, "b").await;
        one.channel(&store, "c").await;
        let head = store.stream_head().await.unwrap();
        let guilds = [one.guild_id.clone(), two.guild_id.clone()];
        let all = store.events_since(0, &guilds, 100).await.unwrap();
        let streams: Vec<i64> = all.iter().map(|event| event.stream_id).collect();
        assert_eq!(streams.len(), 5, "every event once: {streams:?}");
        assert!(streams.windows(2).all(|pair| pair[0] < pair[1]), "ascending: {streams:?}");
        assert_eq!(*streams.last().unwrap(), head);
        let order: Vec<(&str, u64)> =
            all.iter().map(|event| (event.guild_id.as_str(), event.seq)).collect();
        assert_eq!(
            order,
            [
                ("!one:host.example", 1),
                ("!two:host.example", 1),
                ("!one:host.example", 2),
                ("!two:host.example", 2),
                ("!one:host.example", 3),
            ]
        );
        let after_second = store.events_since(streams[1], &guilds, 2).await.unwrap();
        assert_eq!(
            after_second.iter().map(|event| event.stream_id).collect::<Vec<_>>(),
            streams[2..4]
        );
        let only_two = store.events_since(0, &guilds[1..], 100).await.unwrap();
        assert_eq!(seqs(&only_two), [1, 2]);
        assert!(store.events_since(0, &[], 100).await.unwrap().is_empty());
        assert!(store.events_since(head, &guilds, 100).await.unwrap().is_empty());
        // Stored events come back as given, content included.
        let first = &all[0];
        assert_eq!(first.event["type"], "guild.create");
        assert_eq!(first.event["content"]["name"], "one");
        assert_eq!(first.event["guild_id"], "!one:host.example");
    }
}

on_both_engines! {
    async fn a_retried_transaction_finds_its_event(store: Store) {
        let mut log = Log::create(&store, "g").await;
        let create = content(
            "channel.create",
            json!({ "channel_id": "c", "name": "c", "kind": "text", "position": 0 }),
        );
        let (event_id, stream_id) = log.append(&store, &create).await;
        let stored = store.events_since(stream_id - 1, &[log.guild_id.clone()], 1).await.unwrap();
        let txn_id = TxnId::parse(stored[0].event["txn_id"].as_str().unwrap()).unwrap();
        let found = store.txn_event(&log.owner, &txn_id).await.unwrap().unwrap();
        assert_eq!((&found.event_id, found.stream_id, found.seq), (&event_id, stream_id, 2));
        assert_eq!(found.event, stored[0].event);
        let stranger = UserId::parse("@stranger:host.example").unwrap();
        assert!(store.txn_event(&stranger, &txn_id).await.unwrap().is_none());
        let unknown = TxnId::parse("unknown").unwrap();
        assert!(store.txn_event(&log.owner, &unknown).await.unwrap().is_none());
    }
}

on_both_engines! {
    async fn concurrent_appends_to_several_guilds_all_reach_the_stream(store: Store) {
        let mut logs = Vec::new();
        for n in 0..4 {
            logs.push(Log::create(&store, &format!("c{n}")).await);
        }
        let start = store.stream_head().await.unwrap();
        let writers = logs.into_iter().map(|mut log| {
            let store = store.clone();
            async move {
                for n in 0..10 {
                    // As the guild service does: the guild's lock across the append.
                    let _lock = store.lock_guild(&log.guild_id).await.unwrap();
                    log.channel(&store, &format!("ch{n}")).await;
                }
                log
            }
        });
        let logs = futures_util::future::join_all(writers).await;
        let guilds: Vec<GuildId> = logs.iter().map(|log| log.guild_id.clone()).collect();
        let events = store.events_since(start, &guilds, 1000).await.unwrap();
        assert_eq!(events.len(), 40, "every append once");
        let streams: Vec<i64> = events.iter().map(|event| event.stream_id).collect();
        assert!(streams.windows(2).all(|pair| pair[0] < pair[1]), "ascending: {streams:?}");
        for guild in &guilds {
            let mine: Vec<u64> = events
                .iter()
                .filter(|event| &event.guild_id == guild)
                .map(|event| event.seq)
                .collect();
            assert_eq!(mine, (2..=11).collect::<Vec<_>>(), "{guild}: its log in order");
        }
        assert_eq!(store.stream_head().await.unwrap(), *streams.last().unwrap());
    }
}

on_both_engines! {
    async fn a_snapshot_replaces_the_replica_and_its_indexes(store: Store) {
        let guild = GuildId::parse("!replica:host.example").unwrap();
        let owner = UserId::parse("@owner:host.example").unwrap();
        let member = UserId::parse("@member:here.example").unwrap();
        let mut first =
            GuildState::new(guild.clone(), "r".into(), GuildKind::Guild, owner.clone(), 0);
        let channel = content(
            "channel.create",
            json!({ "channel_id": "old", "name": "old", "kind": "text", "position": 0 }),
        );
        first.apply(&member, 1, &content("member.join", json!({})));
        first.apply(&member, 1, &channel);
        let head = new_event_id();
        store.install_snapshot(&first, 7, &head).await.unwrap();
        assert_eq!(store.guild(&guild).await.unwrap().unwrap(), (7, head, first.clone()));
        assert_eq!(store.guilds_of(&member).await.unwrap(), std::slice::from_ref(&guild));
        let old = ChannelId::parse("old").unwrap();
        assert_eq!(store.member_channel_guilds(&old, &member).await.unwrap(), std::slice::from_ref(&guild));
        // A later snapshot without the member or the channel replaces both.
        let head = new_event_id();
        store.install_snapshot(&state_without(&first, &member), 9, &head).await.unwrap();
        assert_eq!(store.head_seq(&guild).await.unwrap(), Some(9));
        assert!(store.guilds_of(&member).await.unwrap().is_empty());
        assert_eq!(store.guilds_of(&owner).await.unwrap(), std::slice::from_ref(&guild));
        assert!(store.member_channel_guilds(&old, &owner).await.unwrap().is_empty());
    }
}

fn state_without(state: &GuildState, member: &UserId) -> GuildState {
    let mut state = state.clone();
    state.members.remove(member);
    state.channels.clear();
    state
}
