ALTER TABLE orders.outbox ADD COLUMN published_at timestamptz;
INSERT INTO orders.outbox
    (id, message_id, topic, key, message_type, payload, headers, created_at, published_at)
OVERRIDING SYSTEM VALUE
SELECT id, message_id, topic, key, message_type, payload, headers, created_at, published_at
FROM orders.outbox_published;
DROP TABLE orders.outbox_published;
CREATE INDEX outbox_unpublished ON orders.outbox (id) WHERE published_at IS NULL;
CREATE INDEX outbox_published_at ON orders.outbox (published_at) WHERE published_at IS NOT NULL;
