//! Publication of appended events to this process's gateway sessions (and, in a cluster, the
//! other nodes): held until the append is durable, and always in append order (see
//! `store/sqlite/fence.rs`: on SQLite an append returns before its fsync).

use std::sync::Arc;

use guildhall_spec::EventId;
use guildhall_spec::content::EventContent;
use guildhall_spec::event::{self, JsonObject};
use guildhall_spec::state::GuildState;

use super::GuildService;
use crate::bus::{BusMessage, GuildEventMessage};

/// Publications held until their appends are durable, numbered in append order.
#[derive(Debug, Default)]
pub(super) struct Unsettled {
    /// The number of the next publication queued.
    next: u64,
    queue: std::collections::VecDeque<(u64, BusMessage)>,
}

impl GuildService {
    /// Publishes an appended event to this process's gateway sessions (and, in a cluster, to
    /// the other nodes) once the append is durable; publications keep their append order.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn publish(
        &self,
        stream_id: i64,
        envelope: &event::Envelope,
        event_id: &EventId,
        event: &JsonObject,
        content: &EventContent,
        before: Option<Arc<GuildState>>,
        after: &Arc<GuildState>,
    ) {
        let message = BusMessage::GuildEvent(Arc::new(GuildEventMessage {
            stream_id,
            guild_id: envelope.guild_id.clone(),
            event_id: event_id.clone(),
            event: event.clone(),
            content: content.clone(),
            sender: envelope.sender.clone(),
            origin_ts: envelope.origin_ts,
            before,
            after: Arc::clone(after),
        }));
        let mut unsettled =
            self.unsettled.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let number = unsettled.next;
        unsettled.next += 1;
        unsettled.queue.push_back((number, message));
        if self.store.settled() {
            self.publish_through(&mut unsettled, number);
        } else {
            self.settle_soon.notify_one();
        }
    }

    /// Publishes the queued events whose appends are durable once the store says so.
    pub(crate) async fn settle(&self) -> Result<(), sqlx::Error> {
        // Everything queued now was appended before the fence is asked for.
        let last = {
            let unsettled =
                self.unsettled.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            match unsettled.queue.back() {
                Some((number, _)) => *number,
                None => return Ok(()),
            }
        };
        self.store.durable().await?;
        let mut unsettled =
            self.unsettled.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        self.publish_through(&mut unsettled, last);
        Ok(())
    }

    /// Publishes queued events up to number `last`, in order.
    fn publish_through(&self, unsettled: &mut Unsettled, last: u64) {
        while unsettled.queue.front().is_some_and(|(number, _)| *number <= last) {
            if let Some((_, message)) = unsettled.queue.pop_front() {
                self.bus.publish(message);
            }
        }
    }
}
