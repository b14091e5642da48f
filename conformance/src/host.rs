//! The peer as a **host**: a minimal sequencer for guilds the peer owns, so the suite can test
//! the target's replica side (spec chapter 07 §7.3–7.6): joining by DM invitation, applying
//! pushed events in order, filling gaps, refusing bad events, keeping equivocation evidence.
//!
//! It uses `guildhall-spec`'s pure rules (state fold, authorization, signing) and serves just
//! `/join` and `/events` for its guilds.

use std::collections::BTreeMap;

use guildhall_spec::content::{
    ChannelCreate, ChannelKind, EventContent, GuildCreate, GuildKind, MemberRef,
};
use guildhall_spec::event::{self, JsonObject, Proposal};
use guildhall_spec::state::GuildState;
use guildhall_spec::{
    ChannelId, EventId, GuildId, PublicKeyMap, ServerSigningKey, TxnId, UserId, signing,
};
use serde_json::{Value, json};

/// One guild the peer hosts.
#[derive(Debug, Clone)]
pub struct HostedGuild {
    /// The guild.
    pub guild_id: GuildId,
    /// Its text channel.
    pub channel_id: ChannelId,
    /// The owner, a user of the peer.
    pub owner: UserId,
    /// The folded state at the head.
    pub state: GuildState,
    /// The log, seq 1 first.
    pub log: Vec<JsonObject>,
}

impl HostedGuild {
    /// A DM guild owned by `owner`: `guild.create`, a text channel, and `dm.invite` of `invitee`.
    pub fn dm(key: &ServerSigningKey, owner: UserId, invitee: UserId) -> Result<Self, String> {
        let guild_id = GuildId::new(&format!("g{}", crate::context::unique()), key.server_name())
            .map_err(|e| e.to_string())?;
        let channel_id = ChannelId::parse("dm").map_err(|e| e.to_string())?;
        let create = GuildCreate {
            name: "conformance dm".into(),
            kind: GuildKind::Dm,
            owner: owner.clone(),
        };
        let state = GuildState::from_create(guild_id.clone(), &create, now_ms());
        let mut guild = Self {
            guild_id,
            channel_id: channel_id.clone(),
            owner: owner.clone(),
            state,
            log: Vec::new(),
        };
        guild.append(key, &owner, &EventContent::GuildCreate(create))?;
        let channel = ChannelCreate {
            channel_id,
            name: "dm".into(),
            kind: ChannelKind::Text,
            parent_id: None,
            position: 0,
            topic: None,
            overwrites: None,
        };
        guild.append(key, &owner, &EventContent::ChannelCreate(channel))?;
        guild.append(key, &owner, &EventContent::DmInvite(MemberRef { user_id: invitee }))?;
        Ok(guild)
    }

    /// The head seq.
    pub fn head(&self) -> u64 {
        self.log.len() as u64
    }

    /// The id of the event at the head.
    pub fn head_id(&self) -> Option<EventId> {
        self.log.last().and_then(|event| event::event_id(event).ok())
    }

    /// Builds (but does not append) the next event by a local user, signed as host.
    pub fn next(
        &self,
        key: &ServerSigningKey,
        sender: &UserId,
        content: &EventContent,
    ) -> Result<JsonObject, String> {
        self.build(key, sender, content, self.head() + 1, self.head_id())
    }

    /// Builds an event at any seq and prev (for equivocation and chain cases).
    pub fn build(
        &self,
        key: &ServerSigningKey,
        sender: &UserId,
        content: &EventContent,
        seq: u64,
        prev: Option<EventId>,
    ) -> Result<JsonObject, String> {
        let proposal = Proposal {
            guild_id: self.guild_id.clone(),
            event_type: content.event_type().to_owned(),
            sender: sender.clone(),
            origin: key.server_name().clone(),
            origin_ts: now_ms(),
            txn_id: TxnId::parse(&format!("h{}", crate::context::unique()))
                .map_err(|e| e.to_string())?,
            content: content.to_object(),
        };
        let signed = proposal.sign(key).map_err(|e| e.to_string())?;
        let (_, event) =
            event::sequence(signed, seq, prev.as_ref(), key).map_err(|e| e.to_string())?;
        Ok(event)
    }

    /// Authorizes, folds and appends an event by a local user; returns it.
    pub fn append(
        &mut self,
        key: &ServerSigningKey,
        sender: &UserId,
        content: &EventContent,
    ) -> Result<JsonObject, String> {
        if self.head() > 0 {
            self.state.authorize(sender, content, now_ms(), None).map_err(|e| e.to_string())?;
        }
        let event = self.next(key, sender, content)?;
        self.state.apply(sender, now_ms(), content);
        self.log.push(event.clone());
        Ok(event)
    }

    /// Handles a `/join` from a member server: checks the origin-signed proposal, sequences it
    /// and answers with the event, a host-signed snapshot and the history.
    pub fn join(
        &mut self,
        key: &ServerSigningKey,
        keys: &PublicKeyMap,
        body: &Value,
    ) -> Result<Value, (u16, String)> {
        let proposal =
            body["proposal"].as_object().cloned().ok_or((400, "no proposal".to_owned()))?;
        let (envelope, content) =
            event::verify_proposal(&proposal, keys).map_err(|e| (400, e.to_string()))?;
        let content = EventContent::parse(&envelope.event_type, &content)
            .map_err(|e| (400, e.to_string()))?;
        self.state
            .authorize(&envelope.sender, &content, now_ms(), None)
            .map_err(|e| (403, e.to_string()))?;
        let history = self.log.clone();
        let (id, sequenced) =
            event::sequence(proposal, self.head() + 1, self.head_id().as_ref(), key)
                .map_err(|e| (500, e.to_string()))?;
        self.state.apply(&envelope.sender, envelope.origin_ts, &content);
        self.log.push(sequenced.clone());
        let mut snapshot = json!({"guild_id": self.guild_id, "seq": self.head(), "event_id": id, "state": self.state})
            .as_object()
            .cloned()
            .unwrap_or_default();
        signing::sign_json(&mut snapshot, key).map_err(|e| (500, e.to_string()))?;
        Ok(json!({"event": sequenced, "snapshot": snapshot, "events": history}))
    }

    /// `/events?after=` for member servers.
    pub fn events_after(&self, after: u64, limit: usize) -> Value {
        let events: Vec<&JsonObject> = self.log.iter().skip(after as usize).take(limit).collect();
        json!({"events": events, "head": self.head()})
    }
}

/// The guilds a peer hosts, by id.
pub type Hosted = BTreeMap<String, HostedGuild>;

fn now_ms() -> u64 {
    crate::peer::unix_now() * 1000
}
