//! The gateway: a WebSocket (`/gateway?encoding=json`) that identifies, keeps its heartbeat,
//! and yields the server's dispatches as a [`Stream`] of [`GatewayEvent`]s.
//!
//! A background task owns the socket. When the connection drops (or the server closes it with
//! a resumable code, or stops acknowledging heartbeats) the task reconnects and resumes the
//! session from the last stream position it saw, so the server replays what was missed and
//! says [`GatewayEvent::Resumed`]. When the server cannot resume (its resume window passed,
//! or it restarted) the task identifies afresh and yields a new [`GatewayEvent::Ready`]:
//! dispatches between the two may have been missed, and a client should reload what it shows.
//! A refused token (close code 4004) ends the stream with [`Error::GatewayClosed`].
//! Dropping the [`Gateway`] closes the connection.
//!
//! Events wait in a buffer between the task and the reader; [`Gateway::next_with_arrival`]
//! also says when each one's frame was read from the connection, for measuring latency
//! without the reader's own delays.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, Stream, StreamExt as _};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, tungstenite};
use url::Url;

use crate::e2e::{DeviceListUpdate, InboxItem, OneTimeKeysLow};
use crate::error::{Error, Result};
use crate::types::{Guild, Message, User};

const OP_DISPATCH: u64 = 0;
const OP_HEARTBEAT: u64 = 1;
const OP_IDENTIFY: u64 = 2;
const OP_RESUME: u64 = 6;
const OP_INVALID_SESSION: u64 = 9;
const OP_HELLO: u64 = 10;
const OP_HEARTBEAT_ACK: u64 = 11;

/// Close codes after which reconnecting cannot help: unknown opcode, decode error,
/// authentication failed (or the login was revoked), already authenticated. (4003, not
/// authenticated, also ends a handshake that was too slow, which another attempt may not be.)
const FATAL_CLOSE_CODES: [u16; 4] = [4001, 4002, 4004, 4005];

/// How long the handshake (connect, hello, READY) may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// Reconnection attempts after a lost connection before the stream ends with the last error.
const RECONNECT_ATTEMPTS: u32 = 10;
/// The first wait before reconnecting; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Dispatches buffered for a consumer that is not reading. When it is full the connection stops
/// being read, the server eventually closes it as too slow, and the task resumes.
const EVENT_BUFFER: usize = 1024;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// An event as the task hands it over: with the moment its frame was read (or the error
/// happened).
type Arrival = (Result<GatewayEvent>, Instant);

/// A live gateway connection. Read it with [`Gateway::next`] or as a [`Stream`].
#[derive(Debug)]
pub struct Gateway {
    ready: Ready,
    events: mpsc::Receiver<Arrival>,
}

/// What the server says once a connection is identified.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Ready {
    /// The gateway session, for resuming.
    pub session_id: String,
    /// The account.
    pub user: User,
    /// Its guilds and direct messages, with their channels and members (only the user's own
    /// member in a [`large`](Guild::large) guild).
    pub guilds: Vec<Guild>,
    /// The stream position the session starts at.
    pub seq: i64,
}

/// Something the gateway said.
#[derive(Debug, Clone, PartialEq)]
pub enum GatewayEvent {
    /// A message was sent in a channel the account can see (`MESSAGE_CREATE`).
    MessageCreate(Message),
    /// The connection was lost and a new session started: what happened in between may have
    /// been missed.
    Ready(Box<Ready>),
    /// The connection was lost and resumed: every dispatch missed meanwhile came before this.
    Resumed,
    /// A to-device message for this login's device (`TO_DEVICE`, spec 17.6): hand it to
    /// [`crate::e2e::Device::handle`]. The inbox is the record; this only saves a read.
    ToDevice(InboxItem),
    /// The device's one-time keys are running out (`ONE_TIME_KEYS_LOW`, spec 17.6).
    OneTimeKeysLow(OneTimeKeysLow),
    /// A user's device list changed (`DEVICE_LIST_UPDATE`, spec 17.6).
    DeviceListUpdate(DeviceListUpdate),
    /// Any other dispatch, e.g. `MESSAGE_UPDATE`, `GUILD_CREATE`, `PROPOSAL_REFUSED`.
    Other {
        /// The dispatch name (`t`).
        name: String,
        /// Its data (`d`).
        data: Value,
    },
}

impl Gateway {
    /// Connects to `url`, identifies with `token` and waits for `READY`.
    pub(crate) async fn connect(url: Url, token: &str) -> Result<Self> {
        let (mut socket, interval) = open(&url).await?;
        send(&mut socket, OP_IDENTIFY, &Identify { token }).await?;
        let ready = within_handshake(read_ready(&mut socket)).await?;
        let (sender, events) = mpsc::channel(EVENT_BUFFER);
        let driver = Driver {
            url,
            token: token.to_owned(),
            session_id: ready.session_id.clone(),
            seq: ready.seq,
            events: sender,
        };
        tokio::spawn(driver.run(socket, interval));
        Ok(Self { ready, events })
    }

    /// The `READY` the connection started with.
    pub fn ready(&self) -> &Ready {
        &self.ready
    }

    /// The next event; `None` once the connection is closed for good (after an error, which
    /// comes first).
    pub async fn next(&mut self) -> Option<Result<GatewayEvent>> {
        self.next_with_arrival().await.map(|(event, _)| event)
    }

    /// The next event, as [`Gateway::next`], with the moment its frame was read from the
    /// connection. Events wait in a buffer until they are read, so the moment this returns can
    /// be later by however long the caller took to ask; the arrival is what a latency
    /// measurement wants.
    pub async fn next_with_arrival(&mut self) -> Option<(Result<GatewayEvent>, Instant)> {
        self.events.recv().await
    }
}

impl Stream for Gateway {
    type Item = Result<GatewayEvent>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.events.poll_recv(cx).map(|arrival| arrival.map(|(event, _)| event))
    }
}

/// The task that owns the socket.
struct Driver {
    url: Url,
    token: String,
    session_id: String,
    /// The last stream position seen, which a resume starts after.
    seq: i64,
    events: mpsc::Sender<Arrival>,
}

/// How a connection ended.
enum Ended {
    /// The [`Gateway`] was dropped.
    Dropped,
    /// The connection was lost, or closed with a resumable code.
    Lost,
    /// Reconnecting cannot help.
    Fatal(Error),
}

/// One turn of a connection's loop.
enum Step {
    /// A frame (or the connection's end), and when it was read.
    Frame(Option<std::result::Result<tungstenite::Message, tungstenite::Error>>, Instant),
    Heartbeat,
    Dropped,
}

impl Driver {
    async fn run(mut self, mut socket: Socket, mut interval: Duration) {
        loop {
            match self.serve(&mut socket, interval).await {
                Ended::Dropped => {
                    let _ = socket.close(None).await;
                    return;
                }
                Ended::Fatal(error) => {
                    let _ = self.events.send((Err(error), Instant::now())).await;
                    return;
                }
                Ended::Lost => {}
            }
            match self.reconnect().await {
                Ok(Some((again, hello))) => (socket, interval) = (again, hello),
                Ok(None) => return,
                Err(error) => {
                    let _ = self.events.send((Err(error), Instant::now())).await;
                    return;
                }
            }
        }
    }

    /// Reads frames and keeps the heartbeat until the connection ends.
    async fn serve(&mut self, socket: &mut Socket, interval: Duration) -> Ended {
        // Beat twice per interval: the server allows 1.5 intervals of silence, and a busy
        // machine may be late.
        let period = (interval / 2).max(Duration::from_millis(100));
        let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut acknowledged = true;
        loop {
            let step = tokio::select! {
                frame = socket.next() => Step::Frame(frame, Instant::now()),
                _ = heartbeat.tick() => Step::Heartbeat,
                () = self.events.closed() => Step::Dropped,
            };
            let (message, arrived) = match step {
                Step::Dropped => return Ended::Dropped,
                Step::Heartbeat => {
                    // No answer to the last beat: the connection is dead without knowing it.
                    if !acknowledged {
                        return Ended::Lost;
                    }
                    acknowledged = false;
                    if send(socket, OP_HEARTBEAT, &Some(self.seq)).await.is_err() {
                        return Ended::Lost;
                    }
                    continue;
                }
                Step::Frame(Some(Ok(message)), arrived) => (message, arrived),
                Step::Frame(Some(Err(_)) | None, _) => return Ended::Lost,
            };
            let frame = match message {
                tungstenite::Message::Text(text) => match serde_json::from_str::<Frame>(&text) {
                    Ok(frame) => frame,
                    Err(error) => return Ended::Fatal(Error::GatewayProtocol(error.to_string())),
                },
                tungstenite::Message::Close(frame) => return closed(frame.as_ref()),
                _ => continue,
            };
            let answered = match frame.op {
                OP_DISPATCH => {
                    if let Some(seq) = frame.s {
                        self.seq = seq;
                    }
                    let ready = frame.t.as_deref() == Some("READY");
                    let event = match self.dispatch(frame) {
                        Ok(event) => event,
                        // Without a session the connection is of no use; any other malformed
                        // dispatch is skipped (a to-device message stays in the inbox, which
                        // is the record) rather than ending the stream for every event after.
                        Err(error) if ready => return Ended::Fatal(error),
                        Err(_) => continue,
                    };
                    if self.events.send((Ok(event), arrived)).await.is_err() {
                        return Ended::Dropped;
                    }
                    Ok(())
                }
                OP_HEARTBEAT_ACK => {
                    acknowledged = true;
                    Ok(())
                }
                // The server wants a beat now.
                OP_HEARTBEAT => send(socket, OP_HEARTBEAT, &Some(self.seq)).await,
                // The session cannot be resumed: start a new one on this connection.
                OP_INVALID_SESSION => {
                    send(socket, OP_IDENTIFY, &Identify { token: &self.token }).await
                }
                _ => Ok(()),
            };
            if answered.is_err() {
                return Ended::Lost;
            }
        }
    }

    /// The event a dispatch frame stands for; a fresh `READY` becomes the session resumed from
    /// now on.
    fn dispatch(&mut self, frame: Frame) -> Result<GatewayEvent> {
        let name = frame.t.unwrap_or_default();
        let malformed = |error: serde_json::Error| {
            Error::GatewayProtocol(format!("malformed {name} dispatch: {error}"))
        };
        Ok(match name.as_str() {
            "MESSAGE_CREATE" => {
                GatewayEvent::MessageCreate(serde_json::from_value(frame.d).map_err(malformed)?)
            }
            "READY" => {
                let ready: Ready = serde_json::from_value(frame.d).map_err(malformed)?;
                self.session_id.clone_from(&ready.session_id);
                self.seq = ready.seq;
                GatewayEvent::Ready(Box::new(ready))
            }
            "RESUMED" => GatewayEvent::Resumed,
            "TO_DEVICE" => {
                GatewayEvent::ToDevice(serde_json::from_value(frame.d).map_err(malformed)?)
            }
            "ONE_TIME_KEYS_LOW" => {
                GatewayEvent::OneTimeKeysLow(serde_json::from_value(frame.d).map_err(malformed)?)
            }
            "DEVICE_LIST_UPDATE" => {
                GatewayEvent::DeviceListUpdate(serde_json::from_value(frame.d).map_err(malformed)?)
            }
            _ => GatewayEvent::Other { name, data: frame.d },
        })
    }

    /// Reconnects with backoff and sends a resume. `Ok(None)` if the [`Gateway`] was dropped
    /// meanwhile.
    async fn reconnect(&mut self) -> Result<Option<(Socket, Duration)>> {
        let mut backoff = FIRST_BACKOFF;
        let mut last_error = None;
        for _ in 0..RECONNECT_ATTEMPTS {
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = self.events.closed() => return Ok(None),
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
            let attempt = async {
                let (mut socket, interval) = open(&self.url).await?;
                let resume =
                    Resume { token: &self.token, session_id: &self.session_id, seq: self.seq };
                send(&mut socket, OP_RESUME, &resume).await?;
                Ok::<_, Error>((socket, interval))
            };
            match attempt.await {
                Ok(connected) => return Ok(Some(connected)),
                Err(error @ Error::GatewayClosed { .. }) => return Err(error),
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.unwrap_or_else(|| Error::GatewayProtocol("could not reconnect".into())))
    }
}

/// The shortest heartbeat interval followed, whatever the server says (ms).
const MIN_HEARTBEAT_MS: u64 = 200;
/// The longest heartbeat interval followed (ms).
const MAX_HEARTBEAT_MS: u64 = 10 * 60 * 1000;

/// Opens a connection and reads the server's hello; returns the heartbeat interval.
async fn open(url: &Url) -> Result<(Socket, Duration)> {
    within_handshake(async {
        let (mut socket, _) = tokio_tungstenite::connect_async(url.as_str()).await?;
        let hello = read_frame(&mut socket).await?;
        let interval = match hello {
            Frame { op: OP_HELLO, d, .. } => d["heartbeat_interval"].as_u64(),
            _ => None,
        };
        let interval = interval.ok_or_else(|| {
            Error::GatewayProtocol("expected hello with heartbeat_interval".into())
        })?;
        // Clamped, so that a server's odd value neither floods it nor overflows a timer.
        let interval = interval.clamp(MIN_HEARTBEAT_MS, MAX_HEARTBEAT_MS);
        Ok((socket, Duration::from_millis(interval)))
    })
    .await
}

/// Reads frames until `READY`.
async fn read_ready(socket: &mut Socket) -> Result<Ready> {
    loop {
        let frame = read_frame(socket).await?;
        if frame.op == OP_DISPATCH && frame.t.as_deref() == Some("READY") {
            return serde_json::from_value(frame.d)
                .map_err(|error| Error::GatewayProtocol(format!("malformed READY: {error}")));
        }
        if frame.op == OP_INVALID_SESSION {
            return Err(Error::GatewayProtocol("the server refused to start a session".into()));
        }
    }
}

/// The next JSON frame; a close frame is an error.
async fn read_frame(socket: &mut Socket) -> Result<Frame> {
    loop {
        let message = socket
            .next()
            .await
            .ok_or_else(|| Error::GatewayProtocol("the connection ended".into()))??;
        match message {
            tungstenite::Message::Text(text) => {
                return serde_json::from_str(&text)
                    .map_err(|error| Error::GatewayProtocol(error.to_string()));
            }
            tungstenite::Message::Close(frame) => {
                let (code, reason) = frame
                    .map(|frame| (u16::from(frame.code), frame.reason.to_string()))
                    .unwrap_or((1005, String::new()));
                return Err(Error::GatewayClosed { code, reason });
            }
            _ => {}
        }
    }
}

/// How a close frame from the server ends the connection.
fn closed(frame: Option<&CloseFrame>) -> Ended {
    let Some(frame) = frame else { return Ended::Lost };
    let code = u16::from(frame.code);
    if FATAL_CLOSE_CODES.contains(&code) {
        return Ended::Fatal(Error::GatewayClosed { code, reason: frame.reason.to_string() });
    }
    Ended::Lost
}

async fn send(socket: &mut Socket, op: u64, data: &impl Serialize) -> Result<()> {
    let text = serde_json::to_string(&Outgoing { op, d: data })
        .map_err(|error| Error::GatewayProtocol(error.to_string()))?;
    socket.send(tungstenite::Message::text(text)).await?;
    Ok(())
}

async fn within_handshake<T>(future: impl Future<Output = Result<T>>) -> Result<T> {
    tokio::time::timeout(HANDSHAKE_TIMEOUT, future)
        .await
        .unwrap_or_else(|_| Err(Error::GatewayProtocol("the handshake timed out".into())))
}

/// A frame from the server: `{"op", "d", "s"?, "t"?}`.
#[derive(Debug, Deserialize)]
struct Frame {
    op: u64,
    #[serde(default)]
    d: Value,
    #[serde(default)]
    s: Option<i64>,
    #[serde(default)]
    t: Option<String>,
}

/// A frame to the server.
#[derive(Serialize)]
struct Outgoing<'a, T> {
    op: u64,
    d: &'a T,
}

#[derive(Serialize)]
struct Identify<'a> {
    token: &'a str,
}

#[derive(Serialize)]
struct Resume<'a> {
    token: &'a str,
    session_id: &'a str,
    seq: i64,
}
