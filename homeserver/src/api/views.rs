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

/// A channel, with its overwrites and what `viewer` may do in it (`permissions`, after the
/// overwrites: what a client shows and offers).
pub fn channel(
    state: &GuildState,
    viewer: &UserId,
    channel_id: &ChannelId,
    channel: &Channel,
) -> Value {
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
        "permissions": state.channel_permissions(viewer, channel_id),
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

/// Above this many members a guild is `large`: where a guild view carries members (`READY`,
/// `GUILD_CREATE`, DMs) it carries only the viewer's own, and clients page through the rest
/// with `GET /guilds/{id}/members?after=&limit=` — so that joining or connecting to a guild of
/// 10,000 members does not ship 10,000 members (Discord's lazy member lists do the same).
pub const LARGE_GUILD_MEMBERS: usize = 100;

/// A guild as `viewer` sees it: only the channels they may view, and (when asked) its members:
/// all of them, or in a guild with more than [`LARGE_GUILD_MEMBERS`] (`"large": true`) only the
/// viewer's own.
pub fn guild(state: &GuildState, viewer: &UserId, with_members: bool) -> Value {
    let mut channels: Vec<Value> = state
        .channels
        .iter()
        .filter(|(id, _)| state.can_view(viewer, id))
        .map(|(id, c)| channel(state, viewer, id, c))
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
        let large = state.members.len() > LARGE_GUILD_MEMBERS;
        view["large"] = json!(large);
        view["members"] = if large {
            state
                .members
                .get_key_value(viewer)
                .map(|(id, m)| member(state, id, m))
                .into_iter()
                .collect()
        } else {
            state.members.iter().map(|(id, m)| member(state, id, m)).collect()
        };
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

#[cfg(test)]
mod tests {
    use super::*;
    use guildhall_spec::GuildId;
    use guildhall_spec::content::GuildKind;

    fn guild_of(members: usize) -> (GuildState, UserId) {
        let owner = UserId::parse("@owner:host.example").unwrap();
        let guild_id = GuildId::parse("!Wq3b9xKc2LmN8pRt5vYz1A:host.example").unwrap();
        let mut state = GuildState::new(guild_id, "g".into(), GuildKind::Guild, owner.clone(), 1);
        // The owner may be a member already; make it `members` in all.
        for index in 0.. {
            if state.members.len() >= members {
                break;
            }
            let user = UserId::parse(&format!("@user{index:05}:host.example")).unwrap();
            state.members.insert(user, Member { nick: None, roles: Vec::new(), joined_ts: 2 });
        }
        (state, UserId::parse("@user00042:host.example").unwrap())
    }

    #[test]
    fn a_small_guild_lists_every_member() {
        let (state, viewer) = guild_of(LARGE_GUILD_MEMBERS);
        let view = guild(&state, &viewer, true);
        assert_eq!(view["large"], false);
        assert_eq!(view["members"].as_array().map(Vec::len), Some(LARGE_GUILD_MEMBERS));
    }

    #[test]
    fn a_large_guild_lists_only_the_viewer_and_counts_the_rest() {
        let (state, viewer) = guild_of(10_000);
        let view = guild(&state, &viewer, true);
        assert_eq!(view["large"], true);
        assert_eq!(view["member_count"], 10_000);
        let members = view["members"].as_array().unwrap();
        assert_eq!(members.len(), 1);
        assert_eq!(members[0]["user_id"], viewer.as_str());
        assert!(guild(&state, &viewer, false).get("members").is_none());
    }
}
