//! The WebSocket gateway at `/gateway?encoding=json|msgpack`.
//!
//! Protocol (Discord-like; every frame is `{"op", "d", "s"?, "t"?}`):
//!
//! | op | name | direction | payload |
//! |---|---|---|---|
//! | 0 | dispatch | server → client | `t` = event name, `d` = data, `s` = stream position or null |
//! | 1 | heartbeat | client → server | `d` = last `s` seen or null |
//! | 2 | identify | client → server | `{"token", "status"?}` |
//! | 3 | presence update | client → server | `{"status": "online"\|"idle"\|"dnd"\|"invisible"}` |
//! | 6 | resume | client → server | `{"token", "session_id", "seq"}` |
//! | 9 | invalid session | server → client | `d` = false (identify again) |
//! | 10 | hello | server → client | `{"heartbeat_interval"}` |
//! | 11 | heartbeat ack | server → client | null |
//!
//! Durable dispatches (everything derived from a guild event) carry `s`, the server-wide stream
//! position; a client that reconnects within the resume window sends the last `s` it saw and
//! the server replays what it missed from the durable log (message history only where the user
//! may read history), tells it of guilds and channels it lost or gained meanwhile
//! (`GUILD_DELETE`, `CHANNEL_DELETE`, `CHANNEL_CREATE`), then continues live. Ephemeral
//! dispatches (typing, presence) carry `s: null` and are not replayed.
//!
//! End-to-end encryption (spec 17.6, all `s: null`): `TO_DEVICE` (a message in the inbox of the
//! connection's device) and `ONE_TIME_KEYS_LOW` go to the connections opened with the device's
//! login; `DEVICE_LIST_UPDATE` to the user, users sharing a guild and users who asked for the
//! user's keys. The inbox (REST) is the record; a client reads it after connecting.
//!
//! `PROPOSAL_REFUSED` (`s: null`) tells a user's clients that a write answered `202 queued`
//! was refused by the guild's host when it was finally delivered.
//!
//! A connection may send `gateway.frames_per_minute` frames (120) and
//! `gateway.presence_updates_per_minute` presence updates (5) a minute.
//!
//! With several nodes (`[redis] url`), a disconnected session is kept in Redis as
//! `guildhall:{server_name}:session:{session_id}` (JSON: user, login, status, what the client
//! was shown) for the resume window, and listed in `guildhall:{server_name}:login-sessions:{login}`
//! so revoking the login
//! forgets it on every node; a resume on any node claims it with one script that checks the user
//! and login and deletes it, so two nodes cannot both resume one session.
//!
//! Close codes: 4001 unknown opcode, 4002 decode error, 4003 not authenticated, 4004
//! authentication failed (also: the login was revoked), 4005 already authenticated, 4008 too
//! slow or rate limited (resumable), 4009 session timed out (resumable).

pub(crate) mod discord;
mod dispatch;
mod replay;
mod session;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Query, State, WebSocketUpgrade};
use axum::response::Response;
use guildhall_spec::{ChannelId, GuildId, UserId};
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::cluster::Cluster;
use crate::error::ApiError;
use crate::presence::Status;

pub use dispatch::guild_event;

/// The largest frame a client may send.
const MAX_CLIENT_FRAME: usize = 64 * 1024;

/// What a connection's read buffer holds (and reads at a time). The WebSocket library's
/// default, 128 KiB allocated per connection and touched by the first read, was most of an
/// idle connection's memory (heaptrack: 131 KB of the 159 KB each identified idle connection
/// added); clients send small frames, and a larger one is read in several steps.
const READ_BUFFER: usize = 2 * 1024;

/// Frame encodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// JSON text frames.
    #[default]
    Json,
    /// MessagePack binary frames.
    Msgpack,
}

/// The gateway's query parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayParams {
    #[serde(default)]
    encoding: Encoding,
}

/// `GET /gateway`: upgrades to a WebSocket.
pub async fn upgrade(
    State(state): State<AppState>,
    params: Result<Query<GatewayParams>, axum::extract::rejection::QueryRejection>,
    socket: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let Query(params) =
        params.map_err(|_| ApiError::bad_request("encoding must be json or msgpack"))?;
    // Behind an `Arc` before the connection's task captures it (see `session::run`).
    let state = Arc::new(state);
    Ok(socket
        .max_message_size(MAX_CLIENT_FRAME)
        .read_buffer_size(READ_BUFFER)
        .on_upgrade(move |socket| session::run(state, socket, params.encoding, Dialect::Native)))
}

/// Which protocol a connection speaks.
#[derive(Debug, Clone)]
pub(crate) enum Dialect {
    /// Guildhall's own (this module's header).
    Native,
    /// Discord's gateway v10 (`discord.rs`).
    Discord(discord::Options),
}

/// The Discord gateway's query parameters (`v`, `encoding`, `compress`; others are ignored,
/// as Discord does).
#[derive(Debug, Deserialize)]
pub struct DiscordParams {
    v: Option<u8>,
    encoding: Option<String>,
    compress: Option<String>,
}

/// `GET /discord/gateway?v=10&encoding=json[&compress=zlib-stream]`: upgrades to a WebSocket
/// speaking Discord's gateway.
pub async fn upgrade_discord(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    params: Result<Query<DiscordParams>, axum::extract::rejection::QueryRejection>,
    socket: WebSocketUpgrade,
) -> Result<Response, crate::api::discord::DiscordError> {
    let invalid = |message: &str| crate::api::discord::DiscordError(ApiError::bad_request(message));
    let Query(params) = params.map_err(|_| invalid("invalid query"))?;
    if params.v.is_some_and(|v| v != 10) {
        return Err(invalid("only gateway version 10 is offered"));
    }
    if params.encoding.as_deref().is_some_and(|encoding| encoding != "json") {
        return Err(invalid("only encoding=json is offered"));
    }
    // Other compressions (zstd-stream) fall back to none: a client reads plain text frames.
    let zlib_stream = params.compress.as_deref() == Some("zlib-stream");
    let options = discord::Options {
        zlib_stream,
        resume_url: crate::api::discord::gateway_url(&state, &headers),
    };
    let state = Arc::new(state);
    Ok(socket.max_message_size(MAX_CLIENT_FRAME).read_buffer_size(READ_BUFFER).on_upgrade(
        move |socket| session::run(state, socket, Encoding::Json, Dialect::Discord(options)),
    ))
}

/// Sessions that can be resumed: their owner and, once disconnected, until when.
#[derive(Debug, Default)]
pub struct SessionRegistry {
    sessions: Mutex<HashMap<String, Registered>>,
    /// Where disconnected sessions are kept for every node; this node's table holds them only
    /// while Redis is unreachable.
    cluster: Option<Cluster>,
}

#[derive(Debug)]
struct Registered {
    user: UserId,
    /// The login session (bearer token) the gateway session was opened with.
    login: String,
    /// `None` while connected; when the resume window closes once disconnected.
    expires: Option<Instant>,
    /// What a resume needs to continue where the connection left off.
    resumable: Resumable,
}

/// A disconnected session as Redis keeps it.
#[derive(Debug, Serialize, Deserialize)]
struct SharedSession {
    user: UserId,
    login: String,
    resumable: Resumable,
}

/// What a disconnected session leaves behind for its resume.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Resumable {
    /// The status the user had chosen.
    pub status: Status,
    /// Every guild and channel the client was ever told of in this session; a resume tells it
    /// of those it may no longer see.
    pub known: Known,
    /// For a Discord session, what it identified with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discord: Option<DiscordResumable>,
}

/// What a Discord session identified with, kept for its resume.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct DiscordResumable {
    /// Its intents.
    pub intents: u64,
    /// `(shard id, shard count)`.
    pub shard: (u64, u64),
}

/// Guilds and, per guild, the channels a client has been shown.
pub(crate) type Known = BTreeMap<GuildId, BTreeSet<ChannelId>>;

impl SessionRegistry {
    /// A registry shared with the other nodes on `cluster`, or of this node only.
    pub fn new(cluster: Option<Cluster>) -> Self {
        Self { sessions: Mutex::default(), cluster }
    }

    fn register(&self, session_id: &str, user: &UserId, login: &str, resumable: Resumable) {
        if let Ok(mut sessions) = self.sessions.lock() {
            let now = Instant::now();
            sessions.retain(|_, entry| entry.expires.is_none_or(|expires| expires > now));
            sessions.insert(
                session_id.to_owned(),
                Registered {
                    user: user.clone(),
                    login: login.to_owned(),
                    expires: None,
                    resumable,
                },
            );
        }
    }

    async fn disconnected(
        &self,
        session_id: &str,
        user: &UserId,
        login: &str,
        window: Duration,
        resumable: Resumable,
    ) {
        if let Some(cluster) = &self.cluster {
            let shared = SharedSession { user: user.clone(), login: login.to_owned(), resumable };
            match share(cluster, session_id, &shared, window).await {
                Ok(()) => {
                    self.forget_locally(session_id);
                    return;
                }
                Err(error) => {
                    tracing::warn!(%error, "keeping a gateway session in Redis failed; it can be resumed on this node only");
                    self.keep_locally(session_id, window, shared.resumable);
                    return;
                }
            }
        }
        self.keep_locally(session_id, window, resumable);
    }

    fn keep_locally(&self, session_id: &str, window: Duration, resumable: Resumable) {
        if let Ok(mut sessions) = self.sessions.lock()
            && let Some(entry) = sessions.get_mut(session_id)
        {
            entry.expires = Some(Instant::now() + window);
            entry.resumable = resumable;
        }
    }

    /// Claims a disconnected, unexpired session of `user`, opened with the same login, for
    /// resuming.
    async fn claim(&self, session_id: &str, user: &UserId, login: &str) -> Option<Resumable> {
        if let Some(cluster) = &self.cluster {
            let claimed = CLAIM_SCRIPT
                .key(session_key(cluster, session_id))
                .arg(user.as_str())
                .arg(login)
                .invoke_async::<Option<String>>(&mut cluster.connection())
                .await;
            match claimed {
                Ok(Some(record)) => match serde_json::from_str::<SharedSession>(&record) {
                    Ok(shared) => return Some(shared.resumable),
                    Err(error) => tracing::warn!(%error, "an undecodable gateway session in Redis"),
                },
                Ok(None) => {}
                Err(error) => tracing::warn!(%error, "claiming a gateway session in Redis"),
            }
        }
        self.claim_locally(session_id, user, login)
    }

    fn claim_locally(&self, session_id: &str, user: &UserId, login: &str) -> Option<Resumable> {
        let mut sessions = self.sessions.lock().ok()?;
        let entry = sessions.get_mut(session_id)?;
        let resumable = entry.user == *user
            && entry.login == login
            && entry.expires.is_some_and(|at| at > Instant::now());
        if !resumable {
            return None;
        }
        entry.expires = None;
        Some(entry.resumable.clone())
    }

    /// Forgets a session that can no longer be resumed.
    async fn forget(&self, session_id: &str) {
        if let Some(cluster) = &self.cluster {
            let deleted = redis::cmd("DEL")
                .arg(session_key(cluster, session_id))
                .query_async::<()>(&mut cluster.connection())
                .await;
            if let Err(error) = deleted {
                tracing::warn!(%error, "forgetting a gateway session in Redis");
            }
        }
        self.forget_locally(session_id);
    }

    fn forget_locally(&self, session_id: &str) {
        if let Ok(mut sessions) = self.sessions.lock() {
            sessions.remove(session_id);
        }
    }

    /// Forgets every gateway session opened with a login that was revoked, on every node;
    /// connected ones are closed by the bus message the revocation publishes.
    pub async fn revoke_login(&self, login: &str) {
        if let Ok(mut sessions) = self.sessions.lock() {
            sessions.retain(|_, entry| entry.login != login);
        }
        if let Some(cluster) = &self.cluster {
            let mut connection = cluster.connection();
            let listed = login_sessions_key(cluster, login);
            let revoked = async {
                let ids: Vec<String> =
                    redis::cmd("SMEMBERS").arg(&listed).query_async(&mut connection).await?;
                let mut keys: Vec<String> = ids.iter().map(|id| session_key(cluster, id)).collect();
                keys.push(listed.clone());
                redis::cmd("DEL").arg(keys).query_async::<()>(&mut connection).await
            };
            if let Err(error) = revoked.await {
                // The login itself is gone from the database, so a resume fails to authenticate.
                tracing::warn!(%error, "forgetting a revoked login's gateway sessions in Redis");
            }
        }
    }
}

/// Keeps a disconnected session in Redis for `window`, listed under its login.
async fn share(
    cluster: &Cluster,
    session_id: &str,
    shared: &SharedSession,
    window: Duration,
) -> anyhow::Result<()> {
    let record = serde_json::to_string(shared)?;
    let listed = login_sessions_key(cluster, &shared.login);
    let seconds = window.as_secs().max(1);
    redis::pipe()
        .cmd("SET")
        .arg(session_key(cluster, session_id))
        .arg(record)
        .arg("EX")
        .arg(seconds)
        .ignore()
        .cmd("SADD")
        .arg(&listed)
        .arg(session_id)
        .ignore()
        .cmd("EXPIRE")
        .arg(&listed)
        .arg(seconds)
        .ignore()
        .query_async::<()>(&mut cluster.connection())
        .await?;
    Ok(())
}

fn session_key(cluster: &Cluster, session_id: &str) -> String {
    cluster.key(&["session", session_id])
}

fn login_sessions_key(cluster: &Cluster, login: &str) -> String {
    cluster.key(&["login-sessions", login])
}

/// KEYS: the session. ARGV: the user and login resuming it. Returns the session's record and
/// deletes it, or nothing when it is gone or someone else's.
static CLAIM_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local record = redis.call('GET', KEYS[1])
if not record then return false end
local session = cjson.decode(record)
if session.user ~= ARGV[1] or session.login ~= ARGV[2] then return false end
redis.call('DEL', KEYS[1])
return record
",
    )
});
