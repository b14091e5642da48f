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
    _data: TempDir,
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The fixture and the guild's owner.
pub(crate) async fn start(label: &str) -> Result<(Fixture, Session)> {
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
    let client = Client::connect(&format!("http://{}", config.server.listen)).await?;
    let owner = client.register("owner", PASSWORD).await?;
    let guild = owner.create_guild("bench").await?;
    let channel = guild.channels.first().context("a new guild has #general")?.id.clone();
    let invite = owner.create_invite(&channel, NewInvite::default()).await?.code;
    Ok((Fixture { client, channel, invite, _data: data }, owner))
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
    const SENDERS: usize = 20;
    const DURATION: Duration = Duration::from_secs(5);
    let (fixture, _) = start("rest").await?;
    let mut senders = Vec::new();
    for index in 0..SENDERS {
        let member = fixture.member(&format!("sender{index}")).await?;
        senders.push(PlainSender::new(&member, &fixture.channel)?);
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
