//! Discord's object shapes, rendered from Guildhall's guild state and from the native API's
//! views (`api/views.rs`), with every id a snowflake.
//!
//! The compatibility layer has no read or write path of its own: it calls the native handlers
//! and dispatch code and translates what they return, so what a bot may see and do is exactly
//! what a user may.

use guildhall_spec::content::{ChannelKind, GuildKind, OverwriteKind};
use guildhall_spec::state::{Channel, GuildState, Member, Role};
use guildhall_spec::{ChannelId, EventId, GuildId, Permissions, RoleId, UserId};
use serde_json::{Value, json};

use super::snowflake::Target;
use crate::AppState;
use crate::error::{ApiError, ApiResult};

/// Discord's channel types this server has.
pub const GUILD_TEXT: u8 = 0;
/// A direct-message channel.
pub const DM: u8 = 1;
/// A voice channel.
pub const GUILD_VOICE: u8 = 2;
/// A group DM.
pub const GROUP_DM: u8 = 3;
/// A category.
pub const GUILD_CATEGORY: u8 = 4;

/// Milliseconds since the Unix epoch as ISO 8601 (`2026-12-01T09:30:00.123000+00:00`), the
/// form Discord's timestamps take.
pub fn iso8601(ms: u64) -> String {
    let seconds = ms / 1000;
    let (days, rest) = (seconds / 86_400, seconds % 86_400);
    // Howard Hinnant's civil-from-days, for days since 1970-01-01.
    let z = i64::try_from(days).unwrap_or(0) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}000+00:00",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        ms % 1000
    )
}

/// Renders objects for one request or one gateway session.
pub struct Render<'a> {
    state: &'a AppState,
}

impl<'a> Render<'a> {
    /// A renderer on `state`.
    pub fn new(state: &'a AppState) -> Self {
        Self { state }
    }

    fn id(value: u64) -> Value {
        Value::String(value.to_string())
    }

    /// A user's snowflake as a JSON string.
    pub async fn user_id(&self, user: &UserId) -> ApiResult<Value> {
        Ok(Self::id(self.state.snowflakes.user(user).await?))
    }

    /// A guild's snowflake as a JSON string.
    pub async fn guild_id(&self, guild: &GuildId) -> ApiResult<Value> {
        Ok(Self::id(self.state.snowflakes.guild(guild).await?))
    }

    /// A channel's snowflake as a JSON string.
    pub async fn channel_id(&self, guild: &GuildId, channel: &ChannelId) -> ApiResult<Value> {
        Ok(Self::id(self.state.snowflakes.channel(guild, channel).await?))
    }

    /// A role's snowflake as a JSON string.
    pub async fn role_id(&self, guild: &GuildId, role: &RoleId) -> ApiResult<Value> {
        Ok(Self::id(self.state.snowflakes.role(guild, role).await?))
    }

    /// A message's snowflake as a JSON string.
    pub async fn message_id(
        &self,
        guild: &GuildId,
        message: &EventId,
        created_ms: u64,
    ) -> ApiResult<Value> {
        Ok(Self::id(self.state.snowflakes.message(guild, message, created_ms).await?))
    }

    /// The snowflake of a message that may not have been shown yet: it carries the message's
    /// creation time, read from the store when the message has none.
    pub async fn known_message_id(&self, guild: &GuildId, message: &EventId) -> ApiResult<Value> {
        let target = Target::Message(guild.clone(), message.clone());
        if let Some(id) = self.state.snowflakes.existing(&target).await? {
            return Ok(Self::id(id));
        }
        let created = self.state.store.message(guild, message).await?.map(|row| row.created_ts);
        Ok(Self::id(self.state.snowflakes.of(&target, created).await?))
    }

    /// A user object. Local users show their localpart as `username`; users of other servers
    /// their whole id, which is unique where a localpart is not.
    pub async fn user(&self, user: &UserId) -> ApiResult<Value> {
        let local = user.server_name() == self.state.server_name;
        let (display_name, avatar, bot) = if local {
            let profile = self.state.snowflakes.profile(user).await?;
            (profile.display_name, profile.avatar, profile.bot)
        } else {
            (None, None, false)
        };
        let username = if local { user.localpart().to_owned() } else { user.to_string() };
        Ok(json!({
            "id": self.user_id(user).await?,
            "username": username,
            "discriminator": "0",
            "global_name": display_name,
            "avatar": avatar,
            "bot": bot,
            "system": false,
            "public_flags": 0,
            "flags": 0,
        }))
    }

    /// A role.
    pub async fn role(&self, guild: &GuildId, role_id: &RoleId, role: &Role) -> ApiResult<Value> {
        Ok(json!({
            "id": self.role_id(guild, role_id).await?,
            "name": if role_id.is_everyone() { "@everyone" } else { role.name.as_str() },
            "color": role.color,
            "colors": {"primary_color": role.color, "secondary_color": null, "tertiary_color": null},
            "hoist": role.hoist,
            "icon": null,
            "unicode_emoji": null,
            "position": if role_id.is_everyone() { 0 } else { role.position.max(1) },
            "permissions": role.permissions.bits().to_string(),
            "managed": false,
            "mentionable": role.mentionable,
            "flags": 0,
        }))
    }

    /// A guild channel.
    pub async fn channel(
        &self,
        state: &GuildState,
        channel_id: &ChannelId,
        channel: &Channel,
    ) -> ApiResult<Value> {
        let guild = &state.guild_id;
        if state.kind == GuildKind::Dm {
            return self.dm_channel(state, channel_id).await;
        }
        let mut overwrites = Vec::new();
        for overwrite in channel.overwrites.values() {
            let (id, kind) = match overwrite.target_kind {
                OverwriteKind::Role => match RoleId::parse(&overwrite.target_id) {
                    Ok(role) => (self.role_id(guild, &role).await?, 0),
                    Err(_) => continue,
                },
                OverwriteKind::Member => match UserId::parse(&overwrite.target_id) {
                    Ok(user) => (self.user_id(&user).await?, 1),
                    Err(_) => continue,
                },
            };
            overwrites.push(json!({
                "id": id, "type": kind,
                "allow": overwrite.allow.bits().to_string(), "deny": overwrite.deny.bits().to_string(),
            }));
        }
        let kind = match channel.kind {
            ChannelKind::Text => GUILD_TEXT,
            ChannelKind::Voice => GUILD_VOICE,
            ChannelKind::Category => GUILD_CATEGORY,
        };
        let parent_id = match &channel.parent_id {
            Some(parent) => self.channel_id(guild, parent).await?,
            None => Value::Null,
        };
        let mut view = json!({
            "id": self.channel_id(guild, channel_id).await?,
            "type": kind,
            "guild_id": self.guild_id(guild).await?,
            "name": channel.name,
            "position": channel.position,
            "permission_overwrites": overwrites,
            "parent_id": parent_id,
            "topic": channel.topic,
            "nsfw": false,
            "flags": 0,
        });
        match kind {
            GUILD_TEXT => {
                view["rate_limit_per_user"] = json!(0);
                view["last_message_id"] = Value::Null;
                view["default_auto_archive_duration"] = json!(1440);
            }
            GUILD_VOICE => {
                view["bitrate"] = json!(64_000);
                view["user_limit"] = json!(0);
                view["rtc_region"] = Value::Null;
                view["rate_limit_per_user"] = json!(0);
                view["last_message_id"] = Value::Null;
            }
            _ => {}
        }
        Ok(view)
    }

    /// A DM guild as Discord's DM (or group DM) channel: its one channel, the members besides
    /// nobody (Discord lists the other participants; the viewer is filtered by the caller).
    pub async fn dm_channel(&self, state: &GuildState, channel_id: &ChannelId) -> ApiResult<Value> {
        let mut recipients = Vec::new();
        for user in state.members.keys().chain(state.dm_invites.keys()) {
            recipients.push(self.user(user).await?);
        }
        let kind = if recipients.len() > 2 { GROUP_DM } else { DM };
        Ok(json!({
            "id": self.channel_id(&state.guild_id, channel_id).await?,
            "type": kind,
            "recipients": recipients,
            "last_message_id": null,
            "flags": 0,
        }))
    }

    /// A member.
    pub async fn member(
        &self,
        state: &GuildState,
        user_id: &UserId,
        member: &Member,
    ) -> ApiResult<Value> {
        let mut roles = Vec::new();
        for role in &member.roles {
            if state.roles.contains_key(role) {
                roles.push(self.role_id(&state.guild_id, role).await?);
            }
        }
        Ok(json!({
            "user": self.user(user_id).await?,
            "nick": member.nick,
            "avatar": null,
            "roles": roles,
            "joined_at": iso8601(member.joined_ts),
            "premium_since": null,
            "deaf": false,
            "mute": false,
            "flags": 0,
            "pending": false,
            "communication_disabled_until": null,
        }))
    }

    /// A guild as `viewer` sees it: roles always; channels and members when asked (READY's
    /// `GUILD_CREATE` has them, `GET /guilds/{id}` does not).
    pub async fn guild(
        &self,
        state: &GuildState,
        viewer: &UserId,
        channels: bool,
        members: bool,
    ) -> ApiResult<Value> {
        let guild = &state.guild_id;
        let mut roles = Vec::new();
        for (role_id, role) in &state.roles {
            roles.push(self.role(guild, role_id, role).await?);
        }
        let mut view = json!({
            "id": self.guild_id(guild).await?,
            "name": state.name,
            "icon": null,
            "splash": null,
            "discovery_splash": null,
            "banner": null,
            "description": state.description,
            "owner_id": self.user_id(&state.owner).await?,
            "region": null,
            "afk_channel_id": null,
            "afk_timeout": 300,
            "widget_enabled": false,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "roles": roles,
            "emojis": [],
            "stickers": [],
            "features": [],
            "mfa_level": 0,
            "application_id": null,
            "system_channel_id": null,
            "system_channel_flags": 0,
            "rules_channel_id": null,
            "public_updates_channel_id": null,
            "safety_alerts_channel_id": null,
            "vanity_url_code": null,
            "premium_tier": 0,
            "premium_subscription_count": 0,
            "premium_progress_bar_enabled": false,
            "preferred_locale": "en-US",
            "nsfw_level": 0,
            "max_members": 500_000,
            "max_video_channel_users": 25,
            "member_count": state.members.len(),
            "approximate_member_count": state.members.len(),
            "unavailable": false,
        });
        if let Some(member) = state.members.get(viewer) {
            view["joined_at"] = json!(iso8601(member.joined_ts));
            view["permissions"] = json!(state.base_permissions(viewer).bits().to_string());
        }
        if channels {
            let mut list = Vec::new();
            for (channel_id, channel) in &state.channels {
                if state.can_view(viewer, channel_id) {
                    list.push(self.channel(state, channel_id, channel).await?);
                }
            }
            view["channels"] = Value::Array(list);
            view["threads"] = json!([]);
            view["voice_states"] = json!([]);
            view["presences"] = json!([]);
            view["stage_instances"] = json!([]);
            view["guild_scheduled_events"] = json!([]);
            view["soundboard_sounds"] = json!([]);
            view["large"] = json!(state.members.len() > LARGE_THRESHOLD);
        }
        if members {
            let mut list = Vec::new();
            for (user_id, member) in &state.members {
                list.push(self.member(state, user_id, member).await?);
            }
            view["members"] = Value::Array(list);
        }
        Ok(view)
    }

    /// A message from the native view of it (`views::message`, or the native gateway's
    /// `MESSAGE_CREATE`). `guild_state` adds the author's `member` for guild messages.
    pub async fn message(
        &self,
        native: &Value,
        guild_state: Option<&GuildState>,
    ) -> ApiResult<Value> {
        let guild: GuildId = parse(&native["guild_id"])?;
        let channel: ChannelId = parse(&native["channel_id"])?;
        let message: EventId = parse(&native["id"])?;
        let author: UserId = parse(&native["author_id"])?;
        let created = native["created_ts"].as_u64().unwrap_or(0);
        let mut mentions = Vec::new();
        let mut mentioned_ids = Vec::new();
        for mentioned in native["mentions"].as_array().into_iter().flatten() {
            if let Ok(user) = UserId::parse(mentioned.as_str().unwrap_or_default()) {
                mentions.push(self.user(&user).await?);
                mentioned_ids.push(user);
            }
        }
        let mut reactions = Vec::new();
        for reaction in native["reactions"].as_array().into_iter().flatten() {
            reactions.push(json!({
                "emoji": emoji(reaction["emoji"].as_str().unwrap_or_default()),
                "count": reaction["count"], "me": reaction["me"],
                "count_details": {"burst": 0, "normal": reaction["count"]},
                "burst_colors": [], "me_burst": false, "burst_me": false, "burst_count": 0,
            }));
        }
        let content = self
            .outgoing_mentions(native["content"].as_str().unwrap_or_default(), &mentioned_ids)
            .await?;
        let is_dm = guild_state.is_some_and(|state| state.kind == GuildKind::Dm);
        let mut view = json!({
            "id": self.message_id(&guild, &message, created).await?,
            "channel_id": self.channel_id(&guild, &channel).await?,
            "author": self.user(&author).await?,
            "content": content,
            "timestamp": iso8601(created),
            "edited_timestamp": native["edited_ts"].as_u64().map(iso8601),
            "tts": false,
            "mention_everyone": false,
            "mentions": mentions,
            "mention_roles": [],
            "attachments": [],
            "embeds": [],
            "pinned": native["pinned"].as_bool().unwrap_or(false),
            "type": 0,
            "flags": 0,
            "components": [],
        });
        if !reactions.is_empty() {
            view["reactions"] = Value::Array(reactions);
        }
        if let Some(reply_to) = native["reply_to"].as_str().and_then(|id| EventId::parse(id).ok()) {
            let snowflake =
                self.state.snowflakes.existing(&Target::Message(guild.clone(), reply_to)).await?;
            if let Some(snowflake) = snowflake {
                view["type"] = json!(19);
                view["message_reference"] = json!({
                    "type": 0, "message_id": snowflake.to_string(),
                    "channel_id": view["channel_id"], "guild_id": self.guild_id(&guild).await?,
                });
            }
        }
        if !is_dm {
            view["guild_id"] = self.guild_id(&guild).await?;
            let author_member = guild_state
                .and_then(|state| state.members.get(&author).map(|member| (state, member)));
            if let Some((state, member)) = author_member {
                let mut member_view = self.member(state, &author, member).await?;
                if let Some(object) = member_view.as_object_mut() {
                    object.remove("user");
                }
                view["member"] = member_view;
            }
        }
        Ok(view)
    }

    /// Mentions as Guildhall writes them (`<@@alice:example.org>`) become Discord's
    /// (`<@123…>`), for the users the message mentions (members, as the host checked); any
    /// other text of that form stays as written, and gets no snowflake.
    pub async fn outgoing_mentions(
        &self,
        content: &str,
        mentioned: &[UserId],
    ) -> ApiResult<String> {
        let mut out = String::with_capacity(content.len());
        let mut rest = content;
        while let Some(start) = rest.find("<@") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            match after.find('>').map(|end| (UserId::parse(&after[..end]), end)) {
                Some((Ok(user), end)) if mentioned.contains(&user) => {
                    out.push_str(&format!("<@{}>", self.state.snowflakes.user(&user).await?));
                    rest = &after[end + 1..];
                }
                _ => {
                    out.push_str("<@");
                    rest = after;
                }
            }
        }
        out.push_str(rest);
        Ok(out)
    }

    /// Mentions as Discord writes them (`<@123…>`, `<@!123…>`) become Guildhall's, for the
    /// users `allowed` lets the message ping (Discord's `allowed_mentions`) and at most as many
    /// as a message may mention; the rest stay as written, which pings nobody.
    pub async fn incoming_mentions(&self, content: &str, allowed: &Allowed) -> ApiResult<String> {
        let mut out = String::with_capacity(content.len());
        let mut rest = content;
        let mut looked_up = 0;
        while let Some(start) = rest.find("<@") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let digits = after.strip_prefix('!').unwrap_or(after);
            let end = digits.find('>');
            let user = match end.map(|end| digits[..end].parse::<u64>()) {
                Some(Ok(snowflake)) if allowed.allows(snowflake) && looked_up < MAX_MENTIONS => {
                    looked_up += 1;
                    match self.state.snowflakes.resolve(snowflake).await? {
                        Some(Target::User(user)) => Some(user),
                        _ => None,
                    }
                }
                _ => None,
            };
            match (user, end) {
                (Some(user), Some(end)) => {
                    out.push_str(&format!("<@{user}>"));
                    rest = &digits[end + 1..];
                }
                _ => {
                    out.push_str("<@");
                    rest = after;
                }
            }
        }
        out.push_str(rest);
        Ok(out)
    }
}

/// Blanks what a message says for a viewer without the message-content intent, unless it is
/// the viewer's own or mentions them (Discord's rule; DMs are never blanked, the caller skips
/// them).
pub fn redact_content(view: &mut Value, viewer: &Value) {
    let own = &view["author"]["id"] == viewer;
    let mentioned = view["mentions"]
        .as_array()
        .is_some_and(|mentions| mentions.iter().any(|user| &user["id"] == viewer));
    if !own && !mentioned {
        view["content"] = json!("");
        view["embeds"] = json!([]);
        view["attachments"] = json!([]);
        view["components"] = json!([]);
    }
}

/// The most mentions of one message translated (the native API counts at most as many).
const MAX_MENTIONS: usize = 50;

/// Whom a message may ping (Discord's `allowed_mentions`).
#[derive(Debug, Clone, Default)]
pub enum Allowed {
    /// Every user mentioned (no `allowed_mentions`, or `parse` with `users`).
    #[default]
    All,
    /// Only these users.
    Only(Vec<u64>),
}

impl Allowed {
    fn allows(&self, user: u64) -> bool {
        match self {
            Self::All => true,
            Self::Only(users) => users.contains(&user),
        }
    }
}

/// Guilds with more members than this are `large` (Discord's default `large_threshold`).
pub const LARGE_THRESHOLD: usize = 250;

/// An emoji object for a reaction. Guildhall reactions are Unicode emoji; a custom emoji
/// (`name:id`, from a Discord client) keeps its parts.
pub fn emoji(text: &str) -> Value {
    match text.split_once(':') {
        Some((name, id)) if id.bytes().all(|b| b.is_ascii_digit()) && !id.is_empty() => {
            json!({"id": id, "name": name})
        }
        _ => json!({"id": null, "name": text}),
    }
}

fn parse<T: std::str::FromStr>(value: &Value) -> ApiResult<T> {
    value
        .as_str()
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| ApiError::internal("a native view without a valid id"))
}

/// Permission bits as Discord sends them (a decimal string).
pub fn permissions(bits: Permissions) -> Value {
    Value::String(bits.bits().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_iso_8601() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000000+00:00");
        assert_eq!(iso8601(1_764_581_400_123), "2025-12-01T09:30:00.123000+00:00");
        assert_eq!(iso8601(951_782_400_000), "2000-02-29T00:00:00.000000+00:00");
    }

    #[test]
    fn custom_emoji_keep_their_parts() {
        assert_eq!(emoji("👍"), json!({"id": null, "name": "👍"}));
        assert_eq!(emoji("blob:123"), json!({"id": "123", "name": "blob"}));
    }
}
