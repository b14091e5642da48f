//! What every case gets: the target, the suite's peer servers, and fixtures built through the
//! test-control API and the federation API.

use std::sync::atomic::{AtomicU64, Ordering};

use guildhall_spec::event::JsonObject;
use guildhall_spec::{KeyId, PublicKeyMap, ServerName};
use serde_json::Value;

use crate::peer::Peer;
use crate::target::Target;

/// A process-wide counter, for unique names.
pub fn unique() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// The run's shared context.
pub struct Context {
    /// The server under test.
    pub target: Target,
    /// A peer that joins guilds on the target.
    pub peer: Peer,
    /// A second peer that never joins anything.
    pub stranger: Peer,
    /// The target's LiveKit API secret, when the run was told it: voice tokens' HS256
    /// signatures are then verified too.
    pub voice_secret: Option<String>,
}

/// A guild on the target with a member from the peer.
#[derive(Debug, Clone)]
pub struct Fixture {
    /// The guild id.
    pub guild: String,
    /// Its `general` channel.
    pub channel: String,
    /// Its owner, a local user of the target.
    pub owner: String,
    /// A member whose home is the peer.
    pub member: String,
    /// The target's answer to the member's join.
    pub join: Value,
}

impl Context {
    /// Starts the peers for a run against `target`, whose LiveKit API secret may be known.
    pub async fn new(target: Target, voice_secret: Option<String>) -> anyhow::Result<Self> {
        let (peer, stranger) = (Peer::start().await?, Peer::start().await?);
        Ok(Self { target, peer, stranger, voice_secret })
    }

    /// A fresh guild on the target, owned by a fresh local user, joined by a fresh peer user.
    pub async fn fixture(&self) -> Result<Fixture, String> {
        let owner = self.target.user("owner").await?;
        let (guild, channel) = self.target.guild(&owner).await?;
        let code = self.target.invite(&owner, &guild).await?;
        let member = self.peer.user("member");
        let join = self.peer.join(&self.target, &guild, &member, Some(&code)).await?;
        Ok(Fixture { guild, channel, owner, member, join })
    }

    /// The target's current keys, as published, plus the peers' keys.
    pub async fn keys(&self) -> Result<PublicKeyMap, String> {
        let (status, document) = self.target.call("GET", "/_guildhall/v1/keys/server", None).await;
        if status != 200 {
            return Err(format!("GET /keys/server answered {status}"));
        }
        let mut keys = PublicKeyMap::new();
        let name = ServerName::parse(&self.target.name).map_err(|e| e.to_string())?;
        for (key_id, key) in document["verify_keys"].as_object().into_iter().flatten() {
            let key_id = KeyId::parse(key_id).map_err(|e| e.to_string())?;
            keys.insert_base64(name.clone(), key_id, key["key"].as_str().unwrap_or_default())
                .map_err(|e| e.to_string())?;
        }
        for peer in [&self.peer, &self.stranger] {
            keys.insert(peer.name().clone(), peer.key.key_id().clone(), peer.key.verifying_key());
        }
        Ok(keys)
    }

    /// Waits (up to 10 s) until the peer has received an event matching `check`.
    pub async fn pushed(&self, check: impl Fn(&JsonObject) -> bool) -> Option<JsonObject> {
        for _ in 0..200 {
            if let Some(event) = self.peer.received().into_iter().find(|event| check(event)) {
                return Some(event);
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        None
    }
}
