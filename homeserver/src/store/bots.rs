//! Bot applications and the numeric ids (snowflakes) of the Discord-compatible API.

use guildhall_spec::UserId;

/// A bot application: a bot user owned by a local user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplicationRow {
    /// Its snowflake (the `client_id` Discord libraries know).
    pub application_id: u64,
    /// The bot's account.
    pub bot_user: UserId,
    /// The local user who owns it.
    pub owner: UserId,
    /// Its name (also the bot user's display name).
    pub name: String,
    /// Its description.
    pub description: String,
    /// Whether guild admins other than the owner may add it.
    pub public: bool,
    /// The privileged gateway intents granted to it.
    pub intents: u64,
    /// When it was created.
    pub created_ts: u64,
}

/// What a snowflake stands for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SnowflakeTarget {
    /// `user`, `guild`, `channel`, `role` or `message`.
    pub kind: String,
    /// The guild of a guild-scoped object; empty for users and guilds.
    pub guild_id: String,
    /// The object's own id.
    pub object_id: String,
}

/// Bot applications and snowflakes.
#[async_trait::async_trait]
pub trait BotStore: Send + Sync {
    /// Creates a bot account (no password) and its application in one transaction. `false`
    /// when the bot's user name or the application id is taken.
    async fn create_application(&self, application: &ApplicationRow) -> Result<bool, sqlx::Error>;

    /// An application by id.
    async fn application(&self, application_id: u64)
    -> Result<Option<ApplicationRow>, sqlx::Error>;

    /// The application a bot user belongs to, if it is a bot.
    async fn application_of_bot(&self, bot: &UserId)
    -> Result<Option<ApplicationRow>, sqlx::Error>;

    /// The applications a user owns, oldest first.
    async fn applications_of(&self, owner: &UserId) -> Result<Vec<ApplicationRow>, sqlx::Error>;

    /// Updates an application's description, public flag and granted intents; returns whether
    /// it exists.
    async fn update_application(&self, application: &ApplicationRow) -> Result<bool, sqlx::Error>;

    /// The snowflake of an object: the one it already has, or `candidate` if that is free.
    /// `None` when `candidate` already names another object (the caller picks another).
    async fn assign_snowflake(
        &self,
        target: &SnowflakeTarget,
        candidate: u64,
    ) -> Result<Option<u64>, sqlx::Error>;

    /// The snowflake an object has, if any.
    async fn snowflake_of(&self, target: &SnowflakeTarget) -> Result<Option<u64>, sqlx::Error>;

    /// What a snowflake names, if anything.
    async fn snowflake_target(
        &self,
        snowflake: u64,
    ) -> Result<Option<SnowflakeTarget>, sqlx::Error>;
}
