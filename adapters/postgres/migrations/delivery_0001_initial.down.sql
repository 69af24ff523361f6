DROP TRIGGER IF EXISTS outbox_notify ON delivery.outbox;
DROP FUNCTION IF EXISTS delivery.outbox_notify();
DROP TABLE IF EXISTS delivery.inbox;
DROP TABLE IF EXISTS delivery.outbox;
DROP TABLE IF EXISTS delivery.deliveries;
