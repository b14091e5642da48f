//! A gateway client: connects, identifies or resumes, and waits for frames with a timeout.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::server::Server;

/// How long to wait for a frame the test expects.
pub const FRAME_TIMEOUT: Duration = Duration::from_secs(10);

/// The frame encodings the gateway speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// JSON text frames.
    Json,
    /// MessagePack binary frames.
    Msgpack,
}

impl Encoding {
    fn query(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Msgpack => "msgpack",
        }
    }
}

/// What the server sent.
#[derive(Debug, Clone, PartialEq)]
pub enum Received {
    /// A frame (`{"op", "d", "s"?, "t"?}`).
    Frame(Value),
    /// The connection closed, with the close code if there was a close frame.
    Closed(Option<u16>),
}

/// One gateway connection.
pub struct Gateway {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    encoding: Encoding,
    /// The `d` of the hello frame.
    pub hello: Value,
    /// The last `s` of a dispatch seen, for resuming.
    pub last_seq: Option<i64>,
}

impl Gateway {
    /// Connects and reads the hello frame.
    pub async fn connect(server: &Server, encoding: Encoding) -> Self {
        let (socket, _) = tokio_tungstenite::connect_async(server.gateway_url(encoding.query()))
            .await
            .expect("connect to the gateway");
        let mut gateway = Self { socket, encoding, hello: Value::Null, last_seq: None };
        let hello = gateway.expect_op(10).await;
        gateway.hello = hello["d"].clone();
        gateway
    }

    /// Connects and identifies with `token`; returns the connection and the READY payload.
    pub async fn identified(server: &Server, token: &str, encoding: Encoding) -> (Self, Value) {
        let mut gateway = Self::connect(server, encoding).await;
        let ready = gateway.identify(token).await;
        (gateway, ready)
    }

    /// Sends op 2 and waits for READY; returns its `d`.
    pub async fn identify(&mut self, token: &str) -> Value {
        self.send(&json!({"op": 2, "d": {"token": token}})).await;
        let ready = self.expect_dispatch("READY", |_| true).await;
        ready["d"].clone()
    }

    /// Sends a frame in this connection's encoding.
    pub async fn send(&mut self, frame: &Value) {
        let message = match self.encoding {
            Encoding::Json => Message::text(frame.to_string()),
            Encoding::Msgpack => {
                Message::binary(rmp_serde::to_vec_named(frame).expect("encode msgpack"))
            }
        };
        self.socket.send(message).await.expect("send a gateway frame");
    }

    /// Sends a raw text frame, whatever the encoding.
    pub async fn send_text(&mut self, text: &str) {
        self.socket.send(Message::text(text.to_owned())).await.expect("send a text frame");
    }

    /// The next frame or close, or `None` if nothing arrives `within`.
    pub async fn receive(&mut self, within: Duration) -> Option<Received> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let next = tokio::time::timeout_at(deadline, self.socket.next()).await.ok()?;
            let frame = match next {
                Some(Ok(Message::Text(text))) => {
                    assert_eq!(
                        self.encoding,
                        Encoding::Json,
                        "a text frame on a msgpack connection"
                    );
                    serde_json::from_str::<Value>(&text).expect("a JSON frame")
                }
                Some(Ok(Message::Binary(bytes))) => {
                    assert_eq!(
                        self.encoding,
                        Encoding::Msgpack,
                        "a binary frame on a JSON connection"
                    );
                    rmp_serde::from_slice::<Value>(&bytes).expect("a msgpack frame")
                }
                Some(Ok(Message::Close(frame))) => {
                    return Some(Received::Closed(frame.map(|f| u16::from(f.code))));
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Some(Received::Closed(None)),
            };
            if frame["op"] == 0
                && let Some(seq) = frame["s"].as_i64()
            {
                self.last_seq = Some(seq);
            }
            return Some(Received::Frame(frame));
        }
    }

    /// The next frame; panics on a close or a timeout.
    pub async fn next_frame(&mut self) -> Value {
        match self.receive(FRAME_TIMEOUT).await {
            Some(Received::Frame(frame)) => frame,
            other => panic!("expected a frame, got {}", short(other.as_ref())),
        }
    }

    /// Skips frames until one with `op`; returns it.
    pub async fn expect_op(&mut self, op: u64) -> Value {
        loop {
            let frame = self.next_frame().await;
            if frame["op"] == op {
                return frame;
            }
        }
    }

    /// Skips frames until a dispatch `name` whose `d` satisfies `matches`; returns the frame.
    pub async fn expect_dispatch(&mut self, name: &str, matches: impl Fn(&Value) -> bool) -> Value {
        self.collect_until(name, matches).await.pop().expect("at least the matching frame")
    }

    /// Every frame up to and including the dispatch `name` whose `d` satisfies `matches`.
    pub async fn collect_until(
        &mut self,
        name: &str,
        matches: impl Fn(&Value) -> bool,
    ) -> Vec<Value> {
        let mut frames = Vec::new();
        loop {
            let frame = match self.receive(FRAME_TIMEOUT).await {
                Some(Received::Frame(frame)) => frame,
                other => panic!(
                    "waiting for {name}, got {} after {} frames ({:?}…)",
                    short(other.as_ref()),
                    frames.len(),
                    names(&frames[frames.len().saturating_sub(5)..])
                ),
            };
            let found = frame["op"] == 0 && frame["t"] == name && matches(&frame["d"]);
            frames.push(frame);
            if found {
                return frames;
            }
        }
    }

    /// Reads until the server closes the connection; returns the close code.
    pub async fn expect_close(&mut self) -> u16 {
        let mut frames = Vec::new();
        loop {
            match self.receive(FRAME_TIMEOUT).await {
                Some(Received::Frame(frame)) => frames.push(frame),
                Some(Received::Closed(Some(code))) => return code,
                other => panic!(
                    "expected a close frame, got {} after {} frames ({:?}…)",
                    short(other.as_ref()),
                    frames.len(),
                    names(&frames[frames.len().saturating_sub(5)..])
                ),
            }
        }
    }

    /// Closes the connection from this side and waits until it is gone.
    pub async fn close(mut self) {
        let _ = self.socket.close(None).await;
        while let Ok(Some(Ok(_))) = tokio::time::timeout(FRAME_TIMEOUT, self.socket.next()).await {}
    }
}

/// The dispatch names among `frames`, in order.
pub fn names(frames: &[Value]) -> Vec<&str> {
    frames.iter().filter(|f| f["op"] == 0).filter_map(|f| f["t"].as_str()).collect()
}

/// A short description of what arrived, for assertion messages.
pub fn short(received: Option<&Received>) -> String {
    match received {
        None => "nothing".to_owned(),
        Some(Received::Closed(code)) => format!("Closed({code:?})"),
        Some(Received::Frame(frame)) => {
            let text = frame.to_string();
            text.chars().take(200).collect()
        }
    }
}
