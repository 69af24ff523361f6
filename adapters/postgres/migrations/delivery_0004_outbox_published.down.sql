ALTER TABLE delivery.outbox ADD COLUMN published_at timestamptz;
INSERT INTO delivery.outbox
    (id, message_id, topic, key, message_type, payload, headers, created_at, published_at)
OVERRIDING SYSTEM VALUE
SELECT id, message_id, topic, key, message_type, payload, headers, created_at, published_at
FROM delivery.outbox_published;
DROP TABLE delivery.outbox_published;
CREATE INDEX outbox_unpublished ON delivery.outbox (id) WHERE published_at IS NULL;
CREATE INDEX outbox_published_at ON delivery.outbox (published_at) WHERE published_at IS NOT NULL;
