//! Several nodes of one server on one PostgreSQL database and one Redis: what a client sees
//! does not depend on which node it talks to, concurrent writes to one guild keep its log
//! whole, and a node that dies leaves nothing undelivered.

use std::time::Duration;

use futures_util::future::join_all;

use crate::federation::{contents, eventually, federating, federating_builder, join_remote};
use crate::harness::{Encoding, Gateway, Server, json};

/// Two nodes of one server.
async fn two_nodes(first: crate::harness::ServerBuilder) -> (Server, Server) {
    let first = first.postgres().redis().start().await;
    let second = first.node().start().await;
    (first, second)
}

/// The seqs of a guild's log as stored, in order.
async fn stored_seqs(server: &Server, guild: &str) -> Vec<i64> {
    let url = server.database_url().expect("a PostgreSQL server");
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let seqs = sqlx::query_scalar("SELECT seq FROM events WHERE guild_id = $1 ORDER BY seq")
        .bind(guild)
        .fetch_all(&pool)
        .await
        .unwrap();
    pool.close().await;
    seqs
}

#[tokio::test]
async fn a_client_on_one_node_sees_live_what_is_sent_through_the_other() {
    let (first, second) = two_nodes(Server::builder()).await;
    let alice = first.register("alice").await;
    let guild = alice.create_guild("two nodes").await;
    let (mut gateway, _) = Gateway::identified(&first, &alice.token, Encoding::Json).await;

    let through_second = second.login("alice").await;
    let sent = through_second.send(&guild.general, "sent through the second node").await;
    let seen = gateway.expect_dispatch("MESSAGE_CREATE", |d| d["id"] == sent["id"]).await;
    assert_eq!(seen["d"]["content"], "sent through the second node");
    // And what the first node serves includes it at once.
    assert_eq!(
        alice.history_contents(&guild.general).await.first().map(String::as_str),
        Some("sent through the second node")
    );
}

#[tokio::test]
async fn two_nodes_writing_one_guild_at_once_leave_no_gap_and_no_duplicate() {
    let (first, second) = two_nodes(Server::builder()).await;
    let on_first = first.register("alice").await;
    let guild = on_first.create_guild("busy").await;
    let on_second = second.login("alice").await;
    let head_before = stored_seqs(&first, &guild.id).await.len();

    const EACH: usize = 30;
    let sends = (0..2 * EACH).map(|i| {
        let user = if i % 2 == 0 { &on_first } else { &on_second };
        let channel = guild.general.clone();
        async move {
            let body = json!({"content": format!("m{i}"), "nonce": format!("n{i}")});
            user.post(&format!("/channels/{channel}/messages"), body).await
        }
    });
    let answers = join_all(sends).await;
    assert!(answers.iter().all(|(status, _)| status.is_success()), "every send succeeds");

    let seqs = stored_seqs(&first, &guild.id).await;
    let expected: Vec<i64> = (1..=i64::try_from(head_before + 2 * EACH).unwrap()).collect();
    assert_eq!(seqs, expected, "seqs run 1..=n with no gap and no duplicate");
    // A retried send (the same nonce) on the other node returns the original message.
    let (status, replay) = on_second
        .post(
            &format!("/channels/{}/messages", guild.general),
            json!({"content": "m0", "nonce": "n0"}),
        )
        .await;
    assert!(status.is_success());
    assert_eq!(replay["id"], answers[0].1["id"], "an idempotent replay across nodes");
    assert_eq!(
        stored_seqs(&first, &guild.id).await.len(),
        expected.len(),
        "the replay wrote nothing"
    );
}

#[tokio::test]
async fn a_gateway_session_resumes_on_the_other_node() {
    let (first, second) = two_nodes(Server::builder()).await;
    let alice = first.register("alice").await;
    let guild = alice.create_guild("resume").await;
    let (gateway, ready) = Gateway::identified(&first, &alice.token, Encoding::Json).await;
    let session_id = ready["session_id"].as_str().unwrap().to_owned();
    let seq = gateway.last_seq.unwrap();
    gateway.close().await;
    let missed = alice.send(&guild.general, "while away").await;

    let mut gateway = Gateway::connect(&second, Encoding::Json).await;
    let resume =
        json!({"op": 6, "d": {"token": alice.token, "session_id": session_id, "seq": seq}});
    gateway.send(&resume).await;
    let frames = gateway.collect_until("RESUMED", |_| true).await;
    let replayed = frames
        .iter()
        .filter(|f| f["t"] == "MESSAGE_CREATE" && f["d"]["id"] == missed["id"])
        .count();
    assert_eq!(replayed, 1, "the missed message is replayed once by the other node");
}

#[tokio::test]
async fn a_dead_nodes_federation_queue_is_taken_over_and_nothing_is_lost_or_doubled() {
    let lease = federating_builder().env("GUILDHALL_FEDERATION__DELIVERY_LEASE_SECS", "2");
    let (first, mut second) = two_nodes(lease).await;
    let mut remote = federating().await;
    let alice = first.register("alice").await;
    let guild = alice.create_guild("queued").await;
    let code = alice.invite(&guild.general).await;
    let bob = remote.register("bob").await;
    join_remote(&bob, &first, &code).await;

    // The member server goes away; messages sent through the second node queue for it there.
    remote.stop();
    let through_second = second.login("alice").await;
    let sent: Vec<String> = (0..10).map(|i| format!("queued {i}")).collect();
    for content in &sent {
        through_second.send(&guild.general, content).await;
    }
    // The second node dies holding the queue; the member server comes back.
    second.stop();
    remote.launch().await;

    let seen = eventually(
        Duration::from_secs(30),
        || contents(&bob, &guild.general),
        |seen| sent.iter().all(|content| seen.contains(content)),
    )
    .await;
    let delivered: Vec<&String> = seen.iter().filter(|c| c.starts_with("queued ")).collect();
    assert_eq!(delivered.len(), sent.len(), "every queued message arrives once: {delivered:?}");
    // And the queue the dead node left is worked off, not left to be sent again.
    let url = first.database_url().expect("a PostgreSQL server");
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let queued = eventually(
        Duration::from_secs(10),
        || async {
            sqlx::query_scalar::<_, i64>(
                "SELECT COUNT(*) FROM outbound_events WHERE destination = $1",
            )
            .bind(remote.name())
            .fetch_one(&pool)
            .await
            .unwrap()
        },
        |queued| *queued == 0,
    )
    .await;
    assert_eq!(queued, 0, "the taken-over queue is empty once delivered");
}
