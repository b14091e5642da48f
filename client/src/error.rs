//! What can go wrong talking to a server: its refusals (with the stable `code` it sent), the
//! network, and answers that are not what the API promises.

/// Shorthand for results of this crate's server calls.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a call to a server failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server refused the request with its `{"code", "message"}` error body.
    #[error("the server refused: {code} ({message})")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The stable snake_case code, e.g. `invalid_challenge` or `unknown_channel`.
        code: String,
        /// The server's explanation for humans.
        message: String,
        /// With `rate_limited`: how long to wait before trying again, in milliseconds.
        retry_after_ms: Option<u64>,
    },
    /// The request did not get an answer: connection refused, timeout, TLS failure, …
    #[error("could not reach {url}: {source}")]
    Unreachable {
        /// What was requested.
        url: String,
        /// The transport's error.
        #[source]
        source: reqwest::Error,
    },
    /// The server answered, but not in the shape the API defines.
    #[error("unexpected answer from {url}: {detail}")]
    UnexpectedAnswer {
        /// What was requested.
        url: String,
        /// What was wrong with the answer.
        detail: String,
    },
    /// The server URL cannot be used.
    #[error("invalid server URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// The server's key document names a server other than the one the URL points to. A login
    /// proof is bound to a server name, so signing one for a name the URL does not belong to
    /// could hand another server a valid proof.
    #[error(
        "the server at {url} says it is {claimed}, which is not the URL's host \
         (a server name delegated to another host must be given explicitly)"
    )]
    ServerNameMismatch {
        /// The URL connected to.
        url: String,
        /// The name the server gave.
        claimed: String,
    },
    /// The WebSocket connection to the gateway failed.
    #[error("gateway connection: {0}")]
    WebSocket(#[source] Box<tokio_tungstenite::tungstenite::Error>),
    /// The gateway closed the connection with a code that forbids resuming, e.g. 4004 when the
    /// token is invalid or was revoked.
    #[error("the gateway closed the connection: {code} ({reason})")]
    GatewayClosed {
        /// The WebSocket close code.
        code: u16,
        /// The server's reason.
        reason: String,
    },
    /// The gateway sent something the protocol does not allow at that point.
    #[error("gateway protocol: {0}")]
    GatewayProtocol(String),
}

impl Error {
    /// The server's error code, when the server refused.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Refused { code, .. } => Some(code),
            _ => None,
        }
    }
}

impl From<tokio_tungstenite::tungstenite::Error> for Error {
    fn from(error: tokio_tungstenite::tungstenite::Error) -> Self {
        Self::WebSocket(Box::new(error))
    }
}
