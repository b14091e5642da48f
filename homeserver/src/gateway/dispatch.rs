//! Which dispatches a bus message becomes for one user, and what they contain.
//!
//! Visibility is decided here and nowhere else: a channel-scoped event reaches a user only if
//! they may view the channel (after the event, or before it for deletions); a guild event
//! reaches the guild's members, and a member who was removed learns of it once.

use guildhall_spec::content::EventContent;
use guildhall_spec::state::GuildState;
use guildhall_spec::{Permissions, UserId};
use serde_json::{Value, json};

use crate::api::views;
use crate::bus::GuildEventMessage;

/// A dispatch: its name (`t`) and payload (`d`).
pub(super) type Dispatch = (&'static str, Value);

/// The dispatches a guild event produces for `user`.
pub fn guild_event(message: &GuildEventMessage, user: &UserId) -> Vec<Dispatch> {
    let after = message.after.as_ref();
    let before = message.before.as_deref();
    let member_after = after.members.contains_key(user) && !after.deleted;
    let member_before = before.is_some_and(|state| state.members.contains_key(user));
    if !member_after && !member_before {
        return Vec::new();
    }
    let guild_id = &message.guild_id;
    let content = &message.content;

    // Removal from the guild (leave, kick, ban, server ban, deletion): the user learns it once.
    if member_before && !member_after {
        return vec![("GUILD_DELETE", json!({"id": guild_id}))];
    }
    if let Some(channel_id) = content.channel_id() {
        let sees_after = after.can_view(user, channel_id);
        let sees_before = before.is_some_and(|state| state.can_view(user, channel_id));
        // Gaining or losing sight of a channel through an overwrite looks like its creation
        // or deletion to this user.
        match content {
            EventContent::OverwriteSet(_)
            | EventContent::OverwriteDelete(_)
            | EventContent::ChannelUpdate(_) => {
                if sees_after && !sees_before {
                    return channel_dispatch("CHANNEL_CREATE", after, user, channel_id);
                }
                if sees_before && !sees_after {
                    return vec![(
                        "CHANNEL_DELETE",
                        json!({"id": channel_id, "guild_id": guild_id}),
                    )];
                }
                if !sees_after {
                    return Vec::new();
                }
            }
            EventContent::ChannelDelete(_) if sees_before => {}
            _ if !sees_after => return Vec::new(),
            _ => {}
        }
    }
    let ts = message.origin_ts;
    let sender = &message.sender;
    match content {
        EventContent::GuildCreate(_) => Vec::new(),
        EventContent::GuildUpdate(_)
        | EventContent::ServerBan(_)
        | EventContent::ServerUnban(_) => {
            vec![("GUILD_UPDATE", views::guild(after, user, false))]
        }
        EventContent::GuildDelete(_) => vec![("GUILD_DELETE", json!({"id": guild_id}))],
        EventContent::ChannelCreate(create) => {
            channel_dispatch("CHANNEL_CREATE", after, user, &create.channel_id)
        }
        EventContent::ChannelUpdate(update) => {
            channel_dispatch("CHANNEL_UPDATE", after, user, &update.channel_id)
        }
        EventContent::OverwriteSet(set) => {
            channel_dispatch("CHANNEL_UPDATE", after, user, &set.channel_id)
        }
        EventContent::OverwriteDelete(delete) => {
            channel_dispatch("CHANNEL_UPDATE", after, user, &delete.channel_id)
        }
        EventContent::ChannelDelete(delete) => {
            vec![("CHANNEL_DELETE", json!({"id": delete.channel_id, "guild_id": guild_id}))]
        }
        EventContent::RoleCreate(role) => role_dispatch("GUILD_ROLE_CREATE", after, &role.role_id),
        EventContent::RoleUpdate(role) => role_dispatch("GUILD_ROLE_UPDATE", after, &role.role_id),
        EventContent::RoleDelete(role) => {
            vec![("GUILD_ROLE_DELETE", json!({"guild_id": guild_id, "role_id": role.role_id}))]
        }
        EventContent::MemberJoin(_) if sender == user => {
            vec![("GUILD_CREATE", views::guild(after, user, true))]
        }
        EventContent::MemberJoin(join) => {
            // An account move: the old account leaves as the new one arrives with its roles.
            let moved_from = join.account_move.as_ref().and_then(|proof| proof.from());
            let mut dispatches: Vec<Dispatch> = moved_from
                .iter()
                .map(|from| ("GUILD_MEMBER_REMOVE", json!({"guild_id": guild_id, "user_id": from})))
                .collect();
            dispatches.extend(member_dispatch("GUILD_MEMBER_ADD", after, sender).into_iter().map(
                |(name, mut data)| {
                    if let Some(from) = &moved_from {
                        data["moved_from"] = json!(from);
                    }
                    (name, data)
                },
            ));
            dispatches
        }
        EventContent::MemberUpdate(update) => {
            member_dispatch("GUILD_MEMBER_UPDATE", after, &update.user_id)
        }
        EventContent::MemberLeave(_) => {
            vec![("GUILD_MEMBER_REMOVE", json!({"guild_id": guild_id, "user_id": sender}))]
        }
        EventContent::MemberKick(kick) => {
            vec![("GUILD_MEMBER_REMOVE", json!({"guild_id": guild_id, "user_id": kick.user_id}))]
        }
        EventContent::MemberBan(ban) => {
            let mut dispatches = Vec::new();
            if before.is_some_and(|state| state.members.contains_key(&ban.user_id)) {
                dispatches.push((
                    "GUILD_MEMBER_REMOVE",
                    json!({"guild_id": guild_id, "user_id": ban.user_id}),
                ));
            }
            if after.base_permissions(user).contains(Permissions::BAN_MEMBERS) {
                dispatches.push((
                    "GUILD_BAN_ADD",
                    json!({"guild_id": guild_id, "user_id": ban.user_id, "reason": ban.reason}),
                ));
            }
            dispatches
        }
        EventContent::MemberUnban(unban)
            if after.base_permissions(user).contains(Permissions::BAN_MEMBERS) =>
        {
            vec![("GUILD_BAN_REMOVE", json!({"guild_id": guild_id, "user_id": unban.user_id}))]
        }
        EventContent::MemberUnban(_) => Vec::new(),
        EventContent::DmInvite(invite) => {
            vec![("DM_INVITE", json!({"guild_id": guild_id, "user_id": invite.user_id}))]
        }
        // Invites are shown to those REST shows them to: their creator and MANAGE_GUILD.
        EventContent::InviteCreate(_) | EventContent::InviteRevoke(_)
            if !sees_invites(after, before, content, sender, user) =>
        {
            Vec::new()
        }
        EventContent::InviteCreate(invite) => vec![(
            "INVITE_CREATE",
            json!({"guild_id": guild_id, "code": invite.code, "channel_id": invite.channel_id, "creator": sender,
                   "max_age_secs": invite.max_age_secs, "max_uses": invite.max_uses}),
        )],
        EventContent::InviteRevoke(revoke) => {
            vec![("INVITE_DELETE", json!({"guild_id": guild_id, "code": revoke.code}))]
        }
        EventContent::MessageCreate(create) => vec![(
            "MESSAGE_CREATE",
            json!({
                "id": message.event_id, "guild_id": guild_id, "channel_id": create.channel_id, "author_id": sender,
                "content": create.body, "reply_to": create.reply_to, "mentions": create.mentions.clone().unwrap_or_default(),
                "attachments": create.attachments.clone().unwrap_or_default(),
                "seq": message.event.get("seq"), "created_ts": ts, "edited_ts": null, "pinned": false, "reactions": [],
            }),
        )],
        EventContent::MessageEdit(edit) => vec![(
            "MESSAGE_UPDATE",
            json!({"id": edit.message_id, "guild_id": guild_id, "channel_id": edit.channel_id, "content": edit.body, "edited_ts": ts}),
        )],
        EventContent::MessageDelete(delete) => {
            vec![(
                "MESSAGE_DELETE",
                json!({"id": delete.message_id, "guild_id": guild_id, "channel_id": delete.channel_id}),
            )]
        }
        EventContent::ReactionAdd(reaction) | EventContent::ReactionRemove(reaction) => {
            let name = if matches!(content, EventContent::ReactionAdd(_)) {
                "MESSAGE_REACTION_ADD"
            } else {
                "MESSAGE_REACTION_REMOVE"
            };
            vec![(
                name,
                json!({"guild_id": guild_id, "channel_id": reaction.channel_id, "message_id": reaction.message_id,
                       "user_id": sender, "emoji": reaction.emoji}),
            )]
        }
        EventContent::PinAdd(pin) | EventContent::PinRemove(pin) => vec![(
            "CHANNEL_PINS_UPDATE",
            json!({"guild_id": guild_id, "channel_id": pin.channel_id, "message_id": pin.message_id,
                   "pinned": matches!(content, EventContent::PinAdd(_))}),
        )],
    }
}

/// Whether `user` is shown an invite event: its creator and members with MANAGE_GUILD are.
fn sees_invites(
    after: &GuildState,
    before: Option<&GuildState>,
    content: &EventContent,
    sender: &UserId,
    user: &UserId,
) -> bool {
    let creator = match content {
        EventContent::InviteRevoke(revoke) => {
            before.and_then(|state| state.invites.get(&revoke.code)).map(|invite| &invite.creator)
        }
        _ => Some(sender),
    };
    creator == Some(user) || after.base_permissions(user).contains(Permissions::MANAGE_GUILD)
}

pub(super) fn channel_dispatch(
    name: &'static str,
    state: &GuildState,
    user: &UserId,
    channel_id: &guildhall_spec::ChannelId,
) -> Vec<Dispatch> {
    state
        .channels
        .get(channel_id)
        .map(|channel| (name, views::channel(state, user, channel_id, channel)))
        .into_iter()
        .collect()
}

fn role_dispatch(
    name: &'static str,
    state: &GuildState,
    role_id: &guildhall_spec::RoleId,
) -> Vec<Dispatch> {
    state
        .roles
        .get(role_id)
        .map(|role| (name, json!({"guild_id": state.guild_id, "role": views::role(role_id, role)})))
        .into_iter()
        .collect()
}

fn member_dispatch(name: &'static str, state: &GuildState, user_id: &UserId) -> Vec<Dispatch> {
    state
        .members
        .get(user_id)
        .map(|member| (name, views::member(state, user_id, member)))
        .into_iter()
        .collect()
}
