-- Equivocation evidence: one proof per (guild, seq) is enough, and a hostile host must not be
-- able to fill the disk with more (the store also caps the rows per guild).
DELETE FROM equivocations
    WHERE id NOT IN (SELECT MIN(id) FROM equivocations GROUP BY guild_id, seq);
CREATE UNIQUE INDEX equivocations_seq ON equivocations (guild_id, seq);

-- Received transactions are pruned by age.
CREATE INDEX inbound_txns_received ON inbound_txns (received_ts);
