-- Every identity key this server ever attested for one of its users (spec 16.6: a key once
-- replaced or revoked is never attested for that user again).
CREATE TABLE attested_keys (
    user_id      TEXT NOT NULL,
    identity_key TEXT NOT NULL,
    first_ts     INTEGER NOT NULL,
    PRIMARY KEY (user_id, identity_key)
);
-- The keys attested before this table existed.
INSERT OR IGNORE INTO attested_keys (user_id, identity_key, first_ts)
    SELECT a.user_id, a.identity_key, a.issued_ts FROM identity_attestations a
    JOIN users u ON u.user_id = a.user_id WHERE a.identity_key IS NOT NULL;
