//! The trust policy as operators changed it, subscribed trust lists, and the audit log
//! (spec chapter 15). Every change bumps `trust_settings.version` and writes its audit record
//! in the same transaction.

/// A local entry made by an operator.
#[derive(Debug, Clone)]
pub struct TrustEntryRow {
    /// The server (lowercase name).
    pub server: String,
    /// `allow` or `deny`.
    pub action: String,
    /// Why.
    pub reason: Option<String>,
    /// A pinned key: its id and base64url public key.
    pub key: Option<(String, String)>,
    /// When it was made.
    pub updated_ts: u64,
}

/// A subscribed trust list.
#[derive(Debug, Clone)]
pub struct SubscriptionRow {
    /// Its id (operators name it with this).
    pub id: String,
    /// Where it is fetched.
    pub url: String,
    /// Its publisher.
    pub publisher: String,
    /// The publisher key: id and base64url key.
    pub key_id: String,
    /// The publisher key, base64url.
    pub key: String,
    /// How often it is fetched.
    pub refresh_secs: u64,
    /// The last accepted document.
    pub document: Option<String>,
    /// Its `updated_ts` (0: none accepted yet).
    pub updated_ts: u64,
    /// When the last fetch was attempted.
    pub fetched_ts: u64,
    /// When a document was last accepted.
    pub accepted_ts: u64,
    /// Why the last fetch failed, if it did.
    pub last_error: Option<String>,
}

/// An administrative action.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AuditRow {
    /// Position in the log.
    pub id: i64,
    /// When.
    pub ts: u64,
    /// Who: a user id, or `cli` for the command line on the server's machine.
    pub actor: String,
    /// What, e.g. `trust.deny`.
    pub action: String,
    /// On what.
    pub target: Option<String>,
    /// Details as JSON.
    pub detail: Option<serde_json::Value>,
}

/// Who did what, for the audit log.
#[derive(Debug, Clone, Copy)]
pub struct Audit<'a> {
    /// Who.
    pub actor: &'a str,
    /// What.
    pub action: &'a str,
    /// On what.
    pub target: Option<&'a str>,
    /// Details.
    pub detail: Option<&'a serde_json::Value>,
}

/// Trust lists, subscriptions and the audit log.
#[async_trait::async_trait]
pub trait TrustStore: Send + Sync {
    /// The trust version (grows with every change) and the time of the last change.
    async fn trust_version(&self) -> Result<(i64, u64), sqlx::Error>;

    /// The mode an operator set, overriding the configuration file's.
    async fn trust_mode(&self) -> Result<Option<String>, sqlx::Error>;

    /// Sets the mode.
    async fn set_trust_mode(&self, mode: &str, audit: Audit<'_>) -> Result<(), sqlx::Error>;

    /// The operator's local entries.
    async fn trust_entries(&self) -> Result<Vec<TrustEntryRow>, sqlx::Error>;

    /// Creates or replaces the local entry of `entry.server`.
    async fn put_trust_entry(
        &self,
        entry: &TrustEntryRow,
        audit: Audit<'_>,
    ) -> Result<(), sqlx::Error>;

    /// Removes the local entry of `server`; returns whether there was one.
    async fn delete_trust_entry(&self, server: &str, audit: Audit<'_>)
    -> Result<bool, sqlx::Error>;

    /// Replaces the mode and every local entry at once (the policy endpoint).
    async fn replace_trust_policy(
        &self,
        mode: &str,
        entries: &[TrustEntryRow],
        audit: Audit<'_>,
    ) -> Result<(), sqlx::Error>;

    /// Every subscription.
    async fn subscriptions(&self) -> Result<Vec<SubscriptionRow>, sqlx::Error>;

    /// One subscription, by id.
    async fn subscription(&self, id: &str) -> Result<Option<SubscriptionRow>, sqlx::Error>;

    /// Adds a subscription; `false` when one with that URL exists.
    async fn add_subscription(
        &self,
        subscription: &SubscriptionRow,
        audit: Audit<'_>,
    ) -> Result<bool, sqlx::Error>;

    /// Removes a subscription (its entries stop applying); returns whether it existed.
    async fn delete_subscription(&self, id: &str, audit: Audit<'_>) -> Result<bool, sqlx::Error>;

    /// Records an accepted document of a subscription, if it is still newer than the one held
    /// (two fetches may race). Returns whether it was recorded.
    async fn accept_trust_list(
        &self,
        id: &str,
        document: &str,
        updated_ts: u64,
        audit: Audit<'_>,
    ) -> Result<bool, sqlx::Error>;

    /// Records a fetch that gave nothing new (`error` when it failed or was refused).
    async fn note_trust_fetch(&self, id: &str, error: Option<&str>) -> Result<(), sqlx::Error>;

    /// Appends an administrative action that changes no trust rule.
    async fn audit(&self, audit: Audit<'_>) -> Result<(), sqlx::Error>;

    /// The audit log, newest first, before `before` (an id) if given.
    async fn audit_log(
        &self,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<AuditRow>, sqlx::Error>;
}
