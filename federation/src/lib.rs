//! Server-to-server plumbing: discovery (`.well-known` delegation and DNS SRV), key fetching and
//! caching, signing outgoing requests and authenticating incoming ones with the
//! `guildhall-fed-v1` RFC 9421 profile, and the operator's trust policy.
//!
//! The protocol rules themselves (canonical JSON, signatures, the request-signature profile) are
//! pure functions in `guildhall-spec`; this crate adds the I/O around them. It knows no SQL:
//! replication state lives in the homeserver.
#![forbid(unsafe_code)]

pub mod client;
pub mod discovery;
pub mod inbound;
pub mod keys;
pub mod policy;
pub mod trust_list;

pub use client::{FederationClient, FederationError, Response};
pub use discovery::{Destination, DiscoveryError, Resolver, ResolverSettings};
pub use inbound::InboundAuth;
pub use keys::KeyFetcher;
pub use policy::{TrustMode, TrustPolicy};

/// Unix time in seconds.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// Unix time in milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
}

/// Reads a response body, giving up as soon as it exceeds `cap` bytes: a peer cannot make us
/// buffer more than we accept.
pub async fn read_capped(
    mut response: reqwest::Response,
    cap: usize,
) -> Result<Vec<u8>, BodyError> {
    if response.content_length().is_some_and(|length| length > cap as u64) {
        return Err(BodyError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| BodyError::Network(e.to_string()))? {
        if body.len() + chunk.len() > cap {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Why a response body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// It was larger than allowed.
    #[error("response body too large")]
    TooLarge,
    /// Reading failed.
    #[error("reading the response: {0}")]
    Network(String),
}
