//! Following a guild hosted elsewhere: verify every event the host sends, apply it strictly in
//! order, fetch exact missing ranges, and keep evidence when the host equivocates
//! (spec chapter 07 §7.3–7.6).

use std::sync::Arc;

use guildhall_spec::api::get_events::{self, GetEvents};
use guildhall_spec::api::{Endpoint, fill_path};
use guildhall_spec::content::EventContent;
use guildhall_spec::event::{self, ChainPosition, EventError, JsonObject, VerifiedEvent};
use guildhall_spec::{GuildId, ServerName, UserId};

use super::{GuildHead, GuildService, changes_state};
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

/// What one attempt to apply an event did.
enum Outcome {
    Applied,
    Duplicate,
    /// The event is beyond head + 1: the range after `head` is missing.
    Gap {
        head: u64,
    },
}

impl GuildService {
    /// Handles one sequenced event received from `from` (a `/send` push, a `/submit` answer):
    /// applies it if it is next, ignores a duplicate, or fetches the missing range first.
    pub async fn receive_event(
        &self,
        from: &ServerName,
        event: JsonObject,
    ) -> Result<(), ReceiveError> {
        let envelope = parse_envelope(&event)?;
        let guild_id = envelope.guild_id.clone();
        if &guild_id.host() != from || self.hosts(&guild_id) {
            return Err(ReceiveError::NotFromHost);
        }
        if self.store.guild(&guild_id).await.map_err(internal)?.is_none() {
            return self.unreplicated(&event, &envelope).await;
        }
        match self.try_apply(&event).await? {
            Outcome::Applied | Outcome::Duplicate => Ok(()),
            Outcome::Gap { head } => {
                let seq = envelope.seq.unwrap_or(0);
                self.catch_up(&guild_id, head, seq.saturating_sub(1)).await?;
                match self.try_apply(&event).await? {
                    Outcome::Applied | Outcome::Duplicate => Ok(()),
                    Outcome::Gap { .. } => Err(ReceiveError::GapNotFilled),
                }
            }
        }
    }

    /// Fetches and applies the host's events after `after` until at least `until` (or the
    /// host's head, whichever is known), in pages.
    pub async fn catch_up(
        &self,
        guild_id: &GuildId,
        mut after: u64,
        until: u64,
    ) -> Result<(), ReceiveError> {
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
                return if after >= until { Ok(()) } else { Err(ReceiveError::GapNotFilled) };
            }
            for event in page.events {
                match self.try_apply(&event).await? {
                    Outcome::Applied | Outcome::Duplicate => {}
                    Outcome::Gap { .. } => return Err(ReceiveError::GapNotFilled),
                }
            }
            after = self.head(guild_id).await.map_err(|e| internal(e.code()))?.seq;
            if after >= until && after >= page.head {
                return Ok(());
            }
        }
    }

    /// Catches up every replicated guild (at startup: the hosts may have moved on).
    pub async fn catch_up_all(&self) {
        let Ok(guilds) = self.store.replicated_guilds(self.server_name()).await else { return };
        for guild_id in guilds {
            let Ok(head) = self.head(&guild_id).await else { continue };
            if let Err(error) = self.catch_up(&guild_id, head.seq, head.seq).await {
                tracing::info!(%guild_id, %error, "could not catch up yet");
            }
        }
    }

    async fn try_apply(&self, event: &JsonObject) -> Result<Outcome, ReceiveError> {
        let envelope = parse_envelope(event)?;
        let seq = envelope
            .seq
            .ok_or(ReceiveError::Invalid(EventError::Malformed("missing seq".into())))?;
        let servers = [envelope.origin.clone(), envelope.guild_id.host()];
        let mut keys = self.keys.event_keys(&servers).await;
        let _guard = self.write_lock.lock().await;
        let head = self.head(&envelope.guild_id).await.map_err(|_| ReceiveError::UnknownGuild)?;
        if seq > head.seq + 1 {
            return Ok(Outcome::Gap { head: head.seq });
        }
        let position = if seq == head.seq + 1 {
            ChainPosition::Follows(Some(&head.event_id))
        } else {
            ChainPosition::Unchecked
        };
        let mut verdict = event::verify_event(event, &keys, position);
        if let Err(EventError::UnknownKey(server)) = &verdict {
            self.keys.refresh(server).await;
            keys = self.keys.event_keys(&servers).await;
            verdict = event::verify_event(event, &keys, position);
        }
        let verified = verdict.map_err(ReceiveError::Invalid)?;
        if seq <= head.seq {
            return self.duplicate_or_equivocation(&verified, seq).await;
        }
        self.apply_verified(&head, verified).await?;
        Ok(Outcome::Applied)
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
                if let (Some(content), false) =
                    (&verified.content, held.event.contains_key("content"))
                {
                    self.store.fill_content(&held.event_id, content).await.map_err(internal)?;
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
    async fn apply_verified(
        &self,
        head: &GuildHead,
        verified: VerifiedEvent,
    ) -> Result<(), ReceiveError> {
        let envelope = &verified.envelope;
        let seq = envelope.seq.unwrap_or(head.seq + 1);
        // Content of an unknown type (a newer protocol) is stored but not folded.
        let content = verified
            .content
            .as_ref()
            .and_then(|content| EventContent::parse(&envelope.event_type, content).ok());
        let after = match &content {
            Some(content) if changes_state(content) => {
                let mut after = (*head.state).clone();
                after.apply(&envelope.sender, envelope.origin_ts, content);
                Arc::new(after)
            }
            _ => Arc::clone(&head.state),
        };
        let stream_id = self
            .store
            .append_event(&AppendedEvent {
                guild_id: &envelope.guild_id,
                seq,
                event_id: &verified.event_id,
                event: &verified.object,
                sender: &envelope.sender,
                txn_id: &envelope.txn_id,
                origin_ts: envelope.origin_ts,
                event_type: &envelope.event_type,
                content: content.as_ref(),
                backfill: false,
                before: Some(&head.state),
                after: &after,
                outbound: &[],
            })
            .await
            .map_err(internal)?;
        self.cache(
            &envelope.guild_id,
            GuildHead { seq, event_id: verified.event_id.clone(), state: Arc::clone(&after) },
        );
        if let Some(content) = &content {
            self.publish(
                stream_id,
                envelope,
                &verified.event_id,
                &verified.object,
                content,
                Some(Arc::clone(&head.state)),
                &after,
                0,
            );
        }
        Ok(())
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
        let keys = self.keys.event_keys(&[envelope.origin.clone(), envelope.guild_id.host()]).await;
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
        // Join after answering: the host is waiting for this transaction's result.
        if let Some(joins) = self.dm_joins.get() {
            let _ = joins.send((invited, envelope.guild_id.clone(), envelope.sender.clone()));
        }
        Ok(())
    }
}

fn parse_envelope(event: &JsonObject) -> Result<event::Envelope, ReceiveError> {
    serde_json::from_value(serde_json::Value::Object(event::envelope(event)))
        .map_err(|e| ReceiveError::Invalid(EventError::Malformed(e.to_string())))
}

fn internal(error: impl std::fmt::Display) -> ReceiveError {
    ReceiveError::Internal(error.to_string())
}
