//! Typed content of every guild event type (spec chapter 08).
//!
//! An event carries its type in the envelope and its body in `content`; [`EventContent`] is
//! the typed view of both, adjacently tagged exactly like an event (`{"type", "content"}`).
//! Content structs reject unknown members: a host must not sequence content it cannot check.

use serde::{Deserialize, Serialize};

use crate::event::JsonObject;
use crate::ids::{ChannelId, EventId, InviteCode, RoleId, ServerName, UserId};
use crate::permissions::Permissions;

/// The longest message body, in Unicode scalar values.
pub const MAX_MESSAGE_CHARS: usize = 4000;
/// The longest guild, channel or role name.
pub const MAX_NAME_CHARS: usize = 100;
/// The longest channel topic or guild description.
pub const MAX_TOPIC_CHARS: usize = 1024;
/// The longest reason for a moderation action.
pub const MAX_REASON_CHARS: usize = 512;
/// The longest reaction emoji (a Unicode emoji sequence).
pub const MAX_EMOJI_CHARS: usize = 32;

/// Every event type of v1 with its content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "content")]
pub enum EventContent {
    /// `guild.create`: always seq 1.
    #[serde(rename = "guild.create")]
    GuildCreate(GuildCreate),
    /// `guild.update`: MANAGE_GUILD.
    #[serde(rename = "guild.update")]
    GuildUpdate(GuildUpdate),
    /// `guild.delete`: the owner only; closes the log, no event is accepted after it.
    #[serde(rename = "guild.delete")]
    GuildDelete(Empty),
    /// `guild.server_ban`: BAN_MEMBERS.
    #[serde(rename = "guild.server_ban")]
    ServerBan(ServerBan),
    /// `guild.server_unban`: BAN_MEMBERS.
    #[serde(rename = "guild.server_unban")]
    ServerUnban(ServerUnban),
    /// `channel.create`: MANAGE_CHANNELS.
    #[serde(rename = "channel.create")]
    ChannelCreate(ChannelCreate),
    /// `channel.update`: MANAGE_CHANNELS.
    #[serde(rename = "channel.update")]
    ChannelUpdate(ChannelUpdate),
    /// `channel.delete`: MANAGE_CHANNELS.
    #[serde(rename = "channel.delete")]
    ChannelDelete(ChannelRef),
    /// `channel.overwrite.set`: MANAGE_ROLES.
    #[serde(rename = "channel.overwrite.set")]
    OverwriteSet(OverwriteSet),
    /// `channel.overwrite.delete`: MANAGE_ROLES.
    #[serde(rename = "channel.overwrite.delete")]
    OverwriteDelete(OverwriteDelete),
    /// `role.create`: MANAGE_ROLES and hierarchy.
    #[serde(rename = "role.create")]
    RoleCreate(RoleCreate),
    /// `role.update`: MANAGE_ROLES and hierarchy.
    #[serde(rename = "role.update")]
    RoleUpdate(RoleUpdate),
    /// `role.delete`: MANAGE_ROLES and hierarchy.
    #[serde(rename = "role.delete")]
    RoleDelete(RoleRef),
    /// `member.join`: a valid invite (or a DM invitation).
    #[serde(rename = "member.join")]
    MemberJoin(MemberJoin),
    /// `member.leave`: the sender leaves.
    #[serde(rename = "member.leave")]
    MemberLeave(Empty),
    /// `member.update`: nickname and roles.
    #[serde(rename = "member.update")]
    MemberUpdate(MemberUpdate),
    /// `member.kick`: KICK_MEMBERS and hierarchy.
    #[serde(rename = "member.kick")]
    MemberKick(MemberModeration),
    /// `member.ban`: BAN_MEMBERS and hierarchy.
    #[serde(rename = "member.ban")]
    MemberBan(MemberModeration),
    /// `member.unban`: BAN_MEMBERS.
    #[serde(rename = "member.unban")]
    MemberUnban(MemberRef),
    /// `dm.invite`: the owner of a DM guild invites a user, who may then join.
    #[serde(rename = "dm.invite")]
    DmInvite(MemberRef),
    /// `invite.create`: CREATE_INSTANT_INVITE in the channel.
    #[serde(rename = "invite.create")]
    InviteCreate(InviteCreate),
    /// `invite.revoke`: MANAGE_GUILD or the invite's creator.
    #[serde(rename = "invite.revoke")]
    InviteRevoke(InviteRevoke),
    /// `message.create`: VIEW_CHANNEL and SEND_MESSAGES.
    #[serde(rename = "message.create")]
    MessageCreate(MessageCreate),
    /// `message.edit`: the author only.
    #[serde(rename = "message.edit")]
    MessageEdit(MessageEdit),
    /// `message.delete`: the author, or MANAGE_MESSAGES.
    #[serde(rename = "message.delete")]
    MessageDelete(MessageRef),
    /// `reaction.add`: VIEW_CHANNEL, READ_MESSAGE_HISTORY, ADD_REACTIONS.
    #[serde(rename = "reaction.add")]
    ReactionAdd(Reaction),
    /// `reaction.remove`: one's own reaction.
    #[serde(rename = "reaction.remove")]
    ReactionRemove(Reaction),
    /// `pin.add`: MANAGE_MESSAGES.
    #[serde(rename = "pin.add")]
    PinAdd(MessageRef),
    /// `pin.remove`: MANAGE_MESSAGES.
    #[serde(rename = "pin.remove")]
    PinRemove(MessageRef),
}

impl EventContent {
    /// Parses the content of an event of type `event_type`.
    pub fn parse(event_type: &str, content: &JsonObject) -> Result<Self, serde_json::Error> {
        let tagged = serde_json::json!({"type": event_type, "content": content});
        serde_json::from_value(tagged)
    }

    /// The event type name, e.g. `message.create`.
    pub fn event_type(&self) -> &'static str {
        match self {
            Self::GuildCreate(_) => "guild.create",
            Self::GuildUpdate(_) => "guild.update",
            Self::GuildDelete(_) => "guild.delete",
            Self::ServerBan(_) => "guild.server_ban",
            Self::ServerUnban(_) => "guild.server_unban",
            Self::ChannelCreate(_) => "channel.create",
            Self::ChannelUpdate(_) => "channel.update",
            Self::ChannelDelete(_) => "channel.delete",
            Self::OverwriteSet(_) => "channel.overwrite.set",
            Self::OverwriteDelete(_) => "channel.overwrite.delete",
            Self::RoleCreate(_) => "role.create",
            Self::RoleUpdate(_) => "role.update",
            Self::RoleDelete(_) => "role.delete",
            Self::MemberJoin(_) => "member.join",
            Self::MemberLeave(_) => "member.leave",
            Self::MemberUpdate(_) => "member.update",
            Self::MemberKick(_) => "member.kick",
            Self::MemberBan(_) => "member.ban",
            Self::MemberUnban(_) => "member.unban",
            Self::DmInvite(_) => "dm.invite",
            Self::InviteCreate(_) => "invite.create",
            Self::InviteRevoke(_) => "invite.revoke",
            Self::MessageCreate(_) => "message.create",
            Self::MessageEdit(_) => "message.edit",
            Self::MessageDelete(_) => "message.delete",
            Self::ReactionAdd(_) => "reaction.add",
            Self::ReactionRemove(_) => "reaction.remove",
            Self::PinAdd(_) => "pin.add",
            Self::PinRemove(_) => "pin.remove",
        }
    }

    /// The content as a JSON object, ready to hash and sign.
    pub fn to_object(&self) -> JsonObject {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(mut tagged)) => match tagged.remove("content") {
                Some(serde_json::Value::Object(content)) => content,
                _ => JsonObject::new(),
            },
            _ => JsonObject::new(),
        }
    }

    /// Whether the event changes the folded guild state ([`crate::state::GuildState::apply`]);
    /// messages, reactions and pins live beside the state, not in it.
    pub fn changes_state(&self) -> bool {
        !matches!(
            self,
            Self::MessageCreate(_)
                | Self::MessageEdit(_)
                | Self::MessageDelete(_)
                | Self::ReactionAdd(_)
                | Self::ReactionRemove(_)
                | Self::PinAdd(_)
                | Self::PinRemove(_)
        )
    }

    /// The channel whose viewers alone may receive this event's content (spec chapter 13).
    ///
    /// Events that only say *who may see* a channel or that it is gone (overwrites,
    /// `channel.delete`) and `message.delete` are never withheld: every member server needs them
    /// to compute its own users' access correctly and to erase what it holds. They carry ids
    /// and permission bits, never names, topics or messages.
    pub fn visibility_channel(&self) -> Option<&ChannelId> {
        match self {
            Self::MessageDelete(_)
            | Self::OverwriteSet(_)
            | Self::OverwriteDelete(_)
            | Self::ChannelDelete(_) => None,
            _ => self.channel_id(),
        }
    }

    /// The channel the event belongs to.
    pub fn channel_id(&self) -> Option<&ChannelId> {
        match self {
            Self::ChannelCreate(ChannelCreate { channel_id, .. })
            | Self::ChannelUpdate(ChannelUpdate { channel_id, .. })
            | Self::ChannelDelete(ChannelRef { channel_id })
            | Self::OverwriteSet(OverwriteSet { channel_id, .. })
            | Self::OverwriteDelete(OverwriteDelete { channel_id, .. })
            | Self::InviteCreate(InviteCreate { channel_id, .. })
            | Self::MessageCreate(MessageCreate { channel_id, .. })
            | Self::MessageEdit(MessageEdit { channel_id, .. })
            | Self::MessageDelete(MessageRef { channel_id, .. })
            | Self::ReactionAdd(Reaction { channel_id, .. })
            | Self::ReactionRemove(Reaction { channel_id, .. })
            | Self::PinAdd(MessageRef { channel_id, .. })
            | Self::PinRemove(MessageRef { channel_id, .. }) => Some(channel_id),
            _ => None,
        }
    }
}

/// An empty content object.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

/// Whether a guild is a community guild or a (group) direct message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GuildKind {
    /// A community guild with roles, channels and invites.
    Guild,
    /// A DM or group DM: no roles, members fixed by the creator's invitations.
    Dm,
}

/// `guild.create`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuildCreate {
    /// Display name.
    pub name: String,
    /// Guild or DM.
    pub kind: GuildKind,
    /// The owner, a user of the host server.
    pub owner: UserId,
}

/// `guild.update`: absent members are unchanged.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuildUpdate {
    /// New name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// New description: absent leaves it, `null` removes it.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    pub description: Option<Option<String>>,
    /// New icon, a media id: absent leaves it, `null` removes it.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    pub icon: Option<Option<String>>,
}

/// A member that is present, `null` included (`Some(None)`); an absent one is `None` through
/// `#[serde(default)]`.
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// `guild.server_ban`: no user of `server` may take part in the guild.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerBan {
    /// The banned server.
    pub server: ServerName,
    /// Why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `guild.server_unban`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerUnban {
    /// The server to allow again.
    pub server: ServerName,
}

/// The kind of a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelKind {
    /// Text messages.
    Text,
    /// Voice through the host's LiveKit.
    Voice,
    /// A grouping of other channels.
    Category,
}

/// `channel.create`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelCreate {
    /// The new channel's id, chosen by the host.
    pub channel_id: ChannelId,
    /// Display name.
    pub name: String,
    /// Kind.
    pub kind: ChannelKind,
    /// The category it sits in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<ChannelId>,
    /// Sort position among siblings.
    pub position: i64,
    /// Topic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// Permission overwrites the channel starts with, so that a private channel is private
    /// from its first event (its name never reaches those who may not see it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overwrites: Option<Vec<InitialOverwrite>>,
}

/// One overwrite of a new channel (`channel.create`'s `overwrites`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InitialOverwrite {
    /// Role or member.
    pub target_kind: OverwriteKind,
    /// The role id or user id.
    pub target_id: String,
    /// Bits granted.
    pub allow: Permissions,
    /// Bits taken away.
    pub deny: Permissions,
}

/// `channel.update`: absent members are unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelUpdate {
    /// The channel.
    pub channel_id: ChannelId,
    /// New name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// New topic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// New position.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<i64>,
    /// New category.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<ChannelId>,
}

/// A reference to a channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelRef {
    /// The channel.
    pub channel_id: ChannelId,
}

/// Whom an overwrite targets, as on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OverwriteKind {
    /// `target_id` is a role id.
    Role,
    /// `target_id` is a user id.
    Member,
}

/// `channel.overwrite.set`: creates or replaces one overwrite.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverwriteSet {
    /// The channel.
    pub channel_id: ChannelId,
    /// Role or member.
    pub target_kind: OverwriteKind,
    /// The role id or user id.
    pub target_id: String,
    /// Bits granted.
    pub allow: Permissions,
    /// Bits taken away.
    pub deny: Permissions,
}

/// `channel.overwrite.delete`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverwriteDelete {
    /// The channel.
    pub channel_id: ChannelId,
    /// Role or member.
    pub target_kind: OverwriteKind,
    /// The role id or user id.
    pub target_id: String,
}

/// `role.create`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleCreate {
    /// The new role's id, chosen by the host.
    pub role_id: RoleId,
    /// Display name.
    pub name: String,
    /// What it grants.
    pub permissions: Permissions,
    /// Rank; higher outranks lower; @everyone is 0.
    pub position: i64,
    /// Colour as 0xRRGGBB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub color: Option<u32>,
    /// Shown separately in the member list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hoist: Option<bool>,
    /// Anyone may mention it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mentionable: Option<bool>,
}

/// `role.update`: absent members are unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleUpdate {
    /// The role.
    pub role_id: RoleId,
    /// New name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// New permissions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions: Option<Permissions>,
    /// New position.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<i64>,
    /// New colour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub color: Option<u32>,
    /// New hoist flag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hoist: Option<bool>,
    /// New mentionable flag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mentionable: Option<bool>,
}

/// A reference to a role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleRef {
    /// The role.
    pub role_id: RoleId,
}

/// `member.join`: the sender joins.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberJoin {
    /// The invite used; absent for DM guilds, where the creator's invitation admits, and for
    /// account moves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invite_code: Option<InviteCode>,
    /// Present when the sender takes over the membership of their previous account (spec
    /// 16.5): the move and the two attestations it rests on.
    #[serde(default, rename = "move", skip_serializing_if = "Option::is_none")]
    pub account_move: Option<MoveProof>,
}

/// The proof of an account move carried by a `member.join` (spec 08, 16.5). The host checks
/// its signatures before sequencing; the state transition needs only `from` and `to`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MoveProof {
    /// The signed move statement (`guildhall.account_move.v1`).
    pub statement: JsonObject,
    /// The attestation of the account moved from.
    pub from_attestation: JsonObject,
    /// The attestation of the account moved to.
    pub to_attestation: JsonObject,
}

impl MoveProof {
    /// The account moved from, as the statement names it.
    pub fn from(&self) -> Option<UserId> {
        self.statement.get("from")?.as_str()?.parse().ok()
    }

    /// The account moved to, as the statement names it.
    pub fn to(&self) -> Option<UserId> {
        self.statement.get("to")?.as_str()?.parse().ok()
    }
}

/// `member.update`: absent members are unchanged; `nick: null` clears the nickname.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberUpdate {
    /// The member being updated.
    pub user_id: UserId,
    /// New nickname (`null` clears it).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "double_option")]
    pub nick: Option<Option<String>>,
    /// The member's complete new role list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<RoleId>>,
}

/// `member.kick` and `member.ban`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberModeration {
    /// The member acted on.
    pub user_id: UserId,
    /// Why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A reference to a member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberRef {
    /// The member.
    pub user_id: UserId,
}

/// `invite.create`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InviteCreate {
    /// The code, chosen by the host.
    pub code: InviteCode,
    /// The channel the invite lands in.
    pub channel_id: ChannelId,
    /// Lifetime in seconds from the event's sequencing; absent = never expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age_secs: Option<u64>,
    /// Maximum number of joins; absent = unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_uses: Option<u64>,
}

/// `invite.revoke`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InviteRevoke {
    /// The code.
    pub code: InviteCode,
}

/// `message.create`. The message's id is this event's id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageCreate {
    /// The channel.
    pub channel_id: ChannelId,
    /// The text, 1 to 4000 characters.
    pub body: String,
    /// The message this one replies to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<EventId>,
    /// Users mentioned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mentions: Option<Vec<UserId>>,
    /// Attached media ids.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachments: Option<Vec<String>>,
}

/// `message.edit`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageEdit {
    /// The channel.
    pub channel_id: ChannelId,
    /// The message (its `message.create` event id).
    pub message_id: EventId,
    /// The new text.
    pub body: String,
}

/// A reference to a message: `message.delete`, `pin.add`, `pin.remove`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageRef {
    /// The channel.
    pub channel_id: ChannelId,
    /// The message.
    pub message_id: EventId,
}

/// `reaction.add` and `reaction.remove`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reaction {
    /// The channel.
    pub channel_id: ChannelId,
    /// The message.
    pub message_id: EventId,
    /// A Unicode emoji.
    pub emoji: String,
}

/// Serde helper distinguishing an absent member from an explicit `null`.
mod double_option {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(super) fn serialize<S: Serializer>(
        value: &Option<Option<String>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(inner) => inner.serialize(serializer),
            None => serializer.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Option<String>>, D::Error> {
        Option::<String>::deserialize(deserializer).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `content` as `event_type`, checks it serializes back to the same JSON.
    fn check(event_type: &str, content: serde_json::Value) {
        let object = content.as_object().unwrap();
        let parsed =
            EventContent::parse(event_type, object).unwrap_or_else(|e| panic!("{event_type}: {e}"));
        assert_eq!(parsed.event_type(), event_type);
        assert_eq!(serde_json::Value::Object(parsed.to_object()), content, "{event_type}");
    }

    const MESSAGE: &str = "$47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU";

    #[test]
    fn golden_content_of_every_type() {
        use serde_json::json;
        check("guild.create", json!({"name": "Lobby", "kind": "guild", "owner": "@o:h.example"}));
        check("guild.update", json!({"name": "Lobby 2", "description": "d", "icon": "m1"}));
        // `null` removes, and stays `null` on the way back out (the content hash covers it).
        check("guild.update", json!({"description": null, "icon": null}));
        let absent: GuildUpdate = serde_json::from_value(json!({})).unwrap();
        assert_eq!((absent.description, absent.icon), (None, None));
        check("guild.delete", json!({}));
        check("dm.invite", json!({"user_id": "@u:h.example"}));
        check("guild.server_ban", json!({"server": "bad.example", "reason": "spam"}));
        check("guild.server_unban", json!({"server": "bad.example"}));
        check(
            "channel.create",
            json!({"channel_id": "c1", "name": "general", "kind": "text", "position": 0, "parent_id": "cat", "topic": "t"}),
        );
        check(
            "channel.update",
            json!({"channel_id": "c1", "name": "n", "topic": "t", "position": 2, "parent_id": "cat"}),
        );
        check("channel.delete", json!({"channel_id": "c1"}));
        check(
            "channel.overwrite.set",
            json!({"channel_id": "c1", "target_kind": "role", "target_id": "everyone", "allow": "0", "deny": "1024"}),
        );
        check(
            "channel.overwrite.delete",
            json!({"channel_id": "c1", "target_kind": "member", "target_id": "@u:h.example"}),
        );
        check(
            "role.create",
            json!({"role_id": "r1", "name": "mod", "permissions": "8194", "position": 1, "color": 255, "hoist": true, "mentionable": false}),
        );
        check("role.update", json!({"role_id": "r1", "permissions": "0"}));
        check("role.delete", json!({"role_id": "r1"}));
        check("member.join", json!({"invite_code": "abc"}));
        check("member.join", json!({}));
        check("member.leave", json!({}));
        check("member.update", json!({"user_id": "@u:h.example", "nick": null}));
        check("member.update", json!({"user_id": "@u:h.example", "nick": "n", "roles": ["r1"]}));
        check("member.update", json!({"user_id": "@u:h.example"}));
        check("member.kick", json!({"user_id": "@u:h.example", "reason": "r"}));
        check("member.ban", json!({"user_id": "@u:h.example"}));
        check("member.unban", json!({"user_id": "@u:h.example"}));
        check(
            "invite.create",
            json!({"code": "abc", "channel_id": "c1", "max_age_secs": 3600, "max_uses": 5}),
        );
        check("invite.revoke", json!({"code": "abc"}));
        check(
            "message.create",
            json!({"channel_id": "c1", "body": "hi", "reply_to": MESSAGE, "mentions": ["@u:h.example"], "attachments": ["m1"]}),
        );
        check("message.edit", json!({"channel_id": "c1", "message_id": MESSAGE, "body": "edited"}));
        check("message.delete", json!({"channel_id": "c1", "message_id": MESSAGE}));
        check("reaction.add", json!({"channel_id": "c1", "message_id": MESSAGE, "emoji": "👍"}));
        check("reaction.remove", json!({"channel_id": "c1", "message_id": MESSAGE, "emoji": "👍"}));
        check("pin.add", json!({"channel_id": "c1", "message_id": MESSAGE}));
        check("pin.remove", json!({"channel_id": "c1", "message_id": MESSAGE}));
    }

    #[test]
    fn rejects_unknown_members_and_types() {
        let extra = serde_json::json!({"channel_id": "c1", "body": "hi", "admin": true});
        assert!(EventContent::parse("message.create", extra.as_object().unwrap()).is_err());
        assert!(EventContent::parse("message.explode", &JsonObject::new()).is_err());
    }
}
