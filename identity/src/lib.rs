//! User identities and server key management (spec chapter 16, and the server's own keys of
//! chapter 04). No SQL and no HTTP live here: every function takes what it needs and returns
//! what it found, so the home server, a client and a test run the same code.
//!
//! * [`phrase`] — the 24-word recovery phrase and the identity keys derived from it (16.1).
//! * [`key`] — the identity key pair and signatures filed under a user id.
//! * [`attestation`] — the home server's binding of a user to an identity key, or its
//!   revocation (16.2).
//! * [`device`] — device certificates, signed by the identity and by the device (16.3).
//! * [`e2e`] — signed one-time keys, device-list hashes and the shape of Olm messages (17).
//! * [`login`] — login challenges and proofs for another server (16.4).
//! * [`moves`] — account moves between home servers (16.5).
//! * [`rotation`] — identity key rotation statements and recovery from the phrase (16.6).
//! * [`keyfile`] — the client's passphrase-encrypted local identity file.
//! * [`server_keys`] — the server's own signing keys on disk, with rotation.
#![forbid(unsafe_code)]

pub mod attestation;
pub mod device;
pub mod e2e;
pub mod key;
pub mod keyfile;
pub mod login;
pub mod moves;
pub mod phrase;
pub mod rotation;
pub mod server_keys;

#[cfg(test)]
mod vectors;
