-- The CDC relay (--relay-mode cdc) reads the outbox's inserts from the transaction log, through a
-- logical replication slot and this publication. Only inserts are published: in CDC mode a
-- message row is inserted and deleted in the same transaction, so the table does not grow.
CREATE PUBLICATION ordership_orders_outbox FOR TABLE orders.outbox WITH (publish = 'insert');
-- The slot the relay created. A slot recorded here but missing from the server was lost, and with
-- it the messages committed since: the relay refuses to start rather than skip them silently.
CREATE TABLE orders.cdc_slot (
    slot_name  text        PRIMARY KEY,
    created_at timestamptz NOT NULL
);
