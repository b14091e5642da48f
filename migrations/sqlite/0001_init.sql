-- Guildhall schema for the embedded SQLite engine.
--
-- The guild log (`events`) is the source of truth; every other guild table is a projection of it,
-- written in the same transaction as the event. `guilds.state` is the folded guild state
-- (spec chapter 07 §7.7) as JSON, so a restart never has to replay the whole log.

CREATE TABLE users (
    user_id       TEXT PRIMARY KEY,
    localpart     TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    display_name  TEXT,
    avatar        TEXT,
    is_admin      INTEGER NOT NULL DEFAULT 0,
    created_ts    INTEGER NOT NULL
);

CREATE TABLE sessions (
    session_id   TEXT PRIMARY KEY,
    token_hash   BLOB NOT NULL UNIQUE,
    user_id      TEXT NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    created_ts   INTEGER NOT NULL,
    last_seen_ts INTEGER NOT NULL,
    user_agent   TEXT,
    ip           TEXT
);
CREATE INDEX sessions_user ON sessions (user_id);

CREATE TABLE guilds (
    guild_id      TEXT PRIMARY KEY,
    kind          TEXT NOT NULL,
    head_seq      INTEGER NOT NULL,
    head_event_id TEXT NOT NULL,
    state         TEXT NOT NULL
);

-- Every event of every guild this server holds. `stream_id` orders all events of the server and
-- is the position gateway clients resume from.
CREATE TABLE events (
    stream_id  INTEGER PRIMARY KEY AUTOINCREMENT,
    guild_id   TEXT NOT NULL,
    seq        INTEGER NOT NULL,
    event_id   TEXT NOT NULL UNIQUE,
    event_type TEXT NOT NULL,
    sender     TEXT NOT NULL,
    origin_ts  INTEGER NOT NULL,
    -- For message.* / reaction.* / pin.* events: the message acted on (a create's own id).
    message_id TEXT,
    -- The event without `content`; `content` separately, NULL when withheld or erased.
    envelope   TEXT NOT NULL,
    content    TEXT,
    UNIQUE (guild_id, seq)
);
CREATE INDEX events_message ON events (message_id) WHERE message_id IS NOT NULL;

-- Idempotency: a repeated (sender, txn_id) gets the event already sequenced.
CREATE TABLE txns (
    sender   TEXT NOT NULL,
    txn_id   TEXT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (sender, txn_id)
);

-- Which users are in which guilds (projection of guild state), for "my guilds" and dispatch.
CREATE TABLE guild_members (
    guild_id TEXT NOT NULL,
    user_id  TEXT NOT NULL,
    PRIMARY KEY (guild_id, user_id)
);
CREATE INDEX guild_members_user ON guild_members (user_id);

-- Channel id -> guild, so that /channels/{id} routes resolve.
CREATE TABLE channels (
    channel_id TEXT PRIMARY KEY,
    guild_id   TEXT NOT NULL
);

-- Invite code -> guild, so that /invites/{code} routes resolve.
CREATE TABLE invites (
    code     TEXT PRIMARY KEY,
    guild_id TEXT NOT NULL
);

CREATE TABLE messages (
    message_id  TEXT PRIMARY KEY,
    guild_id    TEXT NOT NULL,
    channel_id  TEXT NOT NULL,
    author      TEXT NOT NULL,
    body        TEXT,
    reply_to    TEXT,
    mentions    TEXT NOT NULL DEFAULT '[]',
    created_seq INTEGER NOT NULL,
    created_ts  INTEGER NOT NULL,
    edited_ts   INTEGER,
    deleted     INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX messages_channel ON messages (guild_id, channel_id, created_seq);

-- Full-text index of live message bodies; rowid = messages.rowid.
CREATE VIRTUAL TABLE messages_fts USING fts5 (body, tokenize = 'unicode61');

CREATE TABLE reactions (
    message_id TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    emoji      TEXT NOT NULL,
    seq        INTEGER NOT NULL,
    PRIMARY KEY (message_id, emoji, user_id)
);

CREATE TABLE pins (
    message_id TEXT PRIMARY KEY,
    guild_id   TEXT NOT NULL,
    channel_id TEXT NOT NULL,
    pinned_ts  INTEGER NOT NULL
);
CREATE INDEX pins_channel ON pins (guild_id, channel_id);

-- Friendships and requests, one row per direction: state is 'outgoing', 'incoming' or 'friends'.
CREATE TABLE relationships (
    user_id  TEXT NOT NULL,
    other_id TEXT NOT NULL,
    state    TEXT NOT NULL,
    since_ts INTEGER NOT NULL,
    PRIMARY KEY (user_id, other_id)
);

CREATE TABLE blocks (
    user_id    TEXT NOT NULL,
    blocked_id TEXT NOT NULL,
    since_ts   INTEGER NOT NULL,
    PRIMARY KEY (user_id, blocked_id)
);

-- The DM guild between two users (user_a < user_b).
CREATE TABLE direct_messages (
    user_a   TEXT NOT NULL,
    user_b   TEXT NOT NULL,
    guild_id TEXT NOT NULL,
    PRIMARY KEY (user_a, user_b)
);
