-- E2E hardening: one-time keys once claimed are remembered, so a retried upload cannot hand the
-- same key out again; send answers can be reserved before the work starts; watchers expire by
-- age across all users.

CREATE TABLE claimed_keys (
    user_id    TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    key_id     TEXT NOT NULL,
    claimed_ts INTEGER NOT NULL,
    PRIMARY KEY (user_id, device_id, key_id),
    FOREIGN KEY (user_id, device_id) REFERENCES devices (user_id, device_id) ON DELETE CASCADE
);
CREATE INDEX claimed_keys_age ON claimed_keys (claimed_ts);

CREATE INDEX device_list_watchers_age ON device_list_watchers (updated_ts);
CREATE INDEX to_device_inbox_sender ON to_device_inbox (user_id, device_id, sender);
