-- Which node works an outbound queue (several nodes on one database): a lease per queue,
-- renewed by its holder and taken over by another node once it expires.
CREATE TABLE delivery_leases (
    queue TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_ts BIGINT NOT NULL
);
