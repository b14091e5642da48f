//! Guildhall benchmarks. Run with `cargo xtask bench` (a release build).
//!
//! Every figure is printed in a table next to a machine reference measured in the same run, and
//! merged into `target/bench/results.json` (one flat JSON object that later benchmarks add to).
//! Nothing here asserts a speed: benchmarks measure, tests check behaviour.

mod client;
mod federation;
mod homeserver;
mod media;
mod memory;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use sha2::{Digest, Sha256};

/// Named figures of one run.
#[derive(Debug, Default)]
pub(crate) struct Results {
    figures: BTreeMap<String, (f64, &'static str)>,
}

impl Results {
    pub(crate) fn record(&mut self, name: &str, value: f64, unit: &'static str) {
        println!("  {name:<52} {value:>14.1} {unit}");
        self.figures.insert(name.to_owned(), (value, unit));
    }

    /// A figure recorded earlier in this run.
    pub(crate) fn get(&self, name: &str) -> Option<f64> {
        self.figures.get(name).map(|(value, _)| *value)
    }
}

/// The short names the performance targets are read by in `results.json`, each the figure
/// it stands for.
const SHORT_NAMES: [(&str, &str); 5] = [
    ("ed25519_verify_per_s", "reference.ed25519_verify_per_sec"),
    ("federation_ingest_per_s", "federation.replica_ingest_events_per_sec"),
    ("gateway_p99_ms", "homeserver.gateway_latency_p99_ms_500mps_100_clients"),
    ("rest_sends_per_s", "homeserver.rest_send_msgs_per_sec_20_senders"),
    ("cross_server_p99_ms", "federation.cross_server_latency_p99_ms_100mps"),
];

/// `cargo xtask bench [SECTION…]`: every section, or only those named (`reference`,
/// `homeserver`, `sequential`, `reads`, `join`, `memory`, `postgres`, `federation`, `e2e`, `media`).
#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(memory::SERVE_FLAG) {
        return memory::serve_child(args.get(1).map_or("", String::as_str)).await;
    }
    if args.first().map(String::as_str) == Some(memory::RAW_SERVE_FLAG) {
        return memory::serve_raw_child().await;
    }
    let wanted = |section: &str| args.is_empty() || args.iter().any(|arg| arg == section);
    let mut results = Results::default();
    // The reference is always measured: every figure is read beside it.
    println!("machine reference");
    machine_reference(&mut results);
    durability_cost(&mut results).await?;
    if wanted("homeserver") {
        println!("homeserver (embedded SQLite, one process, loopback)");
        homeserver::rest_throughput(&mut results).await?;
        homeserver::gateway_latency(&mut results).await?;
        homeserver::latency_during_logins(&mut results).await?;
    }
    if wanted("homeserver") || wanted("reads") {
        println!("latest-50 reads (embedded SQLite; beside raw rusqlite on the same file)");
        homeserver::latest_reads(&mut results).await?;
    }
    if wanted("homeserver") || wanted("sequential") {
        println!("sequential sends (one client, each send awaited; embedded SQLite)");
        homeserver::sequential_send(&mut results).await?;
    }
    if wanted("memory") {
        println!("memory and fan-out (each server in a child process)");
        memory::idle(&mut results).await?;
    }
    if wanted("postgres") {
        println!("homeserver on PostgreSQL (one node, then two nodes of one server)");
        homeserver::rest_throughput_postgres(&mut results).await?;
    }
    if wanted("federation") {
        println!("federation (two servers in one process, loopback HTTP)");
        federation::ingest(&mut results).await?;
        federation::cross_server_latency(&mut results).await?;
    }
    if wanted("join") {
        println!("joining a guild of 10,000 members and 100,000 events (two servers, loopback)");
        federation::join_large_guild(&mut results).await?;
    }
    if wanted("e2e") {
        println!("end-to-end encrypted DMs (two servers, the client library's Olm)");
        federation::encrypted_dm(&mut results).await?;
    }
    if wanted("media") {
        println!("media (one core; then uploads and downloads through a server on loopback)");
        media::preparation(&mut results)?;
        media::transfer(&mut results).await?;
    }
    write(&results)?;
    Ok(())
}

/// Raw Ed25519 verification and SHA-256 rates on one core, for reading the other figures.
fn machine_reference(results: &mut Results) {
    use ed25519_dalek::{Signer, SigningKey};
    let key = SigningKey::from_bytes(&[7; 32]);
    let public = key.verifying_key();
    let message = [42u8; 256];
    let signature = key.sign(&message);
    let rounds = 20_000;
    let start = Instant::now();
    for _ in 0..rounds {
        let _ =
            std::hint::black_box(public.verify_strict(std::hint::black_box(&message), &signature));
    }
    results.record(
        "reference.ed25519_verify_per_sec",
        f64::from(rounds) / start.elapsed().as_secs_f64(),
        "verifies/s",
    );
    let data = vec![1u8; 1 << 20];
    let start = Instant::now();
    for _ in 0..200 {
        std::hint::black_box(Sha256::digest(std::hint::black_box(&data)));
    }
    results.record("reference.sha256_mb_per_sec", 200.0 / start.elapsed().as_secs_f64(), "MB/s");
}

/// What durable commits cost on this disk: single-row SQLite transactions per second with
/// `synchronous=FULL` (what the server uses: the WAL is fsynced before a commit returns) beside
/// `NORMAL` (what it used before, which a power loss can roll back).
async fn durability_cost(results: &mut Results) -> Result<()> {
    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
    let dir = std::env::temp_dir().join(format!("guildhall-bench-fsync-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    for (label, level) in [("full", SqliteSynchronous::Full), ("normal", SqliteSynchronous::Normal)]
    {
        let options = SqliteConnectOptions::new()
            .filename(dir.join(format!("{label}.sqlite3")))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(level);
        let pool = sqlx::SqlitePool::connect_with(options).await?;
        sqlx::query("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)").execute(&pool).await?;
        let rounds = 300;
        let start = Instant::now();
        for _ in 0..rounds {
            let mut tx = pool.begin().await?;
            sqlx::query("INSERT INTO t (body) VALUES (?)")
                .bind("x".repeat(200))
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        }
        results.record(
            &format!("reference.sqlite_commits_per_sec_{label}"),
            f64::from(rounds) / start.elapsed().as_secs_f64(),
            "commits/s",
        );
        pool.close().await;
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// A server configuration for benchmarks: listening on `listen`, with abuse protection out of
/// the way (benchmarks measure the server, not its rate limits).
pub(crate) fn unlimited_config(
    listen: std::net::SocketAddr,
) -> guildhall_homeserver::config::Config {
    let mut config = guildhall_homeserver::config::Config::default();
    config.server.listen = listen;
    let limits = &mut config.rate_limits;
    limits.per_account_per_second = 1_000_000;
    limits.per_account_burst = 1_000_000;
    limits.per_ip_per_second = 1_000_000;
    limits.per_ip_burst = 1_000_000;
    limits.messages_per_second = 1_000_000;
    limits.messages_burst = 1_000_000;
    limits.failed_logins_per_minute = 1_000_000;
    limits.failed_logins_burst = 1_000_000;
    limits.key_claims_per_minute = 1_000_000;
    limits.to_device_per_minute = 1_000_000;
    config.gateway.session_queue = 65_536;
    config.media.uploads_per_minute = 1_000_000;
    config
}

/// The `p`-th percentile (0..=1) of sorted microsecond samples, in milliseconds.
pub(crate) fn percentile_ms(sorted_micros: &[u64], p: f64) -> f64 {
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
    let index = ((sorted_micros.len() as f64 - 1.0) * p).round() as usize;
    #[allow(clippy::cast_precision_loss)]
    let micros = sorted_micros.get(index).copied().unwrap_or(0) as f64;
    micros / 1000.0
}

fn write(results: &Results) -> Result<()> {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| PathBuf::from("target"), PathBuf::from)
        .join("bench");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("results.json");
    let mut all: serde_json::Map<String, serde_json::Value> = std::fs::read_to_string(&path)
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_default();
    for (name, (value, _)) in &results.figures {
        all.insert(name.clone(), serde_json::Value::from((value * 10.0).round() / 10.0));
    }
    for (short, figure) in SHORT_NAMES {
        if let Some(value) = results.get(figure) {
            all.insert(short.to_owned(), serde_json::Value::from((value * 10.0).round() / 10.0));
        }
    }
    std::fs::write(&path, serde_json::to_string_pretty(&all)?)?;
    println!("wrote {}", path.display());
    Ok(())
}
