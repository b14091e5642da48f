//! The test-control API itself (spec chapter 21), which every other case relies on.

use std::sync::Arc;

use serde_json::json;

use crate::{CaseResult, Context, ensure};

pub(super) async fn creates_users_and_refuses_duplicates(ctx: Arc<Context>) -> CaseResult {
    let name = format!("dup{}", crate::context::unique());
    let (status, body) = ctx.target.control("/users", json!({"username": name})).await;
    ensure!(
        status == 200
            && body["user_id"]
                .as_str()
                .is_some_and(|id| id.ends_with(&format!(":{}", ctx.target.name))),
        "create user: {status} {body}"
    );
    let (status, body) = ctx.target.control("/users", json!({"username": name})).await;
    ensure!(
        status == 409 && body["code"] == "user_exists",
        "duplicate user: expected 409 user_exists, got {status} {body}"
    );
    Ok(())
}

pub(super) async fn refuses_unknown_users(ctx: Arc<Context>) -> CaseResult {
    let ghost = format!("@ghost{}:{}", crate::context::unique(), ctx.target.name);
    let (status, body) =
        ctx.target.control("/guilds", json!({"user_id": ghost, "name": "x"})).await;
    ensure!(
        status == 404 && body["code"] == "unknown_user",
        "expected 404 unknown_user, got {status} {body}"
    );
    Ok(())
}
