//! The cross-node layer: one Redis that every node of a scale-out deployment shares
//! (`[redis] url`). It carries the bus between nodes (`bus`), presence (`presence`), shared rate
//! limits (`ratelimit`) and resumable gateway sessions (`gateway`); this module owns only the
//! connection, this node's random id and its liveness key.
//!
//! Every key and channel starts with `guildhall:`. A node proves it is alive by refreshing
//! `guildhall:node:{node_id}` every [`LIVENESS_REFRESH`] with an expiry of [`LIVENESS_TTL`], so
//! what a dead node left behind (its users' connections) stops counting once the key expires.
//!
//! Architecture Invariant: without `[redis] url` nothing here exists and every user of it keeps
//! its in-process behaviour.

use std::sync::Arc;
use std::time::Duration;

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
}

impl std::fmt::Debug for Cluster {
    // The client holds the URL, which may hold a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").field("node_id", &self.inner.node_id).finish_non_exhaustive()
    }
}

impl Cluster {
    /// Connects to the Redis at `url` as a node with a fresh random id. The error never repeats
    /// the URL (it may hold a password).
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
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
        let cluster = Self { inner: Arc::new(Inner { client, connection, node_id }) };
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

    /// The liveness key of a node.
    pub fn node_key(node_id: &str) -> String {
        format!("guildhall:node:{node_id}")
    }

    /// Marks this node alive for another [`LIVENESS_TTL`], and lists it among the nodes.
    pub async fn refresh_liveness(&self) -> redis::RedisResult<()> {
        let mut connection = self.connection();
        redis::pipe()
            .cmd("SET")
            .arg(Self::node_key(self.node_id()))
            .arg(1)
            .arg("EX")
            .arg(LIVENESS_TTL.as_secs())
            .ignore()
            .cmd("SADD")
            .arg(NODES_KEY)
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
        let Ok(nodes) =
            redis::cmd("SMEMBERS").arg(NODES_KEY).query_async::<Vec<String>>(&mut connection).await
        else {
            return Vec::new();
        };
        let mut dead = Vec::new();
        for node in nodes {
            let alive = redis::cmd("EXISTS")
                .arg(Self::node_key(&node))
                .query_async::<bool>(&mut connection)
                .await;
            if matches!(alive, Ok(false))
                && matches!(
                    redis::cmd("SREM")
                        .arg(NODES_KEY)
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

/// The set of node ids that have been alive.
const NODES_KEY: &str = "guildhall:nodes";
