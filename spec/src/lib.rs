//! The Guildhall federation protocol, version 1 (`guildhall-fed-v1`), as data and pure functions.
//!
//! This crate is sans-I/O: it owns the wire types, the canonical JSON profile, hashing, event
//! ids, origin and host signatures, the permission computation and the RFC 9421 request-signature
//! profile, and it never touches a socket, a clock or a disk. Callers pass in the time, the keys
//! they trust and the bytes they received. The normative text lives in `spec/docs/`; the test
//! vectors any implementation can use live in `spec/vectors/`.
#![forbid(unsafe_code)]

pub mod api;
pub mod base64url;
pub mod canonical;
pub mod content;
pub mod event;
pub mod ids;
pub mod permissions;
pub mod request_auth;
pub mod signing;
pub mod state;

pub use event::{ChainPosition, Envelope, EventError, JsonObject, Proposal, VerifiedEvent};
pub use ids::{
    ChannelId, DeviceId, EventId, GuildId, IdError, InviteCode, KeyId, MediaId, RoleId, ServerName,
    TxnId, UserId,
};
pub use permissions::Permissions;
pub use signing::{PublicKeyMap, ServerSigningKey, SignatureError};

/// The protocol version string, also the request-signature `tag`.
pub const PROTOCOL_VERSION: &str = "guildhall-fed-v1";
