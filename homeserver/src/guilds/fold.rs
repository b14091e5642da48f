//! Folding a replica's verified events onto the state before them, and what the store writes
//! for each ([`super::replica`] applies them one at a time or as a run).

use std::sync::Arc;

use guildhall_spec::content::EventContent;
use guildhall_spec::event::VerifiedEvent;
use guildhall_spec::state::GuildState;

use crate::store::AppendedEvent;

/// A verified event folded onto the state before it.
pub(super) struct Folded {
    /// Its typed content (`None`: withheld, or of a type this server does not know, which is
    /// stored but not folded).
    pub(super) content: Option<EventContent>,
    /// The state after it (the very state before it when it changes none).
    pub(super) after: Arc<GuildState>,
}

impl Folded {
    /// What the store writes for it, at `seq` after `before`.
    pub(super) fn appended<'a>(
        &'a self,
        verified: &'a VerifiedEvent,
        seq: u64,
        before: &'a GuildState,
    ) -> AppendedEvent<'a> {
        let envelope = &verified.envelope;
        AppendedEvent {
            guild_id: &envelope.guild_id,
            seq,
            event_id: &verified.event_id,
            event: &verified.object,
            sender: &envelope.sender,
            txn_id: &envelope.txn_id,
            origin_ts: envelope.origin_ts,
            event_type: &envelope.event_type,
            content: self.content.as_ref(),
            backfill: false,
            before: Some(before),
            after: &self.after,
            outbound: &[],
        }
    }
}

pub(super) fn fold(before: &Arc<GuildState>, verified: &VerifiedEvent) -> Folded {
    let envelope = &verified.envelope;
    let content = verified
        .content
        .as_ref()
        .and_then(|content| EventContent::parse(&envelope.event_type, content).ok());
    let after = match &content {
        Some(content) if content.changes_state() => {
            let mut after = (**before).clone();
            after.apply(&envelope.sender, envelope.origin_ts, content);
            Arc::new(after)
        }
        _ => Arc::clone(before),
    };
    Folded { content, after }
}

/// Whether `next` is the event after `last` in the same guild's chain (by seq; the link itself
/// is checked under the lock).
pub(super) fn continues(last: &VerifiedEvent, next: &VerifiedEvent) -> bool {
    next.envelope.guild_id == last.envelope.guild_id
        && last.envelope.seq.is_some_and(|seq| next.envelope.seq == Some(seq + 1))
}
