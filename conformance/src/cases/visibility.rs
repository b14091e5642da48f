//! Erasure and withheld content (spec chapters 06 §erasure and 13).

use std::sync::Arc;

use guildhall_spec::event::{self, ChainPosition};
use serde_json::json;

use crate::context::Fixture;
use crate::{CaseResult, Context, ensure};

async fn private_channel(ctx: &Context, fixture: &Fixture) -> Result<String, String> {
    let channel = format!("priv{}", crate::context::unique());
    let create = json!({"channel_id": channel, "name": "staff", "kind": "text", "position": 1});
    let (status, body) =
        ctx.target.act(&fixture.owner, &fixture.guild, "channel.create", create).await;
    ensure_ok(status, &body)?;
    let hide = json!({"channel_id": channel, "target_kind": "role", "target_id": "everyone", "allow": "0", "deny": "1024"});
    let (status, body) =
        ctx.target.act(&fixture.owner, &fixture.guild, "channel.overwrite.set", hide).await;
    ensure_ok(status, &body)?;
    Ok(channel)
}

fn ensure_ok(status: u16, body: &serde_json::Value) -> Result<(), String> {
    if status == 200 { Ok(()) } else { Err(format!("test control answered {status} {body}")) }
}

async fn content_of(
    ctx: &Context,
    fixture: &Fixture,
    id: &str,
) -> Result<Option<serde_json::Value>, String> {
    let path = format!("/_guildhall/v1/guilds/{}/content", crate::target::encode(&fixture.guild));
    let (status, body) =
        ctx.peer.request(&ctx.target, "POST", &path, None, Some(&json!({"event_ids": [id]}))).await;
    if status != 200 {
        return Err(format!("POST content answered {status} {body}"));
    }
    Ok(body["contents"].get(id).cloned())
}

pub(super) async fn deleted_message_keeps_its_envelope(ctx: Arc<Context>) -> CaseResult {
    let fixture = ctx.fixture().await?;
    let id = ctx.target.send(&fixture.owner, &fixture.guild, &fixture.channel, "regret").await?;
    ctx.target.delete_message(&fixture.owner, &fixture.guild, &id).await?;
    let path = format!("/_guildhall/v1/guilds/{}/events", crate::target::encode(&fixture.guild));
    let (status, answer) =
        ctx.peer.request(&ctx.target, "GET", &path, Some("after=0&limit=500"), None).await;
    ensure!(status == 200, "events answered {status}");
    let create = answer["events"].as_array().into_iter().flatten().find(|e| {
        e.as_object().is_some_and(|o| event::event_id(o).is_ok_and(|e| e.as_str() == id))
    });
    let create = create
        .and_then(|e| e.as_object())
        .ok_or("the deleted message's event is gone from the log")?;
    ensure!(!create.contains_key("content"), "the deleted message still has content");
    let keys = ctx.keys().await?;
    event::verify_event(create, &keys, ChainPosition::Unchecked)
        .map_err(|e| format!("erased envelope: {e}"))?;
    Ok(())
}

pub(super) async fn erased_content_is_not_served(ctx: Arc<Context>) -> CaseResult {
    let fixture = ctx.fixture().await?;
    let id = ctx.target.send(&fixture.owner, &fixture.guild, &fixture.channel, "gone").await?;
    ctx.target.delete_message(&fixture.owner, &fixture.guild, &id).await?;
    ensure!(content_of(&ctx, &fixture, &id).await?.is_none(), "erased content is still served");
    Ok(())
}

pub(super) async fn private_messages_reach_peers_without_content(ctx: Arc<Context>) -> CaseResult {
    let fixture = ctx.fixture().await?;
    let channel = private_channel(&ctx, &fixture).await?;
    let id = ctx.target.send(&fixture.owner, &fixture.guild, &channel, "for staff only").await?;
    let pushed = ctx
        .pushed(|e| event::event_id(e).is_ok_and(|e| e.as_str() == id))
        .await
        .ok_or("the envelope never arrived")?;
    ensure!(
        !pushed.contains_key("content"),
        "the private message's content reached a server with no viewer"
    );
    let keys = ctx.keys().await?;
    event::verify_event(&pushed, &keys, ChainPosition::Unchecked)
        .map_err(|e| format!("withheld envelope: {e}"))?;
    Ok(())
}

pub(super) async fn private_messages_are_not_served_by_events(ctx: Arc<Context>) -> CaseResult {
    let fixture = ctx.fixture().await?;
    let channel = private_channel(&ctx, &fixture).await?;
    let id = ctx.target.send(&fixture.owner, &fixture.guild, &channel, "secret").await?;
    ensure!(content_of(&ctx, &fixture, &id).await?.is_none(), "/content served a private message");
    let path = format!("/_guildhall/v1/guilds/{}/events", crate::target::encode(&fixture.guild));
    let (status, answer) =
        ctx.peer.request(&ctx.target, "GET", &path, Some("after=0&limit=500"), None).await;
    // An error answer would hide nothing: the log must be served, the message in it, bare.
    ensure!(status == 200, "events answered {status}");
    let create = answer["events"].as_array().into_iter().flatten().find(|e| {
        e.as_object().is_some_and(|o| event::event_id(o).is_ok_and(|e| e.as_str() == id))
    });
    let create = create.ok_or("the private message's envelope is missing from the log")?;
    ensure!(create.get("content").is_none(), "/events served a private message's content");
    Ok(())
}

pub(super) async fn withheld_content_is_released_after_access(ctx: Arc<Context>) -> CaseResult {
    let fixture = ctx.fixture().await?;
    let channel = private_channel(&ctx, &fixture).await?;
    let id = ctx.target.send(&fixture.owner, &fixture.guild, &channel, "later").await?;
    let grant = json!({"channel_id": channel, "target_kind": "member", "target_id": fixture.member, "allow": "1024", "deny": "0"});
    let (status, body) =
        ctx.target.act(&fixture.owner, &fixture.guild, "channel.overwrite.set", grant).await;
    ensure_ok(status, &body)?;
    let content = content_of(&ctx, &fixture, &id)
        .await?
        .ok_or("/content did not release content the member may now see")?;
    ensure!(content["body"] == "later", "released content: {content}");
    Ok(())
}

pub(super) async fn deletions_are_never_withheld(ctx: Arc<Context>) -> CaseResult {
    let fixture = ctx.fixture().await?;
    let channel = private_channel(&ctx, &fixture).await?;
    let id = ctx.target.send(&fixture.owner, &fixture.guild, &channel, "shh").await?;
    ctx.target.delete_message(&fixture.owner, &fixture.guild, &id).await?;
    let deletion = ctx
        .pushed(|e| {
            e.get("type").is_some_and(|t| t == "message.delete")
                && e["content"]["message_id"] == id.as_str()
        })
        .await;
    ensure!(
        deletion.is_some(),
        "the deletion reached the member server without its content (or not at all)"
    );
    Ok(())
}
