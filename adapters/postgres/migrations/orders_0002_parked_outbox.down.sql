DROP INDEX IF EXISTS orders.outbox_parked_keys;
ALTER TABLE orders.outbox DROP COLUMN IF EXISTS parked_reason, DROP COLUMN IF EXISTS parked_at;
