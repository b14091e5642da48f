//! End-to-end encrypted DMs, the server's part (spec 17): device lists and their hashes,
//! one-time key claims with their limits, to-device inboxes, and telling others when a device
//! list changes. The server handles public keys and ciphertext only.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use guildhall_identity::device::DeviceCertificate;
use guildhall_identity::e2e::{self as wire, KeyObject, OlmContent};
use guildhall_spec::event::JsonObject;
use guildhall_spec::{DeviceId, ServerName, UserId, canonical};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::AppState;
use crate::bus::BusMessage;
use crate::error::{ApiError, ApiResult};
use crate::identity;
use crate::store::{NewInboxItem, now_ms};

/// Unclaimed one-time keys a device may hold.
pub const MAX_UNCLAIMED_KEYS: i64 = 100;
/// One-time keys per upload.
pub const MAX_KEYS_PER_UPLOAD: usize = 100;
/// Below this many one-time keys the device is told to upload more.
pub const LOW_KEYS: i64 = 20;
/// Users per key query.
pub const MAX_QUERY_USERS: usize = 100;
/// Devices per claim.
pub const MAX_CLAIM_DEVICES: usize = 100;
/// Messages per send.
pub const MAX_MESSAGES: usize = 100;
/// Recipient users per send.
pub const MAX_RECIPIENT_USERS: usize = 10;
/// The largest `content` of one message, as JSON.
pub const MAX_CONTENT_BYTES: usize = 32 * 1024;
/// Messages one device's inbox holds; a full inbox refuses more until the device catches up.
pub const MAX_INBOX: i64 = 10_000;
/// Inbox items per read.
pub const MAX_INBOX_READ: i64 = 100;
/// Servers told of one device-list change at once.
const NOTIFY_CONCURRENCY: usize = 8;

/// A message as a client (or a sending server) hands it over.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutgoingMessage {
    /// The recipient user.
    pub recipient: UserId,
    /// The recipient's device.
    pub device_id: DeviceId,
    /// The sender's id for the message.
    pub message_id: String,
    /// `olm.v1`.
    pub message_type: String,
    /// The Olm content.
    pub content: JsonObject,
}

/// The messages and device-list hashes of one send.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Outgoing {
    /// The messages.
    pub messages: Vec<OutgoingMessage>,
    /// Recipient user → the hash of the device list the messages were encrypted for.
    pub device_lists: BTreeMap<UserId, String>,
}

/// A local user's device list as others see it: the certificates valid against the current
/// attestation.
#[derive(Debug, Clone)]
pub struct DeviceList {
    /// The current attestation (`None`: the user has no usable identity key).
    pub attestation: Option<JsonObject>,
    /// The valid certificates as stored, by device id.
    pub certificates: Vec<JsonObject>,
    /// The same, parsed.
    pub devices: Vec<DeviceCertificate>,
    /// Their hash (spec 17.2).
    pub hash: String,
}

impl DeviceList {
    /// The certified device `device_id`, if it is in the list.
    pub fn device(&self, device_id: &str) -> Option<&DeviceCertificate> {
        self.devices.iter().find(|device| device.device_id.as_str() == device_id)
    }

    /// The answer to a key query for this user (spec 17.3).
    pub fn query_answer(&self) -> Option<Value> {
        let attestation = self.attestation.as_ref()?;
        Some(json!({
            "attestation": attestation,
            "devices": self.certificates,
            "device_list_hash": self.hash,
        }))
    }
}

/// The device list of one of our users.
pub async fn local_device_list(state: &AppState, user_id: &UserId) -> ApiResult<DeviceList> {
    let row = state.store.attestation(user_id).await?;
    let current = row.as_ref().filter(|row| row.identity_key.is_some()).and_then(|row| {
        identity::stored_attestation(&row.attestation)
            .map(|parsed| (row.attestation.clone(), parsed))
    });
    let Some((attestation, parsed)) = current else {
        return Ok(DeviceList {
            attestation: None,
            certificates: Vec::new(),
            devices: Vec::new(),
            hash: wire::device_list_hash([]),
        });
    };
    let rows = state.store.devices(user_id).await?;
    let now = now_ms();
    // Up to 100 devices, two signatures each: checked on the blocking pool.
    let (certificates, devices): (Vec<_>, Vec<_>) = tokio::task::spawn_blocking(move || {
        rows.into_iter()
            .filter_map(|row| {
                let device = DeviceCertificate::verify(&row.certificate, &parsed, now).ok()?;
                Some((row.certificate, device))
            })
            .unzip()
    })
    .await
    .map_err(ApiError::internal)?;
    let hash = wire::device_list_hash(&devices);
    Ok(DeviceList { attestation: Some(attestation), certificates, devices, hash })
}

/// The device of a login, with its certificate, if it is registered and currently valid.
pub async fn login_device(
    state: &AppState,
    user_id: &UserId,
    login: &str,
) -> ApiResult<DeviceCertificate> {
    let no_device = || {
        ApiError::new(
            axum::http::StatusCode::CONFLICT,
            "no_device",
            "this login has no device with a valid certificate (PUT /users/@me/devices/{id})",
        )
    };
    let row = state
        .store
        .devices(user_id)
        .await?
        .into_iter()
        .find(|row| row.session_id == login)
        .ok_or_else(no_device)?;
    let list = local_device_list(state, user_id).await?;
    list.device(&row.device_id).cloned().ok_or_else(no_device)
}

/// Tells everyone concerned that a local user's device list may have changed (a device added,
/// re-certified or removed, the identity key rotated or revoked): gateways of local users at
/// once, other servers in the background. Nothing is sent if the hash is unchanged.
pub async fn device_list_changed(state: &AppState, user_id: &UserId) {
    if let Err(error) = try_device_list_changed(state, user_id).await {
        tracing::warn!(%user_id, error = %error.message(), "device-list change not told");
    }
}

async fn try_device_list_changed(state: &AppState, user_id: &UserId) -> ApiResult<()> {
    let list = local_device_list(state, user_id).await?;
    if !state.store.swap_device_list_hash(user_id, &list.hash).await? {
        return Ok(());
    }
    let watchers = state.store.device_list_watchers(user_id).await?;
    publish_update(state, user_id, &list.hash, &watchers);
    let mut servers: BTreeSet<ServerName> =
        watchers.iter().filter_map(|w| w.strip_prefix("server:")?.parse().ok()).collect();
    for guild_id in state.store.guilds_of(user_id).await? {
        if let Ok(guild) = state.guilds.state(&guild_id).await {
            servers.extend(guild.member_servers());
        }
    }
    servers.remove(&state.server_name);
    if state.federation.enabled && !servers.is_empty() {
        let body = json!({"user_id": user_id, "device_list_hash": list.hash});
        tokio::spawn(notify_servers(state.clone(), servers, body.to_string().into_bytes()));
    }
    Ok(())
}

/// Publishes `DEVICE_LIST_UPDATE` for the local gateways: the user, users sharing a guild with
/// them (checked by each gateway session), and the local watchers.
pub fn publish_update(state: &AppState, user_id: &UserId, hash: &str, watchers: &[String]) {
    let local: HashSet<UserId> =
        watchers.iter().filter_map(|w| w.strip_prefix("user:")?.parse().ok()).collect();
    state.bus.publish(BusMessage::DeviceListUpdate {
        user_id: user_id.clone(),
        hash: hash.to_owned(),
        watchers: Arc::new(local),
    });
}

async fn notify_servers(state: AppState, servers: BTreeSet<ServerName>, body: Vec<u8>) {
    use futures_util::StreamExt as _;
    futures_util::stream::iter(servers)
        .for_each_concurrent(NOTIFY_CONCURRENCY, |server| {
            let (state, body) = (&state, body.clone());
            async move {
                if !state.federation.keys.permits(&server) {
                    return;
                }
                let path = "/_guildhall/v1/user/devices/notify";
                let sent = state.federation.client.request("POST", &server, path, None, Some(body));
                if let Err(error) = sent.await {
                    tracing::debug!(%server, %error, "device-list change not told");
                }
            }
        })
        .await;
}

/// Checks a send's shape (spec 17.3): counts, ids, the message type, each content's size and
/// form, that every recipient has a hash and every hash a message, one message per device, and
/// none to the sending device.
pub fn check_outgoing(outgoing: &Outgoing, sender: &UserId, sender_device: &str) -> ApiResult<()> {
    let bad = |message: String| ApiError::bad_request(message);
    if outgoing.messages.is_empty() || outgoing.messages.len() > MAX_MESSAGES {
        return Err(bad(format!("1 to {MAX_MESSAGES} messages per send")));
    }
    if outgoing.device_lists.is_empty() || outgoing.device_lists.len() > MAX_RECIPIENT_USERS {
        return Err(bad(format!("1 to {MAX_RECIPIENT_USERS} recipient users per send")));
    }
    let mut targets = BTreeSet::new();
    for message in &outgoing.messages {
        if !outgoing.device_lists.contains_key(&message.recipient) {
            return Err(bad(format!("{} has no entry in device_lists", message.recipient)));
        }
        if !is_message_id(&message.message_id) {
            return Err(bad("message_id must be [A-Za-z0-9._~-]{1,64}".into()));
        }
        if !targets.insert((&message.recipient, message.device_id.as_str())) {
            return Err(bad(format!(
                "two messages for {} {}",
                message.recipient, message.device_id
            )));
        }
        if &message.recipient == sender && message.device_id.as_str() == sender_device {
            return Err(bad("a device does not message itself".into()));
        }
        check_content(message)?;
    }
    let messaged: BTreeSet<&UserId> = targets.iter().map(|(user, _)| *user).collect();
    if let Some(user) = outgoing.device_lists.keys().find(|user| !messaged.contains(user)) {
        return Err(bad(format!("{user} is in device_lists but has no message")));
    }
    Ok(())
}

fn check_content(message: &OutgoingMessage) -> ApiResult<OlmContent> {
    let invalid = |reason: String| {
        ApiError::new(axum::http::StatusCode::BAD_REQUEST, "invalid_content", reason)
    };
    if message.message_type != wire::OLM_MESSAGE_TYPE {
        return Err(invalid(format!(
            "message_type must be {} (there is no plaintext to-device message)",
            wire::OLM_MESSAGE_TYPE
        )));
    }
    if Value::Object(message.content.clone()).to_string().len() > MAX_CONTENT_BYTES {
        return Err(invalid(format!("content is larger than {MAX_CONTENT_BYTES} bytes")));
    }
    OlmContent::parse(&message.content).map_err(|e| invalid(e.to_string()))
}

/// Checks that every message's `sender_key` is the sending device's certified key.
pub fn check_sender_key(outgoing: &Outgoing, device: &DeviceCertificate) -> ApiResult<()> {
    for message in &outgoing.messages {
        if check_content(message)?.sender_key != device.device_keys.curve25519 {
            return Err(ApiError::new(
                axum::http::StatusCode::BAD_REQUEST,
                "invalid_content",
                "sender_key is not the sending device's certified Curve25519 key",
            ));
        }
    }
    Ok(())
}

fn is_message_id(text: &str) -> bool {
    (1..=64).contains(&text.len())
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || b"._~-".contains(&b))
}

/// The hash a replay is compared with: SHA-256 of the canonical JSON of the request.
pub fn request_hash(outgoing: &Outgoing) -> String {
    let bytes = canonical::to_canonical_bytes(outgoing).unwrap_or_default();
    guildhall_spec::base64url::encode(Sha256::digest(bytes))
}

/// Delivers the messages of one send to one local user (spec 17.3): all into their devices'
/// inboxes if the named hash and the messaged devices match the current list, none otherwise.
pub async fn deliver_local(
    state: &AppState,
    sender: &UserId,
    sender_device: &DeviceId,
    user_id: &UserId,
    named_hash: &str,
    messages: &[&OutgoingMessage],
) -> ApiResult<Value> {
    let list = local_device_list(state, user_id).await?;
    let expected: BTreeSet<&str> = list
        .devices
        .iter()
        .map(|device| device.device_id.as_str())
        .filter(|device| !(user_id == sender && *device == sender_device.as_str()))
        .collect();
    let messaged: BTreeSet<&str> = messages.iter().map(|m| m.device_id.as_str()).collect();
    if named_hash != list.hash || expected != messaged {
        return Ok(json!({"status": "stale", "device_list_hash": list.hash}));
    }
    for message in messages {
        if state.store.inbox_len(user_id, message.device_id.as_str()).await? >= MAX_INBOX {
            return Ok(json!({"status": "inbox_full"}));
        }
    }
    let mut items = Vec::with_capacity(messages.len());
    for message in messages {
        let content = check_content(message)?;
        let certified = list.device(message.device_id.as_str()).map(|d| &d.device_keys.curve25519);
        if certified.map(String::as_str) != Some(content.target_key()) {
            return Err(ApiError::new(
                axum::http::StatusCode::BAD_REQUEST,
                "invalid_content",
                format!("the ciphertext is not for {}'s certified key", message.device_id),
            ));
        }
        items.push(NewInboxItem {
            user_id: user_id.clone(),
            device_id: message.device_id.to_string(),
            sender: sender.clone(),
            sender_device: sender_device.to_string(),
            message_id: message.message_id.clone(),
            message_type: message.message_type.clone(),
            content: Value::Object(message.content.clone()),
        });
    }
    for (item, stored) in state.store.put_inbox(&items).await? {
        if let Some(login) = state.store.device_session(&item.user_id, &item.device_id).await? {
            state.bus.publish(BusMessage::ToLogin {
                login,
                name: "TO_DEVICE",
                data: inbox_view(&stored),
            });
        }
    }
    Ok(json!({"status": "delivered"}))
}

/// An inbox item as clients see it.
pub fn inbox_view(item: &crate::store::InboxItem) -> Value {
    json!({
        "id": item.id,
        "sender": item.sender,
        "sender_device": item.sender_device,
        "message_id": item.message_id,
        "message_type": item.message_type,
        "content": item.content,
        "received_ts": item.received_ts,
    })
}

/// Delivers the shares of one send that are for our users, user by user; the answer is
/// `{"results": {user: …}}`.
pub async fn deliver_to_locals(
    state: &AppState,
    sender: &UserId,
    sender_device: &DeviceId,
    outgoing: &Outgoing,
) -> ApiResult<BTreeMap<UserId, Value>> {
    let mut results = BTreeMap::new();
    for (user_id, hash) in &outgoing.device_lists {
        if user_id.server_name() != state.server_name {
            continue;
        }
        let messages: Vec<&OutgoingMessage> =
            outgoing.messages.iter().filter(|m| &m.recipient == user_id).collect();
        let result = deliver_local(state, sender, sender_device, user_id, hash, &messages).await?;
        results.insert(user_id.clone(), result);
    }
    Ok(results)
}

/// Claims one key of each listed device of our users for `claimer`, after taking the claim
/// limit's tokens for every claimed user (spec 17.3): if any limit is exceeded, nothing is
/// handed out and `Err(retry_after_ms)` says when to try again. `origin` is the claiming server
/// when the claim came over federation; it is limited too, so that a server cannot multiply its
/// budget by inventing users.
pub async fn claim_local(
    state: &AppState,
    claimer: &UserId,
    origin: Option<&ServerName>,
    wanted: &BTreeMap<UserId, Vec<DeviceId>>,
) -> ApiResult<Result<BTreeMap<UserId, JsonObject>, u64>> {
    let mut taken: Vec<(&crate::ratelimit::RateLimiter, String, usize)> = Vec::new();
    let mut refused: Option<u64> = None;
    for (user_id, devices) in wanted {
        let count = devices.len();
        let mut buckets = vec![(&*state.key_claims, format!("{claimer}|{user_id}"))];
        if let Some(origin) = origin {
            buckets.push((&*state.server_key_claims, format!("{origin}|{user_id}")));
        }
        for (limiter, key) in buckets {
            match limiter.take(&key, count) {
                Ok(()) => taken.push((limiter, key, count)),
                Err(retry) => refused = Some(refused.map_or(retry, |before| before.max(retry))),
            }
        }
    }
    if let Some(retry) = refused {
        for (limiter, key, count) in taken {
            limiter.give_back(&key, count);
        }
        return Ok(Err(retry));
    }
    let mut answer = BTreeMap::new();
    for (user_id, devices) in wanted {
        if user_id.server_name() != state.server_name {
            continue;
        }
        let mut claimed = JsonObject::new();
        for device_id in devices {
            let Some(key) = state.store.claim_key(user_id, device_id.as_str()).await? else {
                continue;
            };
            if key.remaining < LOW_KEYS
                && let Some(login) = state.store.device_session(user_id, device_id.as_str()).await?
            {
                let (count, fallback) = state.store.key_counts(user_id, device_id.as_str()).await?;
                state.bus.publish(BusMessage::ToLogin {
                    login,
                    name: "ONE_TIME_KEYS_LOW",
                    data: json!({"device_id": device_id, "one_time_key_count": count, "fallback_key": fallback}),
                });
            }
            claimed.insert(device_id.to_string(), key.key_object);
        }
        if !claimed.is_empty() {
            answer.insert(user_id.clone(), claimed);
        }
    }
    Ok(Ok(answer))
}

/// Checks a key object a device uploads (spec 17.2): signed by the device's certified key, and
/// a fallback key exactly when `fallback`.
pub fn check_key_object(
    object: &JsonObject,
    user_id: &UserId,
    device: &DeviceCertificate,
    fallback: bool,
) -> ApiResult<KeyObject> {
    let invalid =
        |reason: String| ApiError::new(axum::http::StatusCode::BAD_REQUEST, "invalid_key", reason);
    let parsed =
        KeyObject::verify(object, user_id, device.device_id.as_str(), &device.device_keys.ed25519)
            .map_err(|e| invalid(e.to_string()))?;
    if parsed.fallback != fallback {
        return Err(invalid(format!(
            "key {} has \"fallback\": {}",
            parsed.key_id, parsed.fallback
        )));
    }
    Ok(parsed)
}
