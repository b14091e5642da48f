//! User identities and server key management: Ed25519 identity keys, BIP39 recovery phrases,
//! device certificates, login challenges and the server's own key store with rotation.
//!
//! No SQL and no HTTP live here. The crate is being built out by the identity work (spec
//! chapter 16); today it only fixes its place in the workspace.
#![forbid(unsafe_code)]
