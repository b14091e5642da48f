//! The test harness: every test starts its own `guildhall` process on loopback and drives it
//! over HTTP and WebSocket, the way a client would.

pub mod browser;
mod client;
mod gateway;
mod proxy;
mod server;

pub use client::{Guild, User, assert_error, call, encode, ids, with_query};
pub use gateway::{Encoding, Gateway, Received, names, short};
pub use server::{Builder as ServerBuilder, Server};

pub use reqwest::StatusCode;
pub use serde_json::{Value, json};

/// The password every test account uses.
pub const PASSWORD: &str = "correct horse battery";

/// Permission bits as the API writes them (decimal strings).
pub mod bits {
    /// KICK_MEMBERS.
    pub const KICK_MEMBERS: u64 = 1 << 1;
    /// BAN_MEMBERS.
    pub const BAN_MEMBERS: u64 = 1 << 2;
    /// ADMINISTRATOR.
    pub const ADMINISTRATOR: u64 = 1 << 3;
    /// MANAGE_CHANNELS.
    pub const MANAGE_CHANNELS: u64 = 1 << 4;
    /// VIEW_CHANNEL.
    pub const VIEW_CHANNEL: u64 = 1 << 10;
    /// MANAGE_MESSAGES.
    pub const MANAGE_MESSAGES: u64 = 1 << 13;
    /// MANAGE_ROLES.
    pub const MANAGE_ROLES: u64 = 1 << 28;

    /// The decimal string of a set of bits.
    pub fn text(bits: u64) -> String {
        bits.to_string()
    }
}

/// A guild owned by the first of `names`, joined by the others through one invite. Returns the
/// guild and the users in the order of `names`.
pub async fn community(server: &Server, names: &[&str]) -> (Guild, Vec<User>) {
    let mut users = Vec::new();
    for name in names {
        users.push(server.register(name).await);
    }
    let guild = users[0].create_guild("Test Guild").await;
    if users.len() > 1 {
        let code = users[0].invite(&guild.general).await;
        for user in &users[1..] {
            user.join(&code).await;
        }
    }
    (guild, users)
}

/// A text channel in `guild` that @everyone cannot view, created private by `owner` in one
/// step.
pub async fn private_channel(owner: &User, guild: &str, name: &str) -> String {
    let hidden =
        json!([{"kind": "role", "id": "everyone", "deny": bits::text(bits::VIEW_CHANNEL)}]);
    let body = json!({"name": name, "overwrites": hidden});
    let (status, channel) = owner.post(&format!("/guilds/{guild}/channels"), body).await;
    assert_eq!(status, StatusCode::CREATED, "create {name}: {channel}");
    channel["id"].as_str().expect("a channel id").to_owned()
}
