//! Proposals from a member server to the host, and the host's permission checks at the head of
//! the log (spec chapters 08, 09, 11).

use std::sync::Arc;

use guildhall_spec::base64url;
use guildhall_spec::event::{self, ChainPosition, JsonObject};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::context::Fixture;
use crate::{CaseResult, Context, ensure};

async fn message(ctx: &Context, fixture: &Fixture, body: &str) -> Result<JsonObject, String> {
    let proposal = ctx.peer.proposal(
        &fixture.guild,
        &fixture.member,
        "message.create",
        json!({"channel_id": fixture.channel, "body": body}),
    )?;
    let (status, answer) = ctx.peer.submit(&ctx.target, &fixture.guild, &proposal).await;
    if status != 200 {
        return Err(format!("submit answered {status} {answer}"));
    }
    answer["event"].as_object().cloned().ok_or_else(|| format!("no event in {answer}"))
}

/// Submits and expects a refusal with `code`, leaving the log unchanged.
async fn refused(
    ctx: &Context,
    fixture: &Fixture,
    sender: &str,
    event_type: &str,
    content: Value,
    code: &str,
) -> CaseResult {
    let head = ctx.target.head(&fixture.guild).await?;
    let proposal = ctx.peer.proposal(&fixture.guild, sender, event_type, content)?;
    let (status, body) = ctx.peer.submit(&ctx.target, &fixture.guild, &proposal).await;
    ensure!(
        (400..500).contains(&status) && body["code"] == code,
        "expected a 4xx {code}, got {status} {body}"
    );
    let after = ctx.target.head(&fixture.guild).await?;
    ensure!(after == head, "the log moved from {head} to {after}");
    Ok(())
}

pub(super) async fn message_is_sequenced_and_signed_by_both(ctx: Arc<Context>) -> CaseResult {
    let fixture = ctx.fixture().await?;
    let event = message(&ctx, &fixture, "hello host").await?;
    let keys = ctx.keys().await?;
    let verified = event::verify_event(&event, &keys, ChainPosition::Unchecked)
        .map_err(|e| format!("sequenced event: {e}"))?;
    ensure!(verified.envelope.origin == *ctx.peer.name(), "origin is {}", verified.envelope.origin);
    ensure!(
        event["signatures"].get(ctx.peer.name().as_str()).is_some(),
        "the origin's signature was dropped"
    );
    ensure!(event["signatures"].get(&ctx.target.name).is_some(), "no host signature");
    Ok(())
}

pub(super) async fn sequenced_event_continues_the_chain(ctx: Arc<Context>) -> CaseResult {
    let fixture = ctx.fixture().await?;
    let head = ctx.target.head(&fixture.guild).await?;
    let (log, _) = ctx.target.log(&fixture.guild, head.saturating_sub(1)).await?;
    let previous = log.last().and_then(|e| event::event_id(e).ok()).ok_or("no head event")?;
    let event = message(&ctx, &fixture, "next").await?;
    ensure!(event["seq"].as_u64() == Some(head + 1), "seq {} after head {head}", event["seq"]);
    ensure!(
        event["prev"] == previous.as_str(),
        "prev {} is not the head {previous}",
        event["prev"]
    );
    Ok(())
}

pub(super) async fn repeated_transaction_returns_the_same_event(ctx: Arc<Context>) -> CaseResult {
    let fixture = ctx.fixture().await?;
    let proposal = ctx.peer.proposal(
        &fixture.guild,
        &fixture.member,
        "message.create",
        json!({"channel_id": fixture.channel, "body": "once"}),
    )?;
    let (first, a) = ctx.peer.submit(&ctx.target, &fixture.guild, &proposal).await;
    let (second, b) = ctx.peer.submit(&ctx.target, &fixture.guild, &proposal).await;
    ensure!(first == 200 && second == 200, "submits answered {first} and {second}");
    let (a, b) = (
        event::event_id(a["event"].as_object().unwrap_or(&JsonObject::new())),
        event::event_id(b["event"].as_object().unwrap_or(&JsonObject::new())),
    );
    ensure!(a.is_ok() && a == b, "the retry produced another event: {a:?} vs {b:?}");
    Ok(())
}

pub(super) async fn local_users_see_remote_messages(ctx: Arc<Context>) -> CaseResult {
    let fixture = ctx.fixture().await?;
    message(&ctx, &fixture, "visible to the owner").await?;
    let path = format!(
        "/users/{}/guilds/{}/messages?channel_id={}",
        crate::target::encode(&fixture.owner),
        crate::target::encode(&fixture.guild),
        fixture.channel
    );
    let (status, body) = ctx.target.control_get(&path).await;
    let found = body["messages"].as_array().is_some_and(|m| {
        m.iter()
            .any(|m| m["body"] == "visible to the owner" && m["sender"] == fixture.member.as_str())
    });
    ensure!(status == 200 && found, "the owner does not see the message: {status} {body}");
    Ok(())
}

pub(super) async fn sequenced_events_are_pushed_to_member_servers(ctx: Arc<Context>) -> CaseResult {
    let fixture = ctx.fixture().await?;
    let id = ctx
        .target
        .send(&fixture.owner, &fixture.guild, &fixture.channel, "pushed to the peer")
        .await?;
    let pushed = ctx.pushed(|event| event::event_id(event).is_ok_and(|e| e.as_str() == id)).await;
    let event = pushed
        .ok_or("the host did not push the owner's message to the member's server within 10 s")?;
    let keys = ctx.keys().await?;
    event::verify_event(&event, &keys, ChainPosition::Unchecked)
        .map_err(|e| format!("pushed event: {e}"))?;
    ensure!(event["content"]["body"] == "pushed to the peer", "content: {}", event["content"]);
    Ok(())
}

pub(super) async fn non_member_is_refused(ctx: Arc<Context>) -> CaseResult {
    let fixture = ctx.fixture().await?;
    let stranger = ctx.peer.user("stranger");
    refused(
        &ctx,
        &fixture,
        &stranger,
        "message.create",
        json!({"channel_id": fixture.channel, "body": "let me in"}),
        "not_member",
    )
    .await
}

pub(super) async fn missing_send_permission_is_refused(ctx: Arc<Context>) -> CaseResult {
    let fixture = ctx.fixture().await?;
    let deny = json!({"channel_id": fixture.channel, "target_kind": "role", "target_id": "everyone", "allow": "0", "deny": "2048"});
    let (status, body) =
        ctx.target.act(&fixture.owner, &fixture.guild, "channel.overwrite.set", deny).await;
    ensure!(status == 200, "test control: overwrite answered {status} {body}");
    refused(
        &ctx,
        &fixture,
        &fixture.member,
        "message.create",
        json!({"channel_id": fixture.channel, "body": "muted"}),
        "missing_permission",
    )
    .await
}

pub(super) async fn banned_member_is_refused(ctx: Arc<Context>) -> CaseResult {
    let fixture = ctx.fixture().await?;
    let (status, body) = ctx
        .target
        .act(&fixture.owner, &fixture.guild, "member.ban", json!({"user_id": fixture.member}))
        .await;
    ensure!(status == 200, "test control: ban answered {status} {body}");
    refused(
        &ctx,
        &fixture,
        &fixture.member,
        "message.create",
        json!({"channel_id": fixture.channel, "body": "still here?"}),
        "banned",
    )
    .await
}

pub(super) async fn banned_server_is_refused(ctx: Arc<Context>) -> CaseResult {
    let fixture = ctx.fixture().await?;
    let (status, body) = ctx
        .target
        .act(&fixture.owner, &fixture.guild, "guild.server_ban", json!({"server": ctx.peer.name()}))
        .await;
    ensure!(status == 200, "test control: server ban answered {status} {body}");
    let state = ctx.target.state(&fixture.guild).await?;
    ensure!(
        state["members"].get(&fixture.member).is_none(),
        "the banned server's member is still a member"
    );
    refused(
        &ctx,
        &fixture,
        &fixture.member,
        "message.create",
        json!({"channel_id": fixture.channel, "body": "hi"}),
        "server_banned",
    )
    .await
}

pub(super) async fn editing_anothers_message_is_refused(ctx: Arc<Context>) -> CaseResult {
    let fixture = ctx.fixture().await?;
    let id = ctx
        .target
        .send(&fixture.owner, &fixture.guild, &fixture.channel, "the owner's words")
        .await?;
    let content = json!({"channel_id": fixture.channel, "message_id": id, "body": "rewritten"});
    refused(&ctx, &fixture, &fixture.member, "message.edit", content, "missing_permission").await
}

pub(super) async fn deleting_anothers_message_needs_manage_messages(
    ctx: Arc<Context>,
) -> CaseResult {
    let fixture = ctx.fixture().await?;
    let id = ctx.target.send(&fixture.owner, &fixture.guild, &fixture.channel, "keep me").await?;
    refused(
        &ctx,
        &fixture,
        &fixture.member,
        "message.delete",
        json!({"channel_id": fixture.channel, "message_id": id}),
        "missing_permission",
    )
    .await
}

pub(super) async fn kicking_needs_kick_members(ctx: Arc<Context>) -> CaseResult {
    let fixture = ctx.fixture().await?;
    refused(
        &ctx,
        &fixture,
        &fixture.member,
        "member.kick",
        json!({"user_id": fixture.owner}),
        "missing_permission",
    )
    .await
}

pub(super) async fn creating_roles_needs_manage_roles(ctx: Arc<Context>) -> CaseResult {
    let fixture = ctx.fixture().await?;
    let role = json!({"role_id": "sneaky", "name": "admin", "permissions": "8", "position": 1});
    refused(&ctx, &fixture, &fixture.member, "role.create", role, "missing_permission").await
}

pub(super) async fn pinning_needs_manage_messages(ctx: Arc<Context>) -> CaseResult {
    let fixture = ctx.fixture().await?;
    let id = ctx.target.send(&fixture.owner, &fixture.guild, &fixture.channel, "pin me?").await?;
    refused(
        &ctx,
        &fixture,
        &fixture.member,
        "pin.add",
        json!({"channel_id": fixture.channel, "message_id": id}),
        "missing_permission",
    )
    .await
}

pub(super) async fn unknown_guild_is_refused(ctx: Arc<Context>) -> CaseResult {
    let guild = format!("!nosuchguild{}:{}", crate::context::unique(), ctx.target.name);
    let proposal = ctx.peer.proposal(
        &guild,
        &ctx.peer.user("m"),
        "message.create",
        json!({"channel_id": "c", "body": "x"}),
    )?;
    let (status, body) = ctx.peer.submit(&ctx.target, &guild, &proposal).await;
    ensure!(
        status == 404 && body["code"] == "unknown_guild",
        "expected 404 unknown_guild, got {status} {body}"
    );
    Ok(())
}

pub(super) async fn member_can_leave(ctx: Arc<Context>) -> CaseResult {
    let fixture = ctx.fixture().await?;
    let proposal = ctx.peer.proposal(&fixture.guild, &fixture.member, "member.leave", json!({}))?;
    let (status, body) = ctx.peer.submit(&ctx.target, &fixture.guild, &proposal).await;
    ensure!(status == 200, "leave answered {status} {body}");
    let state = ctx.target.state(&fixture.guild).await?;
    ensure!(state["members"].get(&fixture.member).is_none(), "still a member after leaving");
    Ok(())
}

pub(super) async fn a_channel_id_of_another_guild_is_refused(ctx: Arc<Context>) -> CaseResult {
    let fixture = ctx.fixture().await?;
    // Another guild on the target, and the member allowed to create channels in the first.
    let (_, other_channel) = ctx.target.guild(&fixture.owner).await?;
    let everyone =
        json!({"role_id": "everyone", "permissions": (1024 + 2048 + 65536 + 16).to_string()});
    let (status, body) =
        ctx.target.act(&fixture.owner, &fixture.guild, "role.update", everyone).await;
    ensure!(status == 200, "granting MANAGE_CHANNELS answered {status} {body}");
    // A channel id the target already uses in another guild would make `/channels/{id}`
    // ambiguous (spec 02): the host refuses it.
    let copy = json!({"channel_id": other_channel, "name": "copy", "kind": "text", "position": 1});
    refused(&ctx, &fixture, &fixture.member, "channel.create", copy, "invalid_event").await?;
    // A fresh id is fine.
    let fresh = json!({"channel_id": format!("c{}x{}", crate::peer::unix_now(), crate::context::unique()), "name": "fresh", "kind": "text", "position": 1});
    let proposal = ctx.peer.proposal(&fixture.guild, &fixture.member, "channel.create", fresh)?;
    let (status, body) = ctx.peer.submit(&ctx.target, &fixture.guild, &proposal).await;
    ensure!(status == 200, "a fresh channel id answered {status} {body}");
    Ok(())
}

pub(super) async fn message_limits_are_enforced(ctx: Arc<Context>) -> CaseResult {
    let fixture = ctx.fixture().await?;
    let message = |extra: Value| {
        let mut content = json!({"channel_id": fixture.channel, "body": "limits"});
        if let (Some(content), Some(extra)) = (content.as_object_mut(), extra.as_object()) {
            content.extend(extra.clone());
        }
        content
    };
    let server = ctx.peer.name().to_string();
    let mentions: Vec<String> = (0..101).map(|i| format!("@u{i}:{server}")).collect();
    // Media ids are base64url SHA-256 digests (19.1); these need not exist anywhere.
    let media = |i: u32| base64url::encode(Sha256::digest(format!("media {i}")));
    let attachments: Vec<String> = (0..11).map(media).collect();
    let member = &fixture.member;
    let too_many_mentions = message(json!({"mentions": mentions}));
    refused(&ctx, &fixture, member, "message.create", too_many_mentions, "invalid_event").await?;
    let too_many_attachments = message(json!({"attachments": attachments}));
    refused(&ctx, &fixture, member, "message.create", too_many_attachments, "invalid_event")
        .await?;
    let not_media = message(json!({"attachments": ["media0"]}));
    refused(&ctx, &fixture, member, "message.create", not_media, "invalid_event").await?;
    let twice = message(json!({"attachments": [media(0), media(0)]}));
    refused(&ctx, &fixture, member, "message.create", twice, "invalid_event").await?;
    // Attachments need ATTACH_FILES (1 << 15), which @everyone loses here.
    let everyone = json!({"role_id": "everyone", "permissions": (1024 + 2048 + 65536).to_string()});
    let (status, body) =
        ctx.target.act(&fixture.owner, &fixture.guild, "role.update", everyone).await;
    ensure!(status == 200, "role.update answered {status} {body}");
    let one_attachment = message(json!({"attachments": [media(0)]}));
    refused(&ctx, &fixture, member, "message.create", one_attachment, "missing_permission").await
}

pub(super) async fn a_channel_is_created_with_its_overwrites(ctx: Arc<Context>) -> CaseResult {
    let fixture = ctx.fixture().await?;
    let channel = |id: &str, target: &str| {
        json!({"channel_id": id, "name": "staff", "kind": "text", "position": 1,
               "overwrites": [{"target_kind": "role", "target_id": target, "allow": "0", "deny": "1024"}]})
    };
    let fresh = || format!("c{}x{}", crate::peer::unix_now(), crate::context::unique());
    let member = &fixture.member;
    // MANAGE_CHANNELS (16) alone does not allow overwrites (they need MANAGE_ROLES).
    let manage_channels = (1024 + 2048 + 65536 + 16).to_string();
    let grant = json!({"role_id": "everyone", "permissions": manage_channels});
    let (status, body) = ctx.target.act(&fixture.owner, &fixture.guild, "role.update", grant).await;
    ensure!(status == 200, "role.update answered {status} {body}");
    let without_roles = channel(&fresh(), "everyone");
    refused(&ctx, &fixture, member, "channel.create", without_roles, "missing_permission").await?;
    let manage_roles = (1024 + 2048 + 65536 + 16 + (1u64 << 28)).to_string();
    let grant = json!({"role_id": "everyone", "permissions": manage_roles});
    let (status, body) = ctx.target.act(&fixture.owner, &fixture.guild, "role.update", grant).await;
    ensure!(status == 200, "role.update answered {status} {body}");
    let unknown_target = channel(&fresh(), "no-such-role");
    refused(&ctx, &fixture, member, "channel.create", unknown_target, "invalid_event").await?;
    // With both, the channel starts private: the overwrite is in the state from its creation.
    let id = fresh();
    let proposal =
        ctx.peer.proposal(&fixture.guild, member, "channel.create", channel(&id, "everyone"))?;
    let (status, body) = ctx.peer.submit(&ctx.target, &fixture.guild, &proposal).await;
    ensure!(status == 200, "a channel with overwrites answered {status} {body}");
    let state = ctx.target.state(&fixture.guild).await?;
    let deny = &state["channels"][&id]["overwrites"]["role:everyone"]["deny"];
    ensure!(deny == "1024", "the new channel's overwrite is missing from the state: {deny}");
    Ok(())
}
