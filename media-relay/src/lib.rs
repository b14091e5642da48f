//! Voice and media: LiveKit token brokering across servers, room lifecycle and webhooks, and
//! content-addressed media storage (spec chapters 18 and 19).
//!
//! * [`voice`] — LiveKit rooms of voice channels and the access tokens a host mints (18.1–18.2).
//! * [`media`] — uploads made ready to store (sniffed, stripped, thumbnailed, scanned), byte
//!   ranges, and the object store media live in (19).
//! * [`room_service`] — the host's calls to its LiveKit's RoomService: removing participants and
//!   changing what they may publish or hear (18.3, 18.5).
#![forbid(unsafe_code)]

pub mod media;
pub mod room_service;
pub mod voice;
