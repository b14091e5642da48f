//! The user's identity (spec chapter 16) as a client keeps it: the recovery phrase and the
//! index of the current identity key, in a local file sealed with a passphrase
//! ([`guildhall_identity::keyfile`]: Argon2id and XChaCha20-Poly1305).
//!
//! The identity never leaves the machine. Servers see only the public key, the proofs it signs
//! for key logins ([`crate::Client::login_with_key`]) and the proof that binds it to an account
//! ([`crate::Session::bind_identity`]).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use guildhall_identity::key::IdentityKeyPair;
use guildhall_identity::keyfile::{self, KeyFileContents, KeyFileError};
use guildhall_identity::phrase::{PhraseError, RecoveryPhrase};
use guildhall_identity::rotation::{self, RECOVERY_SEARCH_LIMIT};

pub use guildhall_identity::keyfile::KdfParams;

/// An identity: the recovery phrase and the identity key currently in use.
#[derive(Debug, Clone)]
pub struct Identity {
    phrase: RecoveryPhrase,
    key_index: u32,
    key: IdentityKeyPair,
}

/// Why an identity could not be made, recovered, saved or loaded.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// Reading or writing the identity file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// The file could not be sealed or opened: a wrong passphrase, an altered or malformed
    /// file, an empty passphrase.
    #[error("{}: {source}", path.display())]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: KeyFileError,
    },
    /// The recovery phrase is not 24 valid BIP39 words.
    #[error("invalid recovery phrase: {0}")]
    Phrase(#[from] PhraseError),
    /// None of the keys a recovery searches is the one asked for.
    #[error(
        "none of the first {RECOVERY_SEARCH_LIMIT} identity keys of this phrase is {identity_key}"
    )]
    KeyNotFound {
        /// The public key searched for.
        identity_key: String,
    },
}

impl Identity {
    /// A new identity: a fresh 24-word phrase from the operating system's CSPRNG, and its first
    /// key. Show the phrase to the user once ([`Self::phrase`]); it is the only way back to the
    /// identity if the file or its passphrase is lost.
    pub fn generate() -> Self {
        Self::from_phrase(RecoveryPhrase::generate(), 0)
    }

    /// The identity of a written-down phrase, using key number `key_index` (0 unless the key
    /// was rotated; see [`Self::recover_key`] to find it).
    pub fn recover(phrase: &str, key_index: u32) -> Result<Self, IdentityError> {
        Ok(Self::from_phrase(RecoveryPhrase::parse(phrase)?, key_index))
    }

    /// The identity of a written-down phrase whose current key is `identity_key` (as a profile
    /// or attestation shows it): searches the phrase's first keys for it (spec 16.6).
    pub fn recover_key(phrase: &str, identity_key: &str) -> Result<Self, IdentityError> {
        let phrase = RecoveryPhrase::parse(phrase)?;
        let (index, _) = rotation::recover(&phrase, identity_key)
            .ok_or_else(|| IdentityError::KeyNotFound { identity_key: identity_key.to_owned() })?;
        Ok(Self::from_phrase(phrase, index))
    }

    fn from_phrase(phrase: RecoveryPhrase, key_index: u32) -> Self {
        let key = IdentityKeyPair::from_phrase(&phrase, key_index);
        Self { phrase, key_index, key }
    }

    /// Reads and decrypts an identity file written by [`Self::save`].
    pub fn load(path: &Path, passphrase: &str) -> Result<Self, IdentityError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| IdentityError::Io { path: path.to_owned(), source })?;
        let contents = keyfile::open(passphrase, &text)
            .map_err(|source| IdentityError::KeyFile { path: path.to_owned(), source })?;
        Ok(Self::from_phrase(contents.phrase, contents.key_index))
    }

    /// Encrypts the identity under `passphrase` and writes it to `path`, replacing any file
    /// there in one step (a new file is written beside it and renamed over it) and, on Unix,
    /// readable by its owner only. Parent directories are created.
    pub fn save(
        &self,
        path: &Path,
        passphrase: &str,
        params: KdfParams,
    ) -> Result<(), IdentityError> {
        let contents = KeyFileContents { phrase: self.phrase.clone(), key_index: self.key_index };
        let sealed = keyfile::seal(passphrase, &contents, params)
            .map_err(|source| IdentityError::KeyFile { path: path.to_owned(), source })?;
        write_secret(path, sealed.as_bytes())
            .map_err(|source| IdentityError::Io { path: path.to_owned(), source })
    }

    /// The recovery phrase (its `Debug` never shows the words; [`RecoveryPhrase::words`]
    /// does).
    pub fn phrase(&self) -> &RecoveryPhrase {
        &self.phrase
    }

    /// The derivation index of the current identity key (spec 16.1).
    pub fn key_index(&self) -> u32 {
        self.key_index
    }

    /// The identity key pair, which signs login proofs.
    pub fn key_pair(&self) -> &IdentityKeyPair {
        &self.key
    }

    /// The public identity key as servers show it (unpadded base64url).
    pub fn public_key(&self) -> String {
        self.key.public_base64url()
    }
}

/// Writes a secret file: `bytes` go to a new file beside `path`, readable by its owner only on
/// Unix, which is then renamed over `path`, so a reader never sees half a file; the file and
/// then its directory are synced, so the new contents survive a power loss. Parent
/// directories are created. The identity file is written so; saved sessions, whose tokens are
/// secrets too, should be.
pub fn write_secret(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = path.parent().filter(|parent| !parent.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(format!(".{}.tmp", std::process::id()));
    let temporary = PathBuf::from(temporary);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = options.open(&temporary).and_then(|mut file| {
        file.write_all(bytes)?;
        file.sync_all()
    });
    match written.and_then(|()| std::fs::rename(&temporary, path)) {
        Ok(()) => sync_parent(path),
        Err(error) => {
            let _ = std::fs::remove_file(&temporary);
            Err(error)
        }
    }
}

/// Makes a rename into `path`'s directory durable: until the directory itself is synced, a
/// power loss may bring back the old file (for an E2E store, an old ratchet state, whose
/// message keys would then be used twice).
fn sync_parent(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let parent = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        std::fs::File::open(parent)?.sync_all()?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cheap Argon2 parameters, so tests do not spend seconds in the KDF.
    const FAST: KdfParams = KdfParams { memory_kib: 64, iterations: 1, parallelism: 1 };

    /// Spec 16.1's example phrase.
    const PHRASE: &str = "abandon abandon abandon abandon abandon abandon abandon abandon abandon \
        abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon \
        abandon abandon abandon art";

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir()
            .join(format!("guildhall-client-{}-{name}", std::process::id()))
            .join("nested");
        let _ = std::fs::remove_dir_all(&dir);
        dir.join("identity.json")
    }

    #[test]
    fn a_saved_identity_loads_with_its_passphrase_only() {
        let path = scratch("round-trip");
        let identity = Identity::generate();
        identity.save(&path, "correct horse", FAST).unwrap();
        let loaded = Identity::load(&path, "correct horse").unwrap();
        assert_eq!(loaded.public_key(), identity.public_key());
        assert_eq!(loaded.phrase().words(), identity.phrase().words());
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&identity.phrase().words()[..16]), "the phrase is encrypted");
        let wrong = Identity::load(&path, "correct hose").unwrap_err();
        assert!(
            matches!(wrong, IdentityError::KeyFile { source: KeyFileError::WrongPassphrase, .. }),
            "{wrong}"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "owner-only");
        }
        let _ = std::fs::remove_dir_all(path.parent().unwrap().parent().unwrap());
    }

    #[test]
    fn recovery_finds_the_spec_key_and_rotated_keys() {
        let identity = Identity::recover(PHRASE, 0).unwrap();
        assert_eq!(identity.public_key(), "gAdf49xk3FcGUhzo_Z63Z4z3QSVfE7ZAa9hrgZv8Nbg");
        let third = Identity::recover(PHRASE, 2).unwrap();
        let found = Identity::recover_key(PHRASE, &third.public_key()).unwrap();
        assert_eq!(found.key_index(), 2);
        let stranger = Identity::generate().public_key();
        assert!(matches!(
            Identity::recover_key(PHRASE, &stranger),
            Err(IdentityError::KeyNotFound { .. })
        ));
        assert!(matches!(Identity::recover("abandon art", 0), Err(IdentityError::Phrase(_))));
    }

    #[test]
    fn an_index_survives_the_file() {
        let path = scratch("index");
        Identity::recover(PHRASE, 5).unwrap().save(&path, "pass", FAST).unwrap();
        let loaded = Identity::load(&path, "pass").unwrap();
        assert_eq!(loaded.key_index(), 5);
        assert_eq!(loaded.public_key(), Identity::recover(PHRASE, 5).unwrap().public_key());
        assert!(matches!(
            Identity::load(&path.with_file_name("absent.json"), "pass"),
            Err(IdentityError::Io { .. })
        ));
        let _ = std::fs::remove_dir_all(path.parent().unwrap().parent().unwrap());
    }
}
