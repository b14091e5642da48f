//! What a resuming client is told: the durable log since its last position, then the
//! difference between what it was shown before it left and what it may see now.
//!
//! A replayed event is judged against the guild's *current* state (the state before each old
//! event is not kept), so on its own a replay cannot tell a client that it lost a guild or a
//! channel. The session therefore remembers every guild and channel its client was shown
//! ([`Known`]), and [`reconcile`] turns the difference into `GUILD_DELETE`, `CHANNEL_DELETE`
//! and `CHANNEL_CREATE` dispatches.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use guildhall_spec::content::EventContent;
use guildhall_spec::state::GuildState;
use guildhall_spec::{ChannelId, GuildId, Permissions, UserId};
use serde_json::json;

use super::Known;
use super::dispatch::{Dispatch, channel_dispatch, guild_event};
use crate::api::views;
use crate::bus::GuildEventMessage;
use crate::store::StoredEvent;

/// The dispatches a stored event replays to `user`, judged against the guild's current state.
///
/// Message history (messages, edits, deletions, reactions, pins) is replayed only in channels
/// where the user may read history: what was said while they were away is history.
pub(super) fn replayed(event: StoredEvent, state: Arc<GuildState>, user: &UserId) -> Vec<Dispatch> {
    let Some(message) = rebuild(event, state) else { return Vec::new() };
    // Messages, edits, deletions, reactions and pins: everything beside the guild state.
    if !message.content.changes_state()
        && let Some(channel_id) = message.content.channel_id()
        && !message
            .after
            .channel_permissions(user, channel_id)
            .contains(Permissions::READ_MESSAGE_HISTORY)
    {
        return Vec::new();
    }
    guild_event(&message, user)
}

/// What the client must be told besides the replay: guilds it was shown and is no longer a
/// member of, channels it was shown and may no longer see, and channels it may now see that
/// neither it was shown nor the replay announced. `current` holds the user's guilds now.
/// Updates `known` to what the client knows afterwards.
pub(super) fn reconcile(
    known: &mut Known,
    current: &BTreeMap<GuildId, Arc<GuildState>>,
    user: &UserId,
) -> Vec<Dispatch> {
    let mut dispatches = Vec::new();
    for guild_id in known.keys().filter(|guild| !current.contains_key(*guild)) {
        dispatches.push(("GUILD_DELETE", json!({"id": guild_id})));
    }
    known.retain(|guild, _| current.contains_key(guild));
    for (guild_id, state) in current {
        let visible = visible_channels(state, user);
        match known.get(guild_id) {
            // A guild the user is in that the client was never shown and the replay did not
            // announce (a membership that started without a join event the user could see).
            None => dispatches.push(("GUILD_CREATE", views::guild(state, user, true))),
            Some(shown) => {
                for lost in shown.difference(&visible) {
                    dispatches.push(("CHANNEL_DELETE", json!({"id": lost, "guild_id": guild_id})));
                }
                for gained in visible.difference(shown) {
                    dispatches.extend(channel_dispatch("CHANNEL_CREATE", state, user, gained));
                }
            }
        }
        known.insert(guild_id.clone(), visible);
    }
    dispatches
}

/// Records in `known` what `dispatches` (for one guild) showed the client.
pub(super) fn remember(
    known: &mut Known,
    guild_id: &GuildId,
    state: &GuildState,
    user: &UserId,
    dispatches: &[Dispatch],
) {
    for (name, data) in dispatches {
        match *name {
            "GUILD_CREATE" => {
                known.entry(guild_id.clone()).or_default().extend(visible_channels(state, user));
            }
            "CHANNEL_CREATE" => {
                if let Some(channel) = data["id"].as_str().and_then(|id| ChannelId::parse(id).ok())
                {
                    known.entry(guild_id.clone()).or_default().insert(channel);
                }
            }
            _ => {}
        }
    }
}

/// The channels of a guild `user` may see.
pub(super) fn visible_channels(state: &GuildState, user: &UserId) -> BTreeSet<ChannelId> {
    state.channels.keys().filter(|channel| state.can_view(user, channel)).cloned().collect()
}

/// Rebuilds a bus message from a stored event, with the current state as both before and after.
fn rebuild(event: StoredEvent, state: Arc<GuildState>) -> Option<GuildEventMessage> {
    let event_type = event.event.get("type")?.as_str()?;
    let content = EventContent::parse(event_type, event.event.get("content")?.as_object()?).ok()?;
    let sender = UserId::parse(event.event.get("sender")?.as_str()?).ok()?;
    let origin_ts = event.event.get("origin_ts")?.as_u64()?;
    Some(GuildEventMessage {
        stream_id: event.stream_id,
        guild_id: event.guild_id,
        event_id: event.event_id,
        event: event.event,
        content,
        sender,
        origin_ts,
        before: Some(Arc::clone(&state)),
        after: state,
    })
}
