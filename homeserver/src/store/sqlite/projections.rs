//! The projections a guild event implies beside the log: memberships, channels and invites
//! (by guild), and messages, reactions, pins and the search index, always keyed by guild.
//! Written in the event's transaction on the writer thread ([`super::writer`]), from owned
//! values computed before the write is queued.

use std::collections::BTreeMap;

use guildhall_spec::content::EventContent;
use guildhall_spec::state::GuildState;
use guildhall_spec::{EventId, GuildId, MediaId, UserId};
use rusqlite::{Connection, OptionalExtension, params};

use super::media::{add_ref_direct, drop_refs_direct};
use crate::store::media::RefKind;
use crate::store::to_i64;

/// How an event changes `guild_members`, `channels` and `invites` (which mirror the state's
/// members, channels and invites).
#[derive(Debug, Default)]
pub(super) struct MembershipChange {
    joined: Vec<String>,
    left: Vec<String>,
    /// The guild was deleted: every membership goes (whatever `joined` and `left` say).
    deleted: bool,
    channels_added: Vec<String>,
    channels_removed: Vec<String>,
    invites_added: Vec<String>,
    invites_removed: Vec<String>,
}

impl MembershipChange {
    /// The rows that make the indexes of `before` those of `after`.
    pub(super) fn between(before: Option<&GuildState>, after: &GuildState) -> Self {
        let (joined, left) = key_changes(before.map(|state| &state.members), &after.members);
        let (channels_added, channels_removed) =
            key_changes(before.map(|state| &state.channels), &after.channels);
        let (invites_added, invites_removed) =
            key_changes(before.map(|state| &state.invites), &after.invites);
        Self {
            joined,
            left,
            deleted: after.deleted,
            channels_added,
            channels_removed,
            invites_added,
            invites_removed,
        }
    }

    /// Writes the change for `guild`.
    pub(super) fn write(&self, tx: &Connection, guild: &str) -> rusqlite::Result<()> {
        let run = |sql: &str, rows: &[String], key_first: bool| -> rusqlite::Result<()> {
            let mut statement = tx.prepare_cached(sql)?;
            for key in rows {
                if key_first {
                    statement.execute(params![key, guild])?;
                } else {
                    statement.execute(params![guild, key])?;
                }
            }
            Ok(())
        };
        run(
            "INSERT OR IGNORE INTO guild_members (guild_id, user_id) VALUES (?, ?)",
            &self.joined,
            false,
        )?;
        run("DELETE FROM guild_members WHERE guild_id = ? AND user_id = ?", &self.left, false)?;
        if self.deleted {
            tx.prepare_cached("DELETE FROM guild_members WHERE guild_id = ?")?.execute([guild])?;
        }
        run(
            "INSERT OR IGNORE INTO channels (channel_id, guild_id) VALUES (?, ?)",
            &self.channels_added,
            true,
        )?;
        run(
            "DELETE FROM channels WHERE channel_id = ? AND guild_id = ?",
            &self.channels_removed,
            true,
        )?;
        run(
            "INSERT OR IGNORE INTO invites (code, guild_id) VALUES (?, ?)",
            &self.invites_added,
            true,
        )?;
        run("DELETE FROM invites WHERE code = ? AND guild_id = ?", &self.invites_removed, true)?;
        Ok(())
    }
}

/// The keys `after` has and `before` lacks, then those `before` has and `after` lacks.
fn key_changes<K: Ord + std::fmt::Display, V>(
    before: Option<&BTreeMap<K, V>>,
    after: &BTreeMap<K, V>,
) -> (Vec<String>, Vec<String>) {
    let had = |key: &K| before.is_some_and(|before| before.contains_key(key));
    let added = after.keys().filter(|key| !had(key)).map(ToString::to_string).collect();
    let removed = before
        .iter()
        .flat_map(|before| before.keys())
        .filter(|key| !after.contains_key(*key))
        .map(ToString::to_string)
        .collect();
    (added, removed)
}

/// The message an event acts on: a create's own id, or the target of an edit, delete,
/// reaction or pin.
pub(super) fn message_target(content: &EventContent, event_id: &EventId) -> Option<EventId> {
    match content {
        EventContent::MessageCreate(_) => Some(event_id.clone()),
        EventContent::MessageEdit(edit) => Some(edit.message_id.clone()),
        EventContent::MessageDelete(target)
        | EventContent::PinAdd(target)
        | EventContent::PinRemove(target) => Some(target.message_id.clone()),
        EventContent::ReactionAdd(reaction) | EventContent::ReactionRemove(reaction) => {
            Some(reaction.message_id.clone())
        }
        _ => None,
    }
}

/// An event with content, as the message projections need it.
#[derive(Debug)]
pub(super) struct Projected {
    pub(super) guild_id: GuildId,
    pub(super) event_id: EventId,
    pub(super) sender: UserId,
    pub(super) seq: u64,
    pub(super) origin_ts: u64,
    pub(super) content: EventContent,
}

pub(super) fn messages_projection(tx: &Connection, event: &Projected) -> rusqlite::Result<()> {
    // Every row is keyed by (guild, message): an event (from any host, hostile or not) can
    // only ever touch messages of its own guild, whether or not they are stored yet.
    let guild_id = &event.guild_id;
    let guild = guild_id.as_str();
    let ts = to_i64(event.origin_ts);
    let encode = |e: serde_json::Error| rusqlite::Error::ToSqlConversionFailure(Box::new(e));
    match &event.content {
        EventContent::MessageCreate(create) => {
            let mentions = serde_json::to_string(&create.mentions.clone().unwrap_or_default())
                .map_err(encode)?;
            let attachments = create
                .attachments
                .as_ref()
                .filter(|a| !a.is_empty())
                .map(serde_json::to_string)
                .transpose()
                .map_err(encode)?;
            // A tombstone left by an earlier deletion wins: the message stays erased.
            let inserted = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO messages (message_id, guild_id, channel_id, author, body, reply_to, mentions, created_seq, created_ts, attachments)
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                )?
                .execute(params![
                    event.event_id.as_str(),
                    guild,
                    create.channel_id.as_str(),
                    event.sender.as_str(),
                    &create.body,
                    create.reply_to.as_ref().map(EventId::as_str),
                    mentions,
                    to_i64(event.seq),
                    ts,
                    attachments,
                ])?;
            if inserted == 1 {
                tx.prepare_cached("INSERT INTO messages_fts (rowid, body) VALUES (?, ?)")?
                    .execute(params![tx.last_insert_rowid(), &create.body])?;
                // The attachments are referenced by this guild's message; its origin holds them.
                let origin = event.sender.server_name();
                for id in create.attachments.iter().flatten() {
                    let Ok(id) = MediaId::parse(id) else { continue };
                    let owner = event.event_id.as_str();
                    add_ref_direct(
                        tx,
                        &id,
                        RefKind::Message,
                        Some(guild_id),
                        owner,
                        Some(&origin),
                    )?;
                }
            }
        }
        EventContent::MessageEdit(edit) => {
            tx.prepare_cached(
                "UPDATE messages SET body = ?, edited_ts = ? WHERE guild_id = ? AND message_id = ?",
            )?
            .execute(params![&edit.body, ts, guild, edit.message_id.as_str()])?;
            reindex(tx, guild_id, &edit.message_id, Some(&edit.body))?;
        }
        EventContent::MessageDelete(delete) => {
            let message = delete.message_id.as_str();
            // Erasure: the body goes, and so does the content of the create and every edit;
            // their envelopes stay, so the chain still verifies.
            tx.prepare_cached(
                "UPDATE messages SET body = NULL, attachments = NULL, deleted = 1 WHERE guild_id = ? AND message_id = ?",
            )?
            .execute(params![guild, message])?;
            // A replica that never saw the message (its content was withheld) keeps a tombstone,
            // so a late copy of the content can never bring it back.
            tx.prepare_cached(
                "INSERT OR IGNORE INTO messages (message_id, guild_id, channel_id, author, body, created_seq, created_ts, deleted)
                 VALUES (?, ?, ?, ?, NULL, 0, 0, 1)",
            )?
            .execute(params![message, guild, delete.channel_id.as_str(), event.sender.as_str()])?;
            tx.prepare_cached(
                "UPDATE events SET content = NULL
                 WHERE message_id = ? AND guild_id = ? AND event_type IN ('message.create', 'message.edit')",
            )?
            .execute(params![message, guild])?;
            // Copies still queued for a server that is down lose the content too.
            tx.prepare_cached(
                "UPDATE outbound_events SET event = json_remove(event, '$.content')
                 WHERE event_id IN (SELECT event_id FROM events
                                    WHERE message_id = ? AND guild_id = ? AND event_type IN ('message.create', 'message.edit'))",
            )?
            .execute(params![message, guild])?;
            tx.prepare_cached("DELETE FROM reactions WHERE guild_id = ? AND message_id = ?")?
                .execute(params![guild, message])?;
            tx.prepare_cached("DELETE FROM pins WHERE guild_id = ? AND message_id = ?")?
                .execute(params![guild, message])?;
            // Stored join answers carry history that may hold the message: they go (a retried
            // join then recovers from the current state).
            tx.prepare_cached("DELETE FROM join_answers WHERE guild_id = ?")?.execute([guild])?;
            reindex(tx, guild_id, &delete.message_id, None)?;
            // Its attachments are no longer referenced by it (and go when nothing else does).
            drop_refs_direct(tx, RefKind::Message, Some(guild_id), message)?;
        }
        EventContent::GuildUpdate(update) => {
            if let Some(icon) = &update.icon {
                drop_refs_direct(tx, RefKind::GuildIcon, Some(guild_id), guild)?;
                if let Some(Ok(icon)) = icon.as_deref().map(MediaId::parse) {
                    let origin = event.sender.server_name();
                    let kind = RefKind::GuildIcon;
                    add_ref_direct(tx, &icon, kind, Some(guild_id), guild, Some(&origin))?;
                }
            }
        }
        EventContent::ReactionAdd(reaction) => {
            tx.prepare_cached("INSERT OR IGNORE INTO reactions (guild_id, message_id, user_id, emoji, seq) VALUES (?, ?, ?, ?, ?)")?
                .execute(params![
                    guild,
                    reaction.message_id.as_str(),
                    event.sender.as_str(),
                    &reaction.emoji,
                    to_i64(event.seq),
                ])?;
        }
        EventContent::ReactionRemove(reaction) => {
            tx.prepare_cached("DELETE FROM reactions WHERE guild_id = ? AND message_id = ? AND user_id = ? AND emoji = ?")?
                .execute(params![
                    guild,
                    reaction.message_id.as_str(),
                    event.sender.as_str(),
                    &reaction.emoji,
                ])?;
        }
        EventContent::PinAdd(pin) => {
            tx.prepare_cached("INSERT OR IGNORE INTO pins (message_id, guild_id, channel_id, pinned_ts) VALUES (?, ?, ?, ?)")?
                .execute(params![pin.message_id.as_str(), guild, pin.channel_id.as_str(), ts])?;
        }
        EventContent::PinRemove(pin) => {
            tx.prepare_cached("DELETE FROM pins WHERE guild_id = ? AND message_id = ?")?
                .execute(params![guild, pin.message_id.as_str()])?;
        }
        EventContent::ChannelDelete(channel) => {
            tx.prepare_cached("DELETE FROM pins WHERE guild_id = ? AND channel_id = ?")?
                .execute(params![guild, channel.channel_id.as_str()])?;
        }
        _ => {}
    }
    Ok(())
}

fn reindex(
    tx: &Connection,
    guild_id: &GuildId,
    message_id: &EventId,
    body: Option<&str>,
) -> rusqlite::Result<()> {
    let rowid: Option<i64> = tx
        .prepare_cached("SELECT rowid FROM messages WHERE guild_id = ? AND message_id = ?")?
        .query_row(params![guild_id.as_str(), message_id.as_str()], |row| row.get(0))
        .optional()?;
    let Some(rowid) = rowid else { return Ok(()) };
    tx.prepare_cached("DELETE FROM messages_fts WHERE rowid = ?")?.execute([rowid])?;
    if let Some(body) = body {
        tx.prepare_cached("INSERT INTO messages_fts (rowid, body) VALUES (?, ?)")?
            .execute(params![rowid, body])?;
    }
    Ok(())
}
