DROP TRIGGER outbox_notify ON orders.outbox;
CREATE OR REPLACE FUNCTION orders.outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('ordership_orders_outbox', '');
    RETURN NULL;
END $$;
CREATE TRIGGER outbox_notify AFTER INSERT ON orders.outbox
    FOR EACH STATEMENT EXECUTE FUNCTION orders.outbox_notify();
DROP FUNCTION orders.reshard_outbox(integer);
DROP FUNCTION orders.lock_relay_shard(integer);
DROP FUNCTION orders.relay_instance_connected(text);
DROP TABLE orders.relay_instances;
DROP TABLE orders.relay_shards;
ALTER TABLE orders.outbox DROP COLUMN key_hash;
