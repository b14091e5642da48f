//! Presence of local users: online while at least one gateway session is connected, with the
//! status the user chose (online, idle, dnd, invisible). Invisible users appear offline.
//!
//! With several nodes (`[redis] url`) the table lives in Redis, one hash per user,
//! `guildhall:{server_name}:presence:{user_id}`: field `status` is the status the user chose last (on any
//! node), field `node:{node_id}` the user's connections on that node. A node's connections count
//! only while its liveness key lives (see `cluster`), and always for the node itself (Redis may
//! have restarted since its last refresh); once a node died, the first node to notice
//! removes its fields (`reap_node`, through the set `guildhall:{server_name}:node-users:{node_id}`
//! of users it had connected) and publishes who went offline. Every change is one Lua script, so two nodes
//! never both announce one transition. Hashes expire a day after their last change. When Redis
//! is unreachable, this node's own table is used instead (with a warning), so users connected
//! here are still seen by other users of this node.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{LazyLock, Mutex};

use guildhall_spec::UserId;
use serde::{Deserialize, Serialize};

use crate::bus::{Bus, BusMessage};
use crate::cluster::Cluster;

/// A status a client may choose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Online.
    Online,
    /// Away.
    Idle,
    /// Do not disturb.
    Dnd,
    /// Connected, shown as offline.
    Invisible,
}

impl Status {
    /// Parses a client's status; `offline` is not choosable (it is what disconnecting means).
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "online" => Some(Self::Online),
            "idle" => Some(Self::Idle),
            "dnd" => Some(Self::Dnd),
            "invisible" => Some(Self::Invisible),
            _ => None,
        }
    }

    /// What others see.
    pub fn visible(self) -> &'static str {
        match self {
            Self::Online => "online",
            Self::Idle => "idle",
            Self::Dnd => "dnd",
            Self::Invisible => "offline",
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    connections: usize,
    status: Status,
}

/// Presence of every local user with at least one connection.
#[derive(Debug)]
pub struct Presence {
    bus: Bus,
    users: Mutex<HashMap<UserId, Entry>>,
    cluster: Option<Cluster>,
    /// Whether the last attempt to reach Redis failed (warned about once per outage).
    failing: AtomicBool,
}

/// One change of the table, as the script runs it.
#[derive(Debug, Clone, Copy)]
enum Change {
    Connect(Status),
    SetStatus(Status),
    Disconnect,
    /// Every connection of a dead node ends.
    Reap,
    Read,
}

impl Presence {
    /// An empty presence table publishing changes on `bus`.
    pub fn new(bus: Bus) -> Self {
        Self {
            bus,
            users: Mutex::new(HashMap::new()),
            cluster: None,
            failing: AtomicBool::new(false),
        }
    }

    /// A presence table shared by the nodes on `cluster`.
    pub fn clustered(bus: Bus, cluster: Cluster) -> Self {
        Self { cluster: Some(cluster), ..Self::new(bus) }
    }

    /// What others currently see of `user`.
    pub async fn visible_status(&self, user: &UserId) -> &'static str {
        if let Some(cluster) = &self.cluster
            && let Some((_, after)) =
                self.run_script(cluster, cluster.node_id(), user, Change::Read).await
        {
            return after;
        }
        self.users
            .lock()
            .ok()
            .and_then(|users| users.get(user).map(|e| e.status.visible()))
            .unwrap_or("offline")
    }

    /// A session of `user` connected with `status`.
    pub async fn connect(&self, user: &UserId, status: Status) {
        self.change(user, Change::Connect(status)).await;
    }

    /// The user chose a new status.
    pub async fn set_status(&self, user: &UserId, status: Status) {
        self.change(user, Change::SetStatus(status)).await;
    }

    /// A session of `user` disconnected.
    pub async fn disconnect(&self, user: &UserId) {
        self.change(user, Change::Disconnect).await;
    }

    /// Removes the connections of a node that died, publishing who went offline.
    pub async fn reap_node(&self, node_id: &str) {
        let Some(cluster) = &self.cluster else { return };
        let mut connection = cluster.connection();
        let users_key = node_users_key(cluster, node_id);
        let Ok(users) = redis::cmd("SMEMBERS")
            .arg(&users_key)
            .query_async::<Vec<String>>(&mut connection)
            .await
        else {
            return;
        };
        tracing::info!(node_id, users = users.len(), "a node died; its users' connections end");
        for user in users.iter().filter_map(|user| user.parse::<UserId>().ok()) {
            if let Some((before, after)) =
                self.run_script(cluster, node_id, &user, Change::Reap).await
            {
                self.announce(&user, before, after);
            }
        }
        let _ = redis::cmd("DEL").arg(&users_key).query_async::<()>(&mut connection).await;
    }

    async fn change(&self, user: &UserId, change: Change) {
        // The local table is kept with Redis too, to answer while Redis is unreachable.
        let local = self.update_local(user, change);
        let shared = match &self.cluster {
            Some(cluster) => self.run_script(cluster, cluster.node_id(), user, change).await,
            None => None,
        };
        if let Some((before, after)) = shared.or(local) {
            self.announce(user, before, after);
        }
    }

    fn announce(&self, user: &UserId, before: &'static str, after: &'static str) {
        if before != after {
            self.bus.publish(BusMessage::Presence { user_id: user.clone(), status: after });
        }
    }

    /// Runs `change` for `node_id`'s connections of `user` in Redis: what others saw before and
    /// see after. `None` when Redis is unreachable.
    async fn run_script(
        &self,
        cluster: &Cluster,
        node_id: &str,
        user: &UserId,
        change: Change,
    ) -> Option<(&'static str, &'static str)> {
        let (operation, status) = match change {
            Change::Connect(status) => ("connect", Some(status)),
            Change::SetStatus(status) => ("status", Some(status)),
            Change::Disconnect => ("disconnect", None),
            Change::Reap => ("reap", None),
            Change::Read => ("read", None),
        };
        let status = status.map_or("", |status| match status {
            Status::Online => "online",
            Status::Idle => "idle",
            Status::Dnd => "dnd",
            Status::Invisible => "invisible",
        });
        let result = PRESENCE_SCRIPT
            .key(cluster.key(&["presence", user.as_str()]))
            .key(node_users_key(cluster, node_id))
            .arg(node_id)
            .arg(operation)
            .arg(status)
            .arg(user.as_str())
            .arg(cluster.node_key_prefix())
            .invoke_async::<(String, String)>(&mut cluster.connection())
            .await;
        match result {
            Ok((before, after)) => {
                if self.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!("presence in Redis again");
                }
                Some((visible(&before), visible(&after)))
            }
            Err(error) => {
                if !self.failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(%error, "presence in Redis failed; this node's own view is used");
                }
                None
            }
        }
    }

    /// Applies `change` to this node's own table: what others saw before and see after.
    fn update_local(&self, user: &UserId, change: Change) -> Option<(&'static str, &'static str)> {
        let mut users = self.users.lock().ok()?;
        let before = users.get(user).copied();
        let after = match (change, before) {
            (Change::Connect(status), Some(entry)) => {
                Some(Entry { connections: entry.connections + 1, status })
            }
            (Change::Connect(status), None) => Some(Entry { connections: 1, status }),
            (Change::SetStatus(status), entry) => entry.map(|entry| Entry { status, ..entry }),
            (Change::Disconnect, entry) => entry.and_then(|entry| {
                (entry.connections > 1)
                    .then_some(Entry { connections: entry.connections - 1, ..entry })
            }),
            (Change::Reap | Change::Read, entry) => entry,
        };
        match after {
            Some(entry) => users.insert(user.clone(), entry),
            None => users.remove(user),
        };
        let shown = |entry: Option<Entry>| entry.map_or("offline", |e| e.status.visible());
        Some((shown(before), shown(after)))
    }
}

/// The set of users a node has connections of.
fn node_users_key(cluster: &Cluster, node_id: &str) -> String {
    cluster.key(&["node-users", node_id])
}

/// A status as the script returns it, as others see it.
fn visible(status: &str) -> &'static str {
    Status::parse(status).map_or("offline", Status::visible)
}

/// KEYS: the user's presence hash, the node's user set. ARGV: node id, operation (`connect`,
/// `status`, `disconnect`, `reap`, `read`), the status (for `connect` and `status`), the user id,
/// what every node's liveness key starts with (the namespace's `…:node:`; a field `node:{id}`
/// counts while that prefix followed by `{id}` exists).
/// Returns the status before and after (`offline` when no live node has a connection).
static PRESENCE_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local key, node_users = KEYS[1], KEYS[2]
local node, operation, status, user, node_key_prefix = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local field = 'node:' .. node
local function current(counting_this_node)
  local fields = redis.call('HGETALL', key)
  local chosen, connected = 'offline', false
  for i = 1, #fields, 2 do
    local name, value = fields[i], fields[i + 1]
    if name == 'status' then
      chosen = value
    elseif string.sub(name, 1, 5) == 'node:' then
      local alive = redis.call('EXISTS', node_key_prefix .. string.sub(name, 6)) == 1
      if alive or (counting_this_node and name == field) then
        connected = connected or tonumber(value) > 0
      end
    end
  end
  if connected then return chosen end
  return 'offline'
end
-- The node running a change is alive, whether or not its liveness key is there yet (Redis may
-- have restarted since its last refresh). A dead node's connections are reaped: before, they
-- were still seen.
local before = current(true)
if operation == 'connect' then
  redis.call('HINCRBY', key, field, 1)
  redis.call('HSET', key, 'status', status)
  redis.call('SADD', node_users, user)
  redis.call('EXPIRE', node_users, 86400)
elseif operation == 'status' then
  if tonumber(redis.call('HGET', key, field) or '0') > 0 then
    redis.call('HSET', key, 'status', status)
  end
elseif operation == 'reap' then
  redis.call('HDEL', key, field)
  redis.call('SREM', node_users, user)
elseif operation == 'disconnect' then
  local left = redis.call('HINCRBY', key, field, -1)
  if left <= 0 then
    redis.call('HDEL', key, field)
    redis.call('SREM', node_users, user)
  end
end
if operation ~= 'read' then
  if redis.call('HLEN', key) <= 1 then
    redis.call('DEL', key)
  else
    redis.call('EXPIRE', key, 86400)
  end
end
return {before, current(operation ~= 'reap')}
",
    )
});
