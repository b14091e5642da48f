//! Accounts and login sessions.

use guildhall_spec::UserId;

/// An account.
#[derive(Debug, Clone)]
pub struct UserRow {
    /// The user id.
    pub user_id: UserId,
    /// The argon2 PHC string.
    pub password_hash: String,
    /// Display name.
    pub display_name: Option<String>,
    /// Avatar media id.
    pub avatar: Option<String>,
    /// Server administrator.
    pub is_admin: bool,
    /// Creation time.
    pub created_ts: u64,
}

/// What a bearer token resolves to.
#[derive(Debug, Clone)]
pub struct TokenSession {
    /// The user.
    pub user_id: UserId,
    /// The login session.
    pub session_id: String,
    /// When the session was last marked used (ms since the epoch).
    pub last_seen_ts: u64,
}

/// A login session.
#[derive(Debug, Clone)]
pub struct SessionRow {
    /// Opaque id, shown to the user to revoke it.
    pub session_id: String,
    /// When it was created.
    pub created_ts: u64,
    /// When it was last used.
    pub last_seen_ts: u64,
    /// The client's User-Agent at login.
    pub user_agent: Option<String>,
    /// The client's address at login.
    pub ip: Option<String>,
}

/// Accounts and login sessions.
#[async_trait::async_trait]
pub trait UserStore: Send + Sync {
    /// Creates an account; the first account of the server becomes its admin. Returns `None`
    /// when the name is taken.
    async fn create_user(
        &self,
        user_id: &UserId,
        password_hash: &str,
    ) -> Result<Option<UserRow>, sqlx::Error>;

    /// An account by id.
    async fn user(&self, user_id: &UserId) -> Result<Option<UserRow>, sqlx::Error>;

    /// Updates the profile fields that are `Some`.
    async fn update_profile(
        &self,
        user_id: &UserId,
        display_name: Option<Option<&str>>,
        avatar: Option<Option<&str>>,
    ) -> Result<(), sqlx::Error>;

    /// Grants server admin; returns whether the user exists.
    async fn make_admin(&self, user_id: &UserId) -> Result<bool, sqlx::Error>;

    /// Records a new session for a token (stored only as its SHA-256).
    async fn create_session(
        &self,
        user_id: &UserId,
        session_id: &str,
        token_hash: &[u8],
        user_agent: Option<&str>,
        ip: Option<&str>,
    ) -> Result<(), sqlx::Error>;

    /// The user and session a token hash belongs to.
    async fn session_user(&self, token_hash: &[u8]) -> Result<Option<TokenSession>, sqlx::Error>;

    /// Marks a session as used now (at most once a minute per session: callers skip it when
    /// [`TokenSession::last_seen_ts`] is recent, so that a request reads and never writes).
    async fn touch_session(&self, session_id: &str) -> Result<(), sqlx::Error>;

    /// A user's sessions, newest first.
    async fn sessions(&self, user_id: &UserId) -> Result<Vec<SessionRow>, sqlx::Error>;

    /// Revokes one of a user's sessions; returns whether it existed.
    async fn delete_session(&self, user_id: &UserId, session_id: &str)
    -> Result<bool, sqlx::Error>;
}
