-- Everything the spec scopes to a guild is keyed by (guild_id, ...): channel ids, invite codes
-- and message ids are chosen by a guild's host, and one host must never be able to touch
-- another guild's rows by naming the same id (spec 02, "Scopes").

CREATE TABLE channels_scoped (
    guild_id   TEXT NOT NULL,
    channel_id TEXT NOT NULL,
    PRIMARY KEY (guild_id, channel_id)
);
INSERT INTO channels_scoped (guild_id, channel_id) SELECT guild_id, channel_id FROM channels;
DROP TABLE channels;
ALTER TABLE channels_scoped RENAME TO channels;
CREATE INDEX channels_id ON channels (channel_id);

CREATE TABLE invites_scoped (
    guild_id TEXT NOT NULL,
    code     TEXT NOT NULL,
    PRIMARY KEY (guild_id, code)
);
INSERT INTO invites_scoped (guild_id, code) SELECT guild_id, code FROM invites;
DROP TABLE invites;
ALTER TABLE invites_scoped RENAME TO invites;
CREATE INDEX invites_code ON invites (code);

-- The rowid is kept: messages_fts refers to it.
CREATE TABLE messages_scoped (
    guild_id    TEXT NOT NULL,
    message_id  TEXT NOT NULL,
    channel_id  TEXT NOT NULL,
    author      TEXT NOT NULL,
    body        TEXT,
    reply_to    TEXT,
    mentions    TEXT NOT NULL DEFAULT '[]',
    created_seq INTEGER NOT NULL,
    created_ts  INTEGER NOT NULL,
    edited_ts   INTEGER,
    deleted     INTEGER NOT NULL DEFAULT 0,
    UNIQUE (guild_id, message_id)
);
INSERT INTO messages_scoped (rowid, guild_id, message_id, channel_id, author, body, reply_to,
                             mentions, created_seq, created_ts, edited_ts, deleted)
    SELECT rowid, guild_id, message_id, channel_id, author, body, reply_to, mentions,
           created_seq, created_ts, edited_ts, deleted
    FROM messages;
DROP TABLE messages;
ALTER TABLE messages_scoped RENAME TO messages;
CREATE INDEX messages_channel ON messages (guild_id, channel_id, created_seq);

CREATE TABLE reactions_scoped (
    guild_id   TEXT NOT NULL,
    message_id TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    emoji      TEXT NOT NULL,
    seq        INTEGER NOT NULL,
    PRIMARY KEY (guild_id, message_id, emoji, user_id)
);
-- A reaction's guild is its message's, or failing that (the message predates the history this
-- server holds) its message.create event's; one neither names is unattributable and dropped.
INSERT INTO reactions_scoped (guild_id, message_id, user_id, emoji, seq)
    SELECT COALESCE(m.guild_id, e.guild_id), r.message_id, r.user_id, r.emoji, r.seq
    FROM reactions r
    LEFT JOIN messages m ON m.message_id = r.message_id
    LEFT JOIN events e ON e.event_id = r.message_id
    WHERE COALESCE(m.guild_id, e.guild_id) IS NOT NULL;
DROP TABLE reactions;
ALTER TABLE reactions_scoped RENAME TO reactions;

CREATE TABLE pins_scoped (
    guild_id   TEXT NOT NULL,
    message_id TEXT NOT NULL,
    channel_id TEXT NOT NULL,
    pinned_ts  INTEGER NOT NULL,
    PRIMARY KEY (guild_id, message_id)
);
INSERT INTO pins_scoped (guild_id, message_id, channel_id, pinned_ts)
    SELECT guild_id, message_id, channel_id, pinned_ts FROM pins;
DROP TABLE pins;
ALTER TABLE pins_scoped RENAME TO pins;
CREATE INDEX pins_channel ON pins (guild_id, channel_id);

DROP INDEX events_message;
CREATE INDEX events_message ON events (guild_id, message_id) WHERE message_id IS NOT NULL;
