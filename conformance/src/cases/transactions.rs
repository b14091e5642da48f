//! `PUT /send/{txn_id}` transactions and ephemeral events (spec chapter 12).

use std::sync::Arc;

use serde_json::json;

use crate::peer::unix_now;
use crate::{CaseResult, Context, ensure};

fn path() -> String {
    format!("/_guildhall/v1/send/conf{}", crate::context::unique())
}

pub(super) async fn repeated_transaction_gets_the_same_answer(ctx: Arc<Context>) -> CaseResult {
    let path = path();
    let body = json!({"origin": ctx.peer.name(), "origin_ts": unix_now() * 1000, "events": [], "ephemeral": []});
    let (first, a) = ctx.peer.request(&ctx.target, "PUT", &path, None, Some(&body)).await;
    let (second, b) = ctx.peer.request(&ctx.target, "PUT", &path, None, Some(&body)).await;
    ensure!(first == 200 && second == 200 && a == b, "answers differ: {first} {a} / {second} {b}");
    Ok(())
}

pub(super) async fn only_the_host_may_push_its_events(ctx: Arc<Context>) -> CaseResult {
    let fixture = ctx.fixture().await?;
    let head = ctx.target.head(&fixture.guild).await?;
    let (log, _) = ctx.target.log(&fixture.guild, head - 1).await?;
    // The peer replays the host's own head event back to it as if it were the host.
    let body = json!({"origin": ctx.peer.name(), "origin_ts": unix_now() * 1000, "events": log, "ephemeral": []});
    let (status, answer) = ctx.peer.request(&ctx.target, "PUT", &path(), None, Some(&body)).await;
    let results = answer["results"].as_object().cloned().unwrap_or_default();
    let refused = results.values().all(|r| r["error"]["code"] == "not_from_host");
    ensure!(
        status == 200 && !results.is_empty() && refused,
        "a non-host's push of the target's own guild was not refused with not_from_host: {status} {answer}"
    );
    ensure!(ctx.target.head(&fixture.guild).await? == head, "the log moved");

    // The other branch of check 2: the pusher is not the host of a guild hosted elsewhere. The
    // stranger pushes an event of a guild the peer hosts (its host part names the peer).
    let guild = format!("!g{}:{}", crate::context::unique(), ctx.peer.name());
    let mut foreign = log.first().cloned().ok_or("an empty log")?;
    foreign.insert("guild_id".into(), json!(guild));
    let body = json!({"origin": ctx.stranger.name(), "origin_ts": unix_now() * 1000, "events": [foreign], "ephemeral": []});
    let (status, answer) =
        ctx.stranger.request(&ctx.target, "PUT", &path(), None, Some(&body)).await;
    let results = answer["results"].as_object().cloned().unwrap_or_default();
    let refused =
        !results.is_empty() && results.values().all(|r| r["error"]["code"] == "not_from_host");
    ensure!(
        status == 200 && refused,
        "a push from a server that is not the guild's host was not refused with not_from_host: {status} {answer}"
    );
    Ok(())
}

pub(super) async fn body_origin_must_be_the_signer(ctx: Arc<Context>) -> CaseResult {
    let body = json!({"origin": ctx.stranger.name(), "origin_ts": unix_now() * 1000, "events": [], "ephemeral": []});
    let (status, answer) = ctx.peer.request(&ctx.target, "PUT", &path(), None, Some(&body)).await;
    ensure!(status == 403, "expected 403, got {status} {answer}");
    Ok(())
}

pub(super) async fn too_many_events_are_refused(ctx: Arc<Context>) -> CaseResult {
    let events: Vec<_> = (0..101).map(|_| json!({})).collect();
    let body = json!({"origin": ctx.peer.name(), "origin_ts": unix_now() * 1000, "events": events, "ephemeral": []});
    let (status, answer) = ctx.peer.request(&ctx.target, "PUT", &path(), None, Some(&body)).await;
    ensure!(status == 400, "expected 400, got {status} {answer}");
    Ok(())
}

pub(super) async fn unknown_ephemeral_kinds_are_ignored(ctx: Arc<Context>) -> CaseResult {
    let body = json!({"origin": ctx.peer.name(), "origin_ts": unix_now() * 1000, "events": [], "ephemeral": [{"type": "hologram", "content": {}}]});
    let (status, answer) = ctx.peer.request(&ctx.target, "PUT", &path(), None, Some(&body)).await;
    ensure!(status == 200, "an unknown ephemeral kind failed the transaction: {status} {answer}");
    Ok(())
}

pub(super) async fn typing_from_a_member_is_accepted(ctx: Arc<Context>) -> CaseResult {
    let fixture = ctx.fixture().await?;
    // A second member server, which the host must relay the typing to (spec 12.5.2 step 3).
    let code = ctx.target.invite(&fixture.owner, &fixture.guild).await?;
    let watcher = ctx.stranger.user("watcher");
    ctx.stranger.join(&ctx.target, &fixture.guild, &watcher, Some(&code)).await?;
    let typing = json!({"type": "typing", "content": {"guild_id": fixture.guild, "channel_id": fixture.channel, "user_id": fixture.member, "active": true}});
    let body = json!({"origin": ctx.peer.name(), "origin_ts": unix_now() * 1000, "events": [], "ephemeral": [typing]});
    let (status, answer) = ctx.peer.request(&ctx.target, "PUT", &path(), None, Some(&body)).await;
    ensure!(status == 200, "typing answered {status} {answer}");
    for _ in 0..200 {
        let relayed = ctx.stranger.received_ephemeral().into_iter().any(|item| {
            item["type"] == "typing" && item["content"]["user_id"] == fixture.member.as_str()
        });
        if relayed {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    Err("the host did not relay the member's typing to the other member server in 10 s".into())
}

pub(super) async fn malformed_json_is_refused(ctx: Arc<Context>) -> CaseResult {
    let prepared = ctx.peer.prepare_raw(
        &ctx.target,
        &ctx.target.name,
        "PUT",
        &path(),
        None,
        b"{\"origin\": ".to_vec(),
        unix_now(),
    );
    let (status, answer) = ctx.peer.send(&ctx.target, &prepared).await;
    ensure!(
        status == 400 && answer["code"].is_string(),
        "expected 400 with a code, got {status} {answer}"
    );
    Ok(())
}
