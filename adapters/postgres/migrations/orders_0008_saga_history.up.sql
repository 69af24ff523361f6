-- Every step of a saga, written in the step's transaction: what moved it (the cause, and the
-- message if a reply), what it sent, and the state of the order and the saga after it. `seq` is
-- the sum of the order's and the saga's versions, so an order's steps are numbered in commit
-- order. Clients follow it (event streams, long polls); operators read it.
CREATE TABLE orders.saga_history (
    order_id            uuid        NOT NULL REFERENCES orders.orders (id),
    seq                 bigint      NOT NULL CHECK (seq > 0),
    at                  timestamptz NOT NULL,
    cause               text        NOT NULL,
    message_id          uuid,
    message_type        text,
    order_status        text        NOT NULL,
    cancellation_kind   text,
    cancellation_detail text,
    saga_state          text        NOT NULL,
    attempts            integer     NOT NULL,
    failure_reason      text,
    sent                uuid[]      NOT NULL,
    -- An operator's action: who (the token's subject) and why.
    actor               text,
    note                text,
    PRIMARY KEY (order_id, seq),
    CHECK ((actor IS NOT NULL) = (cause LIKE 'operator_%'))
);

-- Operators list failed sagas most; the other states are read by a scan of the primary key.
CREATE INDEX sagas_failed ON orders.sagas (order_id) WHERE state = 'failed';

-- Announce each committed step, so readers waiting for the order wake up whichever instance
-- wrote it. Notifications are delivered at commit, and identical ones of one transaction once.
CREATE FUNCTION orders.order_changed_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('ordership_order_changed', NEW.order_id::text);
    RETURN NULL;
END $$;
CREATE TRIGGER order_changed_notify AFTER INSERT ON orders.saga_history
    FOR EACH ROW EXECUTE FUNCTION orders.order_changed_notify();
