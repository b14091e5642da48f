//! The projections a guild event implies beside the log: memberships, channels and invites
//! (by guild), and messages, reactions, pins and the search index, always keyed by guild.
//! Written in the event's transaction by `Store::append_event`. The search index is the
//! generated `messages.search` column: it follows `body` with nothing to maintain here.

use guildhall_spec::content::EventContent;
use guildhall_spec::{ChannelId, EventId, InviteCode, MediaId, UserId};
use sqlx::{Postgres, Transaction};

use super::media::{add_ref, drop_refs};
use crate::store::guilds::AppendedEvent;
use crate::store::media::RefKind;
use crate::store::to_i64;

/// Keeps `guild_members`, `channels` and `invites` equal to the state's members, channels and
/// invites.
pub(super) async fn write_membership(
    tx: &mut Transaction<'_, Postgres>,
    appended: &AppendedEvent<'_>,
) -> Result<(), sqlx::Error> {
    let guild = appended.guild_id.as_str();
    let (after, before) = (appended.after, appended.before);
    let was_member = |user: &UserId| before.is_some_and(|state| state.members.contains_key(user));
    for user in after.members.keys().filter(|user| !was_member(user)) {
        sqlx::query(
            "INSERT INTO guild_members (guild_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(guild)
        .bind(user.as_str())
        .execute(&mut **tx)
        .await?;
    }
    let is_member = |user: &UserId| after.members.contains_key(user) && !after.deleted;
    for user in before.iter().flat_map(|state| state.members.keys()).filter(|user| !is_member(user))
    {
        sqlx::query("DELETE FROM guild_members WHERE guild_id = $1 AND user_id = $2")
            .bind(guild)
            .bind(user.as_str())
            .execute(&mut **tx)
            .await?;
    }
    if after.deleted {
        sqlx::query("DELETE FROM guild_members WHERE guild_id = $1")
            .bind(guild)
            .execute(&mut **tx)
            .await?;
    }
    let had_channel =
        |channel: &ChannelId| before.is_some_and(|state| state.channels.contains_key(channel));
    for channel in after.channels.keys().filter(|channel| !had_channel(channel)) {
        sqlx::query(
            "INSERT INTO channels (channel_id, guild_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(channel.as_str())
        .bind(guild)
        .execute(&mut **tx)
        .await?;
    }
    for channel in before
        .iter()
        .flat_map(|state| state.channels.keys())
        .filter(|c| !after.channels.contains_key(*c))
    {
        sqlx::query("DELETE FROM channels WHERE channel_id = $1 AND guild_id = $2")
            .bind(channel.as_str())
            .bind(guild)
            .execute(&mut **tx)
            .await?;
    }
    let had_invite =
        |code: &InviteCode| before.is_some_and(|state| state.invites.contains_key(code));
    for code in after.invites.keys().filter(|code| !had_invite(code)) {
        sqlx::query("INSERT INTO invites (code, guild_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(code.as_str())
            .bind(guild)
            .execute(&mut **tx)
            .await?;
    }
    for code in before
        .iter()
        .flat_map(|state| state.invites.keys())
        .filter(|c| !after.invites.contains_key(*c))
    {
        sqlx::query("DELETE FROM invites WHERE code = $1 AND guild_id = $2")
            .bind(code.as_str())
            .bind(guild)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
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

pub(super) async fn messages_projection(
    tx: &mut Transaction<'_, Postgres>,
    appended: &AppendedEvent<'_>,
    content: &EventContent,
) -> Result<(), sqlx::Error> {
    // Every row is keyed by (guild, message): an event (from any host, hostile or not) can
    // only ever touch messages of its own guild, whether or not they are stored yet.
    let guild = appended.guild_id.as_str();
    let ts = to_i64(appended.origin_ts);
    match content {
        EventContent::MessageCreate(create) => {
            let mentions = serde_json::to_string(&create.mentions.clone().unwrap_or_default())
                .map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
            let attachments = create
                .attachments
                .as_ref()
                .filter(|a| !a.is_empty())
                .map(serde_json::to_string)
                .transpose()
                .map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
            // A tombstone left by an earlier deletion wins: the message stays erased.
            let inserted = sqlx::query(
                "INSERT INTO messages (message_id, guild_id, channel_id, author, body, reply_to, mentions, created_seq, created_ts, attachments)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING",
            )
            .bind(appended.event_id.as_str())
            .bind(guild)
            .bind(create.channel_id.as_str())
            .bind(appended.sender.as_str())
            .bind(&create.body)
            .bind(create.reply_to.as_ref().map(EventId::as_str))
            .bind(mentions)
            .bind(to_i64(appended.seq))
            .bind(ts)
            .bind(attachments)
            .execute(&mut **tx)
            .await?;
            if inserted.rows_affected() == 1 {
                // The attachments are referenced by this guild's message; its origin holds them.
                let origin = appended.sender.server_name();
                for id in create.attachments.iter().flatten() {
                    let Ok(id) = MediaId::parse(id) else { continue };
                    add_ref(
                        tx,
                        &id,
                        RefKind::Message,
                        Some(appended.guild_id),
                        appended.event_id.as_str(),
                        Some(&origin),
                    )
                    .await?;
                }
            }
        }
        EventContent::MessageEdit(edit) => {
            sqlx::query(
                "UPDATE messages SET body = $1, edited_ts = $2 WHERE guild_id = $3 AND message_id = $4",
            )
            .bind(&edit.body)
            .bind(ts)
            .bind(guild)
            .bind(edit.message_id.as_str())
            .execute(&mut **tx)
            .await?;
        }
        EventContent::MessageDelete(delete) => {
            // Erasure: the body goes, and so does the content of the create and every edit;
            // their envelopes stay, so the chain still verifies.
            sqlx::query(
                "UPDATE messages SET body = NULL, attachments = NULL, deleted = TRUE WHERE guild_id = $1 AND message_id = $2",
            )
            .bind(guild)
            .bind(delete.message_id.as_str())
            .execute(&mut **tx)
            .await?;
            // A replica that never saw the message (its content was withheld) keeps a tombstone,
            // so a late copy of the content can never bring it back.
            sqlx::query(
                "INSERT INTO messages (message_id, guild_id, channel_id, author, body, created_seq, created_ts, deleted)
                 VALUES ($1, $2, $3, $4, NULL, 0, 0, TRUE) ON CONFLICT DO NOTHING",
            )
            .bind(delete.message_id.as_str())
            .bind(guild)
            .bind(delete.channel_id.as_str())
            .bind(appended.sender.as_str())
            .execute(&mut **tx)
            .await?;
            sqlx::query(
                "UPDATE events SET content = NULL
                 WHERE message_id = $1 AND guild_id = $2 AND event_type IN ('message.create', 'message.edit')",
            )
            .bind(delete.message_id.as_str())
            .bind(guild)
            .execute(&mut **tx)
            .await?;
            // Copies still queued for a server that is down lose the content too.
            sqlx::query(
                "UPDATE outbound_events SET event = (event::jsonb - 'content')::text
                 WHERE event_id IN (SELECT event_id FROM events
                                    WHERE message_id = $1 AND guild_id = $2 AND event_type IN ('message.create', 'message.edit'))",
            )
            .bind(delete.message_id.as_str())
            .bind(guild)
            .execute(&mut **tx)
            .await?;
            for table in ["reactions", "pins"] {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DELETE FROM {table} WHERE guild_id = $1 AND message_id = $2"
                )))
                .bind(guild)
                .bind(delete.message_id.as_str())
                .execute(&mut **tx)
                .await?;
            }
            // Stored join answers carry history that may hold the message: they go (a retried
            // join then recovers from the current state).
            sqlx::query("DELETE FROM join_answers WHERE guild_id = $1")
                .bind(guild)
                .execute(&mut **tx)
                .await?;
            // Its attachments are no longer referenced by it (and go when nothing else does).
            drop_refs(tx, RefKind::Message, Some(appended.guild_id), delete.message_id.as_str())
                .await?;
        }
        EventContent::GuildUpdate(update) => {
            if let Some(icon) = &update.icon {
                let guild_id = appended.guild_id;
                drop_refs(tx, RefKind::GuildIcon, Some(guild_id), guild_id.as_str()).await?;
                if let Some(Ok(icon)) = icon.as_deref().map(MediaId::parse) {
                    let origin = appended.sender.server_name();
                    let kind = RefKind::GuildIcon;
                    add_ref(tx, &icon, kind, Some(guild_id), guild_id.as_str(), Some(&origin))
                        .await?;
                }
            }
        }
        EventContent::ReactionAdd(reaction) => {
            sqlx::query("INSERT INTO reactions (guild_id, message_id, user_id, emoji, seq) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING")
                .bind(guild)
                .bind(reaction.message_id.as_str())
                .bind(appended.sender.as_str())
                .bind(&reaction.emoji)
                .bind(to_i64(appended.seq))
                .execute(&mut **tx)
                .await?;
        }
        EventContent::ReactionRemove(reaction) => {
            sqlx::query("DELETE FROM reactions WHERE guild_id = $1 AND message_id = $2 AND user_id = $3 AND emoji = $4")
                .bind(guild)
                .bind(reaction.message_id.as_str())
                .bind(appended.sender.as_str())
                .bind(&reaction.emoji)
                .execute(&mut **tx)
                .await?;
        }
        EventContent::PinAdd(pin) => {
            sqlx::query("INSERT INTO pins (message_id, guild_id, channel_id, pinned_ts) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING")
                .bind(pin.message_id.as_str())
                .bind(guild)
                .bind(pin.channel_id.as_str())
                .bind(ts)
                .execute(&mut **tx)
                .await?;
        }
        EventContent::PinRemove(pin) => {
            sqlx::query("DELETE FROM pins WHERE guild_id = $1 AND message_id = $2")
                .bind(guild)
                .bind(pin.message_id.as_str())
                .execute(&mut **tx)
                .await?;
        }
        EventContent::ChannelDelete(channel) => {
            sqlx::query("DELETE FROM pins WHERE guild_id = $1 AND channel_id = $2")
                .bind(guild)
                .bind(channel.channel_id.as_str())
                .execute(&mut **tx)
                .await?;
        }
        _ => {}
    }
    Ok(())
}
