//! Roles and the hierarchy: who may kick, ban, create and grant roles.

use crate::harness::bits::{ADMINISTRATOR, BAN_MEMBERS, KICK_MEMBERS, MANAGE_ROLES, text};
use crate::harness::*;

/// The roles these scenarios use, lowest first.
struct Ranks {
    helper: String,
    moderator: String,
    senior: String,
}

async fn ranks(owner: &User, guild: &str) -> Ranks {
    let moderator_bits = text(KICK_MEMBERS | BAN_MEMBERS | MANAGE_ROLES);
    Ranks {
        helper: owner.create_role(guild, "helper", "0", 1).await,
        moderator: owner.create_role(guild, "moderator", &moderator_bits, 2).await,
        senior: owner.create_role(guild, "senior", "0", 3).await,
    }
}

async fn roles_of(viewer: &User, guild: &str, user: &str) -> Vec<String> {
    let (status, member) = viewer.get(&format!("/guilds/{guild}/members/{user}")).await;
    assert_eq!(status, StatusCode::OK, "{member}");
    member["roles"].as_array().unwrap().iter().map(|r| r.as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn a_moderator_kicks_only_members_below_them() {
    let server = Server::start().await;
    let (guild, users) = community(&server, &["alice", "mona", "max", "sam", "pat"]).await;
    let [alice, mona, max, sam, pat] = &users[..] else { unreachable!() };
    let ranks = ranks(alice, &guild.id).await;
    alice.give_role(&guild.id, &mona.id, &ranks.moderator).await;
    alice.give_role(&guild.id, &max.id, &ranks.moderator).await;
    alice.give_role(&guild.id, &sam.id, &ranks.senior).await;
    let kick = |user: &str| format!("/guilds/{}/members/{user}", guild.id);

    // Without KICK_MEMBERS nobody can kick.
    assert_error(&pat.delete(&kick(&mona.id)).await, StatusCode::FORBIDDEN, "missing_permission");
    // Equal rank, higher rank and the owner are out of reach.
    for target in [max, sam, alice] {
        assert_error(
            &mona.delete(&kick(&target.id)).await,
            StatusCode::FORBIDDEN,
            "missing_permission",
        );
    }
    assert_eq!(alice.member_ids(&guild.id).await.len(), 5);

    let (status, body) = mona.delete_with(&kick(&pat.id), json!({"reason": "spam"})).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let members = alice.member_ids(&guild.id).await;
    assert_eq!(members.len(), 4);
    assert!(!members.contains(&pat.id));
    assert_error(
        &pat.get(&format!("/guilds/{}", guild.id)).await,
        StatusCode::NOT_FOUND,
        "unknown_guild",
    );

    // A kicked member may come back with an invite; the owner may kick anyone.
    pat.join(&alice.invite(&guild.general).await).await;
    assert_eq!(alice.delete(&kick(&sam.id)).await.0, StatusCode::NO_CONTENT);
    assert_eq!(alice.member_ids(&guild.id).await.len(), 4);
}

#[tokio::test]
async fn creating_and_granting_roles_needs_manage_roles_and_rank() {
    let server = Server::start().await;
    let (guild, users) = community(&server, &["alice", "mona", "pat"]).await;
    let [alice, mona, pat] = &users[..] else { unreachable!() };
    let ranks = ranks(alice, &guild.id).await;
    alice.give_role(&guild.id, &mona.id, &ranks.moderator).await;
    let roles_path = format!("/guilds/{}/roles", guild.id);
    let role_count = async || alice.get(&roles_path).await.1["roles"].as_array().unwrap().len();
    assert_eq!(role_count().await, 4);

    let create = |name: &str, permissions: u64, position: i64| json!({"name": name, "permissions": text(permissions), "position": position});
    assert_error(
        &pat.post(&roles_path, create("mine", 0, 1)).await,
        StatusCode::FORBIDDEN,
        "missing_permission",
    );
    // A role at or above one's own rank, or granting a bit one lacks, is refused.
    assert_error(
        &mona.post(&roles_path, create("peer", 0, 2)).await,
        StatusCode::FORBIDDEN,
        "missing_permission",
    );
    assert_error(
        &mona.post(&roles_path, create("boss", 0, 5)).await,
        StatusCode::FORBIDDEN,
        "missing_permission",
    );
    assert_error(
        &mona.post(&roles_path, create("admin", ADMINISTRATOR, 1)).await,
        StatusCode::FORBIDDEN,
        "missing_permission",
    );
    assert_eq!(role_count().await, 4);
    let (status, role) = mona.post(&roles_path, create("kicker", KICK_MEMBERS, 1)).await;
    assert_eq!(status, StatusCode::CREATED, "{role}");
    assert_eq!(role["permissions"], text(KICK_MEMBERS));
    assert_eq!(role_count().await, 5);

    let grant = |role: &str| format!("/guilds/{}/members/{}/roles/{role}", guild.id, pat.id);
    assert_error(
        &pat.put_empty(&format!("/guilds/{}/members/@me/roles/{}", guild.id, ranks.helper)).await,
        StatusCode::FORBIDDEN,
        "missing_permission",
    );
    assert_error(
        &mona.put_empty(&grant(&ranks.senior)).await,
        StatusCode::FORBIDDEN,
        "missing_permission",
    );
    assert_error(
        &mona.put_empty(&grant(&ranks.moderator)).await,
        StatusCode::FORBIDDEN,
        "missing_permission",
    );
    assert!(roles_of(alice, &guild.id, &pat.id).await.is_empty());
    assert_eq!(mona.put_empty(&grant(&ranks.helper)).await.0, StatusCode::NO_CONTENT);
    assert_eq!(roles_of(alice, &guild.id, &pat.id).await, [ranks.helper.as_str()]);
    assert_eq!(mona.delete(&grant(&ranks.helper)).await.0, StatusCode::NO_CONTENT);
    assert!(roles_of(alice, &guild.id, &pat.id).await.is_empty());

    assert_error(
        &mona.put_empty(&grant("nosuchrole")).await,
        StatusCode::NOT_FOUND,
        "unknown_role",
    );
    let stranger = server.register("stranger").await;
    let stranger_grant =
        format!("/guilds/{}/members/{}/roles/{}", guild.id, stranger.id, ranks.helper);
    assert_error(&mona.put_empty(&stranger_grant).await, StatusCode::NOT_FOUND, "unknown_member");

    // Deleting a role follows the same ranks.
    assert_error(
        &mona.delete(&format!("{roles_path}/{}", ranks.senior)).await,
        StatusCode::FORBIDDEN,
        "missing_permission",
    );
    assert_eq!(
        alice.delete(&format!("{roles_path}/{}", ranks.senior)).await.0,
        StatusCode::NO_CONTENT
    );
    assert_error(
        &alice.delete(&format!("{roles_path}/everyone")).await,
        StatusCode::BAD_REQUEST,
        "invalid_event",
    );
    let (_, roles) = alice.get(&roles_path).await;
    let positions: Vec<i64> = roles["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["position"].as_i64().unwrap())
        .collect();
    assert!(positions.is_sorted(), "lowest first: {roles}");
    assert!(!ids(&roles["roles"], "id").contains(&ranks.senior));
}

#[tokio::test]
async fn banned_users_stay_out_until_unbanned() {
    let server = Server::start().await;
    let (guild, users) = community(&server, &["alice", "mona", "pat", "pia"]).await;
    let [alice, mona, pat, pia] = &users[..] else { unreachable!() };
    let ranks = ranks(alice, &guild.id).await;
    alice.give_role(&guild.id, &mona.id, &ranks.moderator).await;
    let code = alice.invite(&guild.general).await;
    let ban = |user: &str| format!("/guilds/{}/bans/{user}", guild.id);
    let bans = format!("/guilds/{}/bans", guild.id);

    assert_error(&pia.put_empty(&ban(&pat.id)).await, StatusCode::FORBIDDEN, "missing_permission");
    assert_error(
        &mona.put_empty(&ban(&alice.id)).await,
        StatusCode::FORBIDDEN,
        "missing_permission",
    );
    let (status, body) = mona.put(&ban(&pat.id), json!({"reason": "spam"})).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert!(!alice.member_ids(&guild.id).await.contains(&pat.id));

    // A valid invite does not let a banned user back in.
    assert_error(
        &pat.post_empty(&format!("/invites/{code}")).await,
        StatusCode::FORBIDDEN,
        "banned",
    );
    assert!(!alice.member_ids(&guild.id).await.contains(&pat.id));

    let (status, listed) = mona.get(&bans).await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    assert_eq!(listed["bans"], json!([{"user_id": pat.id, "reason": "spam", "by": mona.id}]));
    assert_error(&pia.get(&bans).await, StatusCode::FORBIDDEN, "missing_permission");
    assert_error(&pia.delete(&ban(&pat.id)).await, StatusCode::FORBIDDEN, "missing_permission");

    assert_eq!(mona.delete(&ban(&pat.id)).await.0, StatusCode::NO_CONTENT);
    assert_eq!(mona.get(&bans).await.1["bans"], json!([]));
    pat.join(&code).await;
    assert!(alice.member_ids(&guild.id).await.contains(&pat.id));
}

#[tokio::test]
async fn concurrent_role_grants_all_land() {
    let server = Server::start().await;
    let (guild, users) = community(&server, &["alice", "bob"]).await;
    let [alice, bob] = &users[..] else { unreachable!() };
    let mut roles = Vec::new();
    for index in 0..10 {
        roles.push(alice.create_role(&guild.id, &format!("r{index}"), "0", index + 1).await);
    }
    let grants: Vec<_> = roles
        .iter()
        .map(|role| {
            let (alice, path) =
                (alice.clone(), format!("/guilds/{}/members/{}/roles/{role}", guild.id, bob.id));
            tokio::spawn(async move { alice.put_empty(&path).await.0 })
        })
        .collect();
    for grant in grants {
        assert_eq!(grant.await.unwrap(), StatusCode::NO_CONTENT);
    }
    let (_, member) = alice.get(&format!("/guilds/{}/members/{}", guild.id, bob.id)).await;
    let held = member["roles"].as_array().map_or(0, Vec::len);
    assert_eq!(held, roles.len(), "every grant landed: {member}");
}
