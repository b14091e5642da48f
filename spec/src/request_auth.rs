//! The `guildhall-fed-v1` profile of RFC 9421 HTTP Message Signatures (spec chapter 05).
//!
//! The `httpsig` crate does the RFC 9421 mechanics (structured-field parsing, component values,
//! the signature base); this module pins the profile on top: one signature labelled `gh`, a
//! fixed component list, the six parameters each exactly once (in any order: RFC 9421 leaves
//! the order to the signer, and the signature base carries them as sent), bounded validity,
//! destination binding and RFC 9530 Content-Digest. Everything is pure: the caller supplies the time, the names it
//! answers to and the keys, and keeps the nonce cache.
//!
//! Verification is split so that I/O can happen in between:
//! [`check_request`] does every stateless check and yields a [`CheckedRequest`]; the caller then
//! applies its trust policy to [`CheckedRequest::origin`], looks up (or fetches) the key,
//! calls [`CheckedRequest::verify`], and finally records the nonce.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use httpsig::prelude::message_component::{
    DerivedComponentName, HttpMessageComponent, HttpMessageComponentId, HttpMessageComponentName,
};
use httpsig::prelude::{HttpSignatureHeaders, HttpSignatureParams};
use sfv::{BareItem, FieldType as _, ListEntry};
use sha2::{Digest, Sha256};

use crate::ids::{KeyId, ServerName};
use crate::signing::{self, PublicKeyMap, ServerSigningKey};

/// The profile's `tag` parameter.
pub const TAG: &str = "guildhall-fed-v1";
/// The signature label.
pub const LABEL: &str = "gh";
/// The only algorithm.
pub const ALGORITHM: &str = "ed25519";
/// The longest allowed `expires − created`, in seconds.
pub const MAX_VALIDITY_SECS: u64 = 300;
/// How far in the future `created` may be, in seconds (clock skew).
pub const MAX_CLOCK_SKEW_SECS: u64 = 60;
/// The validity our own signer uses.
pub const DEFAULT_VALIDITY_SECS: u64 = 60;

/// The parameters a signature carries, each exactly once. Signers send them in this order;
/// receivers accept any order.
pub const PARAMETERS: [&str; 6] = ["created", "expires", "nonce", "alg", "keyid", "tag"];

const BASE_COMPONENTS: [&str; 4] = ["@method", "@authority", "@path", "@query"];
const DIGEST_COMPONENT: &str = "content-digest";

/// An HTTP request as far as signatures are concerned.
#[derive(Debug, Clone, Copy)]
pub struct HttpRequest<'a> {
    /// The method, e.g. `PUT`.
    pub method: &'a str,
    /// The authority the request is sent to (after delegation), `host[:port]`.
    pub authority: &'a str,
    /// The absolute path, without query.
    pub path: &'a str,
    /// The raw query string without `?`, if any.
    pub query: Option<&'a str>,
    /// Header fields, names in any case, possibly repeated.
    pub headers: &'a [(&'a str, &'a str)],
    /// The body; empty for requests without one.
    pub body: &'a [u8],
}

impl HttpRequest<'_> {
    fn header_values(&self, name: &str) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(field, _)| field.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.trim().to_owned())
            .collect()
    }

    fn header(&self, name: &str) -> Option<String> {
        let values = self.header_values(name);
        (!values.is_empty()).then(|| values.join(", "))
    }

    fn query_component(&self) -> String {
        format!("?{}", self.query.unwrap_or(""))
    }

    fn path_component(&self) -> &str {
        if self.path.is_empty() { "/" } else { self.path }
    }
}

/// The headers a signed request carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureHeaders {
    /// `Signature-Input`.
    pub signature_input: String,
    /// `Signature`.
    pub signature: String,
    /// `Content-Digest`, for requests with a body.
    pub content_digest: Option<String>,
}

/// Why a request's signature was rejected. Every variant maps to a stable code and status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestAuthError {
    /// No `Signature`/`Signature-Input`, or no `gh` label.
    #[error("missing request signature")]
    MissingSignature,
    /// The headers or parameters do not parse or do not follow the profile's form.
    #[error("malformed request signature: {0}")]
    MalformedSignature(String),
    /// `tag` is not `guildhall-fed-v1`.
    #[error("signature tag is not {TAG}")]
    WrongTag,
    /// The covered components are not exactly the profile's list.
    #[error("signature covers the wrong components")]
    WrongComponents,
    /// `expires − created` exceeds 300 s.
    #[error("signature validity exceeds {MAX_VALIDITY_SECS} s")]
    ValidityTooLong,
    /// `created` is more than 60 s ahead of our clock.
    #[error("signature created in the future")]
    CreatedInFuture,
    /// `expires` has passed.
    #[error("signature expired")]
    SignatureExpired,
    /// The request was addressed to another server.
    #[error("request authority {0:?} is not this server")]
    WrongAuthority(String),
    /// The request has a body but no Content-Digest.
    #[error("missing Content-Digest")]
    MissingContentDigest,
    /// Content-Digest does not match the body.
    #[error("Content-Digest does not match the body")]
    BadContentDigest,
    /// The trust policy denies the origin server.
    #[error("server {0} is denied")]
    ServerDenied(ServerName),
    /// The verifier does not know the key.
    #[error("unknown key {key_id} of {origin}")]
    UnknownKey {
        /// The signing server.
        origin: ServerName,
        /// The key it claims.
        key_id: KeyId,
    },
    /// The signature does not verify.
    #[error("request signature does not verify")]
    BadSignature,
    /// The nonce was already used within the validity window.
    #[error("replayed nonce")]
    ReplayedNonce,
}

impl RequestAuthError {
    /// The stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingSignature => "missing_signature",
            Self::MalformedSignature(_) => "malformed_signature",
            Self::WrongTag => "wrong_tag",
            Self::WrongComponents => "wrong_components",
            Self::ValidityTooLong => "validity_too_long",
            Self::CreatedInFuture => "created_in_future",
            Self::SignatureExpired => "signature_expired",
            Self::WrongAuthority(_) => "wrong_authority",
            Self::MissingContentDigest => "missing_content_digest",
            Self::BadContentDigest => "bad_content_digest",
            Self::ServerDenied(_) => "server_denied",
            Self::UnknownKey { .. } => "unknown_key",
            Self::BadSignature => "bad_signature",
            Self::ReplayedNonce => "replayed_nonce",
        }
    }

    /// The HTTP status: 403 when the origin is denied, 401 otherwise.
    pub fn status(&self) -> u16 {
        if matches!(self, Self::ServerDenied(_)) { 403 } else { 401 }
    }
}

/// The `Content-Digest` value for a body: `sha-256=:<base64>:`.
pub fn content_digest(body: &[u8]) -> String {
    format!("sha-256=:{}:", STANDARD.encode(Sha256::digest(body)))
}

/// Signs a request as `key`'s server. `created` is the current Unix time in seconds and
/// `nonce` a fresh random base64url string of 16 to 64 characters.
pub fn sign_request(
    request: &HttpRequest<'_>,
    key: &ServerSigningKey,
    created: u64,
    nonce: &str,
) -> Result<SignatureHeaders, RequestAuthError> {
    let content_digest = (!request.body.is_empty()).then(|| content_digest(request.body));
    let mut params = HttpSignatureParams::try_new(&component_ids(!request.body.is_empty())?)
        .map_err(malformed)?;
    params
        .set_created(created)
        .set_expires(created + DEFAULT_VALIDITY_SECS)
        .set_nonce(nonce)
        .set_keyid(&format!("{}#{}", key.server_name(), key.key_id()))
        .set_tag(TAG);
    params.alg = Some(ALGORITHM.to_owned());
    // httpsig prints the parameters in the documented order of PARAMETERS.
    let signature_params = params.to_string();
    let base = signature_base(
        request,
        content_digest.as_deref(),
        &params.covered_components,
        &signature_params,
    )?;
    let signature = key.sign_bytes(&base);
    Ok(SignatureHeaders {
        signature_input: format!("{LABEL}={signature_params}"),
        signature: format!("{LABEL}=:{}:", STANDARD.encode(signature)),
        content_digest,
    })
}

/// A request whose stateless checks passed; its signature is still to be verified.
#[derive(Debug, Clone)]
pub struct CheckedRequest {
    origin: ServerName,
    key_id: KeyId,
    nonce: String,
    expires: u64,
    signature_base: Vec<u8>,
    signature: ed25519_dalek::Signature,
}

impl CheckedRequest {
    /// The server named in `keyid`: the request's origin once the signature verifies.
    pub fn origin(&self) -> &ServerName {
        &self.origin
    }

    /// The key the signature claims.
    pub fn key_id(&self) -> &KeyId {
        &self.key_id
    }

    /// The nonce, to record in the replay cache until [`CheckedRequest::expires`].
    pub fn nonce(&self) -> &str {
        &self.nonce
    }

    /// When the signature expires (Unix seconds): the nonce must be remembered until then.
    pub fn expires(&self) -> u64 {
        self.expires
    }

    /// Verifies the signature with the origin's public key.
    pub fn verify(&self, key: &ed25519_dalek::VerifyingKey) -> Result<(), RequestAuthError> {
        if signing::verify_ed25519(key, &self.signature_base, &self.signature) {
            Ok(())
        } else {
            Err(RequestAuthError::BadSignature)
        }
    }

    /// Verifies with a key map; [`RequestAuthError::UnknownKey`] tells the caller to fetch keys.
    pub fn verify_with(&self, keys: &PublicKeyMap) -> Result<(), RequestAuthError> {
        let key =
            keys.get(&self.origin, &self.key_id).ok_or_else(|| RequestAuthError::UnknownKey {
                origin: self.origin.clone(),
                key_id: self.key_id.clone(),
            })?;
        self.verify(key)
    }
}

/// Every stateless check of the profile, in the spec's order. `now` is Unix seconds;
/// `authorities` are the names this server answers to.
pub fn check_request(
    request: &HttpRequest<'_>,
    now: u64,
    authorities: &[&str],
) -> Result<CheckedRequest, RequestAuthError> {
    let (Some(signature), Some(signature_input)) =
        (request.header("signature"), request.header("signature-input"))
    else {
        return Err(RequestAuthError::MissingSignature);
    };
    let parsed =
        HttpSignatureHeaders::try_parse(&signature, &signature_input).map_err(malformed)?;
    let Some(headers) = parsed.get(LABEL) else {
        return Err(RequestAuthError::MissingSignature);
    };
    if parsed.len() != 1 {
        return Err(RequestAuthError::MalformedSignature(
            "exactly one signature is allowed".into(),
        ));
    }
    let params = headers.signature_params();
    let signature_params = received_signature_params(&signature_input)?;
    if params.tag.as_deref() != Some(TAG) {
        return Err(RequestAuthError::WrongTag);
    }
    if params.alg.as_deref() != Some(ALGORITHM) {
        return Err(RequestAuthError::MalformedSignature("alg must be ed25519".into()));
    }
    let has_body = !request.body.is_empty();
    let covered: Vec<String> = params.covered_components.iter().map(ToString::to_string).collect();
    let expected: Vec<String> = component_ids(has_body)?.iter().map(ToString::to_string).collect();
    if covered != expected {
        return Err(RequestAuthError::WrongComponents);
    }
    let (Some(created), Some(expires)) = (params.created, params.expires) else {
        return Err(RequestAuthError::MalformedSignature(
            "created and expires are required".into(),
        ));
    };
    if expires <= created {
        return Err(RequestAuthError::MalformedSignature("expires must be after created".into()));
    }
    if expires - created > MAX_VALIDITY_SECS {
        return Err(RequestAuthError::ValidityTooLong);
    }
    if created > now + MAX_CLOCK_SKEW_SECS {
        return Err(RequestAuthError::CreatedInFuture);
    }
    if now > expires {
        return Err(RequestAuthError::SignatureExpired);
    }
    let nonce = params.nonce.clone().unwrap_or_default();
    let nonce_is_valid = (16..=64).contains(&nonce.len())
        && nonce.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !nonce_is_valid {
        return Err(RequestAuthError::MalformedSignature(
            "nonce must be 16..=64 base64url characters".into(),
        ));
    }
    let (origin, key_id) = parse_keyid(params.keyid.as_deref().unwrap_or_default())?;
    if !authorities.iter().any(|name| name.eq_ignore_ascii_case(request.authority)) {
        return Err(RequestAuthError::WrongAuthority(request.authority.to_owned()));
    }
    let content_digest = if has_body {
        let header =
            request.header(DIGEST_COMPONENT).ok_or(RequestAuthError::MissingContentDigest)?;
        check_content_digest(&header, request.body)?;
        Some(header)
    } else {
        None
    };
    let signature: [u8; 64] = headers
        .signature()
        .to_string()
        .parse::<SignatureText>()
        .map_err(|()| RequestAuthError::MalformedSignature("signature must be 64 bytes".into()))?
        .0;
    let base = signature_base(
        request,
        content_digest.as_deref(),
        &params.covered_components,
        signature_params,
    )?;
    Ok(CheckedRequest {
        origin,
        key_id,
        nonce,
        expires,
        signature_base: base,
        signature: ed25519_dalek::Signature::from_bytes(&signature),
    })
}

/// Verifies a signature of any RFC 9421 shape over the given label with one key, without the
/// profile's checks. Used for the RFC's own test vectors (Appendix B.2.6).
pub fn verify_rfc9421(
    request: &HttpRequest<'_>,
    label: &str,
    key: &ed25519_dalek::VerifyingKey,
) -> Result<(), RequestAuthError> {
    let (Some(signature), Some(signature_input)) =
        (request.header("signature"), request.header("signature-input"))
    else {
        return Err(RequestAuthError::MissingSignature);
    };
    let parsed =
        HttpSignatureHeaders::try_parse(&signature, &signature_input).map_err(malformed)?;
    let headers = parsed.get(label).ok_or(RequestAuthError::MissingSignature)?;
    // RFC 9421 §2.3: the value of `@signature-params` is the RFC 8941 serialization of the
    // member, with its parameters in the order the signer chose.
    let dictionary: sfv::Dictionary = sfv::Parser::new(&signature_input)
        .parse()
        .map_err(|e| RequestAuthError::MalformedSignature(e.to_string()))?;
    let member = dictionary.get(label).ok_or(RequestAuthError::MissingSignature)?;
    let signature_params = serialize_member(label, member)?;
    let base = signature_base(
        request,
        None,
        &headers.signature_params().covered_components,
        &signature_params[label.len() + 1..],
    )?;
    let signature = headers
        .signature()
        .to_string()
        .parse::<SignatureText>()
        .map_err(|()| RequestAuthError::BadSignature)?;
    if signing::verify_ed25519(key, &base, &ed25519_dalek::Signature::from_bytes(&signature.0)) {
        Ok(())
    } else {
        Err(RequestAuthError::BadSignature)
    }
}

/// A standard-base64 Ed25519 signature as httpsig prints it.
struct SignatureText([u8; 64]);

impl std::str::FromStr for SignatureText {
    type Err = ();
    fn from_str(text: &str) -> Result<Self, ()> {
        let bytes = STANDARD.decode(text).map_err(|_| ())?;
        Ok(Self(bytes.try_into().map_err(|_| ())?))
    }
}

fn component_ids(has_body: bool) -> Result<Vec<HttpMessageComponentId>, RequestAuthError> {
    let names = BASE_COMPONENTS.iter().copied().chain(has_body.then_some(DIGEST_COMPONENT));
    names
        .map(|name| {
            HttpMessageComponentId::try_from(format!("\"{name}\"").as_str()).map_err(malformed)
        })
        .collect()
}

/// Checks the form of `Signature-Input` (§5.4 check 5) and returns the `gh` member's value as
/// received, which is the `@signature-params` line of the signature base.
///
/// The header must be exactly the RFC 8941 serialization of one `gh` member: no optional
/// whitespace, strings where strings belong, no parameter other than [`PARAMETERS`] and none
/// twice, in any order. RFC 8941 parsers keep only the last of a repeated parameter, so a
/// repetition (or a repeated label) never survives the comparison with the serialization.
/// An absent parameter is not a matter of form: the check of its value reports it.
fn received_signature_params(signature_input: &str) -> Result<&str, RequestAuthError> {
    let signature_input = signature_input.trim();
    let form = |detail: &str| RequestAuthError::MalformedSignature(detail.to_owned());
    let dictionary: sfv::Dictionary = sfv::Parser::new(signature_input)
        .parse()
        .map_err(|e| RequestAuthError::MalformedSignature(e.to_string()))?;
    let member = dictionary.get(LABEL).ok_or(RequestAuthError::MissingSignature)?;
    let ListEntry::InnerList(inner) = member else {
        return Err(form("the gh member must be an inner list"));
    };
    for (name, value) in &inner.params {
        let well_typed = match name.as_str() {
            "created" | "expires" => matches!(value, BareItem::Integer(_)),
            "nonce" | "alg" | "keyid" | "tag" => matches!(value, BareItem::String(_)),
            unknown => return Err(form(&format!("unknown signature parameter {unknown:?}"))),
        };
        if !well_typed {
            return Err(form(&format!("signature parameter {name} has the wrong type")));
        }
    }
    if dictionary.len() != 1 || serialize_member(LABEL, member)? != signature_input {
        return Err(form(
            "Signature-Input must be the RFC 8941 serialization of one gh member, \
             each parameter once, without optional whitespace",
        ));
    }
    Ok(&signature_input[LABEL.len() + 1..])
}

/// `label=` followed by the RFC 8941 serialization of one dictionary member.
fn serialize_member(label: &str, member: &ListEntry) -> Result<String, RequestAuthError> {
    let mut dictionary = sfv::Dictionary::new();
    let key = sfv::Key::from_string(label.to_owned())
        .map_err(|(e, _)| RequestAuthError::MalformedSignature(e.to_string()))?;
    dictionary.insert(key, member.clone());
    dictionary
        .serialize()
        .ok_or_else(|| RequestAuthError::MalformedSignature("empty signature member".into()))
}

/// The RFC 9421 §2.5 signature base: one line per covered component, then the
/// `@signature-params` line with `signature_params` exactly as sent, with no trailing newline.
fn signature_base(
    request: &HttpRequest<'_>,
    content_digest: Option<&str>,
    covered: &[HttpMessageComponentId],
    signature_params: &str,
) -> Result<Vec<u8>, RequestAuthError> {
    let mut base = String::new();
    for id in covered {
        base.push_str(&component(request, content_digest, id)?.to_string());
        base.push('\n');
    }
    base.push_str("\"@signature-params\": ");
    base.push_str(signature_params);
    Ok(base.into_bytes())
}

/// The value of one covered component. `content_digest` overrides the header when signing.
fn component(
    request: &HttpRequest<'_>,
    content_digest: Option<&str>,
    id: &HttpMessageComponentId,
) -> Result<HttpMessageComponent, RequestAuthError> {
    let values = match &id.name {
        HttpMessageComponentName::Derived(derived) => vec![match derived {
            DerivedComponentName::Method => request.method.to_owned(),
            DerivedComponentName::Authority => request.authority.to_ascii_lowercase(),
            DerivedComponentName::Path => request.path_component().to_owned(),
            DerivedComponentName::Query => request.query_component(),
            _ => return Err(RequestAuthError::WrongComponents),
        }],
        HttpMessageComponentName::HttpField(name) => match (name.as_str(), content_digest) {
            (DIGEST_COMPONENT, Some(digest)) => vec![digest.to_owned()],
            _ => {
                let values = request.header_values(name);
                if values.is_empty() {
                    return Err(RequestAuthError::MalformedSignature(format!(
                        "covered header {name} is absent"
                    )));
                }
                values
            }
        },
    };
    HttpMessageComponent::try_from((id, values.as_slice())).map_err(malformed)
}

fn parse_keyid(keyid: &str) -> Result<(ServerName, KeyId), RequestAuthError> {
    let (server, key) = keyid.rsplit_once('#').ok_or_else(|| {
        RequestAuthError::MalformedSignature("keyid must be <server>#<key id>".into())
    })?;
    let server = ServerName::parse(server)
        .map_err(|e| RequestAuthError::MalformedSignature(e.to_string()))?;
    let key = KeyId::parse(key).map_err(|e| RequestAuthError::MalformedSignature(e.to_string()))?;
    Ok((server, key))
}

/// Checks an RFC 9530 `Content-Digest` dictionary: its `sha-256` member must match the body.
fn check_content_digest(header: &str, body: &[u8]) -> Result<(), RequestAuthError> {
    let expected = Sha256::digest(body);
    let sha256 = header
        .split(',')
        .filter_map(|member| member.trim().strip_prefix("sha-256="))
        .next()
        .and_then(|value| value.strip_prefix(':')?.strip_suffix(':'))
        .and_then(|encoded| STANDARD.decode(encoded).ok())
        .ok_or(RequestAuthError::BadContentDigest)?;
    if sha256.as_slice() == expected.as_slice() {
        Ok(())
    } else {
        Err(RequestAuthError::BadContentDigest)
    }
}

fn malformed(error: httpsig::prelude::HttpSigError) -> RequestAuthError {
    RequestAuthError::MalformedSignature(error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> ServerSigningKey {
        ServerSigningKey::from_seed(
            ServerName::parse("origin.example").unwrap(),
            KeyId::parse("ed25519:k1").unwrap(),
            &[3; 32],
        )
    }

    const NONCE: &str = "AAAAAAAAAAAAAAAAAAAAAA";

    fn signed(body: &[u8], created: u64) -> Vec<(String, String)> {
        let request = HttpRequest {
            method: "PUT",
            authority: "host.example",
            path: "/_guildhall/v1/send/t1",
            query: None,
            headers: &[],
            body,
        };
        let headers = sign_request(&request, &key(), created, NONCE).unwrap();
        let mut list = vec![
            ("Signature-Input".to_owned(), headers.signature_input),
            ("Signature".to_owned(), headers.signature),
        ];
        if let Some(digest) = headers.content_digest {
            list.push(("Content-Digest".to_owned(), digest));
        }
        list
    }

    fn check(headers: &[(String, String)], body: &[u8], now: u64) -> Result<(), RequestAuthError> {
        let headers: Vec<(&str, &str)> =
            headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        let request = HttpRequest {
            method: "PUT",
            authority: "Host.Example",
            path: "/_guildhall/v1/send/t1",
            query: None,
            headers: &headers,
            body,
        };
        let checked = check_request(&request, now, &["host.example"])?;
        assert_eq!(checked.origin().as_str(), "origin.example");
        checked.verify(&key().verifying_key())
    }

    #[test]
    fn signs_and_verifies_with_and_without_body() {
        assert_eq!(check(&signed(b"{}", 1000), b"{}", 1010), Ok(()));
        assert_eq!(check(&signed(b"", 1000), b"", 1000), Ok(()));
    }

    #[test]
    fn enforces_time_and_body() {
        assert_eq!(
            check(&signed(b"{}", 1000), b"{}", 1061),
            Err(RequestAuthError::SignatureExpired)
        );
        assert_eq!(check(&signed(b"{}", 1000), b"{}", 900), Err(RequestAuthError::CreatedInFuture));
        assert_eq!(
            check(&signed(b"{}", 1000), b"{ }", 1000),
            Err(RequestAuthError::BadContentDigest)
        );
        assert_eq!(check(&signed(b"", 1000), b"{}", 1000), Err(RequestAuthError::WrongComponents));
    }

    #[test]
    fn signature_input_has_the_profile_form() {
        let headers = signed(b"{}", 1000);
        assert_eq!(
            headers[0].1,
            format!(
                "gh=(\"@method\" \"@authority\" \"@path\" \"@query\" \"content-digest\");created=1000;expires=1060;nonce=\"{NONCE}\";alg=\"ed25519\";keyid=\"origin.example#ed25519:k1\";tag=\"guildhall-fed-v1\""
            )
        );
    }
}
