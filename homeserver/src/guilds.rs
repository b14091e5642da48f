//! The guild write path: authorize at the head of the log, sequence, sign, persist, publish.
//!
//! This server is the host of every guild created on it. Each accepted change becomes one
//! host-signed event appended to the guild's log, stored with all its projections in one
//! database transaction, and only then published to gateway sessions.
//!
//! Writes are serialized by one lock: SQLite has a single writer anyway, and holding the lock
//! from authorization to commit guarantees that every event is authorized against the exact
//! head it is chained to.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use guildhall_spec::content::{ChannelCreate, ChannelKind, EventContent, GuildCreate, GuildKind};
use guildhall_spec::event::{self, JsonObject, Proposal};
use guildhall_spec::state::{GuildState, MessageFacts};
use guildhall_spec::{ChannelId, EventId, GuildId, ServerName, ServerSigningKey, TxnId, UserId, base64url};

use crate::bus::{Bus, BusMessage, GuildEventMessage};
use crate::error::{ApiError, ApiResult};
use crate::store::{AppendedEvent, Store, StoredEvent, now_ms};

/// A guild's head: the last event and the state after it.
#[derive(Debug, Clone)]
pub struct GuildHead {
    /// Head seq.
    pub seq: u64,
    /// Head event id.
    pub event_id: EventId,
    /// State at the head.
    pub state: Arc<GuildState>,
}

/// The result of a successful write.
#[derive(Debug, Clone)]
pub struct Sequenced {
    /// The event id.
    pub event_id: EventId,
    /// The event's seq.
    pub seq: u64,
    /// The event (with content).
    pub event: JsonObject,
    /// The state after the event.
    pub state: Arc<GuildState>,
}

/// Guild writes and cached heads.
#[derive(Debug)]
pub struct GuildService {
    store: Store,
    key: ServerSigningKey,
    bus: Bus,
    heads: Mutex<HashMap<GuildId, GuildHead>>,
    write_lock: tokio::sync::Mutex<()>,
}

/// A fresh random opaque id of `length` base64url characters (alphanumeric only).
pub fn random_id(length: usize) -> String {
    let mut id = String::with_capacity(length);
    while id.len() < length {
        id.extend(base64url::encode(rand::random::<[u8; 24]>()).chars().filter(char::is_ascii_alphanumeric));
    }
    id.truncate(length);
    id
}

impl GuildService {
    /// A service signing as `key`'s server.
    pub fn new(store: Store, key: ServerSigningKey, bus: Bus) -> Self {
        Self { store, key, bus, heads: Mutex::new(HashMap::new()), write_lock: tokio::sync::Mutex::new(()) }
    }

    /// This server's name.
    pub fn server_name(&self) -> &ServerName {
        self.key.server_name()
    }

    /// The head of a guild this server holds.
    pub async fn head(&self, guild_id: &GuildId) -> ApiResult<GuildHead> {
        if let Some(head) = self.cached(guild_id) {
            return Ok(head);
        }
        let (seq, event_id, state) = self
            .store
            .guild(guild_id)
            .await?
            .ok_or_else(|| ApiError::not_found("unknown_guild", format!("no guild {guild_id}")))?;
        let head = GuildHead { seq, event_id, state: Arc::new(state) };
        self.cache(guild_id, head.clone());
        Ok(head)
    }

    /// The state at the head of a guild.
    pub async fn state(&self, guild_id: &GuildId) -> ApiResult<Arc<GuildState>> {
        Ok(self.head(guild_id).await?.state)
    }

    fn cached(&self, guild_id: &GuildId) -> Option<GuildHead> {
        self.heads.lock().ok()?.get(guild_id).cloned()
    }

    fn cache(&self, guild_id: &GuildId, head: GuildHead) {
        if let Ok(mut heads) = self.heads.lock() {
            heads.insert(guild_id.clone(), head);
        }
    }

    /// Creates a guild (or DM) hosted here: `guild.create`, then a first text channel.
    pub async fn create_guild(&self, owner: &UserId, name: &str, kind: GuildKind) -> ApiResult<(GuildId, ChannelId)> {
        let guild_id = GuildId::new(&random_id(18), self.server_name()).map_err(ApiError::internal)?;
        if name.trim().is_empty() || name.chars().count() > guildhall_spec::content::MAX_NAME_CHARS {
            return Err(ApiError::bad_request("name must be 1 to 100 characters"));
        }
        {
            let _guard = self.write_lock.lock().await;
            let create = GuildCreate { name: name.to_owned(), kind, owner: owner.clone() };
            let now = now_ms();
            let state = Arc::new(GuildState::from_create(guild_id.clone(), &create, now));
            let content = EventContent::GuildCreate(create);
            self.commit(&guild_id, None, owner, &content, state, now, None).await?;
        }
        let channel_id = ChannelId::parse(&random_id(16)).map_err(ApiError::internal)?;
        let channel = EventContent::ChannelCreate(ChannelCreate {
            channel_id: channel_id.clone(),
            name: if kind == GuildKind::Dm { "dm".into() } else { "general".into() },
            kind: ChannelKind::Text,
            parent_id: None,
            position: 0,
            topic: None,
        });
        self.submit(&guild_id, owner, channel, None).await?;
        Ok((guild_id, channel_id))
    }

    /// Appends an event by a local user after authorizing it at the head. A repeated
    /// `txn_id` returns the event the first attempt produced.
    pub async fn submit(
        &self,
        guild_id: &GuildId,
        sender: &UserId,
        content: EventContent,
        txn_id: Option<TxnId>,
    ) -> ApiResult<Sequenced> {
        if let Some(txn_id) = &txn_id
            && let Some(existing) = self.store.txn_event(sender, txn_id).await?
        {
            return self.replay(existing).await;
        }
        let _guard = self.write_lock.lock().await;
        if let Some(txn_id) = &txn_id
            && let Some(existing) = self.store.txn_event(sender, txn_id).await?
        {
            return self.replay(existing).await;
        }
        let head = self.head(guild_id).await?;
        let facts = self.message_facts(guild_id, &content).await?;
        let now = now_ms();
        head.state.authorize(sender, &content, now, facts.as_ref())?;
        let after = if changes_state(&content) {
            let mut after = (*head.state).clone();
            after.apply(sender, now, &content);
            Arc::new(after)
        } else {
            Arc::clone(&head.state)
        };
        self.commit(guild_id, Some(&head), sender, &content, after, now, txn_id).await
    }

    async fn replay(&self, existing: StoredEvent) -> ApiResult<Sequenced> {
        let state = self.state(&existing.guild_id).await?;
        Ok(Sequenced { event_id: existing.event_id, seq: existing.seq, event: existing.event, state })
    }

    async fn message_facts(&self, guild_id: &GuildId, content: &EventContent) -> ApiResult<Option<MessageFacts>> {
        let target = match content {
            EventContent::MessageEdit(edit) => &edit.message_id,
            EventContent::MessageDelete(target) | EventContent::PinAdd(target) | EventContent::PinRemove(target) => {
                &target.message_id
            }
            EventContent::ReactionAdd(reaction) | EventContent::ReactionRemove(reaction) => &reaction.message_id,
            _ => return Ok(None),
        };
        Ok(self.store.message_facts(guild_id, target).await?)
    }

    /// Sequences, signs, stores and publishes. Must be called with the write lock held.
    #[allow(clippy::too_many_arguments)]
    async fn commit(
        &self,
        guild_id: &GuildId,
        head: Option<&GuildHead>,
        sender: &UserId,
        content: &EventContent,
        after: Arc<GuildState>,
        now: u64,
        txn_id: Option<TxnId>,
    ) -> ApiResult<Sequenced> {
        let txn_id = match txn_id {
            Some(txn_id) => txn_id,
            None => TxnId::parse(&random_id(20)).map_err(ApiError::internal)?,
        };
        let proposal = Proposal {
            guild_id: guild_id.clone(),
            event_type: content.event_type().to_owned(),
            sender: sender.clone(),
            origin: self.server_name().clone(),
            origin_ts: now,
            txn_id: txn_id.clone(),
            content: content.to_object(),
        };
        let object = proposal.sign(&self.key).map_err(ApiError::internal)?;
        let seq = head.map_or(1, |head| head.seq + 1);
        let (event_id, event) =
            event::sequence(object, seq, head.map(|head| &head.event_id), &self.key).map_err(ApiError::internal)?;
        let stream_id = self
            .store
            .append_event(&AppendedEvent {
                guild_id,
                seq,
                event_id: &event_id,
                event: &event,
                sender,
                txn_id: &txn_id,
                origin_ts: now,
                content,
                before: head.map(|head| head.state.as_ref()),
                after: &after,
            })
            .await?;
        self.cache(guild_id, GuildHead { seq, event_id: event_id.clone(), state: Arc::clone(&after) });
        self.bus.publish(BusMessage::GuildEvent(Arc::new(GuildEventMessage {
            stream_id,
            guild_id: guild_id.clone(),
            event_id: event_id.clone(),
            event: event.clone(),
            content: content.clone(),
            sender: sender.clone(),
            origin_ts: now,
            before: head.map(|head| Arc::clone(&head.state)),
            after: Arc::clone(&after),
        })));
        Ok(Sequenced { event_id, seq, event, state: after })
    }
}

/// Whether an event type changes the folded guild state (messages, reactions and pins do not).
pub fn changes_state(content: &EventContent) -> bool {
    !matches!(
        content,
        EventContent::MessageCreate(_)
            | EventContent::MessageEdit(_)
            | EventContent::MessageDelete(_)
            | EventContent::ReactionAdd(_)
            | EventContent::ReactionRemove(_)
            | EventContent::PinAdd(_)
            | EventContent::PinRemove(_)
    )
}
