DROP INDEX IF EXISTS delivery.outbox_parked_keys;
ALTER TABLE delivery.outbox DROP COLUMN IF EXISTS parked_reason, DROP COLUMN IF EXISTS parked_at;
