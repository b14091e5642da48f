//! What operators watch: liveness, readiness and Prometheus metrics.

use std::net::TcpListener;

use crate::harness::{Encoding, Gateway, Server, StatusCode};

/// A loopback address for the metrics listener.
fn metrics_address() -> String {
    let probe = TcpListener::bind("127.0.0.1:0").unwrap();
    probe.local_addr().unwrap().to_string()
}

async fn scrape(address: &str) -> String {
    let response = reqwest::get(format!("http://{address}/metrics")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.text().await.unwrap()
}

/// The value of one series, if present.
fn value(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}

#[tokio::test]
async fn readiness_reports_the_database_and_metrics_count_what_happens_on_their_own_port() {
    let address = metrics_address();
    let server = Server::builder().env("GUILDHALL_METRICS__LISTEN", &address).start().await;
    let (status, body) = server.client().get_absolute("/ready").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["database"], "ok");

    let alice = server.register("alice").await;
    let (_gateway, _) = Gateway::identified(&server, &alice.token, Encoding::Json).await;
    let metrics = scrape(&address).await;
    let registered = value(
        &metrics,
        "guildhall_http_requests_total{method=\"POST\",route=\"/api/v1/auth/register\",status=\"201\"}",
    );
    assert_eq!(registered, Some(1.0), "one registration counted by its route");
    assert_eq!(value(&metrics, "guildhall_gateway_sessions"), Some(1.0));
    assert!(
        !metrics.contains(&alice.id),
        "no user ids in metrics (routes are patterns, not paths)"
    );
    // Never on the public port.
    let (status, _) = server.client().get_absolute("/metrics").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn without_a_metrics_address_nothing_serves_metrics() {
    let server = Server::start().await;
    let (status, _) = server.client().get_absolute("/metrics").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// Runs `guildhall admin <args>` and returns its output; the command must succeed.
fn admin(server: &mut Server, args: &[&str]) -> String {
    let output = server.admin(args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "admin {args:?}: {}", stderr.lines().last().unwrap_or(""));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "guildhall-{name}-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
}

/// Deletes the SQLite database (and its journal) of a stopped server.
fn remove_sqlite(server: &Server) {
    for file in ["guildhall.sqlite3", "guildhall.sqlite3-wal", "guildhall.sqlite3-shm"] {
        let _ = std::fs::remove_file(server.dir().join(file));
    }
}

#[tokio::test]
async fn a_running_sqlite_server_is_backed_up_and_restored_to_that_moment() {
    let mut server = Server::builder().sqlite().start().await;
    let alice = server.register("alice").await;
    let guild = alice.create_guild("kept").await;
    alice.send(&guild.general, "before the backup").await;
    let backup = scratch("backup");
    let said = admin(&mut server, &["backup", backup.to_str().unwrap()]);
    assert!(said.contains("backed up"), "{said}");
    alice.send(&guild.general, "after the backup").await;

    server.stop();
    remove_sqlite(&server);
    admin(&mut server, &["restore", backup.to_str().unwrap()]);
    // Restoring over a database that exists is refused (nothing is overwritten).
    let again = server.admin(&["restore", backup.to_str().unwrap()]);
    assert!(!again.status.success(), "a second restore over the restored database is refused");
    server.launch().await;
    let alice = server.login("alice").await;
    let history = alice.history_contents(&guild.general).await;
    assert!(history.contains(&"before the backup".to_owned()), "the backup holds what was there");
    assert!(!history.contains(&"after the backup".to_owned()), "and nothing later");
    alice.send(&guild.general, "after the restore").await;
    let _ = std::fs::remove_dir_all(backup);
}

#[tokio::test]
async fn a_postgres_server_is_backed_up_with_pg_dump_and_restored_into_a_new_database() {
    let mut server = Server::builder().postgres().start().await;
    let alice = server.register("alice").await;
    let guild = alice.create_guild("dumped").await;
    alice.send(&guild.general, "in the dump").await;
    let backup = scratch("pgbackup");
    admin(&mut server, &["backup", backup.to_str().unwrap()]);
    assert!(backup.join("database.pgdump").exists());

    server.stop();
    server.set_env("GUILDHALL_DATABASE__URL", &Server::fresh_postgres_database());
    admin(&mut server, &["restore", backup.to_str().unwrap()]);
    server.launch().await;
    let alice = server.login("alice").await;
    assert_eq!(alice.history_contents(&guild.general).await, ["in the dump"]);
    alice.send(&guild.general, "on the restored database").await;
    let _ = std::fs::remove_dir_all(backup);
}

#[tokio::test]
async fn a_community_moves_from_sqlite_to_postgres_with_everything_checked() {
    let mut server = Server::builder().sqlite().start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let guild = alice.create_guild("moving").await;
    bob.join(&alice.invite(&guild.general).await).await;
    let first = alice.send(&guild.general, "the first word").await;
    bob.send(&guild.general, "a reply with a searchable word").await;
    let (status, _) = bob
        .put_empty(&format!(
            "/channels/{}/messages/{}/reactions/%F0%9F%91%8D/@me",
            guild.general,
            first["id"].as_str().unwrap()
        ))
        .await;
    assert!(status.is_success());
    server.stop();

    let target = Server::fresh_postgres_database();
    let said = admin(&mut server, &["migrate-to-postgres", &target]);
    assert!(said.contains("heads of 1 guild logs match"), "{said}");
    // A second run refuses: the target is no longer empty.
    assert!(!server.admin(&["migrate-to-postgres", &target]).status.success());

    remove_sqlite(&server);
    server.set_env("GUILDHALL_DATABASE__URL", &target);
    server.launch().await;
    let alice = server.login("alice").await;
    let history = alice.history_contents(&guild.general).await;
    assert_eq!(history, ["a reply with a searchable word", "the first word"]);
    let (status, found) =
        alice.get(&format!("/guilds/{}/messages/search?q=searchable", guild.id)).await;
    assert_eq!(status, StatusCode::OK, "{found}");
    assert_eq!(found["messages"].as_array().map(Vec::len), Some(1), "search works on the copy");
    // New rows continue after the copied ones.
    alice.send(&guild.general, "written on PostgreSQL").await;
    assert_eq!(alice.history_contents(&guild.general).await.len(), 3);
}
