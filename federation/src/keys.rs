//! Fetching, checking and caching other servers' key documents (spec chapter 04).
//!
//! Keys are fetched only here; signature verification elsewhere never does I/O. A document is
//! accepted when it names the server it was fetched from and is signed by one of its own
//! current keys. It is cached until `min(valid_until_ts, now + 7 days)`; an unknown key id
//! triggers a refetch, at most once a minute per server.
//!
//! Fetches are triggered by what arrives from the network (any signed request names a server
//! in its `keyid`), so they are bounded: a server whose fetch failed is not tried again for
//! [`FAILURE_BACKOFF`], and servers not yet in the cache that incoming requests name are
//! fetched at most [`NEW_SERVERS_PER_SECOND`] a second (with a small burst); fetches this
//! server's own work needs are not held back by that budget.

use std::sync::Arc;
use std::time::{Duration, Instant};

use guildhall_spec::api::Endpoint;
use guildhall_spec::api::get_server_keys::{GetServerKeys, ServerKeys};
use guildhall_spec::{KeyId, PublicKeyMap, ServerName, canonical, signing};

use crate::discovery::Resolver;

/// A verified key document.
#[derive(Debug, Clone)]
pub struct CachedKeys {
    /// The document.
    pub document: ServerKeys,
    /// The raw document as received, for notary answers.
    pub raw: serde_json::Map<String, serde_json::Value>,
    /// Until when it may be used (ms).
    pub valid_until: u64,
    fetched: Instant,
}

/// Fetches and caches key documents.
#[derive(Debug, Clone)]
pub struct KeyFetcher {
    resolver: Resolver,
    http: reqwest::Client,
    policy: std::sync::Arc<crate::policy::TrustPolicy>,
    cache: moka::future::Cache<ServerName, Arc<CachedKeys>>,
    /// Servers whose last fetch failed, until the backoff passes.
    failures: moka::future::Cache<ServerName, ()>,
    /// Fetches of servers not in the cache still allowed now.
    new_servers: Arc<std::sync::Mutex<Bucket>>,
}

/// How long a server whose key fetch failed is not tried again.
pub const FAILURE_BACKOFF: Duration = Duration::from_secs(30);
/// How many servers not yet in the cache may be fetched a second, sustained.
pub const NEW_SERVERS_PER_SECOND: f64 = 5.0;
/// How many such fetches may happen at once after a quiet period.
const NEW_SERVERS_BURST: f64 = 20.0;

/// Who asked for a fetch: an incoming request naming a server (anyone can send one), or this
/// server's own work (a join, a pushed event of a guild it replicates).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trigger {
    Request,
    Ours,
}

/// A token bucket.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl Bucket {
    fn take(&mut self) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.updated).as_secs_f64() * NEW_SERVERS_PER_SECOND;
        self.tokens = (self.tokens + refill).min(NEW_SERVERS_BURST);
        self.updated = now;
        let allowed = self.tokens >= 1.0;
        if allowed {
            self.tokens -= 1.0;
        }
        allowed
    }
}

/// The largest key document accepted.
const MAX_DOCUMENT_BYTES: usize = 64 * 1024;

/// How often an unknown key id may trigger a refetch of the same server's keys.
const REFETCH_INTERVAL: Duration = Duration::from_secs(60);

impl KeyFetcher {
    /// A fetcher resolving servers with `resolver`.
    pub fn new(resolver: Resolver, policy: std::sync::Arc<crate::policy::TrustPolicy>) -> Self {
        let http = resolver
            .http_builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Self {
            resolver,
            http,
            policy,
            cache: moka::future::Cache::builder().max_capacity(10_000).build(),
            failures: moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(FAILURE_BACKOFF)
                .build(),
            new_servers: Arc::new(std::sync::Mutex::new(Bucket {
                tokens: NEW_SERVERS_BURST,
                updated: Instant::now(),
            })),
        }
    }

    /// Whether our trust policy lets us federate with `server` (keys of a server it forbids
    /// vouch for nothing new).
    pub fn permits(&self, server: &ServerName) -> bool {
        self.policy.permits(server)
    }

    /// Forgets the cached document of `server` (its pinned key changed: a document fetched
    /// before may lack the new pin and must not be served or used).
    pub async fn forget(&self, server: &ServerName) {
        self.cache.invalidate(server).await;
    }

    /// The cached document of `server`, without fetching.
    pub async fn cached(&self, server: &ServerName) -> Option<Arc<CachedKeys>> {
        self.cache.get(server).await.filter(|cached| cached.valid_until > crate::now_ms())
    }

    /// Records a server's own document without fetching (used for this server's own keys).
    pub async fn insert_local(
        &self,
        document: ServerKeys,
        raw: serde_json::Map<String, serde_json::Value>,
    ) {
        let cached = CachedKeys { valid_until: u64::MAX, document, raw, fetched: Instant::now() };
        self.cache.insert(cached.document.server_name.clone(), Arc::new(cached)).await;
    }

    /// The document of `server`, fetching it if absent or expired.
    pub async fn keys(&self, server: &ServerName) -> Option<Arc<CachedKeys>> {
        self.keys_for(server, Trigger::Ours).await
    }

    async fn keys_for(&self, server: &ServerName, trigger: Trigger) -> Option<Arc<CachedKeys>> {
        if let Some(cached) = self.cache.get(server).await
            && cached.valid_until > crate::now_ms()
        {
            return Some(cached);
        }
        self.fetch(server, trigger).await
    }

    /// The current key `key_id` of `server` (for request signatures: never an old key). Any
    /// unauthenticated request can name any server here, so fetching a server not yet cached
    /// counts against the budget for new servers.
    pub async fn current_key(
        &self,
        server: &ServerName,
        key_id: &KeyId,
    ) -> Option<ed25519_key::VerifyingKey> {
        // A pinned key stands for the server whatever its documents say, and no other key does.
        if let Some(pinned) = self.policy.pinned(server) {
            return (&pinned.key_id == key_id).then_some(pinned.key);
        }
        let mut cached = self.keys_for(server, Trigger::Request).await?;
        if !cached.document.verify_keys.contains_key(key_id)
            && cached.fetched.elapsed() > REFETCH_INTERVAL
        {
            cached = self.fetch(server, Trigger::Request).await?;
        }
        let key = cached.document.verify_keys.get(key_id)?;
        signing::decode_public_key(&key.key)
    }

    /// A key map for verifying what `servers` signed at `signed_at` (ms): their current keys,
    /// and the retired keys that were still in use then. `u64::MAX` means current keys only.
    pub async fn event_keys(&self, servers: &[ServerName], signed_at: u64) -> PublicKeyMap {
        let mut map = PublicKeyMap::new();
        for server in servers {
            if let Some(pinned) = self.policy.pinned(server) {
                map.insert(server.clone(), pinned.key_id, pinned.key);
                continue;
            }
            let Some(cached) = self.keys(server).await else { continue };
            for (key_id, key) in &cached.document.verify_keys {
                let _ = map.insert_base64(server.clone(), key_id.clone(), &key.key);
            }
            // A retired key vouches only for what was signed before it was retired.
            for (key_id, key) in
                cached.document.old_verify_keys.iter().filter(|(_, key)| signed_at < key.expired_ts)
            {
                let _ = map.insert_base64(server.clone(), key_id.clone(), &key.key);
            }
        }
        map
    }

    /// Refetches `server`'s keys if the last fetch is older than the refetch interval (after an
    /// event signed with an unknown key).
    pub async fn refresh(&self, server: &ServerName) {
        let stale = self
            .cache
            .get(server)
            .await
            .is_none_or(|cached| cached.fetched.elapsed() > REFETCH_INTERVAL);
        if stale {
            self.fetch(server, Trigger::Ours).await;
        }
    }

    async fn fetch(&self, server: &ServerName, trigger: Trigger) -> Option<Arc<CachedKeys>> {
        // Servers we do not federate with are never contacted, not even for keys.
        if !self.policy.permits(server) || self.failures.contains_key(server) {
            return None;
        }
        let known = self.cache.contains_key(server);
        if trigger == Trigger::Request
            && !known
            && !self.new_servers.lock().is_ok_and(|mut bucket| bucket.take())
        {
            tracing::debug!(%server, "key fetch of a new server deferred: too many at once");
            return None;
        }
        let fetched = self.fetch_uncounted(server).await;
        if fetched.is_none() {
            self.failures.insert(server.clone(), ()).await;
        }
        fetched
    }

    async fn fetch_uncounted(&self, server: &ServerName) -> Option<Arc<CachedKeys>> {
        let destination = self.resolver.resolve(server).await.ok()?;
        let url = format!("{}{}", destination.base_url, GetServerKeys::PATH);
        let response =
            self.http.get(url).header("host", &destination.authority).send().await.ok()?;
        if !response.status().is_success() {
            tracing::warn!(%server, status = %response.status(), "key fetch failed");
            return None;
        }
        let bytes = match crate::read_capped(response, MAX_DOCUMENT_BYTES).await {
            Ok(bytes) => bytes,
            Err(error) => {
                tracing::warn!(%server, %error, "key document not read");
                return None;
            }
        };
        let cached = match check_document(server, &bytes).and_then(|cached| {
            self.check_pin(server, &cached)?;
            Ok(cached)
        }) {
            Ok(cached) => cached,
            Err(reason) => {
                tracing::warn!(%server, reason, "rejected key document");
                return None;
            }
        };
        let cached = Arc::new(cached);
        self.cache.insert(server.clone(), Arc::clone(&cached)).await;
        Some(cached)
    }
}

impl KeyFetcher {
    /// A document of a server with a pinned key must list that key (spec 15.2).
    fn check_pin(&self, server: &ServerName, cached: &CachedKeys) -> Result<(), String> {
        let Some(pinned) = self.policy.pinned(server) else { return Ok(()) };
        let listed = cached
            .document
            .verify_keys
            .get(&pinned.key_id)
            .and_then(|key| signing::decode_public_key(&key.key));
        if listed == Some(pinned.key) {
            Ok(())
        } else {
            Err(format!("the document lacks the pinned key {}", pinned.key_id))
        }
    }
}

/// Parses and checks a key document fetched from `server`.
pub fn check_document(server: &ServerName, bytes: &[u8]) -> Result<CachedKeys, String> {
    let value = canonical::parse_strict_slice(bytes).map_err(|e| e.to_string())?;
    let raw = value.as_object().cloned().ok_or("not an object")?;
    let document: ServerKeys = serde_json::from_value(value).map_err(|e| e.to_string())?;
    if &document.server_name != server {
        return Err(format!("document names {}", document.server_name));
    }
    let mut own = PublicKeyMap::new();
    for (key_id, key) in &document.verify_keys {
        own.insert_base64(server.clone(), key_id.clone(), &key.key).map_err(|e| e.to_string())?;
    }
    signing::verify_json(&raw, server, &own).map_err(|e| e.to_string())?;
    let valid_until = document.effective_valid_until(crate::now_ms());
    Ok(CachedKeys { document, raw, valid_until, fetched: Instant::now() })
}

/// Re-export so callers need not depend on ed25519-dalek by name.
pub mod ed25519_key {
    pub use guildhall_spec::signing::VerifyingKey;
}
