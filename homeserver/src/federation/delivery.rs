//! Durable delivery of sequenced events, one queue per destination server (spec chapter 14).
//!
//! Rows are written in the event's transaction (`outbound_events`); a worker per destination
//! sends them in transactions of up to 100, deletes them once the peer answers 2xx, and backs
//! off exponentially (1 s doubling, capped at 1 hour) while it cannot, waking early as soon as
//! that peer contacts us. A restart resumes from the rows, so nothing accepted is lost.
//!
//! Several nodes on one database share the queues: a node works a destination's queue only
//! while it holds that queue's lease (`delivery_leases`), renews it while sending or backing
//! off, and gives it up when the queue is empty. Every node looks for queues with events and no
//! live lease every half lease period, so the queues of a node that died pass to another within
//! about one and a half lease periods. Should a lease lapse mid-send, the next holder sends the
//! same batch under the same transaction id, which the peer recognises as a retry.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use guildhall_federation::{DiscoveryError, FederationClient, FederationError};
use guildhall_spec::ServerName;
use guildhall_spec::api::send_transaction::{self, SendTransaction};
use guildhall_spec::api::{Endpoint, fill_path};
use tokio::sync::Notify;

use crate::guilds::GuildService;
use crate::store::{Store, now_ms};

const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// The delivery queues.
#[derive(Debug, Clone)]
pub struct Delivery {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Store,
    client: FederationClient,
    /// Wakes a destination's worker: new rows, or the peer contacted us.
    wakers: Mutex<HashMap<ServerName, Arc<Notify>>>,
    proposal_wakers: Mutex<HashMap<ServerName, Arc<Notify>>>,
    guilds: Mutex<Option<Weak<GuildService>>>,
    /// Ephemeral items waiting for their destination's next transaction.
    ephemeral: Mutex<HashMap<ServerName, Vec<serde_json::Value>>>,
    /// This process, as a lease holder.
    holder: String,
    /// How long a lease lasts unless renewed.
    lease: Duration,
}

/// A worker's hold on its queue's lease.
#[derive(Debug, Default)]
struct Lease {
    /// Until when this node holds it (`None`: it does not).
    until: Option<Instant>,
}

/// How long ephemeral items wait so that those for one destination travel together.
const EPHEMERAL_COALESCE: Duration = Duration::from_millis(100);
/// The most ephemeral items waiting for one destination; older ones give way (they are best
/// effort, and a newer presence or typing state supersedes them).
const MAX_PENDING_EPHEMERAL: usize = 500;

impl Delivery {
    /// Queues over `store`, sending with `client`; queue leases last `lease` unless renewed.
    pub fn new(store: Store, client: FederationClient, lease: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                client,
                wakers: Mutex::new(HashMap::new()),
                proposal_wakers: Mutex::new(HashMap::new()),
                guilds: Mutex::new(None),
                ephemeral: Mutex::new(HashMap::new()),
                holder: crate::guilds::random_id(16),
                lease,
            }),
        }
    }

    /// Starts, every half lease period, the workers of queues that no node works (at startup,
    /// for as long as the server runs).
    pub fn watch_leases(&self) {
        let delivery = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(delivery.inner.lease / 2).await;
                match delivery.inner.store.unleased_destinations().await {
                    Ok(destinations) => delivery.wake(destinations.iter()),
                    Err(error) => tracing::warn!(%error, "looking for unleased queues"),
                }
            }
        });
    }

    /// Lets proposal workers reach the guild service (set once at startup).
    pub fn attach(&self, guilds: &Arc<GuildService>) {
        if let Ok(mut slot) = self.inner.guilds.lock() {
            *slot = Some(Arc::downgrade(guilds));
        }
    }

    /// Starts workers for every destination and host with queued work (at startup).
    pub async fn resume(&self) {
        if let Ok(destinations) = self.inner.store.outbound_destinations().await {
            self.wake(destinations.iter());
        }
        if let Ok(hosts) = self.inner.store.proposal_hosts().await {
            for host in hosts {
                self.wake_proposals(&host);
            }
        }
    }

    /// New rows for these destinations.
    pub fn wake<'a>(&self, destinations: impl Iterator<Item = &'a ServerName>) {
        for destination in destinations {
            self.waker(destination, false).notify_one();
        }
    }

    /// A proposal for `host` was queued.
    pub fn wake_proposals(&self, host: &ServerName) {
        self.waker(host, true).notify_one();
    }

    /// `server` just contacted us: whatever we owe it is worth trying now.
    pub fn contacted(&self, server: &ServerName) {
        let known = |map: &Mutex<HashMap<ServerName, Arc<Notify>>>| {
            map.lock().ok().and_then(|m| m.get(server).cloned())
        };
        if let Some(waker) = known(&self.inner.wakers) {
            waker.notify_one();
        }
        if let Some(waker) = known(&self.inner.proposal_wakers) {
            waker.notify_one();
        }
    }

    /// Sleeps for `backoff`, or less if `server` contacts us meanwhile.
    pub async fn sleep_or_contact(&self, server: &ServerName, backoff: Duration) {
        let waker = self.waker(server, true);
        let _ = tokio::time::timeout(backoff, waker.notified()).await;
    }

    /// The waker of a destination (or host) worker, starting the worker on first use.
    fn waker(&self, server: &ServerName, proposals: bool) -> Arc<Notify> {
        let map = if proposals { &self.inner.proposal_wakers } else { &self.inner.wakers };
        let Ok(mut wakers) = map.lock() else { return Arc::new(Notify::new()) };
        if let Some(waker) = wakers.get(server) {
            return Arc::clone(waker);
        }
        let waker = Arc::new(Notify::new());
        wakers.insert(server.clone(), Arc::clone(&waker));
        let delivery = self.clone();
        let server = server.clone();
        if proposals {
            tokio::spawn(async move { delivery.proposal_worker(server).await });
        } else {
            tokio::spawn(async move { delivery.event_worker(server).await });
        }
        waker
    }

    async fn event_worker(self, destination: ServerName) {
        let waker = self.waker(&destination, false);
        let mut backoff = Duration::from_secs(1);
        let mut lease = Lease::default();
        loop {
            if !self.hold(&destination, &mut lease).await {
                // Another node works this queue; it passes back here when that node's lease
                // lapses (see `watch_leases`) or this node has new events for it.
                waker.notified().await;
                continue;
            }
            let batch = match self
                .inner
                .store
                .outbound_batch(&destination, send_transaction::MAX_EVENTS as u32)
                .await
            {
                Ok(batch) => batch,
                Err(error) => {
                    tracing::error!(%destination, %error, "reading the outbound queue");
                    tokio::time::sleep(backoff).await;
                    continue;
                }
            };
            let (Some(first), Some(last)) = (batch.first(), batch.last()) else {
                self.release(&destination, &mut lease).await;
                waker.notified().await;
                continue;
            };
            // Queued with appends that may not be on disk yet: none leaves before it is.
            if let Err(error) = self.inner.store.durable().await {
                tracing::error!(%destination, %error, "making the outbound queue durable");
                tokio::time::sleep(backoff).await;
                continue;
            }
            // The same batch always gets the same transaction id, so a retry is recognisable.
            let txn_id = format!("e{}_{}", first.id, last.id);
            let last_id = last.id;
            let body = serde_json::json!({
                "origin": self.inner.client.server_name(),
                "origin_ts": now_ms(),
                "events": batch.iter().map(|row| serde_json::Value::Object(row.event.clone())).collect::<Vec<_>>(),
                "ephemeral": [],
            });
            let path = fill_path(SendTransaction::PATH, &[&txn_id]);
            let sent = self
                .inner
                .client
                .request("PUT", &destination, &path, None, Some(body.to_string().into_bytes()))
                .await;
            match sent {
                Ok(response) if response.is_success() => {
                    if let Err(error) =
                        self.inner.store.delete_outbound(&destination, last_id).await
                    {
                        tracing::error!(%destination, %error, "could not dequeue delivered events");
                    }
                    backoff = Duration::from_secs(1);
                }
                // Our own policy forbids talking to it (denied, or an internal address): the
                // queue is dropped rather than retried forever. Should the policy change, the
                // server catches up by itself when it next hears from the guild (gap filling).
                Err(
                    error @ (FederationError::Denied(_)
                    | FederationError::Discovery(DiscoveryError::InternalAddress(_))),
                ) => {
                    tracing::warn!(%destination, %error, "not delivering: dropping its queue");
                    if let Err(error) =
                        self.inner.store.delete_outbound(&destination, i64::MAX).await
                    {
                        tracing::error!(%destination, %error, "could not drop the queue");
                    }
                    self.release(&destination, &mut lease).await;
                    waker.notified().await;
                }
                outcome => {
                    let reason = match outcome {
                        Ok(response) => format!("status {}", response.status),
                        Err(error) => error.to_string(),
                    };
                    tracing::info!(%destination, reason, ?backoff, "delivery failed; will retry");
                    crate::metrics::global().federation_failure(destination.as_str());
                    self.back_off(&destination, &mut lease, backoff, &waker).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// Takes or renews this node's lease on a destination's queue when less than half of it
    /// is left; false while another node holds it.
    async fn hold(&self, destination: &ServerName, lease: &mut Lease) -> bool {
        let now = Instant::now();
        if lease.until.is_some_and(|until| until > now + self.inner.lease / 2) {
            return true;
        }
        let ttl_ms = u64::try_from(self.inner.lease.as_millis()).unwrap_or(u64::MAX);
        match self.inner.store.hold_lease(destination.as_str(), &self.inner.holder, ttl_ms).await {
            Ok(true) => {
                lease.until = Some(now + self.inner.lease);
                true
            }
            Ok(false) => {
                lease.until = None;
                false
            }
            Err(error) => {
                tracing::error!(%destination, %error, "taking the queue's lease");
                lease.until = None;
                false
            }
        }
    }

    /// Gives up the lease on an empty queue, so that whichever node next has events for the
    /// destination takes it at once.
    async fn release(&self, destination: &ServerName, lease: &mut Lease) {
        if lease.until.take().is_some()
            && let Err(error) =
                self.inner.store.release_lease(destination.as_str(), &self.inner.holder).await
        {
            tracing::warn!(%destination, %error, "giving up the queue's lease");
        }
    }

    /// Waits out a backoff (or until the destination contacts us), renewing the lease on the
    /// way so that no other node takes over a queue that is only waiting.
    async fn back_off(
        &self,
        destination: &ServerName,
        lease: &mut Lease,
        backoff: Duration,
        waker: &Notify,
    ) {
        let end = Instant::now() + backoff;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            let step = left.min(self.inner.lease / 3);
            if tokio::time::timeout(step, waker.notified()).await.is_ok() {
                return;
            }
            if !self.hold(destination, lease).await {
                return;
            }
        }
    }

    async fn proposal_worker(self, host: ServerName) {
        let waker = self.waker(&host, true);
        loop {
            let service = self
                .inner
                .guilds
                .lock()
                .ok()
                .and_then(|slot| slot.as_ref().and_then(Weak::upgrade));
            if let Some(service) = service {
                service.drain_proposals(&host).await;
            }
            waker.notified().await;
        }
    }

    /// Sends ephemeral items to one destination, best effort: items for a destination are
    /// gathered for a moment and sent together, and a user's presence replaces any earlier
    /// presence of theirs still waiting, so a burst of changes costs one transaction.
    pub fn send_ephemeral(&self, destination: ServerName, ephemeral: Vec<serde_json::Value>) {
        let Ok(mut pending) = self.inner.ephemeral.lock() else { return };
        let first = !pending.contains_key(&destination);
        let waiting = pending.entry(destination.clone()).or_default();
        for item in ephemeral {
            coalesce(waiting, item);
        }
        drop(pending);
        if first {
            let delivery = self.clone();
            tokio::spawn(async move { delivery.flush_ephemeral(destination).await });
        }
    }

    async fn flush_ephemeral(self, destination: ServerName) {
        tokio::time::sleep(EPHEMERAL_COALESCE).await;
        let items = match self.inner.ephemeral.lock() {
            Ok(mut pending) => pending.remove(&destination).unwrap_or_default(),
            Err(_) => return,
        };
        let client = &self.inner.client;
        for chunk in items.chunks(send_transaction::MAX_EPHEMERAL) {
            let txn_id = format!("x{}", crate::guilds::random_id(16));
            let body = serde_json::json!({"origin": client.server_name(), "origin_ts": now_ms(), "events": [], "ephemeral": chunk});
            let path = fill_path(SendTransaction::PATH, &[&txn_id]);
            if let Err(error) = client
                .request("PUT", &destination, &path, None, Some(body.to_string().into_bytes()))
                .await
            {
                tracing::debug!(%destination, %error, "ephemeral delivery failed");
                return;
            }
        }
    }
}

/// Adds an ephemeral item to those waiting for a destination: a presence replaces the same
/// user's earlier one, and past [`MAX_PENDING_EPHEMERAL`] the oldest items give way.
fn coalesce(waiting: &mut Vec<serde_json::Value>, item: serde_json::Value) {
    if item["type"] == "presence" {
        let user = &item["content"]["user_id"];
        waiting.retain(|old| old["type"] != "presence" || &old["content"]["user_id"] != user);
    }
    waiting.push(item);
    let excess = waiting.len().saturating_sub(MAX_PENDING_EPHEMERAL);
    waiting.drain(..excess);
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_burst_of_presence_changes_leaves_the_latest_per_user() {
        let presence = |user: &str, status: &str| json!({"type": "presence", "content": {"user_id": user, "status": status}});
        let mut waiting = Vec::new();
        for status in ["idle", "dnd", "online", "idle", "dnd"] {
            coalesce(&mut waiting, presence("@a:x", status));
        }
        coalesce(&mut waiting, presence("@b:x", "online"));
        coalesce(&mut waiting, json!({"type": "typing", "content": {"user_id": "@a:x"}}));
        assert_eq!(waiting.len(), 3);
        assert_eq!(waiting[0]["content"]["status"], "dnd");
        for index in 0..MAX_PENDING_EPHEMERAL + 10 {
            coalesce(&mut waiting, json!({"type": "typing", "content": {"n": index}}));
        }
        assert_eq!(waiting.len(), MAX_PENDING_EPHEMERAL);
    }
}
