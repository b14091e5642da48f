//! Two-server benchmarks: how fast a replica ingests host-signed events, and how long a message
//! takes from one server's REST API to another server's gateway.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use guildhall_client::{ChannelId, Client, NewInvite, Session};
use guildhall_homeserver::{AppState, DataDir, effective_server_name};
use guildhall_spec::api::send_transaction;
use guildhall_spec::event::{self, Proposal};
use guildhall_spec::{GuildId, KeyId, ServerName, ServerSigningKey, TxnId, UserId, base64url};
use serde_json::json;

use crate::Results;
use crate::client::{PASSWORD, PlainSender, latencies, micros_since};

struct Node {
    state: AppState,
    client: Client,
    data: std::path::PathBuf,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

async fn node(label: &str) -> Result<Node> {
    let data =
        std::env::temp_dir().join(format!("guildhall-bench-fed-{label}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let mut config = crate::unlimited_config(listener.local_addr()?);
    config.federation.danger_allow_plain_http = true;
    config.federation.danger_allow_private_addresses = true;
    let state =
        AppState::open(config.clone(), &DataDir::new(&data), effective_server_name(&config)?)
            .await?;
    tokio::spawn(guildhall_homeserver::serve(state.clone(), listener, std::future::pending()));
    let client = Client::connect(&format!("http://{}", config.server.listen)).await?;
    Ok(Node { state, client, data })
}

/// A guild on `host` with one member from `replica`; returns (guild, channel, host owner,
/// member).
async fn shared_guild(
    host: &Node,
    replica: &Node,
) -> Result<(GuildId, ChannelId, Session, Session)> {
    let owner = host.client.register("owner", PASSWORD).await?;
    let member = replica.client.register("member", PASSWORD).await?;
    let guild = owner.create_guild("bench").await?;
    let channel = guild.channels.first().context("a new guild has #general")?.id.clone();
    let invite = owner.create_invite(&channel, NewInvite::default()).await?;
    member.accept_invite(&invite.code, Some(&invite.server)).await?;
    Ok((guild.id, channel, owner, member))
}

/// Host-signed events applied per second by a replica: verify both signatures and the chain,
/// fold, persist with projections, publish — the whole inbound path except HTTP.
pub(crate) async fn ingest(results: &mut Results) -> Result<()> {
    const EVENTS: u64 = 5_000;
    let host = node("host").await?;
    let replica = node("replica").await?;
    let (guild_id, channel, _, _) = shared_guild(&host, &replica).await?;
    // Sign as the host ourselves (with its key file), continuing the replica's chain. The real
    // host stays quiet, so nothing else extends the log meanwhile.
    let key_file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(host.data.join("signing-keys.json"))?)?;
    let seed = base64url::decode_array::<32>(key_file["current"]["seed"].as_str().context("seed")?)
        .context("seed length")?;
    let host_name: ServerName = host.state.server_name.clone();
    let key = ServerSigningKey::from_seed(
        host_name.clone(),
        KeyId::parse(key_file["current"]["key_id"].as_str().context("key id")?)?,
        &seed,
    );
    let head = replica.state.guilds.head(&guild_id).await.map_err(|e| anyhow::anyhow!(e.code()))?;
    let sender = UserId::new("owner", &host_name)?;
    let (mut seq, mut prev) = (head.seq, head.event_id);
    let mut events = Vec::with_capacity(EVENTS as usize);
    for index in 0..EVENTS {
        let proposal = Proposal {
            guild_id: guild_id.clone(),
            event_type: "message.create".into(),
            sender: sender.clone(),
            origin: host_name.clone(),
            origin_ts: guildhall_homeserver::store::now_ms(),
            txn_id: TxnId::parse(&format!("bench{index}"))?,
            content: json!({"channel_id": channel, "body": format!("event {index} with a typical amount of text in it")})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        };
        seq += 1;
        let (id, signed) = event::sequence(proposal.sign(&key)?, seq, Some(&prev), &key)?;
        prev = id;
        events.push(signed);
    }
    // As `/send` transactions of the most events one may carry, each durable before the next
    // (as before `/send` answers).
    let start = Instant::now();
    let mut events = events.into_iter().peekable();
    while events.peek().is_some() {
        let batch: Vec<_> = events.by_ref().take(send_transaction::MAX_EVENTS).collect();
        for result in replica.state.guilds.receive_events(&host_name, batch).await {
            result.map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        replica.state.store.durable().await?;
    }
    #[allow(clippy::cast_precision_loss)]
    let per_sec = EVENTS as f64 / start.elapsed().as_secs_f64();
    results.record("federation.replica_ingest_events_per_sec", per_sec, "events/s");
    if let Some(verify) = results.get("reference.ed25519_verify_per_sec") {
        results.record("federation.ingest_per_verify_percent", 100.0 * per_sec / verify, "%");
    }
    Ok(())
}

/// From `POST /messages` on the host to `MESSAGE_CREATE` on the replica's gateway.
pub(crate) async fn cross_server_latency(results: &mut Results) -> Result<()> {
    const MESSAGES: u64 = 1_000;
    const RATE: u64 = 100;
    const CLIENTS: usize = 10;
    let host = node("lat-host").await?;
    let replica = node("lat-replica").await?;
    let (_, channel, owner, member) = shared_guild(&host, &replica).await?;
    let epoch = Instant::now();
    let mut receivers = Vec::new();
    for _ in 0..CLIENTS {
        let gateway = member.gateway().await?;
        receivers.push(tokio::spawn(latencies(gateway, epoch, MESSAGES)));
    }
    let owner = PlainSender::new(&owner, &channel)?;
    let start = Instant::now();
    for index in 0..MESSAGES {
        tokio::time::sleep_until((start + Duration::from_micros(index * 1_000_000 / RATE)).into())
            .await;
        let sent = micros_since(epoch, Instant::now());
        owner.send(&sent.to_string()).await?;
    }
    let mut all = Vec::new();
    for receiver in receivers {
        all.extend(tokio::time::timeout(Duration::from_secs(60), receiver).await???);
    }
    all.sort_unstable();
    let percentile = |p: f64| crate::percentile_ms(&all, p);
    results.record("federation.cross_server_latency_p50_ms_100mps", percentile(0.50), "ms");
    results.record("federation.cross_server_latency_p99_ms_100mps", percentile(0.99), "ms");
    Ok(())
}

/// `join_10k_members_ms`: a server that has never seen a guild of 10,000 members and 100,000
/// events joins it for one of its users, who then reads the channel's newest page and posts —
/// the time from the join request to the post's answer, as the user's client sees it (all on
/// loopback). The guild is built on its host beforehand through the host's own sequencing
/// path (its members are accounts made directly in its store, without password hashing, as
/// nobody logs into them).
pub(crate) async fn join_large_guild(results: &mut Results) -> Result<()> {
    use guildhall_spec::content::{EventContent, MemberJoin, MessageCreate};
    const MEMBERS: usize = 10_000;
    const EVENTS: usize = 100_000;
    let host = node("join-host").await?;
    let newcomer_home = node("join-replica").await?;
    let owner = host.client.register("owner", PASSWORD).await?;
    let guild = owner.create_guild("large").await?;
    let channel = guild.channels.first().context("a new guild has #general")?.id.clone();
    let invite = owner.create_invite(&channel, NewInvite::default()).await?;
    let guilds = &host.state.guilds;
    let fail = |e: guildhall_homeserver::error::ApiError| anyhow::anyhow!("{}", e.code());
    let started = Instant::now();
    for index in 0..MEMBERS {
        let user = UserId::new(&format!("member{index}"), &host.state.server_name)?;
        host.state.store.create_user(&user, "no password: nobody logs in").await?;
        let join = MemberJoin { invite_code: Some(invite.code.clone()), ..Default::default() };
        guilds
            .submit(&guild.id, &user, EventContent::MemberJoin(join), None)
            .await
            .map_err(fail)?;
    }
    let members_built = started.elapsed();
    let sender = owner.user_id().clone();
    let head = guilds.head(&guild.id).await.map_err(fail)?;
    for index in 0..EVENTS.saturating_sub(usize::try_from(head.seq)?) {
        let message = MessageCreate {
            channel_id: channel.clone(),
            body: format!("history {index} with a typical amount of text in it"),
            reply_to: None,
            mentions: None,
            attachments: None,
        };
        guilds
            .submit(&guild.id, &sender, EventContent::MessageCreate(message), None)
            .await
            .map_err(fail)?;
    }
    println!(
        "  (built: {MEMBERS} members in {:.0} s, {EVENTS} events in {:.0} s)",
        members_built.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    let newcomer = newcomer_home.client.register("newcomer", PASSWORD).await?;
    let start = Instant::now();
    newcomer.accept_invite(&invite.code, Some(&invite.server)).await?;
    let page = newcomer.messages(&channel, &guildhall_client::History::latest(50)).await?;
    anyhow::ensure!(page.len() == 50, "the newest page has {} messages", page.len());
    newcomer.send_message(&channel, "hello, everyone").await?;
    #[allow(clippy::cast_precision_loss)]
    results.record("join_10k_members_ms", start.elapsed().as_secs_f64() * 1000.0, "ms");
    Ok(())
}

/// Encrypted DMs between two servers through the client library's Olm engine: one person on
/// each, one device each. Each send queries the recipient's device list at their home server
/// (never cached, spec 17.3), encrypts and is stored in the recipient's inbox before it returns;
/// the figure is the whole call as a person's client sees it, sent one after another. Then the
/// recipient reads and decrypts them all.
pub(crate) async fn encrypted_dm(results: &mut Results) -> Result<()> {
    use guildhall_client::Identity;
    use guildhall_client::e2e::{Device, Incoming};
    const MESSAGES: usize = 200;
    let a = node("e2e-a").await?;
    let b = node("e2e-b").await?;
    let stores = std::env::temp_dir().join(format!("guildhall-bench-e2e-{}", std::process::id()));
    let person = async |node: &Node, name: &str| -> Result<(Session, Device)> {
        let session = node.client.register(name, PASSWORD).await?;
        let identity = Identity::generate();
        session.bind_identity(&identity).await?;
        let device = Device::create(&session, &identity, &stores.join(name)).await?;
        Ok((session, device))
    };
    let (alice, mut alices) = person(&a, "alice").await?;
    let (bob, mut bobs) = person(&b, "bob").await?;
    let to_bob = [bob.user_id().clone()];
    // The first message sets up the Olm session (a claimed one-time key, a pre-key message).
    alices.send(&alice, "bench", &to_bob, "hello").await?;
    let mut micros = Vec::with_capacity(MESSAGES);
    for index in 0..MESSAGES {
        let start = Instant::now();
        let report = alices.send(&alice, "bench", &to_bob, &format!("message {index}")).await?;
        micros.push(u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX));
        anyhow::ensure!(report.failed.is_empty(), "send {index} failed: {:?}", report.failed);
    }
    micros.sort_unstable();
    let percentile = |p: f64| crate::percentile_ms(&micros, p);
    results.record("e2e.encrypted_send_cross_server_p50_ms", percentile(0.50), "ms");
    results.record("e2e.encrypted_send_cross_server_p99_ms", percentile(0.99), "ms");
    let start = Instant::now();
    let mut read = 0;
    while read <= MESSAGES {
        let incoming = bobs.receive(&bob).await?;
        anyhow::ensure!(!incoming.is_empty(), "only {read} of {} messages arrived", MESSAGES + 1);
        read += incoming.iter().filter(|item| matches!(item, Incoming::Message(_))).count();
    }
    #[allow(clippy::cast_precision_loss)]
    results.record(
        "e2e.inbox_read_and_decrypt_msgs_per_sec",
        read as f64 / start.elapsed().as_secs_f64(),
        "msg/s",
    );
    drop((alices, bobs));
    let _ = std::fs::remove_dir_all(&stores);
    Ok(())
}
