//! Identities (spec chapter 16): the target's attestations of its users, fetched by a signed
//! `GET /identity/{user_id}` and verified with its key document, and key login on the target
//! (16.4) by users whose home server is the suite's peer, which answers for their identities.
//!
//! Login proofs and attestations are built here from the spec's text (canonical JSON of the
//! login object, signed with the identity key), not by `guildhall-identity`, so that the suite
//! and a server cannot share a mistake there.

use std::sync::Arc;

use guildhall_spec::event::JsonObject;
use guildhall_spec::{KeyId, ServerName, ServerSigningKey, base64url, canonical, signing};
use serde_json::{Value, json};

use crate::peer::{Peer, unix_now};
use crate::target::{Answer, encode};
use crate::{CaseResult, Context, ensure};

/// A user's identity key pair, held by the suite. The spec crate's Ed25519 signer does the
/// signing; its server name and key id play no part in what it signs.
pub(super) struct Identity {
    key: ServerSigningKey,
}

impl Identity {
    pub(super) fn generate() -> Result<Self, String> {
        let name = ServerName::parse("identity.invalid").map_err(|e| e.to_string())?;
        let key_id = KeyId::parse("ed25519:identity").map_err(|e| e.to_string())?;
        Ok(Self { key: ServerSigningKey::from_seed(name, key_id, &rand::random::<[u8; 32]>()) })
    }

    /// The public identity key, base64url.
    pub(super) fn public(&self) -> String {
        base64url::encode(self.key.verifying_key().as_bytes())
    }

    /// The login proof of spec 16.4: the identity key's signature over the canonical bytes of
    /// the login object for logging in to `server` as `user` with `challenge`.
    fn prove(&self, server: &str, user: &str, challenge: &str) -> Result<String, String> {
        let object = json!({
            "type": "guildhall.login.v1",
            "server": server,
            "user_id": user,
            "challenge": challenge,
        });
        let bytes = canonical::to_canonical_string(&object).map_err(|e| e.to_string())?;
        Ok(base64url::encode(self.key.sign_bytes(bytes.as_bytes())))
    }

    /// The identity key's consent to be bound to `user` (spec 16.2): its signature over the
    /// canonical bytes of the binding object.
    pub(super) fn binding(&self, user: &str) -> String {
        let object = json!({
            "type": "guildhall.identity_binding.v1",
            "user_id": user,
            "identity_key": self.public(),
        });
        let bytes = canonical::to_canonical_string(&object).unwrap_or_default();
        self.sign(bytes.as_bytes())
    }

    /// The identity key's signature over `message`, base64url.
    pub(super) fn sign(&self, message: &[u8]) -> String {
        base64url::encode(self.key.sign_bytes(message))
    }
}

/// Milliseconds since the epoch.
fn now_ms() -> u64 {
    unix_now() * 1000
}

/// A user of the peer nobody has used before, on any run against any target: key login may
/// create an account of the same localpart on the target, which must not exist yet.
fn fresh_peer_user(peer: &Peer) -> String {
    format!("@key{:08x}{}:{}", rand::random::<u32>(), crate::context::unique(), peer.name())
}

/// A peer user whose home (the peer) attests a fresh identity key for them, issued a second ago.
fn attested_peer_user(ctx: &Context) -> Result<(String, Identity, Value), String> {
    let user = fresh_peer_user(&ctx.peer);
    let identity = Identity::generate()?;
    let attestation = peer_attestation(ctx, &user, &identity, 1000, false);
    ctx.peer.serve_identity(&user, Some(attestation.clone()));
    Ok((user, identity, attestation))
}

/// The peer's attestation of its `user` binding `identity` (with the key's consent), issued
/// `age_ms` ago, revoking or not.
fn peer_attestation(
    ctx: &Context,
    user: &str,
    identity: &Identity,
    age_ms: u64,
    revoked: bool,
) -> Value {
    let binding = identity.binding(user);
    ctx.peer.attestation(user, &identity.public(), Some(&binding), now_ms() - age_ms, revoked)
}

/// `POST /identity/challenge` for `user`; checks the answer's shape and returns the challenge.
async fn challenge(ctx: &Context, user: &str) -> Result<String, String> {
    let asked = now_ms();
    let (status, body) = ctx
        .target
        .call("POST", "/_guildhall/v1/identity/challenge", Some(&json!({"user_id": user})))
        .await;
    ensure!(status == 200, "POST /identity/challenge answered {status} {body}");
    let challenge = body["challenge"].as_str().unwrap_or_default();
    ensure!(
        base64url::decode_array::<32>(challenge).is_some(),
        "the challenge is not base64url of 32 bytes: {body}"
    );
    // Five minutes at most, with a second of slack for the suite's clock resolution.
    let expires = body["expires_ts"].as_u64().unwrap_or(0);
    ensure!(
        expires > asked && expires <= now_ms() + 5 * 60 * 1000 + 1000,
        "expires_ts {expires} is not within five minutes of now ({asked})"
    );
    Ok(challenge.to_owned())
}

/// The account a key login of `user` makes on the target: the same localpart there.
fn target_account(ctx: &Context, user: &str) -> String {
    let localpart = user.trim_start_matches('@').split(':').next().unwrap_or_default();
    format!("@{localpart}:{}", ctx.target.name)
}

/// `POST /identity/prove`, with `identity`'s consent to the account it makes on the target.
async fn prove(
    ctx: &Context,
    user: &str,
    identity: &Identity,
    challenge: &str,
    signature: &str,
    attestation: &Value,
) -> Answer {
    let body = json!({
        "user_id": user,
        "challenge": challenge,
        "signature": signature,
        "attestation": attestation,
        "binding": identity.binding(&target_account(ctx, user)),
    });
    ctx.target.call("POST", "/_guildhall/v1/identity/prove", Some(&body)).await
}

/// A complete, correct key login of `user`; returns the answer.
async fn login(ctx: &Context, user: &str, identity: &Identity, attestation: &Value) -> Answer {
    let challenge = match challenge(ctx, user).await {
        Ok(challenge) => challenge,
        Err(why) => return (0, json!({"challenge": why})),
    };
    match identity.prove(&ctx.target.name, user, &challenge) {
        Ok(signature) => prove(ctx, user, identity, &challenge, &signature, attestation).await,
        Err(why) => (0, json!({"proof": why})),
    }
}

/// Expects a `401` with `code`.
fn refused(answer: &Answer, code: &str, what: &str) -> CaseResult {
    let (status, body) = answer;
    ensure!(
        *status == 401 && body["code"] == code,
        "{what}: expected 401 {code}, got {status} {body}"
    );
    Ok(())
}

/// Expects a successful login: a token for an account of the target, linked from `user`.
fn logged_in(answer: &Answer, user: &str, ctx: &Context) -> CaseResult {
    let (status, body) = answer;
    ensure!(*status == 200, "a valid key login answered {status} {body}");
    ensure!(
        body["token"].as_str().is_some_and(|token| !token.is_empty()),
        "a valid key login gave no token: {body}"
    );
    ensure!(
        body["user_id"]
            .as_str()
            .is_some_and(|account| account.ends_with(&format!(":{}", ctx.target.name))),
        "the session is not for an account of the target: {body}"
    );
    ensure!(body["linked_from"] == user, "linked_from is not {user}: {body}");
    Ok(())
}

/// The target's answer to a signed `GET /identity/{user}` by the peer.
async fn fetch_attestation(ctx: &Context, user: &str) -> Answer {
    let path = format!("/_guildhall/v1/identity/{}", encode(user));
    ctx.peer.request(&ctx.target, "GET", &path, None, None).await
}

/// Checks that `answer` holds an attestation of `user` naming `identity_key`, signed by the
/// target's current key document, revoking or not as `revoked` says; returns its `issued_ts`.
pub(super) async fn check_attestation(
    ctx: &Context,
    answer: &Answer,
    user: &str,
    identity_key: &str,
    revoked: bool,
) -> Result<u64, String> {
    let (status, body) = answer;
    ensure!(*status == 200, "GET /identity/{user} answered {status} {body}");
    let attestation = body["attestation"].as_object().cloned().unwrap_or_else(JsonObject::new);
    let target = ServerName::parse(&ctx.target.name).map_err(|e| e.to_string())?;
    signing::verify_json(&attestation, &target, &ctx.keys().await?)
        .map_err(|e| format!("the attestation does not verify with the target's keys: {e}"))?;
    ensure!(attestation.get("user_id") == Some(&json!(user)), "the attestation is not of {user}");
    ensure!(
        attestation.get("identity_key") == Some(&json!(identity_key)),
        "the attestation names {:?}, not the bound key {identity_key}",
        attestation.get("identity_key")
    );
    let issued_ts = attestation.get("issued_ts").and_then(Value::as_u64);
    ensure!(
        issued_ts.is_some_and(|ts| ts <= now_ms() + 60_000),
        "issued_ts {issued_ts:?} is not an integer up to a minute ahead"
    );
    let says_revoked = attestation.get("revoked").and_then(Value::as_bool).unwrap_or(false);
    ensure!(says_revoked == revoked, "the attestation says revoked = {says_revoked}");
    ensure!(
        attestation.keys().all(|member| matches!(
            member.as_str(),
            "user_id" | "identity_key" | "issued_ts" | "revoked" | "binding" | "signatures"
        )),
        "the attestation has members spec 16.2 does not define: {body}"
    );
    Ok(issued_ts.unwrap_or(0))
}

/// A local user of the target with a fresh identity key bound through test control.
async fn bound_target_user(ctx: &Context) -> Result<(String, String), String> {
    let user = ctx.target.user("attested").await?;
    let identity = Identity::generate()?;
    let identity_key = identity.public();
    let path = format!("/_guildhall/test/v1/users/{}/identity", encode(&user));
    let bind = json!({"identity_key": identity_key, "binding": identity.binding(&user)});
    let (status, body) = ctx.target.call("PUT", &path, Some(&bind)).await;
    ensure!(status == 200, "test control: binding an identity key answered {status} {body}");
    Ok((user, identity_key))
}

pub(super) async fn attestation_fetch_and_verify(ctx: Arc<Context>) -> CaseResult {
    let (user, identity_key) = bound_target_user(&ctx).await?;
    check_attestation(&ctx, &fetch_attestation(&ctx, &user).await, &user, &identity_key, false)
        .await?;
    let path = format!("/_guildhall/v1/identity/{}", encode(&user));
    let (status, body) = ctx.target.call("GET", &path, None).await;
    ensure!(status == 401, "an unsigned GET /identity answered {status} {body}");
    let keyless = ctx.target.user("keyless").await?;
    let ghost = format!("@ghost{}:{}", crate::context::unique(), ctx.target.name);
    for (who, what) in
        [(&keyless, "a local user without an identity key"), (&ghost, "no such user")]
    {
        let (status, body) = fetch_attestation(&ctx, who).await;
        ensure!(
            status == 404 && body["code"] == "unknown_user",
            "{what}: expected 404 unknown_user, got {status} {body}"
        );
    }
    let foreign = ctx.peer.user("elsewhere");
    let (status, body) = fetch_attestation(&ctx, &foreign).await;
    ensure!(
        status == 404 && body["code"] == "not_found",
        "a user of another server: expected 404 not_found, got {status} {body}"
    );
    Ok(())
}

pub(super) async fn revoking_attestation_is_served(ctx: Arc<Context>) -> CaseResult {
    let (user, identity_key) = bound_target_user(&ctx).await?;
    let bound =
        check_attestation(&ctx, &fetch_attestation(&ctx, &user).await, &user, &identity_key, false)
            .await?;
    let path = format!("/_guildhall/test/v1/users/{}/identity", encode(&user));
    let (status, body) = ctx.target.call("DELETE", &path, None).await;
    ensure!(status == 200, "test control: revoking answered {status} {body}");
    let revoked =
        check_attestation(&ctx, &fetch_attestation(&ctx, &user).await, &user, &identity_key, true)
            .await?;
    ensure!(revoked > bound, "the revocation (issued {revoked}) is not newer than {bound}");
    Ok(())
}

pub(super) async fn key_login_valid(ctx: Arc<Context>) -> CaseResult {
    let (user, identity, attestation) = attested_peer_user(&ctx)?;
    logged_in(&login(&ctx, &user, &identity, &attestation).await, &user, &ctx)?;
    // The session is the same identity's on its next login too.
    logged_in(&login(&ctx, &user, &identity, &attestation).await, &user, &ctx)
}

pub(super) async fn key_login_replayed(ctx: Arc<Context>) -> CaseResult {
    let (user, identity, attestation) = attested_peer_user(&ctx)?;
    let challenge = challenge(&ctx, &user).await?;
    let signature = identity.prove(&ctx.target.name, &user, &challenge)?;
    let first = prove(&ctx, &user, &identity, &challenge, &signature, &attestation).await;
    logged_in(&first, &user, &ctx)?;
    let again = prove(&ctx, &user, &identity, &challenge, &signature, &attestation).await;
    refused(&again, "invalid_challenge", "the same proof and challenge a second time")
}

pub(super) async fn key_login_failed_proof_spends_the_challenge(ctx: Arc<Context>) -> CaseResult {
    let (user, identity, attestation) = attested_peer_user(&ctx)?;
    let challenge = challenge(&ctx, &user).await?;
    let wrong = Identity::generate()?.prove(&ctx.target.name, &user, &challenge)?;
    let first = prove(&ctx, &user, &identity, &challenge, &wrong, &attestation).await;
    refused(&first, "bad_proof", "a proof by another key")?;
    let signature = identity.prove(&ctx.target.name, &user, &challenge)?;
    let second = prove(&ctx, &user, &identity, &challenge, &signature, &attestation).await;
    refused(&second, "invalid_challenge", "a good proof over a challenge a failed proof used")
}

pub(super) async fn key_login_challenge_of_another_user(ctx: Arc<Context>) -> CaseResult {
    let (user, identity, attestation) = attested_peer_user(&ctx)?;
    let (other, _, _) = attested_peer_user(&ctx)?;
    let challenge = challenge(&ctx, &other).await?;
    let signature = identity.prove(&ctx.target.name, &user, &challenge)?;
    let answer = prove(&ctx, &user, &identity, &challenge, &signature, &attestation).await;
    refused(&answer, "invalid_challenge", "a challenge issued for another user")
}

pub(super) async fn key_login_wrong_server(ctx: Arc<Context>) -> CaseResult {
    let (user, identity, attestation) = attested_peer_user(&ctx)?;
    let challenge = challenge(&ctx, &user).await?;
    // A proof the user made for another server (here: their own home), which that server
    // could replay to the target if the target did not put its own name in the object.
    let signature = identity.prove(ctx.peer.name().as_str(), &user, &challenge)?;
    let answer = prove(&ctx, &user, &identity, &challenge, &signature, &attestation).await;
    refused(&answer, "bad_proof", "a proof naming another server")
}

pub(super) async fn key_login_forged_attestation(ctx: Arc<Context>) -> CaseResult {
    let user = fresh_peer_user(&ctx.peer);
    let identity = Identity::generate()?;
    // Under the peer's name and key id, but not by the peer's key.
    let forger = ServerSigningKey::from_seed(
        ctx.peer.name().clone(),
        ctx.peer.key.key_id().clone(),
        &rand::random::<[u8; 32]>(),
    );
    let forged = ctx.peer.attestation_signed_by(
        &forger,
        &user,
        &identity.public(),
        Some(&identity.binding(&user)),
        now_ms() - 1000,
        false,
    );
    ctx.peer.serve_identity(&user, Some(forged.clone()));
    let answer = login(&ctx, &user, &identity, &forged).await;
    refused(&answer, "invalid_attestation", "an attestation not signed by the home server")
}

/// An attestation its home server signed but the identity key never consented to (no
/// `binding`, or a binding to another user) proves nothing (spec 16.2): otherwise a server could
/// make its user pass for whoever holds the key.
pub(super) async fn key_login_attestation_without_consent(ctx: Arc<Context>) -> CaseResult {
    let other = fresh_peer_user(&ctx.peer);
    for binding in [None, Some(other)] {
        let user = fresh_peer_user(&ctx.peer);
        let identity = Identity::generate()?;
        let binding = binding.map(|other| identity.binding(&other));
        let unconsented = ctx.peer.attestation(
            &user,
            &identity.public(),
            binding.as_deref(),
            now_ms() - 1000,
            false,
        );
        ctx.peer.serve_identity(&user, Some(unconsented.clone()));
        let answer = login(&ctx, &user, &identity, &unconsented).await;
        let what = if binding.is_some() { "a binding to another user" } else { "no binding" };
        refused(&answer, "invalid_attestation", &format!("an attestation with {what}"))?;
    }
    Ok(())
}

pub(super) async fn key_login_unknown_identity(ctx: Arc<Context>) -> CaseResult {
    let user = fresh_peer_user(&ctx.peer);
    let identity = Identity::generate()?;
    // The home server knows no identity for the user; the client presents one signed properly.
    let presented = peer_attestation(&ctx, &user, &identity, 1000, false);
    ctx.peer.serve_identity(&user, None);
    let answer = login(&ctx, &user, &identity, &presented).await;
    refused(&answer, "no_identity", "a user whose home server has no identity key for them")
}

pub(super) async fn key_login_revoked(ctx: Arc<Context>) -> CaseResult {
    let user = fresh_peer_user(&ctx.peer);
    let identity = Identity::generate()?;
    let bound = peer_attestation(&ctx, &user, &identity, 10_000, false);
    ctx.peer.serve_identity(&user, Some(bound.clone()));
    logged_in(&login(&ctx, &user, &identity, &bound).await, &user, &ctx)?;
    let revoking = peer_attestation(&ctx, &user, &identity, 1000, true);
    ctx.peer.serve_identity(&user, Some(revoking));
    // The client still presents the attestation that bound the key.
    let answer = login(&ctx, &user, &identity, &bound).await;
    refused(&answer, "identity_revoked", "a key its home server has since revoked")
}

pub(super) async fn key_login_revocation_cannot_be_rolled_back(ctx: Arc<Context>) -> CaseResult {
    let user = fresh_peer_user(&ctx.peer);
    let identity = Identity::generate()?;
    let bound = peer_attestation(&ctx, &user, &identity, 10_000, false);
    let revoking = peer_attestation(&ctx, &user, &identity, 1000, true);
    ctx.peer.serve_identity(&user, Some(revoking));
    let answer = login(&ctx, &user, &identity, &bound).await;
    refused(&answer, "identity_revoked", "a revoked key")?;
    // The home server (or whoever answers for it) goes back to the older, binding attestation:
    // the greatest issued_ts seen stays current.
    ctx.peer.serve_identity(&user, Some(bound.clone()));
    let answer = login(&ctx, &user, &identity, &bound).await;
    refused(&answer, "identity_revoked", "an older attestation served after a revocation")
}
