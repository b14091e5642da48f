//! Identities: attestations (this server's and other servers' users'), rotation statements,
//! login challenges and account moves (spec chapter 16).

use guildhall_spec::UserId;

/// The current attestation of one user, as stored.
#[derive(Debug, Clone)]
pub struct AttestationRow {
    /// Whose.
    pub user_id: UserId,
    /// The attested identity key; `None` when the attestation revokes the binding.
    pub identity_key: Option<String>,
    /// When it was issued.
    pub issued_ts: u64,
    /// The signed attestation as issued.
    pub attestation: serde_json::Map<String, serde_json::Value>,
    /// When it was last issued here or fetched from its home server.
    pub checked_ts: u64,
}

/// A registered device.
#[derive(Debug, Clone)]
pub struct DeviceRow {
    /// The device id.
    pub device_id: String,
    /// The login it belongs to.
    pub session_id: String,
    /// Its certificate as uploaded.
    pub certificate: serde_json::Map<String, serde_json::Value>,
    /// When it was last certified.
    pub updated_ts: u64,
}

/// Identity attestations, rotations, linked accounts and devices.
#[async_trait::async_trait]
pub trait IdentityStore: Send + Sync {
    /// Stores `attestation` as the current one of its user unless a newer one is stored (then
    /// it only marks the stored one as checked now). Returns whether it became current.
    async fn put_attestation(
        &self,
        user_id: &UserId,
        identity_key: Option<&str>,
        issued_ts: u64,
        attestation: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<bool, sqlx::Error>;

    /// Records that this server attested `identity_key` for its user `user_id`.
    async fn remember_attested_key(
        &self,
        user_id: &UserId,
        identity_key: &str,
    ) -> Result<(), sqlx::Error>;

    /// Whether this server ever attested `identity_key` for `user_id`.
    async fn was_attested(&self, user_id: &UserId, identity_key: &str)
    -> Result<bool, sqlx::Error>;

    /// The current attestation of `user_id`, if any is known.
    async fn attestation(&self, user_id: &UserId) -> Result<Option<AttestationRow>, sqlx::Error>;

    /// The identity keys of `users` that are known and not revoked.
    async fn identity_keys(
        &self,
        users: &[&UserId],
    ) -> Result<std::collections::HashMap<UserId, String>, sqlx::Error>;

    /// This server's account made by key login for `remote_user`, if there is one.
    async fn linked_account(&self, remote_user: &UserId) -> Result<Option<UserId>, sqlx::Error>;

    /// Creates, for `remote_user`, an account that logs in only by key (no password, never an
    /// administrator), linked to that user. `None` when the name is taken here.
    async fn create_linked_account(
        &self,
        account: &UserId,
        remote_user: &UserId,
    ) -> Result<Option<crate::store::UserRow>, sqlx::Error>;

    /// Deletes an account made by key login whose identity could not be attested (so that a
    /// refusal leaves no account behind).
    async fn delete_linked_account(&self, account: &UserId) -> Result<(), sqlx::Error>;

    /// Records a rotation statement of a local user.
    async fn put_rotation(
        &self,
        user_id: &UserId,
        ts: u64,
        statement: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<(), sqlx::Error>;

    /// The rotation statements of a local user, oldest first.
    async fn rotations(&self, user_id: &UserId) -> Result<Vec<serde_json::Value>, sqlx::Error>;

    /// Marks a login challenge as used until it expires; `false` if it already was. Challenges
    /// past their expiry are forgotten first (they are refused by their expiry anyway).
    async fn use_challenge(&self, challenge: &str, expires_ts: u64) -> Result<bool, sqlx::Error>;

    /// Records an accepted account move unless a later one of the same old address is known.
    /// Returns whether it was recorded.
    async fn put_move(
        &self,
        from: &UserId,
        to: &UserId,
        ts: u64,
        statement: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<bool, sqlx::Error>;

    /// Where `user_id` moved to, if a move of it was accepted.
    async fn moved_to(&self, user_id: &UserId) -> Result<Option<UserId>, sqlx::Error>;

    /// Registers or re-certifies `device_id` for the login `session_id`. A login has at most one
    /// device, and a device id belongs to one login. `Ok(false)` when the device id is another
    /// login's, or the user has `max_devices` devices already.
    async fn put_device(
        &self,
        user_id: &UserId,
        device_id: &str,
        session_id: &str,
        certificate: &serde_json::Map<String, serde_json::Value>,
        max_devices: i64,
    ) -> Result<bool, sqlx::Error>;

    /// A user's devices.
    async fn devices(&self, user_id: &UserId) -> Result<Vec<DeviceRow>, sqlx::Error>;

    /// The login a device belongs to, if the user has that device.
    async fn device_session(
        &self,
        user_id: &UserId,
        device_id: &str,
    ) -> Result<Option<String>, sqlx::Error>;
}
