//! Identity endpoints for clients (spec chapter 16): setting, generating, rotating and revoking
//! one's identity key, and logging in with it on any server.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use guildhall_identity::attestation::{Attestation, check_binding, sign_binding};
use guildhall_identity::device::DeviceCertificate;
use guildhall_identity::key::IdentityKeyPair;
use guildhall_identity::login::{self, Challenge};
use guildhall_identity::phrase::RecoveryPhrase;
use guildhall_identity::rotation::IdentityRotation;
use std::collections::BTreeSet;

use guildhall_spec::content::{EventContent, MemberJoin, MoveProof};
use guildhall_spec::event::JsonObject;
use guildhall_spec::{GuildId, UserId};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{AuthUser, Json, auth, views};
use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::identity;
use crate::store::now_ms;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ChallengeRequest {
    user_id: UserId,
}

/// `POST /_guildhall/v1/identity/challenge`: a single-use challenge for a key login (or for
/// proving possession of a key one sets on one's own account).
/// Rate-limited per client address (spec 16.4), bounded per user id and in all.
pub(super) async fn challenge(
    State(state): State<AppState>,
    ConnectInfo(address): ConnectInfo<SocketAddr>,
    Json(body): Json<ChallengeRequest>,
) -> ApiResult<Json<Value>> {
    state
        .challenge_limiter
        .check(&address.ip().to_string())
        .await
        .map_err(ApiError::rate_limited)?;
    let (challenge, expires_ts) = identity::issue_challenge(&state, &body.user_id);
    Ok(Json(json!({"challenge": challenge.as_str(), "expires_ts": expires_ts})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ProveRequest {
    user_id: UserId,
    challenge: Challenge,
    signature: String,
    #[serde(default)]
    attestation: Option<JsonObject>,
    /// The local name wanted for a new account here (default: the user's own localpart).
    #[serde(default)]
    localpart: Option<String>,
    /// For a new account here: the identity key's consent to be bound to it (spec 16.2).
    #[serde(default)]
    binding: Option<String>,
}

/// `POST /_guildhall/v1/identity/prove`: logs in with an identity key. The account is this
/// server's account bound to the same identity key, created on first login (with the user's
/// localpart, or `localpart`) when registration is open.
pub(super) async fn prove(
    State(state): State<AppState>,
    ConnectInfo(address): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Json(body): Json<ProveRequest>,
) -> ApiResult<Json<Value>> {
    let user_id = body.user_id;
    if !identity::consume_challenge(&state, &body.challenge, &user_id).await? {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_challenge",
            "the challenge is unknown, expired, used or issued for another user",
        ));
    }
    let (_, identity_key) = identity::current(&state, &user_id, body.attestation.as_ref()).await?;
    login::verify(&state.server_name, &user_id, &body.challenge, &body.signature, &identity_key)
        .map_err(|e| ApiError::new(StatusCode::UNAUTHORIZED, "bad_proof", e.to_string()))?;
    // A user of ours logs in to their own account. Another server's user logs in to the
    // account made here for that user id on their first key login — never to an account made
    // for someone else who held the same key once.
    let account = if user_id.server_name() == state.server_name {
        user_id.clone()
    } else {
        let consent = body
            .binding
            .as_deref()
            .map(|binding| identity::Consent { identity_key: &identity_key, binding });
        let _writing = state.identities.writes.lock().await;
        match state.store.linked_account(&user_id).await? {
            Some(account) => {
                follow_key(&state, &account, &identity_key, consent).await?;
                account
            }
            None => link_new_account(&state, &user_id, body.localpart.as_deref(), consent).await?,
        }
    };
    auth::refuse_moved(&state, &account).await?;
    let user = state
        .store
        .user(&account)
        .await?
        .ok_or_else(|| ApiError::unauthorized("account is gone"))?;
    let token = auth::start_session(&state, &account, &headers, address).await?;
    let mut view = views::own_user(&user);
    view["identity_key"] = json!(identity_key);
    Ok(Json(json!({"user_id": account, "token": token, "user": view, "linked_from": user_id})))
}

/// Keeps a linked account on its user's current key: when the key changed at home (a rotation,
/// or a new key after a revocation), the account is attested with the new key, which must
/// consent to it. The caller holds `state.identities.writes`.
async fn follow_key(
    state: &AppState,
    account: &UserId,
    identity_key: &str,
    consent: Option<identity::Consent<'_>>,
) -> ApiResult<()> {
    let held = state.store.attestation(account).await?.and_then(|row| row.identity_key);
    if held.as_deref() == Some(identity_key) {
        return Ok(());
    }
    let consent = consent.ok_or_else(|| binding_required(account))?;
    identity::attest_locked(state, account, Some(consent)).await?;
    Ok(())
}

fn binding_required(account: &UserId) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "binding_required",
        format!("{account} takes this identity key: send `binding`, the key's consent to it"),
    )
}

/// Creates this server's account for a remote user and attests the same key for it; a refusal
/// leaves no account behind. The caller holds `state.identities.writes`.
async fn link_new_account(
    state: &AppState,
    remote: &UserId,
    localpart: Option<&str>,
    consent: Option<identity::Consent<'_>>,
) -> ApiResult<UserId> {
    if !state.config.registration.enabled {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "registration_closed",
            "this server creates no new accounts",
        ));
    }
    let localpart = localpart.unwrap_or(remote.localpart());
    let account = UserId::new(localpart, &state.server_name).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_username",
            "usernames are 1-64 of a-z 0-9 . _ = -",
        )
    })?;
    let consent = consent.ok_or_else(|| binding_required(&account))?;
    if !check_binding(&account, consent.identity_key, consent.binding) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_binding",
            format!("`binding` is not the identity key's consent to {account}"),
        ));
    }
    state.store.create_linked_account(&account, remote).await?.ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            "username_taken",
            "that username is taken here; choose another with `localpart`",
        )
    })?;
    if let Err(error) = identity::attest_locked(state, &account, Some(consent)).await {
        state.store.delete_linked_account(&account).await?;
        return Err(error);
    }
    tracing::info!(%account, linked_from = %remote, "account created by key login");
    Ok(account)
}

/// `GET /api/v1/users/@me/identity`: the current attestation, if any.
pub(super) async fn mine(State(state): State<AppState>, auth: AuthUser) -> ApiResult<Json<Value>> {
    let row = state
        .store
        .attestation(&auth.user_id)
        .await?
        .ok_or_else(|| ApiError::not_found("no_identity", "no identity key is set"))?;
    Ok(Json(json!({
        "identity_key": row.identity_key,
        "attestation": row.attestation,
        "rotations": state.store.rotations(&auth.user_id).await?,
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SetIdentity {
    identity_key: String,
    challenge: Challenge,
    signature: String,
    /// The key's consent to be bound to this account (spec 16.2).
    binding: String,
}

/// `PUT /api/v1/users/@me/identity`: binds a key the client generated (recommended), proven
/// with a login proof for this server over a challenge from this server. Only when no key is
/// bound: a bound key is replaced by a rotation, which the old key signs.
pub(super) async fn set(
    State(state): State<AppState>,
    auth: AuthUser,
    Json(body): Json<SetIdentity>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let _writing = state.identities.writes.lock().await;
    ensure_unbound(&state, &auth.user_id).await?;
    if !identity::consume_challenge(&state, &body.challenge, &auth.user_id).await? {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_challenge",
            "the challenge is unknown, expired or used",
        ));
    }
    login::verify(
        &state.server_name,
        &auth.user_id,
        &body.challenge,
        &body.signature,
        &body.identity_key,
    )
    .map_err(|e| ApiError::new(StatusCode::UNAUTHORIZED, "bad_proof", e.to_string()))?;
    let consent = identity::Consent { identity_key: &body.identity_key, binding: &body.binding };
    let attestation = identity::attest_locked(&state, &auth.user_id, Some(consent)).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"identity_key": body.identity_key, "attestation": attestation})),
    ))
}

/// `POST /api/v1/users/@me/identity/generate`: for simple clients, the server makes a
/// recovery phrase, binds its first key and returns the phrase once. It keeps no secret.
pub(super) async fn generate(
    State(state): State<AppState>,
    auth: AuthUser,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let _writing = state.identities.writes.lock().await;
    ensure_unbound(&state, &auth.user_id).await?;
    let phrase = RecoveryPhrase::generate();
    let pair = IdentityKeyPair::from_phrase(&phrase, 0);
    let identity_key = pair.public_base64url();
    let binding = sign_binding(&pair, &auth.user_id);
    let consent = identity::Consent { identity_key: &identity_key, binding: &binding };
    let attestation = identity::attest_locked(&state, &auth.user_id, Some(consent)).await?;
    Ok((
        StatusCode::CREATED,
        Json(
            json!({"phrase": phrase.words(), "identity_key": identity_key, "attestation": attestation}),
        ),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RotateRequest {
    rotation: JsonObject,
    /// The new key's consent to be bound to this account (spec 16.2).
    binding: String,
}

/// `POST /api/v1/users/@me/identity/rotate`: replaces the identity key with a rotation signed
/// by the current key and the new one.
pub(super) async fn rotate(
    State(state): State<AppState>,
    auth: AuthUser,
    Json(body): Json<RotateRequest>,
) -> ApiResult<Json<Value>> {
    let _writing = state.identities.writes.lock().await;
    let row = state.store.attestation(&auth.user_id).await?;
    let (issued_ts, identity_key) = row
        .and_then(|row| Some((row.issued_ts, row.identity_key?)))
        .ok_or_else(|| ApiError::not_found("no_identity", "no identity key to rotate"))?;
    let current = Attestation {
        user_id: auth.user_id.clone(),
        identity_key,
        issued_ts,
        revoked: false,
        binding: None,
    };
    let rotation = IdentityRotation::verify(&body.rotation, &current)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_rotation", e.to_string()))?;
    if rotation.user_id != auth.user_id {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_rotation",
            "the rotation is of another user",
        ));
    }
    // A key once replaced never comes back (spec 16.6): replaying an old rotation, or rotating
    // back to an old key, is refused; and statements follow one another in time, so the chain
    // served is the order they were made in.
    let earlier = state.store.rotations(&auth.user_id).await?;
    let used = earlier.iter().any(|earlier| {
        [&earlier["old_key"], &earlier["new_key"]]
            .iter()
            .any(|key| key.as_str() == Some(&rotation.new_key))
    });
    if used {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_rotation",
            "the new key was this user's identity key before",
        ));
    }
    let last_ts = earlier.iter().filter_map(|earlier| earlier["ts"].as_u64()).max();
    if last_ts.is_some_and(|last| rotation.ts <= last) || rotation.ts > now_ms() + 60_000 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_rotation",
            "`ts` must follow the previous rotation's and not lie in the future",
        ));
    }
    // Checked before anything is stored, so a refusal leaves nothing behind.
    if !check_binding(&auth.user_id, &rotation.new_key, &body.binding) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_binding",
            "`binding` must be the new key's consent to this account",
        ));
    }
    let consent = identity::Consent { identity_key: &rotation.new_key, binding: &body.binding };
    let attestation = identity::attest_locked(&state, &auth.user_id, Some(consent)).await?;
    state.store.put_rotation(&auth.user_id, rotation.ts, &body.rotation).await?;
    Ok(Json(json!({"identity_key": rotation.new_key, "attestation": attestation})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RevokeRequest {
    /// The account's password.
    #[serde(default)]
    password: Option<String>,
    /// Or a login proof by the current key over a challenge from this server.
    #[serde(default)]
    challenge: Option<Challenge>,
    #[serde(default)]
    signature: Option<String>,
}

/// `DELETE /api/v1/users/@me/identity`: revokes the binding (a lost or stolen key); a new key
/// may then be set. A session token alone is not enough — with it, a thief could revoke the
/// key and bind their own — so the request carries the password or a proof by the current key.
pub(super) async fn revoke(
    State(state): State<AppState>,
    auth: AuthUser,
    Json(body): Json<RevokeRequest>,
) -> ApiResult<Json<Value>> {
    let refused = || {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "reauthentication_required",
            "revoking the identity key takes the password or a proof by the key",
        )
    };
    let _writing = state.identities.writes.lock().await;
    let proven = match (&body.password, &body.challenge, &body.signature) {
        (Some(password), _, _) => {
            let user = state.store.user(&auth.user_id).await?;
            let stored = user.as_ref().map(|u| u.password_hash.as_str()).filter(|h| !h.is_empty());
            state
                .failed_logins
                .check(auth.user_id.as_str())
                .await
                .map_err(ApiError::rate_limited)?;
            let verified = state.passwords.verify(password, stored).await?;
            if verified {
                state.failed_logins.refund(auth.user_id.as_str()).await;
            }
            verified
        }
        (None, Some(challenge), Some(signature)) => {
            let key = state.store.attestation(&auth.user_id).await?.and_then(|r| r.identity_key);
            let fresh = identity::consume_challenge(&state, challenge, &auth.user_id).await?;
            key.is_some_and(|key| {
                fresh
                    && login::verify(&state.server_name, &auth.user_id, challenge, signature, &key)
                        .is_ok()
            })
        }
        _ => false,
    };
    if !proven {
        return Err(refused());
    }
    let attestation = identity::attest_locked(&state, &auth.user_id, None).await?;
    Ok(Json(json!({"attestation": attestation})))
}

async fn ensure_unbound(state: &AppState, user_id: &UserId) -> ApiResult<()> {
    let bound = state.store.attestation(user_id).await?.and_then(|row| row.identity_key);
    if bound.is_some() {
        return Err(ApiError::conflict(
            "an identity key is already bound; rotate it, or revoke it first",
        ));
    }
    Ok(())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MoveRequest {
    /// The move statement, signed by the identity key (spec 16.5).
    #[serde(rename = "move")]
    statement: JsonObject,
    /// Guilds the old account is in, when its server cannot say (it may be gone).
    #[serde(default)]
    guilds: Vec<GuildId>,
    /// The old account's attestation, for when its server is gone (used only if it cannot be
    /// asked; checked like any other).
    #[serde(default)]
    from_attestation: Option<JsonObject>,
}

/// At most this many guilds are moved in one request.
const MAX_MOVED_GUILDS: usize = 200;

/// `POST /api/v1/users/@me/identity/move`: moves the signed-in user's previous account (on
/// this or another server) here. Both accounts must be attested with the same identity key and
/// the move signed by it. The old server is told (it answers with the guilds the old account
/// is in), and in every such guild this account takes over the old one's membership — roles,
/// nickname, join time — with one `member.join` carrying the move.
pub(super) async fn move_account(
    State(state): State<AppState>,
    auth: AuthUser,
    Json(body): Json<MoveRequest>,
) -> ApiResult<Json<Value>> {
    let invalid = |message: String| ApiError::new(StatusCode::BAD_REQUEST, "invalid_move", message);
    let from: UserId = body
        .statement
        .get("from")
        .and_then(Value::as_str)
        .and_then(|from| from.parse().ok())
        .ok_or_else(|| invalid("the move names no account to move from".into()))?;
    let (to_attestation, _) = identity::current(&state, &auth.user_id, None).await?;
    let from_attestation = match identity::current(&state, &from, None).await {
        Ok((attestation, _)) => attestation,
        Err(error @ identity::IdentityError::Invalid { .. }) => {
            body.from_attestation.ok_or(error)?
        }
        Err(error) => return Err(error.into()),
    };
    let proof = MoveProof { statement: body.statement, from_attestation, to_attestation };
    let moved = identity::verify_move(&state.federation.keys, &state.store, &proof)
        .await
        .map_err(invalid)?;
    if moved.to != auth.user_id {
        return Err(invalid("the move is not to the signed-in account".into()));
    }
    state.store.put_move(&moved.from, &moved.to, moved.ts, &proof.statement).await?;
    let mut guilds: BTreeSet<GuildId> = body.guilds.into_iter().take(MAX_MOVED_GUILDS).collect();
    guilds.extend(state.store.guilds_of(&moved.from).await?);
    if moved.from.server_name() != state.server_name {
        match tell_old_server(&state, &proof).await {
            Ok(known) => guilds.extend(known),
            Err(error) => {
                tracing::info!(from = %moved.from, %error, "old server not told of the move")
            }
        }
    }
    let mut done = Vec::new();
    let mut failed = Vec::new();
    for guild_id in guilds.into_iter().take(MAX_MOVED_GUILDS) {
        let outcome = if state.guilds.hosts(&guild_id) {
            let join = MemberJoin { invite_code: None, account_move: Some(proof.clone()) };
            state
                .guilds
                .submit(&guild_id, &auth.user_id, EventContent::MemberJoin(join), None)
                .await
                .map(|_| ())
        } else {
            state.guilds.join_by_move(&auth.user_id, &guild_id, proof.clone()).await.map(|_| ())
        };
        match outcome {
            Ok(()) => done.push(json!(guild_id)),
            Err(error) => failed.push(
                json!({"guild_id": guild_id, "code": error.code(), "message": error.message()}),
            ),
        }
    }
    tracing::info!(from = %moved.from, to = %moved.to, moved = done.len(), failed = failed.len(), "account moved");
    Ok(Json(json!({"from": moved.from, "to": moved.to, "guilds": done, "failed": failed})))
}

/// Sends the move to the old account's server; its answer lists the guilds the account is in.
async fn tell_old_server(state: &AppState, proof: &MoveProof) -> Result<Vec<GuildId>, String> {
    let from = proof.from().ok_or("no account moved from")?;
    let body = json!({
        "move": proof.statement,
        "from_attestation": proof.from_attestation,
        "to_attestation": proof.to_attestation,
    });
    let answer = state
        .federation
        .client
        .request_json::<Value>(
            "POST",
            &from.server_name(),
            "/_guildhall/v1/identity/move",
            None,
            Some(&body),
        )
        .await
        .map_err(|e| e.to_string())?
        .map_err(|(status, _)| format!("answered {status}"))?;
    Ok(answer["guilds"]
        .as_array()
        .map(|guilds| {
            guilds.iter().filter_map(|g| g.as_str()?.parse().ok()).take(MAX_MOVED_GUILDS).collect()
        })
        .unwrap_or_default())
}

/// Devices one user may register.
const MAX_DEVICES: i64 = 100;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DeviceBody {
    certificate: JsonObject,
}

/// `PUT /api/v1/users/@me/devices/{device_id}`: registers this login as a device, with its
/// certificate (spec 16.3): signed by the device's own key and by the user's current identity
/// key. Sent again after a rotation, it re-certifies the device.
pub(super) async fn put_device(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(device_id): Path<String>,
    Json(body): Json<DeviceBody>,
) -> ApiResult<Json<Value>> {
    let invalid =
        |message: String| ApiError::new(StatusCode::BAD_REQUEST, "invalid_certificate", message);
    let (attestation, _) = identity::current(&state, &auth.user_id, None).await?;
    let current = identity::stored_attestation(&attestation)
        .ok_or_else(|| ApiError::internal("stored attestation unreadable"))?;
    let certificate = DeviceCertificate::verify(&body.certificate, &current, now_ms())
        .map_err(|e| invalid(e.to_string()))?;
    if certificate.device_id.as_str() != device_id {
        return Err(invalid("the certificate is for another device id".into()));
    }
    let stored = state
        .store
        .put_device(&auth.user_id, &device_id, &auth.session_id, &body.certificate, MAX_DEVICES)
        .await?;
    if !stored {
        return Err(ApiError::conflict(format!(
            "that device id belongs to another login, or the account has {MAX_DEVICES} devices"
        )));
    }
    crate::e2e::device_list_changed(&state, &auth.user_id).await;
    Ok(Json(json!({"device_id": device_id, "certificate": body.certificate})))
}

/// `GET /api/v1/users/@me/devices`: this account's devices, whether each certificate is still
/// valid (a rotation invalidates them until re-certified), and which one is this login.
pub(super) async fn devices(
    State(state): State<AppState>,
    auth: AuthUser,
) -> ApiResult<Json<Value>> {
    let current = state
        .store
        .attestation(&auth.user_id)
        .await?
        .and_then(|row| identity::stored_attestation(&row.attestation));
    let now = now_ms();
    let devices: Vec<Value> = state
        .store
        .devices(&auth.user_id)
        .await?
        .into_iter()
        .map(|device| {
            let valid = current.as_ref().is_some_and(|current| {
                DeviceCertificate::verify(&device.certificate, current, now).is_ok()
            });
            json!({
                "device_id": device.device_id,
                "certificate": device.certificate,
                "valid": valid,
                "current": device.session_id == auth.session_id,
                "updated_ts": device.updated_ts,
            })
        })
        .collect();
    Ok(Json(json!({"devices": devices})))
}

/// `DELETE /api/v1/users/@me/devices/{device_id}`: removes a device and logs its login out.
pub(super) async fn delete_device(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(device_id): Path<String>,
) -> ApiResult<StatusCode> {
    let session = state
        .store
        .device_session(&auth.user_id, &device_id)
        .await?
        .ok_or_else(|| ApiError::not_found("unknown_device", "no such device"))?;
    state.store.delete_session(&auth.user_id, &session).await?;
    auth::login_revoked(&state, &auth.user_id, &session).await;
    Ok(StatusCode::NO_CONTENT)
}

/// The certificates of `user_id`'s devices that are valid against the current attestation
/// (served to other servers, spec 16.3).
pub(crate) async fn valid_certificates(
    state: &AppState,
    user_id: &UserId,
) -> ApiResult<Vec<JsonObject>> {
    let Some(current) = state
        .store
        .attestation(user_id)
        .await?
        .and_then(|row| identity::stored_attestation(&row.attestation))
    else {
        return Ok(Vec::new());
    };
    let now = now_ms();
    Ok(state
        .store
        .devices(user_id)
        .await?
        .into_iter()
        .filter(|device| DeviceCertificate::verify(&device.certificate, &current, now).is_ok())
        .map(|device| device.certificate)
        .collect())
}
