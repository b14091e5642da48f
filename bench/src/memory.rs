//! Memory: what an idle server holds, and what each idle gateway connection adds to it.
//!
//! The server runs as a child process (this binary, started with `--serve-for-memory`), so that
//! its resident set holds nothing of the clients; the clients connect from this process.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use guildhall_client::Client;
use guildhall_homeserver::{AppState, DataDir, effective_server_name};
use tokio::io::AsyncBufReadExt;

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
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .context("VmRSS")?;
    Ok(kib * 1024.0)
}

/// `idle_rss_bytes`: the server's resident set with one account and one guild and nobody
/// connected; `idle_connection_bytes`: its growth per identified idle gateway connection,
/// measured between the warm-up and [`CONNECTIONS`].
pub(crate) async fn idle(results: &mut Results) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("guildhall-bench-memory-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let mut child = tokio::process::Command::new(std::env::current_exe()?)
        .arg(SERVE_FLAG)
        .arg(&dir)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let pid = child.id().context("the server's pid")?;
    let mut lines = tokio::io::BufReader::new(child.stdout.take().context("stdout")?).lines();
    let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .context("the server did not start")??
        .context("the server exited")?;
    let Some(address) = line.strip_prefix("listening ") else { bail!("unexpected {line:?}") };
    let client = Client::connect(&format!("http://{address}")).await?;
    let session = client.register("idle", PASSWORD).await?;
    session.create_guild("idle").await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    results.record("idle_rss_bytes", rss(pid)?, "bytes");

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
    drop(connections);
    child.kill().await?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
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
