//! The client's local identity file: the recovery phrase and the index of the current identity
//! key, encrypted under a passphrase.
//!
//! A key is derived from the passphrase with Argon2id (RFC 9106, version 1.3) and seals the
//! contents with XChaCha20-Poly1305. The file is JSON; the Argon2 parameters live in it, so a
//! file stays readable when the defaults change:
//!
//! ```json
//! {
//!   "version": 1,
//!   "kdf": {"algorithm": "argon2id", "memory_kib": 65536, "iterations": 3, "parallelism": 1,
//!           "salt": "<base64url, 16 bytes>"},
//!   "cipher": "xchacha20-poly1305",
//!   "nonce": "<base64url, 24 bytes>",
//!   "ciphertext": "<base64url>"
//! }
//! ```
//!
//! The plaintext is the phrase's 32 bytes of entropy followed by the key index as a big-endian
//! `u32`; the associated data is [`ASSOCIATED_DATA`]. The passphrase is used as the UTF-8 bytes
//! given, without Unicode normalization. This file is local to one client; no other party reads
//! it, so it is not part of the protocol.

use chacha20poly1305::aead::{Aead as _, Payload};
use chacha20poly1305::{KeyInit as _, XChaCha20Poly1305};
use guildhall_spec::base64url;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::phrase::RecoveryPhrase;

/// The file format version this module writes and reads.
pub const VERSION: u64 = 1;

/// The associated data the ciphertext is bound to.
pub const ASSOCIATED_DATA: &[u8] = b"guildhall identity file v1";

/// The most memory a file may ask Argon2 for, in KiB (1 GiB): opening a file must not exhaust
/// the machine.
pub const MAX_MEMORY_KIB: u32 = 1024 * 1024;

/// The most Argon2 passes a file may ask for.
pub const MAX_ITERATIONS: u32 = 64;

/// The most Argon2 lanes a file may ask for.
pub const MAX_PARALLELISM: u32 = 16;

const SALT_LEN: usize = 16;
const NONCE_LEN: usize = 24;
const PLAINTEXT_LEN: usize = 32 + 4;

/// What the file keeps secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFileContents {
    /// The recovery phrase (its `Debug` never shows the words).
    pub phrase: RecoveryPhrase,
    /// The derivation index of the current identity key (spec 16.1).
    pub key_index: u32,
}

/// Argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory, in KiB; at least 8 × `parallelism`, at most [`MAX_MEMORY_KIB`].
    pub memory_kib: u32,
    /// Passes over the memory, 1 to [`MAX_ITERATIONS`].
    pub iterations: u32,
    /// Lanes, 1 to [`MAX_PARALLELISM`].
    pub parallelism: u32,
}

/// Why a file could not be sealed or opened.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyFileError {
    /// The passphrase is empty; the file would be as good as unencrypted.
    #[error("the passphrase is empty")]
    EmptyPassphrase,
    /// Sealing: the Argon2 parameters are out of range.
    #[error("invalid key derivation parameters: {0}")]
    InvalidParams(String),
    /// The file was written in a format version this code does not know.
    #[error("identity file version {0} is not supported")]
    UnsupportedVersion(u64),
    /// Not an identity file: bad JSON, unknown algorithms, wrong lengths or parameters out of
    /// range.
    #[error("malformed identity file: {0}")]
    Malformed(String),
    /// Decryption failed: the passphrase is wrong, or the file was altered.
    #[error("wrong passphrase, or the file was altered")]
    WrongPassphrase,
}

impl KdfParams {
    /// Interactive defaults: 64 MiB, 3 passes, 1 lane (the memory and passes of RFC 9106's
    /// second recommended option, for memory-constrained settings).
    pub const INTERACTIVE: Self = Self { memory_kib: 64 * 1024, iterations: 3, parallelism: 1 };

    fn check(&self) -> Result<(), String> {
        if !(1..=MAX_PARALLELISM).contains(&self.parallelism) {
            return Err(format!("parallelism must be 1..={MAX_PARALLELISM}"));
        }
        if !(1..=MAX_ITERATIONS).contains(&self.iterations) {
            return Err(format!("iterations must be 1..={MAX_ITERATIONS}"));
        }
        let least = 8 * self.parallelism;
        if !(least..=MAX_MEMORY_KIB).contains(&self.memory_kib) {
            return Err(format!("memory_kib must be {least}..={MAX_MEMORY_KIB}"));
        }
        Ok(())
    }
}

impl Default for KdfParams {
    fn default() -> Self {
        Self::INTERACTIVE
    }
}

/// Encrypts `contents` under `passphrase` with a fresh salt and nonce; returns the file's JSON.
pub fn seal(
    passphrase: &str,
    contents: &KeyFileContents,
    params: KdfParams,
) -> Result<String, KeyFileError> {
    if passphrase.is_empty() {
        return Err(KeyFileError::EmptyPassphrase);
    }
    params.check().map_err(KeyFileError::InvalidParams)?;
    let salt: [u8; SALT_LEN] = rand::random();
    let nonce: [u8; NONCE_LEN] = rand::random();
    let key = derive_key(passphrase, &salt, params).map_err(KeyFileError::InvalidParams)?;
    let mut plaintext = Zeroizing::new([0; PLAINTEXT_LEN]);
    plaintext[..32].copy_from_slice(Zeroizing::new(contents.phrase.entropy()).as_slice());
    plaintext[32..].copy_from_slice(&contents.key_index.to_be_bytes());
    // Encryption fails only for messages of 256 GiB and more; this one has 36 bytes.
    #[allow(clippy::expect_used)]
    let ciphertext = XChaCha20Poly1305::new((&*key).into())
        .encrypt((&nonce).into(), Payload { msg: plaintext.as_slice(), aad: ASSOCIATED_DATA })
        .expect("36 bytes are within XChaCha20-Poly1305's limit");
    let file = FileV1 {
        version: VERSION,
        kdf: Kdf {
            algorithm: KdfAlgorithm::Argon2id,
            memory_kib: params.memory_kib,
            iterations: params.iterations,
            parallelism: params.parallelism,
            salt: base64url::encode(salt),
        },
        cipher: Cipher::XChaCha20Poly1305,
        nonce: base64url::encode(nonce),
        ciphertext: base64url::encode(ciphertext),
    };
    // Strings, integers and unit variants always serialize.
    #[allow(clippy::expect_used)]
    Ok(serde_json::to_string_pretty(&file).expect("plain data serializes"))
}

/// Decrypts a file written by [`seal`].
pub fn open(passphrase: &str, file: &str) -> Result<KeyFileContents, KeyFileError> {
    let malformed = |reason: &str| KeyFileError::Malformed(reason.to_owned());
    let version: VersionOnly =
        serde_json::from_str(file).map_err(|e| KeyFileError::Malformed(e.to_string()))?;
    if version.version != VERSION {
        return Err(KeyFileError::UnsupportedVersion(version.version));
    }
    let file: FileV1 =
        serde_json::from_str(file).map_err(|e| KeyFileError::Malformed(e.to_string()))?;
    let params = KdfParams {
        memory_kib: file.kdf.memory_kib,
        iterations: file.kdf.iterations,
        parallelism: file.kdf.parallelism,
    };
    params.check().map_err(KeyFileError::Malformed)?;
    let salt =
        base64url::decode_array::<SALT_LEN>(&file.kdf.salt).ok_or_else(|| malformed("salt"))?;
    let nonce =
        base64url::decode_array::<NONCE_LEN>(&file.nonce).ok_or_else(|| malformed("nonce"))?;
    let ciphertext = base64url::decode(&file.ciphertext).map_err(|_| malformed("ciphertext"))?;
    let key = derive_key(passphrase, &salt, params).map_err(KeyFileError::Malformed)?;
    let plaintext = XChaCha20Poly1305::new((&*key).into())
        .decrypt((&nonce).into(), Payload { msg: &ciphertext, aad: ASSOCIATED_DATA })
        .map(Zeroizing::new)
        .map_err(|_| KeyFileError::WrongPassphrase)?;
    // Authentic, so written by `seal`; a different length would be a writer's bug.
    let Some((entropy, index)) = plaintext.split_first_chunk::<32>() else {
        return Err(malformed("plaintext length"));
    };
    let index: [u8; 4] = index.try_into().map_err(|_| malformed("plaintext length"))?;
    Ok(KeyFileContents {
        phrase: RecoveryPhrase::from_entropy(*entropy),
        key_index: u32::from_be_bytes(index),
    })
}

/// The 32-byte key Argon2id derives from the passphrase.
fn derive_key(
    passphrase: &str,
    salt: &[u8],
    params: KdfParams,
) -> Result<Zeroizing<[u8; 32]>, String> {
    let params =
        argon2::Params::new(params.memory_kib, params.iterations, params.parallelism, Some(32))
            .map_err(|e| e.to_string())?;
    let mut key = Zeroizing::new([0; 32]);
    argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
        .hash_password_into(passphrase.as_bytes(), salt, key.as_mut_slice())
        .map_err(|e| e.to_string())?;
    Ok(key)
}

/// Read first, to tell a newer format from a malformed file.
#[derive(Deserialize)]
struct VersionOnly {
    version: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileV1 {
    version: u64,
    kdf: Kdf,
    cipher: Cipher,
    nonce: String,
    ciphertext: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Kdf {
    algorithm: KdfAlgorithm,
    memory_kib: u32,
    iterations: u32,
    parallelism: u32,
    salt: String,
}

#[derive(Serialize, Deserialize)]
enum KdfAlgorithm {
    #[serde(rename = "argon2id")]
    Argon2id,
}

#[derive(Serialize, Deserialize)]
enum Cipher {
    #[serde(rename = "xchacha20-poly1305")]
    XChaCha20Poly1305,
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    /// Cheap parameters, so the tests do not spend seconds in Argon2.
    const FAST: KdfParams = KdfParams { memory_kib: 64, iterations: 1, parallelism: 1 };

    fn contents() -> KeyFileContents {
        KeyFileContents { phrase: RecoveryPhrase::from_entropy([7; 32]), key_index: 2 }
    }

    fn edit(file: &str, change: impl FnOnce(&mut Value)) -> String {
        let mut value: Value = serde_json::from_str(file).unwrap();
        change(&mut value);
        value.to_string()
    }

    #[test]
    fn round_trips_with_the_parameters_it_stores() {
        let file = seal("correct horse", &contents(), FAST).unwrap();
        assert_eq!(open("correct horse", &file), Ok(contents()));
        let value: Value = serde_json::from_str(&file).unwrap();
        assert_eq!(value["kdf"]["memory_kib"], 64);
        assert_eq!(value["kdf"]["algorithm"], "argon2id");
        assert!(!file.contains(&contents().phrase.words()[..20]));
        let again = seal("correct horse", &contents(), FAST).unwrap();
        assert_ne!(again, file, "a fresh salt and nonce every time");
    }

    #[test]
    fn a_wrong_passphrase_or_an_altered_file_does_not_open() {
        let file = seal("correct horse", &contents(), FAST).unwrap();
        assert_eq!(open("correct hose", &file), Err(KeyFileError::WrongPassphrase));
        let flipped = edit(&file, |value| {
            let mut bytes = base64url::decode(value["ciphertext"].as_str().unwrap()).unwrap();
            bytes[0] ^= 1;
            value["ciphertext"] = base64url::encode(bytes).into();
        });
        assert_eq!(open("correct horse", &flipped), Err(KeyFileError::WrongPassphrase));
        let cheaper = edit(&file, |value| value["kdf"]["iterations"] = 2.into());
        assert_eq!(open("correct horse", &cheaper), Err(KeyFileError::WrongPassphrase));
    }

    #[test]
    fn malformed_files_and_parameters_are_refused() {
        let file = seal("correct horse", &contents(), FAST).unwrap();
        let check = |file: &str, expected: fn(&KeyFileError) -> bool| {
            let result = open("correct horse", file);
            assert!(result.as_ref().is_err_and(expected), "{result:?}");
        };
        let is_malformed = |e: &KeyFileError| matches!(e, KeyFileError::Malformed(_));
        check("not json", is_malformed);
        check(&edit(&file, |v| v["cipher"] = "aes-256-gcm".into()), is_malformed);
        check(&edit(&file, |v| v["nonce"] = "AAAA".into()), is_malformed);
        check(&edit(&file, |v| v["kdf"]["memory_kib"] = (MAX_MEMORY_KIB + 1).into()), is_malformed);
        check(&edit(&file, |v| v["extra"] = 1.into()), is_malformed);
        check(&edit(&file, |v| v["version"] = 2.into()), |e| {
            *e == KeyFileError::UnsupportedVersion(2)
        });

        assert_eq!(seal("", &contents(), FAST), Err(KeyFileError::EmptyPassphrase));
        let too_big = KdfParams { memory_kib: MAX_MEMORY_KIB + 1, ..FAST };
        assert!(matches!(seal("x", &contents(), too_big), Err(KeyFileError::InvalidParams(_))));
        let no_lanes = KdfParams { parallelism: 0, ..FAST };
        assert!(matches!(seal("x", &contents(), no_lanes), Err(KeyFileError::InvalidParams(_))));
    }
}
