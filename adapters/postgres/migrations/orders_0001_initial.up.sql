-- The order service's schema: orders, their fulfilment sagas, idempotency keys, outbox, inbox.

CREATE TABLE orders.orders (
    id                  uuid        PRIMARY KEY,
    customer_id         text        NOT NULL,
    lines               jsonb       NOT NULL,
    total_amount        bigint      NOT NULL CHECK (total_amount >= 0),
    currency            char(3)     NOT NULL,
    ship_recipient      text        NOT NULL,
    ship_line1          text        NOT NULL,
    ship_city           text        NOT NULL,
    ship_postal_code    text        NOT NULL,
    ship_country        char(2)     NOT NULL,
    status              text        NOT NULL CHECK (status IN ('pending', 'confirmed', 'shipped', 'delivered', 'cancelled')),
    delivery_id         uuid,
    cancellation_kind   text,
    cancellation_detail text,
    version             bigint      NOT NULL CHECK (version > 0),
    created_at          timestamptz NOT NULL,
    updated_at          timestamptz NOT NULL
);
-- GET /orders?status=…&after=…: by status, then id (UUID v7: creation order).
CREATE INDEX orders_status_id ON orders.orders (status, id);

CREATE TABLE orders.sagas (
    order_id       uuid        PRIMARY KEY REFERENCES orders.orders (id),
    state          text        NOT NULL CHECK (state IN ('awaiting_delivery', 'cancelling', 'completed', 'compensated', 'failed')),
    attempts       integer     NOT NULL CHECK (attempts > 0),
    deadline       timestamptz,
    failure_reason text,
    version        bigint      NOT NULL CHECK (version > 0),
    updated_at     timestamptz NOT NULL,
    CHECK ((deadline IS NOT NULL) = (state IN ('awaiting_delivery', 'cancelling')))
);
-- The deadline sweeper reads only sagas that wait.
CREATE INDEX sagas_deadline ON orders.sagas (deadline) WHERE deadline IS NOT NULL;

CREATE TABLE orders.idempotency_keys (
    scope           text        NOT NULL,
    key             text        NOT NULL,
    fingerprint     text        NOT NULL,
    response_status smallint,
    response_body   bytea,
    created_at      timestamptz NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_keys_created_at ON orders.idempotency_keys (created_at);

CREATE TABLE orders.outbox (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id   uuid        NOT NULL UNIQUE,
    topic        text        NOT NULL,
    key          text        NOT NULL,
    message_type text        NOT NULL,
    payload      jsonb       NOT NULL,
    headers      jsonb       NOT NULL,
    created_at   timestamptz NOT NULL,
    published_at timestamptz
);
-- The relay's claim: unpublished rows in id order.
CREATE INDEX outbox_unpublished ON orders.outbox (id) WHERE published_at IS NULL;
CREATE INDEX outbox_published_at ON orders.outbox (published_at) WHERE published_at IS NOT NULL;

CREATE TABLE orders.inbox (
    consumer    text        NOT NULL,
    message_id  uuid        NOT NULL,
    received_at timestamptz NOT NULL,
    PRIMARY KEY (consumer, message_id)
);
CREATE INDEX inbox_received_at ON orders.inbox (received_at);

-- Wake the relay when a transaction that wrote to the outbox commits (notifications are
-- delivered at commit, once per statement is enough).
CREATE FUNCTION orders.outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('ordership_orders_outbox', '');
    RETURN NULL;
END $$;
CREATE TRIGGER outbox_notify AFTER INSERT ON orders.outbox
    FOR EACH STATEMENT EXECUTE FUNCTION orders.outbox_notify();
