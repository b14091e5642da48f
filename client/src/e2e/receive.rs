//! Receiving (spec 17.3, 17.6, 17.7, 17.9): read the inbox, decrypt each item with the sender
//! device's sessions (newest first; a pre-key message that none decrypts starts a new one),
//! check the plaintext against the inbox item and the sender's certificate, and acknowledge.
//! A message that cannot be decrypted is dropped and reported, and the sender device is sent
//! `dm.reset` over a new session, at most once an hour.

use std::collections::BTreeSet;

use guildhall_spec::{DeviceId, UserId, base64url};
use reqwest::Method;
use serde_json::Value;
use vodozemac::Curve25519PublicKey;
use vodozemac::olm::{OlmMessage, Session as OlmSession, SessionConfig};

use super::send::{ShareFailure, check_message};
use super::store::{HistoryEntry, MAX_HELD, StoredSession};
use super::wire::{
    AckRequest, DM_MESSAGE, DM_RESET, DmMessage, InboxItem, InboxPage, OLM_ALGORITHM,
    OLM_MESSAGE_TYPE, OlmContent, Plaintext,
};
use super::{Device, E2eError, now_ms, random_id};
use crate::gateway::GatewayEvent;
use crate::session::Session;

/// How long after a `dm.reset` to a device another may be sent to it (spec 17.9).
const RESET_INTERVAL_MS: u64 = 60 * 60 * 1000;
/// How long after a failed `dm.reset` to a device another may be tried.
const FAILED_RESET_INTERVAL_MS: u64 = 5 * 60 * 1000;
/// Inbox items read at once (spec 17.10).
const INBOX_PAGE: &str = "100";
/// Inbox pages one [`Device::receive`] reads at most: a device's whole inbox (10,000 items,
/// spec 17.10).
const MAX_PAGES: usize = 100;

/// An inbound session a pre-key message started, and whether it used the fallback key.
type NewSession = (OlmSession, bool);

/// What an inbox item turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A message of a conversation, decrypted and checked.
    Message(ReceivedMessage),
    /// A peer device started a new session with this one after it could not read a message of
    /// this device (spec 17.9); messages this device sent before may be lost to it.
    SessionReset {
        /// The peer.
        sender: UserId,
        /// Its device.
        sender_device: DeviceId,
    },
    /// An item that could not be read, or did not pass the checks: it was dropped.
    Undecryptable(Undecryptable),
    /// An item from a device of a user whose identity key is no longer the one this device
    /// knew: a rotation, or someone else's key. Nothing from the new key's devices is accepted,
    /// nor encrypted for them, until the person checks with the sender another way and accepts
    /// it ([`Device::accept_identity`](super::Device::accept_identity)). The item is kept
    /// unread (up to 1000 such items) and read by the first [`Device::receive`] after that.
    IdentityChanged {
        /// The inbox item.
        inbox_id: u64,
        /// The user.
        sender: UserId,
        /// The sending device, as the sender's server says.
        sender_device: DeviceId,
    },
}

/// A decrypted conversation message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    /// The conversation.
    pub conversation: String,
    /// Its members as the sender sees them, the sender and this user included.
    pub members: Vec<UserId>,
    /// The sender's id for the message.
    pub message_id: String,
    /// Who sent it; checked against the sender device's certificate.
    pub sender: UserId,
    /// From which device.
    pub sender_device: DeviceId,
    /// The text.
    pub body: String,
    /// When the sender sent it, by its clock (ms).
    pub sent_ts: u64,
    /// The inbox item it came in.
    pub inbox_id: u64,
    /// When this device knew a conversation of this id with other members: their members
    /// (of the most recent one). The message was not added to that conversation, whose
    /// members stay as they were; it is in a conversation of its own. The person is to be told.
    pub members_changed: Option<Vec<UserId>>,
}

/// An inbox item that was dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Undecryptable {
    /// The inbox item.
    pub inbox_id: u64,
    /// Who sent it, as the sender's server says.
    pub sender: UserId,
    /// From which device, as the sender's server says.
    pub sender_device: DeviceId,
    /// Why it was dropped.
    pub error: DecryptError,
    /// When no session decrypted it: the `dm.reset` sent to the sender device.
    pub reset: Option<ResetOutcome>,
}

/// Why an inbox item was dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecryptError {
    /// A `message_type` other than `olm.v1`.
    #[error("unsupported message type {0:?}")]
    UnsupportedMessageType(String),
    /// An `algorithm` other than `olm.v1.curve25519-aes-sha2`: never read as anything else.
    #[error("unsupported algorithm {0:?}")]
    UnsupportedAlgorithm(String),
    /// The content is not the shape of spec 17.7.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// The ciphertext is not for this device's key.
    #[error("not encrypted for this device")]
    NotForThisDevice,
    /// The sender device's certified keys could not be had, or its key is not the one the
    /// message came from.
    #[error("the sender device is not certified: {0}")]
    UnknownSender(String),
    /// No session decrypts it, nor does it start one: altered in transit, or the session
    /// with the sender was lost.
    #[error("cannot decrypt: {0}")]
    Olm(String),
    /// The plaintext names another sender, device, key or recipient than it came with: a
    /// forwarded or replayed ciphertext.
    #[error("the plaintext's {0} does not match")]
    Mismatch(&'static str),
    /// The plaintext is not a valid message of its type.
    #[error("invalid content: {0}")]
    InvalidContent(String),
    /// An inner type this client does not know.
    #[error("unknown message type {0:?}")]
    UnknownType(String),
    /// The sender's identity key changed and the change was not accepted yet.
    #[error("the sender's identity key changed")]
    IdentityChanged,
}

/// What came of trying to restart a session after an undecryptable message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResetOutcome {
    /// `dm.reset` went out over a new session.
    Sent,
    /// A reset was sent to that device less than an hour ago (at this time, ms).
    Recent(u64),
    /// It could not be sent.
    Failed(String),
}

impl Device {
    /// Reads the whole inbox, handles every item not handled yet, and acknowledges them.
    /// Returns what the items were, oldest first. If the server cannot be asked about a
    /// sender, the rest of the inbox waits for the next call (an error if nothing was read).
    /// One call reads at most 100 pages (a whole inbox), and stops early when an acknowledgement
    /// fails or a page brings nothing new (a server that ignores acknowledgements).
    pub async fn receive(&mut self, session: &Session) -> Result<Vec<Incoming>, E2eError> {
        self.check_account(session)?;
        let mut incoming = self.read_held(session).await?;
        for _ in 0..MAX_PAGES {
            let page: InboxPage = match session
                .get_with_query(&["users", "@me", "to_device"], &[("limit", INBOX_PAGE)])
                .await
            {
                Ok(page) => page,
                Err(error) if incoming.is_empty() => return Err(error.into()),
                Err(_) => break,
            };
            let Some(last) = page.messages.last().map(|item| item.id) else { break };
            let acknowledged_before = self.contents.state.inbox.acknowledged;
            let mut handled_up_to = None;
            let mut postponed = None;
            let mut read = Vec::new();
            for item in &page.messages {
                if !self.contents.state.inbox.seen(item.id) {
                    match self.process(session, item).await {
                        Ok(outcome) => read.extend(outcome),
                        Err(error) => {
                            postponed = Some(error);
                            break;
                        }
                    }
                    self.contents.state.inbox.mark(item.id);
                }
                handled_up_to = Some(item.id);
            }
            // What was read is returned only once it is on disk: a store that cannot be
            // written leaves the device as it was, and the items are read again next time.
            if let Err(error) = self.save_or_roll_back() {
                // What earlier pages brought is on disk already: it goes to the caller.
                if incoming.is_empty() {
                    return Err(error);
                }
                break;
            }
            incoming.append(&mut read);
            let mut acknowledged = false;
            if let Some(up_to) = handled_up_to {
                acknowledged = self.acknowledge_up_to(session, up_to).await;
            }
            if let Some(error) = postponed {
                if incoming.is_empty() {
                    return Err(error);
                }
                break;
            }
            let progressed = handled_up_to.is_some_and(|up_to| up_to > acknowledged_before);
            if !page.more || handled_up_to != Some(last) || !acknowledged || !progressed {
                break;
            }
        }
        if self.contents.state.fallback_used {
            // A session was started with the fallback key: publish a new one. If that fails
            // (the store included), the next upload does it; what was read is on disk and goes
            // to the caller regardless.
            let _tried_again_later = self.upload_keys(session).await;
        }
        Ok(incoming)
    }

    /// Reads the items kept while their sender's identity change waited, for the senders
    /// whose change was accepted since. One that cannot be read now stays for the next call.
    async fn read_held(&mut self, session: &Session) -> Result<Vec<Incoming>, E2eError> {
        let mut incoming = Vec::new();
        let mut index = 0;
        while let Some(item) = self.contents.state.held.get(index).cloned() {
            if self.contents.state.identity_changes.contains_key(&item.sender) {
                index += 1;
                continue;
            }
            // Taken out first: an item whose sender changed again is kept anew (at the end).
            self.contents.state.held.remove(index);
            match self.process(session, &item).await {
                Ok(outcome) => incoming.extend(outcome),
                Err(_) => {
                    self.contents.state.held.insert(index, item);
                    break;
                }
            }
        }
        if !incoming.is_empty() {
            self.save_or_roll_back()?;
        }
        Ok(incoming)
    }

    /// Tells the server that every item up to `up_to` was handled (it deletes them); returns
    /// whether it did. A failed request is not an error: the items are acknowledged later.
    async fn acknowledge_up_to(&mut self, session: &Session, up_to: u64) -> bool {
        let answer: Result<Value, _> = session
            .call(Method::POST, &["users", "@me", "to_device", "ack"], &AckRequest { up_to })
            .await;
        if answer.is_err() {
            return false;
        }
        self.contents.state.inbox.acknowledge(up_to);
        // Not an error if this save fails: what was read is on disk already, and without it
        // the store only keeps a few handled ids longer; it is written with the next save.
        let _saved_later_if_not_now = self.save();
        true
    }

    /// Handles a gateway event: a `TO_DEVICE` item not handled yet (then the inbox is read,
    /// which acknowledges it with everything before it, so that a device that only listens
    /// does not let its inbox fill up), `ONE_TIME_KEYS_LOW` (uploads keys), and a new or
    /// resumed connection (reads the inbox, which is the record: spec 17.6). Other events are
    /// ignored.
    pub async fn handle(
        &mut self,
        session: &Session,
        event: &GatewayEvent,
    ) -> Result<Vec<Incoming>, E2eError> {
        match event {
            GatewayEvent::ToDevice(item) => {
                self.check_account(session)?;
                if self.contents.state.inbox.seen(item.id) {
                    return Ok(Vec::new());
                }
                let outcome = self.process(session, item).await?;
                self.contents.state.inbox.mark(item.id);
                self.save_or_roll_back()?;
                let mut incoming: Vec<Incoming> = outcome.into_iter().collect();
                // The read acknowledges the item (and returns what came before it unread); if
                // it fails, the item is acknowledged with a later read.
                match self.receive(session).await {
                    Ok(more) => incoming.extend(more),
                    Err(error @ E2eError::Store(_)) => return Err(error),
                    Err(_) => {}
                }
                Ok(incoming)
            }
            GatewayEvent::OneTimeKeysLow(low) if low.device_id == self.contents.device_id => {
                self.upload_keys(session).await?;
                Ok(Vec::new())
            }
            GatewayEvent::Ready(_) | GatewayEvent::Resumed => self.receive(session).await,
            _ => Ok(Vec::new()),
        }
    }

    /// Decrypts and checks one inbox item. `Err` only when it should be tried again later
    /// (the server could not be asked about the sender, or the store could not be written).
    async fn process(
        &mut self,
        session: &Session,
        item: &InboxItem,
    ) -> Result<Option<Incoming>, E2eError> {
        let dropped = |error, reset| {
            Some(Incoming::Undecryptable(Undecryptable {
                inbox_id: item.id,
                sender: item.sender.clone(),
                sender_device: item.sender_device.clone(),
                error,
                reset,
            }))
        };
        let (sender_key, message) = match open_envelope(item, &self.curve25519()) {
            Ok(opened) => opened,
            Err(error) => return Ok(dropped(error, None)),
        };
        let sender_ed25519 = match self.sender_device_key(session, item, &sender_key).await? {
            Ok(key) => key,
            Err(DecryptError::IdentityChanged) => {
                let held = &mut self.contents.state.held;
                if held.len() < MAX_HELD {
                    held.push(item.clone());
                }
                return Ok(Some(Incoming::IdentityChanged {
                    inbox_id: item.id,
                    sender: item.sender.clone(),
                    sender_device: item.sender_device.clone(),
                }));
            }
            Err(error) => return Ok(dropped(error, None)),
        };
        let (bytes, new_session) = match self.decrypt(&sender_key, &message) {
            Ok(decrypted) => decrypted,
            Err(error) => {
                let reset = self.reset(session, item, &sender_key).await?;
                return Ok(dropped(error, Some(reset)));
            }
        };
        let me = self.contents.user_id.clone();
        let plaintext = match check_plaintext(&bytes, item, &sender_ed25519, &me, &self.ed25519()) {
            Ok(plaintext) => plaintext,
            Err(error) => return Ok(dropped(error, None)),
        };
        let started = new_session.is_some();
        if let Some((session, fallback)) = new_session {
            self.keep_inbound(&sender_key, session, fallback);
        }
        Ok(match plaintext.kind.as_str() {
            DM_MESSAGE => match read_message(&plaintext, item, &me) {
                Ok(message) => {
                    let entry = HistoryEntry {
                        message_id: message.message_id.clone(),
                        sender: item.sender.clone(),
                        sender_device: item.sender_device.clone(),
                        body: message.body.clone(),
                        sent_ts: message.sent_ts,
                        not_delivered: Vec::new(),
                    };
                    let members_changed = self.record(&message, entry);
                    Some(Incoming::Message(ReceivedMessage {
                        members_changed,
                        conversation: message.conversation,
                        members: message.members,
                        message_id: message.message_id,
                        sender: item.sender.clone(),
                        sender_device: item.sender_device.clone(),
                        body: message.body,
                        sent_ts: message.sent_ts,
                        inbox_id: item.id,
                    }))
                }
                Err(error) => dropped(error, None),
            },
            // A reset reaches every device of the user (a share covers them all); only one that
            // started a session is news, the others came over sessions already in use.
            DM_RESET if started => Some(Incoming::SessionReset {
                sender: item.sender.clone(),
                sender_device: item.sender_device.clone(),
            }),
            DM_RESET => None,
            other => dropped(DecryptError::UnknownType(other.to_owned()), None),
        })
    }

    /// The certified Ed25519 key of the item's sender device, after checking that its
    /// certified Curve25519 key is `sender_key`. Asks the server again when the device is not
    /// known or its keys changed. The outer `Err` is a failed request, to be tried again.
    async fn sender_device_key(
        &mut self,
        session: &Session,
        item: &InboxItem,
        sender_key: &str,
    ) -> Result<Result<String, DecryptError>, E2eError> {
        let known = |device: &Device| {
            let keys =
                device.contents.state.peers.get(&item.sender)?.devices.get(&item.sender_device)?;
            (keys.curve25519 == sender_key).then(|| keys.ed25519.clone())
        };
        if let Some(key) = known(self) {
            return Ok(Ok(key));
        }
        let users = BTreeSet::from([item.sender.clone()]);
        let mut verified = self.verify_users(session, &users).await?;
        if let Some(failure) = verified.failed.remove(&item.sender) {
            if failure.is_transient() {
                // Not a verdict on the sender: the item stays in the inbox for a later read.
                return Err(E2eError::Postponed(failure.to_string()));
            }
            if failure == ShareFailure::IdentityChanged {
                return Ok(Err(DecryptError::IdentityChanged));
            }
            return Ok(Err(DecryptError::UnknownSender(failure.to_string())));
        }
        Ok(known(self).ok_or_else(|| {
            DecryptError::UnknownSender(format!(
                "{} has no certified device {} with that key",
                item.sender, item.sender_device
            ))
        }))
    }

    /// Decrypts with the sessions of `sender_key`, newest first; a pre-key message none of
    /// them decrypts starts a new inbound session (unless one of its id was started before),
    /// returned for the caller to keep once the plaintext passed its checks, with whether it
    /// used the fallback key.
    fn decrypt(
        &mut self,
        sender_key: &str,
        message: &OlmMessage,
    ) -> Result<(Vec<u8>, Option<NewSession>), DecryptError> {
        if let Some(sessions) = self.contents.sessions.get_mut(sender_key) {
            for stored in sessions.iter_mut() {
                if let Ok(plaintext) = stored.session.decrypt(message) {
                    return Ok((plaintext, None));
                }
            }
        }
        let OlmMessage::PreKey(pre_key) = message else {
            return Err(DecryptError::Olm("no session with the sender decrypts it".into()));
        };
        let known = self.contents.sessions.get(sender_key).is_some_and(|sessions| {
            sessions.iter().any(|stored| stored.session.session_id() == pre_key.session_id())
        });
        if known {
            return Err(DecryptError::Olm("it does not decrypt with its session".into()));
        }
        if self.contents.state.inbound_sessions.contains(&pre_key.session_id()) {
            return Err(DecryptError::Olm("a replay of a session started before".into()));
        }
        let sender = base64url::decode_array::<32>(sender_key)
            .map(Curve25519PublicKey::from_bytes)
            .ok_or_else(|| DecryptError::Malformed("sender_key".into()))?;
        let fallback = self.contents.state.fallback_key.as_deref()
            == Some(base64url::encode(pre_key.one_time_key().as_bytes()).as_str());
        self.contents
            .account
            .create_inbound_session(SessionConfig::version_1(), sender, pre_key)
            .map(|created| (created.plaintext, Some((created.session, fallback))))
            .map_err(|error| DecryptError::Olm(error.to_string()))
    }

    /// Keeps a new inbound session (as the newest with its peer) and remembers its id against
    /// replays; one started with the fallback key has the key replaced at the next upload.
    fn keep_inbound(&mut self, sender_key: &str, session: OlmSession, fallback: bool) {
        self.contents.state.remember_inbound(session.session_id());
        self.contents.state.fallback_used |= fallback;
        self.add_session(sender_key, StoredSession { session, created_ts: now_ms() });
    }

    /// Sends `dm.reset` to the item's sender device over a new session (spec 17.9), unless one
    /// went to it within the hour. The user's other devices get it over their sessions, as a
    /// share always covers every device.
    async fn reset(
        &mut self,
        session: &Session,
        item: &InboxItem,
        sender_key: &str,
    ) -> Result<ResetOutcome, E2eError> {
        let now = now_ms();
        if let Some(&at) = self.contents.state.resets.get(sender_key)
            && now.saturating_sub(at) < RESET_INTERVAL_MS
        {
            return Ok(ResetOutcome::Recent(at));
        }
        let users = BTreeSet::from([item.sender.clone()]);
        let fresh = Some((&item.sender, &item.sender_device));
        let content = Value::Object(serde_json::Map::new());
        let report = self.share(session, &users, DM_RESET, &content, &random_id(), fresh).await?;
        let outcome = match report.failed.get(&item.sender) {
            None if report.delivered.contains(&item.sender) => ResetOutcome::Sent,
            None => ResetOutcome::Failed("no other device of the sender to send to".into()),
            Some(failure) => ResetOutcome::Failed(failure.to_string()),
        };
        // Stamped once tried: a reset that went out waits an hour before the next, one that
        // failed only a few minutes.
        let stamp = match outcome {
            ResetOutcome::Sent => now_ms(),
            _ => now_ms().saturating_sub(RESET_INTERVAL_MS - FAILED_RESET_INTERVAL_MS),
        };
        self.contents.state.resets.insert(sender_key.to_owned(), stamp);
        Ok(outcome)
    }
}

/// Checks an item's envelope (spec 17.7, 17.8): type, algorithm, exactly one ciphertext, for
/// this device's key. Returns the sender's Curve25519 key and the Olm message.
fn open_envelope(item: &InboxItem, own_key: &str) -> Result<(String, OlmMessage), DecryptError> {
    if item.message_type != OLM_MESSAGE_TYPE {
        return Err(DecryptError::UnsupportedMessageType(item.message_type.clone()));
    }
    let algorithm = item.content.get("algorithm").and_then(Value::as_str).unwrap_or_default();
    if algorithm != OLM_ALGORITHM {
        return Err(DecryptError::UnsupportedAlgorithm(algorithm.to_owned()));
    }
    let object =
        item.content.as_object().ok_or_else(|| DecryptError::Malformed("content".into()))?;
    let content =
        OlmContent::parse(object).map_err(|error| DecryptError::Malformed(error.to_string()))?;
    if content.target_key() != own_key {
        return Err(DecryptError::NotForThisDevice);
    }
    let Some(ciphertext) = content.ciphertext.get(own_key) else {
        return Err(DecryptError::NotForThisDevice);
    };
    let bytes = base64url::decode(&ciphertext.body)
        .map_err(|_| DecryptError::Malformed("the body is not base64url".into()))?;
    let message = OlmMessage::from_parts(usize::from(ciphertext.message_type), &bytes)
        .map_err(|error| DecryptError::Malformed(error.to_string()))?;
    Ok((content.sender_key, message))
}

/// Parses a plaintext and checks it against the inbox item it came in, the sender device's
/// certified Ed25519 key, and this device (spec 17.7).
pub(super) fn check_plaintext(
    bytes: &[u8],
    item: &InboxItem,
    sender_ed25519: &str,
    me: &UserId,
    my_ed25519: &str,
) -> Result<Plaintext, DecryptError> {
    // The parser's message is not passed on: it may quote the decrypted text.
    let plaintext: Plaintext = serde_json::from_slice(bytes).map_err(|_| {
        DecryptError::Malformed("the plaintext is not a JSON object of spec 17.7".into())
    })?;
    let checks = [
        ("sender", plaintext.sender == item.sender),
        ("sender_device", plaintext.sender_device == item.sender_device),
        ("keys", plaintext.keys.ed25519 == sender_ed25519),
        ("recipient", plaintext.recipient == *me),
        ("recipient_keys", plaintext.recipient_keys.ed25519 == my_ed25519),
    ];
    match checks.iter().find(|(_, holds)| !holds) {
        Some((field, _)) => Err(DecryptError::Mismatch(field)),
        None => Ok(plaintext),
    }
}

/// The `dm.message` a checked plaintext carries.
///
/// Error texts are fixed: a parser's message may quote the decrypted text.
fn read_message(
    plaintext: &Plaintext,
    item: &InboxItem,
    me: &UserId,
) -> Result<DmMessage, DecryptError> {
    let message: DmMessage = serde_json::from_value(plaintext.content.clone())
        .map_err(|_| DecryptError::InvalidContent("not a dm.message of spec 17.7".into()))?;
    check_message(&message, &plaintext.sender, me).map_err(DecryptError::InvalidContent)?;
    if message.message_id != item.message_id {
        return Err(DecryptError::Mismatch("message_id"));
    }
    Ok(message)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::wire::Ed25519Key;
    use super::*;

    fn user(name: &str) -> UserId {
        UserId::parse(&format!("@{name}:a.example")).unwrap()
    }

    fn item(content: Value) -> InboxItem {
        InboxItem {
            id: 4,
            sender: user("alice"),
            sender_device: DeviceId::parse("LAPTOP").unwrap(),
            message_id: "m1".into(),
            message_type: OLM_MESSAGE_TYPE.into(),
            content,
            received_ts: 0,
        }
    }

    fn plaintext() -> Plaintext {
        Plaintext {
            kind: DM_MESSAGE.into(),
            content: json!({"message_id": "m1", "conversation": "c1",
                            "members": [user("alice"), user("bob")], "body": "hi", "sent_ts": 1}),
            sender: user("alice"),
            sender_device: DeviceId::parse("LAPTOP").unwrap(),
            keys: Ed25519Key { ed25519: "ALICE_KEY".into() },
            recipient: user("bob"),
            recipient_keys: Ed25519Key { ed25519: "BOB_KEY".into() },
        }
    }

    fn check(plaintext: &Plaintext) -> Result<Plaintext, DecryptError> {
        let bytes = serde_json::to_vec(plaintext).unwrap();
        check_plaintext(&bytes, &item(Value::Null), "ALICE_KEY", &user("bob"), "BOB_KEY")
    }

    #[test]
    fn a_plaintext_must_match_its_item_its_sender_and_this_device() {
        assert_eq!(check(&plaintext()), Ok(plaintext()));
        let mismatch = |edit: fn(&mut Plaintext), field| {
            let mut changed = plaintext();
            edit(&mut changed);
            assert_eq!(check(&changed), Err(DecryptError::Mismatch(field)));
        };
        mismatch(|p| p.sender = user("eve"), "sender");
        mismatch(|p| p.sender_device = DeviceId::parse("PHONE").unwrap(), "sender_device");
        mismatch(|p| p.keys.ed25519 = "EVE_KEY".into(), "keys");
        // Forwarded to another user, or to another device of the same user.
        mismatch(|p| p.recipient = user("carol"), "recipient");
        mismatch(|p| p.recipient_keys.ed25519 = "BOB_OTHER_DEVICE".into(), "recipient_keys");
        let bytes = b"{\"type\": \"dm.message\"}";
        let missing = check_plaintext(bytes, &item(Value::Null), "A", &user("bob"), "B");
        assert!(matches!(missing, Err(DecryptError::Malformed(_))), "{missing:?}");
    }

    #[test]
    fn message_contents_are_checked() {
        assert!(read_message(&plaintext(), &item(Value::Null), &user("bob")).is_ok());
        let read = |mut content: Value| {
            if content.get("message_id").is_none() {
                content["message_id"] = "m1".into();
            }
            read_message(&Plaintext { content, ..plaintext() }, &item(Value::Null), &user("bob"))
        };
        let invalid = |content: Value| {
            let result = read(content);
            assert!(matches!(result, Err(DecryptError::InvalidContent(_))), "{result:?}");
        };
        let members = json!([user("alice"), user("bob")]);
        invalid(json!({"conversation": "c1", "members": members, "body": "", "sent_ts": 1}));
        invalid(
            json!({"conversation": "c1", "members": members, "body": "x".repeat(4001), "sent_ts": 1}),
        );
        invalid(json!({"conversation": "", "members": members, "body": "hi", "sent_ts": 1}));
        invalid(
            json!({"conversation": "x".repeat(65), "members": members, "body": "hi", "sent_ts": 1}),
        );
        invalid(
            json!({"conversation": "c1", "members": [user("alice"), user("carol")], "body": "hi", "sent_ts": 1}),
        );
        invalid(
            json!({"conversation": "c1", "members": [user("alice"), user("bob"), user("bob")], "body": "hi", "sent_ts": 1}),
        );
        let eleven: Vec<UserId> =
            (0..9).map(|n| user(&format!("u{n}"))).chain([user("alice"), user("bob")]).collect();
        invalid(json!({"conversation": "c1", "members": eleven, "body": "hi", "sent_ts": 1}));
        invalid(json!({"conversation": "c1", "members": members, "sent_ts": 1}));
        // The message id is inside the encryption, and must be the inbox item's.
        let valid = json!({"conversation": "c1", "members": members, "body": "hi", "sent_ts": 1});
        assert!(read(valid.clone()).is_ok());
        let mut other_id = valid.clone();
        other_id["message_id"] = "m2".into();
        assert_eq!(read(other_id), Err(DecryptError::Mismatch("message_id")));
        let mut bad_id = valid.clone();
        bad_id["message_id"] = "m 1".into();
        invalid(bad_id);
        let mut no_id = Plaintext { content: valid, ..plaintext() };
        no_id.content.as_object_mut().unwrap().remove("message_id");
        let result = read_message(&no_id, &item(Value::Null), &user("bob"));
        assert!(matches!(result, Err(DecryptError::InvalidContent(_))), "{result:?}");
        // What does not parse is refused without quoting the decrypted text.
        let secret = "a secret text";
        let error =
            read(json!({"conversation": "c1", "members": members, "body": 5, "sent_ts": secret}))
                .unwrap_err();
        assert!(!error.to_string().contains(secret), "{error}");
        let bytes = format!("{{\"type\": \"{secret}\", \"content\": 5}}");
        let error = check_plaintext(bytes.as_bytes(), &item(Value::Null), "A", &user("bob"), "B")
            .unwrap_err();
        assert!(!error.to_string().contains(secret), "{error}");
        // A body of 4000 characters is allowed, however many bytes they take.
        let long = json!({"message_id": "m1", "conversation": "c1", "members": members, "body": "é".repeat(4000), "sent_ts": 1});
        let long = Plaintext { content: long, ..plaintext() };
        assert!(read_message(&long, &item(Value::Null), &user("bob")).is_ok());
    }

    /// A device with a new account and an empty store at a scratch path.
    fn device(name: &str) -> Device {
        let dir = std::env::temp_dir()
            .join(format!("guildhall-e2e-receive-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("e2e.json");
        let lock = super::super::store::lock(&path).unwrap();
        let contents = super::super::store::Contents {
            user_id: user("bob"),
            device_id: DeviceId::parse("PHONE").unwrap(),
            account: vodozemac::olm::Account::new(),
            sessions: std::collections::BTreeMap::new(),
            state: super::super::store::State::default(),
        };
        let keys = super::super::store::StoreKeys::from_seed(&[1; 64]);
        Device { path, keys, contents, _lock: lock }
    }

    #[test]
    fn a_replayed_pre_key_message_does_not_start_its_session_again() {
        let mut bob = device("replay");
        assert!(bob.new_fallback_key().is_some());
        bob.contents.account.mark_keys_as_published();
        let fallback = bob.contents.state.fallback_key.clone().unwrap();
        let fallback = Curve25519PublicKey::from_bytes(base64url::decode_array(&fallback).unwrap());
        let alice = vodozemac::olm::Account::new();
        let alice_key = base64url::encode(alice.curve25519_key().as_bytes());
        let mut outbound = alice
            .create_outbound_session(
                SessionConfig::version_1(),
                bob.contents.account.curve25519_key(),
                fallback,
            )
            .unwrap();
        let message = outbound.encrypt(b"once").unwrap();

        let (plaintext, started) = bob.decrypt(&alice_key, &message).unwrap();
        assert_eq!(plaintext, b"once");
        let Some((session, true)) = started else { panic!("a session from the fallback key") };
        bob.keep_inbound(&alice_key, session, true);
        assert!(bob.contents.state.fallback_used, "the fallback key is to be replaced");
        // Its session is forgotten (more than ten newer ones with alice), and the server hands
        // the pre-key message out again: the fallback key would start the session again.
        bob.contents.sessions.clear();
        let replay = bob.decrypt(&alice_key, &message).map(|(plaintext, _)| plaintext);
        assert!(matches!(replay, Err(DecryptError::Olm(_))), "{replay:?}");
        let _ = std::fs::remove_dir_all(bob.path.parent().unwrap());
    }

    #[test]
    fn envelopes_other_than_olm_v1_for_this_device_are_refused() {
        let (mine, theirs, other) =
            (base64url::encode([1; 32]), base64url::encode([2; 32]), base64url::encode([3; 32]));
        let valid = |target: &str| {
            json!({"algorithm": OLM_ALGORITHM, "sender_key": base64url::encode([4; 32]),
                   "ciphertext": {target: {"type": 1, "body": "AAAA"}}})
        };
        let check = |item: InboxItem, expected: fn(&DecryptError) -> bool| {
            let error = open_envelope(&item, &mine).map(|_| ()).unwrap_err();
            assert!(expected(&error), "{error:?}");
        };
        let mut plaintext_type = item(valid(&mine));
        plaintext_type.message_type = "m.room.message".into();
        check(plaintext_type, |e| matches!(e, DecryptError::UnsupportedMessageType(_)));
        let mut weaker = valid(&mine);
        weaker["algorithm"] = "plaintext".into();
        check(item(weaker), |e| matches!(e, DecryptError::UnsupportedAlgorithm(_)));
        check(item(json!({"body": "hello"})), |e| {
            matches!(e, DecryptError::UnsupportedAlgorithm(_))
        });
        check(item(valid(&theirs)), |e| *e == DecryptError::NotForThisDevice);
        let mut two = valid(&mine);
        two["ciphertext"][other.as_str()] = json!({"type": 1, "body": "AAAA"});
        check(item(two), |e| matches!(e, DecryptError::Malformed(_)));
        let mut extra = valid(&mine);
        extra["body"] = "hello".into();
        check(item(extra), |e| matches!(e, DecryptError::Malformed(_)));
        // Valid shape, but not an Olm message.
        check(item(valid(&mine)), |e| matches!(e, DecryptError::Malformed(_)));
    }
}
