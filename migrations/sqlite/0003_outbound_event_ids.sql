-- Queued deliveries name their event, so that erasing a message also strips its content from
-- copies still waiting for a server that is down.
ALTER TABLE outbound_events ADD COLUMN event_id TEXT;
CREATE INDEX outbound_events_event ON outbound_events (event_id);
