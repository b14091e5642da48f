//! Memory and fan-out: what an idle server holds, what each idle gateway connection adds to
//! it, and how fast one message reaches all of those connections — beside the same fan-out of
//! bare WebSocket frames.
//!
//! Each server runs as a child process (this binary, started with [`SERVE_FLAG`] or
//! [`RAW_SERVE_FLAG`]), so that its resident set holds nothing of the clients; the clients
//! connect from this process.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use futures_util::{SinkExt as _, StreamExt as _};
use guildhall_client::{ChannelId, Client, Gateway, GatewayEvent, Session};
use guildhall_homeserver::{AppState, DataDir, effective_server_name};
use tokio::io::AsyncBufReadExt;
use tokio_tungstenite::tungstenite::Message as Frame;

use crate::Results;
use crate::client::PASSWORD;

/// The argument that makes this binary the server of [`idle`].
pub(crate) const SERVE_FLAG: &str = "--serve-for-memory";

/// Identified idle gateway connections the figure is measured at.
const CONNECTIONS: usize = 10_000;
/// Connections opened before the first reading, so that pools and caches exist already.
const WARM_UP: usize = 100;
/// Connections opened at once.
const BATCH: usize = 100;
/// Messages fanned out to every connection; the figure is their median.
const FAN_OUT_ROUNDS: usize = 3;
/// How long a fan-out may take before the measurement gives up.
const FAN_OUT_TIMEOUT: Duration = Duration::from_secs(120);

/// The argument that makes this binary the bare WebSocket server of the fan-out floor.
pub(crate) const RAW_SERVE_FLAG: &str = "--serve-raw-websocket";

/// The child: a server on a free loopback port in `dir` with the default gateway settings (rate
/// limits out of the way: every connection comes from one address); prints its address.
pub(crate) async fn serve_child(dir: &str) -> Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let mut config = crate::unlimited_config(listener.local_addr()?);
    config.gateway = guildhall_homeserver::config::Config::default().gateway;
    let state =
        AppState::open(config.clone(), &DataDir::new(dir), effective_server_name(&config)?).await?;
    println!("listening {}", config.server.listen);
    guildhall_homeserver::serve(state, listener, std::future::pending()).await?;
    Ok(())
}

/// A process's resident set, in bytes.
fn rss(pid: u32) -> Result<f64> {
    status_bytes(pid, "VmRSS")
}

/// A size from `/proc/<pid>/status` (`VmRSS`, `RssAnon`, `RssFile`), in bytes.
fn status_bytes(pid: u32, field: &str) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| field.to_owned())?;
    Ok(kib * 1024.0)
}

/// `idle_rss_bytes`: the server's resident set with one account and one guild and nobody
/// connected (split into anonymous and file-backed pages); `idle_connection_bytes`: its growth per identified idle gateway connection,
/// measured between the warm-up and [`CONNECTIONS`].
///
/// Then `fanout_deliveries_per_s`: one message sent to the guild those connections all watch,
/// deliveries per second from the send until the last connection has read it (the median of
/// [`FAN_OUT_ROUNDS`]).
pub(crate) async fn idle(results: &mut Results) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("guildhall-bench-memory-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let (mut child, address) = start_child(&[SERVE_FLAG, &dir.to_string_lossy()]).await?;
    let pid = child.id().context("the server's pid")?;
    let client = Client::connect(&format!("http://{address}")).await?;
    let session = client.register("idle", PASSWORD).await?;
    let guild = session.create_guild("idle").await?;
    let channel = guild.channels.first().context("a new guild has #general")?.id.clone();
    tokio::time::sleep(Duration::from_secs(2)).await;
    results.record("idle_rss_bytes", rss(pid)?, "bytes");
    // Of which the server's own memory (heap, stacks) and pages of the executable it maps (code
    // and read-only data: shared, and dropped by the kernel under pressure).
    results.record("memory.idle_rss_anon_bytes", status_bytes(pid, "RssAnon")?, "bytes");
    results.record("memory.idle_rss_file_bytes", status_bytes(pid, "RssFile")?, "bytes");

    let mut connections = Vec::with_capacity(CONNECTIONS);
    let mut before = 0.0;
    while connections.len() < CONNECTIONS {
        let batch = BATCH.min(CONNECTIONS - connections.len());
        let opened = futures_join(&session, batch).await?;
        connections.extend(opened);
        if connections.len() == WARM_UP {
            tokio::time::sleep(Duration::from_secs(1)).await;
            before = rss(pid)?;
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss(pid)?;
    #[allow(clippy::cast_precision_loss)]
    let per_connection = (after - before) / (CONNECTIONS - WARM_UP) as f64;
    results.record("idle_connection_bytes", per_connection, "bytes/connection");
    #[allow(clippy::cast_precision_loss)]
    results.record("memory.idle_connections", connections.len() as f64, "connections");

    let rate = fan_out(&session, &channel, connections).await?;
    results.record("fanout_deliveries_per_s", rate, "deliveries/s");
    child.kill().await?;
    let _ = std::fs::remove_dir_all(&dir);
    let floor = raw_fan_out().await?;
    results.record("fanout_floor_frames_per_s", floor, "frames/s");
    results.record("memory.fanout_percent_of_floor", 100.0 * rate / floor, "%");
    Ok(())
}

/// Starts this binary as a child server with `args`; returns it and the address it printed.
async fn start_child(args: &[&str]) -> Result<(tokio::process::Child, String)> {
    let mut child = tokio::process::Command::new(std::env::current_exe()?)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut lines = tokio::io::BufReader::new(child.stdout.take().context("stdout")?).lines();
    let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .context("the server did not start")??
        .context("the server exited")?;
    let Some(address) = line.strip_prefix("listening ") else { bail!("unexpected {line:?}") };
    Ok((child, address.to_owned()))
}

/// Deliveries per second of one message to every one of `gateways` (the median of
/// [`FAN_OUT_ROUNDS`] messages): from just before the send to the moment the last connection
/// read the frame.
async fn fan_out(
    session: &Session,
    channel: &ChannelId,
    mut gateways: Vec<Gateway>,
) -> Result<f64> {
    let mut rates = Vec::with_capacity(FAN_OUT_ROUNDS);
    for round in 0..FAN_OUT_ROUNDS {
        let content = format!("fan-out {round}");
        let mut readers = Vec::with_capacity(gateways.len());
        for mut gateway in gateways.drain(..) {
            let content = content.clone();
            readers.push(tokio::spawn(async move {
                loop {
                    let (event, arrival) =
                        tokio::time::timeout(FAN_OUT_TIMEOUT, gateway.next_with_arrival())
                            .await
                            .context("no fan-out")?
                            .context("gateway closed")?;
                    match event? {
                        GatewayEvent::MessageCreate(message) if message.content == content => {
                            return anyhow::Ok((gateway, arrival));
                        }
                        GatewayEvent::Ready(_) | GatewayEvent::Resumed => {
                            bail!("a gateway connection dropped during the fan-out")
                        }
                        _ => {}
                    }
                }
            }));
        }
        // Every reader is waiting before the message leaves.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let sent = std::time::Instant::now();
        session.send_message(channel, &content).await?;
        let mut last = sent;
        for reader in readers {
            let (gateway, arrival) = reader.await??;
            last = last.max(arrival);
            gateways.push(gateway);
        }
        #[allow(clippy::cast_precision_loss)]
        rates.push(gateways.len() as f64 / last.duration_since(sent).as_secs_f64());
    }
    rates.sort_by(f64::total_cmp);
    Ok(rates[rates.len() / 2])
}

/// The child of the fan-out floor: a bare WebSocket server (tungstenite, as the gateway uses,
/// with the gateway's read buffer) that sends every text frame any connection sends it to every
/// connection; prints its address.
pub(crate) async fn serve_raw_child() -> Result<()> {
    use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("listening {}", listener.local_addr()?);
    let (frames, _) = tokio::sync::broadcast::channel::<Frame>(16);
    loop {
        let (stream, _) = listener.accept().await?;
        let frames = frames.clone();
        tokio::spawn(async move {
            let config = WebSocketConfig::default().read_buffer_size(2 * 1024);
            let Ok(socket) =
                tokio_tungstenite::accept_async_with_config(stream, Some(config)).await
            else {
                return;
            };
            let (mut write, mut read) = socket.split();
            let mut fanned = frames.subscribe();
            loop {
                tokio::select! {
                    frame = read.next() => match frame {
                        Some(Ok(frame @ Frame::Text(_))) => { let _ = frames.send(frame); }
                        Some(Ok(_)) => {}
                        _ => return,
                    },
                    Ok(frame) = fanned.recv() => {
                        if write.send(frame).await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
    }
}

/// `fanout_floor_frames_per_s`: the same fan-out as [`fan_out`] with nothing but WebSocket
/// frames: [`CONNECTIONS`] bare clients of a bare server ([`serve_raw_child`]), one text frame
/// shaped like a `MESSAGE_CREATE` sent to all of them; each client parses the frame as JSON,
/// as the client library does. The median of [`FAN_OUT_ROUNDS`].
async fn raw_fan_out() -> Result<f64> {
    let (mut child, address) = start_child(&[RAW_SERVE_FLAG]).await?;
    let url = format!("ws://{address}/");
    let mut sockets = Vec::with_capacity(CONNECTIONS);
    while sockets.len() < CONNECTIONS {
        let mut opening = Vec::with_capacity(BATCH);
        for _ in 0..BATCH.min(CONNECTIONS - sockets.len()) {
            let url = url.clone();
            opening.push(tokio::spawn(async move { tokio_tungstenite::connect_async(url).await }));
        }
        for socket in opening {
            sockets.push(socket.await??.0);
        }
    }
    let mut rates = Vec::with_capacity(FAN_OUT_ROUNDS);
    for round in 0..FAN_OUT_ROUNDS {
        let frame = serde_json::json!({
            "op": 0, "s": round + 1, "t": "MESSAGE_CREATE",
            "d": {
                "id": "$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                "guild_id": "!AAAAAAAAAAAAAAAAAAAAAA:127.0.0.1:8008",
                "channel_id": "#AAAAAAAAAAAAAAAAAAAAAA:127.0.0.1:8008",
                "author_id": "@idle:127.0.0.1:8008", "content": format!("fan-out {round}"),
                "reply_to": null, "mentions": [], "attachments": [], "seq": 12,
                "created_ts": 1_700_000_000_000_u64, "edited_ts": null, "pinned": false,
                "reactions": [], "nonce": null,
            },
        })
        .to_string();
        let mut first = sockets.pop().context("a connection")?;
        let mut readers = Vec::with_capacity(sockets.len());
        for mut socket in sockets.drain(..) {
            readers.push(tokio::spawn(async move {
                let read = tokio::time::timeout(FAN_OUT_TIMEOUT, socket.next()).await;
                let frame = read.context("no fan-out")?.context("closed")??;
                let arrival = std::time::Instant::now();
                serde_json::from_slice::<serde_json::Value>(&frame.into_data())?;
                anyhow::Ok((socket, arrival))
            }));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let sent = std::time::Instant::now();
        first.send(Frame::text(frame)).await?;
        let mut last = sent;
        first.next().await.context("the sender's own copy")??;
        for reader in readers {
            let (socket, arrival) = reader.await??;
            last = last.max(arrival);
            sockets.push(socket);
        }
        sockets.push(first);
        #[allow(clippy::cast_precision_loss)]
        rates.push(sockets.len() as f64 / last.duration_since(sent).as_secs_f64());
    }
    drop(sockets);
    child.kill().await?;
    rates.sort_by(f64::total_cmp);
    Ok(rates[rates.len() / 2])
}

/// Opens `count` identified gateway connections of `session` at once.
async fn futures_join(
    session: &guildhall_client::Session,
    count: usize,
) -> Result<Vec<guildhall_client::Gateway>> {
    let mut tasks = Vec::with_capacity(count);
    for _ in 0..count {
        let session = session.clone();
        tasks.push(tokio::spawn(async move { session.gateway().await }));
    }
    let mut opened = Vec::with_capacity(count);
    for task in tasks {
        opened.push(task.await??);
    }
    Ok(opened)
}
