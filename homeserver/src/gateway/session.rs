//! One gateway connection: handshake, then a loop that forwards bus messages the user may see
//! and answers heartbeats.
//!
//! The socket is written by its own task fed through a bounded queue. The session never waits
//! for a slow client: when the queue is full (or the session lags the bus), it closes the
//! connection with the resumable code 4008, and the client resumes from the durable log.

use std::collections::HashSet;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::{SinkExt, StreamExt};
use guildhall_spec::{GuildId, UserId};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;

use super::Encoding;
use super::dispatch::guild_event;
use crate::AppState;
use crate::api::{authenticate, views};
use crate::bus::BusMessage;
use crate::guilds::random_id;
use crate::presence::Status;

const OP_DISPATCH: u64 = 0;
const OP_HEARTBEAT: u64 = 1;
const OP_IDENTIFY: u64 = 2;
const OP_PRESENCE: u64 = 3;
const OP_RESUME: u64 = 6;
const OP_INVALID_SESSION: u64 = 9;
const OP_HELLO: u64 = 10;
const OP_HEARTBEAT_ACK: u64 = 11;

const CLOSE_UNKNOWN_OPCODE: u16 = 4001;
const CLOSE_DECODE_ERROR: u16 = 4002;
const CLOSE_NOT_AUTHENTICATED: u16 = 4003;
const CLOSE_AUTHENTICATION_FAILED: u16 = 4004;
const CLOSE_ALREADY_AUTHENTICATED: u16 = 4005;
const CLOSE_TOO_SLOW: u16 = 4008;
const CLOSE_TIMED_OUT: u16 = 4009;

/// The most events replayed on resume; beyond that the client must identify afresh.
const MAX_REPLAY: u32 = 10_000;

/// What the writer task sends.
enum Outgoing {
    Frame(Value),
    Close(u16, &'static str),
}

/// Runs a connection to completion.
pub(super) async fn run(state: AppState, socket: WebSocket, encoding: Encoding) {
    let (sink, mut stream) = socket.split();
    let (queue, outgoing) = mpsc::channel::<Outgoing>(state.config.gateway.session_queue.max(16));
    let (close_tx, close_rx) = tokio::sync::oneshot::channel::<(u16, &'static str)>();
    let writer = tokio::spawn(write_frames(sink, outgoing, close_rx, encoding));
    let mut connection =
        Connection { state: state.clone(), queue, close: Some(close_tx), encoding };
    let outcome = connection.serve(&mut stream).await;
    if let Some((user, session_id)) = outcome {
        state.presence.disconnect(&user);
        state.sessions.disconnected(
            &session_id,
            Duration::from_secs(state.config.gateway.resume_window_secs),
        );
    }
    drop(connection);
    // The writer ends once its queue is closed and drained, or after sending a close frame.
    let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;
}

async fn write_frames(
    mut sink: futures_util::stream::SplitSink<WebSocket, Message>,
    mut outgoing: mpsc::Receiver<Outgoing>,
    mut close: tokio::sync::oneshot::Receiver<(u16, &'static str)>,
    encoding: Encoding,
) {
    loop {
        let next = tokio::select! {
            biased;
            Ok((code, reason)) = &mut close => Outgoing::Close(code, reason),
            next = outgoing.recv() => match next { Some(next) => next, None => break },
        };
        match next {
            Outgoing::Frame(frame) => {
                let Some(message) = encode(&frame, encoding) else { continue };
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
    state: AppState,
    queue: mpsc::Sender<Outgoing>,
    close: Option<tokio::sync::oneshot::Sender<(u16, &'static str)>>,
    encoding: Encoding,
}

/// Why the live loop stopped.
enum Stop {
    /// The client went away or broke the protocol.
    Closed,
}

impl Connection {
    /// Handshake and live loop. Returns the user and session id if a session was established.
    async fn serve(
        &mut self,
        stream: &mut futures_util::stream::SplitStream<WebSocket>,
    ) -> Option<(UserId, String)> {
        let interval = self.state.config.gateway.heartbeat_interval_ms;
        self.send(json!({"op": OP_HELLO, "d": {"heartbeat_interval": interval}}));
        let deadline = Instant::now() + Duration::from_millis(interval);
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
        // Subscribe before reading state, so that nothing published in between is missed.
        let mut bus = self.state.bus.subscribe();
        let (user, session_id, guilds, replayed_to) = match frame["op"].as_u64() {
            Some(OP_IDENTIFY) => self.identify(&frame["d"]).await?,
            Some(OP_RESUME) => self.resume(&frame["d"]).await?,
            Some(_) => {
                self.close_with(CLOSE_NOT_AUTHENTICATED, "identify first");
                return None;
            }
            None => {
                self.close_with(CLOSE_DECODE_ERROR, "missing op");
                return None;
            }
        };
        let mut session = Session { user: user.clone(), guilds, replayed_to };
        let _ = self.live(stream, &mut bus, &mut session).await;
        Some((user, session_id))
    }

    async fn identify(&mut self, data: &Value) -> Option<(UserId, String, HashSet<GuildId>, i64)> {
        let user = self.authenticate(data).await?;
        let status = data["status"].as_str().and_then(Status::parse).unwrap_or(Status::Online);
        let session_id = random_id(24);
        let stream_head = self.state.store.stream_head().await.ok()?;
        let mut guilds = Vec::new();
        let mut guild_ids = HashSet::new();
        for guild_id in self.state.store.guilds_of(&user).await.ok()? {
            let guild_state = self.state.guilds.state(&guild_id).await.ok()?;
            guilds.push(views::guild(&guild_state, &user, true));
            guild_ids.insert(guild_id);
        }
        let profile = self.state.store.user(&user).await.ok()??;
        self.state.sessions.register(&session_id, &user);
        self.state.presence.connect(&user, status);
        let ready = json!({
            "v": 1, "session_id": session_id, "user": views::own_user(&profile), "guilds": guilds, "seq": stream_head,
        });
        self.dispatch("READY", ready, Some(stream_head)).await;
        Some((user, session_id, guild_ids, stream_head))
    }

    async fn resume(&mut self, data: &Value) -> Option<(UserId, String, HashSet<GuildId>, i64)> {
        let user = self.authenticate(data).await?;
        let (Some(session_id), Some(seq)) = (data["session_id"].as_str(), data["seq"].as_i64())
        else {
            self.close_with(CLOSE_DECODE_ERROR, "resume needs session_id and seq");
            return None;
        };
        if !self.state.sessions.claim(session_id, &user) {
            self.send(json!({"op": OP_INVALID_SESSION, "d": false}));
            return None;
        }
        let guild_ids: Vec<GuildId> = self.state.store.guilds_of(&user).await.ok()?;
        let events = self.state.store.events_since(seq, &guild_ids, MAX_REPLAY + 1).await.ok()?;
        if events.len() > MAX_REPLAY as usize {
            self.send(json!({"op": OP_INVALID_SESSION, "d": false}));
            return None;
        }
        let mut last = seq;
        for event in events {
            let Ok(guild_state) = self.state.guilds.state(&event.guild_id).await else { continue };
            let Some(message) = replayed_message(event, guild_state) else { continue };
            for (name, data) in guild_event(&message, &user) {
                self.dispatch(name, data, Some(message.stream_id)).await;
            }
            last = message.stream_id;
        }
        self.state.presence.connect(&user, Status::Online);
        self.dispatch("RESUMED", json!({"session_id": session_id, "seq": last}), None).await;
        Some((user, session_id.to_owned(), guild_ids.into_iter().collect(), last))
    }

    async fn authenticate(&mut self, data: &Value) -> Option<UserId> {
        let Some(token) = data["token"].as_str() else {
            self.close_with(CLOSE_DECODE_ERROR, "missing token");
            return None;
        };
        match authenticate(&self.state, token).await {
            Ok(auth) => Some(auth.user_id),
            Err(_) => {
                self.close_with(CLOSE_AUTHENTICATION_FAILED, "invalid token");
                None
            }
        }
    }

    async fn live(
        &mut self,
        stream: &mut futures_util::stream::SplitStream<WebSocket>,
        bus: &mut broadcast::Receiver<BusMessage>,
        session: &mut Session,
    ) -> Result<(), Stop> {
        let timeout =
            Duration::from_millis(self.state.config.gateway.heartbeat_interval_ms * 3 / 2);
        let mut heartbeat_deadline = Instant::now() + timeout;
        loop {
            tokio::select! {
                incoming = stream.next() => {
                    let Some(Ok(message)) = incoming else { return Err(Stop::Closed) };
                    if matches!(message, Message::Close(_)) {
                        return Err(Stop::Closed);
                    }
                    if matches!(message, Message::Ping(_) | Message::Pong(_)) {
                        continue;
                    }
                    self.handle_client_frame(&message, session, &mut heartbeat_deadline, timeout)?;
                }
                published = bus.recv() => match published {
                    Ok(message) => self.forward(&message, session).await?,
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        self.close_with(CLOSE_TOO_SLOW, "fell behind; resume");
                        return Err(Stop::Closed);
                    }
                    Err(broadcast::error::RecvError::Closed) => return Err(Stop::Closed),
                },
                () = tokio::time::sleep_until(heartbeat_deadline) => {
                    self.close_with(CLOSE_TIMED_OUT, "no heartbeat; resume");
                    return Err(Stop::Closed);
                }
            }
        }
    }

    fn handle_client_frame(
        &mut self,
        message: &Message,
        session: &Session,
        heartbeat_deadline: &mut Instant,
        timeout: Duration,
    ) -> Result<(), Stop> {
        let Some(frame) = decode(message, self.encoding) else {
            self.close_with(CLOSE_DECODE_ERROR, "could not decode frame");
            return Err(Stop::Closed);
        };
        match frame["op"].as_u64() {
            Some(OP_HEARTBEAT) => {
                *heartbeat_deadline = Instant::now() + timeout;
                self.send(json!({"op": OP_HEARTBEAT_ACK, "d": null}));
                Ok(())
            }
            Some(OP_PRESENCE) => match frame["d"]["status"].as_str().and_then(Status::parse) {
                Some(status) => {
                    self.state.presence.set_status(&session.user, status);
                    Ok(())
                }
                None => {
                    self.close_with(CLOSE_DECODE_ERROR, "unknown status");
                    Err(Stop::Closed)
                }
            },
            Some(OP_IDENTIFY | OP_RESUME) => {
                self.close_with(CLOSE_ALREADY_AUTHENTICATED, "already authenticated");
                Err(Stop::Closed)
            }
            _ => {
                self.close_with(CLOSE_UNKNOWN_OPCODE, "unknown opcode");
                Err(Stop::Closed)
            }
        }
    }

    async fn forward(&mut self, message: &BusMessage, session: &mut Session) -> Result<(), Stop> {
        match message {
            BusMessage::GuildEvent(event) => {
                // Already delivered by the resume replay.
                if event.stream_id <= session.replayed_to {
                    return Ok(());
                }
                if event.after.members.contains_key(&session.user) && !event.after.deleted {
                    session.guilds.insert(event.guild_id.clone());
                } else {
                    session.guilds.remove(&event.guild_id);
                }
                for (name, data) in guild_event(event, &session.user) {
                    self.try_dispatch(name, data, Some(event.stream_id))?;
                }
            }
            BusMessage::Typing { guild_id, channel_id, user_id, ts, state } => {
                if user_id != &session.user && state.can_view(&session.user, channel_id) {
                    let data = json!({"guild_id": guild_id, "channel_id": channel_id, "user_id": user_id, "ts": ts});
                    self.try_dispatch("TYPING_START", data, None)?;
                }
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
            BusMessage::Relationship { user_id, relationship } => {
                if user_id == &session.user {
                    self.try_dispatch("RELATIONSHIP_UPDATE", relationship.clone(), None)?;
                }
            }
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

    /// Queues a dispatch; a full queue means the client is too slow, and it is disconnected.
    fn try_dispatch(&mut self, name: &str, data: Value, seq: Option<i64>) -> Result<(), Stop> {
        let frame = json!({"op": OP_DISPATCH, "t": name, "s": seq, "d": data});
        match self.queue.try_send(Outgoing::Frame(frame)) {
            Ok(()) => Ok(()),
            Err(_) => {
                self.close_with(CLOSE_TOO_SLOW, "too slow; resume");
                Err(Stop::Closed)
            }
        }
    }

    /// Queues a dispatch during the handshake (READY, a resume's replay).
    async fn dispatch(&mut self, name: &str, data: Value, seq: Option<i64>) {
        // The handshake (READY, a resume's replay) may be larger than the live queue: it waits
        // for the writer instead of overflowing. Only live bus traffic must never wait.
        let frame = json!({"op": OP_DISPATCH, "t": name, "s": seq, "d": data});
        if self.queue.send(Outgoing::Frame(frame)).await.is_err() {
            self.close_with(CLOSE_TOO_SLOW, "connection gone");
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

struct Session {
    user: UserId,
    guilds: HashSet<GuildId>,
    /// Bus events up to this stream position were already delivered (identify or resume).
    replayed_to: i64,
}

/// Rebuilds a bus message from a stored event for replay, judged against the current state.
fn replayed_message(
    event: crate::store::StoredEvent,
    state: std::sync::Arc<guildhall_spec::state::GuildState>,
) -> Option<crate::bus::GuildEventMessage> {
    let event_type = event.event.get("type")?.as_str()?;
    let content = guildhall_spec::content::EventContent::parse(
        event_type,
        event.event.get("content")?.as_object()?,
    )
    .ok()?;
    let sender = guildhall_spec::UserId::parse(event.event.get("sender")?.as_str()?).ok()?;
    let origin_ts = event.event.get("origin_ts")?.as_u64()?;
    Some(crate::bus::GuildEventMessage {
        stream_id: event.stream_id,
        guild_id: event.guild_id,
        event_id: event.event_id,
        event: event.event,
        content,
        sender,
        origin_ts,
        before: Some(std::sync::Arc::clone(&state)),
        after: state,
    })
}
