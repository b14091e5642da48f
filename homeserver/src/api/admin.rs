//! Server administration for operators (accounts with `is_admin`): the live federation trust
//! policy and equivocation evidence.

use std::collections::BTreeSet;

use axum::extract::State;
use guildhall_federation::TrustMode;
use guildhall_federation::policy::TrustRules;
use guildhall_spec::ServerName;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{AuthUser, Json};
use crate::AppState;
use crate::error::{ApiError, ApiResult};

async fn require_admin(state: &AppState, auth: &AuthUser) -> ApiResult<()> {
    let user = state
        .store
        .user(&auth.user_id)
        .await?
        .ok_or_else(|| ApiError::unauthorized("account is gone"))?;
    if user.is_admin { Ok(()) } else { Err(ApiError::forbidden("server administrators only")) }
}

fn rules_view(rules: &TrustRules) -> Value {
    json!({"mode": rules.mode, "allow": rules.allow, "deny": rules.deny})
}

/// `GET /api/v1/admin/federation/policy`.
pub(super) async fn policy(
    State(state): State<AppState>,
    auth: AuthUser,
) -> ApiResult<Json<Value>> {
    require_admin(&state, &auth).await?;
    Ok(Json(rules_view(&state.federation.inbound.policy().rules())))
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

/// `PUT /api/v1/admin/federation/policy`: replaces the trust policy; the next request obeys it.
/// (The configuration file gives the policy at start; this change lasts until a restart.)
pub(super) async fn set_policy(
    State(state): State<AppState>,
    auth: AuthUser,
    Json(body): Json<PolicyBody>,
) -> ApiResult<Json<Value>> {
    require_admin(&state, &auth).await?;
    let rules = TrustRules { mode: body.mode, allow: body.allow, deny: body.deny };
    state.federation.inbound.policy().replace(rules.clone());
    tracing::info!(admin = %auth.user_id, mode = ?rules.mode, "federation policy changed");
    Ok(Json(rules_view(&rules)))
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
