//! The cross-node layer: one Redis that every node of a scale-out deployment shares
//! (`[redis] url`). It carries the bus between nodes (`bus`), presence (`presence`), shared rate
//! limits (`ratelimit`) and resumable gateway sessions (`gateway`); this module owns only the
//! connection, this node's random id and its liveness key, and the deployment's namespace.
//!
//! Every key and the bus channel live under `guildhall:{server_name}:` ([`Namespace`]), so
//! servers of different names (or many test servers) can share one Redis without seeing each
//! other's bus messages, rate-limit buckets, presence or nodes. Nodes of one server share the
//! name and so the namespace. The keys, `{server_name}` standing for the namespace's name:
//! * `guildhall:{server_name}:bus` — the pub/sub channel of the bus (`bus`).
//! * `guildhall:{server_name}:nodes` — the set of node ids that have been alive.
//! * `guildhall:{server_name}:node:{node_id}` — a node's liveness key.
//! * `guildhall:{server_name}:presence:{user_id}` and `…:node-users:{node_id}` (`presence`).
//! * `guildhall:{server_name}:ratelimit:{limit}:{key}` (`ratelimit`).
//! * `guildhall:{server_name}:session:{session_id}` and `…:login-sessions:{login}` (`gateway`).
//!
//! A server name may hold a colon (`127.0.0.1:8448`, `[::1]:8448`): nothing splits a key at its
//! colons, and keys are only ever built, never parsed (the node ids and user ids a node reads
//! back come from set members and hash fields). Names never collide across servers: after the
//! server name every key goes on with a word (`bus`, `node`, …), never with a port's digits.
//! Nodes of a version that used the bare `guildhall:` prefix do not see nodes of this one, so a
//! deployment upgrades all its nodes at once.
//!
//! A node proves it is alive by refreshing its liveness key every [`LIVENESS_REFRESH`] with an
//! expiry of [`LIVENESS_TTL`], so what a dead node left behind (its users' connections) stops
//! counting once the key expires.
//!
//! Architecture Invariant: without `[redis] url` nothing here exists and every user of it keeps
//! its in-process behaviour.

use std::sync::Arc;
use std::time::Duration;

use guildhall_spec::ServerName;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// How long a node counts as alive after its last refresh.
pub const LIVENESS_TTL: Duration = Duration::from_secs(30);
/// How often a node refreshes its liveness key.
pub const LIVENESS_REFRESH: Duration = Duration::from_secs(10);
/// The longest one command may take before it counts as failed.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

/// A handle on the shared Redis; cheap to clone.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

struct Inner {
    client: redis::Client,
    connection: ConnectionManager,
    node_id: String,
    namespace: Namespace,
}

impl std::fmt::Debug for Cluster {
    // The client holds the URL, which may hold a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("node_id", &self.inner.node_id)
            .field("namespace", &self.inner.namespace)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// Connects to the Redis at `url` as a node of `server_name` with a fresh random id. The
    /// error never repeats the URL (it may hold a password).
    pub async fn connect(url: &str, server_name: &ServerName) -> anyhow::Result<Self> {
        let client = redis::Client::open(url).map_err(|error| {
            anyhow::anyhow!("[redis] url is not a Redis URL: {:?}", error.kind())
        })?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(RESPONSE_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(5));
        let connection = client
            .get_connection_manager_with_config(config)
            .await
            .map_err(|error| anyhow::anyhow!("connecting to Redis: {error}"))?;
        let node_id = crate::guilds::random_id(16);
        let namespace = Namespace::new(server_name);
        let cluster = Self { inner: Arc::new(Inner { client, connection, node_id, namespace }) };
        cluster.refresh_liveness().await?;
        Ok(cluster)
    }

    /// This node's id, random per process start.
    pub fn node_id(&self) -> &str {
        &self.inner.node_id
    }

    /// A connection for commands; it reconnects by itself after a lost connection (the command
    /// that saw the loss fails).
    pub fn connection(&self) -> ConnectionManager {
        self.inner.connection.clone()
    }

    /// The client, for connections of their own (a pub/sub subscription).
    pub fn client(&self) -> &redis::Client {
        &self.inner.client
    }

    /// The key made of `parts` in this deployment's namespace.
    pub fn key(&self, parts: &[&str]) -> String {
        self.inner.namespace.key(parts)
    }

    /// The bus's pub/sub channel in this deployment's namespace.
    pub fn channel(&self) -> String {
        self.inner.namespace.channel()
    }

    /// The liveness key of a node.
    pub fn node_key(&self, node_id: &str) -> String {
        self.key(&[NODE, node_id])
    }

    /// What every node's liveness key starts with, for scripts that build one from a node id.
    pub fn node_key_prefix(&self) -> String {
        self.node_key("")
    }

    /// Marks this node alive for another [`LIVENESS_TTL`], and lists it among the nodes.
    pub async fn refresh_liveness(&self) -> redis::RedisResult<()> {
        let mut connection = self.connection();
        redis::pipe()
            .cmd("SET")
            .arg(self.node_key(self.node_id()))
            .arg(1)
            .arg("EX")
            .arg(LIVENESS_TTL.as_secs())
            .ignore()
            .cmd("SADD")
            .arg(self.key(&[NODES]))
            .arg(self.node_id())
            .ignore()
            .query_async::<()>(&mut connection)
            .await
    }

    /// Refreshes this node's liveness until the process ends, and takes over what nodes that
    /// died left behind (their users' presence).
    pub async fn run(self, presence: Arc<crate::presence::Presence>) {
        let mut ticks = tokio::time::interval(LIVENESS_REFRESH);
        let mut failing = false;
        loop {
            ticks.tick().await;
            match self.refresh_liveness().await {
                Ok(()) if failing => {
                    failing = false;
                    tracing::info!("Redis reachable again");
                }
                Ok(()) => {}
                Err(error) if !failing => {
                    failing = true;
                    tracing::warn!(%error, "refreshing this node's liveness in Redis");
                }
                Err(_) => {}
            }
            if !failing {
                for node in self.dead_nodes().await {
                    presence.reap_node(&node).await;
                }
            }
        }
    }

    /// Nodes listed but no longer alive, each returned to exactly one caller on any node (the
    /// one whose `SREM` removed it from the list).
    async fn dead_nodes(&self) -> Vec<String> {
        let mut connection = self.connection();
        let Ok(nodes) = redis::cmd("SMEMBERS")
            .arg(self.key(&[NODES]))
            .query_async::<Vec<String>>(&mut connection)
            .await
        else {
            return Vec::new();
        };
        let mut dead = Vec::new();
        for node in nodes {
            let alive = redis::cmd("EXISTS")
                .arg(self.node_key(&node))
                .query_async::<bool>(&mut connection)
                .await;
            if matches!(alive, Ok(false))
                && matches!(
                    redis::cmd("SREM")
                        .arg(self.key(&[NODES]))
                        .arg(&node)
                        .query_async::<u32>(&mut connection)
                        .await,
                    Ok(1)
                )
            {
                dead.push(node);
            }
        }
        dead
    }
}

/// The key of the set of node ids that have been alive.
const NODES: &str = "nodes";
/// The first part of a node's liveness key.
const NODE: &str = "node";

/// The prefix of every key and channel of one deployment: `guildhall:{server_name}:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace(String);

impl Namespace {
    /// The namespace of the server named `server_name` (lowercase, as parsed).
    pub fn new(server_name: &ServerName) -> Self {
        Self(format!("guildhall:{server_name}:"))
    }

    /// The key made of `parts`, joined by colons after the prefix.
    pub fn key(&self, parts: &[&str]) -> String {
        let mut key = self.0.clone();
        for (index, part) in parts.iter().enumerate() {
            if index > 0 {
                key.push(':');
            }
            key.push_str(part);
        }
        key
    }

    /// The bus's pub/sub channel.
    pub fn channel(&self) -> String {
        self.key(&["bus"])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(server_name: &str, parts: &[&str], expected: &str) {
        let namespace = Namespace::new(&server_name.parse().unwrap());
        assert_eq!(namespace.key(parts), expected, "{server_name} {parts:?}");
    }

    #[test]
    fn keys_live_under_the_server_name() {
        check("chat.example.org", &["nodes"], "guildhall:chat.example.org:nodes");
        check("Chat.Example.ORG", &["node", "n1"], "guildhall:chat.example.org:node:n1");
        check(
            "127.0.0.1:8448",
            &["presence", "@a:127.0.0.1:8448"],
            "guildhall:127.0.0.1:8448:presence:@a:127.0.0.1:8448",
        );
        check("[::1]:8448", &["ratelimit", "ip", "::1"], "guildhall:[::1]:8448:ratelimit:ip:::1");
        check("one.example", &["node", ""], "guildhall:one.example:node:");
    }

    #[test]
    fn servers_of_different_names_have_different_channels() {
        let channel = |name: &str| Namespace::new(&name.parse().unwrap()).channel();
        assert_eq!(channel("one.example"), "guildhall:one.example:bus");
        assert_ne!(channel("one.example"), channel("one.example:8448"));
        assert_ne!(channel("one.example"), channel("two.example"));
    }
}
