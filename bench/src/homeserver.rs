//! Single-server benchmarks: REST send throughput and send-to-gateway latency.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use guildhall_homeserver::{AppState, DataDir, effective_server_name};
use reqwest::Method;
use serde_json::json;

use crate::Results;
use crate::client::{Gateway, Rest};

/// A server started in-process on a free port, with a guild everyone joins.
struct Fixture {
    rest: Rest,
    base: String,
    channel: String,
    invite: String,
    _data: TempDir,
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn start(label: &str) -> Result<(Fixture, String)> {
    let data = TempDir(
        std::env::temp_dir().join(format!("guildhall-bench-{label}-{}", std::process::id())),
    );
    let _ = std::fs::remove_dir_all(&data.0);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let config = crate::unlimited_config(listener.local_addr()?);
    let state =
        AppState::open(config.clone(), &DataDir::new(&data.0), effective_server_name(&config)?)
            .await?;
    tokio::spawn(guildhall_homeserver::serve(state, listener, std::future::pending()));
    let base = format!("http://{}", config.server.listen);
    let rest = Rest::new(&base);
    let owner = rest.register("owner").await?;
    let guild =
        rest.call(Method::POST, "/guilds", Some(&owner), Some(json!({"name": "bench"}))).await?;
    let channel = guild["channels"][0]["id"].as_str().context("channel")?.to_owned();
    let invite = rest
        .call(Method::POST, &format!("/channels/{channel}/invites"), Some(&owner), Some(json!({})))
        .await?;
    let invite = invite["code"].as_str().context("invite")?.to_owned();
    Ok((Fixture { rest, base, channel, invite, _data: data }, owner))
}

impl Fixture {
    async fn member(&self, name: &str) -> Result<String> {
        let token = self.rest.register(name).await?;
        self.rest
            .call(Method::POST, &format!("/invites/{}", self.invite), Some(&token), None)
            .await?;
        Ok(token)
    }

    async fn send(&self, token: &str, content: &str) -> Result<()> {
        self.rest
            .call(
                Method::POST,
                &format!("/channels/{}/messages", self.channel),
                Some(token),
                Some(json!({"content": content})),
            )
            .await?;
        Ok(())
    }
}

/// Messages per second through `POST /channels/{id}/messages` with 20 concurrent senders.
pub(crate) async fn rest_throughput(results: &mut Results) -> Result<()> {
    const SENDERS: usize = 20;
    const DURATION: Duration = Duration::from_secs(5);
    let (fixture, _) = start("rest").await?;
    let fixture = Arc::new(fixture);
    let mut tokens = Vec::new();
    for index in 0..SENDERS {
        tokens.push(fixture.member(&format!("sender{index}")).await?);
    }
    let start = Instant::now();
    let mut tasks = Vec::new();
    for token in tokens {
        let fixture = Arc::clone(&fixture);
        tasks.push(tokio::spawn(async move {
            let mut sent = 0u64;
            while start.elapsed() < DURATION {
                fixture.send(&token, "benchmark message with a little text in it").await?;
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
    results.record(
        "homeserver.rest_send_msgs_per_sec_20_senders",
        total as f64 / elapsed,
        "msgs/s",
    );
    Ok(())
}

/// Send-to-delivery latency at 500 messages/s to 100 gateway clients.
pub(crate) async fn gateway_latency(results: &mut Results) -> Result<()> {
    const CLIENTS: usize = 100;
    const RATE: u64 = 500;
    const MESSAGES: u64 = 2_500;
    let (fixture, owner) = start("gateway").await?;
    let fixture = Arc::new(fixture);
    let epoch = Instant::now();
    let mut receivers = Vec::new();
    for index in 0..CLIENTS {
        let token = fixture.member(&format!("reader{index}")).await?;
        let mut gateway = Gateway::connect(&fixture.base, &token).await?;
        receivers.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(MESSAGES as usize);
            while (latencies.len() as u64) < MESSAGES {
                let frame = gateway.next_frame().await?;
                if frame["t"] == "MESSAGE_CREATE" {
                    let sent_us: u64 = frame["d"]["content"]
                        .as_str()
                        .and_then(|c| c.parse().ok())
                        .context("timestamp content")?;
                    #[allow(clippy::cast_possible_truncation)]
                    let now_us = epoch.elapsed().as_micros() as u64;
                    latencies.push(now_us.saturating_sub(sent_us));
                }
            }
            anyhow::Ok(latencies)
        }));
    }
    // Pace sends at RATE per second from several tasks, each message carrying its send time.
    let senders = 8;
    let mut tasks = Vec::new();
    let start = Instant::now();
    for sender in 0..senders {
        let fixture = Arc::clone(&fixture);
        let owner = owner.clone();
        tasks.push(tokio::spawn(async move {
            let mut index = sender;
            while index < MESSAGES {
                let due = start + Duration::from_micros(index * 1_000_000 / RATE);
                tokio::time::sleep_until(due.into()).await;
                #[allow(clippy::cast_possible_truncation)]
                let sent_us = epoch.elapsed().as_micros() as u64;
                fixture.send(&owner, &sent_us.to_string()).await?;
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
    let fixture = Arc::new(fixture);
    let sample = async |fixture: &Fixture| -> Result<f64> {
        let mut micros = Vec::with_capacity(SAMPLES);
        for _ in 0..SAMPLES {
            let start = Instant::now();
            fixture.rest.call(Method::GET, "/users/@me", Some(&owner), None).await?;
            #[allow(clippy::cast_possible_truncation)]
            micros.push(start.elapsed().as_micros() as u64);
        }
        micros.sort_unstable();
        Ok(crate::percentile_ms(&micros, 0.50))
    };
    results.record("homeserver.read_latency_p50_ms_idle", sample(&fixture).await?, "ms");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut guessers = Vec::new();
    for _ in 0..6 {
        let (fixture, stop) = (Arc::clone(&fixture), Arc::clone(&stop));
        guessers.push(tokio::spawn(async move {
            let body = json!({"username": "owner", "password": "not the password at all"});
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // A refusal is the expected answer.
                let _ =
                    fixture.rest.call(Method::POST, "/auth/login", None, Some(body.clone())).await;
            }
        }));
    }
    let during = sample(&fixture).await?;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for guesser in guessers {
        let _ = guesser.await;
    }
    results.record("homeserver.read_latency_p50_ms_6_failing_logins", during, "ms");
    Ok(())
}
