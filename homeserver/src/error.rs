//! The one error type of the client API: a stable `{"code", "message"}` body and a status.
//!
//! Internal causes (database errors, bugs) are logged with their details and answered with a
//! generic `internal` error, so nothing about the server's insides leaks to clients.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use guildhall_spec::api::ErrorBody;
use guildhall_spec::api::submit_event::Rejection;
use guildhall_spec::state::AuthError;

/// An error answered to a client.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after_ms: Option<u64>,
}

/// Shorthand for handler results.
pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    /// An error with an explicit status and code.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), retry_after_ms: None }
    }

    /// 400 `bad_request`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 400 `invalid_id`.
    pub fn invalid_id(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_id", message)
    }

    /// 401 `unauthorized`.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 403 `missing_permission`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "missing_permission", message)
    }

    /// 404 with a specific code, e.g. `unknown_guild`.
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    /// 409 `conflict`.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    /// 429 `rate_limited` with a retry delay.
    pub fn rate_limited(retry_after_ms: u64) -> Self {
        Self {
            retry_after_ms: Some(retry_after_ms),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many requests; slow down",
            )
        }
    }

    /// 500 `internal`, logging the cause.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(%cause, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal server error")
    }

    /// The stable code.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// For a rate limit, how long to wait.
    pub fn retry_after_ms(&self) -> Option<u64> {
        self.retry_after_ms
    }

    /// The human-readable explanation the client is shown.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        Self::internal(format_args!("database: {error}"))
    }
}

impl From<AuthError> for ApiError {
    fn from(error: AuthError) -> Self {
        let (status, code) = match error.rejection {
            Rejection::UnknownGuild => (StatusCode::NOT_FOUND, "unknown_guild"),
            Rejection::NotMember => (StatusCode::FORBIDDEN, "not_member"),
            Rejection::MissingPermission => (StatusCode::FORBIDDEN, "missing_permission"),
            Rejection::Banned => (StatusCode::FORBIDDEN, "banned"),
            Rejection::ServerBanned => (StatusCode::FORBIDDEN, "server_banned"),
            Rejection::RateLimited => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            Rejection::InvalidEvent => (StatusCode::BAD_REQUEST, "invalid_event"),
            Rejection::SenderNotFromOrigin => (StatusCode::FORBIDDEN, "sender_not_from_origin"),
        };
        Self::new(status, code, error.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody::new(self.code, self.message);
        let mut json = serde_json::to_value(&body).unwrap_or_default();
        if let (Some(retry), Some(object)) = (self.retry_after_ms, json.as_object_mut()) {
            object.insert("retry_after_ms".into(), retry.into());
        }
        let mut response = (self.status, axum::Json(json)).into_response();
        if let Some(retry) = self.retry_after_ms {
            let seconds = retry.div_ceil(1000).max(1);
            if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
        }
        response
    }
}
