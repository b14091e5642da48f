-- Federation: durable outbound queues, inbound transaction idempotency, equivocation evidence.

-- Sequenced events waiting to be delivered, one row per destination server, written in the
-- same transaction as the event. `event` is the event exactly as that destination may see it
-- (content withheld where none of its users may view the channel).
CREATE TABLE outbound_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    destination TEXT NOT NULL,
    event       TEXT NOT NULL
);
CREATE INDEX outbound_events_destination ON outbound_events (destination, id);

-- Proposals of local users to remote hosts that could not be delivered yet.
CREATE TABLE outbound_proposals (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    host       TEXT NOT NULL,
    guild_id   TEXT NOT NULL,
    proposal   TEXT NOT NULL,
    created_ts INTEGER NOT NULL
);
CREATE INDEX outbound_proposals_host ON outbound_proposals (host, id);

-- Transactions received, so a retried PUT /send gets the same answer without reprocessing.
CREATE TABLE inbound_txns (
    origin      TEXT NOT NULL,
    txn_id      TEXT NOT NULL,
    response    TEXT NOT NULL,
    received_ts INTEGER NOT NULL,
    PRIMARY KEY (origin, txn_id)
);

-- Two different host-signed events with the same (guild, seq): proof the host equivocated.
CREATE TABLE equivocations (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    guild_id    TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    held_event  TEXT NOT NULL,
    other_event TEXT NOT NULL,
    detected_ts INTEGER NOT NULL
);
