//! Integration tests of the federation plumbing against real network peers on loopback: a tiny
//! authoritative DNS server (SRV and A records) and HTTP servers for `.well-known` delegation;
//! and the trust-list vectors of the independent generator.

// A broken fixture should fail loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod discovery;
mod dns;
mod trust_list_vectors;
