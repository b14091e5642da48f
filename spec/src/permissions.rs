//! Discord-compatible permission bits and their computation (spec chapter 09).
//!
//! Permissions travel as decimal strings (`"1024"`), as Discord sends them, so that bits beyond
//! 2^53 can be added later without breaking the canonical-JSON number rule.

use std::fmt;
use std::ops::{BitAnd, BitOr, BitOrAssign, Not};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::ids::{RoleId, UserId};

/// A set of permission bits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Permissions(u64);

macro_rules! permission_bits {
    ($($(#[$doc:meta])* $name:ident = $bit:literal;)*) => {
        impl Permissions {
            $($(#[$doc])* pub const $name: Self = Self(1 << $bit);)*

            /// Every bit this version defines.
            pub const ALL: Self = Self($(1 << $bit)|*);

            /// Names of the defined bits, for display and documentation.
            pub const NAMES: &'static [(&'static str, Permissions)] = &[$((stringify!($name), Self::$name)),*];
        }
    };
}

permission_bits! {
    /// Create invites.
    CREATE_INSTANT_INVITE = 0;
    /// Kick members of lower rank.
    KICK_MEMBERS = 1;
    /// Ban and unban members of lower rank, and ban whole servers.
    BAN_MEMBERS = 2;
    /// Every permission, everywhere; overwrites do not apply.
    ADMINISTRATOR = 3;
    /// Create, edit, reorder and delete channels.
    MANAGE_CHANNELS = 4;
    /// Edit the guild, revoke others' invites.
    MANAGE_GUILD = 5;
    /// Add new reactions.
    ADD_REACTIONS = 6;
    /// Read the audit log.
    VIEW_AUDIT_LOG = 7;
    /// Priority speaker in voice.
    PRIORITY_SPEAKER = 8;
    /// Stream video.
    STREAM = 9;
    /// See a channel and its messages.
    VIEW_CHANNEL = 10;
    /// Send messages.
    SEND_MESSAGES = 11;
    /// Send text-to-speech messages.
    SEND_TTS_MESSAGES = 12;
    /// Delete and pin others' messages.
    MANAGE_MESSAGES = 13;
    /// Links show embeds.
    EMBED_LINKS = 14;
    /// Upload files.
    ATTACH_FILES = 15;
    /// Read messages sent before joining or reconnecting.
    READ_MESSAGE_HISTORY = 16;
    /// Mention @everyone.
    MENTION_EVERYONE = 17;
    /// Use other guilds' emoji.
    USE_EXTERNAL_EMOJIS = 18;
    /// View guild insights.
    VIEW_GUILD_INSIGHTS = 19;
    /// Join voice channels.
    CONNECT = 20;
    /// Speak in voice channels.
    SPEAK = 21;
    /// Server-mute others in voice.
    MUTE_MEMBERS = 22;
    /// Server-deafen others in voice.
    DEAFEN_MEMBERS = 23;
    /// Move others between voice channels.
    MOVE_MEMBERS = 24;
    /// Use voice activity detection.
    USE_VAD = 25;
    /// Change one's own nickname.
    CHANGE_NICKNAME = 26;
    /// Change others' nicknames.
    MANAGE_NICKNAMES = 27;
    /// Manage roles below one's own and channel overwrites.
    MANAGE_ROLES = 28;
    /// Manage webhooks.
    MANAGE_WEBHOOKS = 29;
    /// Manage custom emoji and stickers.
    MANAGE_GUILD_EXPRESSIONS = 30;
    /// Use application commands.
    USE_APPLICATION_COMMANDS = 31;
    /// Request to speak in stage channels.
    REQUEST_TO_SPEAK = 32;
    /// Manage scheduled events.
    MANAGE_EVENTS = 33;
    /// Manage threads.
    MANAGE_THREADS = 34;
    /// Create public threads.
    CREATE_PUBLIC_THREADS = 35;
    /// Create private threads.
    CREATE_PRIVATE_THREADS = 36;
    /// Use other guilds' stickers.
    USE_EXTERNAL_STICKERS = 37;
    /// Send messages in threads.
    SEND_MESSAGES_IN_THREADS = 38;
    /// Use embedded activities.
    USE_EMBEDDED_ACTIVITIES = 39;
    /// Time members out.
    MODERATE_MEMBERS = 40;
}

impl Permissions {
    /// No permissions.
    pub const NONE: Self = Self(0);

    /// What @everyone gets in a new guild: see, talk, react, embed, attach, stream, use external
    /// emoji, invite, join voice and speak, change their nickname (spec chapter 09).
    pub const DEFAULT_GUILD: Self = Self(104_189_505);

    /// What @everyone gets in a new DM: the guild defaults without invites or external emoji,
    /// and without changing nicknames (spec chapter 09).
    pub const DEFAULT_DM: Self = Self(36_818_496);

    /// Bits that mean nothing without SEND_MESSAGES and are cleared with it.
    const NEEDS_SEND: Self = Self(
        Self::SEND_TTS_MESSAGES.0
            | Self::MENTION_EVERYONE.0
            | Self::EMBED_LINKS.0
            | Self::ATTACH_FILES.0,
    );

    /// The raw bits.
    pub const fn bits(self) -> u64 {
        self.0
    }

    /// Permissions from raw bits; unknown bits are kept, so that they round-trip.
    pub const fn from_bits(bits: u64) -> Self {
        Self(bits)
    }

    /// Whether every bit of `other` is set.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// Applies one overwrite: clear `deny`, then set `allow`.
    pub const fn overwrite(self, allow: Self, deny: Self) -> Self {
        Self((self.0 & !deny.0) | allow.0)
    }
}

impl BitOr for Permissions {
    type Output = Self;
    fn bitor(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }
}

impl BitOrAssign for Permissions {
    fn bitor_assign(&mut self, other: Self) {
        self.0 |= other.0;
    }
}

impl BitAnd for Permissions {
    type Output = Self;
    fn bitand(self, other: Self) -> Self {
        Self(self.0 & other.0)
    }
}

impl Not for Permissions {
    type Output = Self;
    fn not(self) -> Self {
        Self(!self.0)
    }
}

impl fmt::Debug for Permissions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = Self::NAMES
            .iter()
            .filter(|(_, bit)| self.contains(*bit))
            .map(|(name, _)| *name)
            .collect();
        write!(f, "Permissions({})", names.join(" | "))
    }
}

impl fmt::Display for Permissions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for Permissions {
    type Err = std::num::ParseIntError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        text.parse().map(Self)
    }
}

impl Serialize for Permissions {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Permissions {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        let is_decimal = !text.is_empty()
            && text.bytes().all(|b| b.is_ascii_digit())
            && (text.len() == 1 || !text.starts_with('0'));
        if !is_decimal {
            return Err(serde::de::Error::custom("permissions must be a decimal string"));
        }
        text.parse().map(Self).map_err(serde::de::Error::custom)
    }
}

/// A role as far as permissions are concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolePermissions {
    /// The role's id.
    pub id: RoleId,
    /// What the role grants.
    pub permissions: Permissions,
    /// Rank in the hierarchy; higher outranks lower. @everyone is 0.
    pub position: i64,
}

/// Whom a channel overwrite targets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum OverwriteTarget {
    /// Everyone with this role (`everyone` for @everyone).
    Role(RoleId),
    /// One member.
    Member(UserId),
}

/// A per-channel overwrite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overwrite {
    /// Whom it applies to.
    pub target: OverwriteTarget,
    /// Bits it grants.
    pub allow: Permissions,
    /// Bits it takes away.
    pub deny: Permissions,
}

/// The guild-level facts permission computation needs.
#[derive(Debug, Clone, Copy)]
pub struct GuildContext<'a> {
    /// The guild's owner, who has every permission.
    pub owner: &'a UserId,
    /// Every role, including @everyone (id `everyone`).
    pub roles: &'a [RolePermissions],
}

/// A member as far as permissions are concerned.
#[derive(Debug, Clone, Copy)]
pub struct MemberContext<'a> {
    /// The member's user id.
    pub user_id: &'a UserId,
    /// The roles the member has (@everyone is implied and may be omitted).
    pub roles: &'a [RoleId],
}

impl GuildContext<'_> {
    fn role(&self, id: &RoleId) -> Option<&RolePermissions> {
        self.roles.iter().find(|role| &role.id == id)
    }

    fn member_roles<'m>(
        &'m self,
        member: &'m MemberContext<'_>,
    ) -> impl Iterator<Item = &'m RolePermissions> {
        member.roles.iter().filter(|id| !id.is_everyone()).filter_map(|id| self.role(id))
    }

    /// The member's guild-wide permissions (Discord's "base permissions").
    pub fn base_permissions(&self, member: &MemberContext<'_>) -> Permissions {
        if member.user_id == self.owner {
            return Permissions::ALL;
        }
        let mut permissions =
            self.role(&RoleId::everyone()).map_or(Permissions::NONE, |role| role.permissions);
        for role in self.member_roles(member) {
            permissions |= role.permissions;
        }
        if permissions.contains(Permissions::ADMINISTRATOR) {
            Permissions::ALL
        } else {
            permissions
        }
    }

    /// The member's permissions in a channel with the given overwrites.
    pub fn channel_permissions(
        &self,
        member: &MemberContext<'_>,
        overwrites: &[Overwrite],
    ) -> Permissions {
        let base = self.base_permissions(member);
        if base == Permissions::ALL {
            return base;
        }
        let mut permissions = base;
        let everyone = OverwriteTarget::Role(RoleId::everyone());
        if let Some(overwrite) = overwrites.iter().find(|o| o.target == everyone) {
            permissions = permissions.overwrite(overwrite.allow, overwrite.deny);
        }
        let (mut allow, mut deny) = (Permissions::NONE, Permissions::NONE);
        for overwrite in overwrites {
            if let OverwriteTarget::Role(role) = &overwrite.target {
                // Overwrites for roles the guild no longer has never apply.
                let has_role = member.roles.contains(role) && self.role(role).is_some();
                if !role.is_everyone() && has_role {
                    allow |= overwrite.allow;
                    deny |= overwrite.deny;
                }
            }
        }
        permissions = permissions.overwrite(allow, deny);
        let own = OverwriteTarget::Member(member.user_id.clone());
        if let Some(overwrite) = overwrites.iter().find(|o| o.target == own) {
            permissions = permissions.overwrite(overwrite.allow, overwrite.deny);
        }
        if !permissions.contains(Permissions::VIEW_CHANNEL) {
            return Permissions::NONE;
        }
        if !permissions.contains(Permissions::SEND_MESSAGES) {
            permissions = permissions & !Permissions::NEEDS_SEND;
        }
        permissions
    }

    /// The member's rank: the highest position among their roles, 0 with none.
    pub fn rank(&self, member: &MemberContext<'_>) -> i64 {
        self.member_roles(member).map(|role| role.position).max().unwrap_or(0).max(0)
    }

    /// Whether `actor` may act on (kick, ban, edit) `target`: the owner on anyone, others only
    /// on non-owners other than themselves whom they strictly outrank. ADMINISTRATOR does not
    /// bypass the hierarchy. (Whether an action on oneself makes sense is the action's rule.)
    pub fn outranks_member(&self, actor: &MemberContext<'_>, target: &MemberContext<'_>) -> bool {
        if actor.user_id == self.owner {
            return true;
        }
        actor.user_id != target.user_id
            && target.user_id != self.owner
            && self.rank(actor) > self.rank(target)
    }

    /// Whether `actor` may edit, assign or delete a role at `position`.
    pub fn outranks_role(&self, actor: &MemberContext<'_>, position: i64) -> bool {
        actor.user_id == self.owner || self.rank(actor) > position
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_as_decimal_strings() {
        let permissions = Permissions::VIEW_CHANNEL | Permissions::SEND_MESSAGES;
        assert_eq!(serde_json::to_string(&permissions).unwrap(), r#""3072""#);
        assert_eq!(serde_json::from_str::<Permissions>(r#""3072""#).unwrap(), permissions);
        for invalid in [r#""""#, r#""01""#, r#""-1""#, "3072", r#""1e3""#] {
            assert!(serde_json::from_str::<Permissions>(invalid).is_err(), "{invalid}");
        }
    }

    #[test]
    fn defaults_are_the_documented_bits() {
        let guild = [0, 6, 9, 10, 11, 14, 15, 16, 18, 20, 21, 25, 26];
        assert_eq!(
            Permissions::DEFAULT_GUILD.bits(),
            guild.iter().map(|bit| 1u64 << bit).sum::<u64>()
        );
        let dm = [6, 9, 10, 11, 14, 15, 16, 20, 21, 25];
        assert_eq!(Permissions::DEFAULT_DM.bits(), dm.iter().map(|bit| 1u64 << bit).sum::<u64>());
    }

    #[test]
    fn all_is_the_41_defined_bits() {
        assert_eq!(Permissions::ALL.bits(), (1 << 41) - 1);
        assert_eq!(Permissions::NAMES.len(), 41);
    }
}
