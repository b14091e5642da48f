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
//! the server replays what it missed from the durable log, then continues live. Ephemeral
//! dispatches (typing, presence) carry `s: null` and are not replayed.
//!
//! Close codes: 4001 unknown opcode, 4002 decode error, 4003 not authenticated, 4004
//! authentication failed, 4005 already authenticated, 4008 too slow (resumable), 4009 session
//! timed out (resumable).

mod dispatch;
mod session;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{Query, State, WebSocketUpgrade};
use axum::response::Response;
use guildhall_spec::UserId;
use serde::Deserialize;

use crate::AppState;
use crate::error::ApiError;

pub use dispatch::guild_event;

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
    Ok(socket
        .max_message_size(64 * 1024)
        .on_upgrade(move |socket| session::run(state, socket, params.encoding)))
}

/// Sessions that can be resumed: their owner and, once disconnected, until when.
#[derive(Debug, Default)]
pub struct SessionRegistry {
    sessions: Mutex<HashMap<String, (UserId, Option<Instant>)>>,
}

impl SessionRegistry {
    fn register(&self, session_id: &str, user: &UserId) {
        if let Ok(mut sessions) = self.sessions.lock() {
            let now = Instant::now();
            sessions.retain(|_, (_, expires)| expires.is_none_or(|expires| expires > now));
            sessions.insert(session_id.to_owned(), (user.clone(), None));
        }
    }

    fn disconnected(&self, session_id: &str, window: Duration) {
        if let Ok(mut sessions) = self.sessions.lock()
            && let Some(entry) = sessions.get_mut(session_id)
        {
            entry.1 = Some(Instant::now() + window);
        }
    }

    /// Claims a disconnected, unexpired session of `user` for resuming.
    fn claim(&self, session_id: &str, user: &UserId) -> bool {
        let Ok(mut sessions) = self.sessions.lock() else { return false };
        match sessions.get_mut(session_id) {
            Some((owner, expires @ Some(_)))
                if owner == user && expires.is_some_and(|at| at > Instant::now()) =>
            {
                *expires = None;
                true
            }
            _ => false,
        }
    }
}
