DROP TRIGGER outbox_notify ON delivery.outbox;
CREATE OR REPLACE FUNCTION delivery.outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('ordership_delivery_outbox', '');
    RETURN NULL;
END $$;
CREATE TRIGGER outbox_notify AFTER INSERT ON delivery.outbox
    FOR EACH STATEMENT EXECUTE FUNCTION delivery.outbox_notify();
DROP FUNCTION delivery.reshard_outbox(integer);
DROP FUNCTION delivery.lock_relay_shard(integer);
DROP FUNCTION delivery.relay_instance_connected(text);
DROP TABLE delivery.relay_instances;
DROP TABLE delivery.relay_shards;
ALTER TABLE delivery.outbox DROP COLUMN key_hash;
