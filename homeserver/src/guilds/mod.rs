//! The guild write path.
//!
//! For a guild this server **hosts**, a change is authorized at the head of the log, sequenced,
//! host-signed, and stored in one transaction with its projections and one outbound delivery
//! row per member server (content withheld from servers none of whose users may see the
//! channel); only then is it published. Proposals from other servers' users (`/submit`,
//! `/join`) take the same path after their origin signature is checked.
//!
//! For a guild hosted **elsewhere**, a local user's change is signed as a proposal and sent to
//! the host ([`remote`]); the host's answer, like everything the host pushes, is verified and
//! applied in order by [`replica`].
//!
//! Writes are serialized by one lock per process (SQLite has a single writer anyway) and, when
//! several nodes share a PostgreSQL database, by the guild's lock in the database as well.
//! Holding them from authorization to commit guarantees that every event is authorized against
//! the exact head it is chained to; a head cached in memory is checked against the stored one
//! once the locks are held, since another node may have appended meanwhile.

mod fold;
mod publish;
mod remote;
mod replica;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use guildhall_federation::{FederationClient, KeyFetcher};
use guildhall_spec::api::submit_event::Rejection;
use guildhall_spec::content::{ChannelCreate, ChannelKind, EventContent, GuildCreate, GuildKind};
use guildhall_spec::event::{self, JsonObject, Proposal};
use guildhall_spec::state::{AuthError, GuildState, MessageFacts};
use guildhall_spec::{
    ChannelId, EventId, GuildId, ServerName, ServerSigningKey, TxnId, UserId, base64url,
};

use crate::bus::{Bus, BusMessage};
use crate::error::{ApiError, ApiResult};
use crate::federation::Delivery;
use crate::store::{AppendedEvent, Store, StoredEvent, now_ms};

pub use replica::ReceiveError;

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
    /// The state after the event; for a replay, the current state.
    pub state: Arc<GuildState>,
    /// Whether this is the answer to a retry of an earlier write (the event already existed).
    pub replayed: bool,
}

/// The right to write one guild (see [`GuildService::lock`]). The database lock is released
/// first, then this process's.
struct WriteGuard<'a> {
    _shared: crate::store::GuildLock,
    _local: tokio::sync::MutexGuard<'a, ()>,
}

/// Drops a guild's cached head unless the append it guards was cached: an append may commit
/// though its caller never hears back (the store runs a queued write to its end even when the
/// request that asked for it is cancelled), or fail after the cache was read. Either way the
/// next writer reloads the head from the store instead of sequencing onto a stale one.
struct StaleHead<'a> {
    service: &'a GuildService,
    guild_id: &'a GuildId,
    cached: bool,
}

impl<'a> StaleHead<'a> {
    fn until_cached(service: &'a GuildService, guild_id: &'a GuildId) -> Self {
        Self { service, guild_id, cached: false }
    }

    /// The append's head is cached: nothing to forget.
    fn cached(mut self) {
        self.cached = true;
    }
}

impl Drop for StaleHead<'_> {
    fn drop(&mut self) {
        if !self.cached {
            self.service.forget_head(self.guild_id);
        }
    }
}

/// Guild writes, replication and cached heads.
#[derive(Debug)]
pub struct GuildService {
    store: Store,
    key: ServerSigningKey,
    bus: Bus,
    client: FederationClient,
    keys: KeyFetcher,
    delivery: Delivery,
    heads: Mutex<HashMap<GuildId, GuildHead>>,
    write_lock: tokio::sync::Mutex<()>,
    /// DM invitations for local users, accepted by a worker (set once by
    /// [`GuildService::attach_self`]). A channel rather than a spawned join keeps the join
    /// (which receives events) out of the future of receiving events.
    dm_joins: std::sync::OnceLock<tokio::sync::mpsc::Sender<DmInvitation>>,
    /// `federation.danger_skip_origin_signature_check`: a deliberately broken mode for the
    /// conformance suite's negative control.
    skip_origin_signature: std::sync::atomic::AtomicBool,
    /// Guilds whose withheld content is being refetched, and whether to go once more.
    withheld_fetches: std::sync::Mutex<std::collections::HashMap<GuildId, bool>>,
    /// Appended events waiting for their append to be durable before they are published, in
    /// append order (see [`GuildService::settle`]).
    unsettled: Mutex<publish::Unsettled>,
    /// Wakes the task that settles them.
    settle_soon: Arc<tokio::sync::Notify>,
}

/// A DM invitation for a local user: (invited, guild, inviter).
type DmInvitation = (UserId, GuildId, UserId);

/// Alphanumeric characters in an id that must carry at least 128 random bits (spec 02):
/// 62^22 ≈ 2^131.
pub const RANDOM_ID_CHARS: usize = 22;

/// A fresh random opaque id of `length` base64url characters (alphanumeric only).
pub fn random_id(length: usize) -> String {
    let mut id = String::with_capacity(length);
    while id.len() < length {
        id.extend(
            base64url::encode(rand::random::<[u8; 24]>())
                .chars()
                .filter(char::is_ascii_alphanumeric),
        );
    }
    id.truncate(length);
    id
}

impl GuildService {
    /// A service signing as `key`'s server.
    pub fn new(
        store: Store,
        key: ServerSigningKey,
        bus: Bus,
        client: FederationClient,
        keys: KeyFetcher,
        delivery: Delivery,
    ) -> Self {
        Self {
            store,
            key,
            bus,
            client,
            keys,
            delivery,
            heads: Mutex::new(HashMap::new()),
            write_lock: tokio::sync::Mutex::new(()),
            dm_joins: std::sync::OnceLock::new(),
            skip_origin_signature: std::sync::atomic::AtomicBool::new(false),
            withheld_fetches: std::sync::Mutex::default(),
            unsettled: Mutex::default(),
            settle_soon: Arc::default(),
        }
    }

    /// Turns on the deliberately broken mode that accepts proposals without checking their
    /// origin signature (`federation.danger_skip_origin_signature_check`).
    pub fn danger_skip_origin_signature_check(&self) {
        tracing::warn!("DANGER: accepting proposals without checking origin signatures");
        self.skip_origin_signature.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Starts the worker that accepts DM invitations on behalf of local users.
    pub fn attach_self(self: &Arc<Self>) {
        let (sender, mut invitations) = tokio::sync::mpsc::channel::<DmInvitation>(256);
        if self.dm_joins.set(sender).is_err() {
            return;
        }
        let service = Arc::downgrade(self);
        tokio::spawn(async move {
            while let Some((invited, guild_id, inviter)) = invitations.recv().await {
                let Some(service) = service.upgrade() else { return };
                match service.join_with(&invited, &guild_id, None).await {
                    Ok(_) => {
                        if let Err(error) =
                            service.store.record_direct_message(&inviter, &invited, &guild_id).await
                        {
                            tracing::warn!(%error, "could not index the DM");
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%guild_id, %invited, code = error.code(), "could not accept a DM invitation")
                    }
                }
            }
        });
        // Publishes appended events once they are durable. Under load one fsync covers the
        // appends of many writers, none of whom waits for the disk under the write lock.
        let service = Arc::downgrade(self);
        let settle_soon = Arc::clone(&self.settle_soon);
        tokio::spawn(async move {
            loop {
                settle_soon.notified().await;
                let Some(service) = service.upgrade() else { return };
                if let Err(error) = service.settle().await {
                    tracing::warn!(%error, "could not make appended events durable");
                    // Retried on the next append (an fsync that fails stops the process).
                }
            }
        });
        // Another node's append moves a guild's head past what is cached here: dropped, it is
        // reloaded from the database on next use (a write checks it anyway; this keeps reads
        // of the state, and what the gateway filters by, current).
        let mut remote = self.bus.subscribe_remote();
        let service = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let guild_id = match remote.recv().await {
                    Ok(BusMessage::GuildEvent(message)) => message.guild_id.clone(),
                    Ok(_) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        // Which heads moved is unknown: every cached one is reloaded.
                        let Some(service) = service.upgrade() else { return };
                        if let Ok(mut heads) = service.heads.lock() {
                            heads.clear();
                        }
                        continue;
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                };
                let Some(service) = service.upgrade() else { return };
                service.forget_head(&guild_id);
            }
        });
    }

    /// This server's name.
    pub fn server_name(&self) -> &ServerName {
        self.key.server_name()
    }

    /// Whether this server hosts the guild.
    pub fn hosts(&self, guild_id: &GuildId) -> bool {
        &guild_id.host() == self.server_name()
    }

    /// The head of a guild this server holds.
    pub async fn head(&self, guild_id: &GuildId) -> ApiResult<GuildHead> {
        if let Some(head) = self.cached(guild_id) {
            return Ok(head);
        }
        let (seq, event_id, state) =
            self.store.guild(guild_id).await?.ok_or_else(|| {
                ApiError::not_found("unknown_guild", format!("no guild {guild_id}"))
            })?;
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

    fn forget_head(&self, guild_id: &GuildId) {
        if let Ok(mut heads) = self.heads.lock() {
            heads.remove(guild_id);
        }
    }

    /// Takes the right to write `guild_id` until the guard drops: this process's write lock
    /// and, on a database several nodes share, the guild's lock there, after which a cached
    /// head another node has since moved on from is dropped (and reloaded on use).
    async fn lock(&self, guild_id: &GuildId) -> Result<WriteGuard<'_>, sqlx::Error> {
        let local = self.write_lock.lock().await;
        let shared = self.store.lock_guild(guild_id).await?;
        if shared.shared()
            && let Some(cached) = self.cached(guild_id)
            && self.store.head_seq(guild_id).await? != Some(cached.seq)
        {
            self.forget_head(guild_id);
        }
        Ok(WriteGuard { _shared: shared, _local: local })
    }

    fn cache(&self, guild_id: &GuildId, head: GuildHead) {
        if let Ok(mut heads) = self.heads.lock() {
            heads.insert(guild_id.clone(), head);
        }
    }

    /// Creates a guild (or DM) hosted here: `guild.create`, then a first text channel.
    pub async fn create_guild(
        &self,
        owner: &UserId,
        name: &str,
        kind: GuildKind,
    ) -> ApiResult<(GuildId, ChannelId)> {
        let guild_id = GuildId::new(&random_id(RANDOM_ID_CHARS), self.server_name())
            .map_err(ApiError::internal)?;
        // *line*(1..100) (spec 08): one line, no control characters, not blank.
        if name.trim().is_empty()
            || name.chars().any(char::is_control)
            || name.chars().count() > guildhall_spec::content::MAX_NAME_CHARS
        {
            return Err(ApiError::bad_request("name must be one line of 1 to 100 characters"));
        }
        {
            let _guard = self.lock(&guild_id).await?;
            let create = GuildCreate { name: name.to_owned(), kind, owner: owner.clone() };
            let now = now_ms();
            let state = Arc::new(GuildState::from_create(guild_id.clone(), &create, now));
            let content = EventContent::GuildCreate(create);
            let proposal = self.local_proposal(&guild_id, owner, &content, now, None)?;
            self.commit(None, proposal, &content, state).await?;
        }
        let channel_id =
            ChannelId::parse(&random_id(RANDOM_ID_CHARS)).map_err(ApiError::internal)?;
        let channel = EventContent::ChannelCreate(ChannelCreate {
            channel_id: channel_id.clone(),
            name: if kind == GuildKind::Dm { "dm".into() } else { "general".into() },
            kind: ChannelKind::Text,
            parent_id: None,
            position: 0,
            topic: None,
            overwrites: None,
        });
        self.submit(&guild_id, owner, channel, None).await?;
        Ok((guild_id, channel_id))
    }

    /// Appends an event by a local user: sequenced here if this server hosts the guild,
    /// otherwise proposed to the host. A repeated `txn_id` returns the first attempt's event.
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
            if &existing.guild_id != guild_id {
                return Err(ApiError::new(
                    axum::http::StatusCode::CONFLICT,
                    "txn_conflict",
                    "that nonce was used in another guild",
                ));
            }
            return self.replay(existing).await;
        }
        if !self.hosts(guild_id) {
            return self.submit_remote(guild_id, sender, content, txn_id).await;
        }
        self.check_move(sender, &content).await.map_err(ApiError::from)?;
        let _guard = self.lock(guild_id).await?;
        if let Some(txn_id) = &txn_id
            && let Some(existing) = self.store.txn_event(sender, txn_id).await?
        {
            if &existing.guild_id != guild_id {
                return Err(ApiError::new(
                    axum::http::StatusCode::CONFLICT,
                    "txn_conflict",
                    "that nonce was used in another guild",
                ));
            }
            return self.replay(existing).await;
        }
        let now = now_ms();
        let proposal = self.local_proposal(guild_id, sender, &content, now, txn_id)?;
        self.authorize_and_commit(guild_id, sender, proposal, &content, now, now)
            .await
            .map_err(ApiError::from)
    }

    /// Submits content computed from the state at the head, so that read-modify-write changes
    /// (adding one role to a member's list) are atomic on a guild hosted here: the write lock
    /// is held from reading the state to sequencing. `build` answers `None` when there is
    /// nothing to change. For a guild hosted elsewhere the state is this server's copy, and the
    /// host orders competing changes.
    pub async fn submit_computed(
        &self,
        guild_id: &GuildId,
        sender: &UserId,
        build: impl FnOnce(&GuildState) -> ApiResult<Option<EventContent>>,
    ) -> ApiResult<Option<Sequenced>> {
        if !self.hosts(guild_id) {
            let state = self.state(guild_id).await?;
            let Some(content) = build(&state)? else { return Ok(None) };
            return self.submit(guild_id, sender, content, None).await.map(Some);
        }
        let _guard = self.lock(guild_id).await?;
        let head = self.head(guild_id).await?;
        let Some(content) = build(&head.state)? else { return Ok(None) };
        let now = now_ms();
        let proposal = self.local_proposal(guild_id, sender, &content, now, None)?;
        self.authorize_and_commit(guild_id, sender, proposal, &content, now, now)
            .await
            .map(Some)
            .map_err(ApiError::from)
    }

    /// Sequences a proposal from another server (`/submit`, `/join`). The proposal's origin
    /// signature must verify and its origin must be the server that sent the request.
    pub async fn submit_proposal(
        &self,
        origin: &ServerName,
        proposal: JsonObject,
    ) -> Result<Sequenced, SubmitError> {
        // A proposal is signed now: only current keys may vouch for it.
        let mut keys = self.keys.event_keys(std::slice::from_ref(origin), u64::MAX).await;
        let mut verdict = event::verify_proposal(&proposal, &keys);
        if let Err(event::EventError::UnknownKey(server)) = &verdict {
            // The origin may have rotated its key since we cached its document.
            self.keys.refresh(server).await;
            keys = self.keys.event_keys(std::slice::from_ref(origin), u64::MAX).await;
            verdict = event::verify_proposal(&proposal, &keys);
        }
        if self.skip_origin_signature.load(std::sync::atomic::Ordering::Relaxed)
            && let Err(
                event::EventError::BadOriginSignature
                | event::EventError::MissingOriginSignature
                | event::EventError::UnknownKey(_),
            ) = &verdict
        {
            verdict = unchecked_proposal(&proposal);
        }
        let (envelope, content) = verdict.map_err(SubmitError::Invalid)?;
        if &envelope.origin != origin {
            return Err(SubmitError::Rejected(AuthError {
                rejection: Rejection::SenderNotFromOrigin,
                message: format!("{} is not a user of {origin}", envelope.sender),
            }));
        }
        if !self.hosts(&envelope.guild_id) {
            return Err(SubmitError::Rejected(AuthError {
                rejection: Rejection::UnknownGuild,
                message: "not hosted here".into(),
            }));
        }
        let content = EventContent::parse(&envelope.event_type, &content).map_err(|e| {
            SubmitError::Rejected(AuthError {
                rejection: Rejection::InvalidEvent,
                message: e.to_string(),
            })
        })?;
        if matches!(content, EventContent::GuildCreate(_)) {
            return Err(SubmitError::Rejected(AuthError {
                rejection: Rejection::InvalidEvent,
                message: "guild.create is local".into(),
            }));
        }
        // Hosts refuse timestamps from the future (more than 5 minutes of skew).
        if envelope.origin_ts > now_ms() + 300_000 {
            return Err(SubmitError::Rejected(AuthError {
                rejection: Rejection::InvalidEvent,
                message: "origin_ts is in the future".into(),
            }));
        }
        // Checked before the write lock: it may fetch the attesting servers' keys.
        self.check_move(&envelope.sender, &content).await?;
        let _guard = self
            .lock(&envelope.guild_id)
            .await
            .map_err(|error| SubmitError::Internal(error.to_string()))?;
        if let Some(existing) = self
            .store
            .txn_event(&envelope.sender, &envelope.txn_id)
            .await
            .map_err(SubmitError::internal)?
        {
            // A retry must be the same proposal: a reused txn_id elsewhere is a conflict, never
            // a way to read another guild's event.
            let same = existing.guild_id == envelope.guild_id
                && existing.event.get("type").and_then(|t| t.as_str())
                    == Some(envelope.event_type.as_str());
            if !same {
                return Err(SubmitError::Conflict);
            }
            // A retry passes the same gate as a first attempt: a server or user banned since
            // (or a guild deleted since) gets no answer, not even the old one.
            let head = self
                .head(&envelope.guild_id)
                .await
                .map_err(|e| SubmitError::Internal(e.code().into()))?;
            head.state.admits(&envelope.sender).map_err(SubmitError::Rejected)?;
            return self
                .replay(existing)
                .await
                .map_err(|_| SubmitError::Internal("replay failed".into()));
        }
        self.authorize_and_commit(
            &envelope.guild_id,
            &envelope.sender,
            proposal,
            &content,
            now_ms(),
            envelope.origin_ts,
        )
        .await
    }

    /// The signatures of an account move a `member.join` carries (spec 16.5): the move by the
    /// identity key, each attestation by its home server with a key usable when it was issued.
    /// The state rules then check only who moves where.
    async fn check_move(&self, sender: &UserId, content: &EventContent) -> Result<(), SubmitError> {
        let EventContent::MemberJoin(join) = content else { return Ok(()) };
        let Some(proof) = &join.account_move else { return Ok(()) };
        let refuse = |message: String| {
            SubmitError::Rejected(AuthError { rejection: Rejection::InvalidEvent, message })
        };
        let moved =
            crate::identity::verify_move(&self.keys, &self.store, proof).await.map_err(refuse)?;
        if &moved.to != sender {
            return Err(refuse("the move is not to the sender".into()));
        }
        Ok(())
    }

    async fn authorize_and_commit(
        &self,
        guild_id: &GuildId,
        sender: &UserId,
        proposal: JsonObject,
        content: &EventContent,
        now: u64,
        origin_ts: u64,
    ) -> Result<Sequenced, SubmitError> {
        let head = self.head(guild_id).await.map_err(|_| {
            SubmitError::Rejected(AuthError {
                rejection: Rejection::UnknownGuild,
                message: format!("no guild {guild_id}"),
            })
        })?;
        let facts = self
            .message_facts(guild_id, content)
            .await
            .map_err(|e| SubmitError::Internal(e.code().into()))?;
        head.state
            .authorize(sender, content, now, facts.as_ref())
            .map_err(SubmitError::Rejected)?;
        self.check_ids_unused_elsewhere(guild_id, content).await?;
        let after = if content.changes_state() {
            let mut after = (*head.state).clone();
            // Every replica folds with the event's origin_ts; so must the host.
            after.apply(sender, origin_ts, content);
            Arc::new(after)
        } else {
            Arc::clone(&head.state)
        };
        self.commit(Some(&head), proposal, content, after)
            .await
            .map_err(|e| SubmitError::Internal(e.code().into()))
    }

    /// Channel ids and invite codes are scoped to their guild, but clients address channels
    /// and invites by id alone: as a host, this server never hands out an id that already
    /// names a channel or invite of another guild it knows (hosted or replicated), so that on
    /// this server an id it assigned is unambiguous.
    async fn check_ids_unused_elsewhere(
        &self,
        guild_id: &GuildId,
        content: &EventContent,
    ) -> Result<(), SubmitError> {
        let used = match content {
            EventContent::ChannelCreate(create) => {
                self.store.channel_id_used_elsewhere(&create.channel_id, guild_id).await
            }
            EventContent::InviteCreate(invite) => {
                self.store.invite_code_used_elsewhere(&invite.code, guild_id).await
            }
            _ => return Ok(()),
        }
        .map_err(SubmitError::internal)?;
        if used {
            return Err(SubmitError::Rejected(AuthError {
                rejection: Rejection::InvalidEvent,
                message: "that id is in use by another guild on this server".into(),
            }));
        }
        Ok(())
    }

    fn local_proposal(
        &self,
        guild_id: &GuildId,
        sender: &UserId,
        content: &EventContent,
        now: u64,
        txn_id: Option<TxnId>,
    ) -> ApiResult<JsonObject> {
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
            txn_id,
            content: content.to_object(),
        };
        proposal.sign(&self.key).map_err(ApiError::internal)
    }

    async fn replay(&self, existing: StoredEvent) -> ApiResult<Sequenced> {
        let state = self.state(&existing.guild_id).await?;
        Ok(Sequenced {
            event_id: existing.event_id,
            seq: existing.seq,
            event: existing.event,
            state,
            replayed: true,
        })
    }

    async fn message_facts(
        &self,
        guild_id: &GuildId,
        content: &EventContent,
    ) -> ApiResult<Option<MessageFacts>> {
        let target = match content {
            EventContent::MessageEdit(edit) => &edit.message_id,
            EventContent::MessageDelete(target)
            | EventContent::PinAdd(target)
            | EventContent::PinRemove(target) => &target.message_id,
            EventContent::ReactionAdd(reaction) | EventContent::ReactionRemove(reaction) => {
                &reaction.message_id
            }
            _ => return Ok(None),
        };
        Ok(self.store.message_facts(guild_id, target).await?)
    }

    /// Sequences, host-signs, stores with its deliveries and publishes. Called with the write
    /// lock held, on a guild this server hosts.
    async fn commit(
        &self,
        head: Option<&GuildHead>,
        proposal: JsonObject,
        content: &EventContent,
        after: Arc<GuildState>,
    ) -> ApiResult<Sequenced> {
        let seq = head.map_or(1, |head| head.seq + 1);
        let (event_id, event) =
            event::sequence(proposal, seq, head.map(|head| &head.event_id), &self.key)
                .map_err(ApiError::internal)?;
        let envelope: event::Envelope =
            serde_json::from_value(serde_json::Value::Object(event::envelope(&event)))
                .map_err(ApiError::internal)?;
        let before = head.map(|head| head.state.as_ref());
        let outbound = self.deliveries(&event, content, before, &after);
        let appending = std::time::Instant::now();
        let stale = StaleHead::until_cached(self, &envelope.guild_id);
        let stream_id = self
            .store
            .append_event(&AppendedEvent {
                guild_id: &envelope.guild_id,
                seq,
                event_id: &event_id,
                event: &event,
                sender: &envelope.sender,
                txn_id: &envelope.txn_id,
                origin_ts: envelope.origin_ts,
                event_type: content.event_type(),
                content: Some(content),
                backfill: false,
                before,
                after: &after,
                outbound: &outbound,
            })
            .await?;
        crate::metrics::global().store("append_event", appending.elapsed());
        self.delivery.wake(outbound.iter().map(|(destination, _)| destination));
        self.cache(
            &envelope.guild_id,
            GuildHead { seq, event_id: event_id.clone(), state: Arc::clone(&after) },
        );
        stale.cached();
        self.publish(
            stream_id,
            &envelope,
            &event_id,
            &event,
            content,
            head.map(|head| Arc::clone(&head.state)),
            &after,
        );
        Ok(Sequenced { event_id, seq, event, state: after, replayed: false })
    }

    /// Every other server with members before or after the event (and a DM invitee's server)
    /// gets the event; the content only where one of its users may view the channel.
    fn deliveries(
        &self,
        event: &JsonObject,
        content: &EventContent,
        before: Option<&GuildState>,
        after: &GuildState,
    ) -> Vec<(ServerName, JsonObject)> {
        let mut destinations = after.member_servers();
        // A message leaves the state as it was (the same allocation): one walk over the
        // members is enough.
        if let Some(before) = before.filter(|before| !std::ptr::eq(*before, after)) {
            destinations.extend(before.member_servers());
        }
        if let EventContent::DmInvite(invite) = content {
            destinations.insert(invite.user_id.server_name());
        }
        destinations.remove(self.server_name());
        destinations
            .into_iter()
            .map(|destination| {
                let sees = match content.visibility_channel() {
                    None => true,
                    Some(channel) => {
                        server_can_view(after, &destination, channel)
                            || before.is_some_and(|before| {
                                !std::ptr::eq(before, after)
                                    && server_can_view(before, &destination, channel)
                            })
                    }
                };
                let mut copy = event.clone();
                if !sees {
                    copy.remove("content");
                }
                (destination, copy)
            })
            .collect()
    }
}

/// A proposal's parts without any signature check (only for the broken negative-control mode).
fn unchecked_proposal(
    proposal: &JsonObject,
) -> Result<(event::Envelope, JsonObject), event::EventError> {
    let envelope = serde_json::from_value(serde_json::Value::Object(event::envelope(proposal)))
        .map_err(|e| event::EventError::Malformed(e.to_string()))?;
    let content = proposal.get("content").and_then(|c| c.as_object()).cloned().unwrap_or_default();
    Ok((envelope, content))
}

/// Whether any user of `server` may view `channel` in `state`.
pub fn server_can_view(state: &GuildState, server: &ServerName, channel: &ChannelId) -> bool {
    state
        .members
        .keys()
        .filter(|user| user.server_str() == server.as_str())
        .any(|user| state.can_view(user, channel))
}

/// Why a proposal from another server was not sequenced.
#[derive(Debug)]
pub enum SubmitError {
    /// The proposal itself is malformed or badly signed.
    Invalid(event::EventError),
    /// The host's rules refuse it.
    Rejected(AuthError),
    /// The (sender, txn_id) already produced a different event.
    Conflict,
    /// Something broke here.
    Internal(String),
}

impl SubmitError {
    fn internal(error: impl std::fmt::Display) -> Self {
        Self::Internal(error.to_string())
    }
}

impl From<SubmitError> for ApiError {
    fn from(error: SubmitError) -> Self {
        match error {
            SubmitError::Invalid(error) => ApiError::new(
                axum::http::StatusCode::BAD_REQUEST,
                "invalid_event",
                error.to_string(),
            ),
            SubmitError::Rejected(error) => error.into(),
            SubmitError::Conflict => ApiError::new(
                axum::http::StatusCode::CONFLICT,
                "txn_conflict",
                "this transaction id already names a different event",
            ),
            SubmitError::Internal(message) => ApiError::internal(message),
        }
    }
}
