//! End-to-end encryption records (spec 17): published keys, to-device inboxes, idempotent send
//! answers and device-list watchers. The server stores ciphertext and public keys only.

use guildhall_spec::UserId;
use serde_json::Value;

/// A message waiting in a device's inbox.
#[derive(Debug, Clone)]
pub struct InboxItem {
    /// Its position in the inbox.
    pub id: i64,
    /// The sending user.
    pub sender: String,
    /// The sending device.
    pub sender_device: String,
    /// The sender's id for the message.
    pub message_id: String,
    /// `olm.v1`.
    pub message_type: String,
    /// The ciphertext object.
    pub content: Value,
    /// When this server stored it.
    pub received_ts: u64,
}

/// A message to store: target device, sender device, id, type, content.
#[derive(Debug, Clone)]
pub struct NewInboxItem {
    /// The target device (of the share's user).
    pub device_id: String,
    /// The sending user.
    pub sender: UserId,
    /// The sending device.
    pub sender_device: String,
    /// The sender's id for the message.
    pub message_id: String,
    /// `olm.v1`.
    pub message_type: String,
    /// The ciphertext object.
    pub content: Value,
}

/// What a claim handed out for one device.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// The signed key object.
    pub key_object: Value,
    /// One-time keys the device has left.
    pub remaining: i64,
    /// Whether the fallback key was handed out (no one-time key was left).
    pub fallback: bool,
}

/// Why an upload stored nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeysRefused {
    /// This key id was uploaded before with another object.
    Conflict(String),
    /// The device would hold more unclaimed one-time keys than allowed.
    TooMany,
    /// The device was certified with other keys while the upload was checked.
    Rekeyed,
}

/// One user's messages of a send.
#[derive(Debug, Clone)]
pub struct InboxShare {
    /// The recipient (local).
    pub user_id: UserId,
    /// The fingerprint of the user's device rows the share was checked against.
    pub fingerprint: String,
    /// The messages.
    pub items: Vec<NewInboxItem>,
}

/// What an inbox may hold.
#[derive(Debug, Clone, Copy)]
pub struct InboxLimits {
    /// Unacknowledged messages per device.
    pub per_device: i64,
    /// Unacknowledged messages per device from one sender.
    pub per_sender: i64,
}

/// What became of one share.
#[derive(Debug)]
pub enum ShareOutcome {
    /// Stored: the new inbox items with the login each is for (repeats are not listed).
    Delivered(Vec<(String, InboxItem)>),
    /// The user's devices changed since the share was checked.
    Stale,
    /// A messaged device's inbox is full, in all or for this sender.
    InboxFull,
}

/// What a send's transaction id already stands for.
#[derive(Debug)]
pub enum Reservation {
    /// Nothing: it is now reserved for this request.
    New,
    /// The answer to the same request.
    Answered(Value),
    /// The same request is being carried out right now.
    InProgress,
    /// It was used for another request.
    Conflict,
}

/// End-to-end encryption: device keys, one-time keys, to-device inboxes.
#[async_trait::async_trait]
pub trait E2eStore: Send + Sync {
    /// Stores one-time keys and, if given, the fallback key of a device, all or none, and
    /// returns the device's unclaimed key count and whether it has a fallback key. The keys were
    /// checked against the device's Ed25519 key `signed_by`; if the device was re-keyed since,
    /// nothing is stored. A key id claimed before is not stored again (a retried upload must
    /// not hand a key out twice).
    async fn put_device_keys(
        &self,
        user_id: &UserId,
        device_id: &str,
        signed_by: &str,
        one_time_keys: &[(String, Value)],
        fallback: Option<&Value>,
        max_unclaimed: i64,
    ) -> Result<Result<(i64, bool), KeysRefused>, sqlx::Error>;

    /// Removes and returns one one-time key of a device, or returns its fallback key when none
    /// is left; `None` when it has neither. Atomic: a key is never handed out twice.
    async fn claim_key(
        &self,
        user_id: &UserId,
        device_id: &str,
    ) -> Result<Option<Claimed>, sqlx::Error>;

    /// Unclaimed one-time keys of a device, and whether it has a fallback key.
    async fn key_counts(
        &self,
        user_id: &UserId,
        device_id: &str,
    ) -> Result<(i64, bool), sqlx::Error>;

    /// Stores the shares of one send, each user's all or none, in one transaction. A share is
    /// stored only if the user's device rows still have the fingerprint its checks were made
    /// with ([`device_rows_fingerprint`]), and no messaged device's inbox is full: in all, or
    /// for this sender. A message stored before (same target device, sender device and message
    /// id) is kept as it was. Returns, per share, the stored items and the logins they are for.
    async fn deliver_shares(
        &self,
        shares: &[InboxShare],
        limits: InboxLimits,
    ) -> Result<Vec<ShareOutcome>, sqlx::Error>;

    /// A fingerprint of a user's device rows (ids, logins, certificates as stored): it changes
    /// whenever a device is added, removed or certified again.
    async fn device_fingerprint(&self, user_id: &UserId) -> Result<String, sqlx::Error>;

    /// The oldest `limit` messages of a device's inbox, and whether more wait.
    async fn inbox(
        &self,
        user_id: &UserId,
        device_id: &str,
        limit: i64,
    ) -> Result<(Vec<InboxItem>, bool), sqlx::Error>;

    /// Deletes a device's inbox messages up to and including `up_to`.
    async fn ack_inbox(
        &self,
        user_id: &UserId,
        device_id: &str,
        up_to: i64,
    ) -> Result<u64, sqlx::Error>;

    /// Reserves a send's transaction id before the send is carried out, so that concurrent or
    /// later requests with the same id get the first answer (or wait for it) instead of sending
    /// again. Forgets answers older than a day.
    async fn reserve_txn(
        &self,
        scope: &str,
        txn_id: &str,
        request_hash: &str,
    ) -> Result<Reservation, sqlx::Error>;

    /// Keeps the answer to a reserved send; an answer once kept is never replaced.
    async fn complete_txn(
        &self,
        scope: &str,
        txn_id: &str,
        result: &Value,
    ) -> Result<(), sqlx::Error>;

    /// Gives up a reservation whose send failed as a whole (nothing was sent), so the client
    /// may try again with the same id.
    async fn release_txn(&self, scope: &str, txn_id: &str) -> Result<(), sqlx::Error>;

    /// Records the last device-list hash told of (our users) or heard of (others' users);
    /// `true` when it differs from the one before.
    async fn swap_device_list_hash(
        &self,
        user_id: &UserId,
        hash: &str,
    ) -> Result<bool, sqlx::Error>;

    /// Remembers that `watcher` asked for the keys of `users`, in one transaction.
    async fn watch_device_lists(&self, users: &[UserId], watcher: &str) -> Result<(), sqlx::Error>;

    /// Who asked for `user_id`'s keys within the watch period.
    async fn device_list_watchers(&self, user_id: &UserId) -> Result<Vec<String>, sqlx::Error>;
}
