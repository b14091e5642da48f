//! The operator's trust policy: which servers may federate with this one, and with which keys
//! (spec chapter 15).
//!
//! The rules are swapped atomically behind a lock, so a change takes effect on the next request
//! without a restart. Every decision can be explained ([`TrustRules::decide`]), and the policy
//! counts per peer what it let through and what it refused.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, RwLock};

use guildhall_spec::{KeyId, ServerName};
use serde::{Deserialize, Serialize};

/// How servers without an entry are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrustMode {
    /// Everyone except the denied.
    #[default]
    Open,
    /// Only the allowed.
    Allowlist,
    /// Nobody: federation is off.
    Closed,
}

/// What an entry says about a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Federate (needed in `allowlist` mode).
    Allow,
    /// Never federate.
    Deny,
}

/// A key a server must sign with (spec 15.2): documents without it are refused, and requests
/// and events signed by any other key of that server are refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinnedKey {
    /// The key id.
    pub key_id: KeyId,
    /// The public key.
    pub key: guildhall_spec::signing::VerifyingKey,
}

/// One local entry (from the configuration file or made by an operator).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalEntry {
    /// Allow or deny.
    pub action: Action,
    /// Why, for operators.
    pub reason: Option<String>,
    /// A pinned key (meaningful with `allow`).
    pub key: Option<PinnedKey>,
    /// Whether it comes from the configuration file (else an operator made it at run time).
    pub from_config: bool,
}

/// An entry of a subscribed list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListEntry {
    /// Allow or deny.
    pub action: Action,
    /// Why, as the publisher wrote it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A subscribed trust list's accepted entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribedList {
    /// The publisher.
    pub publisher: ServerName,
    /// Where it is fetched from.
    pub url: String,
    /// Its entries.
    pub entries: BTreeMap<ServerName, ListEntry>,
}

/// The policy's rules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustRules {
    /// The mode.
    pub mode: TrustMode,
    /// Local entries: they always win for their server.
    pub local: BTreeMap<ServerName, LocalEntry>,
    /// Subscribed lists, for servers without a local entry.
    pub lists: Vec<SubscribedList>,
}

/// Which rule decided about a server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum Rule {
    /// Federation is closed.
    ClosedMode,
    /// A local entry.
    Local {
        /// Allow or deny.
        action: Action,
        /// Its reason.
        reason: Option<String>,
        /// `config` or `operator`.
        source: &'static str,
    },
    /// An entry of a subscribed list (a deny in any list wins over allows in others).
    List {
        /// Allow or deny.
        action: Action,
        /// Its reason.
        reason: Option<String>,
        /// The list's publisher.
        publisher: ServerName,
        /// The list's address.
        url: String,
    },
    /// No entry: the mode decided (`open` allows, `allowlist` refuses).
    Mode {
        /// The mode.
        mode: TrustMode,
    },
}

/// A decision and the rule that made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// Whether the server may federate with us.
    pub allowed: bool,
    /// Why.
    #[serde(flatten)]
    pub rule: Rule,
}

impl TrustRules {
    /// Rules with `mode` and the local allow and deny lists of a configuration file.
    pub fn from_lists(
        mode: TrustMode,
        allow: impl IntoIterator<Item = ServerName>,
        deny: impl IntoIterator<Item = ServerName>,
    ) -> Self {
        let entry = |action| LocalEntry { action, reason: None, key: None, from_config: true };
        let mut local: BTreeMap<_, _> =
            allow.into_iter().map(|server| (server, entry(Action::Allow))).collect();
        // A deny wins over an allow of the same server.
        local.extend(deny.into_iter().map(|server| (server, entry(Action::Deny))));
        Self { mode, local, lists: Vec::new() }
    }

    /// Whether `server` may federate with us, and which rule says so (spec 15.1, 15.2).
    pub fn decide(&self, server: &ServerName) -> Decision {
        let decision = |allowed, rule| Decision { allowed, rule };
        if self.mode == TrustMode::Closed {
            return decision(false, Rule::ClosedMode);
        }
        let by_mode = |rule_allows: bool| match self.mode {
            TrustMode::Allowlist => rule_allows,
            TrustMode::Open | TrustMode::Closed => true,
        };
        if let Some(entry) = self.local.get(server) {
            let allowed = entry.action == Action::Allow && by_mode(true);
            let source = if entry.from_config { "config" } else { "operator" };
            let rule = Rule::Local { action: entry.action, reason: entry.reason.clone(), source };
            return decision(allowed, rule);
        }
        let listed = |action| {
            self.lists.iter().find_map(|list| {
                let entry = list.entries.get(server).filter(|entry| entry.action == action)?;
                Some(Rule::List {
                    action,
                    reason: entry.reason.clone(),
                    publisher: list.publisher.clone(),
                    url: list.url.clone(),
                })
            })
        };
        if let Some(rule) = listed(Action::Deny) {
            return decision(false, rule);
        }
        if let Some(rule) = listed(Action::Allow) {
            return decision(by_mode(true), rule);
        }
        decision(by_mode(false), Rule::Mode { mode: self.mode })
    }

    /// Whether `server` may federate with us.
    pub fn permits(&self, server: &ServerName) -> bool {
        self.decide(server).allowed
    }

    /// The key pinned for `server`, if any (only local entries pin keys).
    pub fn pinned(&self, server: &ServerName) -> Option<&PinnedKey> {
        self.local.get(server)?.key.as_ref()
    }
}

/// What the policy saw of one peer since start.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PeerStats {
    /// Authenticated requests accepted.
    pub accepted: u64,
    /// Requests refused, by error code.
    pub refused: BTreeMap<String, u64>,
}

/// Peers tracked at most; past this, new peers are not counted (their requests still are
/// judged).
const MAX_TRACKED_PEERS: usize = 10_000;

/// The live policy.
#[derive(Debug, Default)]
pub struct TrustPolicy {
    rules: RwLock<TrustRules>,
    stats: Mutex<HashMap<ServerName, PeerStats>>,
}

impl TrustPolicy {
    /// A policy with the given rules.
    pub fn new(rules: TrustRules) -> Self {
        Self { rules: RwLock::new(rules), stats: Mutex::default() }
    }

    /// Whether `server` may federate with us now.
    pub fn permits(&self, server: &ServerName) -> bool {
        self.rules.read().map(|rules| rules.permits(server)).unwrap_or(false)
    }

    /// Whether `server` may federate with us now, and why.
    pub fn decide(&self, server: &ServerName) -> Option<Decision> {
        self.rules.read().ok().map(|rules| rules.decide(server))
    }

    /// The key pinned for `server`.
    pub fn pinned(&self, server: &ServerName) -> Option<PinnedKey> {
        self.rules.read().ok()?.pinned(server).cloned()
    }

    /// Replaces the rules; takes effect for the next request.
    pub fn replace(&self, rules: TrustRules) {
        if let Ok(mut current) = self.rules.write() {
            *current = rules;
        }
    }

    /// The current rules.
    pub fn rules(&self) -> TrustRules {
        self.rules.read().map(|rules| rules.clone()).unwrap_or_default()
    }

    /// Counts an accepted request from `server`.
    pub fn count_accepted(&self, server: &ServerName) {
        self.with_stats(server, |stats| stats.accepted += 1);
    }

    /// Counts a refused request from `server` under the error `code`.
    pub fn count_refused(&self, server: &ServerName, code: &str) {
        self.with_stats(server, |stats| *stats.refused.entry(code.to_owned()).or_default() += 1);
    }

    /// What was counted per peer.
    pub fn stats(&self) -> BTreeMap<ServerName, PeerStats> {
        self.stats
            .lock()
            .map(|stats| stats.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default()
    }

    fn with_stats(&self, server: &ServerName, update: impl FnOnce(&mut PeerStats)) {
        let Ok(mut stats) = self.stats.lock() else { return };
        if let Some(entry) = stats.get_mut(server) {
            update(entry);
        } else if stats.len() < MAX_TRACKED_PEERS {
            update(stats.entry(server.clone()).or_default());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(text: &str) -> ServerName {
        ServerName::parse(text).unwrap()
    }

    fn list(publisher: &str, entries: &[(&str, Action)]) -> SubscribedList {
        SubscribedList {
            publisher: name(publisher),
            url: format!("https://{publisher}/list"),
            entries: entries
                .iter()
                .map(|(server, action)| (name(server), ListEntry { action: *action, reason: None }))
                .collect(),
        }
    }

    #[test]
    fn modes() {
        let mut rules =
            TrustRules::from_lists(TrustMode::Open, [name("good.example")], [name("bad.example")]);
        assert!(rules.permits(&name("any.example")));
        assert!(!rules.permits(&name("bad.example")));
        rules.mode = TrustMode::Allowlist;
        assert!(rules.permits(&name("good.example")));
        assert!(!rules.permits(&name("any.example")));
        rules.mode = TrustMode::Closed;
        assert!(!rules.permits(&name("good.example")));
        assert_eq!(rules.decide(&name("good.example")).rule, Rule::ClosedMode);
    }

    #[test]
    fn local_entries_win_then_any_list_deny_then_list_allow() {
        let mut rules = TrustRules::from_lists(TrustMode::Allowlist, [name("mine.example")], []);
        rules.lists = vec![
            list("a.example", &[("spam.example", Action::Deny), ("both.example", Action::Allow)]),
            list("b.example", &[("both.example", Action::Deny), ("mine.example", Action::Deny)]),
            list("c.example", &[("friend.example", Action::Allow)]),
        ];
        assert!(rules.permits(&name("mine.example")), "a local allow beats a list's deny");
        assert!(!rules.permits(&name("spam.example")));
        assert!(!rules.permits(&name("both.example")), "any list's deny wins over allows");
        assert!(rules.permits(&name("friend.example")), "a list's allow counts in allowlist mode");
        assert!(!rules.permits(&name("stranger.example")));
        let why = rules.decide(&name("both.example"));
        assert!(matches!(why.rule, Rule::List { publisher, .. } if publisher == name("b.example")));
        rules.mode = TrustMode::Open;
        assert!(rules.permits(&name("stranger.example")));
        assert_eq!(
            rules.decide(&name("stranger.example")).rule,
            Rule::Mode { mode: TrustMode::Open }
        );
    }

    #[test]
    fn statistics_are_bounded() {
        let policy = TrustPolicy::default();
        policy.count_accepted(&name("a.example"));
        policy.count_refused(&name("a.example"), "server_denied");
        policy.count_refused(&name("a.example"), "server_denied");
        let stats = policy.stats();
        assert_eq!(stats[&name("a.example")].accepted, 1);
        assert_eq!(stats[&name("a.example")].refused["server_denied"], 2);
    }
}
