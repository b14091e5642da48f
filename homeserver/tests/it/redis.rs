//! Several nodes of one server on one Redis (`[redis] url`): shared rate limits, presence counted
//! once across nodes, bus messages crossing between nodes, and resumable gateway sessions kept
//! in Redis. Every node here has its own SQLite database (the shared database is another
//! engine's work), so the users a test needs on two nodes are registered on each, under the
//! one server name all the nodes share.
//!
//! Servers of different names share a Redis too (as many test servers share one CI Redis), each
//! under its own namespace: they keep their own rate limits, bus and nodes.
//!
//! These tests need a Redis: `GUILDHALL_TEST_REDIS=redis://127.0.0.1:PORT` (without a database
//! number; each test takes its own database and empties it first).

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures_util::StreamExt;

use crate::harness::{Encoding, Gateway, Received, Server, StatusCode, User, Value, json};

/// The server name every node of a test deployment answers to.
const SERVER_NAME: &str = "nodes.test";

/// The test Redis' URL for database `database`; fails the test, saying how to run it, when
/// there is none.
fn redis_url(database: u8) -> String {
    let Ok(base) = std::env::var("GUILDHALL_TEST_REDIS") else {
        panic!(
            "GUILDHALL_TEST_REDIS is not set: the Redis tests need a running redis-server. Start one \
             with `cargo xtask services` and export the URL it prints, or run `redis-server --port \
             63790 --save '' --appendonly no --daemonize yes` and set \
             GUILDHALL_TEST_REDIS=redis://127.0.0.1:63790"
        )
    };
    format!("{}/{database}", base.trim_end_matches('/'))
}

/// Empties the test's Redis database, so a rerun starts from nothing.
async fn fresh_redis(database: u8) -> (String, redis::aio::MultiplexedConnection) {
    let url = redis_url(database);
    let client = redis::Client::open(url.as_str()).expect("a Redis URL");
    let mut connection = client
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|error| panic!("cannot reach the Redis at GUILDHALL_TEST_REDIS: {error}"));
    redis::cmd("FLUSHDB").query_async::<()>(&mut connection).await.expect("FLUSHDB");
    (url, connection)
}

/// A node of the test deployment on the Redis at `url`.
async fn node(url: &str, settings: &[(&str, &str)]) -> Server {
    let mut builder = Server::builder()
        .env("GUILDHALL_REDIS__URL", url)
        .env("GUILDHALL_SERVER__SERVER_NAME", SERVER_NAME);
    for (key, value) in settings {
        builder = builder.env(key, value);
    }
    builder.start().await
}

/// A server named after its own address (`127.0.0.1:{port}`, a colon in the name) on the Redis
/// at `url`.
async fn server_of_its_own(url: &str, settings: &[(&str, &str)]) -> Server {
    let mut builder = Server::builder().env("GUILDHALL_REDIS__URL", url);
    for (key, value) in settings {
        builder = builder.env(key, value);
    }
    builder.start().await
}

/// Every `PRESENCE_UPDATE` of `user` on `gateway` up to and including the one with `status`.
async fn presence_until(gateway: &mut Gateway, user: &str, status: &str) -> Vec<String> {
    let frames = gateway
        .collect_until("PRESENCE_UPDATE", |d| d["user_id"] == user && d["status"] == status)
        .await;
    frames
        .iter()
        .filter(|frame| frame["t"] == "PRESENCE_UPDATE" && frame["d"]["user_id"] == user)
        .map(|frame| frame["d"]["status"].as_str().unwrap_or("?").to_owned())
        .collect()
}

#[tokio::test]
async fn failed_logins_are_limited_across_nodes() {
    let (url, _redis) = fresh_redis(1).await;
    // Three failed logins a user, then one a minute: nothing refills during the test.
    let limits = [
        ("GUILDHALL_RATE_LIMITS__FAILED_LOGINS_PER_MINUTE", "1"),
        ("GUILDHALL_RATE_LIMITS__FAILED_LOGINS_BURST", "3"),
    ];
    let (one, two) = (node(&url, &limits).await, node(&url, &limits).await);
    one.register("alice").await;
    two.register("alice").await;
    let wrong = json!({"username": "alice", "password": "not the password"});
    for attempt in 1..=3 {
        let (status, body) = one.client().post("/auth/login", wrong.clone()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "attempt {attempt} on node 1: {body}");
    }
    let (status, body) = one.client().post("/auth/login", wrong.clone()).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "attempt 4 on node 1: {body}");
    // Node 2 never saw a failed login of alice's, and still refuses: the bucket is shared.
    let right = json!({"username": "alice", "password": crate::harness::PASSWORD});
    let (status, body) = two.client().post("/auth/login", right).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "node 2: {body}");
    assert!(body["retry_after_ms"].as_u64().is_some_and(|ms| ms > 0), "{body}");
}

#[tokio::test]
async fn servers_of_other_names_on_one_redis_keep_their_own_per_ip_limits() {
    let (url, _redis) = fresh_redis(4).await;
    // Twenty requests an address, then one a second: far less than the test's requests.
    let limits = [
        ("GUILDHALL_RATE_LIMITS__PER_IP_PER_SECOND", "1"),
        ("GUILDHALL_RATE_LIMITS__PER_IP_BURST", "20"),
    ];
    let one = server_of_its_own(&url, &limits).await;
    let two = server_of_its_own(&url, &limits).await;
    assert_ne!(one.name(), two.name(), "two servers of other names");
    let exhaust = async |server: &Server| {
        let mut allowed = 0;
        for _ in 0..100 {
            let (status, body) = server.client().get("/nowhere").await;
            match status {
                StatusCode::TOO_MANY_REQUESTS => return allowed,
                StatusCode::NOT_FOUND => allowed += 1,
                other => panic!("GET /nowhere on {}: {other} {body}", server.name()),
            }
        }
        panic!("{} never limited 127.0.0.1 ({allowed} requests allowed)", server.name())
    };
    assert!(exhaust(&one).await <= 20, "server one's burst is 20");
    // Had the servers shared a bucket, server two would allow the second or two refilled since.
    let allowed = exhaust(&two).await;
    assert!(
        (10..=20).contains(&allowed),
        "server two limits with a bucket of its own, untouched by server one's: {allowed} allowed"
    );
}

#[tokio::test]
async fn servers_of_other_names_on_one_redis_hear_only_their_own_bus_and_nodes() {
    let (url, mut redis) = fresh_redis(5).await;
    let one = server_of_its_own(&url, &[]).await;
    let two = server_of_its_own(&url, &[]).await;
    let client = redis::Client::open(url.as_str()).expect("a Redis URL");
    let mut pubsub = client.get_async_pubsub().await.expect("a pub/sub connection");
    pubsub.subscribe(&[channel_of(&one), channel_of(&two)]).await.expect("SUBSCRIBE");
    let mut messages = pubsub.into_on_message();
    // Waits for the message on `wanted` that mentions `mentioning`, returning every message of
    // both channels up to it as (channel, payload).
    let mut until = async |wanted: &str, mentioning: &str| {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let message = tokio::time::timeout(left, messages.next()).await;
            let Ok(Some(message)) = message else {
                panic!("no message mentioning {mentioning} on {wanted}; saw {}", seen.len())
            };
            let payload = String::from_utf8_lossy(message.get_payload_bytes()).into_owned();
            let found = message.get_channel_name() == wanted && payload.contains(mentioning);
            seen.push((message.get_channel_name().to_owned(), payload));
            if found {
                return seen;
            }
        }
    };

    let alice = one.register("alice").await;
    let (_on_one, _) = Gateway::identified(&one, &alice.token, Encoding::Json).await;
    until(&channel_of(&one), &alice.id).await;
    let bob = two.register("bob").await;
    let (_on_two, _) = Gateway::identified(&two, &bob.token, Encoding::Json).await;
    let seen = until(&channel_of(&two), &bob.id).await;
    let crossed: Vec<_> = seen
        .iter()
        .filter(|(channel, payload)| {
            (*channel == channel_of(&one) && payload.contains(&two.name()))
                || (*channel == channel_of(&two) && payload.contains(&one.name()))
        })
        .collect();
    assert!(crossed.is_empty(), "a server's messages on the other's channel: {crossed:?}");

    // Each server lists only its own node, so neither takes the other's for dead and reaps it.
    for server in [&one, &two] {
        let key = format!("guildhall:{}:nodes", server.name());
        let nodes: Vec<String> =
            redis::cmd("SMEMBERS").arg(&key).query_async(&mut redis).await.expect("SMEMBERS");
        assert_eq!(nodes.len(), 1, "{key}: {nodes:?}");
        let alive: bool = redis::cmd("EXISTS")
            .arg(format!("guildhall:{}:node:{}", server.name(), nodes[0]))
            .query_async(&mut redis)
            .await
            .expect("EXISTS");
        assert!(alive, "{}'s node has its liveness key in its namespace", server.name());
    }
}

/// The bus channel of `server`'s deployment.
fn channel_of(server: &Server) -> String {
    format!("guildhall:{}:bus", server.name())
}

#[tokio::test]
async fn a_user_on_two_nodes_is_online_once_and_changes_cross_between_nodes() {
    let (url, _redis) = fresh_redis(2).await;
    let (one, two) = (node(&url, &[]).await, node(&url, &[]).await);
    let bob = one.register("bob").await;
    let alice: User = one.register("alice").await;
    let guild = bob.create_guild("Both").await;
    alice.join(&bob.invite(&guild.general).await).await;
    let alice_on_two = two.register("alice").await;
    assert_eq!(alice.id, alice_on_two.id, "one user on both nodes");

    let (mut watcher, _) = Gateway::identified(&one, &bob.token, Encoding::Json).await;
    let (on_one, _) = Gateway::identified(&one, &alice.token, Encoding::Json).await;
    assert_eq!(presence_until(&mut watcher, &alice.id, "online").await, ["online"]);
    let (mut on_two, _) = Gateway::identified(&two, &alice_on_two.token, Encoding::Json).await;
    on_one.close().await;
    // Still connected to node 2: what comes next is the status chosen there, published by node
    // 2 and delivered by node 1's gateway, and no `offline` before it.
    on_two.send(&json!({"op": 3, "d": {"status": "idle"}})).await;
    assert_eq!(presence_until(&mut watcher, &alice.id, "idle").await, ["idle"]);
    on_two.close().await;
    assert_eq!(presence_until(&mut watcher, &alice.id, "offline").await, ["offline"]);
}

#[tokio::test]
async fn disconnected_sessions_live_in_redis_and_resume_once() {
    let (url, mut redis) = fresh_redis(3).await;
    let server = node(&url, &[("GUILDHALL_GATEWAY__RESUME_WINDOW_SECS", "120")]).await;
    let alice = server.register("alice").await;
    let (gateway, ready) = Gateway::identified(&server, &alice.token, Encoding::Json).await;
    let session_id = ready["session_id"].as_str().expect("a session id").to_owned();
    let seq = ready["seq"].as_i64().expect("a stream position");
    let key = format!("guildhall:{SERVER_NAME}:session:{session_id}");
    gateway.close().await;

    // The node writes the record once it has noticed the disconnection.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let record = loop {
        let record: Option<String> =
            redis::cmd("GET").arg(&key).query_async(&mut redis).await.expect("GET");
        if let Some(record) = record {
            break record;
        }
        assert!(tokio::time::Instant::now() < deadline, "no {key} in Redis");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let record: Value = serde_json::from_str(&record).expect("a JSON record");
    assert_eq!(record["user"], alice.id.as_str(), "{record}");
    let ttl: i64 = redis::cmd("TTL").arg(&key).query_async(&mut redis).await.expect("TTL");
    assert!((1..=120).contains(&ttl), "the record expires with the resume window: {ttl}");

    // Two resumes at once: exactly one gets the session.
    let resume =
        json!({"op": 6, "d": {"token": alice.token, "session_id": session_id, "seq": seq}});
    let mut first = Gateway::connect(&server, Encoding::Json).await;
    let mut second = Gateway::connect(&server, Encoding::Json).await;
    tokio::join!(first.send(&resume), second.send(&resume));
    let (first, second) = tokio::join!(resumed(&mut first), resumed(&mut second));
    assert!(first != second, "exactly one resume succeeds: {first} and {second}");
    let exists: bool =
        redis::cmd("EXISTS").arg(&key).query_async(&mut redis).await.expect("EXISTS");
    assert!(!exists, "a claimed session leaves Redis");
}

#[tokio::test]
async fn nodes_outlive_a_redis_outage_limiting_locally_and_reconnect_after_it() {
    let mut redis = OwnRedis::start();
    redis.wait_ready().await;
    let url = redis.url();
    let limits = [
        ("GUILDHALL_RATE_LIMITS__FAILED_LOGINS_PER_MINUTE", "1"),
        ("GUILDHALL_RATE_LIMITS__FAILED_LOGINS_BURST", "3"),
    ];
    let (one, two) = (node(&url, &limits).await, node(&url, &limits).await);
    let bob = one.register("bob").await;
    let alice = one.register("alice").await;
    let guild = bob.create_guild("Outage").await;
    alice.join(&bob.invite(&guild.general).await).await;
    let alice_on_two = two.register("alice").await;

    redis.stop();
    // Without Redis, node 1 limits with its own buckets: never not at all.
    let wrong = json!({"username": "alice", "password": "not the password"});
    for attempt in 1..=3 {
        let (status, body) = one.client().post("/auth/login", wrong.clone()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "attempt {attempt} without Redis: {body}");
    }
    let (status, body) = one.client().post("/auth/login", wrong).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "attempt 4 without Redis: {body}");
    let (mut watcher, _) = Gateway::identified(&one, &bob.token, Encoding::Json).await;

    // Redis is back: the nodes reconnect by themselves, and what node 2 publishes reaches node
    // 1's gateway again (a message sent while a connection is still being re-established may
    // be lost, so alice connects until bob hears of it).
    redis.start_again();
    redis.wait_ready().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (on_two, _) = Gateway::identified(&two, &alice_on_two.token, Encoding::Json).await;
        if sees_presence(&mut watcher, &alice.id, "online", Duration::from_secs(3)).await {
            break;
        }
        on_two.close().await;
        assert!(
            tokio::time::Instant::now() < deadline,
            "node 1 never heard of alice on node 2 after Redis came back"
        );
    }
}

/// Whether `gateway` is told that `user` has `status` within `within`.
async fn sees_presence(gateway: &mut Gateway, user: &str, status: &str, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match gateway.receive(left).await {
            Some(Received::Frame(frame))
                if frame["t"] == "PRESENCE_UPDATE"
                    && frame["d"]["user_id"] == user
                    && frame["d"]["status"] == status =>
            {
                return true;
            }
            Some(Received::Frame(_)) => {}
            Some(Received::Closed(code)) => panic!("the gateway closed ({code:?})"),
            None => return false,
        }
    }
}

/// A redis-server of a test's own, on a port of its own, stopped and started again at will.
struct OwnRedis {
    port: u16,
    child: Option<Child>,
}

impl OwnRedis {
    fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|probe| probe.local_addr())
            .expect("a free port")
            .port();
        let mut redis = Self { port, child: None };
        redis.start_again();
        redis
    }

    fn start_again(&mut self) {
        assert!(self.child.is_none(), "redis-server already runs");
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| {
                panic!(
                    "cannot run redis-server ({error}): install it (apt-get install redis-server)"
                )
            });
        self.child = Some(child);
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn wait_ready(&self) {
        let client = redis::Client::open(self.url()).expect("a Redis URL");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(mut connection) = client.get_multiplexed_async_connection().await
                && redis::cmd("PING").query_async::<String>(&mut connection).await.is_ok()
            {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "redis-server did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether a resume was answered with RESUMED (`true`) or INVALID_SESSION (`false`).
async fn resumed(gateway: &mut Gateway) -> bool {
    loop {
        match gateway.receive(Duration::from_secs(20)).await {
            Some(Received::Frame(frame)) if frame["op"] == 9 => return false,
            Some(Received::Frame(frame)) if frame["t"] == "RESUMED" => return true,
            Some(Received::Frame(_)) => {}
            other => panic!(
                "expected RESUMED or INVALID_SESSION, got {}",
                crate::harness::short(other.as_ref())
            ),
        }
    }
}
