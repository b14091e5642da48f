//! Guild events: envelopes, content hashes, event ids, origin and host signatures
//! (spec chapter 06).
//!
//! An event travels as a JSON object. Verification works on that object exactly as received
//! (after the strict canonical-JSON parse), never on a re-serialized typed copy, so fields this
//! version does not know are still covered by the hashes and signatures.
//!
//! The life of an event:
//! 1. the origin server builds a [`Proposal`] and signs it ([`Proposal::sign`]);
//! 2. the host checks it ([`verify_proposal`]), assigns `seq` and `prev` and signs the full
//!    envelope ([`sequence`]);
//! 3. every replica checks the result ([`verify_event`]) before applying it in order.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::base64url;
use crate::canonical::{self, CanonicalJsonError};
use crate::ids::{EventId, GuildId, ServerName, TxnId, UserId};
use crate::signing::{self, PublicKeyMap, ServerSigningKey, SignatureError};

/// The most bytes `JCS(event)` may have, `unsigned` excluded (spec chapter 01, §1.6).
pub const MAX_EVENT_BYTES: usize = 65_536;
/// The most bytes `JCS(content)` may have (spec chapter 01, §1.6).
pub const MAX_CONTENT_BYTES: usize = 60_000;

/// Members that are never part of the envelope.
const NON_ENVELOPE: [&str; 3] = ["content", "signatures", "unsigned"];
/// Members the host adds when sequencing; the origin's signature does not cover them.
const SEQUENCING: [&str; 2] = ["seq", "prev"];

/// A JSON object, the representation of an event on the wire.
pub type JsonObject = Map<String, Value>;

/// `base64url(SHA-256(JCS(content)))`.
pub fn content_hash(content: &JsonObject) -> Result<String, CanonicalJsonError> {
    let canonical = canonical::to_canonical_string(&Value::Object(content.clone()))?;
    Ok(base64url::encode(Sha256::digest(canonical.as_bytes())))
}

/// The event id: `$` + `base64url(SHA-256(JCS(envelope)))`.
pub fn event_id(event: &JsonObject) -> Result<EventId, CanonicalJsonError> {
    let envelope = signing::signing_bytes(event, &["content"])?;
    Ok(EventId::from_sha256(&Sha256::digest(&envelope).into()))
}

/// The canonical bytes the origin signs: the envelope without `seq` and `prev`.
pub fn proposal_signing_bytes(event: &JsonObject) -> Result<Vec<u8>, CanonicalJsonError> {
    let mut excluded = vec!["content"];
    excluded.extend(SEQUENCING);
    signing::signing_bytes(event, &excluded)
}

/// The canonical bytes the host signs: the full envelope.
pub fn envelope_signing_bytes(event: &JsonObject) -> Result<Vec<u8>, CanonicalJsonError> {
    signing::signing_bytes(event, &["content"])
}

/// The envelope of an event: the event without `content`, `signatures` and `unsigned`.
pub fn envelope(event: &JsonObject) -> JsonObject {
    let mut envelope = event.clone();
    for name in NON_ENVELOPE {
        envelope.remove(name);
    }
    envelope
}

/// What an origin server proposes to a guild's host: an event before sequencing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Proposal {
    /// The guild the event belongs to.
    pub guild_id: GuildId,
    /// The event type, e.g. `message.create`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The user on whose behalf the event is proposed.
    pub sender: UserId,
    /// The sender's home server, which signs the proposal.
    pub origin: ServerName,
    /// When the origin created the proposal, in ms since the epoch.
    pub origin_ts: u64,
    /// Unique per sender; the host answers a repeat with the event it already sequenced.
    pub txn_id: TxnId,
    /// The type-specific body.
    pub content: JsonObject,
}

impl Proposal {
    /// Builds the proposal's JSON object with its content hash, unsigned.
    pub fn to_object(&self) -> Result<JsonObject, CanonicalJsonError> {
        let Value::Object(mut object) = serde_json::to_value(self)
            .map_err(|e| CanonicalJsonError::InvalidJson(e.to_string()))?
        else {
            return Err(CanonicalJsonError::InvalidJson("proposal is not an object".into()));
        };
        object.insert("content_hash".into(), Value::String(content_hash(&self.content)?));
        Ok(object)
    }

    /// Builds and signs the proposal as its origin server. A proposal that originates on the
    /// guild's host is not signed here: [`sequence`] signs it once for both roles.
    pub fn sign(&self, origin_key: &ServerSigningKey) -> Result<JsonObject, CanonicalJsonError> {
        let mut object = self.to_object()?;
        if self.origin != self.guild_id.host() {
            let message = proposal_signing_bytes(&object)?;
            signing::add_signature(&mut object, origin_key, &message);
        }
        Ok(object)
    }
}

/// Turns a checked proposal into a sequenced event: sets `seq` and `prev` and adds the host's
/// signature over the full envelope. Returns the event and its id.
///
/// When the origin is the host itself, the host's signature object holds only this signature,
/// which stands for both roles.
pub fn sequence(
    mut proposal: JsonObject,
    seq: u64,
    prev: Option<&EventId>,
    host_key: &ServerSigningKey,
) -> Result<(EventId, JsonObject), CanonicalJsonError> {
    proposal.remove("unsigned");
    proposal.insert("seq".into(), Value::from(seq));
    match prev {
        Some(prev) => proposal.insert("prev".into(), Value::String(prev.to_string())),
        None => proposal.remove("prev"),
    };
    if let Some(Value::Object(signatures)) = proposal.get_mut("signatures") {
        signatures.remove(host_key.server_name().as_str());
    }
    let message = envelope_signing_bytes(&proposal)?;
    signing::add_signature(&mut proposal, host_key, &message);
    Ok((event_id(&proposal)?, proposal))
}

/// The typed envelope fields every event has. Unknown members are tolerated (and covered by the
/// signatures, because verification runs over the object itself).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// The guild.
    pub guild_id: GuildId,
    /// Position in the guild's log, from 1; absent on proposals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// Id of the event at `seq - 1`; absent at seq 1 and on proposals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev: Option<EventId>,
    /// The event type.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The user the event is from.
    pub sender: UserId,
    /// The sender's server.
    pub origin: ServerName,
    /// Origin timestamp, ms since the epoch.
    pub origin_ts: u64,
    /// The sender's transaction id.
    pub txn_id: TxnId,
    /// `base64url(SHA-256(JCS(content)))`.
    pub content_hash: String,
}

/// An event whose hashes and signatures have been checked.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedEvent {
    /// The event id, computed from the envelope.
    pub event_id: EventId,
    /// The typed envelope.
    pub envelope: Envelope,
    /// The content, when present (absent when withheld or erased).
    pub content: Option<JsonObject>,
    /// The whole event exactly as received.
    pub object: JsonObject,
}

impl VerifiedEvent {
    /// The last step of [`verify_event`] on its own: the event's place in the chain, for a
    /// receiver that checked its signatures before it knew its head (and so verified it as
    /// [`ChainPosition::Unchecked`]).
    pub fn check_position(&self, position: ChainPosition<'_>) -> Result<(), EventError> {
        let ChainPosition::Follows(expected_prev) = position else { return Ok(()) };
        let seq = self.envelope.seq.ok_or_else(|| EventError::Malformed("missing seq".into()))?;
        check_chain(&self.envelope, seq, expected_prev)
    }
}

/// Why an event or proposal was rejected. [`EventError::code`] gives the stable reason code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// Not an object, a required member missing or ill-typed, or no canonical form.
    #[error("malformed event: {0}")]
    Malformed(String),
    /// `origin` is not the server part of `sender`.
    #[error("origin {origin} is not the server of sender {sender}")]
    OriginMismatch {
        /// The claimed origin.
        origin: ServerName,
        /// The sender.
        sender: UserId,
    },
    /// The content does not hash to `content_hash`.
    #[error("content does not match content_hash")]
    ContentHashMismatch,
    /// The origin did not sign.
    #[error("missing origin signature")]
    MissingOriginSignature,
    /// The origin's signature does not verify.
    #[error("bad origin signature")]
    BadOriginSignature,
    /// The host did not sign.
    #[error("missing host signature")]
    MissingHostSignature,
    /// The host's signature does not verify.
    #[error("bad host signature")]
    BadHostSignature,
    /// A required server signed only with keys the verifier does not know; fetch its keys.
    #[error("no signature by {0} with a known key")]
    UnknownKey(ServerName),
    /// `seq`/`prev` do not continue the receiver's log.
    #[error("event does not continue the chain: {0}")]
    BrokenChain(String),
}

impl EventError {
    /// The stable reason code (spec chapter 06, test vectors, error bodies).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed",
            Self::OriginMismatch { .. } => "origin_mismatch",
            Self::ContentHashMismatch => "content_hash_mismatch",
            Self::MissingOriginSignature => "missing_origin_signature",
            Self::BadOriginSignature => "bad_origin_signature",
            Self::MissingHostSignature => "missing_host_signature",
            Self::BadHostSignature => "bad_host_signature",
            Self::UnknownKey(_) => "unknown_key",
            Self::BrokenChain(_) => "broken_chain",
        }
    }
}

/// What the receiver already holds, to check that an event continues its log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainPosition<'a> {
    /// Do not check the chain (e.g. a proposal, or an event fetched only to read its content).
    Unchecked,
    /// The receiver holds the guild up to `seq - 1`, whose event id is given (`None` for seq 1).
    Follows(Option<&'a EventId>),
}

/// Verifies a sequenced event, in the order and with the reason codes of spec chapter 06.
pub fn verify_event(
    event: &JsonObject,
    keys: &PublicKeyMap,
    position: ChainPosition<'_>,
) -> Result<VerifiedEvent, EventError> {
    let (envelope, content) = parse_parts(event)?;
    let seq = envelope.seq.ok_or_else(|| EventError::Malformed("missing seq".into()))?;
    if seq == 0 {
        return Err(EventError::Malformed("seq starts at 1".into()));
    }
    check_origin_and_content(&envelope, content.as_ref())?;
    check_signers(event, &envelope)?;

    let host = envelope.guild_id.host();
    if envelope.origin != host {
        let message = proposal_signing_bytes(event).map_err(malformed)?;
        signing::verify_signatures(event, &envelope.origin, keys, &message).map_err(|error| {
            signature_error(
                error,
                EventError::MissingOriginSignature,
                EventError::BadOriginSignature,
            )
        })?;
    }
    let message = envelope_signing_bytes(event).map_err(malformed)?;
    signing::verify_signatures(event, &host, keys, &message).map_err(|error| {
        signature_error(error, EventError::MissingHostSignature, EventError::BadHostSignature)
    })?;

    if let ChainPosition::Follows(expected_prev) = position {
        check_chain(&envelope, seq, expected_prev)?;
    }
    let event_id = event_id(event).map_err(malformed)?;
    Ok(VerifiedEvent { event_id, envelope, content, object: event.clone() })
}

/// Verifies a proposal as the host receives it: no `seq`/`prev`, content present, and (unless
/// the origin is the host itself) a valid origin signature.
pub fn verify_proposal(
    proposal: &JsonObject,
    keys: &PublicKeyMap,
) -> Result<(Envelope, JsonObject), EventError> {
    let (envelope, content) = parse_parts(proposal)?;
    if envelope.seq.is_some() || envelope.prev.is_some() {
        return Err(EventError::Malformed("a proposal has no seq or prev".into()));
    }
    let content =
        content.ok_or_else(|| EventError::Malformed("a proposal needs content".into()))?;
    check_origin_and_content(&envelope, Some(&content))?;
    check_signers(proposal, &envelope)?;
    if proposal.contains_key("unsigned") {
        return Err(EventError::Malformed("a proposal carries no unsigned data".into()));
    }
    if envelope.origin != envelope.guild_id.host() {
        let message = proposal_signing_bytes(proposal).map_err(malformed)?;
        signing::verify_signatures(proposal, &envelope.origin, keys, &message).map_err(
            |error| {
                signature_error(
                    error,
                    EventError::MissingOriginSignature,
                    EventError::BadOriginSignature,
                )
            },
        )?;
    }
    Ok((envelope, content))
}

/// The members an event may have; anything else is `malformed` (spec chapter 06).
const KNOWN_MEMBERS: [&str; 12] = [
    "guild_id",
    "seq",
    "prev",
    "type",
    "sender",
    "origin",
    "origin_ts",
    "txn_id",
    "content_hash",
    "content",
    "signatures",
    "unsigned",
];

fn parse_parts(event: &JsonObject) -> Result<(Envelope, Option<JsonObject>), EventError> {
    if let Some(unknown) = event.keys().find(|name| !KNOWN_MEMBERS.contains(&name.as_str())) {
        return Err(EventError::Malformed(format!("unknown member {unknown:?}")));
    }
    let envelope: Envelope = serde_json::from_value(Value::Object(envelope(event)))
        .map_err(|e| EventError::Malformed(e.to_string()))?;
    if !is_event_type(&envelope.event_type) {
        return Err(EventError::Malformed(format!("bad event type {:?}", envelope.event_type)));
    }
    if base64url::decode_array::<32>(&envelope.content_hash).is_none() {
        return Err(EventError::Malformed("content_hash is not a base64url SHA-256".into()));
    }
    if event.get("prev").is_some_and(Value::is_null) {
        return Err(EventError::Malformed("prev must be absent, not null".into()));
    }
    let content = match event.get("content") {
        None => None,
        Some(Value::Object(content)) => Some(content.clone()),
        Some(_) => return Err(EventError::Malformed("content must be an object".into())),
    };
    // Canonicalizing also enforces the number profile on every member. `unsigned` is per copy
    // and covered by no signature, so it does not count towards the size limit: a server's
    // annotation cannot push a valid event over it.
    let mut counted = event.clone();
    let unsigned = counted.remove("unsigned");
    let event_bytes = canonical::to_canonical_string(&Value::Object(counted)).map_err(malformed)?;
    if event_bytes.len() > MAX_EVENT_BYTES {
        return Err(EventError::Malformed(format!(
            "the event is {} bytes in canonical form, more than {MAX_EVENT_BYTES}",
            event_bytes.len()
        )));
    }
    if let Some(unsigned) = unsigned {
        canonical::to_canonical_string(&unsigned).map_err(malformed)?;
    }
    if let Some(content) = &content {
        let content_bytes = canonical::to_canonical_string(&Value::Object(content.clone()))
            .map_err(malformed)?
            .len();
        if content_bytes > MAX_CONTENT_BYTES {
            return Err(EventError::Malformed(format!(
                "the content is {content_bytes} bytes in canonical form, more than {MAX_CONTENT_BYTES}"
            )));
        }
    }
    Ok((envelope, content))
}

fn check_origin_and_content(
    envelope: &Envelope,
    content: Option<&JsonObject>,
) -> Result<(), EventError> {
    if envelope.sender.server_name() != envelope.origin {
        return Err(EventError::OriginMismatch {
            origin: envelope.origin.clone(),
            sender: envelope.sender.clone(),
        });
    }
    if let Some(content) = content
        && content_hash(content).map_err(malformed)? != envelope.content_hash
    {
        return Err(EventError::ContentHashMismatch);
    }
    Ok(())
}

/// Only the origin and the host may sign an event.
fn check_signers(event: &JsonObject, envelope: &Envelope) -> Result<(), EventError> {
    let Some(Value::Object(signatures)) = event.get("signatures") else { return Ok(()) };
    let host = envelope.guild_id.host();
    let allowed = |name: &str| {
        name.eq_ignore_ascii_case(envelope.origin.as_str())
            || name.eq_ignore_ascii_case(host.as_str())
    };
    match signatures.keys().find(|name| !allowed(name)) {
        Some(stranger) => {
            Err(EventError::Malformed(format!("signature by {stranger}, neither origin nor host")))
        }
        None => Ok(()),
    }
}

fn check_chain(
    envelope: &Envelope,
    seq: u64,
    expected_prev: Option<&EventId>,
) -> Result<(), EventError> {
    match (seq, &envelope.prev, expected_prev) {
        (1, None, None) if envelope.event_type == "guild.create" => Ok(()),
        (1, _, _) => Err(EventError::BrokenChain("seq 1 must be guild.create without prev".into())),
        (_, Some(prev), Some(expected)) if prev == expected => Ok(()),
        (_, prev, expected) => Err(EventError::BrokenChain(format!(
            "prev {prev:?} does not match the receiver's event {expected:?} at seq {}",
            seq - 1
        ))),
    }
}

fn signature_error(error: SignatureError, missing: EventError, bad: EventError) -> EventError {
    match error {
        SignatureError::Missing(_) => missing,
        SignatureError::UnknownKey(server) => EventError::UnknownKey(server),
        SignatureError::Canonical(error) => malformed(error),
        SignatureError::Invalid { .. }
        | SignatureError::Malformed
        | SignatureError::InvalidPublicKey => bad,
    }
}

fn malformed(error: CanonicalJsonError) -> EventError {
    EventError::Malformed(error.to_string())
}

/// Event types are dotted lowercase names with at least one dot:
/// `[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+`, at most 64 bytes.
pub fn is_event_type(name: &str) -> bool {
    name.len() <= 64
        && name.contains('.')
        && name.split('.').all(|part| {
            part.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
                && part.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::KeyId;

    fn key(server: &str, seed: u8) -> ServerSigningKey {
        ServerSigningKey::from_seed(
            ServerName::parse(server).unwrap(),
            KeyId::parse("ed25519:t1").unwrap(),
            &[seed; 32],
        )
    }

    fn trusted(keys: &[&ServerSigningKey]) -> PublicKeyMap {
        let mut map = PublicKeyMap::new();
        for key in keys {
            map.insert(key.server_name().clone(), key.key_id().clone(), key.verifying_key());
        }
        map
    }

    fn proposal(guild: &str, sender: &str, event_type: &str, content: Value) -> Proposal {
        let sender = UserId::parse(sender).unwrap();
        Proposal {
            guild_id: GuildId::parse(guild).unwrap(),
            event_type: event_type.into(),
            origin: sender.server_name(),
            sender,
            origin_ts: 1_700_000_000_000,
            txn_id: TxnId::parse("t1").unwrap(),
            content: content.as_object().unwrap().clone(),
        }
    }

    #[test]
    fn a_remote_proposal_round_trips_through_the_host() {
        let host = key("host.example", 1);
        let origin = key("origin.example", 2);
        let keys = trusted(&[&host, &origin]);

        let (create_id, create) = sequence(
            proposal(
                "!g:host.example",
                "@owner:host.example",
                "guild.create",
                serde_json::json!({"name": "g"}),
            )
            .sign(&host)
            .unwrap(),
            1,
            None,
            &host,
        )
        .unwrap();
        verify_event(&create, &keys, ChainPosition::Follows(None)).unwrap();

        let signed = proposal(
            "!g:host.example",
            "@bob:origin.example",
            "message.create",
            serde_json::json!({"body": "hi"}),
        )
        .sign(&origin)
        .unwrap();
        verify_proposal(&signed, &keys).unwrap();
        let (id, event) = sequence(signed, 2, Some(&create_id), &host).unwrap();
        let verified =
            verify_event(&event, &keys, ChainPosition::Follows(Some(&create_id))).unwrap();
        assert_eq!(verified.event_id, id);

        // Erasing the content keeps the envelope, the id and both signatures valid.
        let mut erased = event.clone();
        erased.remove("content");
        let verified =
            verify_event(&erased, &keys, ChainPosition::Follows(Some(&create_id))).unwrap();
        assert_eq!((verified.event_id, verified.content), (id, None));
    }

    #[test]
    fn the_host_cannot_forge_a_remote_users_event() {
        let host = key("host.example", 1);
        let origin = key("origin.example", 2);
        let forged = proposal(
            "!g:host.example",
            "@bob:origin.example",
            "message.create",
            serde_json::json!({"body": "x"}),
        )
        .to_object()
        .unwrap();
        let (_, event) = sequence(forged, 2, None, &host).unwrap();
        let error = verify_event(&event, &trusted(&[&host, &origin]), ChainPosition::Unchecked)
            .unwrap_err();
        assert_eq!(error.code(), "missing_origin_signature");
    }

    /// A remote `message.create` proposal whose content is exactly `content_bytes` long in
    /// canonical form.
    fn sized_proposal(content_bytes: usize) -> Proposal {
        let overhead = r#"{"body":"","channel_id":"general"}"#.len();
        let body = "x".repeat(content_bytes - overhead);
        let content = serde_json::json!({"channel_id": "general", "body": body});
        let proposal =
            proposal("!g:host.example", "@bob:origin.example", "message.create", content);
        assert_eq!(content_hash_input_len(&proposal.content), content_bytes);
        proposal
    }

    fn content_hash_input_len(content: &JsonObject) -> usize {
        canonical::to_canonical_string(&Value::Object(content.clone())).unwrap().len()
    }

    fn signed_len(event: &JsonObject) -> usize {
        let mut signed = event.clone();
        signed.remove("unsigned");
        canonical::to_canonical_string(&Value::Object(signed)).unwrap().len()
    }

    #[test]
    fn content_over_60000_bytes_is_malformed() {
        let host = key("host.example", 1);
        let origin = key("origin.example", 2);
        let keys = trusted(&[&host, &origin]);
        let at_limit = sized_proposal(MAX_CONTENT_BYTES).sign(&origin).unwrap();
        verify_proposal(&at_limit, &keys).unwrap();
        let (_, event) = sequence(at_limit, 2, None, &host).unwrap();
        verify_event(&event, &keys, ChainPosition::Unchecked).unwrap();

        let over = sized_proposal(MAX_CONTENT_BYTES + 1).sign(&origin).unwrap();
        let verdict = verify_proposal(&over, &keys).map(|_| ()).map_err(|e| e.code());
        assert_eq!(verdict, Err("malformed"));
        let (_, event) = sequence(over, 2, None, &host).unwrap();
        assert_eq!(code(verify_event(&event, &keys, ChainPosition::Unchecked)), Err("malformed"));
    }

    /// The verdict without the (large) event, so that a failure prints briefly.
    fn code(verdict: Result<VerifiedEvent, EventError>) -> Result<(), &'static str> {
        verdict.map(|_| ()).map_err(|e| e.code())
    }

    #[test]
    fn the_event_limit_counts_signatures_but_not_unsigned() {
        let host = key("host.example", 1);
        let origin = key("origin.example", 2);
        let keys = trusted(&[&host, &origin]);
        let (_, mut event) =
            sequence(sized_proposal(MAX_CONTENT_BYTES).sign(&origin).unwrap(), 2, None, &host)
                .unwrap();
        // Signatures under key ids the verifier does not know are ignored, but they count.
        let filler = base64url::encode([0; 64]);
        let mut index = 0;
        let mut add_signature = |event: &mut JsonObject| {
            event["signatures"]["origin.example"][format!("ed25519:x{index:04}")] =
                Value::String(filler.clone());
            index += 1;
        };
        while signed_len(&event) <= MAX_EVENT_BYTES - 200 {
            add_signature(&mut event);
        }
        assert_eq!(code(verify_event(&event, &keys, ChainPosition::Unchecked)), Ok(()));

        // `unsigned` does not count: a server's annotation cannot push an event over the limit.
        event.insert("unsigned".into(), serde_json::json!({"note": "u".repeat(10_000)}));
        assert_eq!(code(verify_event(&event, &keys, ChainPosition::Unchecked)), Ok(()));

        while signed_len(&event) <= MAX_EVENT_BYTES {
            add_signature(&mut event);
        }
        assert_eq!(code(verify_event(&event, &keys, ChainPosition::Unchecked)), Err("malformed"));
    }

    #[test]
    fn event_types() {
        assert!(is_event_type("message.create"));
        assert!(is_event_type("channel.overwrite.set"));
        assert!(!is_event_type("Message.create"));
        assert!(!is_event_type("message..create"));
        assert!(!is_event_type(""));
        assert!(!is_event_type("message"));
    }
}
