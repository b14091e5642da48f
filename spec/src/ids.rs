//! Validated identifiers (spec chapter 02). Parse, don't validate: once a value has one of these
//! types it is well-formed, so the rest of the code never re-checks a string.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a string is not a valid identifier of the expected kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind}: {reason}")]
pub struct IdError {
    /// Which identifier kind was being parsed, e.g. `"user id"`.
    pub kind: &'static str,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// The longest any identifier may be, in bytes.
pub const MAX_ID_LENGTH: usize = 255;

fn fail<T>(kind: &'static str, reason: &'static str) -> Result<T, IdError> {
    Err(IdError { kind, reason })
}

/// Implements the string plumbing shared by every identifier type: `Display`, `FromStr`,
/// `AsRef<str>`, serde through the validating parser, and `as_str`.
macro_rules! string_id {
    ($name:ident) => {
        impl $name {
            /// The identifier as text, exactly as it appears on the wire.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $name {
            type Err = IdError;

            fn from_str(text: &str) -> Result<Self, IdError> {
                Self::parse(text)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = IdError;

            fn try_from(text: &str) -> Result<Self, IdError> {
                Self::parse(text)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                Self::parse(&text).map_err(serde::de::Error::custom)
            }
        }
    };
}

/// A server name: `host` or `host:port`, host being a DNS name, an IPv4 address or a bracketed
/// IPv6 address. Stored lowercase; two names are equal when they are equal ignoring case.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServerName(String);
string_id!(ServerName);

impl ServerName {
    /// Parses and lowercases a server name.
    pub fn parse(text: &str) -> Result<Self, IdError> {
        const KIND: &str = "server name";
        if text.is_empty() || text.len() > MAX_ID_LENGTH {
            return fail(KIND, "length must be 1..=255");
        }
        let (host, port) =
            split_host_port(text).ok_or(IdError { kind: KIND, reason: "bad port" })?;
        let host_is_valid = if let Some(inner) = host.strip_prefix('[') {
            inner.strip_suffix(']').is_some_and(|address| address.parse::<Ipv6Addr>().is_ok())
        } else {
            host.parse::<Ipv4Addr>().is_ok() || is_dns_name(host)
        };
        if !host_is_valid {
            return fail(KIND, "host must be a DNS name, an IPv4 address or [IPv6]");
        }
        if let Some(port) = port {
            match port.parse::<u16>() {
                Ok(number) if number > 0 && !port.starts_with('0') => {}
                _ => return fail(KIND, "port must be 1..=65535"),
            }
        }
        Ok(Self(text.to_ascii_lowercase()))
    }

    /// The host part, without port (IPv6 literals keep their brackets).
    pub fn host(&self) -> &str {
        split_host_port(&self.0).map_or(self.0.as_str(), |(host, _)| host)
    }

    /// The explicit port, if the name has one.
    pub fn port(&self) -> Option<u16> {
        split_host_port(&self.0)?.1?.parse().ok()
    }

    /// Whether the host is an IP literal (discovery connects to it directly).
    pub fn is_ip_literal(&self) -> bool {
        let host = self.host();
        host.starts_with('[') || host.parse::<Ipv4Addr>().is_ok()
    }
}

/// Splits `host[:port]`; `None` when a bracketed IPv6 literal is followed by junk.
fn split_host_port(text: &str) -> Option<(&str, Option<&str>)> {
    if text.starts_with('[') {
        let end = text.find(']')?;
        let (host, rest) = text.split_at(end + 1);
        return match rest {
            "" => Some((host, None)),
            _ => Some((host, Some(rest.strip_prefix(':')?))),
        };
    }
    match text.rsplit_once(':') {
        Some((host, port)) => Some((host, Some(port))),
        None => Some((text, None)),
    }
}

fn is_dns_name(host: &str) -> bool {
    host.len() <= 253
        && host.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// Splits `<sigil><local>:<server>` into the local part and the parsed server name.
fn split_sigil<'a>(
    text: &'a str,
    sigil: char,
    kind: &'static str,
) -> Result<(&'a str, ServerName), IdError> {
    if text.len() > MAX_ID_LENGTH {
        return fail(kind, "longer than 255 bytes");
    }
    let rest = text.strip_prefix(sigil).ok_or(IdError { kind, reason: "wrong sigil" })?;
    let (local, server) =
        rest.split_once(':').ok_or(IdError { kind, reason: "missing ':server_name'" })?;
    let server =
        ServerName::parse(server).map_err(|_| IdError { kind, reason: "bad server name" })?;
    Ok((local, server))
}

fn is_opaque(text: &str) -> bool {
    (1..=64).contains(&text.len())
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A user id, `@localpart:server_name`, localpart `[a-z0-9._=-]{1,64}`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UserId(String);
string_id!(UserId);

impl UserId {
    /// Parses a user id.
    pub fn parse(text: &str) -> Result<Self, IdError> {
        const KIND: &str = "user id";
        let (localpart, server) = split_sigil(text, '@', KIND)?;
        let localpart_is_valid = (1..=64).contains(&localpart.len())
            && localpart.bytes().all(|b| {
                b.is_ascii_lowercase()
                    || b.is_ascii_digit()
                    || matches!(b, b'.' | b'_' | b'=' | b'-')
            });
        if !localpart_is_valid {
            return fail(KIND, "localpart must match [a-z0-9._=-]{1,64}");
        }
        Ok(Self(format!("@{localpart}:{server}")))
    }

    /// Builds a user id from parts that are already valid.
    pub fn new(localpart: &str, server: &ServerName) -> Result<Self, IdError> {
        Self::parse(&format!("@{localpart}:{server}"))
    }

    /// The localpart, without sigil.
    pub fn localpart(&self) -> &str {
        // Invariant: parse() guarantees the form `@local:server` with no ':' in `local`.
        self.0[1..].split_once(':').map_or("", |(local, _)| local)
    }

    /// The user's home server.
    pub fn server_name(&self) -> ServerName {
        ServerName(self.server_str().to_owned())
    }

    /// The user's home server as text, without allocating.
    pub fn server_str(&self) -> &str {
        self.0[1..].split_once(':').map_or("", |(_, server)| server)
    }
}

/// A guild id, `!opaque:server_name`; the server name is the guild's host.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GuildId(String);
string_id!(GuildId);

impl GuildId {
    /// Parses a guild id.
    pub fn parse(text: &str) -> Result<Self, IdError> {
        const KIND: &str = "guild id";
        let (opaque, server) = split_sigil(text, '!', KIND)?;
        if !is_opaque(opaque) {
            return fail(KIND, "opaque part must match [A-Za-z0-9_-]{1,64}");
        }
        Ok(Self(format!("!{opaque}:{server}")))
    }

    /// Builds a guild id hosted on `host`.
    pub fn new(opaque: &str, host: &ServerName) -> Result<Self, IdError> {
        Self::parse(&format!("!{opaque}:{host}"))
    }

    /// The host server: the only server that sequences this guild's log.
    pub fn host(&self) -> ServerName {
        ServerName(self.0[1..].split_once(':').map_or("", |(_, server)| server).to_owned())
    }
}

/// An event id: `$` and the unpadded base64url SHA-256 of the event's canonical envelope.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventId(String);
string_id!(EventId);

impl EventId {
    /// Parses an event id.
    pub fn parse(text: &str) -> Result<Self, IdError> {
        let hash =
            text.strip_prefix('$').ok_or(IdError { kind: "event id", reason: "wrong sigil" })?;
        if crate::base64url::decode_array::<32>(hash).is_none() {
            return fail("event id", "must be '$' and 43 base64url characters");
        }
        Ok(Self(text.to_owned()))
    }

    /// The event id for a SHA-256 digest of a canonical envelope.
    pub fn from_sha256(digest: &[u8; 32]) -> Self {
        Self(format!("${}", crate::base64url::encode(digest)))
    }
}

/// A media id (spec 19.1): the unpadded base64url SHA-256 of the media's bytes, 43 characters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MediaId(String);
string_id!(MediaId);

impl MediaId {
    /// Parses a media id.
    pub fn parse(text: &str) -> Result<Self, IdError> {
        if crate::base64url::decode_array::<32>(text).is_none() {
            return fail("media id", "must be 43 base64url characters (a SHA-256 digest)");
        }
        Ok(Self(text.to_owned()))
    }

    /// The media id of bytes whose SHA-256 digest is `digest`.
    pub fn from_sha256(digest: &[u8; 32]) -> Self {
        Self(crate::base64url::encode(digest))
    }

    /// The SHA-256 digest the id names.
    pub fn digest(&self) -> [u8; 32] {
        crate::base64url::decode_array::<32>(&self.0).unwrap_or_default()
    }
}

/// A signing key id, `ed25519:<version>`, version `[A-Za-z0-9_]{1,32}`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyId(String);
string_id!(KeyId);

impl KeyId {
    /// Parses a key id.
    pub fn parse(text: &str) -> Result<Self, IdError> {
        let version_is_valid = text.strip_prefix("ed25519:").is_some_and(|version| {
            (1..=32).contains(&version.len())
                && version.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        });
        if !version_is_valid {
            return fail("key id", "must be ed25519:<[A-Za-z0-9_]{1,32}>");
        }
        Ok(Self(text.to_owned()))
    }

    /// The version part after `ed25519:`.
    pub fn version(&self) -> &str {
        &self.0["ed25519:".len()..]
    }
}

/// Declares an opaque host-assigned id type, `[A-Za-z0-9_-]{1,64}`.
macro_rules! opaque_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);
        string_id!($name);

        impl $name {
            /// Parses the id.
            pub fn parse(text: &str) -> Result<Self, IdError> {
                if !is_opaque(text) {
                    return fail($kind, "must match [A-Za-z0-9_-]{1,64}");
                }
                Ok(Self(text.to_owned()))
            }
        }
    };
}

opaque_id!(
    /// A channel id, assigned by the guild's host.
    ChannelId,
    "channel id"
);
opaque_id!(
    /// A role id, assigned by the guild's host; `everyone` names the @everyone role.
    RoleId,
    "role id"
);
opaque_id!(
    /// An invite code.
    InviteCode,
    "invite code"
);
/// A device id, chosen by the client that registers the device (unique per user),
/// `[A-Za-z0-9_]{1,32}`: it is also the version part of the device's key id `ed25519:<id>`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeviceId(String);
string_id!(DeviceId);

impl DeviceId {
    /// Parses the id.
    pub fn parse(text: &str) -> Result<Self, IdError> {
        let valid = (1..=32).contains(&text.len())
            && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !valid {
            return fail("device id", "must match [A-Za-z0-9_]{1,32}");
        }
        Ok(Self(text.to_owned()))
    }
}

impl RoleId {
    /// The id of the @everyone role, which every member has implicitly.
    pub fn everyone() -> Self {
        Self(EVERYONE_ROLE.to_owned())
    }

    /// Whether this is the @everyone role.
    pub fn is_everyone(&self) -> bool {
        self.0 == EVERYONE_ROLE
    }
}

/// The reserved id of the @everyone role.
pub const EVERYONE_ROLE: &str = "everyone";

/// A transaction id chosen by a sender, `[A-Za-z0-9._~-]{1,64}`; unique per sender.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TxnId(String);
string_id!(TxnId);

impl TxnId {
    /// Parses a transaction id.
    pub fn parse(text: &str) -> Result<Self, IdError> {
        let is_valid = (1..=64).contains(&text.len())
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-'));
        if !is_valid {
            return fail("transaction id", "must match [A-Za-z0-9._~-]{1,64}");
        }
        Ok(Self(text.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_ids_are_short_and_fit_a_key_id() {
        for valid in ["PHONE1", "a", "x_y", &"D".repeat(32)] {
            assert!(DeviceId::parse(valid).is_ok(), "{valid}");
        }
        for invalid in ["", "PHONE-1", "a:b", &"D".repeat(33)] {
            assert!(DeviceId::parse(invalid).is_err(), "{invalid}");
        }
    }

    #[test]
    fn server_names() {
        for valid in [
            "example.org",
            "Example.ORG",
            "127.0.0.1:8448",
            "[::1]:8448",
            "[::1]",
            "a-b.c",
            "localhost:1",
        ] {
            assert!(ServerName::parse(valid).is_ok(), "{valid}");
        }
        for invalid in [
            "",
            "ex ample",
            "example.org:0",
            "example.org:65536",
            "example.org:",
            "-a.org",
            "[::1",
            "[::1]x",
            "a..b",
            "a:b:c",
            "example.org:08",
        ] {
            assert!(ServerName::parse(invalid).is_err(), "{invalid}");
        }
        let name = ServerName::parse("Host.Example:8448").unwrap();
        assert_eq!(
            (name.as_str(), name.host(), name.port()),
            ("host.example:8448", "host.example", Some(8448))
        );
        assert!(ServerName::parse("[::1]:80").unwrap().is_ip_literal());
        assert!(!ServerName::parse("example.org").unwrap().is_ip_literal());
    }

    #[test]
    fn user_ids() {
        let user = UserId::parse("@alice:127.0.0.1:8448").unwrap();
        assert_eq!(user.localpart(), "alice");
        assert_eq!(user.server_name().as_str(), "127.0.0.1:8448");
        for invalid in
            ["alice:example.org", "@:example.org", "@Alice:example.org", "@alice", "@al ice:x.org"]
        {
            assert!(UserId::parse(invalid).is_err(), "{invalid}");
        }
    }

    #[test]
    fn guild_event_and_key_ids() {
        assert_eq!(
            GuildId::parse("!abc_D-1:host.example").unwrap().host().as_str(),
            "host.example"
        );
        assert!(GuildId::parse("!a.b:host.example").is_err());
        assert!(EventId::parse("$47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU").is_ok());
        assert!(EventId::parse("$47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuF").is_err());
        assert_eq!(KeyId::parse("ed25519:a1").unwrap().version(), "a1");
        assert!(KeyId::parse("rsa:a1").is_err());
        assert!(TxnId::parse("m1.2~x-y_z").is_ok());
        assert!(TxnId::parse("a/b").is_err());
    }

    #[test]
    fn serde_goes_through_the_parser() {
        let user: UserId = serde_json::from_str(r#""@bob:example.org""#).unwrap();
        assert_eq!(serde_json::to_string(&user).unwrap(), r#""@bob:example.org""#);
        assert!(serde_json::from_str::<UserId>(r#""bob""#).is_err());
    }
}
