//! The event bus: every change a client might see is published here once, and every gateway
//! session filters what it receives by the user's membership and permissions.
//!
//! A broadcast channel never blocks its sender: a session that falls more than the channel's
//! capacity behind is told it lagged, and the gateway then closes it with a resumable code.
//!
//! With `[redis] url` (several nodes), every message is also published on the Redis channel
//! `guildhall:{server_name}:bus` ([`Cluster::channel`]) as `{node_id}\n{json}`, and a subscriber
//! task hands what other nodes published to this node's subscribers. The channel is the
//! deployment's own, so servers of other names on the same Redis never hear it; the framing
//! holds no server name (a node id has no newline, and the JSON starts after the first one). Three subscriptions tell the origins apart:
//! * [`Bus::subscribe`]: what this node published. Work with side effects (federation relays,
//!   voice moderation, fetching media) listens here, so that it is done once per deployment,
//!   by the node where the change happened.
//! * [`Bus::subscribe_all`]: this node's and every other node's messages, for gateway sessions.
//! * [`Bus::subscribe_remote`]: only other nodes' messages, for caches of what the shared
//!   database holds (a guild's head appended to by another node).
//!
//! Without Redis the three see the same (`subscribe_remote` nothing) and the bus is what it
//! always was. A message larger than [`MAX_WIRE_BYTES`] is not sent to other nodes, and one
//! received that is larger or does not decode is dropped with a warning. Messages published
//! while Redis is unreachable reach this node only; clients of other nodes recover guild events
//! by resuming from the durable log.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use guildhall_spec::content::EventContent;
use guildhall_spec::event::JsonObject;
use guildhall_spec::state::GuildState;
use guildhall_spec::{ChannelId, EventId, GuildId, UserId};
use serde::{Deserialize, Deserializer, Serialize};
use tokio::sync::{broadcast, mpsc};

use crate::cluster::Cluster;

/// The largest message sent to or accepted from other nodes, in bytes of JSON.
pub const MAX_WIRE_BYTES: usize = 8 << 20;
/// Messages waiting to be published to Redis; past that, new ones reach this node only.
const OUTGOING_CAPACITY: usize = 8192;
/// Messages published to Redis in one round trip at most.
const PUBLISH_BATCH: usize = 64;

/// How many messages a subscriber may fall behind before it is told it lagged.
const CAPACITY: usize = 8192;

/// One published change. Its JSON (internally tagged by `type`) is what crosses between nodes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BusMessage {
    /// A sequenced guild event, with the state before and after it.
    GuildEvent(Arc<GuildEventMessage>),
    /// A user started typing.
    Typing {
        /// The guild.
        guild_id: GuildId,
        /// The channel.
        channel_id: ChannelId,
        /// Who types.
        user_id: UserId,
        /// When.
        ts: u64,
        /// The guild's state, to filter by VIEW_CHANNEL.
        state: Arc<GuildState>,
    },
    /// A user's visible presence changed.
    Presence {
        /// Whose.
        user_id: UserId,
        /// `online`, `idle`, `dnd` or `offline` (invisible users appear offline).
        #[serde(deserialize_with = "visible_status")]
        status: KnownName,
    },
    /// A user's profile changed.
    UserUpdate {
        /// Whose.
        user_id: UserId,
        /// The new public profile.
        profile: serde_json::Value,
    },
    /// The identity key of a user changed, was revoked, or became known to this server.
    IdentityUpdate {
        /// Whose.
        user_id: UserId,
        /// The usable identity key; `None` when revoked.
        identity_key: Option<String>,
    },
    /// A login session was revoked (logout, or revoked from another device): gateway
    /// connections opened with it close.
    LoginRevoked {
        /// The revoked login session's id.
        login: String,
    },
    /// The host refused, for good, a proposal of `user_id` that had been queued (`202`).
    ProposalRefused {
        /// The sender.
        user_id: UserId,
        /// `{guild_id, txn_id, type, channel_id, code, message}`.
        data: serde_json::Value,
    },
    /// A user's voice state in a guild changed (spec 18.4).
    VoiceState {
        /// The new state (`channel_id: None`: left voice).
        voice_state: guildhall_spec::api::ephemeral::VoiceState,
        /// The guild's state, to tell members.
        state: Arc<GuildState>,
        /// The server it came from (this one, for its own users and what its LiveKit reports):
        /// the host relays it to every other member server.
        from: guildhall_spec::ServerName,
    },
    /// A dispatch for the gateway sessions opened with one login (its device): `TO_DEVICE`,
    /// `ONE_TIME_KEYS_LOW`.
    ToLogin {
        /// The login session.
        login: String,
        /// The dispatch name.
        #[serde(deserialize_with = "login_dispatch")]
        name: KnownName,
        /// Its data (shared: every gateway session receives the message, one uses it).
        data: Arc<serde_json::Value>,
    },
    /// A user's device list changed (spec 17.4).
    DeviceListUpdate {
        /// Whose.
        user_id: UserId,
        /// The new device-list hash.
        hash: String,
        /// Local users who asked for the user's keys (besides those sharing a guild).
        watchers: Arc<HashSet<UserId>>,
    },
    /// A relationship of `user_id` changed (friend request, accept, removal).
    Relationship {
        /// The user to notify.
        user_id: UserId,
        /// The relationship as the client sees it.
        relationship: serde_json::Value,
    },
}

/// A name from a fixed set (a status, a dispatch). The alias keeps serde from borrowing it from
/// the input; on the wire it is a string, read back as the one of the set it names.
pub type KnownName = &'static str;

/// A sequenced guild event as published.
#[derive(Debug, Serialize, Deserialize)]
pub struct GuildEventMessage {
    /// Server-wide stream position (the gateway's `s`).
    pub stream_id: i64,
    /// The guild.
    pub guild_id: GuildId,
    /// The event id.
    pub event_id: EventId,
    /// The full event.
    pub event: JsonObject,
    /// Its typed content.
    pub content: EventContent,
    /// The sender.
    pub sender: UserId,
    /// Origin timestamp.
    pub origin_ts: u64,
    /// State before the event (`None` for `guild.create`).
    pub before: Option<Arc<GuildState>>,
    /// State after the event.
    pub after: Arc<GuildState>,
}

/// The bus.
#[derive(Debug, Clone)]
pub struct Bus {
    /// What this node published.
    local: broadcast::Sender<BusMessage>,
    /// What this node and other nodes published (the same channel as `local` without Redis).
    all: broadcast::Sender<BusMessage>,
    /// What other nodes published.
    remote: broadcast::Sender<BusMessage>,
    /// To the task publishing on Redis, when there is one.
    outgoing: Option<mpsc::Sender<BusMessage>>,
}

impl Default for Bus {
    fn default() -> Self {
        let local = broadcast::channel(CAPACITY).0;
        Self { all: local.clone(), local, remote: broadcast::channel(1).0, outgoing: None }
    }
}

impl Bus {
    /// A bus shared with the other nodes on `cluster`: starts the tasks that publish this node's
    /// messages there and receive the others'.
    pub fn clustered(cluster: &Cluster) -> Self {
        let (outgoing, queue) = mpsc::channel(OUTGOING_CAPACITY);
        let bus = Self {
            local: broadcast::channel(CAPACITY).0,
            all: broadcast::channel(CAPACITY).0,
            remote: broadcast::channel(CAPACITY).0,
            outgoing: Some(outgoing),
        };
        tokio::spawn(send_to_cluster(cluster.clone(), queue));
        tokio::spawn(receive_from_cluster(cluster.clone(), bus.clone()));
        bus
    }

    /// Publishes a message to every current subscriber on this node at once, and to the other
    /// nodes; never blocks.
    pub fn publish(&self, message: BusMessage) {
        if let Some(outgoing) = &self.outgoing {
            if let Err(mpsc::error::TrySendError::Full(_)) = outgoing.try_send(message.clone()) {
                tracing::warn!("Redis publishing queue full: a message reaches this node only");
            }
            // An error only means nobody is listening right now.
            let _ = self.all.send(message.clone());
        }
        let _ = self.local.send(message);
    }

    /// A new subscription to what this node publishes, starting now.
    pub fn subscribe(&self) -> broadcast::Receiver<BusMessage> {
        self.local.subscribe()
    }

    /// A new subscription to what any node publishes, starting now.
    pub fn subscribe_all(&self) -> broadcast::Receiver<BusMessage> {
        self.all.subscribe()
    }

    /// A new subscription to what other nodes publish, starting now (nothing, without Redis).
    ///
    /// The hook for caches of shared state: a `BusMessage::GuildEvent` received here was
    /// appended to its guild's log by another node.
    pub fn subscribe_remote(&self) -> broadcast::Receiver<BusMessage> {
        self.remote.subscribe()
    }

    /// Hands a message another node published to this node's subscribers.
    fn deliver_remote(&self, message: BusMessage) {
        let _ = self.remote.send(message.clone());
        let _ = self.all.send(message);
    }
}

/// A message as it crosses to other nodes: the publishing node's id, a newline, the JSON.
fn encode(node_id: &str, message: &BusMessage) -> Option<Vec<u8>> {
    let mut wire = Vec::with_capacity(256);
    wire.extend_from_slice(node_id.as_bytes());
    wire.push(b'\n');
    if let Err(error) = serde_json::to_writer(&mut wire, message) {
        tracing::warn!(%error, "a bus message could not be encoded for other nodes");
        return None;
    }
    if wire.len() > MAX_WIRE_BYTES {
        tracing::warn!(bytes = wire.len(), "a bus message too large for other nodes");
        return None;
    }
    Some(wire)
}

/// What arrived on the channel: `None` for this node's own messages.
fn decode(own_node_id: &str, wire: &[u8]) -> Result<Option<BusMessage>, &'static str> {
    if wire.len() > MAX_WIRE_BYTES {
        return Err("too large");
    }
    let newline = wire.iter().position(|&byte| byte == b'\n').ok_or("no node id")?;
    if &wire[..newline] == own_node_id.as_bytes() {
        return Ok(None);
    }
    serde_json::from_slice(&wire[newline + 1..]).map(Some).map_err(|_| "undecodable")
}

/// Publishes this node's messages on Redis, in order, a batch per round trip. Failures are
/// logged once per outage; what fails is not retried (other nodes' clients resume).
async fn send_to_cluster(cluster: Cluster, mut queue: mpsc::Receiver<BusMessage>) {
    let mut connection = cluster.connection();
    let channel = cluster.channel();
    let mut failing = false;
    let mut batch = Vec::with_capacity(PUBLISH_BATCH);
    while queue.recv_many(&mut batch, PUBLISH_BATCH).await > 0 {
        let mut pipe = redis::pipe();
        for message in batch.drain(..) {
            if let Some(wire) = encode(cluster.node_id(), &message) {
                pipe.cmd("PUBLISH").arg(&channel).arg(wire).ignore();
            }
        }
        match pipe.query_async::<()>(&mut connection).await {
            Ok(()) if failing => {
                failing = false;
                tracing::info!("publishing on Redis again");
            }
            Ok(()) => {}
            Err(error) if !failing => {
                failing = true;
                tracing::warn!(%error, "publishing on Redis failed; other nodes miss messages");
            }
            Err(_) => {}
        }
    }
}

/// Subscribes to the channel and hands other nodes' messages to `bus`, resubscribing with a
/// growing pause (up to ten seconds) whenever the connection is lost.
async fn receive_from_cluster(cluster: Cluster, bus: Bus) {
    const FIRST_PAUSE: Duration = Duration::from_millis(100);
    let mut pause = FIRST_PAUSE;
    let channel = cluster.channel();
    loop {
        let subscribed = tokio::time::timeout(Duration::from_secs(5), async {
            let mut pubsub = cluster.client().get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        })
        .await;
        match subscribed {
            Ok(Ok(mut pubsub)) => {
                if pause > FIRST_PAUSE {
                    tracing::info!("receiving other nodes' bus messages again");
                }
                pause = FIRST_PAUSE;
                let mut messages = pubsub.on_message();
                while let Some(message) = messages.next().await {
                    match decode(cluster.node_id(), message.get_payload_bytes()) {
                        Ok(Some(message)) => bus.deliver_remote(message),
                        Ok(None) => {}
                        Err(problem) => tracing::warn!(problem, "dropped a bus message from Redis"),
                    }
                }
                tracing::warn!("lost the Redis subscription; other nodes' messages are missed");
            }
            Ok(Err(error)) => tracing::warn!(%error, "subscribing to the Redis bus"),
            Err(_) => tracing::warn!("subscribing to the Redis bus timed out"),
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(10));
    }
}

/// A presence status from the wire, as the `&'static str` the rest of the server uses.
fn visible_status<'de, D: Deserializer<'de>>(deserializer: D) -> Result<&'static str, D::Error> {
    let status = String::deserialize(deserializer)?;
    ["online", "idle", "dnd", "offline"]
        .into_iter()
        .find(|known| *known == status)
        .ok_or_else(|| serde::de::Error::custom("unknown presence status"))
}

/// A dispatch name sent to one login's sessions, from the wire.
fn login_dispatch<'de, D: Deserializer<'de>>(deserializer: D) -> Result<&'static str, D::Error> {
    let name = String::deserialize(deserializer)?;
    ["TO_DEVICE", "ONE_TIME_KEYS_LOW"]
        .into_iter()
        .find(|known| *known == name)
        .ok_or_else(|| serde::de::Error::custom("unknown login dispatch"))
}

#[cfg(test)]
mod tests {
    use guildhall_spec::content::{GuildKind, MessageCreate};
    use guildhall_spec::event::JsonObject;
    use serde_json::json;

    use super::*;

    fn user(name: &str) -> UserId {
        UserId::parse(&format!("@{name}:one.example")).unwrap()
    }

    fn guild_state() -> Arc<GuildState> {
        let guild_id = GuildId::parse("!g:one.example").unwrap();
        Arc::new(GuildState::new(guild_id, "Guild".into(), GuildKind::Guild, user("owner"), 7))
    }

    /// Every variant, as another node receives it: decoded, it encodes to the same JSON.
    fn every_variant() -> Vec<BusMessage> {
        let state = guild_state();
        let channel_id = ChannelId::parse("c1").unwrap();
        let mut event = JsonObject::new();
        event.insert("seq".into(), json!(2));
        event.insert("content".into(), json!({"body": "hi", "big": 9_007_199_254_740_991_u64}));
        let content = EventContent::MessageCreate(MessageCreate {
            channel_id: channel_id.clone(),
            body: "hi".into(),
            reply_to: None,
            mentions: Some(vec![user("owner")]),
            attachments: None,
        });
        let voice_state: guildhall_spec::api::ephemeral::VoiceState = serde_json::from_value(
            json!({"guild_id": "!g:one.example", "channel_id": "c1", "user_id": "@a:one.example",
                   "self_mute": false, "self_deaf": true, "mute": false, "deaf": false}),
        )
        .unwrap_or_else(|error| panic!("a voice state: {error}"));
        vec![
            BusMessage::GuildEvent(Arc::new(GuildEventMessage {
                stream_id: 41,
                guild_id: state.guild_id.clone(),
                event_id: EventId::parse("$47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU").unwrap(),
                event,
                content,
                sender: user("owner"),
                origin_ts: 1_700_000_000_000,
                before: Some(Arc::clone(&state)),
                after: Arc::clone(&state),
            })),
            BusMessage::Typing {
                guild_id: state.guild_id.clone(),
                channel_id,
                user_id: user("a"),
                ts: 5,
                state: Arc::clone(&state),
            },
            BusMessage::Presence { user_id: user("a"), status: "idle" },
            BusMessage::UserUpdate { user_id: user("a"), profile: json!({"display_name": "A"}) },
            BusMessage::IdentityUpdate { user_id: user("a"), identity_key: None },
            BusMessage::LoginRevoked { login: "login-1".into() },
            BusMessage::ProposalRefused { user_id: user("a"), data: json!({"code": "x"}) },
            BusMessage::VoiceState { voice_state, state, from: "one.example".parse().unwrap() },
            BusMessage::ToLogin {
                login: "login-1".into(),
                name: "ONE_TIME_KEYS_LOW",
                data: Arc::new(json!({"count": 3})),
            },
            BusMessage::DeviceListUpdate {
                user_id: user("a"),
                hash: "h".into(),
                watchers: Arc::new([user("b")].into()),
            },
            BusMessage::Relationship { user_id: user("a"), relationship: json!({"type": 1}) },
        ]
    }

    #[test]
    fn every_message_crosses_to_another_node_unchanged() {
        for message in every_variant() {
            let wire = encode("node-a", &message).unwrap();
            let received = decode("node-b", &wire).unwrap().unwrap();
            assert_eq!(
                serde_json::to_value(&received).unwrap(),
                serde_json::to_value(&message).unwrap()
            );
        }
    }

    #[test]
    fn a_node_ignores_its_own_messages() {
        let wire = encode("node-a", &every_variant()[2]).unwrap();
        assert!(decode("node-a", &wire).unwrap().is_none());
    }

    #[test]
    fn undecodable_or_oversized_messages_are_refused() {
        let check = |wire: &[u8], expected: &str| {
            assert_eq!(decode("node-b", wire).err(), Some(expected), "{:?}", wire.get(..60));
        };
        check(b"no newline at all", "no node id");
        check(b"node-a\n{\"type\":\"presence\",\"user_id\":\"@a:x.example\"}", "undecodable");
        check(
            b"node-a\n{\"type\":\"presence\",\"user_id\":\"@a:x.example\",\"status\":\"away\"}",
            "undecodable",
        );
        check(
            b"node-a\n{\"type\":\"to_login\",\"login\":\"l\",\"name\":\"READY\",\"data\":{}}",
            "undecodable",
        );
        check(b"node-a\n{\"type\":\"shutdown\"}", "undecodable");
        let mut huge = b"node-a\n".to_vec();
        huge.resize(MAX_WIRE_BYTES + 1, b' ');
        check(&huge, "too large");
    }

    #[test]
    fn without_redis_every_subscription_sees_this_nodes_messages_and_none_from_elsewhere() {
        let bus = Bus::default();
        let (mut local, mut all, mut remote) =
            (bus.subscribe(), bus.subscribe_all(), bus.subscribe_remote());
        bus.publish(BusMessage::LoginRevoked { login: "l".into() });
        assert!(matches!(local.try_recv(), Ok(BusMessage::LoginRevoked { .. })));
        assert!(matches!(all.try_recv(), Ok(BusMessage::LoginRevoked { .. })));
        assert!(remote.try_recv().is_err());
    }
}
