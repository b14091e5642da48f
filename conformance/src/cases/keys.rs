//! Server key documents (spec chapter 04).

use std::sync::Arc;

use guildhall_spec::{KeyId, PublicKeyMap, ServerName, signing};
use serde_json::{Value, json};

use crate::{CaseResult, Context, ensure};

async fn document(ctx: &Context) -> Result<Value, String> {
    let (status, document) = ctx.target.call("GET", "/_guildhall/v1/keys/server", None).await;
    if status == 200 && document.is_object() {
        Ok(document)
    } else {
        Err(format!("GET /keys/server answered {status} {document}"))
    }
}

pub(super) async fn document_is_served(ctx: Arc<Context>) -> CaseResult {
    document(&ctx).await.map(drop)
}

pub(super) async fn document_names_the_server(ctx: Arc<Context>) -> CaseResult {
    let document = document(&ctx).await?;
    ensure!(
        document["server_name"] == ctx.target.name.as_str(),
        "server_name is {}, expected {}",
        document["server_name"],
        ctx.target.name
    );
    Ok(())
}

pub(super) async fn document_is_self_signed(ctx: Arc<Context>) -> CaseResult {
    let document = document(&ctx).await?;
    let name = ServerName::parse(&ctx.target.name).map_err(|e| e.to_string())?;
    let mut own = PublicKeyMap::new();
    for (key_id, key) in document["verify_keys"].as_object().into_iter().flatten() {
        let key_id = KeyId::parse(key_id).map_err(|e| format!("key id: {e}"))?;
        own.insert_base64(name.clone(), key_id, key["key"].as_str().unwrap_or_default())
            .map_err(|e| e.to_string())?;
    }
    let object = document.as_object().cloned().unwrap_or_default();
    signing::verify_json(&object, &name, &own).map_err(|e| format!("self-signature: {e}"))
}

pub(super) async fn document_validity_is_bounded(ctx: Arc<Context>) -> CaseResult {
    let document = document(&ctx).await?;
    let now = crate::peer::unix_now() * 1000;
    let until = document["valid_until_ts"].as_u64().ok_or("valid_until_ts missing")?;
    ensure!(until > now, "valid_until_ts {until} is in the past");
    Ok(())
}

pub(super) async fn keys_are_ed25519_points(ctx: Arc<Context>) -> CaseResult {
    let document = document(&ctx).await?;
    let keys = document["verify_keys"].as_object().ok_or("verify_keys missing")?;
    ensure!(!keys.is_empty(), "no verify_keys");
    for (key_id, key) in keys {
        ensure!(KeyId::parse(key_id).is_ok(), "bad key id {key_id}");
        ensure!(
            signing::decode_public_key(key["key"].as_str().unwrap_or_default()).is_some(),
            "{key_id} is not an Ed25519 key"
        );
    }
    Ok(())
}

pub(super) async fn notary_answers_with_countersigned_documents(ctx: Arc<Context>) -> CaseResult {
    let query = json!({"server_keys": {ctx.peer.name().as_str(): {}}});
    let (status, body) = ctx.target.call("POST", "/_guildhall/v1/keys/query", Some(&query)).await;
    ensure!(status == 200, "keys/query answered {status} {body}");
    let documents = body["server_keys"].as_array().ok_or("server_keys missing")?;
    let document = documents
        .iter()
        .find(|d| d["server_name"] == ctx.peer.name().as_str())
        .ok_or("the peer's document is missing")?;
    let keys = ctx.keys().await?;
    let object = document.as_object().cloned().unwrap_or_default();
    signing::verify_json(&object, ctx.peer.name(), &keys)
        .map_err(|e| format!("peer signature: {e}"))?;
    let target = ServerName::parse(&ctx.target.name).map_err(|e| e.to_string())?;
    signing::verify_json(&object, &target, &keys).map_err(|e| format!("notary signature: {e}"))
}

pub(super) async fn unknown_paths_answer_json_errors(ctx: Arc<Context>) -> CaseResult {
    let (status, body) = ctx.target.call("GET", "/_guildhall/v1/no/such/endpoint", None).await;
    ensure!(
        status == 404 && body["code"].is_string(),
        "expected 404 with a JSON error, got {status} {body}"
    );
    Ok(())
}
