//! Reading the guild log by exact ranges (spec chapters 07 and 10).

use std::sync::Arc;

use guildhall_spec::event::{self, ChainPosition, JsonObject};
use guildhall_spec::{EventId, ServerName, signing};
use serde_json::Value;

use crate::context::Fixture;
use crate::{CaseResult, Context, ensure};

async fn events(
    ctx: &Context,
    fixture: &Fixture,
    after: u64,
    limit: Option<u32>,
) -> Result<(Vec<JsonObject>, Value), String> {
    let path = format!("/_guildhall/v1/guilds/{}/events", crate::target::encode(&fixture.guild));
    let query = match limit {
        Some(limit) => format!("after={after}&limit={limit}"),
        None => format!("after={after}"),
    };
    let (status, body) = ctx.peer.request(&ctx.target, "GET", &path, Some(&query), None).await;
    if status != 200 {
        return Err(format!("GET events answered {status} {body}"));
    }
    let list = body["events"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|e| e.as_object().cloned())
        .collect();
    Ok((list, body))
}

async fn busy_fixture(ctx: &Context) -> Result<Fixture, String> {
    let fixture = ctx.fixture().await?;
    for text in ["one", "two", "three"] {
        ctx.target.send(&fixture.owner, &fixture.guild, &fixture.channel, text).await?;
    }
    Ok(fixture)
}

pub(super) async fn events_are_consecutive_from_one(ctx: Arc<Context>) -> CaseResult {
    let fixture = busy_fixture(&ctx).await?;
    let (list, _) = events(&ctx, &fixture, 0, None).await?;
    for (index, event) in list.iter().enumerate() {
        ensure!(
            event.get("seq").and_then(Value::as_u64) == Some(index as u64 + 1),
            "event {index} has seq {:?}",
            event.get("seq")
        );
    }
    ensure!(
        list.first().and_then(|e| e.get("type")).is_some_and(|t| t == "guild.create"),
        "seq 1 is not guild.create"
    );
    Ok(())
}

pub(super) async fn events_chain_by_prev(ctx: Arc<Context>) -> CaseResult {
    let fixture = busy_fixture(&ctx).await?;
    let (list, _) = events(&ctx, &fixture, 0, None).await?;
    let mut previous: Option<EventId> = None;
    for event in &list {
        let prev = event.get("prev").and_then(Value::as_str);
        ensure!(
            prev == previous.as_ref().map(EventId::as_str),
            "seq {:?}: prev {prev:?} is not {previous:?}",
            event.get("seq")
        );
        previous = Some(event::event_id(event).map_err(|e| e.to_string())?);
    }
    Ok(())
}

pub(super) async fn every_event_verifies(ctx: Arc<Context>) -> CaseResult {
    let fixture = busy_fixture(&ctx).await?;
    let (list, _) = events(&ctx, &fixture, 0, None).await?;
    let keys = ctx.keys().await?;
    let mut previous: Option<EventId> = None;
    for event in &list {
        let verified = event::verify_event(event, &keys, ChainPosition::Follows(previous.as_ref()))
            .map_err(|e| format!("seq {:?}: {e}", event.get("seq")))?;
        previous = Some(verified.event_id);
    }
    Ok(())
}

pub(super) async fn limit_is_respected(ctx: Arc<Context>) -> CaseResult {
    let fixture = busy_fixture(&ctx).await?;
    let (list, _) = events(&ctx, &fixture, 1, Some(2)).await?;
    let seqs: Vec<Option<u64>> =
        list.iter().map(|e| e.get("seq").and_then(Value::as_u64)).collect();
    ensure!(seqs == vec![Some(2), Some(3)], "after=1&limit=2 gave seqs {seqs:?}");
    Ok(())
}

pub(super) async fn head_is_reported(ctx: Arc<Context>) -> CaseResult {
    let fixture = busy_fixture(&ctx).await?;
    let (_, body) = events(&ctx, &fixture, 0, Some(1)).await?;
    let head = ctx.target.head(&fixture.guild).await?;
    ensure!(
        body["head"].as_u64() == Some(head),
        "head {} but the log's head is {head}",
        body["head"]
    );
    Ok(())
}

pub(super) async fn after_the_head_is_empty(ctx: Arc<Context>) -> CaseResult {
    let fixture = ctx.fixture().await?;
    let head = ctx.target.head(&fixture.guild).await?;
    let (list, _) = events(&ctx, &fixture, head, None).await?;
    ensure!(list.is_empty(), "{} events after the head", list.len());
    Ok(())
}

pub(super) async fn non_member_servers_cannot_read(ctx: Arc<Context>) -> CaseResult {
    let fixture = ctx.fixture().await?;
    let path = format!("/_guildhall/v1/guilds/{}/events", crate::target::encode(&fixture.guild));
    let (status, body) =
        ctx.stranger.request(&ctx.target, "GET", &path, Some("after=0"), None).await;
    ensure!(status == 403, "a server without members read the log: {status} {body}");
    Ok(())
}

pub(super) async fn unsigned_reads_are_refused(ctx: Arc<Context>) -> CaseResult {
    let fixture = ctx.fixture().await?;
    let path =
        format!("/_guildhall/v1/guilds/{}/events?after=0", crate::target::encode(&fixture.guild));
    let (status, body) = ctx.target.call("GET", &path, None).await;
    ensure!(status == 401, "an unsigned read answered {status} {body}");
    Ok(())
}

pub(super) async fn state_snapshot_is_signed(ctx: Arc<Context>) -> CaseResult {
    let fixture = ctx.fixture().await?;
    let path = format!("/_guildhall/v1/guilds/{}/state", crate::target::encode(&fixture.guild));
    let (status, snapshot) = ctx.peer.request(&ctx.target, "GET", &path, None, None).await;
    ensure!(status == 200, "GET state answered {status} {snapshot}");
    let keys = ctx.keys().await?;
    let host = ServerName::parse(&ctx.target.name).map_err(|e| e.to_string())?;
    signing::verify_json(snapshot.as_object().unwrap_or(&JsonObject::new()), &host, &keys)
        .map_err(|e| format!("snapshot: {e}"))?;
    ensure!(
        snapshot["seq"].as_u64() == Some(ctx.target.head(&fixture.guild).await?),
        "snapshot is not at the head"
    );
    Ok(())
}
