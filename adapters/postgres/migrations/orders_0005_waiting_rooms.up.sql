-- Flash-sale waiting rooms: their configuration (the queue itself lives in Redis).
CREATE TABLE orders.waiting_rooms (
    id                    text        PRIMARY KEY,
    skus                  text[]      NOT NULL CHECK (cardinality(skus) > 0),
    admissions            integer     NOT NULL CHECK (admissions > 0),
    interval_ms           bigint      NOT NULL CHECK (interval_ms >= 100),
    admission_validity_ms bigint      NOT NULL CHECK (admission_validity_ms >= 1000),
    heartbeat_timeout_ms  bigint      NOT NULL CHECK (heartbeat_timeout_ms >= 1000),
    state                 text        NOT NULL CHECK (state IN ('scheduled', 'open', 'paused', 'closed')),
    opens_at              timestamptz,
    closes_at             timestamptz,
    updated_at            timestamptz NOT NULL DEFAULT now(),
    CHECK (opens_at IS NULL OR closes_at IS NULL OR opens_at < closes_at)
);
