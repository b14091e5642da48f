-- Bots (the Discord-compatible bot API): an application is a bot user owned by a local user.
-- The bot user is an ordinary account row with no password; it signs in with its token only.
CREATE TABLE applications (
    -- Its snowflake: the id Discord libraries know it by (`client_id`).
    application_id INTEGER PRIMARY KEY,
    bot_user       TEXT NOT NULL UNIQUE REFERENCES users (user_id) ON DELETE CASCADE,
    owner          TEXT NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    name           TEXT NOT NULL,
    description    TEXT NOT NULL,
    -- 1: anyone with MANAGE_GUILD may add it to a guild; 0: only its owner may.
    bot_public     INTEGER NOT NULL,
    -- The privileged gateway intents granted to it (bit set, Discord's values).
    intents        INTEGER NOT NULL,
    created_ts     INTEGER NOT NULL
);
CREATE INDEX applications_owner ON applications (owner);

-- The 64-bit numeric ids Discord-compatible clients see for this server's objects. Guild-scoped
-- objects (channels, roles, messages) are keyed by their guild, so one guild's host cannot
-- choose ids that alias another guild's objects; users and guilds have guild_id ''.
CREATE TABLE snowflakes (
    snowflake INTEGER PRIMARY KEY,
    kind      TEXT NOT NULL,
    guild_id  TEXT NOT NULL,
    object_id TEXT NOT NULL,
    UNIQUE (kind, guild_id, object_id)
);
