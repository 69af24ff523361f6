-- The delivery service's schema: deliveries, outbox, inbox.

CREATE TABLE delivery.deliveries (
    id               uuid        PRIMARY KEY,
    -- At most one delivery per order: the last line of defence behind the idempotent handler.
    order_id         uuid        NOT NULL CONSTRAINT deliveries_one_per_order UNIQUE,
    ship_recipient   text        NOT NULL,
    ship_line1       text        NOT NULL,
    ship_city        text        NOT NULL,
    ship_postal_code text        NOT NULL,
    ship_country     char(2)     NOT NULL,
    status           text        NOT NULL CHECK (status IN ('scheduled', 'shipped', 'delivered', 'cancelled')),
    eta              timestamptz NOT NULL,
    version          bigint      NOT NULL CHECK (version > 0),
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL
);
-- Daily capacity per region: live deliveries by country and day.
CREATE INDEX deliveries_live_by_country ON delivery.deliveries (ship_country, created_at)
    WHERE status <> 'cancelled';

CREATE TABLE delivery.outbox (
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
CREATE INDEX outbox_unpublished ON delivery.outbox (id) WHERE published_at IS NULL;
CREATE INDEX outbox_published_at ON delivery.outbox (published_at) WHERE published_at IS NOT NULL;

CREATE TABLE delivery.inbox (
    consumer    text        NOT NULL,
    message_id  uuid        NOT NULL,
    received_at timestamptz NOT NULL,
    PRIMARY KEY (consumer, message_id)
);
CREATE INDEX inbox_received_at ON delivery.inbox (received_at);

CREATE FUNCTION delivery.outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('ordership_delivery_outbox', '');
    RETURN NULL;
END $$;
CREATE TRIGGER outbox_notify AFTER INSERT ON delivery.outbox
    FOR EACH STATEMENT EXECUTE FUNCTION delivery.outbox_notify();
