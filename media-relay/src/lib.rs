//! Voice and media: LiveKit token brokering across servers, room lifecycle and webhooks, and
//! content-addressed media storage and remote fetch (spec chapters 18 and 19).
//!
//! * [`voice`] — LiveKit rooms of voice channels and the access tokens a host mints (18.1–18.2).
//!
//! Media storage is not built yet.
#![forbid(unsafe_code)]

pub mod voice;
