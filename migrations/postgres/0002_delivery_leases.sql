-- Which node works an outbound queue (several nodes on one database): a lease per queue,
-- renewed by its holder and taken over by another node once it expires.
CREATE TABLE delivery_leases (
    queue TEXT COLLATE "C" PRIMARY KEY,
    holder TEXT COLLATE "C" NOT NULL,
    expires_ts BIGINT NOT NULL
);
