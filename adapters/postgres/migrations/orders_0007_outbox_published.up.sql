-- Published messages leave the outbox for a table of their own, so the outbox holds only what
-- is waiting (and what is parked). The relay's claim then costs what is pending, never what
-- was published before it: a row marked published in place left its entry in the claim's index
-- until a vacuum, and with autovacuum off (or far behind) every claim read them all. What is
-- still deleted from the outbox (the moves, and CDC mode's insert-and-delete) is reclaimed by
-- the service's own upkeep (`--outbox-vacuum-interval`), not left to autovacuum.
CREATE TABLE orders.outbox_published (
    id           bigint      PRIMARY KEY,
    message_id   uuid        NOT NULL,
    topic        text        NOT NULL,
    key          text        NOT NULL,
    message_type text        NOT NULL,
    payload      jsonb       NOT NULL,
    headers      jsonb       NOT NULL,
    created_at   timestamptz NOT NULL,
    published_at timestamptz NOT NULL
);
-- Retention deletes by publication time.
CREATE INDEX outbox_published_published_at ON orders.outbox_published (published_at);

INSERT INTO orders.outbox_published
    (id, message_id, topic, key, message_type, payload, headers, created_at, published_at)
SELECT id, message_id, topic, key, message_type, payload, headers, created_at, published_at
FROM orders.outbox WHERE published_at IS NOT NULL;
DELETE FROM orders.outbox WHERE published_at IS NOT NULL;

-- Every row left is unpublished: the column and its two partial indexes go. The claim reads the
-- primary key in position order; parked rows (rare) are filtered on the way.
ALTER TABLE orders.outbox DROP COLUMN published_at;
