-- Accounts made by key login (spec 16.4), and the other server's user each was made for: only
-- that user logs in to it again, whatever key they hold by then (a key they gave up, in the
-- hands of someone else, opens nothing here).
CREATE TABLE account_links (
    account     TEXT PRIMARY KEY REFERENCES users (user_id) ON DELETE CASCADE,
    remote_user TEXT NOT NULL UNIQUE,
    created_ts  INTEGER NOT NULL
);
