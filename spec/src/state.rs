//! Guild state as a fold of the guild log, and the host's authorization rules (spec chapters 07,
//! 08 and 10).
//!
//! [`GuildState::authorize`] decides whether a sender may append an event at the head of the
//! log; [`GuildState::apply`] folds a sequenced event into the state. Both are pure, so the host
//! uses them to sequence, every replica uses `apply` to follow the log (and may re-run
//! `authorize` to audit its host), and a state snapshot is simply this struct serialized.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::api::submit_event::Rejection;
use crate::content::{
    ChannelCreate, ChannelKind, ChannelUpdate, EventContent, GuildKind, MAX_EMOJI_CHARS,
    MAX_MESSAGE_CHARS, MAX_NAME_CHARS, MAX_REASON_CHARS, MAX_TOPIC_CHARS, OverwriteKind,
    RoleCreate, RoleUpdate,
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

/// Why a proposal is refused, with a human-readable explanation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct AuthError {
    /// The stable rejection.
    pub rejection: Rejection,
    /// The explanation.
    pub message: String,
}

fn reject<T>(rejection: Rejection, message: impl Into<String>) -> Result<T, AuthError> {
    Err(AuthError { rejection, message: message.into() })
}

fn invalid<T>(message: impl Into<String>) -> Result<T, AuthError> {
    reject(Rejection::InvalidEvent, message)
}

/// Checks a human-facing string: not blank, at most `max` characters.
fn check_text(field: &str, text: &str, max: usize) -> Result<(), AuthError> {
    if text.trim().is_empty() {
        return invalid(format!("{field} must not be empty"));
    }
    if text.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return invalid(format!("{field} must not contain control characters"));
    }
    if text.chars().count() > max {
        return invalid(format!("{field} is longer than {max} characters"));
    }
    Ok(())
}

fn check_optional_text(field: &str, text: Option<&String>, max: usize) -> Result<(), AuthError> {
    text.map_or(Ok(()), |text| {
        if text.chars().count() > max {
            invalid(format!("{field} is longer than {max} characters"))
        } else {
            Ok(())
        }
    })
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

    fn require(&self, sender: &UserId, needed: Permissions) -> Result<(), AuthError> {
        if self.base_permissions(sender).contains(needed) {
            Ok(())
        } else {
            reject(Rejection::MissingPermission, format!("requires {needed:?}"))
        }
    }

    fn require_in(
        &self,
        sender: &UserId,
        channel_id: &ChannelId,
        needed: Permissions,
    ) -> Result<(), AuthError> {
        if !self.channels.contains_key(channel_id) {
            return invalid(format!("unknown channel {channel_id}"));
        }
        if self.channel_permissions(sender, channel_id).contains(needed) {
            Ok(())
        } else {
            reject(Rejection::MissingPermission, format!("requires {needed:?} in {channel_id}"))
        }
    }

    /// Decides whether `sender` may append `content` at the head of the log, at time `now_ms`.
    /// `message` describes the message the event acts on, for edits, deletes, reactions and pins.
    pub fn authorize(
        &self,
        sender: &UserId,
        content: &EventContent,
        now_ms: u64,
        message: Option<&MessageFacts>,
    ) -> Result<(), AuthError> {
        if self.deleted {
            return reject(Rejection::UnknownGuild, "the guild was deleted");
        }
        if self.server_bans.contains_key(&sender.server_name()) {
            return reject(
                Rejection::ServerBanned,
                format!("{} is banned from this guild", sender.server_name()),
            );
        }
        if self.bans.contains_key(sender) {
            return reject(Rejection::Banned, "you are banned from this guild");
        }
        if let EventContent::MemberJoin(join) = content {
            return self.authorize_join(sender, join.invite_code.as_ref(), now_ms);
        }
        if !self.members.contains_key(sender) {
            return reject(Rejection::NotMember, "not a member of this guild");
        }
        let allowed_in_kind = match self.kind {
            GuildKind::Dm => matches!(
                content,
                EventContent::GuildUpdate(_)
                    | EventContent::GuildDelete(_)
                    | EventContent::DmInvite(_)
                    | EventContent::ChannelCreate(_)
                    | EventContent::MemberLeave(_)
                    | EventContent::MemberKick(_)
                    | EventContent::MessageCreate(_)
                    | EventContent::MessageEdit(_)
                    | EventContent::MessageDelete(_)
                    | EventContent::ReactionAdd(_)
                    | EventContent::ReactionRemove(_)
                    | EventContent::PinAdd(_)
                    | EventContent::PinRemove(_)
            ),
            GuildKind::Guild => !matches!(content, EventContent::DmInvite(_)),
        };
        if !allowed_in_kind {
            return invalid(format!(
                "{} is not allowed in this kind of guild",
                content.event_type()
            ));
        }
        match content {
            EventContent::GuildCreate(_) => invalid("guild.create is only valid at seq 1"),
            EventContent::GuildUpdate(update) => {
                self.require(sender, Permissions::MANAGE_GUILD)?;
                if let Some(name) = &update.name {
                    check_text("name", name, MAX_NAME_CHARS)?;
                }
                check_optional_text("description", update.description.as_ref(), MAX_TOPIC_CHARS)
            }
            EventContent::GuildDelete(_) => {
                if sender == &self.owner {
                    Ok(())
                } else {
                    reject(Rejection::MissingPermission, "only the owner can delete the guild")
                }
            }
            EventContent::DmInvite(invite) => {
                if sender != &self.owner {
                    return reject(
                        Rejection::MissingPermission,
                        "only the conversation's creator can invite",
                    );
                }
                if self.members.contains_key(&invite.user_id)
                    || self.dm_invites.contains_key(&invite.user_id)
                {
                    return invalid("already a member or invited");
                }
                if self.members.len() + self.dm_invites.len() >= MAX_DM_MEMBERS {
                    return invalid(format!(
                        "a direct message has at most {MAX_DM_MEMBERS} members"
                    ));
                }
                Ok(())
            }
            EventContent::ServerBan(ban) => {
                self.require(sender, Permissions::BAN_MEMBERS)?;
                if ban.server == self.guild_id.host() || ban.server == self.owner.server_name() {
                    return invalid("neither the host nor the owner's server can be banned");
                }
                for member in
                    self.members.keys().filter(|member| member.server_name() == ban.server)
                {
                    self.require_outranks_member(sender, member)?;
                }
                check_optional_text("reason", ban.reason.as_ref(), MAX_REASON_CHARS)
            }
            EventContent::ServerUnban(unban) => {
                self.require(sender, Permissions::BAN_MEMBERS)?;
                if self.server_bans.contains_key(&unban.server) {
                    Ok(())
                } else {
                    invalid("server is not banned")
                }
            }
            EventContent::ChannelCreate(create) => {
                self.require(sender, Permissions::MANAGE_CHANNELS)?;
                self.check_channel_create(create)
            }
            EventContent::ChannelUpdate(update) => {
                self.require(sender, Permissions::MANAGE_CHANNELS)?;
                self.check_channel_update(update)
            }
            EventContent::ChannelDelete(channel) => {
                self.require(sender, Permissions::MANAGE_CHANNELS)?;
                if self.channels.contains_key(&channel.channel_id) {
                    Ok(())
                } else {
                    invalid("unknown channel")
                }
            }
            EventContent::OverwriteSet(set) => {
                self.require(sender, Permissions::MANAGE_ROLES)?;
                if !self.channels.contains_key(&set.channel_id) {
                    return invalid("unknown channel");
                }
                self.check_overwrite_target(set.target_kind, &set.target_id)?;
                // Nobody may grant or deny through an overwrite bits they do not hold themselves.
                let own = self.base_permissions(sender);
                if !own.contains(set.allow) || !own.contains(set.deny) {
                    return reject(
                        Rejection::MissingPermission,
                        "an overwrite may only use permissions you have",
                    );
                }
                Ok(())
            }
            EventContent::OverwriteDelete(delete) => {
                self.require(sender, Permissions::MANAGE_ROLES)?;
                let key = overwrite_key(delete.target_kind, &delete.target_id);
                match self.channels.get(&delete.channel_id) {
                    Some(channel) if channel.overwrites.contains_key(&key) => Ok(()),
                    Some(_) => invalid("no such overwrite"),
                    None => invalid("unknown channel"),
                }
            }
            EventContent::RoleCreate(create) => {
                self.require(sender, Permissions::MANAGE_ROLES)?;
                self.check_role_create(sender, create)
            }
            EventContent::RoleUpdate(update) => {
                self.require(sender, Permissions::MANAGE_ROLES)?;
                self.check_role_update(sender, update)
            }
            EventContent::RoleDelete(role) => {
                self.require(sender, Permissions::MANAGE_ROLES)?;
                let Some(existing) = self.roles.get(&role.role_id) else {
                    return invalid("unknown role");
                };
                if role.role_id.is_everyone() {
                    return invalid("@everyone cannot be deleted");
                }
                self.require_outranks_role(sender, existing.position)
            }
            EventContent::MemberJoin(_) => Ok(()),
            EventContent::MemberLeave(_) => {
                if sender == &self.owner {
                    invalid("the owner cannot leave; transfer or delete the guild")
                } else {
                    Ok(())
                }
            }
            EventContent::MemberUpdate(update) => self.authorize_member_update(sender, update),
            EventContent::MemberKick(kick) => {
                self.require(sender, Permissions::KICK_MEMBERS)?;
                check_optional_text("reason", kick.reason.as_ref(), MAX_REASON_CHARS)?;
                if !self.members.contains_key(&kick.user_id) {
                    return invalid("not a member");
                }
                self.require_outranks_member(sender, &kick.user_id)
            }
            EventContent::MemberBan(ban) => {
                self.require(sender, Permissions::BAN_MEMBERS)?;
                check_optional_text("reason", ban.reason.as_ref(), MAX_REASON_CHARS)?;
                if self.bans.contains_key(&ban.user_id) {
                    return invalid("already banned");
                }
                if ban.user_id == self.owner {
                    return reject(Rejection::MissingPermission, "the owner cannot be banned");
                }
                if self.members.contains_key(&ban.user_id) || ban.user_id == self.owner {
                    self.require_outranks_member(sender, &ban.user_id)?;
                }
                Ok(())
            }
            EventContent::MemberUnban(unban) => {
                self.require(sender, Permissions::BAN_MEMBERS)?;
                if self.bans.contains_key(&unban.user_id) { Ok(()) } else { invalid("not banned") }
            }
            EventContent::InviteCreate(invite) => {
                self.require_in(sender, &invite.channel_id, Permissions::CREATE_INSTANT_INVITE)?;
                if invite.max_age_secs.is_some_and(|age| age == 0 || age > MAX_INVITE_AGE_SECS) {
                    return invalid(format!("max_age_secs must be 1 to {MAX_INVITE_AGE_SECS}"));
                }
                if invite.max_uses.is_some_and(|uses| uses == 0 || uses > MAX_INVITE_USES) {
                    return invalid(format!("max_uses must be 1 to {MAX_INVITE_USES}"));
                }
                if self
                    .channels
                    .get(&invite.channel_id)
                    .is_some_and(|c| c.kind == ChannelKind::Category)
                {
                    return invalid("invites lead to text or voice channels");
                }
                if self.invites.contains_key(&invite.code) {
                    invalid("invite code already in use")
                } else {
                    Ok(())
                }
            }
            EventContent::InviteRevoke(revoke) => {
                let Some(invite) = self.invites.get(&revoke.code) else {
                    return invalid("unknown invite");
                };
                if &invite.creator == sender {
                    Ok(())
                } else {
                    self.require(sender, Permissions::MANAGE_GUILD)
                }
            }
            EventContent::MessageCreate(create) => {
                self.require_in(
                    sender,
                    &create.channel_id,
                    Permissions::VIEW_CHANNEL | Permissions::SEND_MESSAGES,
                )?;
                if self
                    .channels
                    .get(&create.channel_id)
                    .is_some_and(|c| c.kind != ChannelKind::Text)
                {
                    return invalid("messages can only be sent in text channels");
                }
                check_text("body", &create.body, MAX_MESSAGE_CHARS)
            }
            EventContent::MessageEdit(edit) => {
                let message = live_message(message, &edit.channel_id)?;
                if &message.author != sender {
                    return reject(
                        Rejection::MissingPermission,
                        "only the author can edit a message",
                    );
                }
                self.require_in(sender, &edit.channel_id, Permissions::VIEW_CHANNEL)?;
                check_text("body", &edit.body, MAX_MESSAGE_CHARS)
            }
            EventContent::MessageDelete(delete) => {
                let message = live_message(message, &delete.channel_id)?;
                if &message.author == sender {
                    Ok(())
                } else {
                    self.require_in(
                        sender,
                        &delete.channel_id,
                        Permissions::VIEW_CHANNEL | Permissions::MANAGE_MESSAGES,
                    )
                }
            }
            EventContent::ReactionAdd(reaction) => {
                live_message(message, &reaction.channel_id)?;
                check_text("emoji", &reaction.emoji, MAX_EMOJI_CHARS)?;
                self.require_in(
                    sender,
                    &reaction.channel_id,
                    Permissions::VIEW_CHANNEL
                        | Permissions::READ_MESSAGE_HISTORY
                        | Permissions::ADD_REACTIONS,
                )
            }
            EventContent::ReactionRemove(reaction) => {
                live_message(message, &reaction.channel_id)?;
                self.require_in(sender, &reaction.channel_id, Permissions::VIEW_CHANNEL)
            }
            EventContent::PinAdd(pin) | EventContent::PinRemove(pin) => {
                live_message(message, &pin.channel_id)?;
                self.require_in(
                    sender,
                    &pin.channel_id,
                    Permissions::VIEW_CHANNEL | Permissions::MANAGE_MESSAGES,
                )
            }
        }
    }

    fn authorize_join(
        &self,
        sender: &UserId,
        code: Option<&InviteCode>,
        now_ms: u64,
    ) -> Result<(), AuthError> {
        if self.members.contains_key(sender) {
            return invalid("already a member");
        }
        if self.kind == GuildKind::Dm {
            if code.is_some() {
                return invalid("direct messages have no invites");
            }
            return if self.dm_invites.contains_key(sender) {
                Ok(())
            } else {
                reject(
                    Rejection::MissingPermission,
                    "direct messages are joined by invitation only",
                )
            };
        }
        let Some(code) = code else { return invalid("an invite code is required") };
        match self.invites.get(code) {
            Some(invite) if invite.is_usable(now_ms) => Ok(()),
            Some(_) => invalid("the invite has expired or is used up"),
            None => invalid("unknown invite"),
        }
    }

    fn authorize_member_update(
        &self,
        sender: &UserId,
        update: &crate::content::MemberUpdate,
    ) -> Result<(), AuthError> {
        let Some(target) = self.members.get(&update.user_id) else {
            return invalid("not a member");
        };
        if let Some(nick) = &update.nick {
            if let Some(nick) = nick {
                check_text("nick", nick, MAX_NICK_CHARS)?;
            }
            if sender == &update.user_id {
                self.require(sender, Permissions::CHANGE_NICKNAME)?;
            } else {
                self.require(sender, Permissions::MANAGE_NICKNAMES)?;
                self.require_outranks_member(sender, &update.user_id)?;
            }
        }
        if let Some(roles) = &update.roles {
            self.require(sender, Permissions::MANAGE_ROLES)?;
            if sender != &update.user_id {
                self.require_outranks_member(sender, &update.user_id)?;
            }
            // Every role added or removed must rank below the actor.
            let mut changed: Vec<&RoleId> =
                roles.iter().filter(|r| !target.roles.contains(r)).collect();
            changed.extend(target.roles.iter().filter(|r| !roles.contains(r)));
            for role_id in changed {
                let Some(role) = self.roles.get(role_id) else {
                    return invalid(format!("unknown role {role_id}"));
                };
                if role_id.is_everyone() {
                    return invalid("@everyone cannot be assigned");
                }
                self.require_outranks_role(sender, role.position)?;
            }
        }
        Ok(())
    }

    fn require_outranks_member(&self, actor: &UserId, target: &UserId) -> Result<(), AuthError> {
        if self.outranks_member(actor, target) {
            Ok(())
        } else {
            reject(Rejection::MissingPermission, "the target's highest role is not below yours")
        }
    }

    fn require_outranks_role(&self, actor: &UserId, position: i64) -> Result<(), AuthError> {
        if self.outranks_position(actor, position) {
            Ok(())
        } else {
            reject(Rejection::MissingPermission, "the role is not below your highest role")
        }
    }

    fn check_channel_create(&self, create: &ChannelCreate) -> Result<(), AuthError> {
        check_text("name", &create.name, MAX_NAME_CHARS)?;
        if self.channels.len() >= MAX_CHANNELS {
            return invalid(format!("a guild has at most {MAX_CHANNELS} channels"));
        }
        check_optional_text("topic", create.topic.as_ref(), MAX_TOPIC_CHARS)?;
        if self.channels.contains_key(&create.channel_id) {
            return invalid("channel id already in use");
        }
        self.check_parent(create.kind, create.parent_id.as_ref())
    }

    fn check_channel_update(&self, update: &ChannelUpdate) -> Result<(), AuthError> {
        let Some(channel) = self.channels.get(&update.channel_id) else {
            return invalid("unknown channel");
        };
        if let Some(name) = &update.name {
            check_text("name", name, MAX_NAME_CHARS)?;
        }
        check_optional_text("topic", update.topic.as_ref(), MAX_TOPIC_CHARS)?;
        if update.parent_id.as_ref() == Some(&update.channel_id) {
            return invalid("a channel cannot be its own parent");
        }
        self.check_parent(channel.kind, update.parent_id.as_ref())
    }

    fn check_parent(&self, kind: ChannelKind, parent: Option<&ChannelId>) -> Result<(), AuthError> {
        let Some(parent) = parent else { return Ok(()) };
        if kind == ChannelKind::Category {
            return invalid("categories cannot be nested");
        }
        match self.channels.get(parent) {
            Some(channel) if channel.kind == ChannelKind::Category => Ok(()),
            Some(_) => invalid("parent is not a category"),
            None => invalid("unknown parent channel"),
        }
    }

    fn check_overwrite_target(&self, kind: OverwriteKind, target: &str) -> Result<(), AuthError> {
        let known = match kind {
            OverwriteKind::Role => {
                RoleId::parse(target).is_ok_and(|id| self.roles.contains_key(&id))
            }
            OverwriteKind::Member => {
                UserId::parse(target).is_ok_and(|id| self.members.contains_key(&id))
            }
        };
        if known { Ok(()) } else { invalid("unknown overwrite target") }
    }

    fn check_role_create(&self, sender: &UserId, create: &RoleCreate) -> Result<(), AuthError> {
        check_text("name", &create.name, MAX_NAME_CHARS)?;
        if self.roles.len() >= MAX_ROLES {
            return invalid(format!("a guild has at most {MAX_ROLES} roles"));
        }
        if self.roles.contains_key(&create.role_id) {
            return invalid("role id already in use");
        }
        if create.position < 1 {
            return invalid("role positions start at 1 (@everyone is 0)");
        }
        self.require_outranks_role(sender, create.position)?;
        self.check_grants(sender, create.permissions)
    }

    fn check_role_update(&self, sender: &UserId, update: &RoleUpdate) -> Result<(), AuthError> {
        let Some(role) = self.roles.get(&update.role_id) else { return invalid("unknown role") };
        if let Some(name) = &update.name {
            check_text("name", name, MAX_NAME_CHARS)?;
        }
        if !update.role_id.is_everyone() {
            self.require_outranks_role(sender, role.position)?;
        } else if update.position.is_some_and(|p| p != 0) {
            return invalid("@everyone stays at position 0");
        }
        if let Some(position) = update.position {
            if !update.role_id.is_everyone() && position < 1 {
                return invalid("role positions start at 1 (@everyone is 0)");
            }
            self.require_outranks_role(sender, position)?;
        }
        match update.permissions {
            Some(permissions) => self.check_grants(sender, permissions),
            None => Ok(()),
        }
    }

    /// Nobody may give a role permissions they do not hold themselves.
    fn check_grants(&self, sender: &UserId, permissions: Permissions) -> Result<(), AuthError> {
        if self.base_permissions(sender).contains(permissions) {
            Ok(())
        } else {
            reject(Rejection::MissingPermission, "a role may only grant permissions you have")
        }
    }

    /// Folds a sequenced event into the state. The event must have been authorized (by the host)
    /// and verified (by a replica); applying is then infallible.
    pub fn apply(&mut self, sender: &UserId, origin_ts: u64, content: &EventContent) {
        match content {
            EventContent::GuildCreate(_) => {}
            EventContent::GuildDelete(_) => self.deleted = true,
            EventContent::DmInvite(invite) => {
                self.dm_invites.insert(invite.user_id.clone(), sender.clone());
            }
            EventContent::GuildUpdate(update) => {
                if let Some(name) = &update.name {
                    self.name.clone_from(name);
                }
                if let Some(description) = &update.description {
                    self.description = Some(description.clone());
                }
                if let Some(icon) = &update.icon {
                    self.icon = Some(icon.clone());
                }
            }
            EventContent::ServerBan(ban) => {
                self.server_bans.insert(
                    ban.server.clone(),
                    Ban { reason: ban.reason.clone(), by: sender.clone() },
                );
                self.members.retain(|user, _| user.server_name() != ban.server);
            }
            EventContent::ServerUnban(unban) => {
                self.server_bans.remove(&unban.server);
            }
            EventContent::ChannelCreate(create) => {
                let channel = Channel {
                    name: create.name.clone(),
                    kind: create.kind,
                    parent_id: create.parent_id.clone(),
                    position: create.position,
                    topic: create.topic.clone(),
                    overwrites: BTreeMap::new(),
                };
                self.channels.insert(create.channel_id.clone(), channel);
            }
            EventContent::ChannelUpdate(update) => {
                if let Some(channel) = self.channels.get_mut(&update.channel_id) {
                    if let Some(name) = &update.name {
                        channel.name.clone_from(name);
                    }
                    if let Some(topic) = &update.topic {
                        channel.topic = Some(topic.clone());
                    }
                    if let Some(position) = update.position {
                        channel.position = position;
                    }
                    if let Some(parent) = &update.parent_id {
                        channel.parent_id = Some(parent.clone());
                    }
                }
            }
            EventContent::ChannelDelete(delete) => {
                self.channels.remove(&delete.channel_id);
                for channel in self.channels.values_mut() {
                    if channel.parent_id.as_ref() == Some(&delete.channel_id) {
                        channel.parent_id = None;
                    }
                }
                self.invites.retain(|_, invite| invite.channel_id != delete.channel_id);
            }
            EventContent::OverwriteSet(set) => {
                if let Some(channel) = self.channels.get_mut(&set.channel_id) {
                    let overwrite = ChannelOverwrite {
                        target_kind: set.target_kind,
                        target_id: set.target_id.clone(),
                        allow: set.allow,
                        deny: set.deny,
                    };
                    channel
                        .overwrites
                        .insert(overwrite_key(set.target_kind, &set.target_id), overwrite);
                }
            }
            EventContent::OverwriteDelete(delete) => {
                if let Some(channel) = self.channels.get_mut(&delete.channel_id) {
                    channel
                        .overwrites
                        .remove(&overwrite_key(delete.target_kind, &delete.target_id));
                }
            }
            EventContent::RoleCreate(create) => {
                let role = Role {
                    name: create.name.clone(),
                    permissions: create.permissions,
                    position: create.position,
                    color: create.color.unwrap_or(0),
                    hoist: create.hoist.unwrap_or(false),
                    mentionable: create.mentionable.unwrap_or(false),
                };
                self.roles.insert(create.role_id.clone(), role);
            }
            EventContent::RoleUpdate(update) => {
                if let Some(role) = self.roles.get_mut(&update.role_id) {
                    if let Some(name) = &update.name {
                        role.name.clone_from(name);
                    }
                    if let Some(permissions) = update.permissions {
                        role.permissions = permissions;
                    }
                    if let Some(position) = update.position {
                        role.position = position;
                    }
                    if let Some(color) = update.color {
                        role.color = color;
                    }
                    if let Some(hoist) = update.hoist {
                        role.hoist = hoist;
                    }
                    if let Some(mentionable) = update.mentionable {
                        role.mentionable = mentionable;
                    }
                }
            }
            EventContent::RoleDelete(delete) => {
                self.roles.remove(&delete.role_id);
                for member in self.members.values_mut() {
                    member.roles.retain(|role| role != &delete.role_id);
                }
                let key = overwrite_key(OverwriteKind::Role, delete.role_id.as_str());
                for channel in self.channels.values_mut() {
                    channel.overwrites.remove(&key);
                }
            }
            EventContent::MemberJoin(join) => {
                self.dm_invites.remove(sender);
                if let Some(invite) =
                    join.invite_code.as_ref().and_then(|code| self.invites.get_mut(code))
                {
                    invite.uses += 1;
                }
                self.members.insert(
                    sender.clone(),
                    Member { nick: None, roles: Vec::new(), joined_ts: origin_ts },
                );
            }
            EventContent::MemberLeave(_) => self.remove_member(sender),
            EventContent::MemberUpdate(update) => {
                if let Some(member) = self.members.get_mut(&update.user_id) {
                    if let Some(nick) = &update.nick {
                        member.nick.clone_from(nick);
                    }
                    if let Some(roles) = &update.roles {
                        member.roles.clone_from(roles);
                        member.roles.sort();
                        member.roles.dedup();
                    }
                }
            }
            EventContent::MemberKick(kick) => self.remove_member(&kick.user_id),
            EventContent::MemberBan(ban) => {
                self.remove_member(&ban.user_id);
                self.bans.insert(
                    ban.user_id.clone(),
                    Ban { reason: ban.reason.clone(), by: sender.clone() },
                );
            }
            EventContent::MemberUnban(unban) => {
                self.bans.remove(&unban.user_id);
            }
            EventContent::InviteCreate(create) => {
                let invite = Invite {
                    channel_id: create.channel_id.clone(),
                    creator: sender.clone(),
                    created_ts: origin_ts,
                    max_age_secs: create.max_age_secs,
                    max_uses: create.max_uses,
                    uses: 0,
                };
                self.invites.insert(create.code.clone(), invite);
            }
            EventContent::InviteRevoke(revoke) => {
                self.invites.remove(&revoke.code);
            }
            EventContent::MessageCreate(_)
            | EventContent::MessageEdit(_)
            | EventContent::MessageDelete(_)
            | EventContent::ReactionAdd(_)
            | EventContent::ReactionRemove(_)
            | EventContent::PinAdd(_)
            | EventContent::PinRemove(_) => {}
        }
    }

    fn remove_member(&mut self, user: &UserId) {
        self.members.remove(user);
        let key = overwrite_key(OverwriteKind::Member, user.as_str());
        for channel in self.channels.values_mut() {
            channel.overwrites.remove(&key);
        }
    }

    /// The servers with at least one member: the destinations of the guild's events.
    pub fn member_servers(&self) -> std::collections::BTreeSet<ServerName> {
        self.members.keys().map(UserId::server_name).collect()
    }
}

fn live_message<'a>(
    message: Option<&'a MessageFacts>,
    channel_id: &ChannelId,
) -> Result<&'a MessageFacts, AuthError> {
    match message {
        Some(message) if message.deleted => invalid("the message was deleted"),
        Some(message) if &message.channel_id == channel_id => Ok(message),
        _ => invalid("unknown message"),
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
    fn invites_admit_until_used_up_or_expired() {
        let mut state = guild();
        join(&mut state, "a");
        join(&mut state, "b");
        let third = EventContent::MemberJoin(MemberJoin {
            invite_code: Some(InviteCode::parse("inv").unwrap()),
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
        // A moderator may hand out the lower role but not their own.
        let helper = EventContent::MemberUpdate(MemberUpdate {
            user_id: user("owner"),
            nick: None,
            roles: None,
        });
        assert_eq!(code(state.authorize(&user("moderator"), &helper, 0, None)), None);
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
            }),
            EventContent::DmInvite(MemberRef { user_id: user("friend") }),
        ];
        for step in &steps {
            dm.authorize(&owner, step, 0, None).unwrap();
            dm.apply(&owner, 0, step);
        }
        let join = EventContent::MemberJoin(MemberJoin { invite_code: None });
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
