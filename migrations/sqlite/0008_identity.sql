-- Identities (spec chapter 16).
--
-- The current attestation of every user this server knows an identity for: its own users'
-- (issued here) and other servers' users' (fetched from their home servers and verified). A
-- newer attestation replaces an older one, never the reverse. `identity_key` is NULL when the
-- current attestation revokes the binding.
CREATE TABLE identity_attestations (
    user_id      TEXT PRIMARY KEY,
    identity_key TEXT,
    issued_ts    INTEGER NOT NULL,
    attestation  TEXT NOT NULL,
    checked_ts   INTEGER NOT NULL
);
CREATE INDEX identity_attestations_key ON identity_attestations (identity_key);

-- Rotation statements of this server's users (spec 16.6), served beside their attestation.
CREATE TABLE identity_rotations (
    user_id   TEXT NOT NULL,
    ts        INTEGER NOT NULL,
    statement TEXT NOT NULL,
    PRIMARY KEY (user_id, ts)
);

-- Outstanding login challenges (spec 16.4): single use, short-lived.
CREATE TABLE identity_challenges (
    challenge  TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL,
    expires_ts INTEGER NOT NULL
);

-- Accepted account moves (spec 16.5), the latest per old address.
CREATE TABLE identity_moves (
    from_user TEXT PRIMARY KEY,
    to_user   TEXT NOT NULL,
    ts        INTEGER NOT NULL,
    statement TEXT NOT NULL
);
