//! Following a guild hosted elsewhere: verify every event the host sends, apply it strictly in
//! order, fetch exact missing ranges, and keep evidence when the host equivocates
//! (spec chapter 07 §7.3–7.6).

use std::sync::Arc;

use guildhall_spec::api::get_content::{self, GetContent};
use guildhall_spec::api::get_events::{self, GetEvents};
use guildhall_spec::api::get_state::{GetState, Snapshot};
use guildhall_spec::api::{Endpoint, fill_path};
use guildhall_spec::content::EventContent;
use guildhall_spec::event::{self, ChainPosition, EventError, JsonObject, VerifiedEvent};
use guildhall_spec::signing;
use guildhall_spec::state::GuildState;
use guildhall_spec::{GuildId, ServerName, UserId};

use super::fold::{Folded, continues, fold};
use super::{GuildHead, GuildService};
use crate::store::AppendedEvent;

/// Why a received event was not applied. [`ReceiveError::code`] is the per-event result code
/// of `PUT /send` (spec chapter 12).
#[derive(Debug)]
pub enum ReceiveError {
    /// The event failed verification.
    Invalid(EventError),
    /// Only a guild's host may push its events.
    NotFromHost,
    /// This server does not replicate the guild.
    UnknownGuild,
    /// A different event is already held at this seq; evidence was stored.
    Equivocation,
    /// The missing range could not be fetched (the event will come again).
    GapNotFilled,
    /// Something broke here.
    Internal(String),
}

impl ReceiveError {
    /// The stable result code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Invalid(error) => error.code(),
            Self::NotFromHost => "not_from_host",
            Self::UnknownGuild => "unknown_guild",
            Self::Equivocation => "equivocation",
            Self::GapNotFilled => "unavailable",
            Self::Internal(_) => "internal",
        }
    }
}

impl std::fmt::Display for ReceiveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Invalid(error) => write!(f, "{error}"),
            Self::Internal(message) => write!(f, "{message}"),
            other => f.write_str(other.code()),
        }
    }
}

/// The most withheld events one refetch asks the host for (the newest): a change of access
/// may release older content too, but a replica never turns every role change into a scan of
/// its whole history.
const MAX_WITHHELD_REFETCH: u32 = 2000;

/// Marks a guild's withheld refetch as finished when dropped.
struct RunningFetch<'a> {
    service: &'a GuildService,
    guild_id: &'a GuildId,
}

impl Drop for RunningFetch<'_> {
    fn drop(&mut self) {
        if let Ok(mut running) = self.service.withheld_fetches.lock() {
            running.remove(self.guild_id);
        }
    }
}

/// What one attempt to apply an event did.
enum Outcome {
    /// Applied; `access_grew` when a local user may now view a channel none could before.
    Applied {
        access_grew: bool,
    },
    Duplicate,
    /// The event is beyond head + 1: the range after `head` is missing.
    Gap {
        head: u64,
    },
}

impl GuildService {
    /// Handles one sequenced event received from `from` (a `/submit` answer): see
    /// [`GuildService::receive_events`].
    pub async fn receive_event(
        &self,
        from: &ServerName,
        event: JsonObject,
    ) -> Result<(), ReceiveError> {
        self.receive_events(from, vec![event]).await.pop().unwrap_or(Ok(()))
    }

    /// Handles sequenced events received from `from` (a `/send` transaction), in order: each
    /// is applied if it is next, ignored if a duplicate, or applied after fetching the missing
    /// range. Their signatures are checked first, all together and off the async workers;
    /// only the chain check waits for the write lock. One result per event.
    pub async fn receive_events(
        &self,
        from: &ServerName,
        events: Vec<JsonObject>,
    ) -> Vec<Result<(), ReceiveError>> {
        // What needs no signature check comes first, so that nobody can make this server
        // verify (or fetch keys for) events of guilds it does not follow from their host.
        let mut results = Vec::with_capacity(events.len());
        let mut replicated = Vec::new();
        // A transaction's events are mostly of one guild: asked about once.
        let mut known: Vec<GuildId> = Vec::new();
        for event in events {
            let triaged = match parse_envelope(&event) {
                Err(error) => Err(error),
                Ok(envelope)
                    if &envelope.guild_id.host() != from || self.hosts(&envelope.guild_id) =>
                {
                    Err(ReceiveError::NotFromHost)
                }
                Ok(envelope) => match self.replicates(&envelope.guild_id, &mut known).await {
                    Err(error) => Err(internal(error)),
                    Ok(false) => self.unreplicated(&event, &envelope).await,
                    Ok(true) => {
                        replicated.push((results.len(), event));
                        Ok(())
                    }
                },
            };
            results.push(triaged);
        }
        let (positions, events): (Vec<usize>, Vec<JsonObject>) = replicated.into_iter().unzip();
        let mut grew = Vec::new();
        let mut note_growth = |guild_id: GuildId| {
            if !grew.contains(&guild_id) {
                grew.push(guild_id);
            }
        };
        let mut pending = positions.into_iter().zip(self.verify_batch(events).await).peekable();
        while let Some((position, verified)) = pending.next() {
            let first = match verified {
                Ok(first) => first,
                Err(error) => {
                    results[position] = Err(error);
                    continue;
                }
            };
            // The events after it that continue its guild's chain one seq at a time (most of a
            // transaction, usually) are applied together, in one write.
            let mut run = vec![(position, first)];
            while let Some((_, Ok(next))) = pending.peek()
                && run.last().is_some_and(|(_, last)| continues(last, next))
                && let Some((position, Ok(next))) = pending.next()
            {
                run.push((position, next));
            }
            if run.len() > 1
                && let Some(grown) = self.apply_run(&run).await
            {
                for (position, _) in &run {
                    results[*position] = Ok(());
                }
                if grown {
                    note_growth(run[0].1.envelope.guild_id.clone());
                }
                continue;
            }
            // One at a time: a gap to fetch, a duplicate, a bad link, or a lone event.
            for (position, verified) in run {
                results[position] = match self.apply_in_order(&verified).await {
                    Ok(Some(guild_id)) => {
                        note_growth(guild_id);
                        Ok(())
                    }
                    Ok(None) => Ok(()),
                    Err(error) => Err(error),
                };
            }
        }
        for guild_id in grew {
            self.fetch_withheld(&guild_id).await;
        }
        results
    }

    /// Whether this server holds a replica of `guild_id` (a head cached or stored), remembered
    /// in `known` once it does.
    async fn replicates(
        &self,
        guild_id: &GuildId,
        known: &mut Vec<GuildId>,
    ) -> Result<bool, sqlx::Error> {
        if known.contains(guild_id) {
            return Ok(true);
        }
        let held =
            self.cached(guild_id).is_some() || self.store.head_seq(guild_id).await?.is_some();
        if held {
            known.push(guild_id.clone());
        }
        Ok(held)
    }

    /// Applies a verified event of a replicated guild, first fetching the range before it if
    /// it is ahead of our head. Answers the guild if a local user may now see more of it.
    async fn apply_in_order(
        &self,
        verified: &VerifiedEvent,
    ) -> Result<Option<GuildId>, ReceiveError> {
        let guild_id = verified.envelope.guild_id.clone();
        let access_grew = match self.try_apply(verified).await? {
            Outcome::Applied { access_grew } => access_grew,
            Outcome::Duplicate => false,
            Outcome::Gap { head } => {
                let seq = verified.envelope.seq.unwrap_or(0);
                let mut grew = self.catch_up(&guild_id, head, seq.saturating_sub(1)).await?;
                match self.try_apply(verified).await? {
                    Outcome::Applied { access_grew } => grew |= access_grew,
                    Outcome::Duplicate => {}
                    Outcome::Gap { .. } => return Err(ReceiveError::GapNotFilled),
                }
                grew
            }
        };
        Ok(access_grew.then_some(guild_id))
    }

    /// Checks the signatures and hashes of events from their guilds' hosts (not yet their
    /// place in the chain), on the blocking pool, split across the cores. Keys are fetched
    /// before: no network I/O is ever done under the write lock.
    async fn verify_batch(
        &self,
        events: Vec<JsonObject>,
    ) -> Vec<Result<VerifiedEvent, ReceiveError>> {
        let mut keyed = Vec::with_capacity(events.len());
        for event in events {
            let keys = match parse_envelope(&event) {
                Ok(envelope) => {
                    let servers = [envelope.origin.clone(), envelope.guild_id.host()];
                    self.keys.event_keys(&servers, envelope.origin_ts).await
                }
                Err(_) => signing::PublicKeyMap::new(),
            };
            keyed.push((event, keys));
        }
        let mut verdicts = verify_on_blocking_pool(keyed).await;
        // A server may have rotated its key since we cached its document: refetch once per
        // server, then check those events again.
        let mut refreshed = Vec::new();
        for verdict in &mut verdicts {
            let (Err(EventError::UnknownKey(server)), Some(event)) = (&verdict.0, &verdict.1)
            else {
                continue;
            };
            if !refreshed.contains(server) {
                self.keys.refresh(server).await;
                refreshed.push(server.clone());
            }
            let Ok(envelope) = parse_envelope(event) else { continue };
            let servers = [envelope.origin.clone(), envelope.guild_id.host()];
            let keys = self.keys.event_keys(&servers, envelope.origin_ts).await;
            if let Some(again) = verify_on_blocking_pool(vec![(event.clone(), keys)]).await.pop() {
                *verdict = again;
            }
        }
        verdicts.into_iter().map(|(verdict, _)| verdict.map_err(ReceiveError::Invalid)).collect()
    }

    /// A local user may now see more of the guild: take the host's current view of the state
    /// (channels that were hidden from us) and fetch the content withheld so far, which the host
    /// releases only for channels we may now view (spec chapter 13).
    pub async fn fetch_withheld(&self, guild_id: &GuildId) {
        // One refetch per guild at a time: changes of access while it runs ask it to go once
        // more, so a burst of role changes costs two refetches, not one each.
        {
            let Ok(mut running) = self.withheld_fetches.lock() else { return };
            if let Some(again) = running.get_mut(guild_id) {
                *again = true;
                return;
            }
            running.insert(guild_id.clone(), false);
        }
        // Cleared however this ends, a cancelled request included.
        let _running = RunningFetch { service: self, guild_id };
        loop {
            if let Err(error) = self.try_fetch_withheld(guild_id).await {
                tracing::info!(%guild_id, %error, "could not fetch withheld content yet");
            }
            let Ok(mut running) = self.withheld_fetches.lock() else { return };
            if running.get(guild_id) == Some(&true) {
                running.insert(guild_id.clone(), false);
            } else {
                return;
            }
        }
    }

    async fn try_fetch_withheld(&self, guild_id: &GuildId) -> Result<(), ReceiveError> {
        let host = guild_id.host();
        // The snapshot must describe exactly our head: catch up, take it, and retry if the host
        // moved on in between.
        for _ in 0..3 {
            let head = self.head(guild_id).await.map_err(|e| internal(e.code()))?;
            self.catch_up(guild_id, head.seq, head.seq).await?;
            let path = fill_path(GetState::PATH, &[guild_id.as_str()]);
            let snapshot = self
                .client
                .request_json::<JsonObject>("GET", &host, &path, None, None)
                .await
                .map_err(|e| internal(e.to_string()))?
                .map_err(|(status, _)| internal(format!("state: status {status}")))?;
            let keys = self.keys.event_keys(std::slice::from_ref(&host), u64::MAX).await;
            signing::verify_json(&snapshot, &host, &keys).map_err(|e| internal(e.to_string()))?;
            let snapshot: Snapshot =
                serde_json::from_value(serde_json::Value::Object(snapshot)).map_err(internal)?;
            let state: GuildState =
                serde_json::from_value(serde_json::Value::Object(snapshot.state))
                    .map_err(internal)?;
            let _guard = self.lock(guild_id).await.map_err(internal)?;
            let head = self.head(guild_id).await.map_err(|e| internal(e.code()))?;
            if head.seq == snapshot.seq
                && head.event_id == snapshot.event_id
                && &state.guild_id == guild_id
            {
                self.store
                    .install_snapshot(&state, snapshot.seq, &snapshot.event_id)
                    .await
                    .map_err(internal)?;
                self.cache(
                    guild_id,
                    GuildHead { seq: head.seq, event_id: head.event_id, state: Arc::new(state) },
                );
                break;
            }
        }
        let withheld =
            self.store.withheld_events(guild_id, MAX_WITHHELD_REFETCH).await.map_err(internal)?;
        let content_path = fill_path(GetContent::PATH, &[guild_id.as_str()]);
        for chunk in withheld.chunks(get_content::MAX_EVENTS) {
            let body = serde_json::json!({"event_ids": chunk});
            let answer = self
                .client
                .request_json::<get_content::Response>(
                    "POST",
                    &host,
                    &content_path,
                    None,
                    Some(&body),
                )
                .await
                .map_err(|e| internal(e.to_string()))?
                .map_err(|(status, _)| internal(format!("content: status {status}")))?;
            let mut released = self.store.events_by_id(guild_id, chunk).await.map_err(internal)?;
            released.sort_by_key(|event| event.seq);
            // Filled under the guild's write lock, like every other write to its projections.
            let _guard = self.lock(guild_id).await.map_err(internal)?;
            for mut event in released {
                let Some(content) = answer.contents.get(&event.event_id) else { continue };
                // The host's answer must match the hash the host signed.
                let matches = event::content_hash(content).ok().as_deref()
                    == event.event.get("content_hash").and_then(|h| h.as_str());
                let Some(event_type) =
                    event.event.get("type").and_then(|t| t.as_str()).map(str::to_owned)
                else {
                    continue;
                };
                let Ok(typed) = EventContent::parse(&event_type, content) else { continue };
                if !matches {
                    tracing::warn!(%guild_id, event = %event.event_id, "host released content that does not match its hash");
                    continue;
                }
                event.event.insert("content".into(), serde_json::Value::Object(content.clone()));
                self.store.fill_withheld(&event, &typed).await.map_err(internal)?;
            }
        }
        Ok(())
    }

    /// Fetches and applies the host's events after `after` until at least `until` (or the
    /// host's head, whichever is known), in pages. Returns whether a local user gained sight of
    /// a channel along the way.
    pub async fn catch_up(
        &self,
        guild_id: &GuildId,
        mut after: u64,
        until: u64,
    ) -> Result<bool, ReceiveError> {
        let mut access_grew = false;
        let host = guild_id.host();
        let path = fill_path(GetEvents::PATH, &[guild_id.as_str()]);
        loop {
            let query = format!("after={after}&limit={}", get_events::MAX_LIMIT);
            let answer = self
                .client
                .request_json::<get_events::Response>("GET", &host, &path, Some(&query), None)
                .await
                .map_err(|e| {
                    tracing::warn!(%guild_id, error = %e, "catch-up failed");
                    ReceiveError::GapNotFilled
                })?;
            let page = answer.map_err(|(status, _)| {
                tracing::warn!(%guild_id, status, "catch-up refused");
                ReceiveError::GapNotFilled
            })?;
            if page.events.is_empty() {
                return if after >= until {
                    Ok(access_grew)
                } else {
                    Err(ReceiveError::GapNotFilled)
                };
            }
            for verified in self.verify_batch(page.events).await {
                match self.try_apply(&verified?).await? {
                    Outcome::Applied { access_grew: grew } => access_grew |= grew,
                    Outcome::Duplicate => {}
                    Outcome::Gap { .. } => return Err(ReceiveError::GapNotFilled),
                }
            }
            let head = self.head(guild_id).await.map_err(|e| internal(e.code()))?.seq;
            // A page that did not move our head (only duplicates) would be asked for again
            // forever: stop.
            if head == after {
                return if after >= until {
                    Ok(access_grew)
                } else {
                    Err(ReceiveError::GapNotFilled)
                };
            }
            after = head;
            if after >= until && after >= page.head {
                return Ok(access_grew);
            }
        }
    }

    /// Catches up every replicated guild (at startup: the hosts may have moved on).
    pub async fn catch_up_all(&self) {
        let Ok(guilds) = self.store.replicated_guilds(self.server_name()).await else { return };
        for guild_id in guilds {
            let Ok(head) = self.head(&guild_id).await else { continue };
            match self.catch_up(&guild_id, head.seq, head.seq).await {
                Ok(true) => self.fetch_withheld(&guild_id).await,
                Ok(false) => {}
                Err(error) => tracing::info!(%guild_id, %error, "could not catch up yet"),
            }
        }
    }

    /// Applies a verified event if it is next; checks its place in the chain under the lock.
    async fn try_apply(&self, verified: &VerifiedEvent) -> Result<Outcome, ReceiveError> {
        let envelope = &verified.envelope;
        let seq = envelope
            .seq
            .ok_or(ReceiveError::Invalid(EventError::Malformed("missing seq".into())))?;
        let _guard = self.lock(&envelope.guild_id).await.map_err(internal)?;
        let head = self.head(&envelope.guild_id).await.map_err(|_| ReceiveError::UnknownGuild)?;
        if seq > head.seq + 1 {
            return Ok(Outcome::Gap { head: head.seq });
        }
        if seq <= head.seq {
            return self.duplicate_or_equivocation(verified, seq).await;
        }
        verified
            .check_position(ChainPosition::Follows(Some(&head.event_id)))
            .map_err(ReceiveError::Invalid)?;
        let access_grew = self.apply_verified(&head, verified).await?;
        Ok(Outcome::Applied { access_grew })
    }

    async fn duplicate_or_equivocation(
        &self,
        verified: &VerifiedEvent,
        seq: u64,
    ) -> Result<Outcome, ReceiveError> {
        let guild_id = &verified.envelope.guild_id;
        let held = self.store.guild_event(guild_id, seq).await.map_err(internal)?;
        match held {
            Some(held) if held.event_id == verified.event_id => {
                // A copy with content fills in what was withheld, indexed like a fresh arrival
                // (and never what a deletion erased: `fill_withheld` checks).
                if let (Some(content), false) =
                    (&verified.content, held.event.contains_key("content"))
                    && let Ok(typed) = EventContent::parse(&verified.envelope.event_type, content)
                {
                    let mut filled = held.clone();
                    filled
                        .event
                        .insert("content".into(), serde_json::Value::Object(content.clone()));
                    self.store.fill_withheld(&filled, &typed).await.map_err(internal)?;
                }
                Ok(Outcome::Duplicate)
            }
            Some(held) => {
                tracing::error!(%guild_id, seq, held = %held.event_id, other = %verified.event_id, "host equivocated");
                self.store
                    .record_equivocation(guild_id, seq, &held.event, &verified.object)
                    .await
                    .map_err(internal)?;
                Err(ReceiveError::Equivocation)
            }
            // Below the floor of a replica that joined later: history is fetched on demand.
            None => Ok(Outcome::Duplicate),
        }
    }

    /// Stores and publishes the next event of a replicated guild. Called with the write lock.
    /// Returns whether local users may now see more than before (see [`local_view_grew`]).
    async fn apply_verified(
        &self,
        head: &GuildHead,
        verified: &VerifiedEvent,
    ) -> Result<bool, ReceiveError> {
        let envelope = &verified.envelope;
        let seq = envelope.seq.unwrap_or(head.seq + 1);
        let folded = fold(&head.state, verified);
        let stale = super::StaleHead::until_cached(self, &envelope.guild_id);
        let stream_id = self
            .store
            .append_event(&folded.appended(verified, seq, &head.state))
            .await
            .map_err(internal)?;
        self.cache(
            &envelope.guild_id,
            GuildHead {
                seq,
                event_id: verified.event_id.clone(),
                state: Arc::clone(&folded.after),
            },
        );
        stale.cached();
        self.publish_folded(stream_id, verified, &folded, &head.state);
        Ok(self.view_grew(&head.state, &folded))
    }

    /// Applies `run` — events of one guild, each the seq after the one before — in one store
    /// write, if the first follows the head and every link holds; `None` (nothing written) if
    /// not, for the events to be taken one at a time. Answers whether local users may now see
    /// more than before.
    async fn apply_run(&self, run: &[(usize, VerifiedEvent)]) -> Option<bool> {
        let guild_id = &run.first()?.1.envelope.guild_id;
        let _guard = self.lock(guild_id).await.ok()?;
        let head = self.head(guild_id).await.ok()?;
        let mut before = Arc::clone(&head.state);
        let mut prev = &head.event_id;
        let mut folds = Vec::with_capacity(run.len());
        for (offset, (_, verified)) in (1..).zip(run) {
            if verified.envelope.seq != Some(head.seq + offset)
                || verified.check_position(ChainPosition::Follows(Some(prev))).is_err()
            {
                return None;
            }
            let folded = fold(&before, verified);
            prev = &verified.event_id;
            let after = Arc::clone(&folded.after);
            folds.push((before, folded));
            before = after;
        }
        let appended: Vec<AppendedEvent<'_>> = run
            .iter()
            .zip(&folds)
            .zip(1..)
            .map(|(((_, verified), (before, folded)), offset)| {
                folded.appended(verified, head.seq + offset, before)
            })
            .collect();
        let stale = super::StaleHead::until_cached(self, guild_id);
        let stream_ids = self.store.append_events(&appended).await.ok()?;
        let (_, last) = run.last()?;
        let seq = head.seq + u64::try_from(run.len()).ok()?;
        self.cache(guild_id, GuildHead { seq, event_id: last.event_id.clone(), state: before });
        stale.cached();
        let mut grew = false;
        for (((_, verified), (before, folded)), stream_id) in run.iter().zip(&folds).zip(stream_ids)
        {
            self.publish_folded(stream_id, verified, folded, before);
            grew |= self.view_grew(before, folded);
        }
        Some(grew)
    }

    /// Publishes an applied event to local sessions (content of an unknown type is not).
    fn publish_folded(
        &self,
        stream_id: i64,
        verified: &VerifiedEvent,
        folded: &Folded,
        before: &Arc<GuildState>,
    ) {
        if let Some(content) = &folded.content {
            self.publish(
                stream_id,
                &verified.envelope,
                &verified.event_id,
                &verified.object,
                content,
                Some(Arc::clone(before)),
                &folded.after,
            );
        }
    }

    /// Whether a local user may see more after `folded` than in `before`.
    fn view_grew(&self, before: &GuildState, folded: &Folded) -> bool {
        // An overwrite on a channel we do not know was hidden from us and may now be open.
        let unknown_channel = match &folded.content {
            Some(EventContent::OverwriteSet(set)) => !before.channels.contains_key(&set.channel_id),
            Some(EventContent::OverwriteDelete(delete)) => {
                !before.channels.contains_key(&delete.channel_id)
            }
            _ => false,
        };
        unknown_channel
            || (folded.content.as_ref().is_some_and(EventContent::changes_state)
                && local_view_grew(self.server_name(), before, &folded.after))
    }

    /// An event of a guild this server does not replicate: only a DM invitation for one of our
    /// users means anything (we join on their behalf).
    async fn unreplicated(
        &self,
        event: &JsonObject,
        envelope: &event::Envelope,
    ) -> Result<(), ReceiveError> {
        if envelope.event_type != "dm.invite" {
            return Err(ReceiveError::UnknownGuild);
        }
        let keys = self
            .keys
            .event_keys(&[envelope.origin.clone(), envelope.guild_id.host()], envelope.origin_ts)
            .await;
        let verified = event::verify_event(event, &keys, ChainPosition::Unchecked)
            .map_err(ReceiveError::Invalid)?;
        let invited = verified
            .content
            .as_ref()
            .and_then(|content| content.get("user_id"))
            .and_then(|user| user.as_str())
            .and_then(|user| UserId::parse(user).ok());
        let Some(invited) = invited.filter(|user| &user.server_name() == self.server_name()) else {
            return Err(ReceiveError::UnknownGuild);
        };
        if self.store.user(&invited).await.map_err(internal)?.is_none() {
            return Err(ReceiveError::UnknownGuild);
        }
        // Nobody is pulled into a conversation with someone they blocked (or who blocked them).
        if self.store.is_blocked_between(&invited, &envelope.sender).await.map_err(internal)? {
            return Err(ReceiveError::UnknownGuild);
        }
        // Join after answering: the host is waiting for this transaction's result. A full queue
        // drops the invitation rather than letting one server flood it.
        if let Some(joins) = self.dm_joins.get() {
            let _ = joins.try_send((invited, envelope.guild_id.clone(), envelope.sender.clone()));
        }
        Ok(())
    }
}

/// Whether some local user may view a channel after that no local user could view before, or
/// may be granted sight through a change the replica cannot see yet (a local user's roles or
/// the channel overwrites changed).
fn local_view_grew(me: &ServerName, before: &GuildState, after: &GuildState) -> bool {
    let locals: Vec<&UserId> =
        after.members.keys().filter(|user| user.server_str() == me.as_str()).collect();
    let visible = |state: &GuildState| -> std::collections::BTreeSet<guildhall_spec::ChannelId> {
        state
            .channels
            .keys()
            .filter(|channel| locals.iter().any(|user| state.can_view(user, channel)))
            .cloned()
            .collect()
    };
    let roles_changed = locals.iter().any(|user| {
        before.members.get(*user).map(|m| &m.roles) != after.members.get(*user).map(|m| &m.roles)
    });
    let overwrites_changed = before.channels.iter().any(|(id, channel)| {
        after.channels.get(id).is_some_and(|c| c.overwrites != channel.overwrites)
    });
    let roles_edited = before.roles != after.roles;
    !visible(after).is_subset(&visible(before))
        || roles_changed
        || overwrites_changed
        || roles_edited
}

fn parse_envelope(event: &JsonObject) -> Result<event::Envelope, ReceiveError> {
    serde_json::from_value(serde_json::Value::Object(event::envelope(event)))
        .map_err(|e| ReceiveError::Invalid(EventError::Malformed(e.to_string())))
}

/// Verifies `(event, keys)` pairs in order, in up to one chunk per core on the blocking pool.
/// Each verdict keeps its event when it failed, for a retry with fresh keys.
async fn verify_on_blocking_pool(
    keyed: Vec<(JsonObject, signing::PublicKeyMap)>,
) -> Vec<(Result<VerifiedEvent, EventError>, Option<JsonObject>)> {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let chunk = keyed.len().div_ceil(cores).max(1);
    let mut keyed = keyed.into_iter();
    let mut chunks = Vec::new();
    loop {
        let part: Vec<_> = keyed.by_ref().take(chunk).collect();
        if part.is_empty() {
            break;
        }
        let len = part.len();
        chunks.push((
            len,
            tokio::task::spawn_blocking(move || {
                part.into_iter()
                    .map(|(event, keys)| {
                        match event::verify_event(&event, &keys, ChainPosition::Unchecked) {
                            Ok(verified) => (Ok(verified), None),
                            Err(error) => (Err(error), Some(event)),
                        }
                    })
                    .collect::<Vec<_>>()
            }),
        ));
    }
    let mut verdicts = Vec::new();
    for (len, chunk) in chunks {
        match chunk.await {
            Ok(part) => verdicts.extend(part),
            // A panic in verification (none is known) fails its chunk's events, not the
            // server.
            Err(error) => verdicts.extend((0..len).map(|_| {
                (Err(EventError::Malformed(format!("verification failed: {error}"))), None)
            })),
        }
    }
    verdicts
}

fn internal(error: impl std::fmt::Display) -> ReceiveError {
    ReceiveError::Internal(error.to_string())
}
