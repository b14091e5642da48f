//! The Discord dialect of the gateway (`/discord/gateway?v=10&encoding=json`): what differs
//! from the native protocol, on top of the same session machinery (`session.rs`).
//!
//! * IDENTIFY carries `intents` and optionally `shard: [id, count]`. Privileged intents
//!   (members, presences, message content) a bot was not granted close the connection with
//!   4014; a shard outside `0..count` (or more than [`MAX_SHARDS`]) with 4010.
//! * READY lists the shard's guilds as unavailable, then one `GUILD_CREATE` follows per guild.
//! * Every native dispatch is translated into Discord's (ids become snowflakes, objects take
//!   Discord's shapes), filtered by intents and by shard; those Discord has no counterpart for
//!   are not sent.
//! * `compress=zlib-stream`: every frame goes through one zlib stream, flushed per frame.

use guildhall_spec::content::GuildKind;
use guildhall_spec::state::GuildState;
use guildhall_spec::{ChannelId, EventId, UserId};
use serde_json::{Value, json};

use crate::AppState;
use crate::api::discord::bots::{
    DIRECT_MESSAGE_REACTIONS, DIRECT_MESSAGE_TYPING, DIRECT_MESSAGES, GUILD_MEMBERS,
    GUILD_MESSAGE_REACTIONS, GUILD_MESSAGE_TYPING, GUILD_MESSAGES, GUILD_MODERATION,
    GUILD_PRESENCES, GUILDS, MESSAGE_CONTENT, PRIVILEGED,
};
use crate::api::discord::objects::{LARGE_THRESHOLD, Render, emoji, iso8601};
use crate::error::ApiResult;
use crate::store::ApplicationRow;

/// The dispatches a Discord session sends besides the translated ones: the handshake's, the
/// answer to a member request, presences and the user's own profile.
pub(crate) const READY: &str = "READY";
/// See [`READY`].
pub(crate) const RESUMED: &str = "RESUMED";
/// See [`READY`].
pub(crate) const GUILD_MEMBERS_CHUNK: &str = "GUILD_MEMBERS_CHUNK";
/// See [`READY`].
pub(crate) const PRESENCE_UPDATE: &str = "PRESENCE_UPDATE";
/// See [`READY`].
pub(crate) const USER_UPDATE: &str = "USER_UPDATE";

/// Guilds per shard `GET /gateway/bot` recommends (Discord's figure).
pub(crate) const GUILDS_PER_SHARD: usize = 2500;
/// The most shards a bot may split its connection into.
pub(crate) const MAX_SHARDS: u64 = 64;
/// Members per `GUILD_MEMBERS_CHUNK`.
const CHUNK: usize = 1000;
/// The most members one REQUEST_GUILD_MEMBERS answers.
const MAX_REQUESTED_MEMBERS: usize = 10_000;
/// The longest nonce a member request may carry (Discord's limit).
const MAX_NONCE_BYTES: usize = 32;
/// REQUEST_GUILD_MEMBERS a connection may send a minute (besides the frame budget).
pub(crate) const MEMBER_REQUESTS_PER_MINUTE: u32 = 30;

/// Close code: a shard outside the bot's shard count.
pub(crate) const CLOSE_INVALID_SHARD: u16 = 4010;
/// Close code: invalid intents.
pub(crate) const CLOSE_INVALID_INTENTS: u16 = 4013;
/// Close code: privileged intents the bot was not granted.
pub(crate) const CLOSE_DISALLOWED_INTENTS: u16 = 4014;

/// The connection's options, from its URL.
#[derive(Debug, Clone, Default)]
pub(crate) struct Options {
    /// `compress=zlib-stream`.
    pub(crate) zlib_stream: bool,
    /// Where a client reconnects to resume (READY's `resume_gateway_url`).
    pub(crate) resume_url: String,
}

/// An identified Discord session: what it asked for and may have.
#[derive(Debug, Clone)]
pub(crate) struct Identified {
    /// The intents asked for (privileged ones checked).
    pub(crate) intents: u64,
    /// `(shard id, shard count)`.
    pub(crate) shard: (u64, u64),
    /// The bot's application; `None` for a user's token.
    pub(crate) application: Option<ApplicationRow>,
    /// The user's snowflake.
    pub(crate) user_id: Value,
}

/// Why an IDENTIFY is refused: the close code and reason.
pub(crate) type Refusal = (u16, &'static str);

/// Reads IDENTIFY's `intents` and `shard` and checks them against what the user may have.
pub(crate) async fn identify(
    state: &AppState,
    user: &UserId,
    data: &Value,
) -> Result<ApiResult<Identified>, Refusal> {
    let Some(intents) = data["intents"].as_u64() else {
        return Err((CLOSE_INVALID_INTENTS, "intents are required"));
    };
    if intents >= 1 << 26 {
        return Err((CLOSE_INVALID_INTENTS, "unknown intents"));
    }
    let shard = match &data["shard"] {
        Value::Null => (0, 1),
        Value::Array(pair) if pair.len() == 2 => match (pair[0].as_u64(), pair[1].as_u64()) {
            (Some(id), Some(count)) if (1..=MAX_SHARDS).contains(&count) && id < count => {
                (id, count)
            }
            _ => return Err((CLOSE_INVALID_SHARD, "invalid shard")),
        },
        _ => return Err((CLOSE_INVALID_SHARD, "invalid shard")),
    };
    let application = match state.store.application_of_bot(user).await {
        Ok(application) => application,
        Err(error) => return Ok(Err(error.into())),
    };
    // A person's own token has every intent; a bot has the privileged ones it was granted.
    if let Some(application) = &application
        && intents & PRIVILEGED & !application.intents != 0
    {
        return Err((CLOSE_DISALLOWED_INTENTS, "Disallowed intent(s)."));
    }
    let user_id = match state.snowflakes.user(user).await {
        Ok(id) => Value::String(id.to_string()),
        Err(error) => return Ok(Err(error)),
    };
    Ok(Ok(Identified { intents, shard, application, user_id }))
}

impl Identified {
    fn has(&self, intent: u64) -> bool {
        self.intents & intent != 0
    }

    /// Whether the session asked for presences (and may have them).
    pub(crate) fn sees_presences(&self) -> bool {
        self.has(GUILD_PRESENCES)
    }

    /// Whether a guild's events go to this shard (DMs go to shard 0, as on Discord).
    pub(crate) async fn serves(&self, state: &AppState, guild: &GuildState) -> ApiResult<bool> {
        if guild.kind == GuildKind::Dm {
            return Ok(self.shard.0 == 0);
        }
        let id = state.snowflakes.guild(&guild.guild_id).await?;
        Ok((id >> 22) % self.shard.1 == self.shard.0)
    }

    /// READY, for the guilds this shard serves.
    pub(crate) async fn ready(
        &self,
        state: &AppState,
        user: &UserId,
        session_id: &str,
        options: &Options,
        guilds: &[std::sync::Arc<GuildState>],
    ) -> ApiResult<Value> {
        let render = Render::new(state);
        let mut unavailable = Vec::new();
        for guild in guilds {
            if guild.kind == GuildKind::Guild && self.serves(state, guild).await? {
                unavailable.push(
                    json!({"id": render.guild_id(&guild.guild_id).await?, "unavailable": true}),
                );
            }
        }
        let application = match &self.application {
            Some(application) => json!({"id": application.application_id.to_string(), "flags": 0}),
            None => Value::Null,
        };
        Ok(json!({
            "v": 10,
            "user": render.user(user).await?,
            "guilds": unavailable,
            "session_id": session_id,
            "session_type": "normal",
            "resume_gateway_url": options.resume_url,
            "application": application,
            "shard": [self.shard.0, self.shard.1],
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "user_settings": {},
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": [],
            "auth": {},
        }))
    }

    /// A guild's `GUILD_CREATE`: everything, with members when the session has the members
    /// intent and the guild is not large (its own member always).
    pub(crate) async fn guild_create(
        &self,
        state: &AppState,
        user: &UserId,
        guild: &GuildState,
    ) -> ApiResult<Value> {
        let render = Render::new(state);
        let all_members = self.has(GUILD_MEMBERS) && guild.members.len() <= LARGE_THRESHOLD;
        let mut view = render.guild(guild, user, true, all_members).await?;
        if !all_members && let Some(member) = guild.members.get(user) {
            view["members"] = json!([render.member(guild, user, member).await?]);
        }
        Ok(view)
    }

    /// Answers REQUEST_GUILD_MEMBERS (op 8): the guild's members in chunks, `user_ids` (at
    /// most 100) or a `query` prefix of usernames narrowing them, at most
    /// [`MAX_REQUESTED_MEMBERS`]. Without the members intent only the asked `user_ids` are
    /// answered.
    pub(crate) async fn member_chunks(
        &self,
        state: &AppState,
        user: &UserId,
        data: &Value,
    ) -> ApiResult<Vec<Value>> {
        let render = Render::new(state);
        let Some(guild_id) = snowflake(&data["guild_id"]) else { return Ok(Vec::new()) };
        let Some(crate::api::discord::snowflake::Target::Guild(guild_id)) =
            state.snowflakes.resolve(guild_id).await?
        else {
            return Ok(Vec::new());
        };
        let Ok(guild) = state.guilds.state(&guild_id).await else { return Ok(Vec::new()) };
        if !guild.members.contains_key(user) {
            return Ok(Vec::new());
        }
        let limit = data["limit"]
            .as_u64()
            .filter(|limit| *limit > 0)
            .map_or(MAX_REQUESTED_MEMBERS, |limit| {
                usize::try_from(limit).unwrap_or(usize::MAX).min(MAX_REQUESTED_MEMBERS)
            });
        let nonce = data["nonce"]
            .as_str()
            .filter(|nonce| nonce.len() <= MAX_NONCE_BYTES)
            .map_or(Value::Null, |nonce| Value::String(nonce.to_owned()));
        let mut wanted: Option<Vec<UserId>> = None;
        if let Some(ids) = data["user_ids"].as_array().map(Vec::as_slice).or_else(|| {
            data["user_ids"].is_string().then(|| std::slice::from_ref(&data["user_ids"]))
        }) {
            let mut users = Vec::new();
            for id in ids.iter().take(100).filter_map(snowflake) {
                if let Some(crate::api::discord::snowflake::Target::User(user)) =
                    state.snowflakes.resolve(id).await?
                {
                    users.push(user);
                }
            }
            wanted = Some(users);
        } else if !self.has(GUILD_MEMBERS) {
            wanted = Some(Vec::new());
        }
        let query = data["query"].as_str().unwrap_or("").to_lowercase();
        let mut members = Vec::new();
        for (member_id, member) in &guild.members {
            let chosen = match &wanted {
                Some(users) => users.contains(member_id),
                None => member_id.localpart().starts_with(&query),
            };
            if chosen {
                if members.len() == limit {
                    break;
                }
                members.push(render.member(&guild, member_id, member).await?);
            }
        }
        let guild_snowflake = render.guild_id(&guild_id).await?;
        let count = members.len().div_ceil(CHUNK).max(1);
        let chunks = (0..count)
            .map(|index| {
                let part: Vec<Value> =
                    members.iter().skip(index * CHUNK).take(CHUNK).cloned().collect();
                json!({
                    "guild_id": guild_snowflake, "members": part, "chunk_index": index,
                    "chunk_count": count, "nonce": nonce, "not_found": [],
                })
            })
            .collect();
        Ok(chunks)
    }

    /// Translates one native dispatch about `guild` into Discord's (none, or one).
    pub(crate) async fn translate(
        &self,
        state: &AppState,
        user: &UserId,
        name: &str,
        data: &Value,
        guild: &GuildState,
    ) -> ApiResult<Option<(&'static str, Value)>> {
        if !self.serves(state, guild).await? {
            return Ok(None);
        }
        let render = Render::new(state);
        let dm = guild.kind == GuildKind::Dm;
        let guild_id = &guild.guild_id;
        let id_of = |key: &str| data[key].as_str().unwrap_or_default().to_owned();
        let with_guild = |mut view: Value, guild_snowflake: Value| {
            view["guild_id"] = guild_snowflake;
            view
        };
        let translated = match name {
            "GUILD_CREATE" if !dm && self.has(GUILDS) => {
                Some(("GUILD_CREATE", self.guild_create(state, user, guild).await?))
            }
            "GUILD_UPDATE" if !dm && self.has(GUILDS) => {
                Some(("GUILD_UPDATE", render.guild(guild, user, false, false).await?))
            }
            "GUILD_DELETE" if !dm && self.has(GUILDS) => {
                Some(("GUILD_DELETE", json!({"id": render.guild_id(guild_id).await?})))
            }
            "CHANNEL_CREATE" | "CHANNEL_UPDATE" if !dm && self.has(GUILDS) => {
                let Ok(channel_id) = ChannelId::parse(&id_of("id")) else { return Ok(None) };
                match guild.channels.get(&channel_id) {
                    Some(channel) => Some((
                        if name == "CHANNEL_CREATE" { "CHANNEL_CREATE" } else { "CHANNEL_UPDATE" },
                        render.channel(guild, &channel_id, channel).await?,
                    )),
                    None => None,
                }
            }
            "CHANNEL_DELETE" if !dm && self.has(GUILDS) => {
                let Ok(channel_id) = ChannelId::parse(&id_of("id")) else { return Ok(None) };
                Some((
                    "CHANNEL_DELETE",
                    json!({
                        "id": render.channel_id(guild_id, &channel_id).await?,
                        "guild_id": render.guild_id(guild_id).await?,
                        "type": 0, "name": "", "position": 0,
                    }),
                ))
            }
            "CHANNEL_PINS_UPDATE" if self.has(if dm { DIRECT_MESSAGES } else { GUILDS }) => {
                let Ok(channel_id) = ChannelId::parse(&id_of("channel_id")) else {
                    return Ok(None);
                };
                // When the last pin happened is not kept; a pin is now, an unpin says nothing.
                let last_pin = (data["pinned"] == true).then(|| iso8601(crate::store::now_ms()));
                let mut view = json!({
                    "channel_id": render.channel_id(guild_id, &channel_id).await?,
                    "last_pin_timestamp": last_pin,
                });
                if !dm {
                    view["guild_id"] = render.guild_id(guild_id).await?;
                }
                Some(("CHANNEL_PINS_UPDATE", view))
            }
            "GUILD_ROLE_CREATE" | "GUILD_ROLE_UPDATE" if self.has(GUILDS) => {
                let role_id = data["role"]["id"].as_str().unwrap_or_default();
                let Ok(role_id) = guildhall_spec::RoleId::parse(role_id) else { return Ok(None) };
                let Some(role) = guild.roles.get(&role_id) else { return Ok(None) };
                Some((
                    if name == "GUILD_ROLE_CREATE" {
                        "GUILD_ROLE_CREATE"
                    } else {
                        "GUILD_ROLE_UPDATE"
                    },
                    json!({"guild_id": render.guild_id(guild_id).await?, "role": render.role(guild_id, &role_id, role).await?}),
                ))
            }
            "GUILD_ROLE_DELETE" if self.has(GUILDS) => {
                let Ok(role_id) = guildhall_spec::RoleId::parse(&id_of("role_id")) else {
                    return Ok(None);
                };
                Some((
                    "GUILD_ROLE_DELETE",
                    json!({"guild_id": render.guild_id(guild_id).await?, "role_id": render.role_id(guild_id, &role_id).await?}),
                ))
            }
            "GUILD_MEMBER_ADD" | "GUILD_MEMBER_UPDATE" if !dm && self.has(GUILD_MEMBERS) => {
                let Ok(member_id) = UserId::parse(&id_of("user_id")) else { return Ok(None) };
                let Some(member) = guild.members.get(&member_id) else { return Ok(None) };
                let view = render.member(guild, &member_id, member).await?;
                Some((
                    if name == "GUILD_MEMBER_ADD" {
                        "GUILD_MEMBER_ADD"
                    } else {
                        "GUILD_MEMBER_UPDATE"
                    },
                    with_guild(view, render.guild_id(guild_id).await?),
                ))
            }
            "GUILD_MEMBER_REMOVE" if !dm && self.has(GUILD_MEMBERS) => {
                let Ok(member_id) = UserId::parse(&id_of("user_id")) else { return Ok(None) };
                Some((
                    "GUILD_MEMBER_REMOVE",
                    json!({"guild_id": render.guild_id(guild_id).await?, "user": render.user(&member_id).await?}),
                ))
            }
            "GUILD_BAN_ADD" | "GUILD_BAN_REMOVE" if self.has(GUILD_MODERATION) => {
                let Ok(banned) = UserId::parse(&id_of("user_id")) else { return Ok(None) };
                Some((
                    if name == "GUILD_BAN_ADD" { "GUILD_BAN_ADD" } else { "GUILD_BAN_REMOVE" },
                    json!({"guild_id": render.guild_id(guild_id).await?, "user": render.user(&banned).await?}),
                ))
            }
            "MESSAGE_CREATE" if self.has(if dm { DIRECT_MESSAGES } else { GUILD_MESSAGES }) => {
                let mut view = render.message(data, Some(guild)).await?;
                self.redact(&mut view, dm);
                Some(("MESSAGE_CREATE", view))
            }
            "MESSAGE_UPDATE" if self.has(if dm { DIRECT_MESSAGES } else { GUILD_MESSAGES }) => {
                // Discord libraries rebuild the whole message from an update.
                let Ok(message_id) = EventId::parse(&id_of("id")) else { return Ok(None) };
                // The stored message may already hold a later edit or pin not yet on disk.
                state.store.durable().await?;
                let Some(row) = state.store.message(guild_id, &message_id).await? else {
                    return Ok(None);
                };
                let pinned = state.store.is_pinned(guild_id, &message_id).await?;
                let native = crate::api::views::message(&row, &[], pinned);
                let mut view = render.message(&native, Some(guild)).await?;
                self.redact(&mut view, dm);
                Some(("MESSAGE_UPDATE", view))
            }
            "MESSAGE_DELETE" if self.has(if dm { DIRECT_MESSAGES } else { GUILD_MESSAGES }) => {
                let Ok(message_id) = EventId::parse(&id_of("id")) else { return Ok(None) };
                let Ok(channel_id) = ChannelId::parse(&id_of("channel_id")) else {
                    return Ok(None);
                };
                let mut view = json!({
                    "id": render.known_message_id(guild_id, &message_id).await?,
                    "channel_id": render.channel_id(guild_id, &channel_id).await?,
                });
                if !dm {
                    view["guild_id"] = render.guild_id(guild_id).await?;
                }
                Some(("MESSAGE_DELETE", view))
            }
            "MESSAGE_REACTION_ADD" | "MESSAGE_REACTION_REMOVE"
                if self.has(if dm {
                    DIRECT_MESSAGE_REACTIONS
                } else {
                    GUILD_MESSAGE_REACTIONS
                }) =>
            {
                let Ok(message_id) = EventId::parse(&id_of("message_id")) else { return Ok(None) };
                let Ok(channel_id) = ChannelId::parse(&id_of("channel_id")) else {
                    return Ok(None);
                };
                let Ok(reactor) = UserId::parse(&id_of("user_id")) else { return Ok(None) };
                let mut view = json!({
                    "user_id": render.user_id(&reactor).await?,
                    "channel_id": render.channel_id(guild_id, &channel_id).await?,
                    "message_id": render.known_message_id(guild_id, &message_id).await?,
                    "emoji": emoji(data["emoji"].as_str().unwrap_or_default()),
                    "type": 0,
                    "burst": false,
                });
                if !dm {
                    view["guild_id"] = render.guild_id(guild_id).await?;
                    if name == "MESSAGE_REACTION_ADD"
                        && let Some(member) = guild.members.get(&reactor)
                    {
                        view["member"] = render.member(guild, &reactor, member).await?;
                    }
                }
                let name = if name == "MESSAGE_REACTION_ADD" {
                    "MESSAGE_REACTION_ADD"
                } else {
                    "MESSAGE_REACTION_REMOVE"
                };
                Some((name, view))
            }
            "TYPING_START"
                if self.has(if dm { DIRECT_MESSAGE_TYPING } else { GUILD_MESSAGE_TYPING }) =>
            {
                let Ok(channel_id) = ChannelId::parse(&id_of("channel_id")) else {
                    return Ok(None);
                };
                let Ok(typist) = UserId::parse(&id_of("user_id")) else { return Ok(None) };
                let mut view = json!({
                    "channel_id": render.channel_id(guild_id, &channel_id).await?,
                    "user_id": render.user_id(&typist).await?,
                    "timestamp": data["ts"].as_u64().unwrap_or(0) / 1000,
                });
                if !dm {
                    view["guild_id"] = render.guild_id(guild_id).await?;
                    if let Some(member) = guild.members.get(&typist) {
                        view["member"] = render.member(guild, &typist, member).await?;
                    }
                }
                Some(("TYPING_START", view))
            }
            _ => None,
        };
        Ok(translated)
    }

    /// A presence change of `other`, once per guild of this shard that both share.
    pub(crate) async fn presences(
        &self,
        state: &AppState,
        other: &UserId,
        status: &str,
        guilds: &[std::sync::Arc<GuildState>],
    ) -> ApiResult<Vec<Value>> {
        if !self.sees_presences() {
            return Ok(Vec::new());
        }
        let render = Render::new(state);
        let status = if status == "invisible" { "offline" } else { status };
        let mut updates = Vec::new();
        for guild in guilds {
            if guild.kind == GuildKind::Guild
                && guild.members.contains_key(other)
                && self.serves(state, guild).await?
            {
                updates.push(json!({
                    "user": {"id": render.user_id(other).await?},
                    "guild_id": render.guild_id(&guild.guild_id).await?,
                    "status": status,
                    "activities": [],
                    "client_status": {"desktop": status},
                }));
            }
        }
        Ok(updates)
    }

    /// Without the message-content intent a bot sees no content, except in DMs, in its own
    /// messages and in messages that mention it (Discord's rule).
    fn redact(&self, view: &mut Value, dm: bool) {
        if self.application.is_some() && !self.has(MESSAGE_CONTENT) && !dm {
            crate::api::discord::objects::redact_content(view, &self.user_id);
        }
    }
}

fn snowflake(value: &Value) -> Option<u64> {
    value.as_u64().or_else(|| value.as_str().and_then(|text| text.parse().ok()))
}

/// A zlib stream shared by every frame of a connection (`compress=zlib-stream`): each frame is
/// compressed and sync-flushed, so it ends in `00 00 ff ff` and inflates on its own once the
/// frames before it have. Started once the client has identified (the frames before go as
/// text, which Discord clients read as they are), so that an unauthenticated connection costs
/// no compressor.
pub(crate) struct ZlibStream {
    compress: flate2::Compress,
}

impl Default for ZlibStream {
    fn default() -> Self {
        Self { compress: flate2::Compress::new(flate2::Compression::fast(), true) }
    }
}

/// The stream failed; the connection cannot continue (its client's inflater would be lost).
#[derive(Debug)]
pub(crate) struct ZlibFailed;

impl ZlibStream {
    /// One frame's bytes.
    pub(crate) fn frame(&mut self, text: &[u8]) -> Result<Vec<u8>, ZlibFailed> {
        let mut out = Vec::with_capacity(text.len() / 2 + 64);
        let start = self.compress.total_in();
        let consumed = |compress: &flate2::Compress| {
            usize::try_from(compress.total_in() - start).map_err(|_| ZlibFailed)
        };
        loop {
            if out.len() == out.capacity() {
                out.reserve(out.capacity().max(256));
            }
            let (before_in, before_out) = (self.compress.total_in(), out.len());
            let from = consumed(&self.compress)?;
            self.compress
                .compress_vec(&text[from..], &mut out, flate2::FlushCompress::Sync)
                .map_err(|_| ZlibFailed)?;
            // The flush is complete once all the input is in and the compressor stopped with
            // room to spare.
            if consumed(&self.compress)? == text.len() && out.len() < out.capacity() {
                return Ok(out);
            }
            if self.compress.total_in() == before_in && out.len() == before_out {
                return Err(ZlibFailed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_frame_ends_in_a_sync_flush_and_inflates_in_sequence() {
        let mut stream = ZlibStream::default();
        let mut inflate = flate2::Decompress::new(true);
        for text in ["{\"op\":10}", &"x".repeat(100_000), "{\"op\":11}"] {
            let frame = stream.frame(text.as_bytes()).expect("compressed");
            assert!(frame.len() < text.len() + 64);
            assert!(frame.ends_with(&[0, 0, 0xff, 0xff]));
            let mut out = Vec::with_capacity(text.len() + 64);
            inflate.decompress_vec(&frame, &mut out, flate2::FlushDecompress::Sync).unwrap();
            assert_eq!(out, text.as_bytes());
        }
    }
}
