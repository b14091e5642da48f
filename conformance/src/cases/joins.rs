//! Remote joins through an invite and the snapshot that answers them (spec chapter 10).

use std::sync::Arc;

use guildhall_spec::event::{self, ChainPosition};
use guildhall_spec::{EventId, ServerName, signing};
use serde_json::json;

use crate::{CaseResult, Context, ensure};

pub(super) async fn join_answers_event_snapshot_and_history(ctx: Arc<Context>) -> CaseResult {
    let fixture = ctx.fixture().await?;
    let join = &fixture.join;
    ensure!(
        join["event"]["type"] == "member.join",
        "event is not a member.join: {}",
        join["event"]
    );
    ensure!(join["snapshot"].is_object(), "no snapshot");
    ensure!(join["events"].is_array(), "no history array");
    Ok(())
}

pub(super) async fn join_event_carries_both_signatures(ctx: Arc<Context>) -> CaseResult {
    let fixture = ctx.fixture().await?;
    let keys = ctx.keys().await?;
    let event = fixture.join["event"].as_object().cloned().unwrap_or_default();
    let verified = event::verify_event(&event, &keys, ChainPosition::Unchecked)
        .map_err(|e| format!("join event: {e}"))?;
    ensure!(
        verified.envelope.sender.as_str() == fixture.member,
        "join sender {}",
        verified.envelope.sender
    );
    Ok(())
}

pub(super) async fn snapshot_is_host_signed_at_the_join(ctx: Arc<Context>) -> CaseResult {
    let fixture = ctx.fixture().await?;
    let keys = ctx.keys().await?;
    let snapshot = fixture.join["snapshot"].as_object().cloned().unwrap_or_default();
    let host = ServerName::parse(&ctx.target.name).map_err(|e| e.to_string())?;
    signing::verify_json(&snapshot, &host, &keys)
        .map_err(|e| format!("snapshot signature: {e}"))?;
    let event = fixture.join["event"].as_object().cloned().unwrap_or_default();
    let id = event::event_id(&event).map_err(|e| e.to_string())?;
    ensure!(
        snapshot.get("event_id").and_then(|v| v.as_str()) == Some(id.as_str()),
        "snapshot event_id is not the join's"
    );
    ensure!(snapshot.get("seq") == event.get("seq"), "snapshot seq is not the join's");
    Ok(())
}

pub(super) async fn snapshot_lists_the_new_member(ctx: Arc<Context>) -> CaseResult {
    let fixture = ctx.fixture().await?;
    let members = &fixture.join["snapshot"]["state"]["members"];
    ensure!(
        members.get(&fixture.member).is_some(),
        "the joiner is not in the snapshot's members: {members}"
    );
    ensure!(members.get(&fixture.owner).is_some(), "the owner is not in the snapshot's members");
    Ok(())
}

pub(super) async fn history_verifies_and_chains(ctx: Arc<Context>) -> CaseResult {
    let fixture = ctx.fixture().await?;
    let keys = ctx.keys().await?;
    let history = fixture.join["events"].as_array().cloned().unwrap_or_default();
    ensure!(!history.is_empty(), "no history before the join");
    let mut previous: Option<EventId> = None;
    for event in history.iter().chain([&fixture.join["event"]]) {
        let object = event.as_object().cloned().unwrap_or_default();
        let position = if previous.is_some() {
            ChainPosition::Follows(previous.as_ref())
        } else {
            ChainPosition::Unchecked
        };
        let verified = event::verify_event(&object, &keys, position)
            .map_err(|e| format!("history event: {e}"))?;
        previous = Some(verified.event_id);
    }
    Ok(())
}

pub(super) async fn unknown_invite_is_refused(ctx: Arc<Context>) -> CaseResult {
    let owner = ctx.target.user("owner").await?;
    let (guild, _) = ctx.target.guild(&owner).await?;
    let outcome =
        ctx.peer.join(&ctx.target, &guild, &ctx.peer.user("m"), Some("nosuchinvite")).await;
    ensure!(outcome.is_err(), "a join with an unknown invite was accepted");
    Ok(())
}

pub(super) async fn user_of_another_server_is_refused(ctx: Arc<Context>) -> CaseResult {
    let owner = ctx.target.user("owner").await?;
    let (guild, _) = ctx.target.guild(&owner).await?;
    let code = ctx.target.invite(&owner, &guild).await?;
    // The peer asks to join a user of the stranger's server.
    let impostor = ctx.stranger.user("victim");
    let proposal = ctx.peer.proposal(
        &guild,
        &ctx.peer.user("m"),
        "member.join",
        json!({"invite_code": code}),
    )?;
    let body = json!({"user_id": impostor, "invite_code": code, "proposal": proposal});
    let path = format!("/_guildhall/v1/guilds/{}/join", crate::target::encode(&guild));
    let (status, answer) = ctx.peer.request(&ctx.target, "POST", &path, None, Some(&body)).await;
    ensure!((400..500).contains(&status), "expected a 4xx refusal, got {status} {answer}");
    Ok(())
}

pub(super) async fn join_must_carry_a_member_join(ctx: Arc<Context>) -> CaseResult {
    let owner = ctx.target.user("owner").await?;
    let (guild, channel) = ctx.target.guild(&owner).await?;
    let code = ctx.target.invite(&owner, &guild).await?;
    let user = ctx.peer.user("m");
    let proposal = ctx.peer.proposal(
        &guild,
        &user,
        "message.create",
        json!({"channel_id": channel, "body": "sneaky"}),
    )?;
    let body = json!({"user_id": user, "invite_code": code, "proposal": proposal});
    let path = format!("/_guildhall/v1/guilds/{}/join", crate::target::encode(&guild));
    let (status, answer) = ctx.peer.request(&ctx.target, "POST", &path, None, Some(&body)).await;
    ensure!(status == 400, "expected 400, got {status} {answer}");
    Ok(())
}

pub(super) async fn joining_twice_is_refused(ctx: Arc<Context>) -> CaseResult {
    let fixture = ctx.fixture().await?;
    let code = ctx.target.invite(&fixture.owner, &fixture.guild).await?;
    let again = ctx.peer.join(&ctx.target, &fixture.guild, &fixture.member, Some(&code)).await;
    ensure!(again.is_err(), "a second join of the same member was accepted");
    Ok(())
}

pub(super) async fn banned_user_cannot_join(ctx: Arc<Context>) -> CaseResult {
    let owner = ctx.target.user("owner").await?;
    let (guild, _) = ctx.target.guild(&owner).await?;
    let code = ctx.target.invite(&owner, &guild).await?;
    let user = ctx.peer.user("banned");
    let (status, body) =
        ctx.target.act(&owner, &guild, "member.ban", json!({"user_id": user})).await;
    ensure!(status == 200, "test control: ban answered {status} {body}");
    let outcome = ctx.peer.join(&ctx.target, &guild, &user, Some(&code)).await;
    ensure!(
        outcome.as_ref().is_err_and(|e| e.contains("403")),
        "a banned user's join: {outcome:?}"
    );
    Ok(())
}

pub(super) async fn invite_lookup_names_the_guild(ctx: Arc<Context>) -> CaseResult {
    let owner = ctx.target.user("owner").await?;
    let (guild, _) = ctx.target.guild(&owner).await?;
    let code = ctx.target.invite(&owner, &guild).await?;
    let (status, body) = ctx
        .peer
        .request(&ctx.target, "GET", &format!("/_guildhall/v1/invites/{code}"), None, None)
        .await;
    ensure!(status == 200 && body["guild_id"] == guild.as_str(), "invite lookup: {status} {body}");
    Ok(())
}

pub(super) async fn a_replayed_join_repeats_its_answer_and_is_refused_after_a_ban(
    ctx: Arc<Context>,
) -> CaseResult {
    let owner = ctx.target.user("owner").await?;
    let (guild, _) = ctx.target.guild(&owner).await?;
    let code = ctx.target.invite(&owner, &guild).await?;
    let member = ctx.peer.user("member");
    let proposal =
        ctx.peer.proposal(&guild, &member, "member.join", json!({"invite_code": code}))?;
    let body = json!({"user_id": member, "invite_code": code, "proposal": proposal});
    let path = format!("/_guildhall/v1/guilds/{}/join", crate::target::encode(&guild));
    let (status, first) = ctx.peer.request(&ctx.target, "POST", &path, None, Some(&body)).await;
    ensure!(status == 200, "join answered {status} {first}");

    // The guild moves on; the same join again (its answer was lost) gets the first answer.
    let rename = json!({"name": "renamed after the join"});
    let (status, answer) = ctx.target.act(&owner, &guild, "guild.update", rename).await;
    ensure!(status == 200, "guild.update answered {status} {answer}");
    let (status, again) = ctx.peer.request(&ctx.target, "POST", &path, None, Some(&body)).await;
    ensure!(status == 200, "the retried join answered {status} {again}");
    ensure!(
        again["snapshot"] == first["snapshot"] && again["event"] == first["event"],
        "a retried join must repeat its answer, not sign today's state under the join's seq"
    );

    // After a server ban, a retry learns nothing.
    let ban = json!({"server": ctx.peer.name()});
    let (status, answer) = ctx.target.act(&owner, &guild, "guild.server_ban", ban).await;
    ensure!(status == 200, "guild.server_ban answered {status} {answer}");
    let (status, refused) = ctx.peer.request(&ctx.target, "POST", &path, None, Some(&body)).await;
    ensure!(
        status == 403 && refused["code"] == "server_banned",
        "a retried join after a server ban answered {status} {refused}"
    );
    Ok(())
}
