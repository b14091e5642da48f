//! Snowflakes: the 64-bit numeric ids Discord libraries parse every id as.
//!
//! Guildhall's ids are strings (`@alice:example.org`, a guild id naming its host, event ids that
//! are hashes). Each object a server shows through the compatibility layer gets a snowflake of
//! its own the first time it is shown, kept in the `snowflakes` table so it never changes, and
//! resolved back on the way in. Like Discord's, a snowflake is time-ordered: milliseconds since
//! 2015-01-01 in the top 42 bits (the message's own time for messages, the first showing for
//! everything else), 22 random bits below. A candidate another object already holds is
//! replaced by a fresh one.
//!
//! Channels, roles and messages are keyed by their guild as well (the spec scopes them to it),
//! so a host choosing ids that collide with another guild's cannot make them alias. The
//! @everyone role has its guild's snowflake, as on Discord.

use guildhall_spec::{ChannelId, EventId, GuildId, RoleId, UserId};

use crate::error::{ApiError, ApiResult};
use crate::store::{SnowflakeTarget, Store, now_ms};

/// Discord's epoch, 2015-01-01T00:00:00Z, in Unix milliseconds.
pub const DISCORD_EPOCH_MS: u64 = 1_420_070_400_000;

/// Attempts at a free snowflake before giving up (22 random bits make a second one rare).
const ATTEMPTS: usize = 8;

/// Entries each cache direction keeps.
const CACHED: u64 = 200_000;

/// What a snowflake names, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A user.
    User(UserId),
    /// A guild (also its @everyone role).
    Guild(GuildId),
    /// A channel of a guild.
    Channel(GuildId, ChannelId),
    /// A role of a guild.
    Role(GuildId, RoleId),
    /// A message of a guild.
    Message(GuildId, EventId),
}

impl Target {
    fn row(&self) -> SnowflakeTarget {
        let (kind, guild_id, object_id) = match self {
            Self::User(user) => ("user", String::new(), user.to_string()),
            Self::Guild(guild) => ("guild", String::new(), guild.to_string()),
            Self::Channel(guild, channel) => ("channel", guild.to_string(), channel.to_string()),
            Self::Role(guild, role) => ("role", guild.to_string(), role.to_string()),
            Self::Message(guild, message) => ("message", guild.to_string(), message.to_string()),
        };
        SnowflakeTarget { kind: kind.to_owned(), guild_id, object_id }
    }

    fn from_row(row: &SnowflakeTarget) -> Option<Self> {
        let guild = || GuildId::parse(&row.guild_id).ok();
        Some(match row.kind.as_str() {
            "user" => Self::User(UserId::parse(&row.object_id).ok()?),
            "guild" => Self::Guild(GuildId::parse(&row.object_id).ok()?),
            "channel" => Self::Channel(guild()?, ChannelId::parse(&row.object_id).ok()?),
            "role" => Self::Role(guild()?, RoleId::parse(&row.object_id).ok()?),
            "message" => Self::Message(guild()?, EventId::parse(&row.object_id).ok()?),
            _ => return None,
        })
    }
}

/// How long a user's rendered profile is reused (a rename shows within this).
const PROFILE_TTL: std::time::Duration = std::time::Duration::from_secs(10);

/// What a user object shows besides ids: display name, avatar, whether a bot.
#[derive(Debug, Clone)]
pub struct Profile {
    /// The display name.
    pub display_name: Option<String>,
    /// The avatar's media id.
    pub avatar: Option<String>,
    /// Whether the user is a bot of this server.
    pub bot: bool,
}

/// Assigns and resolves snowflakes, with a cache in front of the table; and caches the local
/// profiles the layer renders into every user object.
#[derive(Debug)]
pub struct Snowflakes {
    store: Store,
    ids: moka::sync::Cache<SnowflakeTarget, u64>,
    targets: moka::sync::Cache<u64, Target>,
    profiles: moka::sync::Cache<UserId, Profile>,
}

impl Snowflakes {
    /// Snowflakes kept in `store`.
    pub fn new(store: Store) -> Self {
        Self {
            store,
            ids: moka::sync::Cache::new(CACHED),
            targets: moka::sync::Cache::new(CACHED),
            profiles: moka::sync::Cache::builder()
                .max_capacity(CACHED)
                .time_to_live(PROFILE_TTL)
                .build(),
        }
    }

    /// A local user's profile as user objects show it (unknown users have an empty one).
    pub async fn profile(&self, user: &UserId) -> ApiResult<Profile> {
        if let Some(profile) = self.profiles.get(user) {
            return Ok(profile);
        }
        let row = self.store.user(user).await?;
        let bot = row.is_some() && self.store.application_of_bot(user).await?.is_some();
        let profile = match row {
            Some(row) => Profile { display_name: row.display_name, avatar: row.avatar, bot },
            None => Profile { display_name: None, avatar: None, bot: false },
        };
        self.profiles.insert(user.clone(), profile.clone());
        Ok(profile)
    }

    /// The snowflake of `target`, assigned now if it has none; `at_ms` is the time a new one
    /// carries (a message's own time; now for everything else).
    pub async fn of(&self, target: &Target, at_ms: Option<u64>) -> ApiResult<u64> {
        let target = match target {
            // @everyone is its guild.
            Target::Role(guild, role) if role.is_everyone() => Target::Guild(guild.clone()),
            other => other.clone(),
        };
        let row = target.row();
        if let Some(id) = self.ids.get(&row) {
            return Ok(id);
        }
        let at = at_ms.unwrap_or_else(now_ms).max(DISCORD_EPOCH_MS) - DISCORD_EPOCH_MS;
        for _ in 0..ATTEMPTS {
            let candidate = ((at & ((1 << 41) - 1)) << 22) | (rand::random::<u64>() & 0x3f_ffff);
            if candidate == 0 {
                continue;
            }
            if let Some(id) = self.store.assign_snowflake(&row, candidate).await? {
                self.ids.insert(row, id);
                self.targets.insert(id, target);
                return Ok(id);
            }
        }
        Err(ApiError::internal("no free snowflake found"))
    }

    /// Gives `target` the snowflake `snowflake` if it has none yet and the snowflake is free;
    /// returns the one it has.
    pub async fn claim(&self, target: &Target, snowflake: u64) -> ApiResult<u64> {
        let row = target.row();
        if let Some(id) = self.store.assign_snowflake(&row, snowflake).await? {
            self.ids.insert(row, id);
            self.targets.insert(id, target.clone());
            return Ok(id);
        }
        self.of(target, None).await
    }

    /// The snowflake of a user.
    pub async fn user(&self, user: &UserId) -> ApiResult<u64> {
        self.of(&Target::User(user.clone()), None).await
    }

    /// The snowflake of a guild.
    pub async fn guild(&self, guild: &GuildId) -> ApiResult<u64> {
        self.of(&Target::Guild(guild.clone()), None).await
    }

    /// The snowflake of a channel.
    pub async fn channel(&self, guild: &GuildId, channel: &ChannelId) -> ApiResult<u64> {
        self.of(&Target::Channel(guild.clone(), channel.clone()), None).await
    }

    /// The snowflake of a role (@everyone: the guild's).
    pub async fn role(&self, guild: &GuildId, role: &RoleId) -> ApiResult<u64> {
        self.of(&Target::Role(guild.clone(), role.clone()), None).await
    }

    /// The snowflake of a message, carrying its creation time.
    pub async fn message(
        &self,
        guild: &GuildId,
        message: &EventId,
        created_ms: u64,
    ) -> ApiResult<u64> {
        self.of(&Target::Message(guild.clone(), message.clone()), Some(created_ms)).await
    }

    /// What a snowflake names, if this server gave it out.
    pub async fn resolve(&self, snowflake: u64) -> ApiResult<Option<Target>> {
        if let Some(target) = self.targets.get(&snowflake) {
            return Ok(Some(target));
        }
        let Some(row) = self.store.snowflake_target(snowflake).await? else { return Ok(None) };
        let Some(target) = Target::from_row(&row) else { return Ok(None) };
        self.targets.insert(snowflake, target.clone());
        self.ids.insert(row, snowflake);
        Ok(Some(target))
    }

    /// The snowflake an object already has, without assigning one.
    pub async fn existing(&self, target: &Target) -> ApiResult<Option<u64>> {
        let row = target.row();
        if let Some(id) = self.ids.get(&row) {
            return Ok(Some(id));
        }
        Ok(self.store.snowflake_of(&row).await?)
    }
}

/// The Unix time in milliseconds a snowflake carries.
pub fn time_of(snowflake: u64) -> u64 {
    (snowflake >> 22) + DISCORD_EPOCH_MS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_time_survives_the_round_trip() {
        let at = 1_764_547_200_123_u64;
        let snowflake = ((at - DISCORD_EPOCH_MS) << 22) | 0x2a;
        assert_eq!(time_of(snowflake), at);
    }
}
