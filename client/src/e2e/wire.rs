//! The bodies of spec 17's client API (`/api/v1/keys/…`, `/api/v1/users/@me/to_device…`) and
//! gateway dispatches, as this client sends and reads them.
//!
//! Signed objects (attestations, certificates, key objects) stay raw JSON objects, so that
//! signatures are checked over exactly what arrived, unknown members included.

use std::collections::BTreeMap;

use guildhall_spec::{DeviceId, JsonObject, UserId};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub(crate) use guildhall_identity::e2e::{
    OLM_ALGORITHM, OLM_MESSAGE_TYPE, OlmCiphertext, OlmContent,
};

/// The inner type of a conversation message.
pub(crate) const DM_MESSAGE: &str = "dm.message";
/// The inner type of a session reset (spec 17.9).
pub(crate) const DM_RESET: &str = "dm.reset";

/// `POST /keys/upload`.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct UploadRequest {
    pub(crate) one_time_keys: Vec<JsonObject>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) fallback_key: Option<JsonObject>,
}

/// The answer of `POST /keys/upload`: what the server holds for this device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub(crate) struct UploadResponse {
    pub(crate) one_time_key_count: u64,
    pub(crate) fallback_key: bool,
}

/// `POST /keys/query`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct QueryRequest<'a> {
    pub(crate) users: &'a [UserId],
}

/// The answer of `POST /keys/query`: each user is in exactly one of the two maps.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct QueryResponse {
    #[serde(default)]
    pub(crate) users: BTreeMap<UserId, UserKeys>,
    #[serde(default)]
    pub(crate) failures: BTreeMap<UserId, Failure>,
}

/// A user's keys as a server passes them on, not yet checked.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct UserKeys {
    pub(crate) attestation: JsonObject,
    pub(crate) devices: Vec<JsonObject>,
    pub(crate) device_list_hash: String,
}

/// Why a server could not answer for a user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// `unknown_user`, `no_identity`, `unreachable`, `invalid_answer`, `denied`,
    /// `rate_limited`, …
    pub code: String,
    /// The server's explanation.
    #[serde(default)]
    pub message: String,
}

/// `POST /keys/claim`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ClaimRequest {
    pub(crate) one_time_keys: BTreeMap<UserId, Vec<DeviceId>>,
}

/// The answer of `POST /keys/claim`: a key object per device that had one.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct ClaimResponse {
    #[serde(default)]
    pub(crate) one_time_keys: BTreeMap<UserId, BTreeMap<DeviceId, JsonObject>>,
    #[serde(default)]
    pub(crate) failures: BTreeMap<UserId, Failure>,
}

/// `PUT /users/@me/to_device/{txn_id}`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct SendRequest {
    pub(crate) messages: Vec<OutgoingMessage>,
    pub(crate) device_lists: BTreeMap<UserId, String>,
}

/// One ciphertext for one device.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct OutgoingMessage {
    pub(crate) recipient: UserId,
    pub(crate) device_id: DeviceId,
    pub(crate) message_id: String,
    pub(crate) message_type: &'static str,
    pub(crate) content: OlmContent,
}

/// The answer of a send: one result per recipient user.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct SendResponse {
    pub(crate) results: BTreeMap<UserId, ShareResult>,
}

/// What became of one user's share of a send.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub(crate) enum ShareResult {
    /// Stored in every device's inbox.
    Delivered,
    /// The device list changed; nothing was stored.
    Stale {
        #[serde(default)]
        device_list_hash: Option<String>,
    },
    /// The user's server could not be reached or refused; nothing was stored.
    Unreachable {
        #[serde(default)]
        message: String,
    },
    /// A device's inbox is full; nothing was stored.
    InboxFull,
    /// A status this client does not know; treated as not delivered.
    #[serde(other)]
    Unknown,
}

/// `GET /users/@me/to_device`: the oldest items of the device's inbox.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct InboxPage {
    pub(crate) messages: Vec<InboxItem>,
    #[serde(default)]
    pub(crate) more: bool,
}

/// One message in a device's inbox, as the inbox read and the `TO_DEVICE` dispatch carry it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InboxItem {
    /// Positive, increasing in the order the inbox received messages; the same on every read.
    pub id: u64,
    /// Who sent it, as the sender's server vouches.
    pub sender: UserId,
    /// The sending device.
    pub sender_device: DeviceId,
    /// The sender's id for the message.
    pub message_id: String,
    /// `olm.v1`; anything else is refused.
    pub message_type: String,
    /// The ciphertext (spec 17.7), checked when it is decrypted.
    pub content: Value,
    /// When the inbox received it (ms).
    #[serde(default)]
    pub received_ts: u64,
}

/// `POST /users/@me/to_device/ack`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct AckRequest {
    pub(crate) up_to: u64,
}

/// The gateway's `ONE_TIME_KEYS_LOW`: the device should upload more one-time keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OneTimeKeysLow {
    /// The device.
    pub device_id: DeviceId,
    /// Its unclaimed one-time keys on the server.
    pub one_time_key_count: u64,
    /// Whether the server holds its fallback key.
    pub fallback_key: bool,
}

/// The gateway's `DEVICE_LIST_UPDATE`: a user's device list changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceListUpdate {
    /// Whose list.
    pub user_id: UserId,
    /// The hash of the new list (spec 17.2).
    pub device_list_hash: String,
}

/// The plaintext inside an Olm message (spec 17.7).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Plaintext {
    #[serde(rename = "type")]
    pub(crate) kind: String,
    pub(crate) content: Value,
    pub(crate) sender: UserId,
    pub(crate) sender_device: DeviceId,
    pub(crate) keys: Ed25519Key,
    pub(crate) recipient: UserId,
    pub(crate) recipient_keys: Ed25519Key,
}

/// `{"ed25519": <base64url key>}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Ed25519Key {
    pub(crate) ed25519: String,
}

/// `dm.message` content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DmMessage {
    /// The sender's id for the message, the same as the inbox item's (which is not encrypted,
    /// so only this one is trusted).
    pub(crate) message_id: String,
    pub(crate) conversation: String,
    pub(crate) members: Vec<UserId>,
    pub(crate) body: String,
    pub(crate) sent_ts: u64,
}
