-- A message the broker refuses for good is parked with its reason; it holds back the later
-- messages of its key (per-key order) until someone deals with it, and nothing else.
ALTER TABLE orders.outbox ADD COLUMN parked_at timestamptz, ADD COLUMN parked_reason text;
CREATE INDEX outbox_parked_keys ON orders.outbox (key) WHERE parked_at IS NOT NULL;
