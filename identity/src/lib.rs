//! User identities and server key management: Ed25519 identity keys, BIP39 recovery phrases,
//! device certificates, login challenges and the server's own key store with rotation.
//!
//! No SQL and no HTTP live here. Today the crate holds the server key store, the recovery
//! phrase with the identity keys derived from it (spec 16.1) and attestations (16.2); device
//! certificates and login proofs come with the rest of the identity work.
#![forbid(unsafe_code)]

pub mod attestation;
pub mod phrase;
pub mod server_keys;
