//! The JSON shapes clients see, shared by the REST API and the gateway.

use guildhall_spec::state::{Channel, GuildState, Member, Role};
use guildhall_spec::{ChannelId, RoleId, UserId};
use serde_json::{Value, json};

use crate::store::{MessageRow, ReactionCount, UserRow};

/// A user's public profile.
pub fn user(row: &UserRow) -> Value {
    json!({
        "id": row.user_id,
        "username": row.user_id.localpart(),
        "display_name": row.display_name,
        "avatar": row.avatar,
    })
}

/// The signed-in user's own account.
pub fn own_user(row: &UserRow) -> Value {
    let mut view = user(row);
    view["is_admin"] = json!(row.is_admin);
    view["created_ts"] = json!(row.created_ts);
    view
}

/// A channel, with its overwrites.
pub fn channel(state: &GuildState, channel_id: &ChannelId, channel: &Channel) -> Value {
    let overwrites: Vec<Value> = channel
        .overwrites
        .values()
        .map(
            |o| json!({"kind": o.target_kind, "id": o.target_id, "allow": o.allow, "deny": o.deny}),
        )
        .collect();
    json!({
        "id": channel_id,
        "guild_id": state.guild_id,
        "name": channel.name,
        "kind": channel.kind,
        "parent_id": channel.parent_id,
        "position": channel.position,
        "topic": channel.topic,
        "overwrites": overwrites,
    })
}

/// A role.
pub fn role(role_id: &RoleId, role: &Role) -> Value {
    json!({
        "id": role_id,
        "name": role.name,
        "permissions": role.permissions,
        "position": role.position,
        "color": role.color,
        "hoist": role.hoist,
        "mentionable": role.mentionable,
    })
}

/// A member.
pub fn member(state: &GuildState, user_id: &UserId, member: &Member) -> Value {
    json!({
        "guild_id": state.guild_id,
        "user_id": user_id,
        "nick": member.nick,
        "roles": member.roles,
        "joined_ts": member.joined_ts,
    })
}

/// A guild as `viewer` sees it: only the channels they may view, and (when asked) its members.
pub fn guild(state: &GuildState, viewer: &UserId, with_members: bool) -> Value {
    let mut channels: Vec<Value> = state
        .channels
        .iter()
        .filter(|(id, _)| state.can_view(viewer, id))
        .map(|(id, c)| channel(state, id, c))
        .collect();
    channels.sort_by_key(|c| (c["position"].as_i64(), c["id"].as_str().map(str::to_owned)));
    let mut roles: Vec<Value> = state.roles.iter().map(|(id, r)| role(id, r)).collect();
    roles.sort_by_key(|r| r["position"].as_i64());
    let mut view = json!({
        "id": state.guild_id,
        "name": state.name,
        "kind": state.kind,
        "owner_id": state.owner,
        "description": state.description,
        "icon": state.icon,
        "member_count": state.members.len(),
        "channels": channels,
        "roles": roles,
        "permissions": state.base_permissions(viewer),
    });
    if with_members {
        view["members"] = state.members.iter().map(|(id, m)| member(state, id, m)).collect();
    }
    view
}

/// A message with its reactions from the viewer's point of view.
pub fn message(row: &MessageRow, reactions: &[ReactionCount], pinned: bool) -> Value {
    let reactions: Vec<Value> = reactions
        .iter()
        .filter(|r| r.message_id == row.message_id)
        .map(|r| json!({"emoji": r.emoji, "count": r.count, "me": r.me}))
        .collect();
    json!({
        "id": row.message_id,
        "guild_id": row.guild_id,
        "channel_id": row.channel_id,
        "author_id": row.author,
        "content": row.body,
        "reply_to": row.reply_to,
        "mentions": row.mentions,
        "attachments": row.attachments,
        "seq": row.created_seq,
        "created_ts": row.created_ts,
        "edited_ts": row.edited_ts,
        "pinned": pinned,
        "reactions": reactions,
    })
}
