//! Single-server benchmarks: REST send throughput, send-to-gateway latency, and read latency
//! while logins fail.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use guildhall_client::{ChannelId, Client, InviteCode, NewInvite, Session};
use guildhall_homeserver::{AppState, DataDir, effective_server_name};

use crate::Results;
use crate::client::{PASSWORD, PlainSender, latencies, micros_since};

/// A server started in-process on a free port, with a guild everyone joins.
pub(crate) struct Fixture {
    client: Client,
    channel: ChannelId,
    invite: InviteCode,
    data: std::sync::Arc<TempDir>,
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The fixture and the guild's owner.
pub(crate) async fn start(label: &str) -> Result<(Fixture, Session)> {
    let (mut nodes, owner) = start_nodes(label, None, 1).await?;
    Ok((nodes.remove(0), owner))
}

/// `count` nodes of one server (one data directory, so one set of keys) on `database`
/// (`None`: SQLite, one node), with a guild everyone joins; the owner is on the first node.
async fn start_nodes(
    label: &str,
    database: Option<&str>,
    count: usize,
) -> Result<(Vec<Fixture>, Session)> {
    let dir = std::env::temp_dir().join(format!("guildhall-bench-{label}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut clients: Vec<Client> = Vec::new();
    let mut server_name = None;
    for _ in 0..count {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let mut config = crate::unlimited_config(listener.local_addr()?);
        if let Some(url) = database {
            config.database.url = url.to_owned();
        }
        let name = server_name.get_or_insert_with(|| config.server.listen.to_string()).clone();
        config.server.server_name = name;
        let state =
            AppState::open(config.clone(), &DataDir::new(&dir), effective_server_name(&config)?)
                .await?;
        tokio::spawn(guildhall_homeserver::serve(state, listener, std::future::pending()));
        let url = format!("http://{}", config.server.listen);
        // Every node answers for the first node's name (a load balancer's, in production).
        let client = match clients.first() {
            None => Client::connect(&url).await?,
            Some(first) => Client::with_server_name(&url, first.server_name().clone())?,
        };
        clients.push(client);
    }
    let owner = clients[0].register("owner", PASSWORD).await?;
    let guild = owner.create_guild("bench").await?;
    let channel = guild.channels.first().context("a new guild has #general")?.id.clone();
    let invite = owner.create_invite(&channel, NewInvite::default()).await?.code;
    let data = std::sync::Arc::new(TempDir(dir));
    let fixtures = clients
        .into_iter()
        .map(|client| Fixture {
            client,
            channel: channel.clone(),
            invite: invite.clone(),
            data: std::sync::Arc::clone(&data),
        })
        .collect();
    Ok((fixtures, owner))
}

impl Fixture {
    async fn member(&self, name: &str) -> Result<Session> {
        let member = self.client.register(name, PASSWORD).await?;
        member.accept_invite(&self.invite, None).await?;
        Ok(member)
    }
}

/// Messages per second through `POST /channels/{id}/messages` with 20 concurrent senders.
pub(crate) async fn rest_throughput(results: &mut Results) -> Result<()> {
    let rate = rest_throughput_on("rest", None, 1, Guilds::One).await?;
    results.record("homeserver.rest_send_msgs_per_sec_20_senders", rate, "msgs/s");
    Ok(())
}

/// The same on PostgreSQL (a fresh database on the server `GUILDHALL_TEST_POSTGRES` names,
/// which `cargo xtask bench` starts), with one node and with two nodes taking turns.
pub(crate) async fn rest_throughput_postgres(results: &mut Results) -> Result<()> {
    let Ok(server) = std::env::var("GUILDHALL_TEST_POSTGRES") else {
        println!("  (skipped: GUILDHALL_TEST_POSTGRES is not set; `cargo xtask bench` sets it)");
        return Ok(());
    };
    for nodes in [1, 2] {
        let database = fresh_database(&server, &format!("guildhall_bench_{nodes}")).await?;
        let label = format!("rest-pg-{nodes}");
        let rate = rest_throughput_on(&label, Some(&database), nodes, Guilds::One).await?;
        results.record(
            &format!("homeserver.postgres_rest_send_msgs_per_sec_20_senders_{nodes}_node"),
            rate,
            "msgs/s",
        );
    }
    // The same with every sender in a guild of its own: the guild lock serializes only the
    // writers of one guild.
    let database = fresh_database(&server, "guildhall_bench_guilds").await?;
    let rate = rest_throughput_on("rest-pg-guilds", Some(&database), 2, Guilds::PerSender).await?;
    results.record(
        "homeserver.postgres_rest_send_msgs_per_sec_20_senders_20_guilds_2_node",
        rate,
        "msgs/s",
    );
    Ok(())
}

async fn fresh_database(server: &str, name: &str) -> Result<String> {
    let admin = sqlx::PgPool::connect(server).await?;
    let drop = format!("DROP DATABASE IF EXISTS {name}");
    sqlx::query(sqlx::AssertSqlSafe(drop)).execute(&admin).await?;
    let create = format!("CREATE DATABASE {name}");
    sqlx::query(sqlx::AssertSqlSafe(create)).execute(&admin).await?;
    admin.close().await;
    let (base, _) = server.rsplit_once('/').context("a database URL")?;
    Ok(format!("{base}/{name}"))
}

/// Where the senders of a throughput run write.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Guilds {
    /// All in the fixture's guild.
    One,
    /// Each in a guild of its own.
    PerSender,
}

/// Messages per second with 20 senders spread over `nodes` nodes.
async fn rest_throughput_on(
    label: &str,
    database: Option<&str>,
    nodes: usize,
    guilds: Guilds,
) -> Result<f64> {
    const SENDERS: usize = 20;
    const DURATION: Duration = Duration::from_secs(5);
    let (fixtures, _) = start_nodes(label, database, nodes).await?;
    let mut senders = Vec::new();
    for index in 0..SENDERS {
        let fixture = &fixtures[index % fixtures.len()];
        let member = fixture.member(&format!("sender{index}")).await?;
        let channel = match guilds {
            Guilds::One => fixture.channel.clone(),
            Guilds::PerSender => {
                let own = member.create_guild(&format!("guild{index}")).await?;
                own.channels.first().context("a new guild has #general")?.id.clone()
            }
        };
        senders.push(PlainSender::new(&member, &channel)?);
    }
    let start = Instant::now();
    let mut tasks = Vec::new();
    for sender in senders {
        tasks.push(tokio::spawn(async move {
            let mut sent = 0u64;
            while start.elapsed() < DURATION {
                sender.send("benchmark message with a little text in it").await?;
                sent += 1;
            }
            anyhow::Ok(sent)
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await??;
    }
    let elapsed = start.elapsed().as_secs_f64();
    #[allow(clippy::cast_precision_loss)]
    Ok(total as f64 / elapsed)
}

/// `latest50_reads_per_s`: `GET /channels/{id}/messages?limit=50` (the newest page of a
/// channel of 2,000 messages, some reacted to, some pinned), four clients reading at once;
/// `latest50_raw_reads_per_s`: the same page read from the same database file through raw
/// `rusqlite` on one thread — the queries the server runs (the page, its reactions, its pins),
/// every column decoded to owned values, no HTTP, no JSON.
pub(crate) async fn latest_reads(results: &mut Results) -> Result<()> {
    const MESSAGES: usize = 2_000;
    const READERS: usize = 4;
    const DURATION: Duration = Duration::from_secs(4);
    let (fixture, owner) = start("latest50").await?;
    let sender = PlainSender::new(&owner, &fixture.channel)?;
    let mut sent = Vec::with_capacity(MESSAGES);
    for index in 0..MESSAGES {
        let message = sender.send(&format!("message {index} with a little text in it")).await?;
        sent.push(message.id);
    }
    let http = reqwest::Client::new();
    let base = format!("{}/api/v1/channels/{}", owner.url(), fixture.channel);
    // Every fifth message of the newest page gets a reaction, every tenth a pin.
    for (index, id) in sent.iter().rev().take(50).enumerate() {
        if index % 5 == 0 {
            let url = format!("{base}/messages/{id}/reactions/%F0%9F%91%8D/@me");
            http.put(url).bearer_auth(owner.token()).send().await?.error_for_status()?;
        }
        if index % 10 == 0 {
            let url = format!("{base}/pins/{id}");
            http.put(url).bearer_auth(owner.token()).send().await?.error_for_status()?;
        }
    }
    let url = format!("{base}/messages?limit=50");
    let start = Instant::now();
    let mut readers = Vec::new();
    for _ in 0..READERS {
        let (http, url, token) = (http.clone(), url.clone(), owner.token().to_owned());
        readers.push(tokio::spawn(async move {
            let mut reads = 0u64;
            while start.elapsed() < DURATION {
                let response = http.get(&url).bearer_auth(&token).send().await?;
                let body = response.error_for_status()?.bytes().await?;
                anyhow::ensure!(body.len() > 50 * 40, "a short page");
                reads += 1;
            }
            anyhow::Ok(reads)
        }));
    }
    let mut reads = 0;
    for reader in readers {
        reads += reader.await??;
    }
    #[allow(clippy::cast_precision_loss)]
    results.record("latest50_reads_per_s", reads as f64 / start.elapsed().as_secs_f64(), "reads/s");

    let database = guildhall_homeserver::DataDir::new(&fixture.data.0).database();
    let guild = owner.guilds().await?.first().context("the owner's guild")?.id.to_string();
    let channel = fixture.channel.to_string();
    let viewer = owner.user_id().to_string();
    let raw = tokio::task::spawn_blocking(move || {
        raw_latest_reads(&database, &guild, &channel, &viewer, DURATION)
    })
    .await??;
    results.record("latest50_raw_reads_per_s", raw, "reads/s");
    results.record(
        "homeserver.latest50_percent_of_raw",
        100.0 * results.get("latest50_reads_per_s").unwrap_or(0.0) / raw,
        "%",
    );
    Ok(())
}

/// A message row as the server decodes one.
#[allow(dead_code)] // read into, to pay for decoding, never looked at
struct RawMessage {
    message_id: String,
    guild_id: String,
    channel_id: String,
    author: String,
    body: String,
    reply_to: Option<String>,
    mentions: String,
    created_seq: i64,
    created_ts: i64,
    edited_ts: Option<i64>,
    deleted: bool,
    attachments: Option<String>,
}

/// Newest-page reads per second through raw `rusqlite` for [`latest_reads`].
fn raw_latest_reads(
    database: &std::path::Path,
    guild: &str,
    channel: &str,
    viewer: &str,
    duration: Duration,
) -> Result<f64> {
    use rusqlite::{Connection, OpenFlags, params, params_from_iter};
    let connection = Connection::open_with_flags(database, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let mut page = connection.prepare(
        "SELECT * FROM messages WHERE deleted = 0 AND guild_id = ? AND channel_id = ?
         ORDER BY created_seq DESC LIMIT 50",
    )?;
    let start = Instant::now();
    let mut reads = 0u64;
    while start.elapsed() < duration {
        let messages: Vec<RawMessage> = page
            .query_map(params![guild, channel], |row| {
                Ok(RawMessage {
                    message_id: row.get("message_id")?,
                    guild_id: row.get("guild_id")?,
                    channel_id: row.get("channel_id")?,
                    author: row.get("author")?,
                    body: row.get("body")?,
                    reply_to: row.get("reply_to")?,
                    mentions: row.get("mentions")?,
                    created_seq: row.get("created_seq")?,
                    created_ts: row.get("created_ts")?,
                    edited_ts: row.get("edited_ts")?,
                    deleted: row.get("deleted")?,
                    attachments: row.get("attachments")?,
                })
            })?
            .collect::<Result<_, _>>()?;
        anyhow::ensure!(messages.len() == 50, "a short page");
        // The server binds each id; so does this.
        let marks = vec!["?"; messages.len()].join(", ");
        let ids = || messages.iter().map(|m| m.message_id.as_str());
        let reactions = format!(
            "SELECT message_id, emoji, COUNT(*) AS count, MAX(user_id = ?) AS me, MIN(seq) AS first
             FROM reactions WHERE guild_id = ? AND message_id IN ({marks})
             GROUP BY message_id, emoji ORDER BY first"
        );
        let counted: Vec<(String, String, i64, bool)> = connection
            .prepare_cached(&reactions)?
            .query_map(params_from_iter([viewer, guild].into_iter().chain(ids())), |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
            })?
            .collect::<Result<_, _>>()?;
        let pins =
            format!("SELECT message_id FROM pins WHERE guild_id = ? AND message_id IN ({marks})");
        let pinned: Vec<String> = connection
            .prepare_cached(&pins)?
            .query_map(params_from_iter([guild].into_iter().chain(ids())), |row| row.get(0))?
            .collect::<Result<_, _>>()?;
        std::hint::black_box((messages, counted, pinned));
        reads += 1;
    }
    #[allow(clippy::cast_precision_loss)]
    Ok(reads as f64 / start.elapsed().as_secs_f64())
}

/// One client sends message after message, each awaiting its answer (the shape of the "Romeo
/// and Juliet" benchmark Matrix servers publish): `sequential_send_ms` is the mean time per
/// send minus `sequential_send_floor_ms`, the same client's round trip to `/health`; every
/// send is durable. `sequential_send_p99_ms` is the raw 99th percentile, whose ratio to the
/// raw mean shows stalls.
pub(crate) async fn sequential_send(results: &mut Results) -> Result<()> {
    const SENDS: usize = 3_000;
    const WARM_UP: usize = 100;
    let (fixture, owner) = start("sequential").await?;
    let sender = PlainSender::new(&owner, &fixture.channel)?;
    for index in 0..WARM_UP {
        sender.send(&format!("warm-up {index}")).await?;
        sender.round_trip().await?;
    }
    let start = Instant::now();
    for _ in 0..SENDS {
        sender.round_trip().await?;
    }
    #[allow(clippy::cast_precision_loss)]
    let floor_ms = start.elapsed().as_secs_f64() * 1000.0 / SENDS as f64;
    let mut times = Vec::with_capacity(SENDS);
    for index in 0..SENDS {
        let sent = Instant::now();
        sender.send(&format!("line {index}")).await?;
        times.push(micros_since(sent, Instant::now()));
    }
    #[allow(clippy::cast_precision_loss)]
    let mean_ms = times.iter().sum::<u64>() as f64 / SENDS as f64 / 1000.0;
    times.sort_unstable();
    results.record("sequential_send_floor_ms", floor_ms, "ms");
    results.record("sequential_send_ms", mean_ms - floor_ms, "ms (mean − floor)");
    results.record("sequential_send_mean_ms", mean_ms, "ms");
    results.record("sequential_send_p99_ms", crate::percentile_ms(&times, 0.99), "ms");
    results.record("sequential_send_max_ms", crate::percentile_ms(&times, 1.0), "ms");
    Ok(())
}

/// Send-to-delivery latency at 500 messages/s to 100 gateway clients.
pub(crate) async fn gateway_latency(results: &mut Results) -> Result<()> {
    const CLIENTS: usize = 100;
    const RATE: u64 = 500;
    const MESSAGES: u64 = 2_500;
    let (fixture, owner) = start("gateway").await?;
    let epoch = Instant::now();
    let mut receivers = Vec::new();
    for index in 0..CLIENTS {
        let gateway = fixture.member(&format!("reader{index}")).await?.gateway().await?;
        receivers.push(tokio::spawn(latencies(gateway, epoch, MESSAGES)));
    }
    // Pace sends at RATE per second from several tasks, each message carrying its send time.
    let senders = 8;
    let owner = PlainSender::new(&owner, &fixture.channel)?;
    let mut tasks = Vec::new();
    let start = Instant::now();
    for sender in 0..senders {
        let owner = owner.clone();
        tasks.push(tokio::spawn(async move {
            let mut index = sender;
            while index < MESSAGES {
                let due = start + Duration::from_micros(index * 1_000_000 / RATE);
                tokio::time::sleep_until(due.into()).await;
                let sent_us = micros_since(epoch, Instant::now());
                owner.send(&sent_us.to_string()).await?;
                index += senders;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let send_elapsed = start.elapsed().as_secs_f64();
    let mut all = Vec::new();
    for receiver in receivers {
        all.extend(receiver.await??);
    }
    all.sort_unstable();
    let percentile = |p: f64| crate::percentile_ms(&all, p);
    #[allow(clippy::cast_precision_loss)]
    results.record(
        "homeserver.gateway_achieved_send_rate",
        MESSAGES as f64 / send_elapsed,
        "msgs/s",
    );
    results.record("homeserver.gateway_latency_p50_ms_500mps_100_clients", percentile(0.50), "ms");
    results.record("homeserver.gateway_latency_p99_ms_500mps_100_clients", percentile(0.99), "ms");
    #[allow(clippy::cast_precision_loss)]
    results.record("homeserver.gateway_deliveries", all.len() as f64, "deliveries");
    Ok(())
}

/// Median latency of an authenticated read (`GET /users/@me`), idle and while six clients
/// keep failing logins: password hashing runs off the async workers, so the second figure
/// should stay near the first (it used to be 20 times higher).
pub(crate) async fn latency_during_logins(results: &mut Results) -> Result<()> {
    const SAMPLES: usize = 300;
    let (fixture, owner) = start("logins").await?;
    let sample = async || -> Result<f64> {
        let mut micros = Vec::with_capacity(SAMPLES);
        for _ in 0..SAMPLES {
            let start = Instant::now();
            owner.me().await?;
            micros.push(micros_since(start, Instant::now()));
        }
        micros.sort_unstable();
        Ok(crate::percentile_ms(&micros, 0.50))
    };
    results.record("homeserver.read_latency_p50_ms_idle", sample().await?, "ms");
    let stop = Arc::new(AtomicBool::new(false));
    let mut guessers = Vec::new();
    for _ in 0..6 {
        let (client, stop) = (fixture.client.clone(), Arc::clone(&stop));
        guessers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                // A refusal is the expected answer.
                let _ = client.login("owner", "not the password at all").await;
            }
        }));
    }
    let during = sample().await?;
    stop.store(true, Ordering::Relaxed);
    for guesser in guessers {
        let _ = guesser.await;
    }
    results.record("homeserver.read_latency_p50_ms_6_failing_logins", during, "ms");
    Ok(())
}
