//! Sending (spec 17.3): query and verify the members' devices, claim keys for devices without
//! a session, encrypt once per device, and send each user's share with the hash of the list it
//! was encrypted for. A `stale` share is encrypted again for the new list, under a new
//! transaction; anything that still fails is reported per user.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use guildhall_identity::device::DeviceKeys;
use guildhall_spec::{DeviceId, ServerName, UserId, base64url};
use reqwest::Method;
use serde_json::Value;

use super::keys::{self, KeysError, VerifiedUser};
use super::store::{HistoryEntry, StoredSession};
use super::wire::{
    DM_MESSAGE, DmMessage, Ed25519Key, Failure, OLM_ALGORITHM, OLM_MESSAGE_TYPE, OlmCiphertext,
    OlmContent, OutgoingMessage, Plaintext, QueryRequest, QueryResponse, SendRequest, SendResponse,
    ShareResult,
};
use super::{Device, E2eError, SESSIONS_PER_DEVICE, now_ms, random_id};
use crate::error::Error;
use crate::session::Session;

/// How often a user's share is sent again after `stale`.
const STALE_RETRIES: usize = 3;
/// Messages in one send request (spec 17.10).
const MESSAGES_PER_REQUEST: usize = 100;
/// Recipient users in one send request (spec 17.10).
const USERS_PER_REQUEST: usize = 10;
/// Attempts of one to-device request that got no answer.
const SEND_ATTEMPTS: u32 = 3;
/// The wait before the first repeated attempt; it grows with each.
const RETRY_PAUSE: std::time::Duration = std::time::Duration::from_millis(500);
/// The longest a send waits, in all, for to-device limits to pass (`retry_after_ms`).
const MAX_SEND_WAIT: std::time::Duration = std::time::Duration::from_secs(30);
/// Users in one key query (spec 17.10).
const USERS_PER_QUERY: usize = 100;
/// The largest plaintext sent, in bytes: encrypted, base64url-encoded and wrapped, it stays
/// within the 32 KiB a message's `content` may take (spec 17.10).
const MAX_PLAINTEXT_BYTES: usize = 22 * 1024;
/// Members of a conversation, the sender included (spec 17.7).
pub(crate) const MAX_MEMBERS: usize = 10;
/// Characters of a message's text (spec 17.7).
pub(crate) const MAX_BODY_CHARS: usize = 4000;
/// Characters of a conversation id (spec 17.7).
pub(crate) const MAX_CONVERSATION_CHARS: usize = 64;

/// What a send led to, per recipient user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SendReport {
    /// The message's id, the same for every device.
    pub message_id: String,
    /// The users every device of whom got the message (this user, when they have other
    /// devices, included).
    pub delivered: Vec<UserId>,
    /// The users none of whose devices got it, and why. Nothing is stored for them.
    pub failed: BTreeMap<UserId, ShareFailure>,
    /// Users whose identity key differs from the one this device saw before: a rotation, or
    /// someone else's key. Their share failed ([`ShareFailure::IdentityChanged`]) and keeps
    /// failing until the person accepts the new key ([`Device::accept_identity`]).
    pub identity_changed: Vec<UserId>,
}

/// Why a user's share of a send was not delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShareFailure {
    /// A server could not give the user's keys (`unknown_user`, `no_identity`, `unreachable`,
    /// `invalid_answer`, `denied`, `rate_limited`, …).
    #[error("{}: {}", .0.code, .0.message)]
    KeysUnavailable(Failure),
    /// The keys a server passed on do not verify.
    #[error("the user's keys do not verify: {0}")]
    InvalidKeys(KeysError),
    /// The user has no device to encrypt for.
    #[error("the user has no device that can receive encrypted messages")]
    NoDevices,
    /// These devices have neither a one-time key nor a fallback key left.
    #[error("no key left to start a session with device(s) {}", list(.0))]
    NoKeys(Vec<DeviceId>),
    /// A claimed key is not signed by the device's certified key.
    #[error("the key claimed for device {device} does not verify: {reason}")]
    InvalidKeyObject {
        /// The device.
        device: DeviceId,
        /// Why.
        reason: String,
    },
    /// The user's server could not be reached, or refused the share.
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// A device of the user holds too many unread messages already.
    #[error("a device's inbox is full")]
    InboxFull,
    /// The user's device list changed on every attempt.
    #[error("the user's device list kept changing")]
    StaleDeviceList,
    /// A request to this user's own server failed.
    #[error("request failed: {0}")]
    Request(String),
    /// The server's answer did not say the share was delivered.
    #[error("not delivered: {0}")]
    NotDelivered(String),
    /// The user's identity key is not the one this device knew: nothing is encrypted for the
    /// new key's devices until the person accepts the change ([`Device::accept_identity`]).
    #[error("the user's identity key changed: check with them, then accept the new key")]
    IdentityChanged,
}

impl ShareFailure {
    /// Whether the failure may pass by itself (a server that could not be reached, a limit,
    /// a key document that could not be had), rather than being a verdict on the user's keys.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::KeysUnavailable(failure) => {
                matches!(failure.code.as_str(), "unreachable" | "rate_limited")
            }
            Self::InvalidKeys(KeysError::NoServerKeys(_))
            | Self::Request(_)
            | Self::NotDelivered(_)
            | Self::Unreachable(_)
            | Self::InboxFull => true,
            _ => false,
        }
    }
}

fn list(devices: &[DeviceId]) -> String {
    devices.iter().map(DeviceId::as_str).collect::<Vec<_>>().join(", ")
}

/// The verified keys of some users, and why the others have none.
#[derive(Default)]
pub(super) struct Verified {
    pub(super) users: BTreeMap<UserId, VerifiedUser>,
    pub(super) failed: BTreeMap<UserId, ShareFailure>,
    pub(super) identity_changed: Vec<UserId>,
}

/// One user's share: the devices to encrypt for and the hash of the list they make.
pub(super) struct Target {
    pub(super) device_list_hash: String,
    pub(super) devices: Vec<(DeviceId, DeviceKeys)>,
}

/// One user's share, encrypted.
struct Share {
    user: UserId,
    device_list_hash: String,
    messages: Vec<OutgoingMessage>,
}

impl Device {
    /// Sends `body` to the conversation `conversation` (an id of at most 64 characters; a new
    /// random one starts a conversation) with `members` (this user is added if missing; 2 to
    /// 10 people). Every device of every member gets it, and this user's other devices too;
    /// the report says which users did not. Errors only when nothing could be tried: an
    /// invalid message, another account's session, or a store that cannot be written.
    pub async fn send(
        &mut self,
        session: &Session,
        conversation: &str,
        members: &[UserId],
        body: &str,
    ) -> Result<SendReport, E2eError> {
        self.check_account(session)?;
        let members: Vec<UserId> = self.member_set(members).into_iter().collect();
        let message_id = random_id();
        let message = DmMessage {
            message_id: message_id.clone(),
            conversation: conversation.to_owned(),
            members: members.clone(),
            body: body.to_owned(),
            sent_ts: now_ms(),
        };
        check_message(&message, &self.contents.user_id, &self.contents.user_id)
            .map_err(E2eError::InvalidMessage)?;
        let content =
            serde_json::to_value(&message).map_err(|e| E2eError::InvalidMessage(e.to_string()))?;
        let users = members.into_iter().collect();
        let report = self.share(session, &users, DM_MESSAGE, &content, &message_id, None).await?;
        // Recorded once the outcome is known, with the members who did not get it.
        let entry = HistoryEntry {
            message_id,
            sender: self.contents.user_id.clone(),
            sender_device: self.contents.device_id.clone(),
            body: message.body.clone(),
            sent_ts: message.sent_ts,
            not_delivered: report.failed.keys().cloned().collect(),
        };
        self.record(&message, entry);
        self.save()?;
        Ok(report)
    }

    /// Adds a message to the history of the conversation of its id and members, creating
    /// the conversation. A message never changes a conversation's members: other members make
    /// another conversation, and the members of the one it differs from are returned.
    pub(super) fn record(
        &mut self,
        message: &DmMessage,
        entry: HistoryEntry,
    ) -> Option<Vec<UserId>> {
        let conversations = &mut self.contents.state.conversations;
        super::store::record(conversations, &message.conversation, &message.members, entry)
    }

    /// Encrypts a plaintext of inner type `kind` for every device of `users` (this device
    /// left out) and sends it, retrying `stale` shares. `fresh` names a device that gets a new
    /// session even if it has one (a reset, spec 17.9).
    pub(super) async fn share(
        &mut self,
        session: &Session,
        users: &BTreeSet<UserId>,
        kind: &str,
        content: &Value,
        message_id: &str,
        fresh: Option<(&UserId, &DeviceId)>,
    ) -> Result<SendReport, E2eError> {
        let mut report = SendReport { message_id: message_id.to_owned(), ..SendReport::default() };
        let mut fresh = fresh.map(|(user, device)| (user.clone(), device.clone()));
        let mut pending = users.clone();
        // A conversation message goes to this user's other devices too; a reset does not.
        let copy_to_own = users.contains(&self.contents.user_id);
        for _ in 0..=STALE_RETRIES {
            if pending.is_empty() {
                break;
            }
            let verified = match self.verify_users(session, &pending).await {
                Ok(verified) => verified,
                Err(error @ (E2eError::OwnKeys(_) | E2eError::Store(_))) => return Err(error),
                Err(error) => {
                    fail_all(&mut report, &pending, &ShareFailure::Request(error.to_string()));
                    return Ok(report);
                }
            };
            report.failed.extend(verified.failed);
            for user in verified.identity_changed {
                if !report.identity_changed.contains(&user) {
                    report.identity_changed.push(user);
                }
            }
            let mut targets = self.targets(verified.users, &mut report);
            self.ensure_sessions(session, &mut targets, fresh.take(), &mut report).await;
            let shares = self.encrypt(targets, kind, content, message_id, &mut report)?;
            // The ratchets moved: they must be on disk before the ciphertexts leave.
            self.save()?;
            pending = self.deliver(session, shares, copy_to_own, &mut report).await;
        }
        fail_all(&mut report, &pending, &ShareFailure::StaleDeviceList);
        Ok(report)
    }

    /// Queries `users`' keys and verifies them; records the verified devices as known peers.
    /// A user whose identity key differs from the one known is not recorded: the new keys
    /// wait in `identity_changes` and the user is failed with [`ShareFailure::IdentityChanged`].
    /// `Err` when the query itself failed, or when the server lies about this device's own
    /// user ([`E2eError::OwnKeys`]).
    pub(super) async fn verify_users(
        &mut self,
        session: &Session,
        users: &BTreeSet<UserId>,
    ) -> Result<Verified, E2eError> {
        let mut verified = Verified::default();
        let all: Vec<UserId> = users.iter().cloned().collect();
        let mut answers = QueryResponse { users: BTreeMap::new(), failures: BTreeMap::new() };
        for chunk in all.chunks(USERS_PER_QUERY) {
            let answer: QueryResponse = session
                .call(Method::POST, &["keys", "query"], &QueryRequest { users: chunk })
                .await?;
            answers.users.extend(answer.users);
            answers.failures.extend(answer.failures);
        }
        let servers: BTreeSet<ServerName> = answers.users.keys().map(UserId::server_name).collect();
        let documents = self.home_server_keys(session, &servers).await;
        let now = now_ms();
        for user in users {
            if let Some(failure) = answers.failures.remove(user) {
                verified.failed.insert(user.clone(), ShareFailure::KeysUnavailable(failure));
                continue;
            }
            let Some(answer) = answers.users.get(user) else {
                let failure =
                    ShareFailure::NotDelivered("the server did not answer for the user".into());
                verified.failed.insert(user.clone(), failure);
                continue;
            };
            let checked = documents
                .get(&user.server_name())
                .ok_or_else(|| KeysError::NoServerKeys(user.server_name()))
                .and_then(|document| keys::verify_user(user, answer, document, now));
            let keys = match checked {
                Ok(keys) => keys,
                Err(error) => {
                    verified.failed.insert(user.clone(), ShareFailure::InvalidKeys(error));
                    continue;
                }
            };
            if *user == self.contents.user_id {
                // This device's own identity is pinned by its certificate, not learnt from the
                // server: a server that serves another key, or a list without this device,
                // is lying about this very user.
                self.check_own_keys(&keys)?;
            } else if let Some(known) = self.contents.state.peers.get(user)
                && known.identity_key != keys.identity_key
            {
                // A known identity key is never replaced silently: the change waits for the
                // person to accept it (`Device::accept_identity`), and until then nothing is
                // encrypted for, or accepted from, the new key's devices.
                verified.identity_changed.push(user.clone());
                verified.failed.insert(user.clone(), ShareFailure::IdentityChanged);
                self.contents.state.identity_changes.insert(user.clone(), keys);
                continue;
            }
            // The key is the known one (again): a change reported before is no longer to be
            // accepted.
            self.contents.state.identity_changes.remove(user);
            self.contents.state.peers.insert(user.clone(), keys.clone());
            verified.users.insert(user.clone(), keys);
        }
        Ok(verified)
    }

    /// Checks what the server says of this device's own user against what this device knows
    /// for itself: the identity key that certified it, and itself among the devices with its
    /// own keys.
    fn check_own_keys(&self, keys: &VerifiedUser) -> Result<(), E2eError> {
        let certified = self.contents.state.certificate.get("identity_key").and_then(Value::as_str);
        if certified != Some(keys.identity_key.as_str()) {
            return Err(E2eError::OwnKeys(
                "the server gives another identity key than the one that certified this device \
                 (after a rotation of the identity key, certify the device again)"
                    .into(),
            ));
        }
        if keys.devices.get(&self.contents.device_id) != Some(&self.device_keys()) {
            return Err(E2eError::OwnKeys(
                "the server's list of this user's devices does not hold this device's keys".into(),
            ));
        }
        Ok(())
    }

    /// The verified key documents of `servers`, through this server's notary. A server whose
    /// document cannot be had is missing from the answer.
    async fn home_server_keys(
        &self,
        session: &Session,
        servers: &BTreeSet<ServerName>,
    ) -> BTreeMap<ServerName, guildhall_spec::api::get_server_keys::ServerKeys> {
        let wanted: Vec<ServerName> = servers.iter().cloned().collect();
        let Ok(documents) = session.notary_keys(&wanted).await else { return BTreeMap::new() };
        let mut verified = BTreeMap::new();
        for document in &documents {
            let named = document.get("server_name").and_then(Value::as_str);
            let Some(server) = wanted
                .iter()
                .find(|server| named.is_some_and(|n| n.eq_ignore_ascii_case(server.as_str())))
            else {
                continue;
            };
            if let Ok(keys) = keys::verify_server_keys(server, document) {
                verified.insert(server.clone(), keys);
            }
        }
        verified
    }

    /// The devices to encrypt for, per user: all of them but this one. A user without any is
    /// reported, except this user (who may have no other device).
    fn targets(
        &self,
        users: BTreeMap<UserId, VerifiedUser>,
        report: &mut SendReport,
    ) -> BTreeMap<UserId, Target> {
        let me = &self.contents.user_id;
        let mut targets = BTreeMap::new();
        for (user, keys) in users {
            let devices: Vec<(DeviceId, DeviceKeys)> = keys
                .devices
                .into_iter()
                .filter(|(device_id, _)| !(user == *me && *device_id == self.contents.device_id))
                .collect();
            if devices.is_empty() {
                if user != *me {
                    report.failed.insert(user, ShareFailure::NoDevices);
                }
                continue;
            }
            targets.insert(user, Target { device_list_hash: keys.device_list_hash, devices });
        }
        targets
    }

    /// Adds a session with a peer device as its newest, forgetting the oldest past the limit.
    pub(super) fn add_session(&mut self, curve25519: &str, stored: StoredSession) {
        let sessions = self.contents.sessions.entry(curve25519.to_owned()).or_default();
        sessions.insert(0, stored);
        sessions.truncate(SESSIONS_PER_DEVICE);
    }

    /// Encrypts the plaintext for every device of every target, with its newest session.
    fn encrypt(
        &mut self,
        targets: BTreeMap<UserId, Target>,
        kind: &str,
        content: &Value,
        message_id: &str,
        report: &mut SendReport,
    ) -> Result<Vec<Share>, E2eError> {
        let sender_key = self.curve25519();
        let keys = Ed25519Key { ed25519: self.ed25519() };
        let mut shares = Vec::new();
        'users: for (user, target) in targets {
            let mut messages = Vec::with_capacity(target.devices.len());
            for (device_id, device_keys) in target.devices {
                let plaintext = Plaintext {
                    kind: kind.to_owned(),
                    content: content.clone(),
                    sender: self.contents.user_id.clone(),
                    sender_device: self.contents.device_id.clone(),
                    keys: keys.clone(),
                    recipient: user.clone(),
                    recipient_keys: Ed25519Key { ed25519: device_keys.ed25519.clone() },
                };
                let bytes = serde_json::to_vec(&plaintext)
                    .map_err(|e| E2eError::InvalidMessage(e.to_string()))?;
                if bytes.len() > MAX_PLAINTEXT_BYTES {
                    return Err(E2eError::InvalidMessage(format!(
                        "{} bytes encrypted would exceed what a to-device message may carry",
                        bytes.len()
                    )));
                }
                let newest = self
                    .contents
                    .sessions
                    .get_mut(&device_keys.curve25519)
                    .and_then(|sessions| sessions.first_mut());
                let encrypted = newest.map(|stored| stored.session.encrypt(&bytes));
                let Some(Ok(message)) = encrypted else {
                    let failure = ShareFailure::NotDelivered(format!(
                        "no usable session with device {device_id}"
                    ));
                    report.failed.insert(user, failure);
                    continue 'users;
                };
                let (message_type, body) = message.to_parts();
                let ciphertext = OlmCiphertext {
                    message_type: u8::try_from(message_type).unwrap_or(u8::MAX),
                    body: base64url::encode(body),
                };
                messages.push(OutgoingMessage {
                    recipient: user.clone(),
                    device_id,
                    message_id: message_id.to_owned(),
                    message_type: OLM_MESSAGE_TYPE,
                    content: OlmContent {
                        algorithm: OLM_ALGORITHM.to_owned(),
                        sender_key: sender_key.clone(),
                        ciphertext: BTreeMap::from([(device_keys.curve25519, ciphertext)]),
                    },
                });
            }
            shares.push(Share { user, device_list_hash: target.device_list_hash, messages });
        }
        Ok(shares)
    }

    /// Sends the shares, a few users per request; returns the users whose share was `stale`.
    async fn deliver(
        &mut self,
        session: &Session,
        shares: Vec<Share>,
        copy_to_own: bool,
        report: &mut SendReport,
    ) -> BTreeSet<UserId> {
        let mut stale = BTreeSet::new();
        let mut queue: VecDeque<Vec<Share>> = batches(shares).into();
        let mut waited = std::time::Duration::ZERO;
        while let Some(batch) = queue.pop_front() {
            let users: BTreeSet<UserId> = batch.iter().map(|share| share.user.clone()).collect();
            let mut request = SendRequest { messages: Vec::new(), device_lists: BTreeMap::new() };
            for share in &batch {
                request.device_lists.insert(share.user.clone(), share.device_list_hash.clone());
                request.messages.extend(share.messages.iter().cloned());
            }
            let answer = match put_to_device(session, &request).await {
                Ok(answer) => answer,
                Err(error) => {
                    // A send over a limit is refused whole, with nothing stored (spec 17.3):
                    // one user's limit must not fail the others, so each share goes again on
                    // its own, and a share alone waits out `retry_after_ms` (within bounds).
                    let limited = matches!(error, Error::Refused { status: 429, .. });
                    if limited && batch.len() > 1 {
                        for share in batch.into_iter().rev() {
                            queue.push_front(vec![share]);
                        }
                        continue;
                    }
                    if let Error::Refused { status: 429, retry_after_ms: Some(ms), .. } = &error {
                        let wait = std::time::Duration::from_millis(*ms);
                        if waited + wait <= MAX_SEND_WAIT {
                            waited += wait;
                            tokio::time::sleep(wait).await;
                            queue.push_front(batch);
                            continue;
                        }
                    }
                    fail_all(report, &users, &ShareFailure::Request(error.to_string()));
                    continue;
                }
            };
            // The server answers `stale` for this user when the send leaves out an own device
            // it does not know of (spec 17.3), also when this user has no share in the batch
            // (no other device was known): that device must get the message too.
            let me = &self.contents.user_id;
            if copy_to_own
                && !users.contains(me)
                && matches!(answer.results.get(me), Some(ShareResult::Stale { .. }))
            {
                stale.insert(me.clone());
            }
            for user in users {
                match answer.results.get(&user) {
                    Some(ShareResult::Delivered) => report.delivered.push(user),
                    Some(ShareResult::Stale { .. }) => {
                        stale.insert(user);
                    }
                    Some(ShareResult::Unreachable { message }) => {
                        report.failed.insert(user, ShareFailure::Unreachable(message.clone()));
                    }
                    Some(ShareResult::InboxFull) => {
                        report.failed.insert(user, ShareFailure::InboxFull);
                    }
                    Some(ShareResult::Unknown) | None => {
                        let failure = ShareFailure::NotDelivered("no result for the user".into());
                        report.failed.insert(user, failure);
                    }
                }
            }
        }
        stale
    }
}

/// Sends one to-device request. When no answer came back (the connection failed) or the
/// server is still carrying out the first attempt, the same request goes again under the same
/// `txn_id` a few times: the server answers a replay with the first answer, so nothing is
/// delivered twice (spec 17.3).
async fn put_to_device(session: &Session, request: &SendRequest) -> Result<SendResponse, Error> {
    let txn_id = random_id();
    let path = ["users", "@me", "to_device", txn_id.as_str()];
    let mut attempt = 0;
    loop {
        let error = match session.call(Method::PUT, &path, request).await {
            Ok(answer) => return Ok(answer),
            Err(error) => error,
        };
        let again =
            matches!(error, Error::Unreachable { .. }) || error.code() == Some("txn_in_progress");
        attempt += 1;
        if !again || attempt >= SEND_ATTEMPTS {
            return Err(error);
        }
        tokio::time::sleep(RETRY_PAUSE * attempt).await;
    }
}

/// Groups shares into requests of at most 100 messages and 10 users; a share is never split
/// (the server compares a user's whole device list with the devices messaged).
fn batches(shares: Vec<Share>) -> Vec<Vec<Share>> {
    let mut batches: Vec<Vec<Share>> = Vec::new();
    let mut messages = 0;
    for share in shares {
        let fits = batches.last().is_some_and(|batch| {
            batch.len() < USERS_PER_REQUEST
                && messages + share.messages.len() <= MESSAGES_PER_REQUEST
        });
        if !fits {
            batches.push(Vec::new());
            messages = 0;
        }
        messages += share.messages.len();
        if let Some(batch) = batches.last_mut() {
            batch.push(share);
        }
    }
    batches
}

fn fail_all(report: &mut SendReport, users: &BTreeSet<UserId>, failure: &ShareFailure) {
    for user in users {
        report.failed.insert(user.clone(), failure.clone());
    }
}

/// Checks a `dm.message` against spec 17.7: the conversation id, 2 to 10 distinct members
/// among whom `sender` and `recipient`, and a text of 1 to 4000 characters.
pub(super) fn check_message(
    message: &DmMessage,
    sender: &UserId,
    recipient: &UserId,
) -> Result<(), String> {
    let id = &message.message_id;
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '~' | '-');
    if id.is_empty() || id.len() > 64 || !id.chars().all(allowed) {
        return Err("a message id is [A-Za-z0-9._~-]{1,64}".into());
    }
    let conversation = message.conversation.chars().count();
    if conversation == 0 || conversation > MAX_CONVERSATION_CHARS {
        return Err(format!("a conversation id has 1 to {MAX_CONVERSATION_CHARS} characters"));
    }
    let distinct: BTreeSet<&UserId> = message.members.iter().collect();
    if distinct.len() != message.members.len() {
        return Err("a member is listed twice".into());
    }
    if !(2..=MAX_MEMBERS).contains(&distinct.len()) {
        return Err(format!("a conversation has 2 to {MAX_MEMBERS} members"));
    }
    if !distinct.contains(sender) || !distinct.contains(recipient) {
        return Err("the sender and the recipient must be members".into());
    }
    let body = message.body.chars().count();
    if body == 0 || body > MAX_BODY_CHARS {
        return Err(format!("a message has 1 to {MAX_BODY_CHARS} characters"));
    }
    Ok(())
}
