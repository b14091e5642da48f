-- The answer a host gave to a remote join, so that a retry of the same join (its answer was
-- lost) gets exactly that answer again: a snapshot whose seq matches its state.
CREATE TABLE join_answers (
    guild_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    answer   TEXT NOT NULL,
    PRIMARY KEY (guild_id, event_id)
);
