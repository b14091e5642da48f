//! A gateway bot that answers `!ping` with `pong`, on the client library (`guildhall-client`).
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

use anyhow::{Context, Result};
use guildhall_client::{Client, GatewayEvent, NewInvite, Session};

#[tokio::main]
async fn main() -> Result<()> {
    if std::env::args().any(|arg| arg == "--demo") {
        return demo().await;
    }
    let url = std::env::var("GUILDHALL_URL").unwrap_or_else(|_| "http://127.0.0.1:8008".into());
    let token =
        std::env::var("GUILDHALL_TOKEN").context("set GUILDHALL_TOKEN to the bot's token")?;
    let bot = Client::connect(&url).await?.login_with_token(&token).await?;
    run_bot(&bot, None, None).await
}

/// Connects to the gateway and answers every `!ping` it can see, forever or `limit` times.
/// `online` is told once the bot has identified.
async fn run_bot(
    bot: &Session,
    limit: Option<usize>,
    online: Option<tokio::sync::oneshot::Sender<()>>,
) -> Result<()> {
    // The gateway keeps its own heartbeat and resumes after a dropped connection.
    let mut gateway = bot.gateway().await?;
    println!("bot {} is online", bot.user_id());
    if let Some(online) = online {
        let _ = online.send(());
    }
    let mut answered = 0;
    while limit.is_none_or(|limit| answered < limit) {
        let event = gateway.next().await.context("the gateway connection ended")??;
        if let GatewayEvent::MessageCreate(message) = event
            && message.content == "!ping"
            && message.author_id != *bot.user_id()
        {
            bot.reply(&message, "pong").await.context("could not answer")?;
            answered += 1;
        }
    }
    Ok(())
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

    let server = Client::connect(&url).await?;
    let human = server.register("alice", "correct horse battery").await?;
    let bot = server.register("pingbot", "correct horse battery").await?;
    let guild = human.create_guild("Bots").await?;
    let channel = guild.channels.first().context("a new guild has #general")?.id.clone();
    let invite = human.create_invite(&channel, NewInvite::default()).await?;
    bot.accept_invite(&invite.code, Some(&invite.server)).await?;

    let (online, bot_is_online) = tokio::sync::oneshot::channel();
    let bot_task = tokio::spawn(async move { run_bot(&bot, Some(1), Some(online)).await });
    let mut watcher = human.gateway().await?;
    bot_is_online.await.context("the bot stopped before coming online")?;
    human.send_message(&channel, "!ping").await?;
    let answer = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let event = watcher.next().await.context("the gateway connection ended")??;
            if let GatewayEvent::MessageCreate(message) = event {
                println!("{}: {}", message.author_id, message.content);
                if message.content == "pong" {
                    return anyhow::Ok(message);
                }
            }
        }
    })
    .await
    .context("the bot did not answer within 10 s")??;
    bot_task.await??;
    let _ = std::fs::remove_dir_all(&data);
    let ping = answer.reply_to.context("the bot's answer does not reply to the ping")?;
    println!("the bot answered in reply to {ping}");
    Ok(())
}
