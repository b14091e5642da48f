//! Identities on this server (spec chapter 16): attestations issued for our users, attestations
//! of other servers' users fetched and verified, and a directory that learns the identities of
//! the remote users our users meet, in the background.
//!
//! The wire objects and their checks live in `guildhall-identity`; this module stores them,
//! fetches them over federation and decides which one is current.

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use guildhall_identity::attestation::{Attestation, AttestationError};
use guildhall_identity::moves::AccountMove;
use guildhall_spec::UserId;
use guildhall_spec::content::{EventContent, MoveProof};
use guildhall_spec::event::JsonObject;
use serde_json::Value;
use tokio::sync::{broadcast, mpsc};

use crate::AppState;
use crate::bus::BusMessage;
use crate::error::{ApiError, ApiResult};
use crate::store::now_ms;

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
        let code = match error {
            IdentityError::NoIdentity(_) => "no_identity",
            IdentityError::Revoked(_) => "identity_revoked",
            IdentityError::Invalid { .. } => "invalid_attestation",
        };
        ApiError::new(StatusCode::UNAUTHORIZED, code, error.to_string())
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
    // Issue times of one user strictly increase, so the newest is always the current one.
    let previous = state.store.attestation(user_id).await?;
    let issued_ts = now_ms().max(previous.as_ref().map_or(0, |row| row.issued_ts) + 1);
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
    state.store.put_attestation(user_id, current, attestation.issued_ts, &signed).await?;
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
    let fetched = fetch(state, user_id).await;
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
        .request_json::<Value>("GET", &home, &path, None, None)
        .await
        .map_err(|e| FetchError::Unreachable(e.to_string()))?;
    let body = match answer {
        Ok(body) => body,
        Err((404, _)) => return Err(FetchError::Unknown),
        Err((status, _)) => {
            return Err(FetchError::Unreachable(format!("{home} answered {status}")));
        }
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
/// signed by its user's home server with a key usable when it was issued, the move signed by
/// the identity key both name.
pub async fn verify_move(
    keys: &guildhall_federation::KeyFetcher,
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
        let home_keys = keys.event_keys(std::slice::from_ref(&home), issued_ts).await;
        let attestation = Attestation::verify(object, &home_keys, now)
            .map_err(|e| format!("attestation of {user}: {e}"))?;
        attestations.push(attestation);
    }
    AccountMove::verify(&proof.statement, &attestations[0], &attestations[1])
        .map_err(|e| format!("account move: {e}"))
}
