//! Presence of local users: online while at least one gateway session is connected, with the
//! status the user chose (online, idle, dnd, invisible). Invisible users appear offline.

use std::collections::HashMap;
use std::sync::Mutex;

use guildhall_spec::UserId;

use crate::bus::{Bus, BusMessage};

/// A status a client may choose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
}

impl Presence {
    /// An empty presence table publishing changes on `bus`.
    pub fn new(bus: Bus) -> Self {
        Self { bus, users: Mutex::new(HashMap::new()) }
    }

    /// What others currently see of `user`.
    pub fn visible_status(&self, user: &UserId) -> &'static str {
        self.users
            .lock()
            .ok()
            .and_then(|users| users.get(user).map(|e| e.status.visible()))
            .unwrap_or("offline")
    }

    /// A session of `user` connected with `status`.
    pub fn connect(&self, user: &UserId, status: Status) {
        self.update(user, |entry| match entry {
            Some(entry) => Some(Entry { connections: entry.connections + 1, status }),
            None => Some(Entry { connections: 1, status }),
        });
    }

    /// The user chose a new status.
    pub fn set_status(&self, user: &UserId, status: Status) {
        self.update(user, |entry| entry.map(|entry| Entry { status, ..entry }));
    }

    /// A session of `user` disconnected.
    pub fn disconnect(&self, user: &UserId) {
        self.update(user, |entry| {
            entry.and_then(|entry| {
                (entry.connections > 1)
                    .then_some(Entry { connections: entry.connections - 1, ..entry })
            })
        });
    }

    fn update(&self, user: &UserId, change: impl FnOnce(Option<Entry>) -> Option<Entry>) {
        let Ok(mut users) = self.users.lock() else { return };
        let before = users.get(user).map_or("offline", |e| e.status.visible());
        let after_entry = change(users.get(user).copied());
        match after_entry {
            Some(entry) => users.insert(user.clone(), entry),
            None => users.remove(user),
        };
        let after = after_entry.map_or("offline", |e| e.status.visible());
        drop(users);
        if before != after {
            self.bus.publish(BusMessage::Presence { user_id: user.clone(), status: after });
        }
    }
}
