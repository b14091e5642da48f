//! Identities on this server (spec chapter 16): attestations issued for our users, attestations
//! of other servers' users fetched and verified, and a directory that learns the identities of
//! the remote users our users meet, in the background.
//!
//! The wire objects and their checks live in `guildhall-identity`; this module stores them,
//! fetches them over federation and decides which one is current.

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use guildhall_identity::attestation::{self, Attestation, AttestationError};
use guildhall_identity::login::Challenge;
use guildhall_identity::moves::AccountMove;
use guildhall_spec::UserId;
use guildhall_spec::content::{EventContent, MoveProof};
use guildhall_spec::event::JsonObject;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::{broadcast, mpsc};

use crate::AppState;
use crate::bus::BusMessage;
use crate::error::{ApiError, ApiResult};
use crate::store::now_ms;

/// The largest answer to `GET /identity/{user_id}` read: an attestation and a few rotations.
const MAX_ATTESTATION_ANSWER_BYTES: usize = 64 * 1024;
/// Identity fetches at once for key logins (each may wait on a slow home server).
const MAX_LOGIN_FETCHES: usize = 16;
/// How long a fetched attestation is trusted without asking its home server again.
const REFRESH_AFTER_MS: u64 = 3600 * 1000;
/// How old an attestation may be and still be used when its home server cannot be reached
/// (spec 16.4, check 3).
const OFFLINE_GRACE_MS: u64 = 7 * 24 * 3600 * 1000;
/// How often, at most, one remote user's identity is asked for when it is needed (a member
/// list shows them without a known key, or they join a guild).
const ASK_AGAIN_AFTER: Duration = Duration::from_secs(60);
/// Remote users waiting to have their identity learned; more are dropped (and learned when
/// next met).
const LEARN_QUEUE: usize = 1024;
/// Identity fetches running at once in the background.
const LEARN_CONCURRENCY: usize = 4;

/// Why a user's identity could not be established.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The user has no identity key (or their home server does not know them).
    #[error("{0} has no identity key")]
    NoIdentity(UserId),
    /// The current attestation revokes the user's identity key.
    #[error("the identity of {0} is revoked")]
    Revoked(UserId),
    /// Our trust policy forbids the user's home server: its word counts for nothing here.
    #[error("this server does not federate with the home server of {0}")]
    Denied(UserId),
    /// Too many identity fetches are under way.
    #[error("too many identity lookups under way; retry shortly")]
    Busy,
    /// No valid attestation could be had: the home server answered with an invalid one, or was
    /// unreachable and no recent valid copy is at hand.
    #[error("no valid attestation for {user}: {reason}")]
    Invalid {
        /// Whose.
        user: UserId,
        /// Why.
        reason: String,
    },
}

impl From<IdentityError> for ApiError {
    fn from(error: IdentityError) -> Self {
        let (status, code) = match error {
            IdentityError::NoIdentity(_) => (StatusCode::UNAUTHORIZED, "no_identity"),
            IdentityError::Revoked(_) => (StatusCode::UNAUTHORIZED, "identity_revoked"),
            IdentityError::Invalid { .. } => (StatusCode::UNAUTHORIZED, "invalid_attestation"),
            IdentityError::Denied(_) => (StatusCode::FORBIDDEN, "server_denied"),
            IdentityError::Busy => (StatusCode::SERVICE_UNAVAILABLE, "busy"),
        };
        ApiError::new(status, code, error.to_string())
    }
}

/// An identity key and its consent to be bound to a user (spec 16.2, `binding`).
#[derive(Debug, Clone, Copy)]
pub struct Consent<'a> {
    /// The identity key, base64url.
    pub identity_key: &'a str,
    /// Its signature over the binding object, base64url.
    pub binding: &'a str,
}

/// Issues, signs and stores a new attestation for our user `user_id`: binding the consenting
/// key, or revoking the binding when `consent` is `None`. Returns the signed attestation.
pub async fn attest(
    state: &AppState,
    user_id: &UserId,
    consent: Option<Consent<'_>>,
) -> ApiResult<JsonObject> {
    let _writing = state.identities.writes.lock().await;
    attest_locked(state, user_id, consent).await
}

/// [`attest`] for a caller that holds `state.identities.writes`: identity changes are
/// serialized, so two of them never read the same previous attestation.
pub(crate) async fn attest_locked(
    state: &AppState,
    user_id: &UserId,
    consent: Option<Consent<'_>>,
) -> ApiResult<JsonObject> {
    // Issue times of one user strictly increase, so the newest is always the current one.
    let previous = state.store.attestation(user_id).await?;
    let issued_ts = now_ms().max(previous.as_ref().map_or(0, |row| row.issued_ts) + 1);
    // A key once replaced or revoked is never bound to the user again (spec 16.6): a leaked
    // key cannot be brought back, nor an old rotation replayed.
    if let Some(consent) = consent
        && previous.as_ref().and_then(|row| row.identity_key.as_deref())
            != Some(consent.identity_key)
        && state.store.was_attested(user_id, consent.identity_key).await?
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "key_used_before",
            "this identity key was bound to this account before; use a new one",
        ));
    }
    let attestation = match consent {
        Some(consent) => Attestation {
            user_id: user_id.clone(),
            identity_key: consent.identity_key.to_owned(),
            issued_ts,
            revoked: false,
            binding: Some(consent.binding.to_owned()),
        },
        // A revocation names the key it revokes.
        None => Attestation {
            user_id: user_id.clone(),
            identity_key: previous
                .and_then(|row| row.identity_key)
                .ok_or_else(|| ApiError::not_found("no_identity", "no identity key to revoke"))?,
            issued_ts,
            revoked: true,
            binding: None,
        },
    };
    let signed = attestation.sign(&state.keys.current).map_err(|error| match error {
        AttestationError::Binding => ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_binding",
            "`binding` must be the identity key's signature over the binding to this account",
        ),
        error => ApiError::internal(error),
    })?;
    let current = attestation.usable_key().ok();
    if !state.store.put_attestation(user_id, current, attestation.issued_ts, &signed).await? {
        return Err(ApiError::conflict("the identity changed meanwhile; try again"));
    }
    if let Some(key) = current {
        state.store.remember_attested_key(user_id, key).await?;
    }
    announce(state, user_id, current);
    Ok(signed)
}

/// Tells gateways that a user's identity changed.
fn announce(state: &AppState, user_id: &UserId, identity_key: Option<&str>) {
    state.bus.publish(BusMessage::IdentityUpdate {
        user_id: user_id.clone(),
        identity_key: identity_key.map(str::to_owned),
    });
    if user_id.server_name() == state.server_name {
        tokio::spawn(notify_peers(state.clone(), user_id.clone()));
        // Certificates made with another identity key stop being valid (spec 17.4).
        let (state, user_id) = (state.clone(), user_id.clone());
        tokio::spawn(async move { crate::e2e::device_list_changed(&state, &user_id).await });
    }
}

/// Servers told of one identity change at once.
const NOTIFY_CONCURRENCY: usize = 8;

/// Tells every server sharing a guild with our user that their identity changed (spec 16.2,
/// `POST /identity/notify`), so that they fetch it again now rather than at their next refresh.
/// Best effort: a server not reached learns of it at its next refresh.
async fn notify_peers(state: AppState, user_id: UserId) {
    use futures_util::StreamExt as _;
    let mut servers = std::collections::BTreeSet::new();
    for guild_id in state.store.guilds_of(&user_id).await.unwrap_or_default() {
        if let Ok(guild) = state.guilds.state(&guild_id).await {
            servers.extend(guild.member_servers());
        }
    }
    servers.remove(&state.server_name);
    let body = serde_json::json!({"user_id": user_id}).to_string().into_bytes();
    futures_util::stream::iter(servers)
        .for_each_concurrent(NOTIFY_CONCURRENCY, |server| {
            let (state, body) = (&state, body.clone());
            async move {
                let path = "/_guildhall/v1/identity/notify";
                let sent = state.federation.client.request("POST", &server, path, None, Some(body));
                if let Err(error) = sent.await {
                    tracing::debug!(%server, %error, "identity change not told");
                }
            }
        })
        .await;
}

/// The verified current attestation of `user_id` and its usable identity key.
///
/// For our own users it is the stored one. For others it is fetched from their home server
/// (the greatest `issued_ts` seen wins; a stored newer one is never rolled back). When the home
/// server cannot be reached, a stored copy checked within the last 7 days, or else `presented`
/// if it is valid and issued within the last 7 days, stands in.
pub async fn current(
    state: &AppState,
    user_id: &UserId,
    presented: Option<&JsonObject>,
) -> Result<(JsonObject, String), IdentityError> {
    let invalid = |reason: String| IdentityError::Invalid { user: user_id.clone(), reason };
    let home = user_id.server_name();
    if home == state.server_name {
        let row = state
            .store
            .attestation(user_id)
            .await
            .map_err(|e| invalid(e.to_string()))?
            .ok_or_else(|| IdentityError::NoIdentity(user_id.clone()))?;
        let key = row.identity_key.ok_or_else(|| IdentityError::Revoked(user_id.clone()))?;
        return Ok((row.attestation, key));
    }
    if !state.federation.keys.permits(&home) {
        return Err(IdentityError::Denied(user_id.clone()));
    }
    let fetched = {
        let Ok(_slot) = state.identities.fetches.try_acquire() else {
            return Err(IdentityError::Busy);
        };
        fetch(state, user_id).await
    };
    let stored = state.store.attestation(user_id).await.map_err(|e| invalid(e.to_string()))?;
    let now = now_ms();
    let row = match (fetched, stored) {
        (Ok(()), Some(row)) => row,
        (Ok(()), None) => return Err(IdentityError::NoIdentity(user_id.clone())),
        (Err(FetchError::Unknown), _) => return Err(IdentityError::NoIdentity(user_id.clone())),
        (Err(FetchError::Invalid(reason)), _) => return Err(invalid(reason)),
        (Err(FetchError::Unreachable(_)), Some(row)) if row.checked_ts + OFFLINE_GRACE_MS > now => {
            row
        }
        (Err(FetchError::Unreachable(reason)), _) => {
            let Some(presented) = presented else { return Err(invalid(reason)) };
            let verified = verify(state, user_id, presented).await.map_err(invalid)?;
            if verified.issued_ts + OFFLINE_GRACE_MS < now {
                return Err(invalid(format!("{reason}; the presented attestation is too old")));
            }
            store(state, &verified, presented).await.map_err(|e| invalid(e.to_string()))?;
            state
                .store
                .attestation(user_id)
                .await
                .map_err(|e| invalid(e.to_string()))?
                .ok_or_else(|| IdentityError::NoIdentity(user_id.clone()))?
        }
    };
    let key = row.identity_key.ok_or_else(|| IdentityError::Revoked(user_id.clone()))?;
    Ok((row.attestation, key))
}

/// Checks an attestation of a remote user that came with an answer from their home server (a
/// key query, spec 17.3), keeps it if it is newer than the one held, and returns the current one
/// after that: the newest verified attestation, which may be the one held.
pub async fn accept_served(
    state: &AppState,
    user_id: &UserId,
    served: &JsonObject,
) -> Result<Attestation, String> {
    let verified = verify(state, user_id, served).await?;
    store(state, &verified, served).await.map_err(|e| e.to_string())?;
    let row = state.store.attestation(user_id).await.map_err(|e| e.to_string())?;
    match row {
        Some(row) if row.issued_ts > verified.issued_ts => stored_attestation(&row.attestation)
            .ok_or_else(|| "the attestation held is unreadable".to_owned()),
        _ => Ok(verified),
    }
}

/// The content of an attestation this server already verified (when it issued or stored it).
pub fn stored_attestation(object: &JsonObject) -> Option<Attestation> {
    let mut fields = object.clone();
    fields.remove("signatures");
    serde_json::from_value(Value::Object(fields)).ok()
}

/// Why an attestation fetch gave nothing.
#[derive(Debug)]
enum FetchError {
    /// The home server says it has no identity for the user.
    Unknown,
    /// It answered with something that is not a valid attestation of the user.
    Invalid(String),
    /// It could not be asked (network, policy, server error).
    Unreachable(String),
}

/// Fetches the attestation of a remote user from their home server, verifies it and stores it
/// if it is newer than the one held.
async fn fetch(state: &AppState, user_id: &UserId) -> Result<(), FetchError> {
    let home = user_id.server_name();
    let path = format!("/_guildhall/v1/identity/{user_id}");
    let answer = state
        .federation
        .client
        .request_capped("GET", &home, &path, None, None, MAX_ATTESTATION_ANSWER_BYTES)
        .await
        .map_err(|e| FetchError::Unreachable(e.to_string()))?;
    let body: Value = match answer.status {
        200 => serde_json::from_slice(&answer.body)
            .map_err(|e| FetchError::Invalid(format!("not JSON: {e}")))?,
        404 => return Err(FetchError::Unknown),
        status => return Err(FetchError::Unreachable(format!("{home} answered {status}"))),
    };
    let object = body
        .get("attestation")
        .and_then(Value::as_object)
        .ok_or_else(|| FetchError::Invalid("the answer holds no attestation".into()))?;
    let verified = verify(state, user_id, object).await.map_err(FetchError::Invalid)?;
    store(state, &verified, object).await.map_err(|e| FetchError::Unreachable(e.to_string()))
}

/// Checks an attestation of `user_id` with its home server's keys usable when it was issued.
async fn verify(
    state: &AppState,
    user_id: &UserId,
    object: &JsonObject,
) -> Result<Attestation, String> {
    let issued_ts = object.get("issued_ts").and_then(Value::as_u64).unwrap_or(0);
    let home = user_id.server_name();
    let keys = state.federation.keys.event_keys(std::slice::from_ref(&home), issued_ts).await;
    let attestation = Attestation::verify(object, &keys, now_ms()).map_err(|e| e.to_string())?;
    if &attestation.user_id != user_id {
        return Err(format!("the attestation is of {}", attestation.user_id));
    }
    Ok(attestation)
}

async fn store(
    state: &AppState,
    attestation: &Attestation,
    object: &JsonObject,
) -> Result<(), sqlx::Error> {
    let user_id = &attestation.user_id;
    let key = attestation.usable_key().ok();
    state.store.put_attestation(user_id, key, attestation.issued_ts, object).await?;
    Ok(())
}

/// Learns, in the background, the identities of remote users this server meets (guild members,
/// DM partners), so member lists and profiles can show them. Bounded: a full queue drops the
/// request; a user is asked about at most once a minute, and a user whose key is known only
/// once an hour.
#[derive(Debug, Clone)]
pub struct Directory {
    queue: mpsc::Sender<Lookup>,
    asked: moka::sync::Cache<UserId, ()>,
    notified: moka::sync::Cache<UserId, ()>,
    /// Taken once by [`Directory::run`].
    receiver: Arc<std::sync::Mutex<Option<mpsc::Receiver<Lookup>>>>,
    /// Held while this server changes an identity (attestations, linked accounts).
    pub(crate) writes: Arc<tokio::sync::Mutex<()>>,
    /// Identity fetches for key logins under way.
    fetches: Arc<tokio::sync::Semaphore>,
}

/// A user to look up, and whether to fetch even a fresh copy.
type Lookup = (UserId, bool);

impl Default for Directory {
    fn default() -> Self {
        let (queue, receiver) = mpsc::channel(LEARN_QUEUE);
        Self {
            queue,
            asked: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(ASK_AGAIN_AFTER)
                .build(),
            notified: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(ASK_AGAIN_AFTER)
                .build(),
            receiver: Arc::new(std::sync::Mutex::new(Some(receiver))),
            writes: Arc::default(),
            fetches: Arc::new(tokio::sync::Semaphore::new(MAX_LOGIN_FETCHES)),
        }
    }
}

impl Directory {
    /// Asks for `user_id`'s identity to be learned (or refreshed), unless it was asked for
    /// recently. Never waits.
    pub fn meet(&self, user_id: &UserId) {
        if self.asked.contains_key(user_id) {
            return;
        }
        if self.queue.try_send((user_id.clone(), false)).is_ok() {
            self.asked.insert(user_id.clone(), ());
        }
    }

    /// `user_id`'s home server says their identity changed: fetch it again now, however fresh
    /// the copy held (at most once a minute per user, like [`Directory::meet`]).
    pub fn changed(&self, user_id: &UserId) {
        if self.notified.contains_key(user_id) {
            return;
        }
        if self.queue.try_send((user_id.clone(), true)).is_ok() {
            self.notified.insert(user_id.clone(), ());
        }
    }

    /// Works the queue until the server stops.
    pub async fn run(state: AppState) {
        let Some(mut receiver) =
            state.identities.receiver.lock().ok().and_then(|mut slot| slot.take())
        else {
            return;
        };
        // Every remote user who joins a guild we hold is met.
        let mut bus = state.bus.subscribe();
        let directory = state.identities.clone();
        let me = state.server_name.clone();
        tokio::spawn(async move {
            loop {
                match bus.recv().await {
                    Ok(BusMessage::GuildEvent(event))
                        if matches!(event.content, EventContent::MemberJoin(_))
                            && event.sender.server_name() != me =>
                    {
                        directory.meet(&event.sender);
                    }
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        let permits = Arc::new(tokio::sync::Semaphore::new(LEARN_CONCURRENCY));
        while let Some((user_id, force)) = receiver.recv().await {
            if user_id.server_name() == state.server_name {
                continue;
            }
            let Ok(permit) = Arc::clone(&permits).acquire_owned().await else { return };
            let state = state.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let before = state.store.attestation(&user_id).await.ok().flatten();
                // A known identity is asked for again only once it is an hour old, unless its
                // home server said it changed.
                if !force
                    && before.as_ref().is_some_and(|row| {
                        row.identity_key.is_some() && row.checked_ts + REFRESH_AFTER_MS > now_ms()
                    })
                {
                    return;
                }
                match fetch(&state, &user_id).await {
                    Ok(()) => {
                        let after = state.store.attestation(&user_id).await.ok().flatten();
                        let changed = before.map(|row| row.issued_ts)
                            != after.as_ref().map(|row| row.issued_ts);
                        if changed && let Some(row) = after {
                            announce(&state, &user_id, row.identity_key.as_deref());
                        }
                    }
                    Err(error) => tracing::debug!(%user_id, ?error, "identity not learned"),
                }
            });
        }
    }
}

/// Checks an account move and the two attestations it rests on (spec 16.5): each attestation
/// signed by its user's home server (one our policy allows) with a key usable when it was
/// issued, the move signed by the identity key both name and not made in the future. What this
/// server knows counts too: an attestation of `from` newer than the one carried that revokes the
/// key or names another refuses the move (a key given up cannot move the account it left), as
/// does a `from` that already moved elsewhere.
pub async fn verify_move(
    keys: &guildhall_federation::KeyFetcher,
    store: &crate::store::Store,
    proof: &MoveProof,
) -> Result<AccountMove, String> {
    let now = now_ms();
    let mut attestations = Vec::with_capacity(2);
    for object in [&proof.from_attestation, &proof.to_attestation] {
        let user =
            object.get("user_id").and_then(Value::as_str).and_then(|u| u.parse::<UserId>().ok());
        let user = user.ok_or("an attestation names no user")?;
        let issued_ts = object.get("issued_ts").and_then(Value::as_u64).unwrap_or(0);
        let home = user.server_name();
        if !keys.permits(&home) {
            return Err(format!("this server does not federate with {home}"));
        }
        let home_keys = keys.event_keys(std::slice::from_ref(&home), issued_ts).await;
        let attestation = Attestation::verify(object, &home_keys, now)
            .map_err(|e| format!("attestation of {user}: {e}"))?;
        attestations.push(attestation);
    }
    let moved = AccountMove::verify(&proof.statement, &attestations[0], &attestations[1])
        .map_err(|e| format!("account move: {e}"))?;
    if moved.ts > now + attestation::MAX_SKEW_MS {
        return Err("the move is dated in the future".into());
    }
    let held = store.attestation(&moved.from).await.map_err(|e| e.to_string())?;
    if let Some(held) = held.filter(|held| held.issued_ts > attestations[0].issued_ts)
        && held.identity_key.as_deref() != Some(moved.identity_key.as_str())
    {
        return Err(format!("{} no longer has that identity key", moved.from));
    }
    let moved_to = store.moved_to(&moved.from).await.map_err(|e| e.to_string())?;
    if moved_to.is_some_and(|to| to != moved.to) {
        return Err(format!("{} moved elsewhere already", moved.from));
    }
    Ok(moved)
}

/// How long a login challenge stays usable (spec 16.4: at most 5 minutes).
pub const CHALLENGE_TTL_MS: u64 = 5 * 60 * 1000;

/// A login challenge for `user_id` (spec 16.4). Nothing is stored: the challenge carries its
/// expiry and a MAC binding it to the user under a key derived from this server's signing key
/// (`expiry (8 bytes) ‖ random (8) ‖ HMAC-SHA256(key, user ‖ expiry ‖ random)[..16]`), so asking
/// for challenges fills no table. Only a used one is remembered, until it expires.
pub fn issue_challenge(state: &AppState, user_id: &UserId) -> (Challenge, u64) {
    let expires_ts = now_ms() + CHALLENGE_TTL_MS;
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&expires_ts.to_be_bytes());
    bytes[8..16].copy_from_slice(&rand::random::<[u8; 8]>());
    let tag = challenge_mac(state, user_id, &bytes[..16]).finalize().into_bytes();
    bytes[16..].copy_from_slice(&tag[..16]);
    let text = guildhall_spec::base64url::encode(bytes);
    // 32 bytes of base64url is always a valid challenge.
    #[allow(clippy::expect_used)]
    let challenge = Challenge::parse(&text).expect("32 bytes");
    (challenge, expires_ts)
}

/// Whether `challenge` was issued by this server for `user_id`, is unexpired and was not used
/// before; it counts as used from now on whatever the answer.
pub async fn consume_challenge(
    state: &AppState,
    challenge: &Challenge,
    user_id: &UserId,
) -> ApiResult<bool> {
    let Some(bytes) = guildhall_spec::base64url::decode_array::<32>(challenge.as_str()) else {
        return Ok(false);
    };
    let mut expiry = [0u8; 8];
    expiry.copy_from_slice(&bytes[..8]);
    let expires_ts = u64::from_be_bytes(expiry);
    // Compared in constant time.
    let genuine =
        challenge_mac(state, user_id, &bytes[..16]).verify_truncated_left(&bytes[16..]).is_ok();
    if !genuine || expires_ts < now_ms() || expires_ts > now_ms() + CHALLENGE_TTL_MS {
        return Ok(false);
    }
    Ok(state.store.use_challenge(challenge.as_str(), expires_ts).await?)
}

/// The MAC of a challenge's first 16 bytes for `user_id`, before finalizing.
fn challenge_mac(state: &AppState, user_id: &UserId, head: &[u8]) -> Hmac<Sha256> {
    let key = Sha256::new()
        .chain_update(b"guildhall login challenges v1")
        .chain_update(state.keys.current.seed())
        .finalize();
    // HMAC takes keys of any length.
    #[allow(clippy::expect_used)]
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&key).expect("any key length");
    mac.update(user_id.as_str().as_bytes());
    mac.update(&[0]);
    mac.update(head);
    mac
}
