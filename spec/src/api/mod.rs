//! Wire types of the federation endpoints, one module per endpoint (spec chapters 04–21).
//!
//! Each endpoint type implements [`Endpoint`], which fixes its method, path template and
//! authentication, so that no path string is written twice in the workspace.
//!
//! Request and response bodies ignore members they do not know, so that a newer peer can add
//! some without breaking an older one (signed objects are verified as received, unknown
//! members included).

pub mod ephemeral;
pub mod get_content;
pub mod get_events;
pub mod get_invite;
pub mod get_server_keys;
pub mod get_state;
pub mod join_guild;
pub mod moderate_voice;
pub mod query_keys;
pub mod send_transaction;
pub mod submit_event;

use serde::{Deserialize, Serialize};

/// How a request to an endpoint is authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// Anyone may call it (key documents).
    None,
    /// An RFC 9421 `guildhall-fed-v1` signature by the calling server.
    ServerSignature,
}

/// A federation endpoint.
pub trait Endpoint {
    /// The HTTP method.
    const METHOD: &'static str;
    /// The path template; `{name}` marks a percent-encoded path parameter.
    const PATH: &'static str;
    /// The authentication the endpoint requires.
    const AUTH: Auth;
}

/// The body of every error response: `{"code": "...", "message": "..."}` (spec chapter 20).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// A stable snake_case code.
    pub code: String,
    /// A human-readable explanation; never parse it.
    pub message: String,
}

impl ErrorBody {
    /// Builds an error body.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self { code: code.into(), message: message.into() }
    }
}

/// Fills a path template: replaces each `{name}` with the percent-encoded value, in order.
pub fn fill_path(template: &str, values: &[&str]) -> String {
    let mut path = String::with_capacity(template.len() + 32);
    let mut values = values.iter();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        path.push_str(&rest[..start]);
        let end = rest[start..].find('}').map_or(rest.len(), |offset| start + offset + 1);
        if let Some(value) = values.next() {
            percent_encode_into(value, &mut path);
        }
        rest = &rest[end..];
    }
    path.push_str(rest);
    path
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub fn percent_encode_into(value: &str, out: &mut String) {
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_and_encodes_path_parameters() {
        assert_eq!(
            fill_path(join_guild::JoinGuild::PATH, &["!g1:host.example:8448"]),
            "/_guildhall/v1/guilds/%21g1%3Ahost.example%3A8448/join"
        );
        assert_eq!(fill_path("/a/{x}/b/{y}", &["1", "2 3"]), "/a/1/b/2%203");
    }
}
