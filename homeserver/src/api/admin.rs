//! Server administration for operators (accounts with `is_admin`): the live federation trust
//! policy (entries, pinned keys, subscribed lists, why a server is allowed or not, per-peer
//! statistics), equivocation evidence, delivery queues and the audit log.

use std::collections::BTreeSet;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use guildhall_federation::TrustMode;
use guildhall_federation::policy::{Action, TrustRules};
use guildhall_spec::ServerName;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{AuthUser, Json};
use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::store::{Audit, TrustEntryRow};
use crate::trust;

async fn require_admin(state: &AppState, auth: &AuthUser) -> ApiResult<()> {
    let user = state
        .store
        .user(&auth.user_id)
        .await?
        .ok_or_else(|| ApiError::unauthorized("account is gone"))?;
    if user.is_admin { Ok(()) } else { Err(ApiError::forbidden("server administrators only")) }
}

/// The local allow and deny lists of `rules` (the shape of the policy endpoint).
fn rules_view(rules: &TrustRules) -> Value {
    let servers = |action| -> Vec<&ServerName> {
        rules.local.iter().filter(|(_, entry)| entry.action == action).map(|(s, _)| s).collect()
    };
    json!({"mode": rules.mode, "allow": servers(Action::Allow), "deny": servers(Action::Deny)})
}

/// `GET /api/v1/admin/federation/policy`.
pub(super) async fn policy(
    State(state): State<AppState>,
    auth: AuthUser,
) -> ApiResult<Json<Value>> {
    require_admin(&state, &auth).await?;
    Ok(Json(rules_view(&state.federation.trust.policy().rules())))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PolicyBody {
    mode: TrustMode,
    #[serde(default)]
    allow: BTreeSet<ServerName>,
    #[serde(default)]
    deny: BTreeSet<ServerName>,
}

/// `PUT /api/v1/admin/federation/policy`: replaces the mode and every operator entry; the next
/// request obeys it, and it survives restarts. (Configuration-file entries for servers not
/// named here still apply.)
pub(super) async fn set_policy(
    State(state): State<AppState>,
    auth: AuthUser,
    Json(body): Json<PolicyBody>,
) -> ApiResult<Json<Value>> {
    require_admin(&state, &auth).await?;
    let now = crate::store::now_ms();
    let entry = |server: &ServerName, action: &str| TrustEntryRow {
        server: server.to_string(),
        action: action.into(),
        reason: None,
        key: None,
        updated_ts: now,
    };
    let mut entries: Vec<TrustEntryRow> =
        body.allow.iter().filter(|s| !body.deny.contains(*s)).map(|s| entry(s, "allow")).collect();
    entries.extend(body.deny.iter().map(|s| entry(s, "deny")));
    let detail = json!({"mode": body.mode, "allow": body.allow, "deny": body.deny});
    let actor = auth.user_id.to_string();
    let audit =
        Audit { actor: &actor, action: "trust.policy", target: None, detail: Some(&detail) };
    state.store.replace_trust_policy(trust::mode_name(body.mode), &entries, audit).await?;
    state.federation.trust.reload().await?;
    tracing::info!(admin = %auth.user_id, mode = ?body.mode, "federation policy changed");
    Ok(Json(rules_view(&state.federation.trust.policy().rules())))
}

/// `GET /api/v1/admin/trust`: the mode, every entry with its source, the subscriptions.
pub(super) async fn trust(State(state): State<AppState>, auth: AuthUser) -> ApiResult<Json<Value>> {
    require_admin(&state, &auth).await?;
    Ok(Json(state.federation.trust.view().await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ModeBody {
    mode: TrustMode,
}

/// `PUT /api/v1/admin/trust/mode`.
pub(super) async fn set_mode(
    State(state): State<AppState>,
    auth: AuthUser,
    Json(body): Json<ModeBody>,
) -> ApiResult<Json<Value>> {
    require_admin(&state, &auth).await?;
    let trust = &state.federation.trust;
    trust.set_mode(auth.user_id.as_str(), body.mode).await?;
    Ok(Json(trust.view().await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PinnedKeyBody {
    key_id: String,
    key: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EntryBody {
    action: Action,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    key: Option<PinnedKeyBody>,
}

/// `PUT /api/v1/admin/trust/entries/{server}`: allow, deny or pin a server.
pub(super) async fn set_entry(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(server): Path<String>,
    Json(body): Json<EntryBody>,
) -> ApiResult<Json<Value>> {
    require_admin(&state, &auth).await?;
    let key = body.key.map(|key| (key.key_id, key.key));
    let trust = &state.federation.trust;
    trust.set_entry(auth.user_id.as_str(), &server, body.action, body.reason, key).await?;
    Ok(Json(why_view(&state, &server)?))
}

/// `DELETE /api/v1/admin/trust/entries/{server}`.
pub(super) async fn remove_entry(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(server): Path<String>,
) -> ApiResult<Json<Value>> {
    require_admin(&state, &auth).await?;
    let trust = &state.federation.trust;
    trust.remove_entry(auth.user_id.as_str(), &server).await?;
    Ok(Json(why_view(&state, &server)?))
}

/// `GET /api/v1/admin/trust/why/{server}`: whether the server may federate with us, and the
/// rule or list that decided.
pub(super) async fn why(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(server): Path<String>,
) -> ApiResult<Json<Value>> {
    require_admin(&state, &auth).await?;
    Ok(Json(why_view(&state, &server)?))
}

fn why_view(state: &AppState, server: &str) -> ApiResult<Value> {
    let name = ServerName::parse(server).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let decision = state
        .federation
        .trust
        .policy()
        .decide(&name)
        .ok_or_else(|| ApiError::internal("trust policy unavailable"))?;
    let pinned = state.federation.trust.policy().pinned(&name).map(|pin| {
        json!({"key_id": pin.key_id, "key": guildhall_spec::base64url::encode(pin.key.as_bytes())})
    });
    let mut view = json!({"server": name, "pinned_key": pinned});
    if let (Value::Object(view), Ok(Value::Object(decision))) =
        (&mut view, serde_json::to_value(&decision))
    {
        view.extend(decision);
    }
    Ok(view)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SubscribeBody {
    url: String,
    publisher: String,
    key_id: String,
    key: String,
    #[serde(default)]
    refresh_secs: Option<u64>,
}

/// `POST /api/v1/admin/trust/subscriptions`: subscribes to a published trust list and fetches
/// it at once (the answer says how that went).
pub(super) async fn subscribe(
    State(state): State<AppState>,
    auth: AuthUser,
    Json(body): Json<SubscribeBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    require_admin(&state, &auth).await?;
    let (subscription, fetched) = state
        .federation
        .trust
        .subscribe(
            auth.user_id.as_str(),
            &body.url,
            &body.publisher,
            &body.key_id,
            &body.key,
            body.refresh_secs,
        )
        .await?;
    let subscription = state.store.subscription(&subscription.id).await?.unwrap_or(subscription);
    Ok((
        StatusCode::CREATED,
        Json(json!({"id": subscription.id, "fetch": trust::fetch_view(&fetched)})),
    ))
}

/// `DELETE /api/v1/admin/trust/subscriptions/{id}`: its entries stop applying at once.
pub(super) async fn unsubscribe(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    require_admin(&state, &auth).await?;
    state.federation.trust.unsubscribe(auth.user_id.as_str(), &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/v1/admin/trust/subscriptions/{id}/refresh`: fetches the list now.
pub(super) async fn refresh(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    require_admin(&state, &auth).await?;
    let fetched = state.federation.trust.refresh_id(&id).await?;
    Ok(Json(json!({"id": id, "fetch": trust::fetch_view(&fetched)})))
}

/// `GET /api/v1/admin/trust/stats`: per peer, requests accepted and refused by reason since
/// start, and equivocation evidence held.
pub(super) async fn stats(State(state): State<AppState>, auth: AuthUser) -> ApiResult<Json<Value>> {
    require_admin(&state, &auth).await?;
    Ok(Json(state.federation.trust.stats().await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AuditQuery {
    #[serde(default)]
    before: Option<i64>,
    #[serde(default)]
    limit: Option<u32>,
}

/// `GET /api/v1/admin/audit`: administrative actions, newest first.
pub(super) async fn audit(
    State(state): State<AppState>,
    auth: AuthUser,
    Query(query): Query<AuditQuery>,
) -> ApiResult<Json<Value>> {
    require_admin(&state, &auth).await?;
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    Ok(Json(json!({"entries": state.store.audit_log(query.before, limit).await?})))
}

/// `GET /api/v1/admin/equivocations`: evidence of hosts that signed two events with one seq.
pub(super) async fn equivocations(
    State(state): State<AppState>,
    auth: AuthUser,
) -> ApiResult<Json<Value>> {
    require_admin(&state, &auth).await?;
    Ok(Json(json!({"equivocations": state.store.equivocations().await?})))
}

/// `GET /api/v1/admin/federation/queues`: what waits to be delivered, per server.
pub(super) async fn queues(
    State(state): State<AppState>,
    auth: AuthUser,
) -> ApiResult<Json<Value>> {
    require_admin(&state, &auth).await?;
    let queues: Vec<Value> = state
        .store
        .outbound_queue_sizes()
        .await?
        .into_iter()
        .map(|(server, events, proposals)| {
            json!({"server": server, "queued_events": events, "queued_proposals": proposals})
        })
        .collect();
    Ok(Json(json!({"queues": queues})))
}
