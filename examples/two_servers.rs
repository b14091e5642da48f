//! Two federating homeservers on loopback, and a conversation between their users.
//!
//! `cargo run -p guildhall-examples --example two-servers`
//!
//! Server A hosts a guild; Bob, whose account lives on server B, joins it with an invite code
//! and the name of A. From then on each server keeps its own copy of the guild's signed log:
//! Alice's messages reach B over A's delivery queue, Bob's go to A as proposals signed by B.
//! The example prints what each user's own server shows. The users talk through the client
//! library (`guildhall-client`), as any client program would.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use guildhall_client::{ChannelId, Client, History, NewInvite, Session};
use guildhall_homeserver::config::Config;
use guildhall_homeserver::{AppState, DataDir, effective_server_name};

/// A server started in-process on a free port, with its data in a temporary folder.
struct Homeserver {
    client: Client,
    data: std::path::PathBuf,
}

impl Homeserver {
    async fn start(label: &str) -> Result<Self> {
        let data = std::env::temp_dir()
            .join(format!("guildhall-two-servers-{label}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&data);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let mut config = Config::default();
        config.server.listen = listener.local_addr()?;
        // Loopback has no TLS: allow plain HTTP between the two servers (never do this for real).
        config.federation.danger_allow_plain_http = true;
        config.federation.danger_allow_private_addresses = true;
        let name = effective_server_name(&config)?;
        let state = AppState::open(config.clone(), &DataDir::new(&data), name).await?;
        tokio::spawn(guildhall_homeserver::serve(state, listener, std::future::pending()));
        // The client learns the server's name from its key document.
        let client = Client::connect(&format!("http://{}", config.server.listen)).await?;
        Ok(Self { client, data })
    }

    async fn register(&self, name: &str) -> Result<Session> {
        Ok(self.client.register(name, "correct horse battery").await?)
    }
}

impl Drop for Homeserver {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

/// The channel's latest messages as `user: text` lines, oldest first, as `user`'s server
/// shows them.
async fn history(user: &Session, channel: &ChannelId) -> Result<Vec<String>> {
    let messages = user.messages(channel, &History::latest(50)).await?;
    let lines = messages.iter().rev();
    Ok(lines.map(|message| format!("{}: {}", message.author_id, message.content)).collect())
}

#[tokio::main]
async fn main() -> Result<()> {
    let a = Homeserver::start("a").await?;
    let b = Homeserver::start("b").await?;
    println!("server A is {}, server B is {}", a.client.server_name(), b.client.server_name());

    let alice = a.register("alice").await?;
    let bob = b.register("bob").await?;
    let guild = alice.create_guild("Across the wire").await?;
    let channel = guild.channels.first().context("a new guild has #general")?.id.clone();
    let invite = alice.create_invite(&channel, NewInvite::default()).await?;
    println!("alice created {} on A; invite code {}", guild.id, invite.code);

    // The invite names its host, A: B joins there on bob's behalf and keeps a replica.
    bob.accept_invite(&invite.code, Some(&invite.server)).await?;
    println!("bob (on B) joined through A");

    let lines = [
        (&alice, "hi bob, welcome to my server"),
        (&bob, "thanks alice, I am writing from B"),
        (&alice, "and I read you on A"),
    ];
    for (user, text) in lines {
        user.send_message(&channel, text).await?;
    }
    // Deliveries are asynchronous; give A's queue a moment to reach B.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut on_b = history(&bob, &channel).await?;
    while on_b.len() < lines.len() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        on_b = history(&bob, &channel).await?;
    }
    let on_a = history(&alice, &channel).await?;
    println!("\n-- as server A shows it --");
    on_a.iter().for_each(|line| println!("{line}"));
    println!("\n-- as server B shows it --");
    on_b.iter().for_each(|line| println!("{line}"));
    if on_a != on_b {
        bail!("the two servers disagree");
    }
    println!("\nboth servers hold the same conversation, in the same order");
    Ok(())
}
