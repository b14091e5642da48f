//! Guild state as a fold of the guild log, and the host's authorization rules (spec chapters 07,
//! 08 and 10).
//!
//! [`GuildState::authorize`] decides whether a sender may append an event at the head of the
//! log; [`GuildState::apply`] folds a sequenced event into the state. Both are pure, so the host
//! uses them to sequence, every replica uses `apply` to follow the log (and may re-run
//! `authorize` to audit its host), and a state snapshot is simply this struct serialized.
//!
//! This module holds the state's shape and the permission questions asked of it;
//! `authorize.rs` holds the host's rules, `apply.rs` the fold.

mod apply;
mod authorize;

pub use authorize::AuthError;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::api::submit_event::Rejection;
use crate::content::{
    ChannelCreate, ChannelKind, ChannelUpdate, EventContent, GuildKind, InitialOverwrite,
    MAX_EMOJI_CHARS, MAX_MESSAGE_CHARS, MAX_NAME_CHARS, MAX_REASON_CHARS, MAX_TOPIC_CHARS,
    OverwriteKind, RoleCreate, RoleUpdate,
};
use crate::ids::{ChannelId, GuildId, InviteCode, RoleId, ServerName, UserId};
use crate::permissions::{
    GuildContext, MemberContext, Overwrite, OverwriteTarget, Permissions, RolePermissions,
};

/// The state of a guild at some `seq`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GuildState {
    /// The guild.
    pub guild_id: GuildId,
    /// Display name.
    pub name: String,
    /// Guild or DM.
    pub kind: GuildKind,
    /// The owner, who holds every permission.
    pub owner: UserId,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Icon media id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icon: Option<String>,
    /// Channels by id.
    pub channels: BTreeMap<ChannelId, Channel>,
    /// Roles by id, including @everyone (`everyone`).
    pub roles: BTreeMap<RoleId, Role>,
    /// Current members by user id.
    pub members: BTreeMap<UserId, Member>,
    /// Banned users.
    pub bans: BTreeMap<UserId, Ban>,
    /// Banned servers.
    pub server_bans: BTreeMap<ServerName, Ban>,
    /// Live invites.
    pub invites: BTreeMap<InviteCode, Invite>,
    /// Users invited into a DM guild who have not joined yet.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub dm_invites: BTreeMap<UserId, UserId>,
    /// Set by `guild.delete`: the log is closed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
}

/// A channel and its overwrites.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Channel {
    /// Display name.
    pub name: String,
    /// Kind.
    pub kind: ChannelKind,
    /// Category.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<ChannelId>,
    /// Sort position.
    pub position: i64,
    /// Topic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// Overwrites, keyed `role:<id>` or `member:<user id>`.
    #[serde(default)]
    pub overwrites: BTreeMap<String, ChannelOverwrite>,
}

/// One overwrite as stored in state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelOverwrite {
    /// Role or member.
    pub target_kind: OverwriteKind,
    /// The role id or user id.
    pub target_id: String,
    /// Granted bits.
    pub allow: Permissions,
    /// Removed bits.
    pub deny: Permissions,
}

/// A role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Role {
    /// Display name.
    pub name: String,
    /// Granted bits.
    pub permissions: Permissions,
    /// Rank.
    pub position: i64,
    /// Colour, 0xRRGGBB.
    #[serde(default)]
    pub color: u32,
    /// Shown separately.
    #[serde(default)]
    pub hoist: bool,
    /// Mentionable by anyone.
    #[serde(default)]
    pub mentionable: bool,
}

/// A member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Guild nickname.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nick: Option<String>,
    /// Roles besides @everyone.
    #[serde(default)]
    pub roles: Vec<RoleId>,
    /// When the member joined (origin_ts of the join).
    pub joined_ts: u64,
}

/// A user or server ban.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ban {
    /// Why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Who banned.
    pub by: UserId,
}

/// A live invite.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invite {
    /// The channel it lands in.
    pub channel_id: ChannelId,
    /// Who created it.
    pub creator: UserId,
    /// When it was created (origin_ts of the event).
    pub created_ts: u64,
    /// Lifetime in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age_secs: Option<u64>,
    /// Join limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_uses: Option<u64>,
    /// Joins so far.
    #[serde(default)]
    pub uses: u64,
}

impl Invite {
    /// Whether the invite still admits someone at `now_ms`.
    pub fn is_usable(&self, now_ms: u64) -> bool {
        let unexpired = self
            .max_age_secs
            .is_none_or(|age| now_ms < self.created_ts.saturating_add(age.saturating_mul(1000)));
        let has_room = self.max_uses.is_none_or(|max| self.uses < max);
        unexpired && has_room
    }
}

/// The longest nickname.
pub const MAX_NICK_CHARS: usize = 32;
/// The most channels a guild may have.
pub const MAX_CHANNELS: usize = 500;
/// The most roles a guild may have, @everyone included.
pub const MAX_ROLES: usize = 250;
/// The longest an invite may live: 7 days.
pub const MAX_INVITE_AGE_SECS: u64 = 7 * 24 * 3600;
/// The most uses an invite may allow.
pub const MAX_INVITE_USES: u64 = 100;
/// The most users one message may mention.
pub const MAX_MENTIONS: usize = 100;
/// The most overwrites a new channel may start with.
pub const MAX_OVERWRITES: usize = 100;
/// The most attachments one message may carry.
pub const MAX_ATTACHMENTS: usize = 10;

/// The most members (plus pending invitations) a DM guild may have.
pub const MAX_DM_MEMBERS: usize = 10;

/// The facts about an existing message that authorizing an action on it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageFacts {
    /// The author.
    pub author: UserId,
    /// The channel it is in.
    pub channel_id: ChannelId,
    /// Whether it was deleted.
    pub deleted: bool,
}

impl GuildState {
    /// The state right after `guild.create`: @everyone with default permissions and no channel.
    pub fn new(
        guild_id: GuildId,
        name: String,
        kind: GuildKind,
        owner: UserId,
        created_ts: u64,
    ) -> Self {
        let mut state = Self {
            guild_id,
            name,
            kind,
            owner: owner.clone(),
            description: None,
            icon: None,
            channels: BTreeMap::new(),
            roles: BTreeMap::new(),
            members: BTreeMap::new(),
            bans: BTreeMap::new(),
            server_bans: BTreeMap::new(),
            invites: BTreeMap::new(),
            dm_invites: BTreeMap::new(),
            deleted: false,
        };
        let everyone = Role {
            name: "@everyone".into(),
            permissions: match kind {
                GuildKind::Guild => Permissions::DEFAULT_GUILD,
                GuildKind::Dm => Permissions::DEFAULT_DM,
            },
            position: 0,
            color: 0,
            hoist: false,
            mentionable: false,
        };
        state.roles.insert(RoleId::everyone(), everyone);
        state
            .members
            .insert(owner, Member { nick: None, roles: Vec::new(), joined_ts: created_ts });
        state
    }

    /// Builds the state from a `guild.create` event.
    pub fn from_create(
        guild_id: GuildId,
        content: &crate::content::GuildCreate,
        created_ts: u64,
    ) -> Self {
        Self::new(guild_id, content.name.clone(), content.kind, content.owner.clone(), created_ts)
    }

    fn role_permissions(&self) -> Vec<RolePermissions> {
        self.roles
            .iter()
            .map(|(id, role)| RolePermissions {
                id: id.clone(),
                permissions: role.permissions,
                position: role.position,
            })
            .collect()
    }

    fn member_roles(&self, user: &UserId) -> Vec<RoleId> {
        self.members.get(user).map(|member| member.roles.clone()).unwrap_or_default()
    }

    /// The guild-wide permissions of a member (none for a non-member).
    pub fn base_permissions(&self, user: &UserId) -> Permissions {
        if !self.members.contains_key(user) {
            return Permissions::NONE;
        }
        let roles = self.role_permissions();
        let member_roles = self.member_roles(user);
        GuildContext { owner: &self.owner, roles: &roles }
            .base_permissions(&MemberContext { user_id: user, roles: &member_roles })
    }

    /// A member's permissions in a channel (none for a non-member or an unknown channel).
    pub fn channel_permissions(&self, user: &UserId, channel_id: &ChannelId) -> Permissions {
        let (Some(channel), true) =
            (self.channels.get(channel_id), self.members.contains_key(user))
        else {
            return Permissions::NONE;
        };
        let overwrites: Vec<Overwrite> =
            channel.overwrites.values().filter_map(to_overwrite).collect();
        let roles = self.role_permissions();
        let member_roles = self.member_roles(user);
        GuildContext { owner: &self.owner, roles: &roles }.channel_permissions(
            &MemberContext { user_id: user, roles: &member_roles },
            &overwrites,
        )
    }

    /// Whether `user` may see `channel_id`.
    pub fn can_view(&self, user: &UserId, channel_id: &ChannelId) -> bool {
        self.channel_permissions(user, channel_id).contains(Permissions::VIEW_CHANNEL)
    }

    /// The rank of a member in the role hierarchy.
    pub fn rank(&self, user: &UserId) -> i64 {
        let roles = self.role_permissions();
        let member_roles = self.member_roles(user);
        GuildContext { owner: &self.owner, roles: &roles }
            .rank(&MemberContext { user_id: user, roles: &member_roles })
    }

    fn outranks_member(&self, actor: &UserId, target: &UserId) -> bool {
        let roles = self.role_permissions();
        let (actor_roles, target_roles) = (self.member_roles(actor), self.member_roles(target));
        GuildContext { owner: &self.owner, roles: &roles }.outranks_member(
            &MemberContext { user_id: actor, roles: &actor_roles },
            &MemberContext { user_id: target, roles: &target_roles },
        )
    }

    fn outranks_position(&self, actor: &UserId, position: i64) -> bool {
        actor == &self.owner || self.rank(actor) > position
    }
}

/// The key of an overwrite in [`Channel::overwrites`].
pub fn overwrite_key(kind: OverwriteKind, target_id: &str) -> String {
    match kind {
        OverwriteKind::Role => format!("role:{target_id}"),
        OverwriteKind::Member => format!("member:{target_id}"),
    }
}

fn to_overwrite(overwrite: &ChannelOverwrite) -> Option<Overwrite> {
    let target = match overwrite.target_kind {
        OverwriteKind::Role => OverwriteTarget::Role(RoleId::parse(&overwrite.target_id).ok()?),
        OverwriteKind::Member => OverwriteTarget::Member(UserId::parse(&overwrite.target_id).ok()?),
    };
    Some(Overwrite { target, allow: overwrite.allow, deny: overwrite.deny })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::*;

    fn user(name: &str) -> UserId {
        UserId::parse(&format!("@{name}:h.example")).unwrap()
    }

    fn guild() -> GuildState {
        let mut state = GuildState::new(
            GuildId::parse("!g:h.example").unwrap(),
            "g".into(),
            GuildKind::Guild,
            user("owner"),
            0,
        );
        let owner = user("owner");
        let events = [
            EventContent::ChannelCreate(ChannelCreate {
                channel_id: ChannelId::parse("c1").unwrap(),
                name: "general".into(),
                kind: ChannelKind::Text,
                parent_id: None,
                position: 0,
                topic: None,
                overwrites: None,
            }),
            EventContent::RoleCreate(RoleCreate {
                role_id: RoleId::parse("mod").unwrap(),
                name: "mod".into(),
                permissions: Permissions::KICK_MEMBERS | Permissions::MANAGE_ROLES,
                position: 2,
                color: None,
                hoist: None,
                mentionable: None,
            }),
            EventContent::RoleCreate(RoleCreate {
                role_id: RoleId::parse("helper").unwrap(),
                name: "helper".into(),
                permissions: Permissions::NONE,
                position: 1,
                color: None,
                hoist: None,
                mentionable: None,
            }),
            EventContent::InviteCreate(InviteCreate {
                code: InviteCode::parse("inv").unwrap(),
                channel_id: ChannelId::parse("c1").unwrap(),
                max_age_secs: Some(60),
                max_uses: Some(2),
            }),
        ];
        for event in &events {
            state.authorize(&owner, event, 0, None).unwrap();
            state.apply(&owner, 0, event);
        }
        state
    }

    fn join(state: &mut GuildState, name: &str) {
        let event = EventContent::MemberJoin(MemberJoin {
            invite_code: Some(InviteCode::parse("inv").unwrap()),
            ..Default::default()
        });
        state.authorize(&user(name), &event, 1000, None).unwrap();
        state.apply(&user(name), 1000, &event);
    }

    fn give_role(state: &mut GuildState, name: &str, role: &str) {
        let event = EventContent::MemberUpdate(MemberUpdate {
            user_id: user(name),
            nick: None,
            roles: Some(vec![RoleId::parse(role).unwrap()]),
        });
        state.apply(&user("owner"), 0, &event);
    }

    fn kick(target: &str) -> EventContent {
        EventContent::MemberKick(MemberModeration { user_id: user(target), reason: None })
    }

    fn code(result: Result<(), AuthError>) -> Option<Rejection> {
        result.err().map(|error| error.rejection)
    }

    #[test]
    fn a_move_hands_the_membership_to_the_new_account() {
        let mut state = guild();
        join(&mut state, "a");
        give_role(&mut state, "a", "helper");
        let moved = |from: &str, to: &str| {
            let statement = serde_json::json!({"from": user(from), "to": user(to)});
            EventContent::MemberJoin(MemberJoin {
                invite_code: None,
                account_move: Some(crate::content::MoveProof {
                    statement: statement.as_object().cloned().unwrap(),
                    from_attestation: crate::event::JsonObject::new(),
                    to_attestation: crate::event::JsonObject::new(),
                }),
            })
        };
        let invalid = Some(Rejection::InvalidEvent);
        assert_eq!(code(state.authorize(&user("a2"), &moved("stranger", "a2"), 0, None)), invalid);
        assert_eq!(code(state.authorize(&user("a2"), &moved("a", "b"), 0, None)), invalid);
        assert_eq!(code(state.authorize(&user("owner"), &moved("a", "owner"), 0, None)), invalid);
        let event = moved("a", "a2");
        state.authorize(&user("a2"), &event, 0, None).unwrap();
        state.apply(&user("a2"), 5000, &event);
        assert!(!state.members.contains_key(&user("a")));
        let member = &state.members[&user("a2")];
        assert_eq!(
            (member.roles.clone(), member.joined_ts),
            (vec![RoleId::parse("helper").unwrap()], 1000)
        );
        // The owner moving takes the guild along.
        let event = moved("owner", "owner2");
        state.authorize(&user("owner2"), &event, 0, None).unwrap();
        state.apply(&user("owner2"), 6000, &event);
        assert_eq!(state.owner, user("owner2"));
    }

    #[test]
    fn invites_admit_until_used_up_or_expired() {
        let mut state = guild();
        join(&mut state, "a");
        join(&mut state, "b");
        let third = EventContent::MemberJoin(MemberJoin {
            invite_code: Some(InviteCode::parse("inv").unwrap()),
            ..Default::default()
        });
        assert_eq!(
            code(state.authorize(&user("c"), &third, 1000, None)),
            Some(Rejection::InvalidEvent)
        );
        let mut fresh = guild();
        assert_eq!(
            code(fresh.authorize(&user("c"), &third, 61_000, None)),
            Some(Rejection::InvalidEvent)
        );
        join(&mut fresh, "c");
        assert!(fresh.members.contains_key(&user("c")));
    }

    #[test]
    fn hierarchy_governs_kicks_and_role_grants() {
        let mut state = guild();
        join(&mut state, "moderator");
        join(&mut state, "peer");
        give_role(&mut state, "moderator", "mod");
        assert_eq!(code(state.authorize(&user("moderator"), &kick("peer"), 0, None)), None);
        give_role(&mut state, "peer", "mod");
        assert_eq!(
            code(state.authorize(&user("moderator"), &kick("peer"), 0, None)),
            Some(Rejection::MissingPermission)
        );
        assert_eq!(
            code(state.authorize(&user("moderator"), &kick("owner"), 0, None)),
            Some(Rejection::MissingPermission)
        );
        assert_eq!(
            code(state.authorize(&user("peer"), &kick("moderator"), 0, None)),
            Some(Rejection::MissingPermission)
        );
        // A moderator may hand out the lower role but not their own. (The invite is used up, so
        // the newcomer's join is applied without authorization.)
        let arrival =
            EventContent::MemberJoin(MemberJoin { invite_code: None, ..Default::default() });
        state.apply(&user("newcomer"), 1000, &arrival);
        let grant = |role: &str| {
            EventContent::MemberUpdate(MemberUpdate {
                user_id: user("newcomer"),
                nick: None,
                roles: Some(vec![RoleId::parse(role).unwrap()]),
            })
        };
        assert_eq!(
            code(state.authorize(&user("moderator"), &grant("mod"), 0, None)),
            Some(Rejection::MissingPermission)
        );
        assert_eq!(code(state.authorize(&user("moderator"), &grant("helper"), 0, None)), None);
        state.apply(&user("moderator"), 0, &grant("helper"));
        assert_eq!(state.members[&user("newcomer")].roles, [RoleId::parse("helper").unwrap()]);
    }

    #[test]
    fn private_channels_hide_messages() {
        let mut state = guild();
        join(&mut state, "a");
        let c1 = ChannelId::parse("c1").unwrap();
        assert!(state.can_view(&user("a"), &c1));
        let hide = EventContent::OverwriteSet(OverwriteSet {
            channel_id: c1.clone(),
            target_kind: OverwriteKind::Role,
            target_id: "everyone".into(),
            allow: Permissions::NONE,
            deny: Permissions::VIEW_CHANNEL,
        });
        state.authorize(&user("owner"), &hide, 0, None).unwrap();
        state.apply(&user("owner"), 0, &hide);
        assert!(!state.can_view(&user("a"), &c1));
        let send = EventContent::MessageCreate(MessageCreate {
            channel_id: c1,
            body: "x".into(),
            reply_to: None,
            mentions: None,
            attachments: None,
        });
        assert_eq!(
            code(state.authorize(&user("a"), &send, 0, None)),
            Some(Rejection::MissingPermission)
        );
        assert_eq!(
            code(state.authorize(&user("stranger"), &send, 0, None)),
            Some(Rejection::NotMember)
        );
    }

    #[test]
    fn bans_and_server_bans_remove_and_refuse() {
        let mut state = guild();
        join(&mut state, "a");
        let ban = EventContent::MemberBan(MemberModeration {
            user_id: user("a"),
            reason: Some("spam".into()),
        });
        state.authorize(&user("owner"), &ban, 0, None).unwrap();
        state.apply(&user("owner"), 0, &ban);
        assert!(!state.members.contains_key(&user("a")));
        let rejoin = EventContent::MemberJoin(MemberJoin {
            invite_code: Some(InviteCode::parse("inv").unwrap()),
            ..Default::default()
        });
        assert_eq!(code(state.authorize(&user("a"), &rejoin, 0, None)), Some(Rejection::Banned));
        let remote = UserId::parse("@x:evil.example").unwrap();
        let server_ban = EventContent::ServerBan(ServerBan {
            server: ServerName::parse("evil.example").unwrap(),
            reason: None,
        });
        state.apply(&user("owner"), 0, &server_ban);
        assert_eq!(code(state.authorize(&remote, &rejoin, 0, None)), Some(Rejection::ServerBanned));
    }

    #[test]
    fn direct_messages_admit_only_the_invited() {
        let owner = user("owner");
        let mut dm = GuildState::new(
            GuildId::parse("!d:h.example").unwrap(),
            "dm".into(),
            GuildKind::Dm,
            owner.clone(),
            0,
        );
        let steps = [
            EventContent::ChannelCreate(ChannelCreate {
                channel_id: ChannelId::parse("c").unwrap(),
                name: "dm".into(),
                kind: ChannelKind::Text,
                parent_id: None,
                position: 0,
                topic: None,
                overwrites: None,
            }),
            EventContent::DmInvite(MemberRef { user_id: user("friend") }),
        ];
        for step in &steps {
            dm.authorize(&owner, step, 0, None).unwrap();
            dm.apply(&owner, 0, step);
        }
        let join = EventContent::MemberJoin(MemberJoin { invite_code: None, ..Default::default() });
        assert_eq!(
            code(dm.authorize(&user("stranger"), &join, 0, None)),
            Some(Rejection::MissingPermission)
        );
        dm.authorize(&user("friend"), &join, 0, None).unwrap();
        dm.apply(&user("friend"), 0, &join);
        assert!(dm.members.contains_key(&user("friend")) && dm.dm_invites.is_empty());
        let role = EventContent::RoleCreate(RoleCreate {
            role_id: RoleId::parse("r").unwrap(),
            name: "r".into(),
            permissions: Permissions::NONE,
            position: 1,
            color: None,
            hoist: None,
            mentionable: None,
        });
        assert_eq!(code(dm.authorize(&owner, &role, 0, None)), Some(Rejection::InvalidEvent));
        let invite = EventContent::DmInvite(MemberRef { user_id: user("x") });
        assert_eq!(
            code(guild().authorize(&owner, &invite, 0, None)),
            Some(Rejection::InvalidEvent)
        );
    }

    #[test]
    fn snapshots_round_trip_as_json() {
        let state = guild();
        let json = serde_json::to_value(&state).unwrap();
        assert_eq!(serde_json::from_value::<GuildState>(json).unwrap(), state);
    }
}
