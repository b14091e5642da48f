//! Invites: limited uses, revocation, unknown codes and who may see and revoke them.

use crate::harness::*;

#[tokio::test]
async fn a_single_use_invite_admits_exactly_one_user() {
    let server = Server::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let carol = server.register("carol").await;
    let guild = alice.create_guild("Club").await;

    let (status, invite) =
        alice.post(&format!("/channels/{}/invites", guild.general), json!({"max_uses": 1})).await;
    assert_eq!(status, StatusCode::CREATED, "{invite}");
    assert_eq!(invite["max_uses"], 1);
    assert_eq!(invite["uses"], 0);
    assert_eq!(invite["guild_id"], guild.id);
    let code = invite["code"].as_str().unwrap();

    let (status, preview) = bob.get(&format!("/invites/{code}")).await;
    assert_eq!(status, StatusCode::OK, "{preview}");
    assert_eq!(preview["guild_name"], "Club");
    assert_eq!(preview["member_count"], 1);

    let (status, joined) = bob.post_empty(&format!("/invites/{code}")).await;
    assert_eq!(status, StatusCode::OK, "{joined}");
    assert_eq!(joined["id"], guild.id);
    assert_eq!(joined["member_count"], 2);

    assert_error(
        &carol.post_empty(&format!("/invites/{code}")).await,
        StatusCode::NOT_FOUND,
        "unknown_invite",
    );
    assert_error(
        &carol.get(&format!("/invites/{code}")).await,
        StatusCode::NOT_FOUND,
        "unknown_invite",
    );
    assert_error(
        &carol.get(&format!("/guilds/{}", guild.id)).await,
        StatusCode::NOT_FOUND,
        "unknown_guild",
    );
    let mut expected = vec![alice.id.clone(), bob.id.clone()];
    expected.sort();
    assert_eq!(alice.member_ids(&guild.id).await, expected);
}

#[tokio::test]
async fn a_member_cannot_join_twice() {
    let server = Server::start().await;
    let (guild, users) = community(&server, &["alice", "bob"]).await;
    let code = users[0].invite(&guild.general).await;
    assert_error(
        &users[1].post_empty(&format!("/invites/{code}")).await,
        StatusCode::BAD_REQUEST,
        "invalid_event",
    );
    assert_eq!(users[0].member_ids(&guild.id).await.len(), 2);
}

#[tokio::test]
async fn revoked_and_unknown_invites_admit_nobody() {
    let server = Server::start().await;
    let (guild, users) = community(&server, &["alice", "bob"]).await;
    let [alice, bob] = &users[..] else { unreachable!() };
    let carol = server.register("carol").await;

    let owners = alice.invite(&guild.general).await;
    let bobs = bob.invite(&guild.general).await;

    // The owner (MANAGE_GUILD) sees every invite; a member only their own.
    let (_, listed) = alice.get(&format!("/guilds/{}/invites", guild.id)).await;
    let all = ids(&listed["invites"], "code");
    // The invite `community` used to bring bob in is listed too.
    assert_eq!(all.len(), 3, "{listed}");
    assert!(all.contains(&owners) && all.contains(&bobs), "{listed}");
    let (_, listed) = bob.get(&format!("/guilds/{}/invites", guild.id)).await;
    assert_eq!(ids(&listed["invites"], "code"), [bobs.as_str()]);

    // A member may revoke their own invite but not someone else's.
    assert_error(
        &bob.delete(&format!("/invites/{owners}")).await,
        StatusCode::FORBIDDEN,
        "missing_permission",
    );
    assert_eq!(bob.delete(&format!("/invites/{bobs}")).await.0, StatusCode::NO_CONTENT);
    assert_eq!(alice.delete(&format!("/invites/{owners}")).await.0, StatusCode::NO_CONTENT);

    for code in [&owners, &bobs] {
        assert_error(
            &carol.post_empty(&format!("/invites/{code}")).await,
            StatusCode::NOT_FOUND,
            "unknown_invite",
        );
        assert_error(
            &carol.get(&format!("/invites/{code}")).await,
            StatusCode::NOT_FOUND,
            "unknown_invite",
        );
    }
    assert_error(
        &alice.delete(&format!("/invites/{owners}")).await,
        StatusCode::NOT_FOUND,
        "unknown_invite",
    );
    assert_error(
        &carol.post_empty("/invites/nosuchcode").await,
        StatusCode::NOT_FOUND,
        "unknown_invite",
    );
    assert_error(
        &carol.get("/invites/not%20a%20code").await,
        StatusCode::BAD_REQUEST,
        "invalid_id",
    );
    assert_eq!(alice.member_ids(&guild.id).await.len(), 2);
}

#[tokio::test]
async fn invite_limits_are_checked() {
    let server = Server::start().await;
    let alice = server.register("alice").await;
    let guild = alice.create_guild("Club").await;
    let path = format!("/channels/{}/invites", guild.general);
    for body in [
        json!({"max_uses": 0}),
        json!({"max_uses": 101}),
        json!({"max_age_secs": 0}),
        json!({"max_age_secs": 604_801}),
    ] {
        assert_error(
            &alice.post(&path, body.clone()).await,
            StatusCode::BAD_REQUEST,
            "bad_request",
        );
    }
    let (_, listed) = alice.get(&format!("/guilds/{}/invites", guild.id)).await;
    assert!(listed["invites"].as_array().unwrap().is_empty(), "{listed}");
}
