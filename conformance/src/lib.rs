//! The black-box conformance suite: it talks to a server under test only through the federation
//! API and the test-control API (spec chapter 21), acting as one or more peer servers of its
//! own. It depends on `guildhall-spec` (and `guildhall-identity` for keys), never on the
//! homeserver, so it judges our server exactly as it judges anyone else's.
//!
//! Built by the conformance work; this crate fixes its place and its dependency rule.
#![forbid(unsafe_code)]
