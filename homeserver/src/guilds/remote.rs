//! Acting in guilds hosted elsewhere: proposing local users' events to the host, joining
//! through an invite, and retrying proposals the host could not take yet.

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use guildhall_federation::FederationError;
use guildhall_spec::api::get_state::Snapshot;
use guildhall_spec::api::{
    Endpoint, ErrorBody, fill_path, get_invite, get_state, join_guild, submit_event,
};
use guildhall_spec::content::{EventContent, GuildKind, MemberJoin, MoveProof};
use guildhall_spec::event::{self, ChainPosition, JsonObject};
use guildhall_spec::state::GuildState;
use guildhall_spec::{EventId, GuildId, InviteCode, ServerName, TxnId, UserId, signing};

use super::{GuildHead, GuildService, Sequenced};
use crate::error::{ApiError, ApiResult};
use crate::store::{AppendedEvent, now_ms};

/// Backoff between attempts to deliver queued proposals: 1 s doubling to 1 hour.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);

impl GuildService {
    /// Proposes a local user's event to the guild's host and applies the host's answer.
    /// When the host cannot be reached the proposal is queued durably and retried; the caller
    /// is told `202 queued`.
    pub(super) async fn submit_remote(
        &self,
        guild_id: &GuildId,
        sender: &UserId,
        content: EventContent,
        txn_id: Option<TxnId>,
    ) -> ApiResult<Sequenced> {
        let state = self.state(guild_id).await?;
        if !state.members.contains_key(sender) {
            return Err(ApiError::not_found("unknown_guild", "no such guild"));
        }
        let proposal = self.local_proposal(guild_id, sender, &content, now_ms(), txn_id)?;
        match self.send_proposal(guild_id, &proposal).await {
            Ok(event) => self.accept_answer(guild_id, event).await,
            Err(ProposalFailure::Refused(error)) => Err(error),
            Err(ProposalFailure::Unreachable(reason)) => {
                tracing::info!(%guild_id, reason, "host unreachable; queueing the proposal");
                self.store.queue_proposal(guild_id, &proposal).await?;
                self.delivery.wake_proposals(&guild_id.host());
                let txn = proposal.get("txn_id").and_then(|t| t.as_str()).unwrap_or_default();
                Err(ApiError::new(
                    StatusCode::ACCEPTED,
                    "queued",
                    format!("the host is unreachable; queued as {txn}"),
                ))
            }
        }
    }

    async fn accept_answer(&self, guild_id: &GuildId, event: JsonObject) -> ApiResult<Sequenced> {
        let event_id = event::event_id(&event).map_err(ApiError::internal)?;
        if let Err(error) = self.receive_event(&guild_id.host(), event.clone()).await {
            tracing::warn!(%guild_id, %error, "could not apply the host's answer yet");
        }
        let seq = event.get("seq").and_then(serde_json::Value::as_u64).unwrap_or(0);
        Ok(Sequenced { event_id, seq, event, state: self.state(guild_id).await?, replayed: false })
    }

    async fn send_proposal(
        &self,
        guild_id: &GuildId,
        proposal: &JsonObject,
    ) -> Result<JsonObject, ProposalFailure> {
        let path = fill_path(submit_event::SubmitEvent::PATH, &[guild_id.as_str()]);
        let body = serde_json::json!({"proposal": proposal});
        let answer = self
            .client
            .request_json::<submit_event::Response>(
                "POST",
                &guild_id.host(),
                &path,
                None,
                Some(&body),
            )
            .await
            .map_err(|e| ProposalFailure::Unreachable(e.to_string()))?;
        match answer {
            Ok(response) => Ok(response.event),
            Err((status, body)) if status >= 500 || status == 429 || status == 401 => {
                Err(ProposalFailure::Unreachable(format!(
                    "{status}: {}",
                    String::from_utf8_lossy(&body)
                )))
            }
            Err((status, body)) => Err(ProposalFailure::Refused(peer_error(status, &body))),
        }
    }

    /// Delivers queued proposals to `host` until its queue is empty; backs off while it is down.
    pub(crate) async fn drain_proposals(&self, host: &ServerName) {
        let mut backoff = Duration::from_secs(1);
        loop {
            let next = match self.store.next_proposal(host).await {
                Ok(Some(next)) => next,
                Ok(None) => return,
                Err(error) => {
                    tracing::error!(%error, "reading queued proposals");
                    return;
                }
            };
            // Signed now, with the current key: the host verifies a proposal with the origin's
            // current keys only, and the key it was queued under may have been retired since.
            let proposal = match self.signed_afresh(&next.proposal) {
                Ok(proposal) => proposal,
                Err(error) => {
                    tracing::error!(%host, code = error.code(), "could not sign a queued proposal");
                    return;
                }
            };
            match self.send_proposal(&next.guild_id, &proposal).await {
                Ok(event) => {
                    let _ = self.accept_answer(&next.guild_id, event).await;
                    let _ = self.store.delete_proposal(next.id).await;
                    backoff = Duration::from_secs(1);
                }
                Err(ProposalFailure::Refused(error)) => {
                    // Final: the sender hears of it, it is never dropped silently.
                    tracing::warn!(%host, code = error.code(), "host refused a queued proposal");
                    self.publish_refusal(&next.guild_id, &proposal, &error);
                    let _ = self.store.delete_proposal(next.id).await;
                }
                Err(ProposalFailure::Unreachable(reason)) => {
                    tracing::debug!(%host, reason, ?backoff, "host still unreachable");
                    self.delivery.sleep_or_contact(host, backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// Joins a guild hosted on `host` through an invite code.
    pub async fn join_remote(
        &self,
        user: &UserId,
        host: &ServerName,
        code: &InviteCode,
    ) -> ApiResult<GuildId> {
        let path = fill_path(get_invite::GetInvite::PATH, &[code.as_str()]);
        let info = self
            .client
            .request_json::<get_invite::Response>("GET", host, &path, None, None)
            .await
            .map_err(unreachable)?
            .map_err(|(status, body): (u16, Vec<u8>)| peer_error(status, &body))?;
        if &info.guild_id.host() != host {
            return Err(ApiError::new(
                StatusCode::BAD_GATEWAY,
                "unavailable",
                "the host answered for a guild it does not host",
            ));
        }
        self.join_with(user, &info.guild_id, Some(code.clone())).await?;
        Ok(info.guild_id)
    }

    /// Joins a remote guild (with an invite, or a pending DM invitation) and installs the
    /// host-signed snapshot the host answers with. Returns the id of the `member.join` event,
    /// or `None` when an earlier join's answer was lost and the membership was recovered from
    /// the host's current snapshot instead.
    pub async fn join_with(
        &self,
        user: &UserId,
        guild_id: &GuildId,
        code: Option<InviteCode>,
    ) -> ApiResult<Option<EventId>> {
        self.join_as(user, guild_id, MemberJoin { invite_code: code, ..MemberJoin::default() })
            .await
    }

    /// Takes over, for `user`, the membership of their previous account in a remote guild (an
    /// account move, spec 16.5), installing the guild like a join.
    pub async fn join_by_move(
        &self,
        user: &UserId,
        guild_id: &GuildId,
        proof: MoveProof,
    ) -> ApiResult<Option<EventId>> {
        let join = MemberJoin { invite_code: None, account_move: Some(proof) };
        self.join_as(user, guild_id, join).await
    }

    async fn join_as(
        &self,
        user: &UserId,
        guild_id: &GuildId,
        join: MemberJoin,
    ) -> ApiResult<Option<EventId>> {
        let host = guild_id.host();
        let code = join.invite_code.clone();
        let content = EventContent::MemberJoin(join);
        let proposal = self.local_proposal(guild_id, user, &content, now_ms(), None)?;
        let txn_id =
            proposal.get("txn_id").and_then(|t| t.as_str()).and_then(|t| TxnId::parse(t).ok());
        let request = join_guild::Request { user_id: user.clone(), invite_code: code, proposal };
        let body = serde_json::to_value(&request).map_err(ApiError::internal)?;
        let path = fill_path(join_guild::JoinGuild::PATH, &[guild_id.as_str()]);
        let answer = self
            .client
            .request_json::<join_guild::Response>("POST", &host, &path, None, Some(&body))
            .await
            .map_err(unreachable)?;
        let answer = match answer {
            Ok(answer) => answer,
            Err((status, body)) => {
                let refused = peer_error(status, &body);
                // "Already a member" while we hold no replica: an earlier join of this user
                // was sequenced but its answer never arrived. Recover from the host's state.
                if refused.code() == "invalid_event"
                    && self.store.guild(guild_id).await?.is_none()
                    && self.recover_membership(user, guild_id).await?
                {
                    return Ok(None);
                }
                return Err(refused);
            }
        };
        let join_id = event::event_id(&answer.event).map_err(ApiError::internal)?;
        self.install_join(guild_id, answer, txn_id).await?;
        Ok(Some(join_id))
    }

    /// A proposal with its origin signature replaced by one from the current key.
    fn signed_afresh(&self, proposal: &JsonObject) -> ApiResult<JsonObject> {
        let mut fresh = proposal.clone();
        fresh.remove("signatures");
        let message = event::proposal_signing_bytes(&fresh).map_err(ApiError::internal)?;
        signing::add_signature(&mut fresh, &self.key, &message);
        Ok(fresh)
    }

    /// Tells the sender's clients that the host refused a proposal they were told was queued.
    fn publish_refusal(&self, guild_id: &GuildId, proposal: &JsonObject, error: &ApiError) {
        let text = |key: &str| proposal.get(key).and_then(|v| v.as_str()).unwrap_or_default();
        let Ok(sender) = UserId::parse(text("sender")) else { return };
        self.bus.publish(crate::bus::BusMessage::ProposalRefused {
            user_id: sender,
            data: serde_json::json!({
                "guild_id": guild_id, "txn_id": text("txn_id"), "type": text("type"),
                "channel_id": proposal.get("content").and_then(|c| c.get("channel_id")),
                "code": error.code(), "message": error.message(),
            }),
        });
    }

    /// Installs the host-signed snapshot of a guild at its head if it names `user` as a
    /// member; `false` if it does not (the refusal had another cause). Later events arrive as
    /// pushes; history before the snapshot is not fetched.
    async fn recover_membership(&self, user: &UserId, guild_id: &GuildId) -> ApiResult<bool> {
        let host = guild_id.host();
        let path = fill_path(get_state::GetState::PATH, &[guild_id.as_str()]);
        let unavailable = |e: String| ApiError::new(StatusCode::BAD_GATEWAY, "unavailable", e);
        let raw = self
            .client
            .request_json::<JsonObject>("GET", &host, &path, None, None)
            .await
            .map_err(|e| unavailable(e.to_string()))?
            .map_err(|(status, body): (u16, Vec<u8>)| peer_error(status, &body))?;
        let keys = self.keys.event_keys(std::slice::from_ref(&host), u64::MAX).await;
        signing::verify_json(&raw, &host, &keys).map_err(|e| unavailable(e.to_string()))?;
        let snapshot: Snapshot = serde_json::from_value(serde_json::Value::Object(raw))
            .map_err(|e| unavailable(e.to_string()))?;
        let state: GuildState = serde_json::from_value(serde_json::Value::Object(snapshot.state))
            .map_err(|e| unavailable(e.to_string()))?;
        if &snapshot.guild_id != guild_id
            || &state.guild_id != guild_id
            || !state.members.contains_key(user)
        {
            return Ok(false);
        }
        let _guard = self.lock(guild_id).await?;
        if self.store.guild(guild_id).await?.is_none() {
            self.store.install_snapshot(&state, snapshot.seq, &snapshot.event_id).await?;
            let head = GuildHead {
                seq: snapshot.seq,
                event_id: snapshot.event_id,
                state: Arc::new(state),
            };
            self.cache(guild_id, head);
        }
        tracing::info!(%guild_id, %user, "recovered a membership whose join answer was lost");
        Ok(true)
    }

    /// Installs a join answer; `expected_txn` is the transaction id of our own join proposal,
    /// which the sequenced join event must carry.
    async fn install_join(
        &self,
        guild_id: &GuildId,
        answer: join_guild::Response,
        expected_txn: Option<TxnId>,
    ) -> ApiResult<()> {
        let host = guild_id.host();
        let bad = |message: &str| {
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                "invalid_answer",
                format!("the host's join answer: {message}"),
            )
        };
        // The snapshot and the join are signed now: current keys only.
        let keys =
            self.keys.event_keys(&[host.clone(), self.server_name().clone()], u64::MAX).await;
        signing::verify_json(&answer.snapshot, &host, &keys).map_err(|e| bad(&e.to_string()))?;
        let snapshot: Snapshot = serde_json::from_value(serde_json::Value::Object(answer.snapshot))
            .map_err(|e| bad(&e.to_string()))?;
        let state: GuildState = serde_json::from_value(serde_json::Value::Object(snapshot.state))
            .map_err(|e| bad(&e.to_string()))?;
        let join = event::verify_event(&answer.event, &keys, ChainPosition::Unchecked)
            .map_err(|e| bad(&e.to_string()))?;
        if &snapshot.guild_id != guild_id
            || &state.guild_id != guild_id
            || snapshot.event_id != join.event_id
            || join.envelope.seq != Some(snapshot.seq)
            || Some(&join.envelope.txn_id) != expected_txn.as_ref()
        {
            return Err(bad("the snapshot does not match the join event"));
        }
        if state.kind != GuildKind::Dm && join_content_has_no_admission(&join) {
            return Err(bad("joined without an invite or a move, but the guild is not a DM"));
        }
        // Keys for every origin in the history, fetched before taking the write lock.
        let origins: Vec<ServerName> = answer
            .events
            .iter()
            .filter_map(|e| {
                e.get("origin").and_then(|o| o.as_str()).and_then(|o| ServerName::parse(o).ok())
            })
            .chain([host.clone(), self.server_name().clone()])
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        // History may predate a key rotation: retired keys count for what they signed before.
        let oldest = answer
            .events
            .iter()
            .filter_map(|e| e.get("origin_ts").and_then(|t| t.as_u64()))
            .min()
            .unwrap_or(u64::MAX);
        let history_keys = self.keys.event_keys(&origins, oldest).await;
        let _guard = self.lock(guild_id).await?;
        if self.store.guild(guild_id).await?.is_some() {
            // Another local user is already in the guild: the join is just the next event.
            drop(_guard);
            return self.receive_event(&host, answer.event).await.map_err(|e| bad(&e.to_string()));
        }
        self.store.install_snapshot(&state, snapshot.seq, &snapshot.event_id).await?;
        let state = Arc::new(state);
        // History before the join, then the join itself, indexed for reading.
        let mut history: Vec<JsonObject> = answer.events;
        history.push(answer.event.clone());
        let mut last_stream = 0;
        for object in &history {
            let Ok(verified) = event::verify_event(object, &history_keys, ChainPosition::Unchecked)
            else {
                continue;
            };
            if verified.envelope.guild_id != *guild_id
                || self.store.has_event(&verified.event_id).await?
            {
                continue;
            }
            let content = verified
                .content
                .as_ref()
                .and_then(|c| EventContent::parse(&verified.envelope.event_type, c).ok());
            last_stream = self
                .store
                .append_event(&AppendedEvent {
                    guild_id,
                    seq: verified.envelope.seq.unwrap_or(0),
                    event_id: &verified.event_id,
                    event: &verified.object,
                    sender: &verified.envelope.sender,
                    txn_id: &verified.envelope.txn_id,
                    origin_ts: verified.envelope.origin_ts,
                    event_type: &verified.envelope.event_type,
                    content: content.as_ref(),
                    backfill: true,
                    before: None,
                    after: &state,
                    outbound: &[],
                })
                .await?;
        }
        self.cache(
            guild_id,
            GuildHead {
                seq: snapshot.seq,
                event_id: snapshot.event_id.clone(),
                state: Arc::clone(&state),
            },
        );
        if let Some(content) = join
            .content
            .as_ref()
            .and_then(|c| EventContent::parse(&join.envelope.event_type, c).ok())
        {
            self.publish(
                last_stream,
                &join.envelope,
                &join.event_id,
                &join.object,
                &content,
                None,
                &state,
            );
        }
        Ok(())
    }
}

enum ProposalFailure {
    /// A final answer: the host's rules refuse the event.
    Refused(ApiError),
    /// Network trouble, 5xx, 429 or 401: try again later.
    Unreachable(String),
}

/// Turns a peer's error answer into ours, keeping its stable code when it has one.
fn peer_error(status: u16, body: &[u8]) -> ApiError {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(error) => ApiError::new(status, leak_code(&error.code), error.message),
        Err(_) => ApiError::new(
            StatusCode::BAD_GATEWAY,
            "unavailable",
            format!("the host answered {status}"),
        ),
    }
}

/// Our error codes are `&'static str`; a peer's code is mapped onto the known set.
fn leak_code(code: &str) -> &'static str {
    const KNOWN: &[&str] = &[
        "unknown_guild",
        "not_member",
        "missing_permission",
        "banned",
        "server_banned",
        "rate_limited",
        "invalid_event",
        "sender_not_from_origin",
        "unknown_invite",
        "server_denied",
        "bad_request",
        "conflict",
    ];
    KNOWN.iter().find(|known| **known == code).copied().unwrap_or("remote_error")
}

/// Whether a join event carries no invite code (a DM invitation join).
/// Whether a join into a non-DM guild names neither the invite nor the account move that
/// admitted it.
fn join_content_has_no_admission(join: &guildhall_spec::event::VerifiedEvent) -> bool {
    join.content
        .as_ref()
        .is_none_or(|content| !content.contains_key("invite_code") && !content.contains_key("move"))
}

/// A peer that could not be asked: our own policy forbids it (`403 server_denied`), or it is
/// unreachable (`502 unavailable`).
fn unreachable(error: FederationError) -> ApiError {
    match error {
        FederationError::Denied(server) => ApiError::new(
            StatusCode::FORBIDDEN,
            "server_denied",
            format!("this server does not federate with {server}"),
        ),
        error => ApiError::new(StatusCode::BAD_GATEWAY, "unavailable", error.to_string()),
    }
}
