//! One gateway connection: handshake, then a loop that forwards bus messages the user may see
//! and answers heartbeats.
//!
//! The socket is written by its own task fed through a bounded queue. Live traffic never waits
//! for a slow client: when the queue is full (or the session lags the bus), the connection is
//! closed with the resumable code 4008, and the client resumes from the durable log. The
//! handshake is different: READY and a resume's replay wait for the writer (up to the heartbeat
//! timeout), and a resumed session goes live only once its client has taken the whole replay,
//! so a client that is catching up never competes with the live queue's limit.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::{SinkExt, StreamExt};
use guildhall_spec::{GuildId, UserId};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;

use super::discord::{self, Identified, ZlibStream};
use super::dispatch::guild_event;
use super::replay::{self, visible_channels};
use super::{Dialect, DiscordResumable, Encoding, Known, Resumable};
use crate::AppState;
use crate::api::{authenticate, views};
use crate::bus::BusMessage;
use crate::guilds::random_id;
use crate::presence::Status;

const OP_DISPATCH: u64 = 0;
const OP_HEARTBEAT: u64 = 1;
const OP_IDENTIFY: u64 = 2;
const OP_PRESENCE: u64 = 3;
const OP_VOICE_STATE: u64 = 4;
const OP_RESUME: u64 = 6;
const OP_RECONNECT: u64 = 7;
const OP_REQUEST_MEMBERS: u64 = 8;
const OP_INVALID_SESSION: u64 = 9;
const OP_HELLO: u64 = 10;
const OP_HEARTBEAT_ACK: u64 = 11;

/// Something went wrong on the server: reconnect (Discord's 4000).
const CLOSE_UNKNOWN_ERROR: u16 = 4000;
const CLOSE_UNKNOWN_OPCODE: u16 = 4001;
const CLOSE_DECODE_ERROR: u16 = 4002;
const CLOSE_NOT_AUTHENTICATED: u16 = 4003;
const CLOSE_AUTHENTICATION_FAILED: u16 = 4004;
const CLOSE_ALREADY_AUTHENTICATED: u16 = 4005;
const CLOSE_TOO_SLOW: u16 = 4008;
const CLOSE_TIMED_OUT: u16 = 4009;

/// The most events replayed on resume; beyond that the client must identify afresh.
const MAX_REPLAY: usize = 10_000;
/// Events read from the log at a time while replaying.
const REPLAY_PAGE: u32 = 500;

/// What the writer task sends.
enum Outgoing {
    Frame(Value),
    Close(u16, &'static str),
    /// From here on frames go through the connection's zlib stream (`compress=zlib-stream`).
    StartCompression,
}

/// Heartbeats a Discord client may send before it identifies (discord.py sends one at once).
const EARLY_HEARTBEATS: usize = 3;

/// Runs a connection to completion.
///
/// `state` comes behind an `Arc`: `AppState` is cheap to clone but 3.4 KB by value, and every
/// connection's task would hold two copies of it for its whole life.
pub(super) async fn run(
    state: std::sync::Arc<AppState>,
    socket: WebSocket,
    encoding: Encoding,
    dialect: Dialect,
) {
    let _counted = crate::metrics::global().gateway_session();
    let (sink, mut stream) = socket.split();
    let (queue, outgoing) = mpsc::channel::<Outgoing>(state.config.gateway.session_queue.max(16));
    let (close_tx, close_rx) = tokio::sync::oneshot::channel::<(u16, &'static str)>();
    let writer = tokio::spawn(write_frames(sink, outgoing, close_rx, encoding));
    let gateway = &state.config.gateway;
    let mut connection = Connection {
        state: std::sync::Arc::clone(&state),
        queue,
        close: Some(close_tx),
        encoding,
        dialect,
        frames: Budget::per_minute(gateway.frames_per_minute),
        presence_updates: Budget::per_minute(gateway.presence_updates_per_minute),
        member_requests: Budget::per_minute(discord::MEMBER_REQUESTS_PER_MINUTE),
    };
    if let Some(session) = connection.serve(&mut stream).await {
        // Cold paths, boxed: a future stored inline would make every connection's task that
        // much larger for its whole life (bench/README.md, "Memory per idle gateway
        // connection").
        let disconnect = Box::pin(state.presence.disconnect(&session.user));
        disconnect.await;
        let resumable = Resumable {
            status: session.status,
            known: session.known,
            discord: session.discord.as_ref().map(|identified| DiscordResumable {
                intents: identified.intents,
                shard: identified.shard,
            }),
        };
        let window = Duration::from_secs(state.config.gateway.resume_window_secs);
        let disconnected = Box::pin(state.sessions.disconnected(
            &session.id,
            &session.user,
            &session.login,
            window,
            resumable,
        ));
        disconnected.await;
    }
    drop(connection);
    // The writer ends once its queue is closed and drained, or after sending a close frame.
    let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;
    // A client still sending when it is closed (over its frame budget, say) would get a TCP
    // reset instead of the close frame: a socket closed with unread data is reset, and the
    // reset discards what the client had not read yet. So what it sends meanwhile is read and
    // dropped until it answers the close, for a moment at most.
    let _ = tokio::time::timeout(CLOSE_LINGER, async {
        while let Some(Ok(_)) = stream.next().await {}
    })
    .await;
}

/// How long a closed connection's socket waits for the client's answer to the close frame.
const CLOSE_LINGER: Duration = Duration::from_secs(1);

async fn write_frames(
    mut sink: futures_util::stream::SplitSink<WebSocket, Message>,
    mut outgoing: mpsc::Receiver<Outgoing>,
    mut close: tokio::sync::oneshot::Receiver<(u16, &'static str)>,
    encoding: Encoding,
) {
    let mut zlib: Option<ZlibStream> = None;
    loop {
        let next = tokio::select! {
            biased;
            Ok((code, reason)) = &mut close => Outgoing::Close(code, reason),
            next = outgoing.recv() => match next { Some(next) => next, None => break },
        };
        match next {
            Outgoing::StartCompression => zlib = Some(ZlibStream::default()),
            Outgoing::Frame(frame) => {
                let message = match &mut zlib {
                    Some(zlib) => match zlib.frame(frame.to_string().as_bytes()) {
                        Ok(bytes) => Some(Message::Binary(bytes.into())),
                        Err(_) => {
                            let close = CloseFrame {
                                code: 1011,
                                reason: Utf8Bytes::from_static("compression failed"),
                            };
                            let _ = sink.send(Message::Close(Some(close))).await;
                            return;
                        }
                    },
                    None => encode(&frame, encoding),
                };
                let Some(message) = message else { continue };
                if sink.send(message).await.is_err() {
                    return;
                }
            }
            Outgoing::Close(code, reason) => {
                let frame = CloseFrame { code, reason: Utf8Bytes::from_static(reason) };
                let _ = tokio::time::timeout(
                    Duration::from_secs(2),
                    sink.send(Message::Close(Some(frame))),
                )
                .await;
                return;
            }
        }
    }
    let _ = sink.close().await;
}

fn encode(frame: &Value, encoding: Encoding) -> Option<Message> {
    match encoding {
        Encoding::Json => Some(Message::Text(Utf8Bytes::from(frame.to_string()))),
        Encoding::Msgpack => {
            rmp_serde::to_vec_named(frame).ok().map(|bytes| Message::Binary(bytes.into()))
        }
    }
}

fn decode(message: &Message, encoding: Encoding) -> Option<Value> {
    match (message, encoding) {
        (Message::Text(text), Encoding::Json) => serde_json::from_str(text).ok(),
        (Message::Binary(bytes), Encoding::Msgpack) => rmp_serde::from_slice(bytes).ok(),
        _ => None,
    }
}

struct Connection {
    state: std::sync::Arc<AppState>,
    queue: mpsc::Sender<Outgoing>,
    close: Option<tokio::sync::oneshot::Sender<(u16, &'static str)>>,
    encoding: Encoding,
    /// Native, or Discord's with its options.
    dialect: Dialect,
    /// Frames the client may still send (every op, heartbeats included).
    frames: Budget,
    /// Presence updates the client may still send.
    presence_updates: Budget,
    /// Member requests (Discord's op 8) the client may still send.
    member_requests: Budget,
}

/// The connection was closed (by the client, or by the server with a close frame already
/// queued); the session, if any, ends.
struct Closed;

/// An established session.
struct Session {
    id: String,
    user: UserId,
    /// The login (bearer token's session) it was opened with; revoking it closes the session.
    login: String,
    /// The status the user chose; kept across a resume.
    status: Status,
    /// Guilds the user is a member of now.
    guilds: HashSet<GuildId>,
    /// Every guild and channel the client was shown (see `replay`).
    known: Known,
    /// Guild events up to this stream position were already delivered (READY or replay).
    replayed_to: i64,
    /// For a Discord session: its intents, shard and application.
    discord: Option<Identified>,
}

impl Connection {
    /// Handshake and live loop. Returns the session if one was established.
    async fn serve(
        &mut self,
        stream: &mut futures_util::stream::SplitStream<WebSocket>,
    ) -> Option<Session> {
        let interval = self.state.config.gateway.heartbeat_interval_ms;
        self.send(json!({"op": OP_HELLO, "d": {"heartbeat_interval": interval}}));
        let deadline = Instant::now() + Duration::from_millis(interval);
        let mut early_heartbeats = 0;
        let frame = loop {
            let first = match tokio::time::timeout_at(deadline, stream.next()).await {
                Ok(Some(Ok(message))) => message,
                Ok(_) => return None,
                Err(_) => {
                    self.close_with(CLOSE_NOT_AUTHENTICATED, "identify timed out");
                    return None;
                }
            };
            let Some(frame) = decode(&first, self.encoding) else {
                self.close_with(CLOSE_DECODE_ERROR, "could not decode frame");
                return None;
            };
            // A Discord client may heartbeat before it identifies.
            if matches!(self.dialect, Dialect::Discord(_))
                && frame["op"].as_u64() == Some(OP_HEARTBEAT)
                && early_heartbeats < EARLY_HEARTBEATS
            {
                early_heartbeats += 1;
                self.send(json!({"op": OP_HEARTBEAT_ACK, "d": null}));
                continue;
            }
            break frame;
        };
        // Subscribe before reading state, so that nothing published in between is missed.
        let mut bus = self.state.bus.subscribe_all();
        // The handshake (READY, or a replay however long) must be taken by the client within
        // the time it has to send its first heartbeat.
        let handshake_deadline = Instant::now() + self.heartbeat_timeout();
        let mut session = match frame["op"].as_u64() {
            Some(op @ (OP_IDENTIFY | OP_RESUME)) => {
                // The handshakes' state is large and short-lived: boxed, it is freed once the
                // session is live instead of staying in every idle connection's task.
                let established = if op == OP_IDENTIFY {
                    Box::pin(self.identify(&frame["d"], handshake_deadline)).await
                } else {
                    Box::pin(self.resume(&frame["d"], handshake_deadline)).await
                };
                match established {
                    Ok(session) => session,
                    // A handshake that failed once the session existed leaves it resumable.
                    Err(Failed::After(session)) => return Some(*session),
                    Err(Failed::Before) => return None,
                }
            }
            Some(_) => {
                self.close_with(CLOSE_NOT_AUTHENTICATED, "identify first");
                return None;
            }
            None => {
                self.close_with(CLOSE_DECODE_ERROR, "missing op");
                return None;
            }
        };
        let _ = self.live(stream, &mut bus, &mut session).await;
        Some(session)
    }

    async fn identify(&mut self, data: &Value, deadline: Instant) -> Result<Session, Failed> {
        let (user, login) = self.authenticate(data).await.map_err(|Closed| Failed::Before)?;
        let discord = match &self.dialect {
            Dialect::Native => None,
            Dialect::Discord(_) => Some(self.discord_identify(&user, data).await?),
        };
        let status = data["status"]
            .as_str()
            .or_else(|| data["presence"]["status"].as_str())
            .and_then(Status::parse)
            .unwrap_or(Status::Online);
        let id = random_id(24);
        let stream_head = self.state.store.stream_head().await.map_err(|_| Failed::Before)?;
        let mut guilds = Vec::new();
        let mut states = Vec::new();
        let mut known = Known::new();
        for guild_id in self.state.store.guilds_of(&user).await.map_err(|_| Failed::Before)? {
            let guild_state =
                self.state.guilds.state(&guild_id).await.map_err(|_| Failed::Before)?;
            if discord.is_none() {
                guilds.push(views::guild(&guild_state, &user, true));
            }
            known.insert(guild_id, visible_channels(&guild_state, &user));
            states.push(guild_state);
        }
        let profile = self.state.store.user(&user).await.ok().flatten().ok_or(Failed::Before)?;
        let ready = match (&discord, &self.dialect) {
            (Some(identified), Dialect::Discord(options)) => identified
                .ready(&self.state, &user, &id, options, &states)
                .await
                .map_err(|_| Failed::Before)?,
            _ => json!({
                "v": 1, "session_id": id, "user": views::own_user(&profile), "guilds": guilds, "seq": stream_head,
            }),
        };
        let resumable = Resumable {
            status,
            known: known.clone(),
            discord: discord.as_ref().map(|identified| DiscordResumable {
                intents: identified.intents,
                shard: identified.shard,
            }),
        };
        self.state.sessions.register(&id, &user, &login, resumable);
        self.state.presence.connect(&user, status).await;
        let guilds = known.keys().cloned().collect();
        let session =
            Session { id, user, login, status, guilds, known, replayed_to: stream_head, discord };
        if self.deliver(discord::READY, ready, Some(stream_head), deadline).await.is_err() {
            return Err(Failed::After(Box::new(session)));
        }
        // Discord's READY names the guilds; a GUILD_CREATE for each follows.
        if let Some(identified) = &session.discord {
            for guild in &states {
                if guild.kind != guildhall_spec::content::GuildKind::Guild {
                    continue;
                }
                let created = match identified.serves(&self.state, guild).await {
                    Ok(true) => identified.guild_create(&self.state, &session.user, guild).await,
                    Ok(false) => continue,
                    Err(error) => Err(error),
                };
                let Ok(created) = created else { return Err(Failed::After(Box::new(session))) };
                if self.deliver("GUILD_CREATE", created, None, deadline).await.is_err() {
                    return Err(Failed::After(Box::new(session)));
                }
            }
        }
        Ok(session)
    }

    /// Checks a Discord IDENTIFY's intents and shard; closes the connection if they are refused.
    async fn discord_identify(
        &mut self,
        user: &UserId,
        data: &Value,
    ) -> Result<Identified, Failed> {
        match discord::identify(&self.state, user, data).await {
            Ok(Ok(identified)) => {
                if matches!(&self.dialect, Dialect::Discord(options) if options.zlib_stream) {
                    let _ = self.queue.try_send(Outgoing::StartCompression);
                }
                Ok(identified)
            }
            Ok(Err(_)) => {
                self.close_with(CLOSE_DECODE_ERROR, "internal error");
                Err(Failed::Before)
            }
            Err((code, reason)) => {
                self.close_with(code, reason);
                Err(Failed::Before)
            }
        }
    }

    async fn resume(&mut self, data: &Value, deadline: Instant) -> Result<Session, Failed> {
        let (user, login) = self.authenticate(data).await.map_err(|Closed| Failed::Before)?;
        let (Some(id), Some(seq)) = (data["session_id"].as_str(), data["seq"].as_i64()) else {
            self.close_with(CLOSE_DECODE_ERROR, "resume needs session_id and seq");
            return Err(Failed::Before);
        };
        let Some(resumable) = self.state.sessions.claim(id, &user, &login).await else {
            self.send(json!({"op": OP_INVALID_SESSION, "d": false}));
            return Err(Failed::Before);
        };
        // A session resumes in the dialect it was opened in.
        let discord = match (&self.dialect, &resumable.discord) {
            (Dialect::Native, None) => None,
            (Dialect::Discord(_), Some(asked)) => {
                let data =
                    json!({"intents": asked.intents, "shard": [asked.shard.0, asked.shard.1]});
                Some(self.discord_identify(&user, &data).await?)
            }
            _ => {
                self.state.sessions.forget(id).await;
                self.send(json!({"op": OP_INVALID_SESSION, "d": false}));
                return Err(Failed::Before);
            }
        };
        let shown = resumable.known.clone();
        let mut session = Session {
            id: id.to_owned(),
            user,
            login,
            status: resumable.status,
            guilds: HashSet::new(),
            known: resumable.known,
            replayed_to: seq,
            discord,
        };
        // From here on the session counts as connected; `run` disconnects it however this ends.
        self.state.presence.connect(&session.user, session.status).await;
        let outcome = match self.replay(&mut session, deadline).await {
            Ok(true) => self.finish_resume(&mut session, deadline).await,
            Ok(false) => {
                // Too much to replay: the client starts afresh, and the session is gone.
                self.state.sessions.forget(&session.id).await;
                self.state.presence.disconnect(&session.user).await;
                self.send(json!({"op": OP_INVALID_SESSION, "d": false}));
                return Err(Failed::Before);
            }
            Err(Closed) => Err(Closed),
        };
        match outcome {
            Ok(()) => Ok(session),
            Err(Closed) => {
                // What was queued may not have reached the client: a later resume must still
                // tell it of everything it had been shown before.
                for (guild_id, channels) in shown {
                    session.known.entry(guild_id).or_default().extend(channels);
                }
                Err(Failed::After(Box::new(session)))
            }
        }
    }

    /// After the replay: the events sequenced while it was written (from the log too), then
    /// what the client lost or gained meanwhile, judged by the state after all of them, then
    /// RESUMED; live traffic starts once the client has taken all of it.
    async fn finish_resume(
        &mut self,
        session: &mut Session,
        deadline: Instant,
    ) -> Result<(), Closed> {
        self.catch_up(session, deadline).await?;
        self.reconcile(session, deadline).await?;
        let resumed = if session.discord.is_some() {
            json!({})
        } else {
            json!({"session_id": session.id, "seq": session.replayed_to})
        };
        self.deliver(discord::RESUMED, resumed, None, deadline).await?;
        self.drained(deadline).await
    }

    /// Replays the log after `session.replayed_to` for the user's guilds. `Ok(false)` if there
    /// is more than a resume may replay.
    async fn replay(&mut self, session: &mut Session, deadline: Instant) -> Result<bool, Closed> {
        let guild_ids = self.state.store.guilds_of(&session.user).await.map_err(|_| Closed)?;
        session.guilds = guild_ids.iter().cloned().collect();
        let mut replayed = 0;
        loop {
            let page = self.replay_page(session, &guild_ids, deadline).await?;
            replayed += page;
            if replayed > MAX_REPLAY {
                return Ok(false);
            }
            if page < REPLAY_PAGE as usize {
                return Ok(true);
            }
        }
    }

    /// Tells the client what it can no longer (or can newly) see, judged by the state now.
    async fn reconcile(&mut self, session: &mut Session, deadline: Instant) -> Result<(), Closed> {
        let mut current = BTreeMap::new();
        for guild_id in &session.guilds {
            let guild_state = self.state.guilds.state(guild_id).await.map_err(|_| Closed)?;
            current.insert(guild_id.clone(), guild_state);
        }
        for (name, data) in replay::reconcile(&mut session.known, &current, &session.user) {
            let guild_id = data["guild_id"].as_str().or_else(|| data["id"].as_str()).unwrap_or("");
            let guild_state = match current.iter().find(|(id, _)| id.as_str() == guild_id) {
                Some((_, state)) => Some(state.clone()),
                None => match guildhall_spec::GuildId::parse(guild_id) {
                    Ok(id) => self.state.guilds.state(&id).await.ok(),
                    Err(_) => None,
                },
            };
            for (name, data) in self.translate(session, name, data, guild_state.as_deref()).await {
                self.deliver(name, data, None, deadline).await?;
            }
        }
        Ok(())
    }

    /// Replays one page of the log after `session.replayed_to`; returns how many events it read.
    async fn replay_page(
        &mut self,
        session: &mut Session,
        guild_ids: &[GuildId],
        deadline: Instant,
    ) -> Result<usize, Closed> {
        let events = self
            .state
            .store
            .events_since(session.replayed_to, guild_ids, REPLAY_PAGE)
            .await
            .map_err(|_| Closed)?;
        let count = events.len();
        for event in events {
            let stream_id = event.stream_id;
            let guild_id = event.guild_id.clone();
            if let Ok(guild_state) = self.state.guilds.state(&guild_id).await {
                let dispatches = replay::replayed(event, guild_state.clone(), &session.user);
                replay::remember(
                    &mut session.known,
                    &guild_id,
                    &guild_state,
                    &session.user,
                    &dispatches,
                );
                for (name, data) in dispatches {
                    for (name, data) in
                        self.translate(session, name, data, Some(&guild_state)).await
                    {
                        self.deliver(name, data, Some(stream_id), deadline).await?;
                    }
                }
            }
            session.replayed_to = stream_id;
        }
        Ok(count)
    }

    /// Waits until the client has taken everything queued, then replays what the log gained
    /// meanwhile; repeats until nothing new is left.
    async fn catch_up(&mut self, session: &mut Session, deadline: Instant) -> Result<(), Closed> {
        loop {
            self.drained(deadline).await?;
            // The user's guilds as they are now: joined or left while the replay was written.
            let guild_ids = self.state.store.guilds_of(&session.user).await.map_err(|_| Closed)?;
            session.guilds = guild_ids.iter().cloned().collect();
            if self.replay_page(session, &guild_ids, deadline).await? == 0 {
                return Ok(());
            }
        }
    }

    /// Waits until the writer has taken every queued frame.
    async fn drained(&mut self, deadline: Instant) -> Result<(), Closed> {
        let all = self.queue.max_capacity();
        let drained = tokio::time::timeout_at(deadline, self.queue.reserve_many(all))
            .await
            .map(|reserved| reserved.is_ok());
        match drained {
            Ok(true) => Ok(()),
            Ok(false) => Err(Closed),
            Err(_) => {
                self.close_with(CLOSE_TOO_SLOW, "too slow to resume; resume again");
                Err(Closed)
            }
        }
    }

    /// The user and login a token belongs to; closes the connection if it is invalid.
    async fn authenticate(&mut self, data: &Value) -> Result<(UserId, String), Closed> {
        let Some(token) = data["token"].as_str() else {
            self.close_with(CLOSE_DECODE_ERROR, "missing token");
            return Err(Closed);
        };
        // Discord libraries send the bare token; some prefix it as in the HTTP header.
        let token = match self.dialect {
            Dialect::Discord(_) => token.strip_prefix("Bot ").unwrap_or(token),
            // A bot connects to the Discord gateway, where its intents hold.
            Dialect::Native if crate::api::discord::bots::is_bot_token(token) => {
                self.close_with(CLOSE_AUTHENTICATION_FAILED, "bot tokens are for /discord/gateway");
                return Err(Closed);
            }
            Dialect::Native => token,
        };
        match authenticate(&self.state, token).await {
            Ok(auth) => Ok((auth.user_id, auth.session_id)),
            Err(_) => {
                self.close_with(CLOSE_AUTHENTICATION_FAILED, "invalid token");
                Err(Closed)
            }
        }
    }

    fn heartbeat_timeout(&self) -> Duration {
        Duration::from_millis(self.state.config.gateway.heartbeat_interval_ms * 3 / 2)
    }

    async fn live(
        &mut self,
        stream: &mut futures_util::stream::SplitStream<WebSocket>,
        bus: &mut broadcast::Receiver<BusMessage>,
        session: &mut Session,
    ) -> Result<(), Closed> {
        let timeout = self.heartbeat_timeout();
        let mut heartbeat_deadline = Instant::now() + timeout;
        loop {
            tokio::select! {
                incoming = stream.next() => {
                    let Some(Ok(message)) = incoming else { return Err(Closed) };
                    if matches!(message, Message::Close(_)) {
                        return Err(Closed);
                    }
                    if matches!(message, Message::Ping(_) | Message::Pong(_)) {
                        continue;
                    }
                    self.handle_client_frame(&message, session, &mut heartbeat_deadline, timeout)
                        .await?;
                }
                published = bus.recv() => match published {
                    Ok(message) => self.forward(&message, session).await?,
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        if matches!(self.dialect, Dialect::Discord(_)) {
                            // Discord's way to say "reconnect and resume": op 7, then the
                            // connection ends once the writer has sent it.
                            if self.queue.try_send(Outgoing::Frame(json!({"op": OP_RECONNECT, "d": null}))).is_ok() {
                                return Err(Closed);
                            }
                        }
                        self.close_with(CLOSE_TOO_SLOW, "fell behind; resume");
                        return Err(Closed);
                    }
                    Err(broadcast::error::RecvError::Closed) => return Err(Closed),
                },
                () = tokio::time::sleep_until(heartbeat_deadline) => {
                    self.close_with(CLOSE_TIMED_OUT, "no heartbeat; resume");
                    return Err(Closed);
                }
            }
        }
    }

    async fn handle_client_frame(
        &mut self,
        message: &Message,
        session: &mut Session,
        heartbeat_deadline: &mut Instant,
        timeout: Duration,
    ) -> Result<(), Closed> {
        if !self.frames.take() {
            self.close_with(CLOSE_TOO_SLOW, "rate limited; resume later");
            return Err(Closed);
        }
        let Some(frame) = decode(message, self.encoding) else {
            self.close_with(CLOSE_DECODE_ERROR, "could not decode frame");
            return Err(Closed);
        };
        match frame["op"].as_u64() {
            Some(OP_HEARTBEAT) => {
                *heartbeat_deadline = Instant::now() + timeout;
                self.send(json!({"op": OP_HEARTBEAT_ACK, "d": null}));
                Ok(())
            }
            Some(OP_PRESENCE) => match frame["d"]["status"].as_str().and_then(Status::parse) {
                Some(_) if !self.presence_updates.take() => {
                    self.close_with(CLOSE_TOO_SLOW, "presence rate limited; resume later");
                    Err(Closed)
                }
                Some(status) => {
                    session.status = status;
                    Box::pin(self.state.presence.set_status(&session.user, status)).await;
                    Ok(())
                }
                None => {
                    self.close_with(CLOSE_DECODE_ERROR, "unknown status");
                    Err(Closed)
                }
            },
            Some(OP_IDENTIFY | OP_RESUME) => {
                self.close_with(CLOSE_ALREADY_AUTHENTICATED, "already authenticated");
                Err(Closed)
            }
            Some(OP_REQUEST_MEMBERS) if session.discord.is_some() => {
                if !self.member_requests.take() {
                    self.close_with(CLOSE_TOO_SLOW, "member requests rate limited; resume later");
                    return Err(Closed);
                }
                let Some(identified) = &session.discord else { return Ok(()) };
                // Built from the cached guild states, which may hold an append not yet on disk.
                if self.state.store.durable().await.is_err() {
                    self.close_with(CLOSE_UNKNOWN_ERROR, "try again");
                    return Err(Closed);
                }
                let chunks =
                    Box::pin(identified.member_chunks(&self.state, &session.user, &frame["d"]))
                        .await
                        .unwrap_or_default();
                for chunk in chunks {
                    self.try_dispatch(discord::GUILD_MEMBERS_CHUNK, chunk, None)?;
                }
                Ok(())
            }
            // Voice through Discord's gateway is not offered; the request is ignored.
            Some(OP_VOICE_STATE) if session.discord.is_some() => Ok(()),
            _ => {
                self.close_with(CLOSE_UNKNOWN_OPCODE, "unknown opcode");
                Err(Closed)
            }
        }
    }

    async fn forward(&mut self, message: &BusMessage, session: &mut Session) -> Result<(), Closed> {
        match message {
            BusMessage::GuildEvent(event) => {
                // Already delivered by READY or the resume's replay.
                if event.stream_id <= session.replayed_to {
                    return Ok(());
                }
                if event.after.members.contains_key(&session.user) && !event.after.deleted {
                    session.guilds.insert(event.guild_id.clone());
                } else {
                    session.guilds.remove(&event.guild_id);
                }
                let dispatches = guild_event(event, &session.user);
                replay::remember(
                    &mut session.known,
                    &event.guild_id,
                    &event.after,
                    &session.user,
                    &dispatches,
                );
                for (name, data) in dispatches {
                    for (name, data) in
                        self.translate(session, name, data, Some(&event.after)).await
                    {
                        self.try_dispatch(name, data, Some(event.stream_id))?;
                    }
                }
            }
            BusMessage::Typing { guild_id, channel_id, user_id, ts, state } => {
                if user_id != &session.user && state.can_view(&session.user, channel_id) {
                    let data = json!({"guild_id": guild_id, "channel_id": channel_id, "user_id": user_id, "ts": ts});
                    for (name, data) in
                        self.translate(session, "TYPING_START", data, Some(state)).await
                    {
                        self.try_dispatch(name, data, None)?;
                    }
                }
            }
            _ if session.discord.is_some() => {
                return Box::pin(self.forward_discord(message, session)).await;
            }
            BusMessage::Presence { user_id, status } => {
                if self.shares_guild(session, user_id).await {
                    self.try_dispatch(
                        "PRESENCE_UPDATE",
                        json!({"user_id": user_id, "status": status}),
                        None,
                    )?;
                }
            }
            BusMessage::UserUpdate { user_id, profile } => {
                if user_id == &session.user || self.shares_guild(session, user_id).await {
                    self.try_dispatch("USER_UPDATE", profile.clone(), None)?;
                }
            }
            BusMessage::IdentityUpdate { user_id, identity_key } => {
                if user_id == &session.user || self.shares_guild(session, user_id).await {
                    let data = json!({"user_id": user_id, "identity_key": identity_key});
                    self.try_dispatch("IDENTITY_UPDATE", data, None)?;
                }
            }
            BusMessage::Relationship { user_id, relationship } => {
                if user_id == &session.user {
                    self.try_dispatch("RELATIONSHIP_UPDATE", relationship.clone(), None)?;
                }
            }
            BusMessage::ProposalRefused { user_id, data } => {
                if user_id == &session.user {
                    self.try_dispatch("PROPOSAL_REFUSED", data.clone(), None)?;
                }
            }
            BusMessage::VoiceState { voice_state, state, .. } => {
                // A user hears their own state even once no longer a member (removed from voice
                // on a kick or ban).
                if state.members.contains_key(&session.user) || voice_state.user_id == session.user
                {
                    let data = serde_json::to_value(voice_state).unwrap_or_default();
                    self.try_dispatch("VOICE_STATE_UPDATE", data, None)?;
                }
            }
            BusMessage::ToLogin { login, name, data } => {
                if login == &session.login {
                    self.try_dispatch(name, Value::clone(data), None)?;
                }
            }
            BusMessage::DeviceListUpdate { user_id, hash, watchers } => {
                if user_id == &session.user
                    || watchers.contains(&session.user)
                    || self.shares_guild(session, user_id).await
                {
                    let data = json!({"user_id": user_id, "device_list_hash": hash});
                    self.try_dispatch("DEVICE_LIST_UPDATE", data, None)?;
                }
            }
            BusMessage::LoginRevoked { login } => {
                if login == &session.login {
                    self.close_with(CLOSE_AUTHENTICATION_FAILED, "session revoked");
                    return Err(Closed);
                }
            }
        }
        Ok(())
    }

    /// Translates a native dispatch for a Discord session (a native session gets it as it is).
    async fn translate(
        &self,
        session: &Session,
        name: &'static str,
        data: Value,
        guild: Option<&guildhall_spec::state::GuildState>,
    ) -> Vec<(&'static str, Value)> {
        let Some(identified) = &session.discord else { return vec![(name, data)] };
        let Some(guild) = guild else { return Vec::new() };
        let translated = identified.translate(&self.state, &session.user, name, &data, guild);
        match Box::pin(translated).await {
            Ok(translated) => translated.into_iter().collect(),
            // Logged where it arose; the client misses this one dispatch, not the session.
            Err(_) => Vec::new(),
        }
    }

    /// The bus messages besides guild events and typing, for a Discord session: presences of
    /// users it shares a guild with, its own profile changes, and a revoked login. The rest
    /// (E2E, identity, relationships, voice) has no Discord counterpart.
    async fn forward_discord(
        &mut self,
        message: &BusMessage,
        session: &mut Session,
    ) -> Result<(), Closed> {
        let Some(identified) = session.discord.clone() else { return Ok(()) };
        match message {
            BusMessage::Presence { user_id, status }
                if user_id != &session.user && identified.sees_presences() =>
            {
                let mut states = Vec::new();
                for guild_id in &session.guilds {
                    if let Ok(guild_state) = self.state.guilds.state(guild_id).await {
                        states.push(guild_state);
                    }
                }
                let updates = identified
                    .presences(&self.state, user_id, status, &states)
                    .await
                    .unwrap_or_default();
                for update in updates {
                    self.try_dispatch(discord::PRESENCE_UPDATE, update, None)?;
                }
            }
            BusMessage::UserUpdate { user_id, .. } if user_id == &session.user => {
                let render = crate::api::discord::objects::Render::new(&self.state);
                if let Ok(user) = render.user(user_id).await {
                    self.try_dispatch(discord::USER_UPDATE, user, None)?;
                }
            }
            BusMessage::LoginRevoked { login } if login == &session.login => {
                self.close_with(CLOSE_AUTHENTICATION_FAILED, "session revoked");
                return Err(Closed);
            }
            _ => {}
        }
        Ok(())
    }

    async fn shares_guild(&self, session: &Session, other: &UserId) -> bool {
        for guild_id in &session.guilds {
            if let Ok(guild_state) = self.state.guilds.state(guild_id).await
                && guild_state.members.contains_key(other)
            {
                return true;
            }
        }
        false
    }

    /// Queues a live dispatch; a full queue means the client is too slow, and it is
    /// disconnected.
    fn try_dispatch(&mut self, name: &str, data: Value, seq: Option<i64>) -> Result<(), Closed> {
        let frame = json!({"op": OP_DISPATCH, "t": name, "s": seq, "d": data});
        match self.queue.try_send(Outgoing::Frame(frame)) {
            Ok(()) => Ok(()),
            Err(_) => {
                self.close_with(CLOSE_TOO_SLOW, "too slow; resume");
                Err(Closed)
            }
        }
    }

    /// Queues a handshake dispatch (READY, a replayed event), waiting for the writer until
    /// `deadline` instead of overflowing.
    async fn deliver(
        &mut self,
        name: &str,
        data: Value,
        seq: Option<i64>,
        deadline: Instant,
    ) -> Result<(), Closed> {
        // Read from the store, the handshake may show appends not yet on disk (live events
        // come from the bus, which carries only durable ones).
        if self.state.store.durable().await.is_err() {
            self.close_with(CLOSE_UNKNOWN_ERROR, "try again");
            return Err(Closed);
        }
        let frame = Outgoing::Frame(json!({"op": OP_DISPATCH, "t": name, "s": seq, "d": data}));
        match tokio::time::timeout_at(deadline, self.queue.send(frame)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Closed),
            Err(_) => {
                self.close_with(CLOSE_TOO_SLOW, "too slow to resume; resume again");
                Err(Closed)
            }
        }
    }

    fn send(&mut self, frame: Value) {
        if self.queue.try_send(Outgoing::Frame(frame)).is_err() {
            self.close_with(CLOSE_TOO_SLOW, "too slow; resume");
        }
    }

    fn close_with(&mut self, code: u16, reason: &'static str) {
        if let Some(close) = self.close.take() {
            let _ = close.send((code, reason));
        }
    }
}

/// How a handshake failed.
enum Failed {
    /// Before a session existed, or with the session invalidated: nothing to keep.
    Before,
    /// Once the session existed (and counted as connected): it stays resumable.
    After(Box<Session>),
}

/// A token bucket of frames per minute for one connection.
struct Budget {
    per_minute: f64,
    tokens: f64,
    updated: Instant,
}

impl Budget {
    fn per_minute(per_minute: u32) -> Self {
        let per_minute = f64::from(per_minute.max(1));
        Self { per_minute, tokens: per_minute, updated: Instant::now() }
    }

    /// Takes one frame's worth; `false` once the budget is spent.
    fn take(&mut self) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.updated).as_secs_f64() * self.per_minute / 60.0;
        self.tokens = (self.tokens + refill).min(self.per_minute);
        self.updated = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}
