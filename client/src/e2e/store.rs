//! The device's local store: its Olm account and sessions, the peers' verified devices, the
//! conversations and how far the inbox was read, in one file.
//!
//! Two keys, both derived from the identity's BIP39 seed with HMAC-SHA-256 and a fixed label,
//! protect it: the pickle key encrypts the account and each session with vodozemac's own
//! encrypted pickles, and the file key seals the whole file with XChaCha20-Poly1305 under a
//! fresh nonce on every save, so that nothing in it (not even who the peers are) can be read
//! without the identity. The seed, not the current identity key, is the root: a rotation
//! changes the key but not the store's keys.
//!
//! ```json
//! {"version": 1, "cipher": "xchacha20-poly1305", "nonce": "<base64url, 24 bytes>",
//!  "ciphertext": "<base64url>"}
//! ```
//!
//! The file is local to one device; no other party reads it, so it is not part of the
//! protocol.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::Path;

use chacha20poly1305::aead::{Aead as _, Payload};
use chacha20poly1305::{KeyInit as _, XChaCha20Poly1305};
use guildhall_spec::{DeviceId, JsonObject, UserId, base64url};
use hmac::{Hmac, Mac as _};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use vodozemac::olm::{Account, AccountPickle, Session, SessionPickle};
use zeroize::Zeroizing;

use super::keys::VerifiedUser;
use crate::identity::{Identity, write_secret};

/// The file format version this module writes and reads.
const VERSION: u32 = 1;
/// The associated data the file's ciphertext is bound to.
const ASSOCIATED_DATA: &[u8] = b"guildhall e2e store v1";
/// The label of the key that seals the file.
const FILE_KEY_LABEL: &[u8] = b"guildhall e2e store v1: file key";
/// The label of the key that encrypts vodozemac pickles.
const PICKLE_KEY_LABEL: &[u8] = b"guildhall e2e store v1: pickle key";
/// Inbox items kept while their sender's identity change waits for acceptance.
pub(crate) const MAX_HELD: usize = 1000;
/// Inbound session ids remembered against pre-key replays.
pub(crate) const MAX_INBOUND_SESSIONS: usize = 10_000;
/// Handled but unacknowledged inbox ids kept (spec 17.10: unacknowledged items per device).
pub(crate) const MAX_PROCESSED: usize = 10_000;
/// Messages kept per conversation; older ones are forgotten.
pub(crate) const HISTORY_LIMIT: usize = 1000;

/// The two keys of a store, derived from the identity.
pub(crate) struct StoreKeys {
    file: Zeroizing<[u8; 32]>,
    pickle: Zeroizing<[u8; 32]>,
}

impl StoreKeys {
    /// The keys of `identity`'s stores.
    pub(crate) fn derive(identity: &Identity) -> Self {
        let seed = Zeroizing::new(identity.phrase().seed());
        Self {
            file: derive_key(&seed[..], FILE_KEY_LABEL),
            pickle: derive_key(&seed[..], PICKLE_KEY_LABEL),
        }
    }

    #[cfg(test)]
    pub(crate) fn from_seed(seed: &[u8]) -> Self {
        Self { file: derive_key(seed, FILE_KEY_LABEL), pickle: derive_key(seed, PICKLE_KEY_LABEL) }
    }
}

fn derive_key(seed: &[u8], label: &[u8]) -> Zeroizing<[u8; 32]> {
    // HMAC takes keys of any length.
    let Ok(mut mac) = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(seed) else {
        unreachable!("HMAC accepts keys of every length")
    };
    mac.update(label);
    Zeroizing::new(mac.finalize().into_bytes().into())
}

/// Why a store could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Reading or writing the file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// The file does not open with this identity's key, or was altered.
    #[error("{}: not this identity's store, or altered", path.display())]
    WrongKey {
        /// The file.
        path: std::path::PathBuf,
    },
    /// Another `Device` (in this process or another) has the store open.
    #[error("{}: in use by another program (or another device object)", path.display())]
    InUse {
        /// The file.
        path: std::path::PathBuf,
    },
    /// The file is not a store of a version this client reads.
    #[error("{}: malformed store: {detail}", path.display())]
    Malformed {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        detail: String,
    },
}

/// A stored Olm session with one peer device.
pub(crate) struct StoredSession {
    pub(crate) session: Session,
    /// When it was created (ms); sessions are kept newest first.
    pub(crate) created_ts: u64,
}

/// Everything the store holds, in memory.
pub(crate) struct Contents {
    pub(crate) user_id: UserId,
    pub(crate) device_id: DeviceId,
    pub(crate) account: Account,
    /// Olm sessions by the peer device's Curve25519 key (base64url), newest first.
    pub(crate) sessions: BTreeMap<String, Vec<StoredSession>>,
    pub(crate) state: State,
}

/// The store's plain data.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct State {
    /// This device's certificate, as registered.
    pub(crate) certificate: JsonObject,
    /// The verified devices of each user this device has encrypted for or heard from.
    #[serde(default)]
    pub(crate) peers: BTreeMap<UserId, VerifiedUser>,
    /// Conversations by id and member set ([`conversation_key`]).
    #[serde(default)]
    pub(crate) conversations: BTreeMap<String, Conversation>,
    /// How far the inbox was read.
    #[serde(default)]
    pub(crate) inbox: InboxProgress,
    /// When this device last sent `dm.reset` to a peer device, by its Curve25519 key (ms).
    #[serde(default)]
    pub(crate) resets: BTreeMap<String, u64>,
    /// Users whose server now gives another identity key than the one in `peers`: the new
    /// keys, until the person accepts them.
    #[serde(default)]
    pub(crate) identity_changes: BTreeMap<UserId, VerifiedUser>,
    /// Inbox items from users in `identity_changes`, kept still encrypted, to be read once the
    /// change is accepted; at most [`MAX_HELD`].
    #[serde(default)]
    pub(crate) held: Vec<super::wire::InboxItem>,
    /// The ids of the inbound sessions pre-key messages started, oldest first, at most
    /// [`MAX_INBOUND_SESSIONS`]: a pre-key message for a session that was started before (and
    /// since forgotten) is a replay, which must not start it again and deliver an old message
    /// twice (a fallback key, unlike a one-time key, stays usable).
    #[serde(default)]
    pub(crate) inbound_sessions: VecDeque<String>,
    /// The public key of the fallback key published last (base64url).
    #[serde(default)]
    pub(crate) fallback_key: Option<String>,
    /// Whether a session was started with that fallback key: then it is replaced.
    #[serde(default)]
    pub(crate) fallback_used: bool,
    /// When the fallback key before the current one was replaced (ms); it is forgotten a while
    /// after, once pre-key messages made with it have had time to arrive.
    #[serde(default)]
    pub(crate) previous_fallback_ts: Option<u64>,
}

impl State {
    /// Remembers an inbound session's id, forgetting the oldest past the bound.
    pub(crate) fn remember_inbound(&mut self, session_id: String) {
        self.inbound_sessions.push_back(session_id);
        while self.inbound_sessions.len() > MAX_INBOUND_SESSIONS {
            self.inbound_sessions.pop_front();
        }
    }
}

/// How far the inbox was read: everything up to `acknowledged`, and the ids above it that
/// were handled (from `TO_DEVICE` dispatches) but not yet acknowledged.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct InboxProgress {
    pub(crate) acknowledged: u64,
    pub(crate) processed: BTreeSet<u64>,
}

impl InboxProgress {
    /// Whether inbox item `id` was handled already.
    pub(crate) fn seen(&self, id: u64) -> bool {
        id <= self.acknowledged || self.processed.contains(&id)
    }

    /// Records item `id` as handled. At most [`MAX_PROCESSED`] ids are kept (as many as an
    /// inbox holds unacknowledged, spec 17.10); past that the oldest are forgotten.
    pub(crate) fn mark(&mut self, id: u64) {
        if id > self.acknowledged {
            self.processed.insert(id);
        }
        while self.processed.len() > MAX_PROCESSED {
            self.processed.pop_first();
        }
    }

    /// Records that the server deleted every item up to `id`.
    pub(crate) fn acknowledge(&mut self, id: u64) {
        self.acknowledged = self.acknowledged.max(id);
        let acknowledged = self.acknowledged;
        self.processed.retain(|&processed| processed > acknowledged);
    }
}

/// An encrypted conversation as this device knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conversation {
    /// Its id, chosen by the device that started it.
    pub id: String,
    /// Everyone in it, this user included.
    pub members: Vec<UserId>,
    /// The messages this device sent or could read, oldest first (the latest
    /// [`HISTORY_LIMIT`] of them).
    pub messages: Vec<HistoryEntry>,
}

/// One message of a conversation's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// The sender's id for it.
    pub message_id: String,
    /// Who sent it.
    pub sender: UserId,
    /// From which device.
    pub sender_device: DeviceId,
    /// The text.
    pub body: String,
    /// When the sender sent it, by the sender's clock (ms).
    pub sent_ts: u64,
    /// For a message this device sent: the users it did not reach (this user, for a copy to
    /// the own other devices that failed), as the send reported them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_delivered: Vec<UserId>,
}

impl Conversation {
    /// Adds a message in the order of the senders' clocks (after those sent at the same
    /// time), forgetting the oldest past the limit; a message already there (the same sender
    /// and id) is not added twice.
    pub(crate) fn record(&mut self, entry: HistoryEntry) {
        let known = self.messages.iter().any(|message| {
            message.sender == entry.sender && message.message_id == entry.message_id
        });
        if known {
            return;
        }
        let position = self.messages.partition_point(|message| message.sent_ts <= entry.sent_ts);
        self.messages.insert(position, entry);
        let excess = self.messages.len().saturating_sub(HISTORY_LIMIT);
        self.messages.drain(..excess);
    }
}

/// The key of a conversation in [`State::conversations`]: its id and its members, sorted. A
/// conversation is known by both, so that a message reusing an id with other members cannot
/// change whom a conversation is with (spec 17.7).
pub(crate) fn conversation_key(id: &str, members: &[UserId]) -> String {
    let mut members: Vec<&str> = members.iter().map(UserId::as_str).collect();
    members.sort_unstable();
    format!("{id}\n{}", members.join("\n"))
}

/// Adds `entry` to the conversation `id` with `members` (created if new). When that
/// conversation is new but one with the same id and other members is known, returns the
/// members of the most recent such one: the person is to be told that the members differ.
pub(crate) fn record(
    conversations: &mut BTreeMap<String, Conversation>,
    id: &str,
    members: &[UserId],
    entry: HistoryEntry,
) -> Option<Vec<UserId>> {
    let key = conversation_key(id, members);
    let previous = if conversations.contains_key(&key) {
        None
    } else {
        conversations
            .values()
            .filter(|known| known.id == id)
            .max_by_key(|known| known.messages.last().map_or(0, |m| m.sent_ts))
            .map(|known| known.members.clone())
    };
    let mut sorted = members.to_vec();
    sorted.sort();
    let conversation = conversations.entry(key).or_insert_with(|| Conversation {
        id: id.to_owned(),
        members: sorted,
        messages: Vec::new(),
    });
    conversation.record(entry);
    previous
}

/// The file as written.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SealedFile {
    version: u32,
    cipher: String,
    nonce: String,
    ciphertext: String,
}

/// The decrypted file.
#[derive(Serialize, Deserialize)]
struct Pickled {
    user_id: UserId,
    device_id: DeviceId,
    /// vodozemac's encrypted pickle of the account.
    account: String,
    /// Encrypted session pickles by peer Curve25519 key, newest first.
    sessions: BTreeMap<String, Vec<PickledSession>>,
    state: State,
}

#[derive(Serialize, Deserialize)]
struct PickledSession {
    pickle: String,
    created_ts: u64,
}

const CIPHER: &str = "xchacha20-poly1305";

/// Takes the store's lock: an exclusive advisory lock on `<path>.lock`, held while the returned
/// file is open. The store itself is replaced on every save, so it cannot carry the lock.
pub(crate) fn lock(path: &Path) -> Result<std::fs::File, StoreError> {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    let lock_path = std::path::PathBuf::from(name);
    let io = |source| StoreError::Io { path: lock_path.clone(), source };
    if let Some(parent) = lock_path.parent().filter(|parent| !parent.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options.open(&lock_path).map_err(io)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::InUse { path: path.to_owned() }),
        Err(std::fs::TryLockError::Error(source)) => Err(io(source)),
    }
}

/// Writes `contents` to `path`, sealed, owner-only, replacing the file in one step.
pub(crate) fn save(path: &Path, keys: &StoreKeys, contents: &Contents) -> Result<(), StoreError> {
    let pickled = Pickled {
        user_id: contents.user_id.clone(),
        device_id: contents.device_id.clone(),
        account: contents.account.pickle().encrypt(&keys.pickle),
        sessions: contents
            .sessions
            .iter()
            .map(|(key, sessions)| {
                let pickled = sessions
                    .iter()
                    .map(|stored| PickledSession {
                        pickle: stored.session.pickle().encrypt(&keys.pickle),
                        created_ts: stored.created_ts,
                    })
                    .collect();
                (key.clone(), pickled)
            })
            .collect(),
        state: contents.state.clone(),
    };
    let malformed = |detail: String| StoreError::Malformed { path: path.to_owned(), detail };
    let plaintext =
        Zeroizing::new(serde_json::to_vec(&pickled).map_err(|e| malformed(e.to_string()))?);
    let nonce: [u8; 24] = rand::random();
    let ciphertext = XChaCha20Poly1305::new((&*keys.file).into())
        .encrypt((&nonce).into(), Payload { msg: &plaintext, aad: ASSOCIATED_DATA })
        .map_err(|_| malformed("encryption failed".into()))?;
    let file = SealedFile {
        version: VERSION,
        cipher: CIPHER.into(),
        nonce: base64url::encode(nonce),
        ciphertext: base64url::encode(ciphertext),
    };
    let text = serde_json::to_vec_pretty(&file).map_err(|e| malformed(e.to_string()))?;
    write_secret(path, &text).map_err(|source| StoreError::Io { path: path.to_owned(), source })
}

/// Reads and opens the store at `path`.
pub(crate) fn load(path: &Path, keys: &StoreKeys) -> Result<Contents, StoreError> {
    let malformed =
        |detail: &str| StoreError::Malformed { path: path.to_owned(), detail: detail.into() };
    let wrong_key = || StoreError::WrongKey { path: path.to_owned() };
    let text =
        std::fs::read(path).map_err(|source| StoreError::Io { path: path.to_owned(), source })?;
    let file: SealedFile = serde_json::from_slice(&text).map_err(|e| malformed(&e.to_string()))?;
    if file.version != VERSION || file.cipher != CIPHER {
        return Err(malformed("unknown version or cipher"));
    }
    let nonce = base64url::decode_array::<24>(&file.nonce).ok_or_else(|| malformed("nonce"))?;
    let ciphertext = base64url::decode(&file.ciphertext).map_err(|_| malformed("ciphertext"))?;
    let plaintext = Zeroizing::new(
        XChaCha20Poly1305::new((&*keys.file).into())
            .decrypt((&nonce).into(), Payload { msg: &ciphertext, aad: ASSOCIATED_DATA })
            .map_err(|_| wrong_key())?,
    );
    // The parser's message is not passed on: it may quote the store's decrypted contents.
    let pickled: Pickled =
        serde_json::from_slice(&plaintext).map_err(|_| malformed("the contents do not parse"))?;
    let account =
        AccountPickle::from_encrypted(&pickled.account, &keys.pickle).map_err(|_| wrong_key())?;
    let mut sessions = BTreeMap::new();
    for (peer_key, list) in pickled.sessions {
        let mut restored = Vec::with_capacity(list.len());
        for stored in list {
            let pickle = SessionPickle::from_encrypted(&stored.pickle, &keys.pickle)
                .map_err(|_| wrong_key())?;
            restored.push(StoredSession {
                session: Session::from_pickle(pickle),
                created_ts: stored.created_ts,
            });
        }
        sessions.insert(peer_key, restored);
    }
    Ok(Contents {
        user_id: pickled.user_id,
        device_id: pickled.device_id,
        account: Account::from_pickle(account),
        sessions,
        state: pickled.state,
    })
}

#[cfg(test)]
mod tests {
    use vodozemac::olm::SessionConfig;

    use super::*;

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("guildhall-e2e-store-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir.join("e2e.json")
    }

    /// An account and a session with a peer, as a store holds them after a first message.
    fn contents() -> (Contents, Account) {
        let account = Account::new();
        let mut peer = Account::new();
        peer.generate_one_time_keys(1);
        let one_time_key = *peer.one_time_keys().values().next().unwrap();
        let session = account
            .create_outbound_session(
                SessionConfig::version_1(),
                peer.curve25519_key(),
                one_time_key,
            )
            .unwrap();
        let peer_key = base64url::encode(peer.curve25519_key().as_bytes());
        let mut state = State::default();
        state.inbox.mark(7);
        let contents = Contents {
            user_id: UserId::parse("@alice:a.example").unwrap(),
            device_id: DeviceId::parse("LAPTOP").unwrap(),
            account,
            sessions: BTreeMap::from([(peer_key, vec![StoredSession { session, created_ts: 5 }])]),
            state,
        };
        (contents, peer)
    }

    #[test]
    fn a_store_round_trips_under_the_identity_key_only() {
        let path = scratch("round-trip");
        let keys = StoreKeys::from_seed(&[1; 64]);
        let (mut contents, mut peer) = contents();
        save(&path, &keys, &contents).unwrap();

        let mut loaded = load(&path, &keys).unwrap();
        assert_eq!(loaded.account.curve25519_key(), contents.account.curve25519_key());
        assert_eq!(loaded.state.inbox, contents.state.inbox);
        // The restored session is the same ratchet: what it encrypts, the peer reads.
        let (peer_key, sessions) = loaded.sessions.iter_mut().next().unwrap();
        assert_eq!(*peer_key, base64url::encode(peer.curve25519_key().as_bytes()));
        assert_eq!(sessions[0].created_ts, 5);
        let original = &contents.sessions.values().next().unwrap()[0].session;
        assert_eq!(sessions[0].session.session_id(), original.session_id());
        let vodozemac::olm::OlmMessage::PreKey(message) =
            sessions[0].session.encrypt(b"hello").unwrap()
        else {
            panic!("a first message is a pre-key message")
        };
        let inbound = peer
            .create_inbound_session(
                SessionConfig::version_1(),
                contents.account.curve25519_key(),
                &message,
            )
            .unwrap();
        assert_eq!(inbound.plaintext, b"hello");

        // Nothing readable is in the file, and another identity cannot open it.
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("alice") && !text.contains("LAPTOP"), "{text}");
        let other = StoreKeys::from_seed(&[2; 64]);
        assert!(matches!(load(&path, &other), Err(StoreError::WrongKey { .. })));
        // A flipped byte is caught.
        let mut file: serde_json::Value = serde_json::from_str(&text).unwrap();
        let mut ciphertext = base64url::decode(file["ciphertext"].as_str().unwrap()).unwrap();
        ciphertext[10] ^= 1;
        file["ciphertext"] = base64url::encode(ciphertext).into();
        std::fs::write(&path, file.to_string()).unwrap();
        assert!(matches!(load(&path, &keys), Err(StoreError::WrongKey { .. })));
        #[cfg(unix)]
        {
            save(&path, &keys, &contents).unwrap();
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "owner-only");
        }
        contents.sessions.clear();
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn a_store_is_used_by_one_device_at_a_time() {
        let path = scratch("lock");
        let first = lock(&path).unwrap();
        assert!(matches!(lock(&path), Err(StoreError::InUse { .. })));
        drop(first);
        assert!(lock(&path).is_ok(), "free again once the first is gone");
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn inbox_progress_skips_what_was_handled() {
        let mut progress = InboxProgress::default();
        progress.mark(3);
        progress.mark(5);
        assert!(progress.seen(3) && progress.seen(5) && !progress.seen(4));
        progress.acknowledge(4);
        assert!(progress.seen(1) && progress.seen(4) && progress.seen(5) && !progress.seen(6));
        assert_eq!(progress.processed, BTreeSet::from([5]));
        progress.mark(2);
        assert_eq!(progress.processed, BTreeSet::from([5]), "ids below the ack are not kept");
    }

    #[test]
    fn a_conversation_is_known_by_its_id_and_its_members() {
        let user = |name: &str| UserId::parse(&format!("@{name}:a.example")).unwrap();
        let entry = |n: u64, sender: &str| HistoryEntry {
            message_id: format!("m{n}"),
            sender: user(sender),
            sender_device: DeviceId::parse("D").unwrap(),
            body: format!("text {n}"),
            sent_ts: n,
            not_delivered: Vec::new(),
        };
        let trio = [user("alice"), user("bob"), user("carol")];
        let mut conversations = BTreeMap::new();
        assert_eq!(record(&mut conversations, "c", &trio, entry(1, "alice")), None);
        // The same members in another order: the same conversation.
        let reordered = [user("carol"), user("alice"), user("bob")];
        assert_eq!(record(&mut conversations, "c", &reordered, entry(2, "carol")), None);
        // Carol reuses the id without bob: a conversation of its own, and the change is told.
        let pair = [user("alice"), user("carol")];
        assert_eq!(record(&mut conversations, "c", &pair, entry(3, "carol")), Some(trio.to_vec()));
        assert_eq!(record(&mut conversations, "c", &pair, entry(4, "carol")), None);
        let members: Vec<(usize, &[UserId])> = conversations
            .values()
            .map(|known| (known.messages.len(), known.members.as_slice()))
            .collect();
        assert_eq!(members.len(), 2, "{members:?}");
        assert!(members.contains(&(2, &trio[..])) && members.contains(&(2, &pair[..])));
        // An outsider who picks the id is not let into the conversation either.
        let eve = [user("alice"), user("bob"), user("carol"), user("eve")];
        assert!(record(&mut conversations, "c", &eve, entry(5, "eve")).is_some());
        let key = conversation_key("c", &trio);
        assert_eq!(conversations[&key].members, trio, "the trio's members stay");
    }

    #[test]
    fn history_is_bounded_and_deduplicated() {
        let alice = UserId::parse("@alice:a.example").unwrap();
        let mut conversation =
            Conversation { id: "c".into(), members: vec![alice.clone()], messages: Vec::new() };
        let entry = |n: usize| HistoryEntry {
            message_id: format!("m{n}"),
            sender: alice.clone(),
            sender_device: DeviceId::parse("LAPTOP").unwrap(),
            body: format!("text {n}"),
            sent_ts: n as u64,
            not_delivered: Vec::new(),
        };
        for n in 0..HISTORY_LIMIT + 5 {
            conversation.record(entry(n));
        }
        conversation.record(entry(HISTORY_LIMIT + 4));
        assert_eq!(conversation.messages.len(), HISTORY_LIMIT);
        assert_eq!(conversation.messages[0].message_id, "m5");
        // A message that arrives late goes where its sender's clock puts it (and the oldest
        // goes).
        conversation.record(HistoryEntry { sent_ts: 6, ..entry(HISTORY_LIMIT + 9) });
        let order: Vec<u64> = conversation.messages[..4].iter().map(|m| m.sent_ts).collect();
        assert_eq!(order, [6, 6, 7, 8], "{:?}", &conversation.messages[..4]);
    }
}
