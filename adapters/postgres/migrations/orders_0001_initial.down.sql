DROP TRIGGER IF EXISTS outbox_notify ON orders.outbox;
DROP FUNCTION IF EXISTS orders.outbox_notify();
DROP TABLE IF EXISTS orders.inbox;
DROP TABLE IF EXISTS orders.outbox;
DROP TABLE IF EXISTS orders.idempotency_keys;
DROP TABLE IF EXISTS orders.sagas;
DROP TABLE IF EXISTS orders.orders;
