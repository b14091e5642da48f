//! End-to-end encryption endpoints (spec 17): keys a device publishes, key queries and claims
//! for local and remote users, and to-device messages with their inboxes. Clients call
//! `/api/v1`; homeservers call each other under `/_guildhall/v1/user`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use futures_util::StreamExt as _;
use guildhall_identity::device::DeviceCertificate;
use guildhall_identity::e2e::device_list_hash;
use guildhall_spec::event::JsonObject;
use guildhall_spec::{DeviceId, ServerName, UserId, base64url};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use super::federation::{Federated, sender_from_origin};
use super::{AuthUser, Json};
use crate::AppState;
use crate::e2e::{self, Outgoing, OutgoingMessage};
use crate::error::{ApiError, ApiResult};
use crate::identity;
use crate::store::{KeysRefused, Reservation, now_ms};

/// How long one remote server may take to answer.
const REMOTE_TIMEOUT: Duration = Duration::from_secs(20);
/// The largest key-query answer read from a server per user asked about (100 certificates
/// and an attestation).
const MAX_ANSWER_BYTES_PER_USER: usize = 128 << 10;
/// The largest claim or send answer read from a server.
const MAX_SMALL_ANSWER_BYTES: usize = 1 << 20;
/// The largest federated to-device request (a client's send is at most 1 MiB).
const MAX_FEDERATED_SEND: usize = 2 << 20;

// ----- Keys a device publishes -----

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UploadBody {
    #[serde(default)]
    one_time_keys: Vec<JsonObject>,
    #[serde(default)]
    fallback_key: Option<JsonObject>,
}

/// `POST /api/v1/keys/upload`: one-time keys and a fallback key of the login's device.
pub(super) async fn upload_keys(
    State(state): State<AppState>,
    auth: AuthUser,
    Json(body): Json<UploadBody>,
) -> ApiResult<Json<Value>> {
    let device = e2e::login_device(&state, &auth.user_id, &auth.session_id).await?;
    if body.one_time_keys.len() > e2e::MAX_KEYS_PER_UPLOAD {
        return Err(ApiError::bad_request(format!(
            "at most {} one-time keys per upload",
            e2e::MAX_KEYS_PER_UPLOAD
        )));
    }
    // Up to 101 signatures: checked on the blocking pool.
    let (user_id, signer) = (auth.user_id.clone(), device.clone());
    let checked = tokio::task::spawn_blocking(move || -> ApiResult<_> {
        let mut keys = Vec::with_capacity(body.one_time_keys.len());
        for object in body.one_time_keys {
            let key = e2e::check_key_object(&object, &user_id, &signer, false)?;
            keys.push((key.key_id, Value::Object(object)));
        }
        if let Some(fallback) = &body.fallback_key {
            e2e::check_key_object(fallback, &user_id, &signer, true)?;
        }
        Ok((keys, body.fallback_key.map(Value::Object)))
    });
    let (keys, fallback) = checked.await.map_err(ApiError::internal)??;
    let stored = state
        .store
        .put_device_keys(
            &auth.user_id,
            device.device_id.as_str(),
            &device.device_keys.ed25519,
            &keys,
            fallback.as_ref(),
            e2e::MAX_UNCLAIMED_KEYS,
        )
        .await?;
    match stored {
        Ok((count, fallback)) => {
            Ok(Json(json!({"one_time_key_count": count, "fallback_key": fallback})))
        }
        Err(KeysRefused::Conflict(key_id)) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_key",
            format!("key {key_id} was uploaded before with another value"),
        )),
        Err(KeysRefused::Rekeyed) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            "the device was certified with other keys meanwhile; sign the keys with its new key",
        )),
        Err(KeysRefused::TooMany) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "too_many_keys",
            format!("a device holds at most {} unclaimed one-time keys", e2e::MAX_UNCLAIMED_KEYS),
        )),
    }
}

// ----- Key queries -----

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct QueryBody {
    users: Vec<UserId>,
}

/// `POST /api/v1/keys/query`: the device lists of local and remote users, remote ones asked
/// for now and checked before they are passed on.
pub(super) async fn query_keys(
    State(state): State<AppState>,
    auth: AuthUser,
    Json(body): Json<QueryBody>,
) -> ApiResult<Json<Value>> {
    e2e::login_device(&state, &auth.user_id, &auth.session_id).await?;
    let users: BTreeSet<UserId> = body.users.into_iter().collect();
    if users.is_empty() || users.len() > e2e::MAX_QUERY_USERS {
        return Err(ApiError::bad_request(format!(
            "1 to {} users per query",
            e2e::MAX_QUERY_USERS
        )));
    }
    let mut answers = JsonObject::new();
    let mut failures = JsonObject::new();
    let mut remote: BTreeMap<ServerName, Vec<UserId>> = BTreeMap::new();
    for user_id in users {
        if user_id.server_name() != state.server_name {
            remote.entry(user_id.server_name()).or_default().push(user_id);
            if remote.len() > e2e::MAX_REMOTE_SERVERS {
                return Err(too_many_servers());
            }
            continue;
        }
        let list = e2e::local_device_list(&state, &user_id).await?;
        match list.query_answer() {
            Some(answer) => answers.insert(user_id.to_string(), answer),
            None if state.store.user(&user_id).await?.is_none() => {
                failures.insert(user_id.to_string(), failure("unknown_user", "no such user"))
            }
            None => failures
                .insert(user_id.to_string(), failure("no_identity", "no usable identity key")),
        };
    }
    let asked = futures_util::stream::iter(remote)
        .map(|(server, users)| {
            let state = &state;
            async move { (query_remote(state, &server, &users).await, users) }
        })
        .buffer_unordered(e2e::MAX_REMOTE_SERVERS)
        .collect::<Vec<_>>()
        .await;
    for (answer, users) in asked {
        match answer {
            Ok(mut checked) => {
                for user_id in users {
                    let key = user_id.to_string();
                    match checked.remove(&user_id) {
                        Some(Ok(answer)) => answers.insert(key, answer),
                        Some(Err(reason)) if reason == NO_IDENTITY => {
                            failures.insert(key, failure("no_identity", &reason))
                        }
                        Some(Err(reason)) => {
                            failures.insert(key, failure("invalid_answer", &reason))
                        }
                        None => failures.insert(
                            key,
                            failure("no_identity", "unknown, or no usable identity key"),
                        ),
                    };
                }
            }
            Err((code, reason)) => {
                for user_id in users {
                    failures.insert(user_id.to_string(), failure(code, &reason));
                }
            }
        }
    }
    // The asker hears of later changes to the lists it got (spec 17.4).
    let answered: Vec<UserId> = answers.keys().filter_map(|user| user.parse().ok()).collect();
    state.store.watch_device_lists(&answered, &format!("user:{}", auth.user_id)).await?;
    Ok(Json(json!({"users": answers, "failures": failures})))
}

fn too_many_servers() -> ApiError {
    ApiError::bad_request(format!(
        "users of at most {} other servers per request",
        e2e::MAX_REMOTE_SERVERS
    ))
}

fn failure(code: &str, message: &str) -> Value {
    json!({"code": code, "message": message})
}

/// Why a remote user whose identity key is revoked is not answered.
const NO_IDENTITY: &str = "the identity key is revoked";

/// What one server answered about its users: per user, the checked answer or why it failed.
type CheckedAnswers = BTreeMap<UserId, Result<Value, String>>;

/// Asks `server` for its users' device lists and checks every answer.
async fn query_remote(
    state: &AppState,
    server: &ServerName,
    users: &[UserId],
) -> Result<CheckedAnswers, (&'static str, String)> {
    // About 1 KiB per certificate: the answer's bound follows what was asked.
    let cap = users.len().saturating_mul(MAX_ANSWER_BYTES_PER_USER);
    let path = "/_guildhall/v1/user/keys/query";
    let body = match remote_call(state, server, path, &json!({"users": users}), cap).await {
        Err(("rate_limited", reason)) => return Err(("unreachable", reason)),
        other => other?,
    };
    let Some(served) = body.get("users").and_then(Value::as_object) else {
        return Err(("invalid_answer", format!("{server} answered without users")));
    };
    let mut checked = BTreeMap::new();
    for user_id in users {
        if let Some(answer) = served.get(user_id.as_str()) {
            checked.insert(user_id.clone(), check_served(state, user_id, answer).await);
        }
    }
    Ok(checked)
}

/// Checks one user's device list as their home server served it: the attestation with the
/// server's keys, every certificate with the attestation, and the hash with the certificates.
async fn check_served(state: &AppState, user_id: &UserId, answer: &Value) -> Result<Value, String> {
    let attestation = answer
        .get("attestation")
        .and_then(Value::as_object)
        .ok_or("the answer holds no attestation")?;
    let current = identity::accept_served(state, user_id, attestation).await?;
    if current.usable_key().is_err() {
        return Err(NO_IDENTITY.into());
    }
    let certificates: Vec<JsonObject> = answer
        .get("devices")
        .and_then(Value::as_array)
        .ok_or("the answer holds no devices")?
        .iter()
        .map(|device| device.as_object().cloned().ok_or("a device is not an object"))
        .collect::<Result<_, _>>()?;
    if certificates.len() > 100 {
        return Err("more than 100 devices".into());
    }
    let devices = verify_certificates(certificates.clone(), current).await?;
    let unique: BTreeSet<&str> = devices.iter().map(|d| d.device_id.as_str()).collect();
    if unique.len() != devices.len() {
        return Err("a device id appears twice".into());
    }
    let hash = device_list_hash(&devices);
    if answer.get("device_list_hash").and_then(Value::as_str) != Some(hash.as_str()) {
        return Err("the device-list hash does not match the devices".into());
    }
    let attestation =
        served_attestation(state, user_id).await.unwrap_or_else(|| attestation.clone());
    Ok(json!({"attestation": attestation, "devices": certificates, "device_list_hash": hash}))
}

/// Checks certificates against an attestation on the blocking pool: a user may have 100
/// devices and a query may name 100 users, too many signature checks for an async worker.
async fn verify_certificates(
    certificates: Vec<JsonObject>,
    current: guildhall_identity::attestation::Attestation,
) -> Result<Vec<DeviceCertificate>, String> {
    let now = now_ms();
    tokio::task::spawn_blocking(move || {
        certificates
            .iter()
            .map(|certificate| {
                DeviceCertificate::verify(certificate, &current, now).map_err(|e| e.to_string())
            })
            .collect()
    })
    .await
    .map_err(|e| e.to_string())?
}

/// The attestation held for a remote user (after [`identity::accept_served`], the newest).
async fn served_attestation(state: &AppState, user_id: &UserId) -> Option<JsonObject> {
    state.store.attestation(user_id).await.ok().flatten().map(|row| row.attestation)
}

/// A signed POST/PUT to another server, its JSON answer, or a failure code for the client.
async fn remote_call(
    state: &AppState,
    server: &ServerName,
    path: &str,
    body: &Value,
    cap: usize,
) -> Result<Value, (&'static str, String)> {
    remote_request(state, "POST", server, path, body, cap).await
}

async fn remote_request(
    state: &AppState,
    method: &str,
    server: &ServerName,
    path: &str,
    body: &Value,
    cap: usize,
) -> Result<Value, (&'static str, String)> {
    if !state.federation.enabled || !state.federation.keys.permits(server) {
        return Err(("denied", format!("this server does not federate with {server}")));
    }
    let sent = state.federation.client.request_capped(
        method,
        server,
        path,
        None,
        Some(body.to_string().into_bytes()),
        cap,
    );
    let answer = match tokio::time::timeout(REMOTE_TIMEOUT, sent).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(error)) => return Err(("unreachable", format!("{server}: {error}"))),
        Err(_) => return Err(("unreachable", format!("{server} did not answer in time"))),
    };
    if answer.status == 429 {
        return Err(("rate_limited", format!("{server} refused: too many claims")));
    }
    if !(200..300).contains(&answer.status) {
        let code = serde_json::from_slice::<Value>(&answer.body)
            .ok()
            .and_then(|body| body.get("code").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_default();
        return Err(("unreachable", format!("{server} answered {} {code}", answer.status)));
    }
    serde_json::from_slice(&answer.body)
        .map_err(|e| ("invalid_answer", format!("{server} answered something not JSON: {e}")))
}

// ----- Key claims -----

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ClaimBody {
    one_time_keys: BTreeMap<UserId, Vec<DeviceId>>,
}

/// A claim names at most 100 devices, and no more devices of one user than the claim limit's
/// burst (such a claim could never be granted).
fn check_claim_size(state: &AppState, wanted: &BTreeMap<UserId, Vec<DeviceId>>) -> ApiResult<()> {
    let devices: usize = wanted.values().map(Vec::len).sum();
    if devices > e2e::MAX_CLAIM_DEVICES {
        return Err(ApiError::bad_request(format!(
            "at most {} devices per claim",
            e2e::MAX_CLAIM_DEVICES
        )));
    }
    let per_user = state.e2e.max_claim_per_user();
    if wanted.values().any(|devices| devices.len() > per_user) {
        return Err(ApiError::bad_request(format!(
            "at most {per_user} devices of one user per claim; claim the rest later"
        )));
    }
    let servers: BTreeSet<ServerName> = wanted.keys().map(UserId::server_name).collect();
    if servers.len() > e2e::MAX_REMOTE_SERVERS + 1 {
        return Err(too_many_servers());
    }
    Ok(())
}

/// `POST /api/v1/keys/claim`: one key of each listed device, local or remote.
pub(super) async fn claim_keys(
    State(state): State<AppState>,
    auth: AuthUser,
    Json(body): Json<ClaimBody>,
) -> ApiResult<Json<Value>> {
    e2e::login_device(&state, &auth.user_id, &auth.session_id).await?;
    check_claim_size(&state, &body.one_time_keys)?;
    let mut wanted = body.one_time_keys;
    for devices in wanted.values_mut() {
        devices.sort();
        devices.dedup();
    }
    let (local, remote): (BTreeMap<_, _>, BTreeMap<_, _>) =
        wanted.into_iter().partition(|(user_id, _)| user_id.server_name() == state.server_name);
    let mut claimed = match e2e::claim_local(&state, &auth.user_id, None, &local).await? {
        Ok(claimed) => claimed
            .into_iter()
            .map(|(user, keys)| (user.to_string(), Value::Object(keys)))
            .collect::<JsonObject>(),
        Err(retry_after_ms) => return Err(ApiError::rate_limited(retry_after_ms)),
    };
    let mut failures = JsonObject::new();
    let mut by_server: BTreeMap<ServerName, BTreeMap<UserId, Vec<DeviceId>>> = BTreeMap::new();
    for (user_id, devices) in remote {
        by_server.entry(user_id.server_name()).or_default().insert(user_id, devices);
    }
    let asked = futures_util::stream::iter(by_server)
        .map(|(server, wanted)| {
            let state = &state;
            let body = json!({"claimer": auth.user_id, "one_time_keys": wanted});
            async move {
                let path = "/_guildhall/v1/user/keys/claim";
                (remote_call(state, &server, path, &body, MAX_SMALL_ANSWER_BYTES).await, wanted)
            }
        })
        .buffer_unordered(e2e::MAX_REMOTE_SERVERS)
        .collect::<Vec<_>>()
        .await;
    for (answer, wanted) in asked {
        match answer {
            Ok(answer) => {
                let keys = answer.get("one_time_keys").and_then(Value::as_object);
                for (user_id, devices) in wanted {
                    // Only what was asked for is passed on; the client checks each signature.
                    let served =
                        keys.and_then(|keys| keys.get(user_id.as_str())).and_then(Value::as_object);
                    let picked: JsonObject = devices
                        .iter()
                        .filter_map(|device| {
                            let object = served?.get(device.as_str())?.as_object()?;
                            Some((device.to_string(), Value::Object(object.clone())))
                        })
                        .collect();
                    if !picked.is_empty() {
                        claimed.insert(user_id.to_string(), Value::Object(picked));
                    }
                }
            }
            Err((code, reason)) => {
                for user_id in wanted.keys() {
                    failures.insert(user_id.to_string(), failure(code, &reason));
                }
            }
        }
    }
    Ok(Json(json!({"one_time_keys": claimed, "failures": failures})))
}

// ----- To-device messages -----

/// `PUT /api/v1/users/@me/to_device/{txn_id}`: encrypted messages to devices of up to 10
/// users, local and remote, each user's share delivered whole or refused whole.
pub(super) async fn send_to_device(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(txn_id): Path<String>,
    Json(outgoing): Json<Outgoing>,
) -> ApiResult<Json<Value>> {
    check_txn_id(&txn_id)?;
    let device = e2e::login_device(&state, &auth.user_id, &auth.session_id).await?;
    // Transaction ids are the login's: a later login that takes the same device id starts
    // afresh.
    let scope = format!("login:{}", auth.session_id);
    let hash = e2e::request_hash(&json!(outgoing));
    let work = async {
        e2e::check_outgoing(&outgoing, &auth.user_id, device.device_id.as_str())?;
        e2e::check_sender_key(&outgoing, &device)?;
        e2e::take_send_tokens(&state, &auth.user_id, None, &outgoing)
            .map_err(ApiError::rate_limited)?;
        let remote_txn = base64url::encode(Sha256::digest(format!("{scope}\n{txn_id}")));
        send(&state, &auth.user_id, &device.device_id, &outgoing, &remote_txn).await
    };
    once(&state, &scope, &txn_id, &hash, work).await.map(Json)
}

/// Carries out a send once per transaction id (spec 17.3): a replay of the same request gets
/// the first answer, after the caller's checks; another request under the same id is a
/// conflict. A send that fails as a whole leaves no answer behind, so it may be tried again.
async fn once(
    state: &AppState,
    scope: &str,
    txn_id: &str,
    hash: &str,
    work: impl std::future::Future<Output = ApiResult<Value>>,
) -> ApiResult<Value> {
    match state.store.reserve_txn(scope, txn_id, hash).await? {
        Reservation::Answered(answer) => return Ok(answer),
        Reservation::Conflict => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "txn_conflict",
                "this transaction id was used for another request",
            ));
        }
        Reservation::InProgress => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "txn_in_progress",
                "the first request with this transaction id is still being carried out",
            ));
        }
        Reservation::New => {}
    }
    match work.await {
        Ok(answer) => {
            state.store.complete_txn(scope, txn_id, &answer).await?;
            Ok(answer)
        }
        Err(error) => {
            state.store.release_txn(scope, txn_id).await?;
            Err(error)
        }
    }
}

/// Delivers a checked send: local users' shares here, remote users' shares to their
/// homeservers while the request waits (each under `remote_txn`, the same for every retry).
async fn send(
    state: &AppState,
    sender: &UserId,
    sender_device: &DeviceId,
    outgoing: &Outgoing,
    remote_txn: &str,
) -> ApiResult<Value> {
    let mut results = e2e::deliver_to_locals(state, sender, sender_device, outgoing).await?;
    // The sender's other devices are recipients too: a send that leaves them out is told so.
    if !outgoing.device_lists.contains_key(sender) {
        let own = e2e::local_device_list(state, sender).await?;
        if own.devices.iter().any(|device| &device.device_id != sender_device) {
            results
                .insert(sender.clone(), json!({"status": "stale", "device_list_hash": own.hash}));
        }
    }
    let mut by_server: BTreeMap<ServerName, Outgoing> = BTreeMap::new();
    for (user_id, hash) in &outgoing.device_lists {
        if user_id.server_name() == state.server_name {
            continue;
        }
        let share = by_server
            .entry(user_id.server_name())
            .or_insert_with(|| Outgoing { messages: Vec::new(), device_lists: BTreeMap::new() });
        share.device_lists.insert(user_id.clone(), hash.clone());
        share
            .messages
            .extend(outgoing.messages.iter().filter(|m| &m.recipient == user_id).cloned());
    }
    let sent = futures_util::stream::iter(by_server)
        .map(|(server, share)| async move {
            let body = json!({
                "sender": sender,
                "sender_device": sender_device,
                "messages": share.messages,
                "device_lists": share.device_lists,
            });
            let path = format!("/_guildhall/v1/user/to_device/{remote_txn}");
            let answer =
                remote_request(state, "PUT", &server, &path, &body, MAX_SMALL_ANSWER_BYTES).await;
            (answer, share)
        })
        .buffer_unordered(e2e::MAX_RECIPIENT_USERS)
        .collect::<Vec<_>>()
        .await;
    for (answer, share) in sent {
        for user_id in share.device_lists.keys() {
            let result = match &answer {
                Ok(answer) => answer
                    .get("results")
                    .and_then(|results| results.get(user_id.as_str()))
                    .and_then(remote_result)
                    .unwrap_or_else(|| {
                        json!({"status": "unreachable", "message": "the server gave no answer for this user"})
                    }),
                Err((_, reason)) => json!({"status": "unreachable", "message": reason}),
            };
            results.insert(user_id.clone(), result);
        }
    }
    Ok(json!({"results": results}))
}

/// A remote server's result for one user, if it is one the spec allows.
fn remote_result(result: &Value) -> Option<Value> {
    match result.get("status")?.as_str()? {
        "delivered" => Some(json!({"status": "delivered"})),
        "inbox_full" => Some(json!({"status": "inbox_full"})),
        "stale" => {
            let hash = result.get("device_list_hash")?.as_str()?;
            Some(json!({"status": "stale", "device_list_hash": hash}))
        }
        _ => None,
    }
}

fn check_txn_id(txn_id: &str) -> ApiResult<()> {
    let valid = (1..=64).contains(&txn_id.len())
        && txn_id.bytes().all(|b| b.is_ascii_alphanumeric() || b"._~-".contains(&b));
    if valid { Ok(()) } else { Err(ApiError::invalid_id("txn_id must be [A-Za-z0-9._~-]{1,64}")) }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct InboxQuery {
    limit: Option<String>,
}

/// `GET /api/v1/users/@me/to_device`: the login's device's inbox, oldest first.
pub(super) async fn inbox(
    State(state): State<AppState>,
    auth: AuthUser,
    Query(query): Query<InboxQuery>,
) -> ApiResult<Json<Value>> {
    let limit = match query.limit {
        None => e2e::MAX_INBOX_READ,
        Some(text) => text.parse().unwrap_or(0),
    };
    if !(1..=e2e::MAX_INBOX_READ).contains(&limit) {
        return Err(ApiError::bad_request(format!("limit is 1 to {}", e2e::MAX_INBOX_READ)));
    }
    let device = e2e::login_device(&state, &auth.user_id, &auth.session_id).await?;
    let (items, more) = state.store.inbox(&auth.user_id, device.device_id.as_str(), limit).await?;
    let messages: Vec<Value> = items.iter().map(e2e::inbox_view).collect();
    Ok(Json(json!({"messages": messages, "more": more})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AckBody {
    up_to: i64,
}

/// `POST /api/v1/users/@me/to_device/ack`: deletes the device's messages up to an id.
pub(super) async fn ack(
    State(state): State<AppState>,
    auth: AuthUser,
    Json(body): Json<AckBody>,
) -> ApiResult<Json<Value>> {
    let device = e2e::login_device(&state, &auth.user_id, &auth.session_id).await?;
    let deleted =
        state.store.ack_inbox(&auth.user_id, device.device_id.as_str(), body.up_to).await?;
    Ok(Json(json!({"deleted": deleted})))
}

// ----- Federation -----

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FederatedQuery {
    users: Vec<UserId>,
}

/// `POST /_guildhall/v1/user/keys/query`: device lists of our users for another server.
pub(super) async fn federated_query(
    State(state): State<AppState>,
    request: Federated,
) -> ApiResult<Json<Value>> {
    let body: FederatedQuery = request.json()?;
    let users: BTreeSet<UserId> = body.users.into_iter().collect();
    if users.is_empty() || users.len() > e2e::MAX_QUERY_USERS {
        return Err(invalid_body(format!("1 to {} users per query", e2e::MAX_QUERY_USERS)));
    }
    let mut answers = JsonObject::new();
    let mut answered = Vec::new();
    for user_id in users.iter().filter(|user| user.server_name() == state.server_name) {
        if let Some(answer) = e2e::local_device_list(&state, user_id).await?.query_answer() {
            answers.insert(user_id.to_string(), answer);
            answered.push(user_id.clone());
        }
    }
    state.store.watch_device_lists(&answered, &format!("server:{}", request.origin)).await?;
    Ok(Json(json!({"users": answers})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FederatedClaim {
    claimer: UserId,
    one_time_keys: BTreeMap<UserId, Vec<DeviceId>>,
}

/// `POST /_guildhall/v1/user/keys/claim`: keys of our users' devices for a user of another
/// server, within the claim limits of both the claimer and the claiming server.
pub(super) async fn federated_claim(
    State(state): State<AppState>,
    request: Federated,
) -> ApiResult<Json<Value>> {
    let mut body: FederatedClaim = request.json()?;
    sender_from_origin(&body.claimer, &request.origin)?;
    check_claim_size(&state, &body.one_time_keys)
        .map_err(|error| invalid_body(error.message().to_owned()))?;
    body.one_time_keys.retain(|user_id, _| user_id.server_name() == state.server_name);
    for devices in body.one_time_keys.values_mut() {
        devices.sort();
        devices.dedup();
    }
    match e2e::claim_local(&state, &body.claimer, Some(&request.origin), &body.one_time_keys)
        .await?
    {
        Ok(claimed) => Ok(Json(json!({"one_time_keys": claimed}))),
        Err(retry_after_ms) => Err(ApiError::rate_limited(retry_after_ms)),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FederatedSend {
    sender: UserId,
    sender_device: DeviceId,
    messages: Vec<OutgoingMessage>,
    device_lists: BTreeMap<UserId, String>,
}

/// `PUT /_guildhall/v1/user/to_device/{txn_id}`: another server's user sends to our users'
/// devices.
pub(super) async fn federated_send(
    State(state): State<AppState>,
    Path(txn_id): Path<String>,
    request: Federated<MAX_FEDERATED_SEND>,
) -> ApiResult<Json<Value>> {
    check_txn_id(&txn_id)?;
    let raw: Value = request.json()?;
    let body: FederatedSend =
        serde_json::from_value(raw.clone()).map_err(|e| invalid_body(e.to_string()))?;
    sender_from_origin(&body.sender, &request.origin)?;
    let outgoing = Outgoing { messages: body.messages, device_lists: body.device_lists };
    if let Some(user) = outgoing.device_lists.keys().find(|u| u.server_name() != state.server_name)
    {
        return Err(invalid_body(format!("{user} is not a user of this server")));
    }
    let scope = format!("server:{}", request.origin);
    let hash = e2e::request_hash(&raw);
    let work = async {
        e2e::check_outgoing(&outgoing, &body.sender, body.sender_device.as_str()).map_err(
            |error| match error.code() {
                "invalid_content" => error,
                _ => invalid_body(error.message().to_owned()),
            },
        )?;
        e2e::take_send_tokens(&state, &body.sender, Some(&request.origin), &outgoing)
            .map_err(ApiError::rate_limited)?;
        let results =
            e2e::deliver_to_locals(&state, &body.sender, &body.sender_device, &outgoing).await?;
        Ok(json!({"results": results}))
    };
    once(&state, &scope, &txn_id, &hash, work).await.map(Json)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DevicesNotify {
    user_id: UserId,
    device_list_hash: String,
}

/// `POST /_guildhall/v1/user/devices/notify`: a user of the requesting server changed their
/// devices; our users' gateways are told.
pub(super) async fn federated_notify(
    State(state): State<AppState>,
    request: Federated,
) -> ApiResult<Json<Value>> {
    let body: DevicesNotify = request.json()?;
    sender_from_origin(&body.user_id, &request.origin)?;
    if base64url::decode_array::<32>(&body.device_list_hash).is_none() {
        return Err(invalid_body("device_list_hash is not a SHA-256 in base64url".into()));
    }
    // Only users someone here asked about or shares a guild with are passed on: a peer cannot
    // make every gateway session look up users nobody here has met.
    let watchers = state.store.device_list_watchers(&body.user_id).await?;
    let known = !watchers.is_empty() || !state.store.guilds_of(&body.user_id).await?.is_empty();
    // A repeated notice of the same hash is not passed on again.
    if known && state.store.swap_device_list_hash(&body.user_id, &body.device_list_hash).await? {
        e2e::publish_update(&state, &body.user_id, &body.device_list_hash, &watchers);
    }
    Ok(Json(json!({})))
}

fn invalid_body(message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_body", message)
}
