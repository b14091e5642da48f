-- The operator's trust policy as changed at run time (spec chapter 15), the subscribed trust
-- lists, and the audit log of administrative actions.
--
-- The configuration file gives the mode and local entries at start; what an operator changes
-- here wins over it and survives restarts. `version` grows with every change, so every process
-- using this database (the server, the `guildhall admin` command) notices and reloads.
CREATE TABLE trust_settings (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    mode       TEXT,
    version    INTEGER NOT NULL,
    changed_ts INTEGER NOT NULL
);
INSERT INTO trust_settings (id, mode, version, changed_ts) VALUES (1, NULL, 0, 0);

CREATE TABLE trust_entries (
    server     TEXT PRIMARY KEY,
    action     TEXT NOT NULL CHECK (action IN ('allow', 'deny')),
    reason     TEXT,
    key_id     TEXT,
    key        TEXT,
    updated_ts INTEGER NOT NULL
);

CREATE TABLE trust_subscriptions (
    id           TEXT PRIMARY KEY,
    url          TEXT NOT NULL UNIQUE,
    publisher    TEXT NOT NULL,
    key_id       TEXT NOT NULL,
    key          TEXT NOT NULL,
    refresh_secs INTEGER NOT NULL,
    -- The last accepted document (its entries apply), its `updated_ts`, and fetch bookkeeping.
    document     TEXT,
    updated_ts   INTEGER NOT NULL DEFAULT 0,
    fetched_ts   INTEGER NOT NULL DEFAULT 0,
    accepted_ts  INTEGER NOT NULL DEFAULT 0,
    last_error   TEXT,
    created_ts   INTEGER NOT NULL
);

CREATE TABLE audit_log (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    ts     INTEGER NOT NULL,
    actor  TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT,
    detail TEXT
);
