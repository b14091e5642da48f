//! Proposal and event validation (spec chapter 06): a member server's proposal with exactly one
//! defect must be refused, and must leave the guild's log unchanged.

use std::sync::Arc;

use guildhall_spec::event::JsonObject;
use serde_json::{Value, json};
use sha2::Digest as _;

use super::Case;
use crate::context::Fixture;
use crate::peer::Peer;
use crate::{CaseResult, Context, Profile, ensure};

type Defect = fn(&Peer, &Fixture, &mut JsonObject);

/// (name, defect, expected status)
const DEFECTS: &[(&str, Defect, u16)] = &[
    (
        "bad_origin_signature",
        |peer, _, p| {
            let signature = p["signatures"][peer.name().as_str()]["ed25519:peer"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let mut bytes = guildhall_spec::base64url::decode(&signature).unwrap_or_default();
            if let Some(first) = bytes.first_mut() {
                *first ^= 1;
            }
            p["signatures"][peer.name().as_str()]["ed25519:peer"] =
                json!(guildhall_spec::base64url::encode(bytes));
        },
        400,
    ),
    (
        "content_changed_after_signing",
        |_, _, p| {
            p["content"]["body"] = json!("changed after signing");
        },
        400,
    ),
    (
        "missing_origin_signature",
        |_, _, p| {
            p.remove("signatures");
        },
        400,
    ),
    (
        "signature_by_unknown_key_only",
        |peer, _, p| {
            let signature = p["signatures"][peer.name().as_str()]["ed25519:peer"].clone();
            p["signatures"] = json!({peer.name().as_str(): {"ed25519:unknown": signature}});
        },
        400,
    ),
    (
        "content_hash_mismatch",
        |peer, _, p| {
            p["content_hash"] = json!("47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU");
            peer.resign_proposal(p);
        },
        400,
    ),
    (
        "origin_is_not_the_senders_server",
        |peer, f, p| {
            p["sender"] = json!(f.owner);
            peer.resign_proposal(p);
        },
        400,
    ),
    (
        "missing_content_hash",
        |peer, _, p| {
            p.remove("content_hash");
            peer.resign_proposal(p);
        },
        400,
    ),
    (
        "sender_is_not_a_user_id",
        |peer, _, p| {
            p["sender"] = json!("mallory");
            peer.resign_proposal(p);
        },
        400,
    ),
    (
        "unknown_top_level_member",
        |peer, _, p| {
            p.insert("admin".into(), json!(true));
            peer.resign_proposal(p);
        },
        400,
    ),
    (
        "proposal_carries_seq",
        |peer, _, p| {
            p.insert("seq".into(), json!(99));
            peer.resign_proposal(p);
        },
        400,
    ),
    (
        "proposal_carries_unsigned",
        |_, _, p| {
            p.insert("unsigned".into(), json!({"note": 1}));
        },
        400,
    ),
    (
        "third_server_signature",
        |peer, _, p| {
            p["signatures"]["third.example"] = json!({"ed25519:x": "AAAA"});
            let _ = peer;
        },
        400,
    ),
    (
        "content_with_unknown_member",
        |peer, _, p| {
            p["content"]["admin"] = json!(true);
            refresh_hash(p);
            peer.resign_proposal(p);
        },
        400,
    ),
    (
        "body_over_4000_characters",
        |peer, _, p| {
            p["content"]["body"] = json!("x".repeat(4001));
            refresh_hash(p);
            peer.resign_proposal(p);
        },
        400,
    ),
    (
        "empty_body",
        |peer, _, p| {
            p["content"]["body"] = json!("   ");
            refresh_hash(p);
            peer.resign_proposal(p);
        },
        400,
    ),
    (
        "unknown_event_type",
        |peer, _, p| {
            p["type"] = json!("message.explode");
            peer.resign_proposal(p);
        },
        400,
    ),
    (
        "guild_create_from_a_peer",
        |peer, f, p| {
            p["type"] = json!("guild.create");
            p["content"] = json!({"name": "x", "kind": "guild", "owner": f.member});
            refresh_hash(p);
            peer.resign_proposal(p);
        },
        400,
    ),
    (
        "origin_ts_in_the_future",
        |peer, _, p| {
            p["origin_ts"] = json!(crate::peer::unix_now() * 1000 + 3_600_000);
            peer.resign_proposal(p);
        },
        400,
    ),
];

fn refresh_hash(proposal: &mut JsonObject) {
    if let Some(content) = proposal.get("content").and_then(Value::as_object)
        && let Ok(hash) = guildhall_spec::event::content_hash(content)
    {
        proposal.insert("content_hash".into(), json!(hash));
    }
}

/// One case per defect, plus raw-JSON ones (duplicate keys, an integer outside the profile).
pub(super) fn cases() -> Vec<Case> {
    let mut cases: Vec<Case> = DEFECTS
        .iter()
        .map(|&(name, defect, status)| Case {
            id: format!("events.{name}"),
            profile: Profile::Core,
            run: Box::new(move |ctx: Arc<Context>| {
                Box::pin(async move { refused(&ctx, defect, status).await })
            }),
        })
        .collect();
    cases.push(Case {
        id: "events.duplicate_keys_in_json".into(),
        profile: Profile::Core,
        run: Box::new(|ctx: Arc<Context>| Box::pin(duplicate_keys(ctx))),
    });
    cases.push(Case {
        id: "events.integer_below_the_safe_range".into(),
        profile: Profile::Core,
        run: Box::new(|ctx: Arc<Context>| Box::pin(integer_below_the_safe_range(ctx))),
    });
    cases
}

async fn refused(ctx: &Context, defect: Defect, status: u16) -> CaseResult {
    let fixture = ctx.fixture().await?;
    let head = ctx.target.head(&fixture.guild).await?;
    let mut proposal = ctx.peer.proposal(
        &fixture.guild,
        &fixture.member,
        "message.create",
        json!({"channel_id": fixture.channel, "body": "hello"}),
    )?;
    defect(&ctx.peer, &fixture, &mut proposal);
    let (got, body) = ctx.peer.submit(&ctx.target, &fixture.guild, &proposal).await;
    ensure!(
        got == status || ((400..500).contains(&got) && status == 400),
        "expected {status}, got {got} {body}"
    );
    ensure!(body["code"].is_string(), "the refusal has no error code: {body}");
    let after = ctx.target.head(&fixture.guild).await?;
    ensure!(
        after == head,
        "the log moved from {head} to {after} although the proposal was refused"
    );
    Ok(())
}

async fn duplicate_keys(ctx: Arc<Context>) -> CaseResult {
    let fixture = ctx.fixture().await?;
    let head = ctx.target.head(&fixture.guild).await?;
    let proposal = ctx.peer.proposal(
        &fixture.guild,
        &fixture.member,
        "message.create",
        json!({"channel_id": fixture.channel, "body": "hi"}),
    )?;
    // The same member twice: a strict parser must refuse it rather than keep either copy.
    let text = json!({"proposal": proposal}).to_string();
    let text = text.replacen("{\"proposal\":{", "{\"proposal\":{\"sender\":\"@x:y.example\",", 1);
    let path = format!("/_guildhall/v1/guilds/{}/submit", crate::target::encode(&fixture.guild));
    let prepared = ctx.peer.prepare_raw(
        &ctx.target,
        &ctx.target.name,
        "POST",
        &path,
        None,
        text.into_bytes(),
        crate::peer::unix_now(),
    );
    let (status, body) = ctx.peer.send(&ctx.target, &prepared).await;
    ensure!(status == 400, "expected 400, got {status} {body}");
    ensure!(ctx.target.head(&fixture.guild).await? == head, "the log moved");
    Ok(())
}

/// A proposal whose content carries −2^63 (`i64::MIN`), hashed and signed the way a JCS
/// implementation without the profile's range check would. The number is outside ±(2^53−1), so
/// the host must refuse the body (`400 bad_json`) and sign nothing; a parser that takes the
/// magnitude of the number in 64-bit arithmetic overflows on exactly this value. The same
/// proposal with an ordinary number is then accepted, so the number is the only defect.
async fn integer_below_the_safe_range(ctx: Arc<Context>) -> CaseResult {
    let fixture = ctx.fixture().await?;
    // The peer's member may manage channels, so a `channel.update` is otherwise acceptable.
    let role = json!({"role_id": "movers", "name": "movers", "permissions": "16", "position": 1});
    let (status, body) = ctx.target.act(&fixture.owner, &fixture.guild, "role.create", role).await;
    ensure!(status == 200, "setup: role.create answered {status} {body}");
    let grant = json!({"user_id": fixture.member, "roles": ["movers"]});
    let (status, body) =
        ctx.target.act(&fixture.owner, &fixture.guild, "member.update", grant).await;
    ensure!(status == 200, "setup: member.update answered {status} {body}");

    let head = ctx.target.head(&fixture.guild).await?;
    let body = channel_position_proposal(&ctx, &fixture, &i64::MIN.to_string())?;
    let (status, answer) = submit_raw(&ctx, &fixture.guild, body).await;
    ensure!(
        status == 400 && answer["code"] == "bad_json",
        "expected 400 bad_json for position {}, got {status} {answer}",
        i64::MIN
    );
    let after = ctx.target.head(&fixture.guild).await?;
    ensure!(after == head, "the log moved from {head} to {after}: the host signed {}", i64::MIN);

    let body = channel_position_proposal(&ctx, &fixture, "-3")?;
    let (status, answer) = submit_raw(&ctx, &fixture.guild, body).await;
    ensure!(
        status == 200,
        "control: the same proposal with position -3 answered {status} {answer}"
    );
    Ok(())
}

/// The body of a `/submit` whose `channel.update` sets the general channel's position to the
/// number spelled `position`, with a content hash over that spelling and a valid signature.
fn channel_position_proposal(
    ctx: &Context,
    fixture: &Fixture,
    position: &str,
) -> Result<Vec<u8>, String> {
    const PLACEHOLDER: i64 = 7_654_321;
    let content = json!({"channel_id": fixture.channel, "position": PLACEHOLDER});
    let mut proposal =
        ctx.peer.proposal(&fixture.guild, &fixture.member, "channel.update", content)?;
    let content_text =
        format!("{{\"channel_id\":{},\"position\":{position}}}", json!(fixture.channel));
    let hash = guildhall_spec::base64url::encode(sha2::Sha256::digest(content_text.as_bytes()));
    proposal.insert("content_hash".into(), json!(hash));
    ctx.peer.resign_proposal(&mut proposal);
    let text = json!({"proposal": proposal}).to_string();
    let placeholder = format!("\"position\":{PLACEHOLDER}");
    if text.matches(&placeholder).count() != 1 {
        return Err(format!("the placeholder is not unique in {text}"));
    }
    Ok(text.replacen(&placeholder, &format!("\"position\":{position}"), 1).into_bytes())
}

async fn submit_raw(ctx: &Context, guild: &str, body: Vec<u8>) -> crate::target::Answer {
    let path = format!("/_guildhall/v1/guilds/{}/submit", crate::target::encode(guild));
    let prepared = ctx.peer.prepare_raw(
        &ctx.target,
        &ctx.target.name,
        "POST",
        &path,
        None,
        body,
        crate::peer::unix_now(),
    );
    ctx.peer.send(&ctx.target, &prepared).await
}
