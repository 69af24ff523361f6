-- The outbox in shards (ADR 0028): every message belongs to the shard key_hash % (the number of
-- rows of orders.relay_shards), so one key's messages are all in one shard, and relay
-- instances publish different shards at once, each shard by one relay at a time.
-- The hash is PostgreSQL's own hash of text (the one hash partitioning uses, so it does not
-- change between versions), kept non-negative.
ALTER TABLE orders.outbox
    ADD COLUMN key_hash integer NOT NULL
    GENERATED ALWAYS AS ((hashtextextended(key, 0) & 2147483647)::integer) STORED;

-- One row per shard: its count is the outbox's shard count (4 to begin with; `ordership outbox
-- reshard --shards N` changes it), and its lease says which relay instance publishes it.
CREATE TABLE orders.relay_shards (
    shard        integer     PRIMARY KEY CHECK (shard >= 0),
    owner        text,
    leased_until timestamptz
);
INSERT INTO orders.relay_shards (shard) SELECT generate_series(0, 3);

-- The relay instances alive, so that each can compute its fair share of the shards.
CREATE TABLE orders.relay_instances (
    owner      text        PRIMARY KEY,
    seen_until timestamptz NOT NULL
);

-- Whether relay instance `owner` is connected: each holds a session lock keyed by its name on a
-- connection of its own for as long as it runs, so an instance that died (its connection gone)
-- counts as gone at once, and its leases with it, before they would expire.
CREATE FUNCTION orders.relay_instance_connected(owner text) RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT EXISTS (
        SELECT 1 FROM pg_locks
        WHERE locktype = 'advisory' AND granted AND objsubid = 2
          AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
          AND classid = hashtext('orders.relay-instance')::oid AND objid = hashtext(owner)::oid)
$$;

-- The relay right of one shard for the rest of the transaction, and the shard count read once
-- it is held (NULL: another relay holds it). A statement reads as of its start, so the count is
-- read by a statement of its own, after the lock: a resharding holds every right while it
-- changes the count, so a relay never publishes by a count that is no longer true.
CREATE FUNCTION orders.lock_relay_shard(shard integer) RETURNS integer LANGUAGE plpgsql AS $$
BEGIN
    -- Relays from before the shards take this outbox's one relay lock exclusively: holding it
    -- shared (as every shard's relay does, without excluding each other) keeps them out while
    -- a rolling upgrade runs both.
    IF NOT pg_try_advisory_xact_lock_shared(hashtextextended('orders.outbox-relay', 0))
        OR NOT pg_try_advisory_xact_lock(hashtext('orders.outbox-relay'), shard) THEN
        RETURN NULL;
    END IF;
    RETURN (SELECT count(*) FROM orders.relay_shards);
END $$;

-- Changes the shard count, online: with the renewals held off and every relay right (old and
-- new shards) held, no relay is publishing; messages still waiting belong to their new shards at
-- once (their hash is kept, not their shard), in the same order.
CREATE FUNCTION orders.reshard_outbox(shards integer) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    old integer;
BEGIN
    IF shards < 1 OR shards > 1024 THEN
        RAISE EXCEPTION 'an outbox has 1 to 1024 shards, not %', shards;
    END IF;
    LOCK TABLE orders.relay_shards IN EXCLUSIVE MODE;
    SELECT count(*) INTO old FROM orders.relay_shards;
    PERFORM pg_advisory_xact_lock(hashtext('orders.outbox-relay'), s)
        FROM generate_series(0, greatest(old, shards) - 1) s;
    DELETE FROM orders.relay_shards WHERE shard >= shards;
    INSERT INTO orders.relay_shards (shard) SELECT generate_series(old, shards - 1);
END $$;

-- The wake-up says whose messages committed: the distinct key hashes of the statement's rows
-- (up to 200; more, or none, send '' for "any shard"), so only the relays of their shards look.
CREATE OR REPLACE FUNCTION orders.outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('ordership_orders_outbox', coalesce((
        SELECT CASE WHEN count(*) <= 200 THEN string_agg(h::text, ',') ELSE '' END
        FROM (SELECT DISTINCT key_hash AS h FROM inserted) hashes), ''));
    RETURN NULL;
END $$;
DROP TRIGGER outbox_notify ON orders.outbox;
CREATE TRIGGER outbox_notify AFTER INSERT ON orders.outbox REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION orders.outbox_notify();
