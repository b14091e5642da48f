//! User identities and server key management: Ed25519 identity keys, BIP39 recovery phrases,
//! device certificates, login challenges and the server's own key store with rotation.
//!
//! No SQL and no HTTP live here. Today the crate holds the server key store; user identities
//! (spec chapter 16) are built by the identity work.
#![forbid(unsafe_code)]

pub mod server_keys;
