-- Media (spec 19): bytes stored content-addressed in the object store, one row per media id this
-- server holds, and the references that keep them alive. Media nothing refers to is deleted once
-- it has been unreferenced for the grace period.

CREATE TABLE media (
    media_id           TEXT PRIMARY KEY,
    size               INTEGER NOT NULL,
    content_type       TEXT NOT NULL,
    width              INTEGER,
    height             INTEGER,
    thumbnail_id       TEXT,
    -- The local user who uploaded it first; NULL for a copy fetched from another server.
    uploader           TEXT,
    created_ts         INTEGER NOT NULL,
    -- Since when nothing refers to it (its upload, or the removal of its last reference).
    unreferenced_since INTEGER NOT NULL
);
CREATE INDEX media_unreferenced ON media (unreferenced_since);

-- What refers to a media id: a message of a guild (owner = message id), a guild's icon
-- (owner = guild id), a local user's avatar (guild_id = '', owner = user id), a picture's
-- thumbnail (guild_id = '', owner = the picture's media id). Rows may name media this server
-- does not hold yet (an attachment of a message from another server, fetched when asked for).
-- `source` is the server that put the reference in a guild (the event's origin), asked first
-- when the bytes are fetched. A reference from another server is `verified` once this server got
-- the bytes from that server: only then does it let other servers fetch them here (a reference
-- alone proves nothing: anyone can name a hash).
CREATE TABLE media_refs (
    media_id TEXT NOT NULL,
    kind     TEXT NOT NULL,
    guild_id TEXT NOT NULL,
    owner    TEXT NOT NULL,
    source   TEXT,
    verified INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (media_id, kind, guild_id, owner)
);
CREATE INDEX media_refs_owner ON media_refs (guild_id, owner);

-- Which local users uploaded a media id (equal uploads are one media): they may read it back and
-- use it. Not a reference: an upload nobody uses is collected after the grace period.
CREATE TABLE media_uploads (
    media_id    TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    uploaded_ts INTEGER NOT NULL,
    PRIMARY KEY (media_id, user_id)
);
CREATE INDEX media_uploads_user ON media_uploads (user_id, uploaded_ts);

ALTER TABLE messages ADD COLUMN attachments TEXT;
