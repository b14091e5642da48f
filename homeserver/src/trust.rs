//! The operator's trust policy, live (spec chapter 15): the configuration file's mode and lists,
//! what operators changed since (stored, so it survives restarts), and subscribed trust lists
//! fetched in the background. The rules are rebuilt into the shared [`TrustPolicy`] whenever
//! any of them changes — in this process or, through the stored version, in another one (the
//! `guildhall admin trust` command) — so a change applies to the next request, without a
//! restart. Every change is in the audit log.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use guildhall_federation::policy::{Action, LocalEntry, PinnedKey, SubscribedList, TrustRules};
use guildhall_federation::trust_list::{self, TrustList, TrustListError};
use guildhall_federation::{KeyFetcher, Resolver, TrustMode, TrustPolicy};
use guildhall_spec::event::JsonObject;
use guildhall_spec::{KeyId, ServerName, ServerSigningKey, signing};
use serde_json::{Value, json};

use crate::store::{Audit, Store, SubscriptionRow, TrustEntryRow, now_ms};

/// How often the stored version is compared with the one applied, and due lists fetched.
const POLL: Duration = Duration::from_secs(2);
/// The shortest refresh period of a subscription.
pub const MIN_REFRESH_SECS: u64 = 60;
/// The refresh period when the operator names none (spec 15.4).
pub const DEFAULT_REFRESH_SECS: u64 = 3600;
/// A list not refreshed for this long is reported as stale (spec 15.4).
const STALE_AFTER_MS: u64 = 7 * 24 * 3600 * 1000;

/// Why a trust change was refused.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// Bad input: a server name, key, reason or URL.
    #[error("{0}")]
    Invalid(String),
    /// No such entry or subscription.
    #[error("{0}")]
    NotFound(String),
    /// A subscription with that URL exists.
    #[error("already subscribed to {0}")]
    Duplicate(String),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] sqlx::Error),
}

impl From<TrustError> for crate::error::ApiError {
    fn from(error: TrustError) -> Self {
        use crate::error::ApiError;
        match error {
            TrustError::Invalid(message) => ApiError::bad_request(message),
            TrustError::NotFound(message) => ApiError::not_found("not_found", message),
            TrustError::Duplicate(message) => ApiError::conflict(message),
            TrustError::Store(error) => error.into(),
        }
    }
}

/// A fetch's outcome as operators see it: `{"ok": true, "updated": <a newer version was
/// accepted>}`, or `{"ok": false, "error": <why the list was refused or not fetched>}`.
pub fn fetch_view(fetched: &Result<bool, String>) -> Value {
    match fetched {
        Ok(updated) => json!({"ok": true, "updated": updated}),
        Err(error) => json!({"ok": false, "error": error}),
    }
}

/// The live trust policy and what feeds it.
#[derive(Debug)]
pub struct Trust {
    store: Store,
    policy: Arc<TrustPolicy>,
    /// Key documents cached before a pin changed are forgotten.
    keys: KeyFetcher,
    /// The configuration file's rules.
    configured: TrustRules,
    /// Federation switched off: every rule set is closed.
    enabled: bool,
    resolver: Resolver,
    applied: AtomicI64,
    started_ts: u64,
    /// Subscriptions whose fetch is under way.
    fetching: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl Trust {
    /// The trust service over `policy`, starting from the configuration file's `configured`
    /// rules, with what is stored applied at once.
    pub async fn new(
        store: Store,
        policy: Arc<TrustPolicy>,
        keys: KeyFetcher,
        configured: TrustRules,
        enabled: bool,
        resolver: Resolver,
    ) -> Result<Self, sqlx::Error> {
        let trust = Self {
            store,
            policy,
            keys,
            configured,
            enabled,
            resolver,
            applied: AtomicI64::new(-1),
            started_ts: now_ms(),
            fetching: std::sync::Mutex::default(),
        };
        trust.reload().await?;
        Ok(trust)
    }

    /// The policy the rules are applied to.
    pub fn policy(&self) -> &Arc<TrustPolicy> {
        &self.policy
    }

    /// Rebuilds the rules from the configuration and the store and applies them.
    pub async fn reload(&self) -> Result<(), sqlx::Error> {
        let (version, _) = self.store.trust_version().await?;
        let mut rules = self.configured.clone();
        if let Some(mode) = self.store.trust_mode().await? {
            rules.mode = parse_mode(&mode).unwrap_or(rules.mode);
        }
        for entry in self.store.trust_entries().await? {
            let Ok(server) = ServerName::parse(&entry.server) else { continue };
            let key = entry.key.as_ref().and_then(|(key_id, key)| {
                Some(PinnedKey {
                    key_id: KeyId::parse(key_id).ok()?,
                    key: signing::decode_public_key(key)?,
                })
            });
            let action = if entry.action == "allow" { Action::Allow } else { Action::Deny };
            rules.local.insert(
                server,
                LocalEntry { action, reason: entry.reason, key, from_config: false },
            );
        }
        let subscriptions = self.store.subscriptions().await?;
        // Held lists may have up to 100 000 entries each: parsed off the async workers.
        let parsed = tokio::task::spawn_blocking(move || {
            subscriptions
                .into_iter()
                .filter_map(|subscription| {
                    let list = accepted_list(subscription.document.as_deref()?)?;
                    Some(SubscribedList {
                        publisher: list.server_name,
                        url: subscription.url,
                        entries: list.entries,
                    })
                })
                .collect()
        })
        .await;
        // Never fall open: without the lists, the rules in force stay.
        let Ok(lists) = parsed else {
            tracing::error!("reading the held trust lists failed; the rules in force stay");
            return Ok(());
        };
        rules.lists = lists;
        if !self.enabled {
            rules.mode = TrustMode::Closed;
        }
        let before = self.policy.rules();
        let pins_changed: Vec<ServerName> = before
            .local
            .keys()
            .chain(rules.local.keys())
            .filter(|server| before.pinned(server) != rules.pinned(server))
            .cloned()
            .collect();
        self.policy.replace(rules);
        for server in &pins_changed {
            self.keys.forget(server).await;
        }
        self.applied.store(version, Ordering::SeqCst);
        Ok(())
    }

    /// Keeps the rules current and the subscriptions fresh, until the server stops.
    pub async fn run(self: Arc<Self>) {
        let mut tick = tokio::time::interval(POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match self.store.trust_version().await {
                Ok((version, _)) if version != self.applied.load(Ordering::SeqCst) => {
                    if let Err(error) = self.reload().await {
                        tracing::warn!(%error, "reloading the trust policy");
                    }
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "reading the trust version"),
            }
            let Ok(subscriptions) = self.store.subscriptions().await else { continue };
            let now = now_ms();
            // Each due list is fetched on its own task: a slow publisher delays nothing else.
            for subscription in subscriptions {
                let due = subscription.fetched_ts + subscription.refresh_secs * 1000 <= now;
                if !due || !self.start_fetch(&subscription.id) {
                    continue;
                }
                let trust = Arc::clone(&self);
                tokio::spawn(async move {
                    let failed = trust.refresh(&subscription).await.is_err();
                    let stale = subscription.accepted_ts + STALE_AFTER_MS < now_ms();
                    if failed && stale {
                        tracing::warn!(url = %subscription.url, "trust list not refreshed for over 7 days");
                    }
                    trust.end_fetch(&subscription.id);
                });
            }
        }
    }

    /// Marks a subscription's fetch as under way; `false` if one already is.
    fn start_fetch(&self, id: &str) -> bool {
        self.fetching.lock().is_ok_and(|mut fetching| fetching.insert(id.to_owned()))
    }

    fn end_fetch(&self, id: &str) {
        if let Ok(mut fetching) = self.fetching.lock() {
            fetching.remove(id);
        }
    }

    /// Fetches a subscribed list now. A valid newer version replaces the held one; anything
    /// else (unreachable, bad signature, not newer) keeps it. Returns whether a new version
    /// was accepted, or why the fetch failed.
    pub async fn refresh(&self, subscription: &SubscriptionRow) -> Result<bool, String> {
        let outcome = self.fetch(subscription).await;
        match outcome {
            Ok(Some((list, document))) => {
                let actor = format!("trust-list:{}", subscription.id);
                let detail = json!({"updated_ts": list.updated_ts, "entries": list.entries.len()});
                let audit = Audit {
                    actor: &actor,
                    action: "trust.list_accepted",
                    target: Some(&subscription.url),
                    detail: Some(&detail),
                };
                let accepted = self
                    .store
                    .accept_trust_list(&subscription.id, &document, list.updated_ts, audit)
                    .await
                    .map_err(|e| e.to_string())?;
                if accepted {
                    tracing::info!(url = %subscription.url, updated_ts = list.updated_ts, "trust list updated");
                    self.reload().await.map_err(|e| e.to_string())?;
                }
                Ok(accepted)
            }
            Ok(None) => {
                let _ = self.store.note_trust_fetch(&subscription.id, None).await;
                Ok(false)
            }
            Err(error) => {
                tracing::warn!(url = %subscription.url, %error, "trust list refused; the held version stays");
                let _ = self.store.note_trust_fetch(&subscription.id, Some(&error)).await;
                Err(error)
            }
        }
    }

    /// Fetches the subscription `id` now ([`Trust::refresh`]).
    pub async fn refresh_id(&self, id: &str) -> Result<Result<bool, String>, TrustError> {
        let subscription = self
            .store
            .subscription(id)
            .await?
            .ok_or_else(|| TrustError::NotFound(format!("no subscription {id}")))?;
        Ok(self.refresh(&subscription).await)
    }

    /// Fetches and checks a list: `Some` (with the document as received) when a valid newer
    /// version came, `None` when the publisher has nothing newer.
    async fn fetch(
        &self,
        subscription: &SubscriptionRow,
    ) -> Result<Option<(TrustList, String)>, String> {
        let publisher = ServerName::parse(&subscription.publisher).map_err(|e| e.to_string())?;
        let key_id = KeyId::parse(&subscription.key_id).map_err(|e| e.to_string())?;
        let key = signing::decode_public_key(&subscription.key).ok_or("bad publisher key")?;
        let (status, body) =
            self.resolver.get_url(&subscription.url, trust_list::MAX_DOCUMENT_BYTES).await?;
        if status != 200 {
            return Err(format!("the publisher answered {status}"));
        }
        // Up to 100 000 entries to parse, canonicalize and check: off the async workers.
        let held_ts = subscription.updated_ts;
        let checked = tokio::task::spawn_blocking(move || {
            TrustList::verify(&body, &publisher, &key_id, &key, held_ts)
                .map(|list| (list, String::from_utf8_lossy(&body).into_owned()))
        })
        .await
        .map_err(|e| e.to_string())?;
        match checked {
            Ok(accepted) => Ok(Some(accepted)),
            Err(TrustListError::NotNewer { .. }) => Ok(None),
            Err(error) => Err(error.to_string()),
        }
    }

    /// Sets the mode.
    pub async fn set_mode(&self, actor: &str, mode: TrustMode) -> Result<(), TrustError> {
        let name = mode_name(mode);
        let detail = json!({"mode": name});
        let audit = Audit { actor, action: "trust.mode", target: None, detail: Some(&detail) };
        self.store.set_trust_mode(name, audit).await?;
        self.reload().await?;
        Ok(())
    }

    /// Creates or replaces the local entry of `server`.
    pub async fn set_entry(
        &self,
        actor: &str,
        server: &str,
        action: Action,
        reason: Option<String>,
        key: Option<(String, String)>,
    ) -> Result<(), TrustError> {
        let server = parse_server(server)?;
        if let Some(reason) = &reason
            && reason.chars().count() > trust_list::MAX_REASON_CHARS
        {
            return Err(TrustError::Invalid("a reason is at most 512 characters".into()));
        }
        if let Some((key_id, key)) = &key {
            KeyId::parse(key_id).map_err(|e| TrustError::Invalid(format!("key id: {e}")))?;
            signing::decode_public_key(key)
                .ok_or_else(|| TrustError::Invalid("not a base64url Ed25519 key".into()))?;
        }
        let action_name = if action == Action::Allow { "allow" } else { "deny" };
        let detail = json!({"action": action_name, "reason": reason, "key": key.as_ref().map(|(id, key)| json!({"key_id": id, "key": key}))});
        let audit = Audit {
            actor,
            action: if key.is_some() { "trust.pin" } else { "trust.entry" },
            target: Some(server.as_str()),
            detail: Some(&detail),
        };
        let entry = TrustEntryRow {
            server: server.to_string(),
            action: action_name.into(),
            reason,
            key,
            updated_ts: now_ms(),
        };
        self.store.put_trust_entry(&entry, audit).await?;
        self.reload().await?;
        Ok(())
    }

    /// Removes the local entry of `server` (the configuration file's, if any, applies again).
    pub async fn remove_entry(&self, actor: &str, server: &str) -> Result<(), TrustError> {
        let server = parse_server(server)?;
        let audit =
            Audit { actor, action: "trust.remove", target: Some(server.as_str()), detail: None };
        if !self.store.delete_trust_entry(server.as_str(), audit).await? {
            return Err(TrustError::NotFound(format!("no operator entry for {server}")));
        }
        self.reload().await?;
        Ok(())
    }

    /// Subscribes to the list at `url`, published by `publisher` with key `key_id` = `key`, and
    /// fetches it at once. Returns the subscription and how the first fetch went.
    pub async fn subscribe(
        &self,
        actor: &str,
        url: &str,
        publisher: &str,
        key_id: &str,
        key: &str,
        refresh_secs: Option<u64>,
    ) -> Result<(SubscriptionRow, Result<bool, String>), TrustError> {
        let parsed = url::Url::parse(url).map_err(|e| TrustError::Invalid(format!("url: {e}")))?;
        let scheme_ok = parsed.scheme() == "https"
            || (parsed.scheme() == "http" && self.resolver.allows_plain_http());
        if !scheme_ok || url.len() > 2048 {
            return Err(TrustError::Invalid("the URL must be https, at most 2048 bytes".into()));
        }
        // Lists are public: a URL carrying credentials would only spread them (logs, the audit
        // log, operators' screens).
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(TrustError::Invalid("the URL must not carry credentials".into()));
        }
        let publisher = parse_server(publisher)?;
        KeyId::parse(key_id).map_err(|e| TrustError::Invalid(format!("key id: {e}")))?;
        signing::decode_public_key(key)
            .ok_or_else(|| TrustError::Invalid("not a base64url Ed25519 key".into()))?;
        let refresh_secs = refresh_secs.unwrap_or(DEFAULT_REFRESH_SECS);
        if refresh_secs < MIN_REFRESH_SECS {
            return Err(TrustError::Invalid(format!(
                "the refresh period is at least {MIN_REFRESH_SECS} seconds"
            )));
        }
        let subscription = SubscriptionRow {
            id: crate::guilds::random_id(12),
            url: url.to_owned(),
            publisher: publisher.to_string(),
            key_id: key_id.to_owned(),
            key: key.to_owned(),
            refresh_secs,
            document: None,
            updated_ts: 0,
            fetched_ts: 0,
            accepted_ts: 0,
            last_error: None,
        };
        let detail = json!({"publisher": publisher, "key_id": key_id, "key": key, "refresh_secs": refresh_secs});
        let audit =
            Audit { actor, action: "trust.subscribe", target: Some(url), detail: Some(&detail) };
        if !self.store.add_subscription(&subscription, audit).await? {
            return Err(TrustError::Duplicate(url.to_owned()));
        }
        let fetched = self.refresh(&subscription).await;
        let stored = self.store.subscription(&subscription.id).await?.unwrap_or(subscription);
        Ok((stored, fetched))
    }

    /// Ends a subscription; its entries stop applying at once.
    pub async fn unsubscribe(&self, actor: &str, id: &str) -> Result<(), TrustError> {
        let url = self.store.subscription(id).await?.map(|subscription| subscription.url);
        let audit =
            Audit { actor, action: "trust.unsubscribe", target: url.as_deref(), detail: None };
        if !self.store.delete_subscription(id, audit).await? {
            return Err(TrustError::NotFound(format!("no subscription {id}")));
        }
        self.reload().await?;
        Ok(())
    }

    /// The effective rules for operators: mode, every entry with its source, subscriptions.
    pub async fn view(&self) -> Result<Value, sqlx::Error> {
        let rules = self.policy.rules();
        let mut entries: Vec<Value> = rules
            .local
            .iter()
            .map(|(server, entry)| {
                json!({
                    "server": server,
                    "action": entry.action,
                    "reason": entry.reason,
                    "key": entry.key.as_ref().map(|pin| json!({"key_id": pin.key_id, "key": guildhall_spec::base64url::encode(pin.key.as_bytes())})),
                    "source": if entry.from_config { "config" } else { "operator" },
                })
            })
            .collect();
        for list in &rules.lists {
            for (server, entry) in &list.entries {
                entries.push(json!({
                    "server": server,
                    "action": entry.action,
                    "reason": entry.reason,
                    "source": "list",
                    "publisher": list.publisher,
                    "url": list.url,
                    "overridden": rules.local.contains_key(server),
                }));
            }
        }
        let subscriptions: Vec<Value> =
            self.store.subscriptions().await?.iter().map(subscription_view).collect();
        Ok(json!({
            "mode": rules.mode,
            "federation_enabled": self.enabled,
            "entries": entries,
            "subscriptions": subscriptions,
        }))
    }

    /// Per peer: requests accepted and refused (by reason) since start, and equivocations.
    pub async fn stats(&self) -> Result<Value, sqlx::Error> {
        let mut peers: std::collections::BTreeMap<String, Value> = self
            .policy
            .stats()
            .into_iter()
            .map(|(server, stats)| {
                (server.to_string(), json!({"accepted": stats.accepted, "refused": stats.refused, "equivocations": 0}))
            })
            .collect();
        for evidence in self.store.equivocations().await? {
            let guild = evidence.get("guild_id").and_then(Value::as_str);
            let Some(host) = guild
                .and_then(|guild| guild.parse::<guildhall_spec::GuildId>().ok())
                .map(|guild| guild.host().to_string())
            else {
                continue;
            };
            let peer = peers
                .entry(host)
                .or_insert_with(|| json!({"accepted": 0, "refused": {}, "equivocations": 0}));
            peer["equivocations"] = json!(peer["equivocations"].as_u64().unwrap_or(0) + 1);
        }
        Ok(json!({"peers": peers}))
    }

    /// Our own trust list, signed, when the operator publishes one (spec 15.3): the local
    /// entries, without pinned keys.
    pub async fn published(
        &self,
        key: &ServerSigningKey,
    ) -> Result<Option<JsonObject>, sqlx::Error> {
        let (_, changed_ts) = self.store.trust_version().await?;
        let rules = self.policy.rules();
        let list = TrustList {
            server_name: key.server_name().clone(),
            // Configuration entries change only across restarts, which are later than any
            // earlier version too.
            updated_ts: changed_ts.max(self.started_ts),
            entries: rules
                .local
                .iter()
                .map(|(server, entry)| {
                    (
                        server.clone(),
                        guildhall_federation::policy::ListEntry {
                            action: entry.action,
                            reason: entry.reason.clone(),
                        },
                    )
                })
                .collect(),
        };
        Ok(list.sign(key).ok())
    }
}

/// The list of an accepted document as stored (it was verified when it was accepted).
fn accepted_list(document: &str) -> Option<TrustList> {
    let Ok(Value::Object(mut object)) = serde_json::from_str(document) else { return None };
    object.remove("signatures");
    serde_json::from_value(Value::Object(object)).ok()
}

fn subscription_view(subscription: &SubscriptionRow) -> Value {
    let entries = subscription
        .document
        .as_deref()
        .and_then(accepted_list)
        .map_or(0, |list| list.entries.len());
    json!({
        "id": subscription.id,
        "url": subscription.url,
        "publisher": subscription.publisher,
        "key_id": subscription.key_id,
        "key": subscription.key,
        "refresh_secs": subscription.refresh_secs,
        "updated_ts": subscription.updated_ts,
        "entries": entries,
        "fetched_ts": subscription.fetched_ts,
        "accepted_ts": subscription.accepted_ts,
        "last_error": subscription.last_error,
    })
}

fn parse_server(text: &str) -> Result<ServerName, TrustError> {
    let server =
        ServerName::parse(text).map_err(|e| TrustError::Invalid(format!("{text:?}: {e}")))?;
    if server.as_str() != text.to_ascii_lowercase() {
        return Err(TrustError::Invalid(format!("{text:?} is not a lowercase server name")));
    }
    Ok(server)
}

/// A mode's name.
pub fn mode_name(mode: TrustMode) -> &'static str {
    match mode {
        TrustMode::Open => "open",
        TrustMode::Allowlist => "allowlist",
        TrustMode::Closed => "closed",
    }
}

/// A mode by name.
pub fn parse_mode(name: &str) -> Option<TrustMode> {
    match name {
        "open" => Some(TrustMode::Open),
        "allowlist" => Some(TrustMode::Allowlist),
        "closed" => Some(TrustMode::Closed),
        _ => None,
    }
}
