//! Server-to-server federation: discovery (`.well-known` and SRV), key fetching and caching,
//! the RFC 9421 request-signature profile applied to real HTTP, per-destination outbound
//! queues and the inbound pipeline (authenticate, verify, hand to the application through
//! traits the homeserver implements).
//!
//! The crate is built out by the federation-core work; the protocol rules it applies already
//! live, as pure functions, in `guildhall-spec`.
#![forbid(unsafe_code)]
