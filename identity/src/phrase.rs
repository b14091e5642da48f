//! The recovery phrase and the identity keys derived from it (spec 16.1).
//!
//! A 24-word BIP39 phrase (256 bits of entropy) gives a 64-byte BIP39 seed; identity keys are
//! derived from that seed with SLIP-0010 for Ed25519 along the hardened path
//! `m / 7337' / 0' / index'`. Index 0 is a user's first identity key; a rotation takes the next
//! index, so one phrase recovers every key the user has had, and recovery finds the current one
//! by trying indices in order.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha512;
use zeroize::Zeroize as _;

/// The hardened path components before the key index (spec 16.1).
pub const IDENTITY_PATH: [u32; 2] = [7337, 0];

/// A BIP39 recovery phrase of 24 English words.
#[derive(Clone, PartialEq, Eq)]
pub struct RecoveryPhrase(bip39::Mnemonic);

/// Why a phrase was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PhraseError {
    /// Not 24 words.
    #[error("a recovery phrase has 24 words, not {0}")]
    WordCount(usize),
    /// A word outside the BIP39 English list, or a checksum that does not match.
    #[error("not a valid recovery phrase: {0}")]
    Invalid(String),
}

impl RecoveryPhrase {
    /// A new phrase from 32 bytes of entropy drawn from the operating system's CSPRNG.
    pub fn generate() -> Self {
        Self::from_entropy(rand::random::<[u8; 32]>())
    }

    /// The phrase for 32 bytes of entropy.
    pub fn from_entropy(entropy: [u8; 32]) -> Self {
        // 32 bytes is a valid BIP39 entropy length, so this cannot fail.
        #[allow(clippy::expect_used)]
        Self(bip39::Mnemonic::from_entropy(&entropy).expect("256 bits is a BIP39 length"))
    }

    /// Parses 24 words separated by whitespace, checking every word and the checksum.
    pub fn parse(text: &str) -> Result<Self, PhraseError> {
        let words: Vec<&str> = text.split_whitespace().collect();
        if words.len() != 24 {
            return Err(PhraseError::WordCount(words.len()));
        }
        let normalized = words.join(" ").to_lowercase();
        bip39::Mnemonic::parse_in_normalized(bip39::Language::English, &normalized)
            .map(Self)
            .map_err(|e| PhraseError::Invalid(e.to_string()))
    }

    /// The 32 bytes of entropy the phrase encodes (what [`Self::from_entropy`] takes).
    pub fn entropy(&self) -> [u8; 32] {
        let (mut bytes, _) = self.0.to_entropy_array();
        let mut entropy = [0; 32];
        entropy.copy_from_slice(&bytes[..32]);
        bytes.zeroize();
        entropy
    }

    /// The 24 words, joined by single spaces.
    pub fn words(&self) -> String {
        self.0.words().collect::<Vec<_>>().join(" ")
    }

    /// The 64-byte BIP39 seed (empty passphrase, as spec 16.1 fixes).
    pub fn seed(&self) -> [u8; 64] {
        self.seed_with("")
    }

    fn seed_with(&self, passphrase: &str) -> [u8; 64] {
        self.0.to_seed_normalized(passphrase)
    }

    /// The secret (RFC 8032 private key) of identity key number `index`, which spec 16.1 keeps
    /// below 2^31 (a hardened index; a larger one derives the same key as `index - 2^31`).
    pub fn identity_secret(&self, index: u32) -> [u8; 32] {
        let path = [IDENTITY_PATH[0], IDENTITY_PATH[1], index];
        slip10_ed25519(&self.seed(), &path).0
    }

    /// Identity key number `index` (the public key others see), base64url as on the wire.
    pub fn identity_key(&self, index: u32) -> String {
        let secret = ed25519_dalek::SigningKey::from_bytes(&self.identity_secret(index));
        guildhall_spec::base64url::encode(secret.verifying_key().as_bytes())
    }
}

impl std::fmt::Debug for RecoveryPhrase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The words are the user's whole identity: never in logs.
        f.write_str("RecoveryPhrase(..)")
    }
}

/// SLIP-0010 derivation for Ed25519: the private key and chain code at `path`, every component
/// hardened (Ed25519 has no other kind). Returns `(key, chain_code)`.
pub fn slip10_ed25519(seed: &[u8], path: &[u32]) -> ([u8; 32], [u8; 32]) {
    let (mut key, mut chain) = split(hmac_sha512(b"ed25519 seed", &[seed]));
    for index in path {
        let hardened = (index | 0x8000_0000).to_be_bytes();
        (key, chain) = split(hmac_sha512(&chain, &[&[0], &key, &hardened]));
    }
    (key, chain)
}

fn hmac_sha512(key: &[u8], parts: &[&[u8]]) -> [u8; 64] {
    // HMAC takes keys of any length.
    #[allow(clippy::expect_used)]
    let mut mac = <Hmac<Sha512> as KeyInit>::new_from_slice(key).expect("any key length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

fn split(bytes: [u8; 64]) -> ([u8; 32], [u8; 32]) {
    let mut left = [0; 32];
    let mut right = [0; 32];
    left.copy_from_slice(&bytes[..32]);
    right.copy_from_slice(&bytes[32..]);
    (left, right)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// SLIP-0010, "Test vector 1 for ed25519".
    #[test]
    fn slip10_test_vector_1() {
        let seed = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];
        let check = |path: &[u32], chain: &str, key: &str| {
            let (k, c) = slip10_ed25519(&seed, path);
            assert_eq!((hex(&c).as_str(), hex(&k).as_str()), (chain, key), "{path:?}");
        };
        check(
            &[],
            "90046a93de5380a72b5e45010748567d5ea02bbf6522f979e05c0d8d8ca9fffb",
            "2b4be7f19ee27bbf30c667b642d5f4aa69fd169872f8fc3059c08ebae2eb19e7",
        );
        check(
            &[0],
            "8b59aa11380b624e81507a27fedda59fea6d0b779a778918a2fd3590e16e9c69",
            "68e0fe46dfb67e368c75379acec591dad19df3cde26e63b93a8e704f1dade7a3",
        );
        check(
            &[0, 1],
            "a320425f77d1b5c2505a6b1b27382b37368ee640e3557c315416801243552f14",
            "b1d0bad404bf35da785a64ca1ac54b2617211d2777696fbffaf208f746ae84f2",
        );
    }

    /// The official BIP39 vectors (trezor python-mnemonic, vendored with its licence beside
    /// it), passphrase "TREZOR": every 24-word English case.
    #[test]
    fn bip39_trezor_vectors() {
        let vectors: serde_json::Value =
            serde_json::from_str(include_str!("../tests/data/bip39-trezor-vectors.json")).unwrap();
        let mut checked = 0;
        for case in vectors["english"].as_array().unwrap() {
            let [entropy, words, seed, _] = &case.as_array().unwrap()[..] else { panic!("shape") };
            let entropy = entropy.as_str().unwrap();
            if entropy.len() != 64 {
                continue;
            }
            let bytes: Vec<u8> = (0..32)
                .map(|i| u8::from_str_radix(&entropy[2 * i..2 * i + 2], 16).unwrap())
                .collect();
            let phrase = RecoveryPhrase::from_entropy(bytes.try_into().unwrap());
            assert_eq!(phrase.words(), words.as_str().unwrap());
            assert_eq!(RecoveryPhrase::parse(words.as_str().unwrap()).unwrap(), phrase);
            assert_eq!(hex(&phrase.seed_with("TREZOR")), seed.as_str().unwrap());
            checked += 1;
        }
        assert_eq!(checked, 8, "the 24-word English vectors");
    }

    /// `spec/vectors/identity.json`, written by the independent Python generator (BIP39 by
    /// trezor's reference implementation).
    #[test]
    fn identity_vectors() {
        let vectors: serde_json::Value =
            serde_json::from_str(include_str!("../../spec/vectors/identity.json")).unwrap();
        for case in vectors["cases"].as_array().unwrap() {
            let phrase = RecoveryPhrase::parse(case["phrase"].as_str().unwrap()).unwrap();
            assert_eq!(hex(&phrase.seed()), case["seed"].as_str().unwrap(), "{}", case["name"]);
            assert_eq!(hex(&phrase.entropy()), case["entropy"].as_str().unwrap());
            for key in case["keys"].as_array().unwrap() {
                let index = u32::try_from(key["index"].as_u64().unwrap()).unwrap();
                assert_eq!(hex(&phrase.identity_secret(index)), key["secret"].as_str().unwrap());
                assert_eq!(phrase.identity_key(index), key["identity_key"].as_str().unwrap());
            }
        }
        for case in vectors["invalid"].as_array().unwrap() {
            assert!(RecoveryPhrase::parse(case["phrase"].as_str().unwrap()).is_err(), "{case}");
        }
    }

    #[test]
    fn phrases_are_checked_and_round_trip() {
        let phrase = RecoveryPhrase::generate();
        assert_eq!(RecoveryPhrase::parse(&phrase.words()).unwrap(), phrase);
        assert_eq!(RecoveryPhrase::parse("abandon ability"), Err(PhraseError::WordCount(2)));
        let wrong_checksum = ["abandon"; 24].join(" ");
        assert!(matches!(RecoveryPhrase::parse(&wrong_checksum), Err(PhraseError::Invalid(_))));
        assert_eq!(RecoveryPhrase::from_entropy(phrase.entropy()), phrase);
        assert_ne!(phrase.identity_secret(0), phrase.identity_secret(1), "a rotation is a new key");
        assert_eq!(format!("{phrase:?}"), "RecoveryPhrase(..)");
    }
}
