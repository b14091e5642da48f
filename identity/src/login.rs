//! Login on another server (spec 16.4): the challenge a server issues and the proof a client
//! makes by signing it with the identity key.
//!
//! The signed object names the server being logged in to, so a proof made for one server is
//! worthless to any other, even one that saw it.

use std::fmt;

use guildhall_spec::{ServerName, UserId, base64url, canonical};
use serde::{Deserialize, Serialize};

use crate::key::{self, IdentityKeyPair};

/// How long a challenge may stay usable after it was issued, in milliseconds (at most).
pub const CHALLENGE_LIFETIME_MS: u64 = 5 * 60 * 1000;

/// A login challenge: 32 random bytes, unpadded base64url. A server stores the ones it issued
/// and accepts each once.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Challenge(String);

/// Why a login challenge or proof was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LoginError {
    /// The challenge is not base64url of 32 bytes.
    #[error("a challenge is base64url of 32 bytes")]
    InvalidChallenge,
    /// The identity key to check with is not a valid Ed25519 key.
    #[error("the identity key is not a valid Ed25519 key")]
    BadIdentityKey,
    /// The signature is malformed or does not verify over this server, user and challenge.
    #[error("the login proof does not verify")]
    BadProof,
}

impl Challenge {
    /// A fresh challenge from the operating system's CSPRNG.
    pub fn generate() -> Self {
        Self(base64url::encode(rand::random::<[u8; 32]>()))
    }

    /// Parses a challenge as sent on the wire.
    pub fn parse(text: &str) -> Result<Self, LoginError> {
        match base64url::decode_array::<32>(text) {
            Some(_) => Ok(Self(text.to_owned())),
            None => Err(LoginError::InvalidChallenge),
        }
    }

    /// The challenge as sent on the wire.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Challenge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Challenge {
    type Error = LoginError;

    fn try_from(text: String) -> Result<Self, LoginError> {
        Self::parse(&text)
    }
}

impl From<Challenge> for String {
    fn from(challenge: Challenge) -> Self {
        challenge.0
    }
}

/// The login proof (base64url signature) for logging in to `server` as `user_id`, answering
/// `challenge`.
pub fn sign(
    identity: &IdentityKeyPair,
    server: &ServerName,
    user_id: &UserId,
    challenge: &Challenge,
) -> String {
    base64url::encode(identity.sign(&login_bytes(server, user_id, challenge)))
}

/// Checks a login proof on `server`, the server verifying it: `signature` must be the identity
/// key's signature over the login object naming `server`, `user_id` and `challenge`.
/// `identity_key` is the usable key of the user's current attestation (checked beforehand,
/// spec 16.4 step 3).
pub fn verify(
    server: &ServerName,
    user_id: &UserId,
    challenge: &Challenge,
    signature: &str,
    identity_key: &str,
) -> Result<(), LoginError> {
    let identity_key = key::parse_public_key(identity_key).ok_or(LoginError::BadIdentityKey)?;
    let signature = base64url::decode_array::<64>(signature).ok_or(LoginError::BadProof)?;
    let message = login_bytes(server, user_id, challenge);
    if key::is_valid_signature(&identity_key, &message, &signature) {
        Ok(())
    } else {
        Err(LoginError::BadProof)
    }
}

/// The login object, `{"type": "guildhall.login.v1", "server", "user_id", "challenge"}`.
#[derive(Serialize)]
#[serde(tag = "type", rename = "guildhall.login.v1")]
struct LoginObject<'a> {
    server: &'a ServerName,
    user_id: &'a UserId,
    challenge: &'a Challenge,
}

/// The canonical bytes of the login object, which the proof signs.
fn login_bytes(server: &ServerName, user_id: &UserId, challenge: &Challenge) -> Vec<u8> {
    // The object holds only strings, and every string has a canonical form.
    #[allow(clippy::expect_used)]
    canonical::to_canonical_bytes(&LoginObject { server, user_id, challenge })
        .expect("strings only")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::phrase::RecoveryPhrase;
    use crate::vectors;

    fn identity(index: u32) -> IdentityKeyPair {
        IdentityKeyPair::from_phrase(&RecoveryPhrase::from_entropy([0; 32]), index)
    }

    fn server(name: &str) -> ServerName {
        ServerName::parse(name).unwrap()
    }

    /// The worked example of spec 16.4, with key 0 of spec 16.1's phrase.
    #[test]
    fn the_spec_example_holds() {
        let other = server("other.example");
        let bob = UserId::parse("@bob:origin.example").unwrap();
        let challenge = Challenge::parse("hN3k9QwZr2Tb7yLx0cVp5mA8sD1fG4jK6uE-oI_tR3w").unwrap();
        assert_eq!(
            String::from_utf8(login_bytes(&other, &bob, &challenge)).unwrap(),
            r#"{"challenge":"hN3k9QwZr2Tb7yLx0cVp5mA8sD1fG4jK6uE-oI_tR3w","server":"other.example","type":"guildhall.login.v1","user_id":"@bob:origin.example"}"#
        );
        let proof = sign(&identity(0), &other, &bob, &challenge);
        assert_eq!(
            proof,
            "aE21iTw2gfPYWfRTlYPNdxDyDfTvpodv-4qu9SDYKW5anRdlzZmj0NF0GA1mQJpcD2IsnAJ7v8jiBzfL9FxjCQ"
        );
        let key = identity(0).public_base64url();
        assert_eq!(verify(&other, &bob, &challenge, &proof, &key), Ok(()));
    }

    #[test]
    fn a_proof_is_bound_to_server_user_challenge_and_key() {
        let (a, b) = (server("a.example"), server("b.example"));
        let bob = UserId::parse("@bob:origin.example").unwrap();
        let challenge = Challenge::generate();
        let proof = sign(&identity(0), &a, &bob, &challenge);
        let key = identity(0).public_base64url();
        assert_eq!(verify(&a, &bob, &challenge, &proof, &key), Ok(()));
        assert_eq!(verify(&b, &bob, &challenge, &proof, &key), Err(LoginError::BadProof));
        let eve = UserId::parse("@eve:origin.example").unwrap();
        assert_eq!(verify(&a, &eve, &challenge, &proof, &key), Err(LoginError::BadProof));
        let fresh = Challenge::generate();
        assert_ne!(fresh, challenge);
        assert_eq!(verify(&a, &bob, &fresh, &proof, &key), Err(LoginError::BadProof));
        let other_key = identity(1).public_base64url();
        assert_eq!(verify(&a, &bob, &challenge, &proof, &other_key), Err(LoginError::BadProof));
        assert_eq!(verify(&a, &bob, &challenge, "AAAA", &key), Err(LoginError::BadProof));
        assert_eq!(verify(&a, &bob, &challenge, &proof, "AAAA"), Err(LoginError::BadIdentityKey));
    }

    #[test]
    fn challenges_are_32_bytes_of_base64url() {
        let challenge = Challenge::generate();
        assert_eq!(Challenge::parse(challenge.as_str()), Ok(challenge.clone()));
        let json = serde_json::to_string(&challenge).unwrap();
        assert_eq!(serde_json::from_str::<Challenge>(&json).unwrap(), challenge);
        assert_eq!(Challenge::parse("AAAA"), Err(LoginError::InvalidChallenge));
        let padded = format!("{challenge}=");
        assert_eq!(Challenge::parse(&padded), Err(LoginError::InvalidChallenge));
        assert!(serde_json::from_str::<Challenge>("\"AAAA\"").is_err());
    }

    /// `spec/vectors/identity.json`, `login_proofs`: made and judged by the independent generator.
    #[test]
    fn login_proof_vectors() {
        for case in vectors::identity()["login_proofs"]["cases"].as_array().unwrap() {
            let text = |name: &str| case[name].as_str().unwrap();
            let result = verify(
                &server(text("server")),
                &UserId::parse(text("user_id")).unwrap(),
                &Challenge::parse(text("challenge")).unwrap(),
                text("signature"),
                text("identity_key"),
            );
            let reason = result.err().map(|error| match error {
                LoginError::InvalidChallenge => "invalid_challenge",
                LoginError::BadIdentityKey => "bad_identity_key",
                LoginError::BadProof => "bad_proof",
            });
            vectors::check_verdict(case, reason);
        }
    }
}
