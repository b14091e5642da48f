//! Friends, blocks and the index of direct-message guilds.

use guildhall_spec::{GuildId, UserId};

/// One side of a relationship.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationshipRow {
    /// The other user.
    pub other: UserId,
    /// `outgoing`, `incoming` or `friends`.
    pub state: String,
    /// Since when.
    pub since_ts: u64,
}

/// Relationships, blocks and direct-message guilds.
#[async_trait::async_trait]
pub trait SocialStore: Send + Sync {
    /// A user's relationships.
    async fn relationships(&self, user: &UserId) -> Result<Vec<RelationshipRow>, sqlx::Error>;

    /// The state of `user`'s relationship with `other`, if any.
    async fn relationship(
        &self,
        user: &UserId,
        other: &UserId,
    ) -> Result<Option<String>, sqlx::Error>;

    /// Sets both sides of a relationship at once.
    async fn set_relationship(
        &self,
        user: &UserId,
        other: &UserId,
        mine: &str,
        theirs: &str,
    ) -> Result<(), sqlx::Error>;

    /// Removes both sides of a relationship; returns whether there was one.
    async fn delete_relationship(&self, user: &UserId, other: &UserId)
    -> Result<bool, sqlx::Error>;

    /// Blocks a user; a block also ends any relationship.
    async fn block(&self, user: &UserId, blocked: &UserId) -> Result<(), sqlx::Error>;

    /// Lifts a block; returns whether there was one.
    async fn unblock(&self, user: &UserId, blocked: &UserId) -> Result<bool, sqlx::Error>;

    /// Users `user` blocked.
    async fn blocked_by(&self, user: &UserId) -> Result<Vec<UserId>, sqlx::Error>;

    /// Whether either user blocked the other.
    async fn is_blocked_between(&self, a: &UserId, b: &UserId) -> Result<bool, sqlx::Error>;

    /// The DM guild between two users, if one exists.
    async fn direct_message(&self, a: &UserId, b: &UserId) -> Result<Option<GuildId>, sqlx::Error>;

    /// Records the DM guild between two users.
    async fn record_direct_message(
        &self,
        a: &UserId,
        b: &UserId,
        guild: &GuildId,
    ) -> Result<(), sqlx::Error>;
}
