//! The operator's trust policy: which servers may federate with this one (spec chapter 15).
//!
//! The policy is swapped atomically behind a lock, so changes take effect on the next request
//! without a restart.

use std::collections::BTreeSet;
use std::sync::RwLock;

use guildhall_spec::ServerName;
use serde::{Deserialize, Serialize};

/// How unknown servers are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrustMode {
    /// Everyone except the deny list.
    #[default]
    Open,
    /// Only the allow list.
    Allowlist,
    /// Nobody: federation is off.
    Closed,
}

/// The policy's rules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustRules {
    /// The mode.
    pub mode: TrustMode,
    /// Servers allowed in `allowlist` mode.
    pub allow: BTreeSet<ServerName>,
    /// Servers always denied.
    pub deny: BTreeSet<ServerName>,
}

impl TrustRules {
    /// Whether `server` may federate with us.
    pub fn permits(&self, server: &ServerName) -> bool {
        if self.deny.contains(server) {
            return false;
        }
        match self.mode {
            TrustMode::Open => true,
            TrustMode::Allowlist => self.allow.contains(server),
            TrustMode::Closed => false,
        }
    }
}

/// The live policy.
#[derive(Debug, Default)]
pub struct TrustPolicy {
    rules: RwLock<TrustRules>,
}

impl TrustPolicy {
    /// A policy with the given rules.
    pub fn new(rules: TrustRules) -> Self {
        Self { rules: RwLock::new(rules) }
    }

    /// Whether `server` may federate with us now.
    pub fn permits(&self, server: &ServerName) -> bool {
        self.rules.read().map(|rules| rules.permits(server)).unwrap_or(false)
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(text: &str) -> ServerName {
        ServerName::parse(text).unwrap()
    }

    #[test]
    fn modes() {
        let mut rules = TrustRules {
            deny: [name("bad.example")].into(),
            allow: [name("good.example")].into(),
            ..TrustRules::default()
        };
        assert!(rules.permits(&name("any.example")));
        assert!(!rules.permits(&name("bad.example")));
        rules.mode = TrustMode::Allowlist;
        assert!(rules.permits(&name("good.example")));
        assert!(!rules.permits(&name("any.example")));
        rules.mode = TrustMode::Closed;
        assert!(!rules.permits(&name("good.example")));
    }
}
