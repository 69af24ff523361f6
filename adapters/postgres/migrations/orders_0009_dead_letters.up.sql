-- The index of dead letters: each message a consumer of this service gave up on, with why and
-- after how many attempts, written when it is dead-lettered. Operators list, show, re-drive
-- (back through this service's outbox, with the message's own id, key and headers) and purge
-- them here; the broker's dead-letter topic keeps a copy, but cannot mark or delete one record.
CREATE TABLE orders.dead_letters (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    consumer     text        NOT NULL,
    message_id   uuid        NOT NULL,
    topic        text        NOT NULL,
    key          text        NOT NULL,
    message_type text        NOT NULL,
    payload      jsonb       NOT NULL,
    headers      jsonb       NOT NULL,
    created_at   timestamptz NOT NULL,
    reason       text        NOT NULL,
    attempts     integer     NOT NULL CHECK (attempts >= 0),
    dead_at      timestamptz NOT NULL,
    redriven_at  timestamptz
);
-- A message lies dead once per consumer, however often a transport dead-letters it again.
CREATE UNIQUE INDEX dead_letters_dead_once ON orders.dead_letters (consumer, message_id)
    WHERE redriven_at IS NULL;
