-- The PostgreSQL schema. It mirrors the SQLite migrations as of 0015 (`migrations/sqlite/0001`
-- through `0015_media.sql`): the same tables, columns, keys, constraints and indexes as the
-- final state they reach. Every future migration must be added to both folders, with the same
-- number and name, so that the two engines keep one schema.
--
-- Types follow the SQLite columns: INTEGER is BIGINT (sqlx binds `i64`), TEXT stays TEXT (JSON
-- included, so the Rust code binds the same `String` on both engines; not `jsonb`), BLOB is
-- BYTEA, and an AUTOINCREMENT key is `BIGINT GENERATED ALWAYS AS IDENTITY` under the same name.
-- A copy from SQLite that keeps those ids must insert with `OVERRIDING SYSTEM VALUE` and then
-- restart each identity past the largest id copied.
--
-- Text is `COLLATE "C"`: compared and ordered byte by byte, as SQLite does, whatever locale the
-- database was created with (ids ordered by a locale would make key claims, listings and the
-- tie-breaks of `LIMIT` differ between engines and between installations).
--
-- The SQLite 0/1 flags take the type the Rust code reads them as:
-- * `users.is_admin`: BOOLEAN (read as `bool`, bound as `bool` by `create_user`);
-- * `messages.deleted`: BOOLEAN (read as `bool` into `Message::deleted`);
-- * `media_refs.verified`: BIGINT (read as `i64` from `MAX(verified)`, compared with 0).
-- The SQLite queries write the BOOLEAN ones as the literals 0 and 1, which PostgreSQL does not
-- cast to BOOLEAN: the PostgreSQL queries write TRUE and FALSE.
--
-- Where the SQLite code relies on the implicit `rowid` (`one_time_keys`, `messages` with its
-- FTS5 table `messages_fts`), the table has an explicit `id` identity column. Full-text search
-- is the `messages.search` column, derived from `body` alone (so it follows every edit, and an
-- erased body leaves it empty), with a GIN index; it replaces `messages_fts`.

-- Accounts and sessions (sqlite 0001).

CREATE TABLE users (
    user_id       TEXT COLLATE "C" PRIMARY KEY,
    localpart     TEXT COLLATE "C" NOT NULL UNIQUE,
    password_hash TEXT COLLATE "C" NOT NULL,
    display_name  TEXT COLLATE "C",
    avatar        TEXT COLLATE "C",
    is_admin      BOOLEAN NOT NULL DEFAULT FALSE,
    created_ts    BIGINT NOT NULL
);

CREATE TABLE sessions (
    session_id   TEXT COLLATE "C" PRIMARY KEY,
    token_hash   BYTEA NOT NULL UNIQUE,
    user_id      TEXT COLLATE "C" NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    created_ts   BIGINT NOT NULL,
    last_seen_ts BIGINT NOT NULL,
    user_agent   TEXT COLLATE "C",
    ip           TEXT COLLATE "C"
);
CREATE INDEX sessions_user ON sessions (user_id);

-- Guilds and their logs (sqlite 0001, 0004).

CREATE TABLE guilds (
    guild_id      TEXT COLLATE "C" PRIMARY KEY,
    kind          TEXT COLLATE "C" NOT NULL,
    head_seq      BIGINT NOT NULL,
    head_event_id TEXT COLLATE "C" NOT NULL,
    state         TEXT COLLATE "C" NOT NULL
);

CREATE TABLE events (
    stream_id  BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    guild_id   TEXT COLLATE "C" NOT NULL,
    seq        BIGINT NOT NULL,
    event_id   TEXT COLLATE "C" NOT NULL UNIQUE,
    event_type TEXT COLLATE "C" NOT NULL,
    sender     TEXT COLLATE "C" NOT NULL,
    origin_ts  BIGINT NOT NULL,
    -- For message.* / reaction.* / pin.* events: the message acted on (a create's own id).
    message_id TEXT COLLATE "C",
    -- The event without `content`; `content` separately, NULL when withheld or erased.
    envelope   TEXT COLLATE "C" NOT NULL,
    content    TEXT COLLATE "C",
    UNIQUE (guild_id, seq)
);
CREATE INDEX events_message ON events (guild_id, message_id) WHERE message_id IS NOT NULL;

CREATE TABLE txns (
    sender   TEXT COLLATE "C" NOT NULL,
    txn_id   TEXT COLLATE "C" NOT NULL,
    event_id TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (sender, txn_id)
);

CREATE TABLE guild_members (
    guild_id TEXT COLLATE "C" NOT NULL,
    user_id  TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (guild_id, user_id)
);
CREATE INDEX guild_members_user ON guild_members (user_id);

-- Projections of the logs, keyed by (guild_id, ...) (sqlite 0004).

CREATE TABLE channels (
    guild_id   TEXT COLLATE "C" NOT NULL,
    channel_id TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (guild_id, channel_id)
);
CREATE INDEX channels_id ON channels (channel_id);

CREATE TABLE invites (
    guild_id TEXT COLLATE "C" NOT NULL,
    code     TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (guild_id, code)
);
CREATE INDEX invites_code ON invites (code);

CREATE TABLE messages (
    -- SQLite's implicit rowid, which its full-text index refers to.
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    guild_id    TEXT COLLATE "C" NOT NULL,
    message_id  TEXT COLLATE "C" NOT NULL,
    channel_id  TEXT COLLATE "C" NOT NULL,
    author      TEXT COLLATE "C" NOT NULL,
    body        TEXT COLLATE "C",
    reply_to    TEXT COLLATE "C",
    mentions    TEXT COLLATE "C" NOT NULL DEFAULT '[]',
    created_seq BIGINT NOT NULL,
    created_ts  BIGINT NOT NULL,
    edited_ts   BIGINT,
    deleted     BOOLEAN NOT NULL DEFAULT FALSE,
    attachments TEXT COLLATE "C",
    -- What SQLite's `messages_fts` indexes: the body, lower-cased words, no stemming (the
    -- `simple` configuration, the nearest to FTS5's `unicode61`; it keeps diacritics).
    search      TSVECTOR GENERATED ALWAYS AS (to_tsvector('simple', coalesce(body, ''))) STORED,
    UNIQUE (guild_id, message_id)
);
CREATE INDEX messages_channel ON messages (guild_id, channel_id, created_seq);
CREATE INDEX messages_search ON messages USING GIN (search);

CREATE TABLE reactions (
    guild_id   TEXT COLLATE "C" NOT NULL,
    message_id TEXT COLLATE "C" NOT NULL,
    user_id    TEXT COLLATE "C" NOT NULL,
    emoji      TEXT COLLATE "C" NOT NULL,
    seq        BIGINT NOT NULL,
    PRIMARY KEY (guild_id, message_id, emoji, user_id)
);

CREATE TABLE pins (
    guild_id   TEXT COLLATE "C" NOT NULL,
    message_id TEXT COLLATE "C" NOT NULL,
    channel_id TEXT COLLATE "C" NOT NULL,
    pinned_ts  BIGINT NOT NULL,
    PRIMARY KEY (guild_id, message_id)
);
CREATE INDEX pins_channel ON pins (guild_id, channel_id);

-- Friends, blocks and direct messages (sqlite 0001).

CREATE TABLE relationships (
    user_id  TEXT COLLATE "C" NOT NULL,
    other_id TEXT COLLATE "C" NOT NULL,
    state    TEXT COLLATE "C" NOT NULL,
    since_ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, other_id)
);

CREATE TABLE blocks (
    user_id    TEXT COLLATE "C" NOT NULL,
    blocked_id TEXT COLLATE "C" NOT NULL,
    since_ts   BIGINT NOT NULL,
    PRIMARY KEY (user_id, blocked_id)
);

CREATE TABLE direct_messages (
    user_a   TEXT COLLATE "C" NOT NULL,
    user_b   TEXT COLLATE "C" NOT NULL,
    guild_id TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (user_a, user_b)
);

-- Federation queues and records (sqlite 0002, 0003, 0005, 0006, 0007).

CREATE TABLE outbound_events (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    destination TEXT COLLATE "C" NOT NULL,
    event       TEXT COLLATE "C" NOT NULL,
    event_id    TEXT COLLATE "C"
);
CREATE INDEX outbound_events_destination ON outbound_events (destination, id);
CREATE INDEX outbound_events_event ON outbound_events (event_id);

CREATE TABLE outbound_proposals (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    host       TEXT COLLATE "C" NOT NULL,
    guild_id   TEXT COLLATE "C" NOT NULL,
    proposal   TEXT COLLATE "C" NOT NULL,
    created_ts BIGINT NOT NULL
);
CREATE INDEX outbound_proposals_host ON outbound_proposals (host, id);

CREATE TABLE inbound_txns (
    origin      TEXT COLLATE "C" NOT NULL,
    txn_id      TEXT COLLATE "C" NOT NULL,
    response    TEXT COLLATE "C" NOT NULL,
    received_ts BIGINT NOT NULL,
    PRIMARY KEY (origin, txn_id)
);
CREATE INDEX inbound_txns_received ON inbound_txns (received_ts);

CREATE TABLE equivocations (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    guild_id    TEXT COLLATE "C" NOT NULL,
    seq         BIGINT NOT NULL,
    held_event  TEXT COLLATE "C" NOT NULL,
    other_event TEXT COLLATE "C" NOT NULL,
    detected_ts BIGINT NOT NULL
);
CREATE UNIQUE INDEX equivocations_seq ON equivocations (guild_id, seq);

CREATE TABLE join_answers (
    guild_id   TEXT COLLATE "C" NOT NULL,
    event_id   TEXT COLLATE "C" NOT NULL,
    answer     TEXT COLLATE "C" NOT NULL,
    created_ts BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (guild_id, event_id)
);

-- User identity keys (sqlite 0008, 0011, 0012).

CREATE TABLE identity_attestations (
    user_id      TEXT COLLATE "C" PRIMARY KEY,
    identity_key TEXT COLLATE "C",
    issued_ts    BIGINT NOT NULL,
    attestation  TEXT COLLATE "C" NOT NULL,
    checked_ts   BIGINT NOT NULL
);
CREATE INDEX identity_attestations_key ON identity_attestations (identity_key);

CREATE TABLE identity_rotations (
    user_id   TEXT COLLATE "C" NOT NULL,
    ts        BIGINT NOT NULL,
    statement TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (user_id, ts)
);

CREATE TABLE identity_challenges (
    challenge  TEXT COLLATE "C" PRIMARY KEY,
    user_id    TEXT COLLATE "C" NOT NULL,
    expires_ts BIGINT NOT NULL
);

CREATE TABLE identity_moves (
    from_user TEXT COLLATE "C" PRIMARY KEY,
    to_user   TEXT COLLATE "C" NOT NULL,
    ts        BIGINT NOT NULL,
    statement TEXT COLLATE "C" NOT NULL
);

CREATE TABLE account_links (
    account     TEXT COLLATE "C" PRIMARY KEY REFERENCES users (user_id) ON DELETE CASCADE,
    remote_user TEXT COLLATE "C" NOT NULL UNIQUE,
    created_ts  BIGINT NOT NULL
);

-- Every identity key this server ever attested for one of its users (spec 16.6: a key once
-- replaced or revoked is never attested for that user again). SQLite's 0012 also copied the
-- keys attested before the table existed; a new database has none.
CREATE TABLE attested_keys (
    user_id      TEXT COLLATE "C" NOT NULL,
    identity_key TEXT COLLATE "C" NOT NULL,
    first_ts     BIGINT NOT NULL,
    PRIMARY KEY (user_id, identity_key)
);

-- Trust policy, trust lists and the audit log (sqlite 0009).

CREATE TABLE trust_settings (
    id         BIGINT PRIMARY KEY CHECK (id = 1),
    mode       TEXT COLLATE "C",
    version    BIGINT NOT NULL,
    changed_ts BIGINT NOT NULL
);
-- The one row, which every change updates.
INSERT INTO trust_settings (id, mode, version, changed_ts) VALUES (1, NULL, 0, 0);

CREATE TABLE trust_entries (
    server     TEXT COLLATE "C" PRIMARY KEY,
    action     TEXT COLLATE "C" NOT NULL CHECK (action IN ('allow', 'deny')),
    reason     TEXT COLLATE "C",
    key_id     TEXT COLLATE "C",
    key        TEXT COLLATE "C",
    updated_ts BIGINT NOT NULL
);

CREATE TABLE trust_subscriptions (
    id           TEXT COLLATE "C" PRIMARY KEY,
    url          TEXT COLLATE "C" NOT NULL UNIQUE,
    publisher    TEXT COLLATE "C" NOT NULL,
    key_id       TEXT COLLATE "C" NOT NULL,
    key          TEXT COLLATE "C" NOT NULL,
    refresh_secs BIGINT NOT NULL,
    -- The last accepted document (its entries apply), its `updated_ts`, and fetch bookkeeping.
    document     TEXT COLLATE "C",
    updated_ts   BIGINT NOT NULL DEFAULT 0,
    fetched_ts   BIGINT NOT NULL DEFAULT 0,
    accepted_ts  BIGINT NOT NULL DEFAULT 0,
    last_error   TEXT COLLATE "C",
    created_ts   BIGINT NOT NULL
);

CREATE TABLE audit_log (
    id     BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ts     BIGINT NOT NULL,
    actor  TEXT COLLATE "C" NOT NULL,
    action TEXT COLLATE "C" NOT NULL,
    target TEXT COLLATE "C",
    detail TEXT COLLATE "C"
);

-- Devices and end-to-end encryption (sqlite 0010, 0013, 0014).

CREATE TABLE devices (
    user_id     TEXT COLLATE "C" NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    device_id   TEXT COLLATE "C" NOT NULL,
    session_id  TEXT COLLATE "C" NOT NULL REFERENCES sessions (session_id) ON DELETE CASCADE,
    certificate TEXT COLLATE "C" NOT NULL,
    updated_ts  BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id)
);
CREATE UNIQUE INDEX devices_session ON devices (session_id);

CREATE TABLE one_time_keys (
    -- SQLite's implicit rowid, by which a claim deletes exactly one key.
    id         BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
    user_id    TEXT COLLATE "C" NOT NULL,
    device_id  TEXT COLLATE "C" NOT NULL,
    key_id     TEXT COLLATE "C" NOT NULL,
    key_object TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (user_id, device_id, key_id),
    FOREIGN KEY (user_id, device_id) REFERENCES devices (user_id, device_id) ON DELETE CASCADE
);

CREATE TABLE fallback_keys (
    user_id    TEXT COLLATE "C" NOT NULL,
    device_id  TEXT COLLATE "C" NOT NULL,
    key_object TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (user_id, device_id),
    FOREIGN KEY (user_id, device_id) REFERENCES devices (user_id, device_id) ON DELETE CASCADE
);

CREATE TABLE to_device_inbox (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id       TEXT COLLATE "C" NOT NULL,
    device_id     TEXT COLLATE "C" NOT NULL,
    sender        TEXT COLLATE "C" NOT NULL,
    sender_device TEXT COLLATE "C" NOT NULL,
    message_id    TEXT COLLATE "C" NOT NULL,
    message_type  TEXT COLLATE "C" NOT NULL,
    content       TEXT COLLATE "C" NOT NULL,
    received_ts   BIGINT NOT NULL,
    UNIQUE (user_id, device_id, sender, sender_device, message_id),
    FOREIGN KEY (user_id, device_id) REFERENCES devices (user_id, device_id) ON DELETE CASCADE
);
CREATE INDEX to_device_inbox_sender ON to_device_inbox (user_id, device_id, sender);

CREATE TABLE to_device_txns (
    scope        TEXT COLLATE "C" NOT NULL,
    txn_id       TEXT COLLATE "C" NOT NULL,
    request_hash TEXT COLLATE "C" NOT NULL,
    result       TEXT COLLATE "C" NOT NULL,
    created_ts   BIGINT NOT NULL,
    PRIMARY KEY (scope, txn_id)
);
CREATE INDEX to_device_txns_age ON to_device_txns (created_ts);

CREATE TABLE device_lists (
    user_id TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    hash    TEXT COLLATE "C" NOT NULL
);

CREATE TABLE device_list_watchers (
    user_id    TEXT COLLATE "C" NOT NULL,
    watcher    TEXT COLLATE "C" NOT NULL,
    updated_ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, watcher)
);
CREATE INDEX device_list_watchers_age ON device_list_watchers (updated_ts);

CREATE TABLE claimed_keys (
    user_id    TEXT COLLATE "C" NOT NULL,
    device_id  TEXT COLLATE "C" NOT NULL,
    key_id     TEXT COLLATE "C" NOT NULL,
    claimed_ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id, key_id),
    FOREIGN KEY (user_id, device_id) REFERENCES devices (user_id, device_id) ON DELETE CASCADE
);
CREATE INDEX claimed_keys_age ON claimed_keys (claimed_ts);

-- Media (sqlite 0015).

CREATE TABLE media (
    media_id           TEXT COLLATE "C" PRIMARY KEY,
    size               BIGINT NOT NULL,
    content_type       TEXT COLLATE "C" NOT NULL,
    width              BIGINT,
    height             BIGINT,
    thumbnail_id       TEXT COLLATE "C",
    -- The local user who uploaded it first; NULL for a copy fetched from another server.
    uploader           TEXT COLLATE "C",
    created_ts         BIGINT NOT NULL,
    -- Since when nothing refers to it (its upload, or the removal of its last reference).
    unreferenced_since BIGINT NOT NULL
);
CREATE INDEX media_unreferenced ON media (unreferenced_since);

CREATE TABLE media_refs (
    media_id TEXT COLLATE "C" NOT NULL,
    kind     TEXT COLLATE "C" NOT NULL,
    guild_id TEXT COLLATE "C" NOT NULL,
    owner    TEXT COLLATE "C" NOT NULL,
    source   TEXT COLLATE "C",
    verified BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (media_id, kind, guild_id, owner)
);
CREATE INDEX media_refs_owner ON media_refs (guild_id, owner);

CREATE TABLE media_uploads (
    media_id    TEXT COLLATE "C" NOT NULL,
    user_id     TEXT COLLATE "C" NOT NULL,
    uploaded_ts BIGINT NOT NULL,
    PRIMARY KEY (media_id, user_id)
);
CREATE INDEX media_uploads_user ON media_uploads (user_id, uploaded_ts);
