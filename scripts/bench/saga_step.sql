-- One step of the saga as the order service commits it when `DeliveryScheduled` arrives: record
-- the reply in the inbox, lock the saga, read the order, confirm it, complete the saga, and put
-- `OrderConfirmed` in the outbox. Prepare with saga_step_setup.sql, then:
--   pgbench -n -M extended -f scripts/bench/saga_step.sql -c 32 -j 2 -T 20 "$DATABASE_URL"
-- (JSON literals are base64 because pgbench reads `:x` inside them as a variable. The updates
-- write what a confirmation writes but leave the row re-usable for the next iteration.)
\set n random(1, 10000)
SELECT id AS oid, gen_random_uuid() AS mid FROM bench_ids WHERE n = :n \gset
BEGIN;
INSERT INTO orders.inbox (consumer, message_id, received_at) VALUES ('order-service.saga', :mid, now())
    ON CONFLICT DO NOTHING;
SELECT order_id, state, attempts, deadline, failure_reason, version, updated_at
    FROM orders.sagas WHERE order_id = :oid FOR UPDATE;
SELECT id, customer_id, lines, ship_recipient, ship_line1, ship_city, ship_postal_code, ship_country, status,
        delivery_id, cancellation_kind, cancellation_detail, version, created_at, updated_at
    FROM orders.orders WHERE id = :oid;
UPDATE orders.orders SET status = 'pending', delivery_id = gen_random_uuid(), cancellation_kind = NULL,
        cancellation_detail = NULL, version = version + 1, updated_at = now()
    WHERE id = :oid;
UPDATE orders.sagas SET state = 'awaiting_delivery', attempts = 1, deadline = now() + interval '1 day',
        failure_reason = NULL, version = version + 1, updated_at = now()
    WHERE order_id = :oid;
INSERT INTO orders.outbox (message_id, topic, key, message_type, payload, headers, created_at)
    VALUES (gen_random_uuid(), 'ordership.order.events', :oid, 'ordership.order.confirmed.v1',
        convert_from(decode('eyJvcmRlcl9pZCI6IjAwMDAwMDAwLTAwMDAtMDAwMC0wMDAwLTAwMDAwMDAwMDAwMCIsInZlcnNpb24iOjIsInN0YXR1cyI6ImNvbmZpcm1lZCIsImV2ZW50Ijp7ImNvbmZpcm1lZCI6eyJkZWxpdmVyeV9pZCI6IjAwMDAwMDAwLTAwMDAtMDAwMC0wMDAwLTAwMDAwMDAwMDAwMCJ9fX0=', 'base64'), 'UTF8')::jsonb,
        convert_from(decode('eyJzb3VyY2UiOiIvb3JkZXJzaGlwL29yZGVyLXNlcnZpY2UiLCJjb3JyZWxhdGlvbl9pZCI6IjAwMDAwMDAwLTAwMDAtMDAwMC0wMDAwLTAwMDAwMDAwMDAwMCIsImNhdXNhdGlvbl9pZCI6IjAwMDAwMDAwLTAwMDAtMDAwMC0wMDAwLTAwMDAwMDAwMDAwMCIsInRyYWNlcGFyZW50IjoiMDAtMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAtMDAwMDAwMDAwMDAwMDAwMC0wMSJ9', 'base64'), 'UTF8')::jsonb, now());
COMMIT;
