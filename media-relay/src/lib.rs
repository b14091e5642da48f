//! Voice and media: LiveKit token brokering across servers, room lifecycle and webhooks, and
//! content-addressed media storage and remote fetch (spec chapters 18 and 19).
//!
//! Not yet built; this crate fixes its place in the dependency graph.
#![forbid(unsafe_code)]
