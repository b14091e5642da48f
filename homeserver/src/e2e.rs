//! End-to-end encrypted DMs, the server's part (spec 17): device lists and their hashes,
//! one-time key claims with their limits, to-device inboxes, and telling others when a device
//! list changes. The server handles public keys and ciphertext only.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
use crate::ratelimit::RateLimiter;
use crate::store::{InboxLimits, InboxShare, NewInboxItem, ShareOutcome, now_ms};

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

/// Unacknowledged messages one device's inbox holds from one sender: no sender can fill a
/// device's inbox for everyone else.
pub const MAX_INBOX_PER_SENDER: i64 = 1_000;
/// Remote servers one key query or claim may involve.
pub const MAX_REMOTE_SERVERS: usize = 20;
/// How long device-list changes of one user are gathered before other servers are told.
const NOTIFY_DELAY: Duration = Duration::from_secs(2);
/// Verified device lists kept in memory.
const MAX_CACHED_LISTS: usize = 10_000;

/// What the E2E part of the server keeps in memory.
#[derive(Debug)]
pub struct E2eState {
    /// One-time key claims per claimer and claimed user (spec 17.3).
    claims: RateLimiter,
    /// One-time key claims per claiming server and claimed user.
    server_claims: RateLimiter,
    /// To-device shares per sender and recipient user.
    sends: RateLimiter,
    /// To-device shares per sending server and recipient user.
    server_sends: RateLimiter,
    /// Verified device lists of local users, by the fingerprint of what they were made from.
    lists: Mutex<HashMap<UserId, DeviceList>>,
    /// Serializes device-list change handling, so the last hash recorded is the newest.
    changes: tokio::sync::Mutex<()>,
    /// Users whose change other servers are about to be told of.
    pending_notices: Mutex<HashSet<UserId>>,
}

impl E2eState {
    /// Empty, with claim limits of `key_claims_per_minute` per claimer (five times that per
    /// claiming server) and send limits of `to_device_per_minute` per sender (ten times that per
    /// sending server), each per recipient user.
    pub fn new(key_claims_per_minute: u32, to_device_per_minute: u32) -> Self {
        let per_server = key_claims_per_minute.saturating_mul(5);
        let sends_per_server = to_device_per_minute.saturating_mul(10);
        Self {
            claims: RateLimiter::per_minute(key_claims_per_minute, key_claims_per_minute),
            server_claims: RateLimiter::per_minute(per_server, per_server),
            sends: RateLimiter::per_minute(to_device_per_minute, to_device_per_minute),
            server_sends: RateLimiter::per_minute(sends_per_server, sends_per_server),
            lists: Mutex::default(),
            changes: tokio::sync::Mutex::default(),
            pending_notices: Mutex::default(),
        }
    }

    /// The largest number of one user's devices one claim may name.
    pub fn max_claim_per_user(&self) -> usize {
        self.claims.burst()
    }
}

/// Takes `count` tokens from each `(limiter, key)`, all or none: `Err(retry_after_ms)` if any
/// limit is reached (and then nothing is taken).
fn take_all(buckets: &[(&RateLimiter, String, usize)]) -> Result<(), u64> {
    let mut refused: Option<u64> = None;
    let mut taken = Vec::new();
    for (limiter, key, count) in buckets {
        match limiter.take(key, *count) {
            Ok(()) => taken.push((limiter, key, count)),
            Err(retry) => refused = Some(refused.map_or(retry, |before| before.max(retry))),
        }
    }
    match refused {
        None => Ok(()),
        Some(retry) => {
            for (limiter, key, count) in taken {
                limiter.give_back(key, *count);
            }
            Err(retry)
        }
    }
}

/// Takes the send limits' tokens for each recipient user of a send: per sender, and per
/// sending server when it came over federation.
pub fn take_send_tokens(
    state: &AppState,
    sender: &UserId,
    origin: Option<&ServerName>,
    outgoing: &Outgoing,
) -> Result<(), u64> {
    let mut buckets = Vec::new();
    for user_id in outgoing.device_lists.keys() {
        buckets.push((&state.e2e.sends, format!("{sender}|{user_id}"), 1));
        if let Some(origin) = origin {
            buckets.push((&state.e2e.server_sends, format!("{origin}|{user_id}"), 1));
        }
    }
    take_all(&buckets)
}

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
    /// The fingerprint of the device rows the list was made from (see
    /// [`crate::store::Store::device_fingerprint`]): delivery checks it again when it stores.
    rows_fingerprint: String,
    /// What the list was made from: the rows' fingerprint and the attestation's issue time.
    made_from: String,
    /// The earliest `valid_until_ts` of a certificate in the list: the list is stale after it.
    valid_until: u64,
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

/// The device list of one of our users: the certificates valid against the current
/// attestation. Verified lists are kept until the user's devices or attestation change (or a
/// certificate in them expires), so repeated sends and queries do not verify them again.
pub async fn local_device_list(state: &AppState, user_id: &UserId) -> ApiResult<DeviceList> {
    // Read before the rows: a change after this read makes the fingerprint differ at delivery.
    let rows_fingerprint = state.store.device_fingerprint(user_id).await?;
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
            made_from: rows_fingerprint.clone(),
            rows_fingerprint,
            valid_until: u64::MAX,
        });
    };
    let made_from = format!("{rows_fingerprint}/{}", parsed.issued_ts);
    let now = now_ms();
    if let Ok(lists) = state.e2e.lists.lock()
        && let Some(list) = lists.get(user_id)
        && list.made_from == made_from
        && list.valid_until > now
    {
        return Ok(list.clone());
    }
    let rows = state.store.devices(user_id).await?;
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
    let valid_until =
        devices.iter().filter_map(|device| device.valid_until_ts).min().unwrap_or(u64::MAX);
    let list = DeviceList {
        attestation: Some(attestation),
        certificates,
        devices,
        hash,
        rows_fingerprint,
        made_from,
        valid_until,
    };
    if let Ok(mut lists) = state.e2e.lists.lock() {
        if lists.len() >= MAX_CACHED_LISTS {
            lists.clear();
        }
        lists.insert(user_id.clone(), list.clone());
    }
    Ok(list)
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
    let _serialized = state.e2e.changes.lock().await;
    let list = local_device_list(state, user_id).await?;
    if !state.store.swap_device_list_hash(user_id, &list.hash).await? {
        return Ok(());
    }
    let watchers = state.store.device_list_watchers(user_id).await?;
    publish_update(state, user_id, &list.hash, &watchers);
    // Other servers hear of the latest list once, a moment later: a burst of changes (a
    // rotation and re-certifying every device) makes one round of notices.
    let first = state.e2e.pending_notices.lock().is_ok_and(|mut p| p.insert(user_id.clone()));
    if first && state.federation.enabled {
        let (state, user_id) = (state.clone(), user_id.clone());
        tokio::spawn(async move {
            tokio::time::sleep(NOTIFY_DELAY).await;
            if let Ok(mut pending) = state.e2e.pending_notices.lock() {
                pending.remove(&user_id);
            }
            if let Err(error) = notify_servers(&state, &user_id).await {
                tracing::warn!(%user_id, error = %error.message(), "device-list change not told");
            }
        });
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

/// Tells the servers that share a guild with our user, or asked for their keys, the user's
/// current device-list hash (`POST /user/devices/notify`), 8 at a time, best effort.
async fn notify_servers(state: &AppState, user_id: &UserId) -> ApiResult<()> {
    use futures_util::StreamExt as _;
    let hash = local_device_list(state, user_id).await?.hash;
    let watchers = state.store.device_list_watchers(user_id).await?;
    let mut servers: BTreeSet<ServerName> =
        watchers.iter().filter_map(|w| w.strip_prefix("server:")?.parse().ok()).collect();
    for guild_id in state.store.guilds_of(user_id).await? {
        if let Ok(guild) = state.guilds.state(&guild_id).await {
            servers.extend(guild.member_servers());
        }
    }
    servers.remove(&state.server_name);
    let body = json!({"user_id": user_id, "device_list_hash": hash}).to_string().into_bytes();
    futures_util::stream::iter(servers)
        .for_each_concurrent(NOTIFY_CONCURRENCY, |server| {
            let body = body.clone();
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
    Ok(())
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
pub fn request_hash(request: &Value) -> String {
    let bytes = canonical::to_canonical_bytes(request).unwrap_or_default();
    guildhall_spec::base64url::encode(Sha256::digest(bytes))
}

/// Checks one local user's share of a send (spec 17.3): `None` if the named hash or the
/// messaged devices do not match the user's current list (stale); the inbox items otherwise.
/// A ciphertext for a key other than the target device's is an error for the whole send.
fn check_share(
    list: &DeviceList,
    sender: &UserId,
    sender_device: &DeviceId,
    user_id: &UserId,
    named_hash: &str,
    messages: &[&OutgoingMessage],
) -> ApiResult<Option<Vec<NewInboxItem>>> {
    let expected: BTreeSet<&str> = list
        .devices
        .iter()
        .map(|device| device.device_id.as_str())
        .filter(|device| !(user_id == sender && *device == sender_device.as_str()))
        .collect();
    let messaged: BTreeSet<&str> = messages.iter().map(|m| m.device_id.as_str()).collect();
    if named_hash != list.hash || expected != messaged {
        return Ok(None);
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
            device_id: message.device_id.to_string(),
            sender: sender.clone(),
            sender_device: sender_device.to_string(),
            message_id: message.message_id.clone(),
            message_type: message.message_type.clone(),
            content: Value::Object(message.content.clone()),
        });
    }
    Ok(Some(items))
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

/// Delivers the shares of one send that are for our users (spec 17.3): every share is
/// checked first (a malformed one fails the send before anything is stored), then all are
/// stored in one transaction, each user's all or none. Answers per user.
pub async fn deliver_to_locals(
    state: &AppState,
    sender: &UserId,
    sender_device: &DeviceId,
    outgoing: &Outgoing,
) -> ApiResult<BTreeMap<UserId, Value>> {
    let mut results = BTreeMap::new();
    let mut shares = Vec::new();
    for (user_id, hash) in &outgoing.device_lists {
        if user_id.server_name() != state.server_name {
            continue;
        }
        let messages: Vec<&OutgoingMessage> =
            outgoing.messages.iter().filter(|m| &m.recipient == user_id).collect();
        let list = local_device_list(state, user_id).await?;
        match check_share(&list, sender, sender_device, user_id, hash, &messages)? {
            Some(items) => shares.push(InboxShare {
                user_id: user_id.clone(),
                fingerprint: list.rows_fingerprint.clone(),
                items,
            }),
            None => {
                results.insert(user_id.clone(), stale(&list.hash));
            }
        }
    }
    let limits = InboxLimits { per_device: MAX_INBOX, per_sender: MAX_INBOX_PER_SENDER };
    let outcomes = state.store.deliver_shares(&shares, limits).await?;
    for (share, outcome) in shares.iter().zip(outcomes) {
        let result = match outcome {
            ShareOutcome::Delivered(stored) => {
                for (login, item) in stored {
                    let data = Arc::new(inbox_view(&item));
                    state.bus.publish(BusMessage::ToLogin { login, name: "TO_DEVICE", data });
                }
                json!({"status": "delivered"})
            }
            // The devices changed while the share was checked: the list is read again.
            ShareOutcome::Stale => stale(&local_device_list(state, &share.user_id).await?.hash),
            ShareOutcome::InboxFull => json!({"status": "inbox_full"}),
        };
        results.insert(share.user_id.clone(), result);
    }
    Ok(results)
}

fn stale(hash: &str) -> Value {
    json!({"status": "stale", "device_list_hash": hash})
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
    let mut buckets = Vec::new();
    for (user_id, devices) in wanted {
        buckets.push((&state.e2e.claims, format!("{claimer}|{user_id}"), devices.len()));
        if let Some(origin) = origin {
            buckets.push((&state.e2e.server_claims, format!("{origin}|{user_id}"), devices.len()));
        }
    }
    if let Err(retry) = take_all(&buckets) {
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
                let data = json!({"device_id": device_id, "one_time_key_count": count, "fallback_key": fallback});
                state.bus.publish(BusMessage::ToLogin {
                    login,
                    name: "ONE_TIME_KEYS_LOW",
                    data: Arc::new(data),
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
