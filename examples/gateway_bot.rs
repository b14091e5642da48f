//! A gateway bot that answers `!ping` with `pong`.
//!
//! Against a running server:
//!
//! ```sh
//! GUILDHALL_URL=http://127.0.0.1:8008 GUILDHALL_TOKEN=<bot token> \
//!     cargo run -p guildhall-examples --example gateway_bot
//! ```
//!
//! With `--demo` it needs nothing: it starts a homeserver in-process on a free port, registers a
//! human and a bot, has the human say `!ping` in a guild they share, and exits once the bot's
//! `pong` has arrived over the human's own gateway connection. CI runs it that way.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

#[tokio::main]
async fn main() -> Result<()> {
    if std::env::args().any(|arg| arg == "--demo") {
        return demo().await;
    }
    let url = std::env::var("GUILDHALL_URL").unwrap_or_else(|_| "http://127.0.0.1:8008".into());
    let token =
        std::env::var("GUILDHALL_TOKEN").context("set GUILDHALL_TOKEN to the bot's token")?;
    run_bot(&url, &token, None, None).await
}

/// Connects to the gateway and answers every `!ping` it can see, forever or `limit` times.
/// `online` is told once the bot has identified.
async fn run_bot(
    url: &str,
    token: &str,
    limit: Option<usize>,
    online: Option<tokio::sync::oneshot::Sender<()>>,
) -> Result<()> {
    let http = reqwest::Client::new();
    let mut gateway = Gateway::connect(url, token).await?;
    let me = gateway.user_id.clone();
    println!("bot {me} is online");
    if let Some(online) = online {
        let _ = online.send(());
    }
    let mut answered = 0;
    while limit.is_none_or(|limit| answered < limit) {
        let (name, data) = gateway.next_dispatch().await?;
        if name == "MESSAGE_CREATE"
            && data["content"] == "!ping"
            && data["author_id"] != me.as_str()
        {
            let channel = data["channel_id"].as_str().context("channel_id")?;
            let response = http
                .post(format!("{url}/api/v1/channels/{channel}/messages"))
                .bearer_auth(token)
                .json(&json!({"content": "pong", "reply_to": data["id"]}))
                .send()
                .await?;
            if !response.status().is_success() {
                bail!("could not answer: {}", response.text().await?);
            }
            answered += 1;
        }
    }
    Ok(())
}

/// A minimal gateway client: hello, identify, heartbeats, dispatches.
struct Gateway {
    socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    user_id: String,
    heartbeat: tokio::time::Interval,
}

impl Gateway {
    async fn connect(url: &str, token: &str) -> Result<Self> {
        let ws_url = format!("{}/gateway?encoding=json", url.replacen("http", "ws", 1));
        let (mut socket, _) = tokio_tungstenite::connect_async(ws_url).await?;
        let hello = read_frame(&mut socket).await?;
        let interval = hello["d"]["heartbeat_interval"].as_u64().context("hello")?;
        socket.send(Message::text(json!({"op": 2, "d": {"token": token}}).to_string())).await?;
        let ready = read_frame(&mut socket).await?;
        if ready["t"] != "READY" {
            bail!("expected READY, got {ready}");
        }
        let user_id = ready["d"]["user"]["id"].as_str().context("READY user")?.to_owned();
        let mut heartbeat = tokio::time::interval(Duration::from_millis(interval / 2));
        heartbeat.tick().await;
        Ok(Self { socket, user_id, heartbeat })
    }

    async fn next_dispatch(&mut self) -> Result<(String, Value)> {
        loop {
            tokio::select! {
                _ = self.heartbeat.tick() => {
                    self.socket.send(Message::text(json!({"op": 1, "d": null}).to_string())).await?;
                }
                frame = read_frame(&mut self.socket) => {
                    let frame = frame?;
                    if frame["op"] == 0 {
                        return Ok((frame["t"].as_str().unwrap_or_default().to_owned(), frame["d"].clone()));
                    }
                }
            }
        }
    }
}

async fn read_frame(
    socket: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> Result<Value> {
    loop {
        match socket.next().await.context("gateway closed")?? {
            Message::Text(text) => return Ok(serde_json::from_str(&text)?),
            Message::Close(frame) => bail!("gateway closed: {frame:?}"),
            _ => {}
        }
    }
}

/// Starts a server, a human and the bot, and shows one `!ping` → `pong` round trip.
async fn demo() -> Result<()> {
    use guildhall_homeserver::{AppState, DataDir, config::Config, effective_server_name};

    let data = std::env::temp_dir().join(format!("guildhall-bot-demo-{}", std::process::id()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let mut config = Config::default();
    config.server.listen = listener.local_addr()?;
    let state =
        AppState::open(config.clone(), &DataDir::new(&data), effective_server_name(&config)?)
            .await?;
    let url = format!("http://{}", config.server.listen);
    tokio::spawn(guildhall_homeserver::serve(state, listener, std::future::pending()));

    let http = reqwest::Client::new();
    let register = |name: &'static str| {
        let http = http.clone();
        let url = url.clone();
        async move {
            let body: Value = http
                .post(format!("{url}/api/v1/auth/register"))
                .json(&json!({"username": name, "password": "correct horse battery"}))
                .send()
                .await?
                .json()
                .await?;
            anyhow::Ok(body["token"].as_str().context("token")?.to_owned())
        }
    };
    let human = register("alice").await?;
    let bot = register("pingbot").await?;
    let guild: Value = http
        .post(format!("{url}/api/v1/guilds"))
        .bearer_auth(&human)
        .json(&json!({"name": "Bots"}))
        .send()
        .await?
        .json()
        .await?;
    let channel = guild["channels"][0]["id"].as_str().context("channel")?.to_owned();
    let invite: Value = http
        .post(format!("{url}/api/v1/channels/{channel}/invites"))
        .bearer_auth(&human)
        .send()
        .await?
        .json()
        .await?;
    let code = invite["code"].as_str().context("invite")?;
    http.post(format!("{url}/api/v1/invites/{code}"))
        .bearer_auth(&bot)
        .send()
        .await?
        .error_for_status()?;

    let (online, bot_is_online) = tokio::sync::oneshot::channel();
    let bot_task = tokio::spawn({
        let url = url.clone();
        async move { run_bot(&url, &bot, Some(1), Some(online)).await }
    });
    let mut watcher = Gateway::connect(&url, &human).await?;
    bot_is_online.await.context("the bot stopped before coming online")?;
    http.post(format!("{url}/api/v1/channels/{channel}/messages"))
        .bearer_auth(&human)
        .json(&json!({"content": "!ping"}))
        .send()
        .await?
        .error_for_status()?;
    let answer = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let (name, data) = watcher.next_dispatch().await?;
            if name == "MESSAGE_CREATE" {
                println!(
                    "{}: {}",
                    data["author_id"].as_str().unwrap_or("?"),
                    data["content"].as_str().unwrap_or("")
                );
                if data["content"] == "pong" {
                    return anyhow::Ok(data);
                }
            }
        }
    })
    .await
    .context("the bot did not answer within 10 s")??;
    bot_task.await??;
    let _ = std::fs::remove_dir_all(&data);
    println!("the bot answered in reply to {}", answer["reply_to"]);
    Ok(())
}
