-- Bots (sqlite 0017_bots.sql; see there).
CREATE TABLE applications (
    application_id BIGINT PRIMARY KEY,
    bot_user       TEXT COLLATE "C" NOT NULL UNIQUE REFERENCES users (user_id) ON DELETE CASCADE,
    owner          TEXT COLLATE "C" NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    name           TEXT COLLATE "C" NOT NULL,
    description    TEXT COLLATE "C" NOT NULL,
    bot_public     BIGINT NOT NULL,
    intents        BIGINT NOT NULL,
    created_ts     BIGINT NOT NULL
);
CREATE INDEX applications_owner ON applications (owner);

CREATE TABLE snowflakes (
    snowflake BIGINT PRIMARY KEY,
    kind      TEXT COLLATE "C" NOT NULL,
    guild_id  TEXT COLLATE "C" NOT NULL,
    object_id TEXT COLLATE "C" NOT NULL,
    UNIQUE (kind, guild_id, object_id)
);
