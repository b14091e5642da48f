-- End-to-end encrypted DMs (spec 17): the keys devices publish, their inboxes, idempotent sends
-- and who is told when a device list changes.

-- One-time keys, each handed out once (deleted when claimed).
CREATE TABLE one_time_keys (
    user_id    TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    key_id     TEXT NOT NULL,
    key_object TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id, key_id),
    FOREIGN KEY (user_id, device_id) REFERENCES devices (user_id, device_id) ON DELETE CASCADE
);

-- A device's fallback key, handed out when it has no one-time key left, until replaced.
CREATE TABLE fallback_keys (
    user_id    TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    key_object TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id),
    FOREIGN KEY (user_id, device_id) REFERENCES devices (user_id, device_id) ON DELETE CASCADE
);

-- To-device messages, kept until the target device acknowledges them. `id` orders a device's
-- inbox; a message is stored once per (target device, sender device, message id).
CREATE TABLE to_device_inbox (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id       TEXT NOT NULL,
    device_id     TEXT NOT NULL,
    sender        TEXT NOT NULL,
    sender_device TEXT NOT NULL,
    message_id    TEXT NOT NULL,
    message_type  TEXT NOT NULL,
    content       TEXT NOT NULL,
    received_ts   INTEGER NOT NULL,
    UNIQUE (user_id, device_id, sender, sender_device, message_id),
    FOREIGN KEY (user_id, device_id) REFERENCES devices (user_id, device_id) ON DELETE CASCADE
);

-- Answers to to-device sends, so a replay gets the first answer. `scope` is the sending device
-- (`device:<user>/<device>`) or the sending server (`server:<name>`).
CREATE TABLE to_device_txns (
    scope        TEXT NOT NULL,
    txn_id       TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    result       TEXT NOT NULL,
    created_ts   INTEGER NOT NULL,
    PRIMARY KEY (scope, txn_id)
);
CREATE INDEX to_device_txns_age ON to_device_txns (created_ts);

-- The last device-list hash told to others, per local user.
CREATE TABLE device_lists (
    user_id TEXT PRIMARY KEY NOT NULL,
    hash    TEXT NOT NULL
);

-- Who asked for a user's keys: a server (`server:<name>`) or a local user (`user:<id>`); they
-- are told when the user's device list changes.
CREATE TABLE device_list_watchers (
    user_id    TEXT NOT NULL,
    watcher    TEXT NOT NULL,
    updated_ts INTEGER NOT NULL,
    PRIMARY KEY (user_id, watcher)
);
