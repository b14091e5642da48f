//! End-to-end encrypted direct messages (spec chapter 17): one [`Device`] per login, with its
//! Olm account (vodozemac), its sessions with other devices, and the conversations it took
//! part in, kept in a store file sealed with a key derived from the identity.
//!
//! * [`Device::create`] makes the account, has the identity certify it (spec 16.3), registers
//!   it with the login's server and uploads one-time keys and a fallback key.
//! * [`Device::send`] encrypts a message for every device of every member (and the user's own
//!   other devices) and reports, per user, whether it was delivered: a user whose devices
//!   cannot all be reached is named in [`SendReport::failed`], never skipped silently, and
//!   nothing is ever sent unencrypted.
//! * [`Device::receive`] reads the inbox, decrypts, checks each message against the sender's
//!   certificate and acknowledges; [`Device::handle`] does the same for gateway dispatches.
//!
//! The server is not trusted with keys: every certificate and device list it passes on is
//! verified here (see [`keys`]) before a key is used. The attestation's server signature is
//! checked with the key document of the user's home server as this client's own server relays
//! it (its notary, spec 04 §4.5), so that check trusts the own server; the certificates, the
//! identity key's consent to its binding and the device-list hash are checked end to end.
//! Identity keys are pinned: this device's own user's key is the one that certified it, and a
//! server that answers otherwise (or leaves this device out) gets nothing ([`E2eError::OwnKeys`]).
//! A peer's key is remembered; a change is reported ([`SendReport::identity_changed`],
//! [`Incoming::IdentityChanged`]) and nothing goes to or is accepted from the new key until
//! [`Device::accept_identity`].
//!
//! A `Device` is not shared between tasks: calls take `&mut self`, and each saves the store
//! before anything it encrypted leaves the machine (a ratchet state must never be reused).

mod claim;
mod keys;
mod receive;
mod send;
mod store;
mod wire;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use guildhall_identity::device::{DeviceCertificate, DeviceCertificateError, DeviceKeys};
use guildhall_identity::e2e::KeyObject;
use guildhall_spec::{DeviceId, JsonObject, UserId, base64url};
use reqwest::Method;
use vodozemac::olm::Account;

pub use keys::KeysError;
pub use receive::{DecryptError, Incoming, ReceivedMessage, ResetOutcome, Undecryptable};
pub use send::{SendReport, ShareFailure};
pub use store::{Conversation, HistoryEntry, StoreError};
pub use wire::{DeviceListUpdate, Failure, InboxItem, OneTimeKeysLow};

use crate::error::Error;
use crate::identity::Identity;
use crate::session::Session;
use store::{Contents, State, StoreKeys};
use wire::{UploadRequest, UploadResponse};

/// One-time keys kept on the server: uploads fill up to this many (spec 17.2 allows 100).
const ONE_TIME_KEY_TARGET: u64 = 100;
/// Below this many one-time keys on the server, the device uploads more.
const ONE_TIME_KEY_LOW: u64 = 50;
/// How long a replaced fallback key is kept for pre-key messages made with it (ms).
const FALLBACK_GRACE_MS: u64 = 24 * 60 * 60 * 1000;
/// Olm sessions kept per peer device; older ones are forgotten.
const SESSIONS_PER_DEVICE: usize = 10;

/// Why an E2E operation failed as a whole. Per-recipient outcomes of a send are in
/// [`SendReport`], per-message outcomes of a receive in [`Incoming`].
#[derive(Debug, thiserror::Error)]
pub enum E2eError {
    /// A request to the server failed.
    #[error(transparent)]
    Server(#[from] Error),
    /// The store could not be read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The store belongs to another account than the session.
    #[error("this device belongs to {store}, not to {session}")]
    WrongAccount {
        /// The store's account.
        store: UserId,
        /// The session's account.
        session: UserId,
    },
    /// The device certificate could not be made.
    #[error("device certificate: {0}")]
    Certificate(#[from] DeviceCertificateError),
    /// A message that spec 17.7 does not allow: empty or too long a text, too many members, …
    #[error("invalid message: {0}")]
    InvalidMessage(String),
    /// The server gave keys for this device's own user that do not hold this device as it is
    /// certified: another identity key, or a list without this device. Nothing was sent; the
    /// server may be trying to have messages encrypted for a device of its own.
    #[error("the server's keys for this user are not this device's: {0}")]
    OwnKeys(String),
    /// A temporary failure (a server could not be reached, a limit was hit): the message stays
    /// in the inbox and is read again later.
    #[error("try again later: {0}")]
    Postponed(String),
}

/// This login's device: its Olm account and sessions, and what it knows of its peers.
pub struct Device {
    path: PathBuf,
    keys: StoreKeys,
    contents: Contents,
    /// Held while the `Device` lives, so that no other process (or second `Device`) works on
    /// the same store: two copies of one ratchet would encrypt with the same message keys.
    _lock: std::fs::File,
}

impl std::fmt::Debug for Device {
    // Olm secrets never go to logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device")
            .field("user_id", &self.contents.user_id)
            .field("device_id", &self.contents.device_id)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Device {
    /// Makes this login a device: a new Olm account, certified by `identity` (spec 16.3),
    /// saved to `path`, registered with the session's server
    /// (`PUT /users/@me/devices/{device_id}`), with one-time keys and a fallback key uploaded. `identity` must be the one bound
    /// to the session's account.
    pub async fn create(
        session: &Session,
        identity: &Identity,
        path: &Path,
    ) -> Result<Self, E2eError> {
        let lock = store::lock(path)?;
        let account = Account::new();
        let device_id = random_device_id();
        let certificate = certify(&account, session.user_id(), &device_id, identity)?;
        let contents = Contents {
            user_id: session.user_id().clone(),
            device_id,
            account,
            sessions: BTreeMap::new(),
            state: State { certificate, ..State::default() },
        };
        let keys = StoreKeys::derive(identity);
        let mut device = Self { path: path.to_owned(), keys, contents, _lock: lock };
        // Saved before the certificate goes up: a lost account would leave a registered
        // certificate no one can use. A registration the server refused leaves no store
        // behind; one whose outcome is unknown keeps it (`certify` registers it again).
        device.save()?;
        let contents = &device.contents;
        if let Err(error) =
            register(session, &contents.device_id, &contents.state.certificate).await
        {
            if matches!(error, E2eError::Server(Error::Refused { .. })) {
                let _ = std::fs::remove_file(path);
            }
            return Err(error);
        }
        device.upload_keys(session).await?;
        Ok(device)
    }

    /// Opens the device saved at `path`, with `identity`'s key. Fails with
    /// [`StoreError::InUse`] while another `Device` has the store open — and, for an instant
    /// after one is dropped, while a child process this program is starting has not yet
    /// replaced itself (it holds a copy of the lock's file descriptor until then): retry.
    pub fn open(path: &Path, identity: &Identity) -> Result<Self, E2eError> {
        let lock = store::lock(path)?;
        let keys = StoreKeys::derive(identity);
        let contents = store::load(path, &keys)?;
        Ok(Self { path: path.to_owned(), keys, contents, _lock: lock })
    }

    /// Certifies the device again with `identity`'s current key and registers the new
    /// certificate (spec 16.3): after a rotation (16.6), certificates made with the old key are
    /// no longer valid, and the server answers `no_device` until this is done. The store's
    /// keys come from the recovery phrase, not the identity key, so the store stays readable.
    pub async fn certify(
        &mut self,
        session: &Session,
        identity: &Identity,
    ) -> Result<(), E2eError> {
        self.check_account(session)?;
        let contents = &self.contents;
        let certificate =
            certify(&contents.account, &contents.user_id, &contents.device_id, identity)?;
        register(session, &self.contents.device_id, &certificate).await?;
        self.contents.state.certificate = certificate;
        self.save()
    }

    /// Writes the store. Every operation that changes it saves it already.
    pub fn save(&self) -> Result<(), E2eError> {
        Ok(store::save(&self.path, &self.keys, &self.contents)?)
    }

    /// Saves the store; if that fails, goes back to the store as last saved, so that nothing
    /// this device did since (a ratchet step, an item marked read) is acted on without being
    /// on disk. The caller reports the error; the work is done again on the next call.
    fn save_or_roll_back(&mut self) -> Result<(), E2eError> {
        let Err(error) = self.save() else { return Ok(()) };
        if let Ok(contents) = store::load(&self.path, &self.keys) {
            self.contents = contents;
        }
        Err(error)
    }

    /// The account the device belongs to.
    pub fn user_id(&self) -> &UserId {
        &self.contents.user_id
    }

    /// The device id.
    pub fn device_id(&self) -> &DeviceId {
        &self.contents.device_id
    }

    /// The device's public keys, as its certificate shows them.
    pub fn device_keys(&self) -> DeviceKeys {
        DeviceKeys {
            curve25519: self.curve25519(),
            ed25519: base64url::encode(self.contents.account.ed25519_key().as_bytes()),
        }
    }

    /// The conversations this device knows. A conversation is known by its id and its members
    /// together: two conversations may share an id (spec 17.7).
    pub fn conversations(&self) -> impl Iterator<Item = &Conversation> {
        self.contents.state.conversations.values()
    }

    /// The most recently used conversation with this id.
    pub fn conversation(&self, id: &str) -> Option<&Conversation> {
        self.conversations()
            .filter(|conversation| conversation.id == id)
            .max_by_key(|conversation| conversation.messages.last().map_or(0, |m| m.sent_ts))
    }

    /// The most recently used conversation with exactly these members (the order does not
    /// matter; this user is added if missing).
    pub fn conversation_with(&self, members: &[UserId]) -> Option<&Conversation> {
        let wanted = self.member_set(members);
        self.conversations()
            .filter(|conversation| self.member_set(&conversation.members) == wanted)
            .max_by_key(|conversation| conversation.messages.last().map_or(0, |m| m.sent_ts))
    }

    /// Users whose identity key changed since this device last saw it, waiting for the person
    /// to accept the new key ([`Device::accept_identity`]). Until then nothing is encrypted for
    /// them ([`ShareFailure::IdentityChanged`]) nor accepted from their new devices
    /// ([`Incoming::IdentityChanged`]).
    pub fn identity_changes(&self) -> impl Iterator<Item = &UserId> {
        self.contents.state.identity_changes.keys()
    }

    /// Accepts the new identity key of `user` that this device was told of (after the person
    /// checked it another way); returns whether there was one to accept. Only the key that was
    /// shown is accepted: if it changes again, that is reported again.
    pub fn accept_identity(&mut self, user: &UserId) -> Result<bool, E2eError> {
        let Some(keys) = self.contents.state.identity_changes.remove(user) else {
            return Ok(false);
        };
        self.contents.state.peers.insert(user.clone(), keys);
        self.save()?;
        Ok(true)
    }

    /// Tops up the device's keys on the server: one-time keys up to 100 when fewer than 50 are
    /// left, and a fallback key when the server has none. Returns the server's counts after.
    pub async fn upload_keys(&mut self, session: &Session) -> Result<KeyCounts, E2eError> {
        self.check_account(session)?;
        let counts = self.upload(session, UploadRequest::default()).await?;
        let mut request = UploadRequest::default();
        if counts.one_time_key_count < ONE_TIME_KEY_LOW {
            request.one_time_keys =
                self.new_one_time_keys(ONE_TIME_KEY_TARGET - counts.one_time_key_count);
        }
        // A fallback key that started a session is replaced (a replay of that pre-key message
        // is refused anyway, see `State::inbound_sessions`); the one before it is kept a while
        // for pre-key messages made with it still on their way.
        let now = now_ms();
        if let Some(replaced) = self.contents.state.previous_fallback_ts
            && now.saturating_sub(replaced) > FALLBACK_GRACE_MS
        {
            self.contents.account.forget_fallback_key();
            self.contents.state.previous_fallback_ts = None;
            self.save()?;
        }
        let rotate = self.contents.state.fallback_used;
        if !counts.fallback_key || rotate {
            request.fallback_key = self.new_fallback_key();
        }
        if request.one_time_keys.is_empty() && request.fallback_key.is_none() {
            return Ok(counts.into());
        }
        // The new private keys must be on disk before the public ones are handed out.
        self.save()?;
        let uploaded_fallback = request.fallback_key.is_some();
        let counts = self.upload(session, request).await?;
        self.contents.account.mark_keys_as_published();
        if uploaded_fallback {
            self.contents.state.fallback_used = false;
            if rotate {
                self.contents.state.previous_fallback_ts = Some(now);
            }
        }
        self.save()?;
        Ok(counts.into())
    }

    async fn upload(
        &self,
        session: &Session,
        request: UploadRequest,
    ) -> Result<UploadResponse, E2eError> {
        Ok(session.call(Method::POST, &["keys", "upload"], &request).await?)
    }

    /// Signed key objects of `count` one-time keys not yet published, generating what is
    /// missing.
    fn new_one_time_keys(&mut self, count: u64) -> Vec<JsonObject> {
        let count = usize::try_from(count).unwrap_or(0);
        let account = &mut self.contents.account;
        let unpublished = account.one_time_keys().len();
        if unpublished < count {
            account.generate_one_time_keys(count - unpublished);
        }
        let mut keys: Vec<_> = account.one_time_keys().into_iter().collect();
        keys.sort_by_key(|(key_id, _)| *key_id);
        keys.into_iter()
            .take(count)
            .map(|(key_id, key)| self.key_object(&key_id.to_base64(), key.as_bytes(), false))
            .collect()
    }

    /// A signed key object of a new fallback key (`None` only if vodozemac made none).
    fn new_fallback_key(&mut self) -> Option<JsonObject> {
        self.contents.account.generate_fallback_key();
        let fallback = self.contents.account.fallback_key();
        let (key_id, key) = fallback.iter().next()?;
        self.contents.state.fallback_key = Some(base64url::encode(key.as_bytes()));
        Some(self.key_object(&key_id.to_base64(), key.as_bytes(), true))
    }

    fn key_object(&self, key_id: &str, key: &[u8; 32], fallback: bool) -> JsonObject {
        let contents = &self.contents;
        key_object(&contents.account, &contents.user_id, &contents.device_id, key_id, key, fallback)
    }

    /// Refuses a session of another account than the store's.
    fn check_account(&self, session: &Session) -> Result<(), E2eError> {
        if session.user_id() != &self.contents.user_id {
            return Err(E2eError::WrongAccount {
                store: self.contents.user_id.clone(),
                session: session.user_id().clone(),
            });
        }
        Ok(())
    }

    /// This device's Curve25519 key, base64url.
    fn curve25519(&self) -> String {
        base64url::encode(self.contents.account.curve25519_key().as_bytes())
    }

    /// This device's Ed25519 key, base64url.
    fn ed25519(&self) -> String {
        base64url::encode(self.contents.account.ed25519_key().as_bytes())
    }

    fn member_set(&self, members: &[UserId]) -> std::collections::BTreeSet<UserId> {
        let mut set: std::collections::BTreeSet<UserId> = members.iter().cloned().collect();
        set.insert(self.contents.user_id.clone());
        set
    }
}

/// The device certificate of `account` as `user_id`'s device `device_id`, signed by the account
/// and by `identity` (spec 16.3).
fn certify(
    account: &Account,
    user_id: &UserId,
    device_id: &DeviceId,
    identity: &Identity,
) -> Result<JsonObject, E2eError> {
    let certificate = DeviceCertificate {
        user_id: user_id.clone(),
        device_id: device_id.clone(),
        device_keys: DeviceKeys {
            curve25519: base64url::encode(account.curve25519_key().as_bytes()),
            ed25519: base64url::encode(account.ed25519_key().as_bytes()),
        },
        identity_key: identity.public_key(),
        valid_until_ts: None,
    };
    let device_signature = account.sign(certificate.signing_bytes()?).to_bytes();
    Ok(certificate.sign(identity.key_pair(), &device_signature)?)
}

/// Registers this login as the device with `certificate` (`PUT /users/@me/devices/{id}`).
async fn register(
    session: &Session,
    device_id: &DeviceId,
    certificate: &JsonObject,
) -> Result<(), E2eError> {
    let path = ["users", "@me", "devices", device_id.as_str()];
    let _: serde_json::Value =
        session.call(Method::PUT, &path, &RegisterDevice { certificate }).await?;
    Ok(())
}

/// `PUT /users/@me/devices/{device_id}` (spec 16.7).
#[derive(serde::Serialize)]
struct RegisterDevice<'a> {
    certificate: &'a JsonObject,
}

/// What the server holds of a device's keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyCounts {
    /// Unclaimed one-time keys.
    pub one_time_keys: u64,
    /// Whether it has a fallback key.
    pub fallback_key: bool,
}

impl From<UploadResponse> for KeyCounts {
    fn from(answer: UploadResponse) -> Self {
        Self { one_time_keys: answer.one_time_key_count, fallback_key: answer.fallback_key }
    }
}

/// A signed key object (spec 17.2), signed by `account`. vodozemac's key ids are standard
/// base64; the wire wants `[A-Za-z0-9_-]`, so they are spelled in the base64url alphabet.
fn key_object(
    account: &Account,
    user_id: &UserId,
    device_id: &DeviceId,
    key_id: &str,
    key: &[u8; 32],
    fallback: bool,
) -> JsonObject {
    let key_id = key_id.replace('+', "-").replace('/', "_");
    let object = KeyObject { key_id, key: base64url::encode(key), fallback };
    // Strings and a boolean always have a canonical form, and the signature below is the
    // account's own over exactly those bytes, so neither step can fail.
    let message = object.signing_bytes().unwrap_or_default();
    let signature = account.sign(&message).to_bytes();
    object.signed(user_id, device_id.as_str(), &signature).unwrap_or_default()
}

/// A new random conversation id (22 base64url characters), for [`Device::send`] to start a
/// conversation with.
pub fn new_conversation_id() -> String {
    random_id()
}

/// A new device id: ten random capital letters.
fn random_device_id() -> DeviceId {
    let letters: String =
        rand::random::<[u8; 10]>().iter().map(|byte| char::from(b'A' + byte % 26)).collect();
    // Ten capital letters match `[A-Za-z0-9_]{1,32}`.
    DeviceId::parse(&letters).unwrap_or_else(|_| unreachable!("capital letters are a device id"))
}

/// The time now, in milliseconds since the Unix epoch.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
}

/// A random id for a message, a transaction or a conversation: 16 bytes, base64url.
fn random_id() -> String {
    base64url::encode(rand::random::<[u8; 16]>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::GatewayEvent;

    fn is_send<T: Send>(_: &T) {}

    /// Compiled, never run: a program can hand a `Device` and its calls to `tokio::spawn`.
    #[allow(dead_code)]
    async fn futures_are_send(device: &mut Device, session: &Session, event: &GatewayEvent) {
        is_send(&device.send(session, "c", &[], "text"));
        is_send(&device.receive(session));
        is_send(&device.handle(session, event));
        is_send(&device.upload_keys(session));
        is_send(device);
    }

    #[test]
    fn key_objects_are_signed_by_the_account_under_base64url_ids() {
        let account = Account::new();
        let user = UserId::parse("@bob:origin.example").unwrap();
        let device = DeviceId::parse("PHONE1").unwrap();
        let ed25519 = base64url::encode(account.ed25519_key().as_bytes());
        let object = key_object(&account, &user, &device, "AA+/AQ", &[9; 32], true);
        let verified = KeyObject::verify(&object, &user, "PHONE1", &ed25519).unwrap();
        assert_eq!(verified.key_id, "AA-_AQ");
        assert_eq!(verified.key, base64url::encode([9; 32]));
        assert!(verified.fallback);
        let other = base64url::encode(Account::new().ed25519_key().as_bytes());
        assert!(KeyObject::verify(&object, &user, "PHONE1", &other).is_err());
    }
}
