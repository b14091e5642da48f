//! A client of Guildhall servers: the client REST API (`/api/v1`), the gateway, and the
//! user's identity key kept in a passphrase-encrypted file.
//!
//! * [`Identity`] — the identity (spec chapter 16): a 24-word recovery phrase and the current
//!   identity key, saved sealed under a passphrase.
//! * [`Client`] — one server before logging in: register, log in with a password, or log in
//!   with the identity key (spec 16.4), which works on any server; or use a token obtained
//!   elsewhere, such as a bot's.
//! * [`Session`] — an account on one server: guilds, channels, invites (across servers too),
//!   messages and replies, direct messages, binding the identity key. Clones share one
//!   connection pool, so many tasks can call as one account at once.
//! * [`Gateway`] — live dispatches from a session's server, resumed after a dropped
//!   connection, each with the moment it arrived if wanted.
//! * [`e2e::Device`] — end-to-end encrypted direct messages (spec 17): this login as a device
//!   with its Olm sessions, in a store sealed with a key derived from the identity.
//!
//! One identity holds a [`Session`] per server:
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use guildhall_client::{Client, History, Identity, Sent};
//!
//! let identity = Identity::generate();
//! // Register at home, and bind the identity to the account.
//! let home = Client::connect("https://home.example").await?;
//! let alice = home.register("alice", "correct horse battery").await?;
//! alice.bind_identity(&identity).await?;
//! // Any other server: a key login, which links an account there to the same identity.
//! let elsewhere = Client::connect("https://elsewhere.example").await?;
//! let alice_there = elsewhere.login_with_key(&identity, alice.user_id(), None).await?;
//!
//! let guild = alice.create_guild("Lobby").await?;
//! let general = &guild.channels[0].id;
//! let invite = alice.create_invite(general, Default::default()).await?;
//! alice_there.accept_invite(&invite.code, Some(&invite.server)).await?;
//! if let Sent::Delivered(message) = alice_there.send_message(general, "hello").await? {
//!     println!("sent {}", message.id);
//! }
//! for message in alice.messages(general, &History::latest(10)).await? {
//!     println!("{}: {}", message.author_id, message.content);
//! }
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]

pub mod e2e;
mod error;
mod gateway;
mod identity;
mod session;
mod types;

pub use error::{Error, Result};
pub use gateway::{Gateway, GatewayEvent, Ready};
pub use identity::{Identity, IdentityError, KdfParams, write_secret};
pub use session::{Client, Session};
pub use types::{
    Channel, DirectMessage, Guild, History, Invite, Member, Message, NewInvite, SavedSession, Sent,
    User,
};

/// Identifier types the API takes and returns, from the protocol crate.
pub use guildhall_spec::{ChannelId, EventId, GuildId, InviteCode, ServerName, UserId};
