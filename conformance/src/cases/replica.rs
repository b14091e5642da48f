//! The target as a **replica** of a guild the suite's peer hosts (spec chapter 07 §7.3–7.6):
//! it joins when its user is invited to a DM, applies pushed events strictly in order, fills
//! gaps from the host, refuses bad events, and keeps evidence of equivocation.

use std::sync::Arc;
use std::time::Duration;

use guildhall_spec::UserId;
use guildhall_spec::content::{EventContent, MessageCreate};
use guildhall_spec::event::JsonObject;
use serde_json::{Value, json};

use crate::host::HostedGuild;
use crate::peer::unix_now;
use crate::target::Answer;
use crate::{CaseResult, Context, ensure};

/// A DM hosted by the peer, which the target's user has joined (through the target).
struct Dm {
    guild: String,
    owner: UserId,
    invitee: String,
}

async fn push(ctx: &Context, events: Vec<JsonObject>) -> Answer {
    let body = json!({"origin": ctx.peer.name(), "origin_ts": unix_now() * 1000, "events": events, "ephemeral": []});
    let path = format!("/_guildhall/v1/send/replica{}", crate::context::unique());
    ctx.peer.request(&ctx.target, "PUT", &path, None, Some(&body)).await
}

async fn dm(ctx: &Context) -> Result<Dm, String> {
    let invitee = ctx.target.user("invitee").await?;
    let keys = ctx.keys().await?;
    if let Ok(mut trusted) = ctx.peer.trusted.lock() {
        *trusted = keys;
    }
    let owner = UserId::parse(&ctx.peer.user("host")).map_err(|e| e.to_string())?;
    let guild = HostedGuild::dm(
        &ctx.peer.key,
        owner.clone(),
        UserId::parse(&invitee).map_err(|e| e.to_string())?,
    )?;
    let id = guild.guild_id.to_string();
    let invitation = guild.log.last().cloned().ok_or("no invitation")?;
    {
        let mut hosted = ctx.peer.hosted.lock().map_err(|_| "lock")?;
        hosted.insert(id.clone(), guild);
    }
    let (status, answer) = push(ctx, vec![invitation]).await;
    ensure!(status == 200, "pushing the DM invitation answered {status} {answer}");
    for _ in 0..200 {
        if let Ok(state) = ctx.target.state(&id).await
            && state["members"].get(&invitee).is_some()
        {
            return Ok(Dm { guild: id, owner, invitee });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err("the target did not join the DM its user was invited to within 10 s".into())
}

fn with_guild<T>(
    ctx: &Context,
    dm: &Dm,
    f: impl FnOnce(&mut HostedGuild) -> T,
) -> Result<T, String> {
    let mut hosted = ctx.peer.hosted.lock().map_err(|_| "lock")?;
    hosted.get_mut(&dm.guild).map(f).ok_or_else(|| "the peer lost its guild".to_owned())
}

fn message(guild: &HostedGuild, text: &str) -> EventContent {
    EventContent::MessageCreate(MessageCreate {
        channel_id: guild.channel_id.clone(),
        body: text.into(),
        reply_to: None,
        mentions: None,
        attachments: None,
    })
}

async fn bodies(ctx: &Context, dm: &Dm) -> Vec<String> {
    let path = format!(
        "/users/{}/guilds/{}/messages?channel_id=dm",
        crate::target::encode(&dm.invitee),
        crate::target::encode(&dm.guild)
    );
    let (_, body) = ctx.target.control_get(&path).await;
    body["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["body"].as_str().map(str::to_owned))
        .collect()
}

fn first_result(answer: &Value) -> Value {
    answer["results"].as_object().and_then(|r| r.values().next().cloned()).unwrap_or(Value::Null)
}

pub(super) async fn joins_a_dm_it_is_invited_to(ctx: Arc<Context>) -> CaseResult {
    let dm = dm(&ctx).await?;
    let head = ctx.target.head(&dm.guild).await?;
    let host_head = with_guild(&ctx, &dm, |g| g.head())?;
    ensure!(
        head == host_head,
        "the target's head {head} is not the host's {host_head} after joining"
    );
    Ok(())
}

pub(super) async fn applies_pushed_events(ctx: Arc<Context>) -> CaseResult {
    let dm = dm(&ctx).await?;
    let event = with_guild(&ctx, &dm, |g| {
        let content = message(g, "from the peer's host");
        g.append(&ctx.peer.key, &dm.owner, &content)
    })??;
    let (status, answer) = push(&ctx, vec![event]).await;
    ensure!(
        status == 200 && first_result(&answer)["error"].is_null(),
        "push answered {status} {answer}"
    );
    ensure!(
        bodies(&ctx, &dm).await == vec!["from the peer's host"],
        "the target's user does not see the pushed message"
    );
    Ok(())
}

pub(super) async fn fills_gaps_from_the_host(ctx: Arc<Context>) -> CaseResult {
    let dm = dm(&ctx).await?;
    let (skipped, latest) = with_guild(&ctx, &dm, |g| -> Result<_, String> {
        let one = message(g, "skipped");
        let skipped = g.append(&ctx.peer.key, &dm.owner, &one)?;
        let two = message(g, "latest");
        let latest = g.append(&ctx.peer.key, &dm.owner, &two)?;
        Ok((skipped, latest))
    })??;
    let _ = skipped;
    let (status, answer) = push(&ctx, vec![latest]).await;
    ensure!(
        status == 200 && first_result(&answer)["error"].is_null(),
        "push answered {status} {answer}"
    );
    ensure!(
        bodies(&ctx, &dm).await == vec!["skipped", "latest"],
        "the gap was not filled in order: {:?}",
        bodies(&ctx, &dm).await
    );
    Ok(())
}

pub(super) async fn ignores_duplicates(ctx: Arc<Context>) -> CaseResult {
    let dm = dm(&ctx).await?;
    let event = with_guild(&ctx, &dm, |g| {
        let content = message(g, "once");
        g.append(&ctx.peer.key, &dm.owner, &content)
    })??;
    push(&ctx, vec![event.clone()]).await;
    let (status, answer) = push(&ctx, vec![event]).await;
    ensure!(
        status == 200 && first_result(&answer)["error"].is_null(),
        "a duplicate push answered {status} {answer}"
    );
    ensure!(bodies(&ctx, &dm).await == vec!["once"], "the duplicate was applied twice");
    Ok(())
}

pub(super) async fn refuses_a_bad_host_signature(ctx: Arc<Context>) -> CaseResult {
    let dm = dm(&ctx).await?;
    let head = ctx.target.head(&dm.guild).await?;
    let mut event =
        with_guild(&ctx, &dm, |g| g.next(&ctx.peer.key, &dm.owner, &message(g, "forged")))??;
    let name = ctx.peer.name().to_string();
    let signature =
        event["signatures"][&name]["ed25519:peer"].as_str().unwrap_or_default().to_owned();
    let mut bytes = guildhall_spec::base64url::decode(&signature).unwrap_or_default();
    if let Some(first) = bytes.first_mut() {
        *first ^= 1;
    }
    event["signatures"][&name]["ed25519:peer"] = json!(guildhall_spec::base64url::encode(bytes));
    let (status, answer) = push(&ctx, vec![event]).await;
    ensure!(
        status == 200 && first_result(&answer)["error"]["code"] == "bad_host_signature",
        "expected bad_host_signature, got {status} {answer}"
    );
    ensure!(ctx.target.head(&dm.guild).await? == head, "the log moved");
    Ok(())
}

pub(super) async fn answers_each_event_of_a_transaction_in_order(ctx: Arc<Context>) -> CaseResult {
    let dm = dm(&ctx).await?;
    // Seq n, then a forgery at n + 1, then the real event at n + 1: the forgery is refused
    // alone, and the events around it apply in order.
    let (one, mut forged, two) = with_guild(&ctx, &dm, |g| -> Result<_, String> {
        let one = g.append(&ctx.peer.key, &dm.owner, &message(g, "one"))?;
        let forged = g.next(&ctx.peer.key, &dm.owner, &message(g, "forged"))?;
        let two = g.append(&ctx.peer.key, &dm.owner, &message(g, "two"))?;
        Ok((one, forged, two))
    })??;
    let name = ctx.peer.name().to_string();
    let signature =
        forged["signatures"][&name]["ed25519:peer"].as_str().unwrap_or_default().to_owned();
    let mut bytes = guildhall_spec::base64url::decode(&signature).unwrap_or_default();
    if let Some(first) = bytes.first_mut() {
        *first ^= 1;
    }
    forged["signatures"][&name]["ed25519:peer"] = json!(guildhall_spec::base64url::encode(bytes));
    let id = |event: &JsonObject| {
        guildhall_spec::event::event_id(event).map(|id| id.to_string()).unwrap_or_default()
    };
    let ids = [id(&one), id(&forged), id(&two)];
    let (status, answer) = push(&ctx, vec![one, forged, two]).await;
    ensure!(status == 200, "push answered {status}");
    let codes: Vec<Value> =
        ids.iter().map(|id| answer["results"][id]["error"]["code"].clone()).collect();
    ensure!(
        codes == [Value::Null, json!("bad_host_signature"), Value::Null],
        "expected ok, bad_host_signature, ok; got {codes:?}"
    );
    ensure!(
        bodies(&ctx, &dm).await == vec!["one", "two"],
        "the events around the forgery were not applied in order"
    );
    Ok(())
}

pub(super) async fn applies_a_run_up_to_a_broken_link(ctx: Arc<Context>) -> CaseResult {
    let dm = dm(&ctx).await?;
    // Seq n, n + 1, n + 2 in order, then at n + 3 an event naming the wrong predecessor: the
    // three apply (a target may apply such a run in one write), the last alone is refused.
    let wrong_prev = guildhall_spec::EventId::parse(&format!(
        "${}",
        guildhall_spec::base64url::encode([7u8; 32])
    ))
    .map_err(|e| e.to_string())?;
    let events = with_guild(&ctx, &dm, |g| -> Result<_, String> {
        let mut events = Vec::new();
        for text in ["first", "second", "third"] {
            events.push(g.append(&ctx.peer.key, &dm.owner, &message(g, text))?);
        }
        let orphan = message(g, "orphan");
        events.push(g.build(&ctx.peer.key, &dm.owner, &orphan, g.head() + 1, Some(wrong_prev))?);
        Ok(events)
    })??;
    let ids: Vec<String> = events
        .iter()
        .map(|event| {
            guildhall_spec::event::event_id(event).map(|id| id.to_string()).unwrap_or_default()
        })
        .collect();
    let (status, answer) = push(&ctx, events).await;
    ensure!(status == 200, "push answered {status}");
    let codes: Vec<Value> =
        ids.iter().map(|id| answer["results"][id]["error"]["code"].clone()).collect();
    ensure!(
        codes == [Value::Null, Value::Null, Value::Null, json!("broken_chain")],
        "expected ok, ok, ok, broken_chain; got {codes:?}"
    );
    ensure!(
        bodies(&ctx, &dm).await == vec!["first", "second", "third"],
        "the run was not applied in order, or the orphan was"
    );
    Ok(())
}

pub(super) async fn refuses_a_broken_chain(ctx: Arc<Context>) -> CaseResult {
    let dm = dm(&ctx).await?;
    let head = ctx.target.head(&dm.guild).await?;
    let wrong_prev = guildhall_spec::EventId::parse(&format!(
        "${}",
        guildhall_spec::base64url::encode([9u8; 32])
    ))
    .map_err(|e| e.to_string())?;
    let event = with_guild(&ctx, &dm, |g| {
        g.build(&ctx.peer.key, &dm.owner, &message(g, "orphan"), g.head() + 1, Some(wrong_prev))
    })??;
    let (status, answer) = push(&ctx, vec![event]).await;
    ensure!(
        status == 200 && first_result(&answer)["error"]["code"] == "broken_chain",
        "expected broken_chain, got {status} {answer}"
    );
    ensure!(ctx.target.head(&dm.guild).await? == head, "the log moved");
    Ok(())
}

pub(super) async fn keeps_equivocation_evidence(ctx: Arc<Context>) -> CaseResult {
    let dm = dm(&ctx).await?;
    let event = with_guild(&ctx, &dm, |g| {
        let content = message(g, "the real one");
        g.append(&ctx.peer.key, &dm.owner, &content)
    })??;
    push(&ctx, vec![event]).await;
    let (seq, prev) = with_guild(&ctx, &dm, |g| {
        (g.head(), g.log.get(g.log.len() - 2).and_then(|e| guildhall_spec::event::event_id(e).ok()))
    })?;
    let other = with_guild(&ctx, &dm, |g| {
        g.build(&ctx.peer.key, &dm.owner, &message(g, "another past"), seq, prev)
    })??;
    let (status, answer) = push(&ctx, vec![other]).await;
    ensure!(
        status == 200 && first_result(&answer)["error"]["code"] == "equivocation",
        "expected equivocation, got {status} {answer}"
    );
    let (_, evidence) = ctx.target.control_get("/evidence").await;
    let found = evidence["evidence"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|e| e["guild_id"] == dm.guild.as_str() && e["seq"].as_u64() == Some(seq));
    ensure!(found, "no evidence for seq {seq}: {evidence}");
    ensure!(bodies(&ctx, &dm).await == vec!["the real one"], "the held event was replaced");
    Ok(())
}

pub(super) async fn refuses_pushes_from_other_servers(ctx: Arc<Context>) -> CaseResult {
    let dm = dm(&ctx).await?;
    let event =
        with_guild(&ctx, &dm, |g| g.next(&ctx.peer.key, &dm.owner, &message(g, "relayed")))??;
    let body = json!({"origin": ctx.stranger.name(), "origin_ts": unix_now() * 1000, "events": [event], "ephemeral": []});
    let path = format!("/_guildhall/v1/send/relay{}", crate::context::unique());
    let (status, answer) = ctx.stranger.request(&ctx.target, "PUT", &path, None, Some(&body)).await;
    ensure!(
        status == 200 && first_result(&answer)["error"]["code"] == "not_from_host",
        "expected not_from_host, got {status} {answer}"
    );
    Ok(())
}

pub(super) async fn a_host_cannot_touch_messages_of_other_guilds(ctx: Arc<Context>) -> CaseResult {
    // A message in a guild the target hosts...
    let owner = ctx.target.user("owner").await?;
    let (guild, channel) = ctx.target.guild(&owner).await?;
    let id = ctx.target.send(&owner, &guild, &channel, "not yours to delete").await?;
    // ...named by a host-signed deletion in the peer's own guild.
    let dm = dm(&ctx).await?;
    let message_id = guildhall_spec::EventId::parse(&id).map_err(|e| e.to_string())?;
    let hostile = with_guild(&ctx, &dm, |g| {
        let content = EventContent::MessageDelete(guildhall_spec::content::MessageRef {
            channel_id: g.channel_id.clone(),
            message_id,
        });
        let event = g.next(&ctx.peer.key, &dm.owner, &content)?;
        g.log.push(event.clone());
        Ok::<_, String>(event)
    })??;
    push(&ctx, vec![hostile]).await;
    let path = format!(
        "/users/{}/guilds/{}/messages?channel_id={channel}",
        crate::target::encode(&owner),
        crate::target::encode(&guild)
    );
    let (_, body) = ctx.target.control_get(&path).await;
    let intact = body["messages"]
        .as_array()
        .is_some_and(|m| m.iter().any(|m| m["body"] == "not yours to delete"));
    ensure!(intact, "another host's event erased a message of a guild it does not host: {body}");
    Ok(())
}

pub(super) async fn a_host_cannot_touch_messages_of_other_guilds_not_yet_known(
    ctx: Arc<Context>,
) -> CaseResult {
    // Two guilds the peer hosts; the target replicates both.
    let (first, second) = (dm(&ctx).await?, dm(&ctx).await?);
    // A message of the first guild, not yet pushed: its id is known to the (hostile) host only.
    let create = with_guild(&ctx, &first, |g| {
        let content = message(g, "arrives after the attack");
        g.next(&ctx.peer.key, &first.owner, &content)
    })??;
    let message_id = guildhall_spec::event::event_id(&create).map_err(|e| e.to_string())?;
    // The second guild's host names it: a deletion, a reaction and a pin, in its own channel.
    let hostile = with_guild(&ctx, &second, |g| {
        let target = guildhall_spec::content::MessageRef {
            channel_id: g.channel_id.clone(),
            message_id: message_id.clone(),
        };
        let reaction = guildhall_spec::content::Reaction {
            channel_id: g.channel_id.clone(),
            message_id: message_id.clone(),
            emoji: "x".into(),
        };
        let mut events = Vec::new();
        for content in [
            EventContent::ReactionAdd(reaction),
            EventContent::PinAdd(target.clone()),
            EventContent::MessageDelete(target),
        ] {
            let event = g.next(&ctx.peer.key, &second.owner, &content)?;
            g.log.push(event.clone());
            events.push(event);
        }
        Ok::<_, String>(events)
    })??;
    push(&ctx, hostile).await;
    // Then the first guild's message arrives, and must be stored whole and untouched.
    with_guild(&ctx, &first, |g| g.log.push(create.clone()))?;
    let (status, answer) = push(&ctx, vec![create]).await;
    ensure!(status == 200, "pushing the message answered {status} {answer}");
    let path = format!(
        "/users/{}/guilds/{}/messages?channel_id=dm",
        crate::target::encode(&first.invitee),
        crate::target::encode(&first.guild)
    );
    let (_, body) = ctx.target.control_get(&path).await;
    let stored = body["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["message_id"] == message_id.as_str())
        .cloned()
        .unwrap_or(Value::Null);
    ensure!(
        stored["body"] == "arrives after the attack"
            && stored["pinned"] == false
            && stored["reactions"].as_object().is_none_or(serde_json::Map::is_empty),
        "another guild's host erased, pinned or reacted to a message not yet known: {stored}"
    );
    Ok(())
}
