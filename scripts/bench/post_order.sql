-- The SQL one `POST /orders` with an Idempotency-Key commits (ordership-postgres), for pgbench:
-- claim the key, insert order and saga, two outbox rows (OrderPlaced, ScheduleDelivery), store
-- the response under the key. JSON literals are base64 because pgbench reads `:x` as a variable.
-- Run on a database migrated by `ordership migrate`:
--   pgbench -n -M extended -f scripts/bench/post_order.sql -c 32 -j 2 -T 20 "$DATABASE_URL"
SELECT gen_random_uuid() AS oid, gen_random_uuid()::text AS k \gset
BEGIN;
INSERT INTO orders.idempotency_keys (scope, key, fingerprint, created_at)
    VALUES ('POST /orders', :k, '5d41402abc4b2a76b9719d911017c592aaf0d7e0c2d2b1b6c7e8f9a0b1c2d3e4', now())
    ON CONFLICT DO NOTHING;
INSERT INTO orders.orders (id, customer_id, lines, total_amount, currency, ship_recipient, ship_line1, ship_city,
        ship_postal_code, ship_country, status, delivery_id, cancellation_kind, cancellation_detail, version,
        created_at, updated_at)
    VALUES (:oid, 'c-42', convert_from(decode('W3sic2t1IjoiQUJDLTEyMyIsInF1YW50aXR5IjoyLCJ1bml0X3ByaWNlIjp7ImFtb3VudCI6MTI1MCwiY3VycmVuY3kiOiJLUlcifX1d', 'base64'), 'UTF8')::jsonb,
        2500, 'KRW', 'Kim', '1 Sejong-daero', 'Seoul', '04524', 'KR', 'pending', NULL, NULL, NULL, 1, now(), now());
INSERT INTO orders.sagas (order_id, state, attempts, deadline, failure_reason, version, updated_at)
    VALUES (:oid, 'awaiting_delivery', 1, now() + interval '10 seconds', NULL, 1, now());
INSERT INTO orders.outbox (message_id, topic, key, message_type, payload, headers, created_at)
    VALUES (gen_random_uuid(), 'ordership.order.events', :oid, 'ordership.order.placed.v1',
        convert_from(decode('eyJvcmRlcl9pZCI6IjAwMDAwMDAwLTAwMDAtMDAwMC0wMDAwLTAwMDAwMDAwMDAwMCIsInZlcnNpb24iOjEsInN0YXR1cyI6InBlbmRpbmciLCJldmVudCI6eyJwbGFjZWQiOnsiY3VzdG9tZXJfaWQiOiJjLTQyIiwibGluZXMiOlt7InNrdSI6IkFCQy0xMjMiLCJxdWFudGl0eSI6MiwidW5pdF9wcmljZSI6eyJhbW91bnQiOjEyNTAsImN1cnJlbmN5IjoiS1JXIn19XSwidG90YWwiOnsiYW1vdW50IjoyNTAwLCJjdXJyZW5jeSI6IktSVyJ9LCJzaGlwcGluZ19hZGRyZXNzIjp7InJlY2lwaWVudCI6IktpbSIsImxpbmUxIjoiMSBTZWpvbmctZGFlcm8iLCJjaXR5IjoiU2VvdWwiLCJwb3N0YWxfY29kZSI6IjA0NTI0IiwiY291bnRyeSI6IktSIn19fX0=', 'base64'), 'UTF8')::jsonb,
        convert_from(decode('eyJzb3VyY2UiOiIvb3JkZXJzaGlwL29yZGVyLXNlcnZpY2UiLCJjb3JyZWxhdGlvbl9pZCI6IjAwMDAwMDAwLTAwMDAtMDAwMC0wMDAwLTAwMDAwMDAwMDAwMCIsImNhdXNhdGlvbl9pZCI6bnVsbCwidHJhY2VwYXJlbnQiOiIwMC0wMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMC0wMDAwMDAwMDAwMDAwMDAwLTAxIn0=', 'base64'), 'UTF8')::jsonb,
        now());
INSERT INTO orders.outbox (message_id, topic, key, message_type, payload, headers, created_at)
    VALUES (gen_random_uuid(), 'ordership.delivery.commands', :oid, 'ordership.delivery.schedule.v1',
        convert_from(decode('eyJvcmRlcl9pZCI6IjAwMDAwMDAwLTAwMDAtMDAwMC0wMDAwLTAwMDAwMDAwMDAwMCIsInNoaXBwaW5nX2FkZHJlc3MiOnsicmVjaXBpZW50IjoiS2ltIiwibGluZTEiOiIxIFNlam9uZy1kYWVybyIsImNpdHkiOiJTZW91bCIsInBvc3RhbF9jb2RlIjoiMDQ1MjQiLCJjb3VudHJ5IjoiS1IifX0=', 'base64'), 'UTF8')::jsonb,
        convert_from(decode('eyJzb3VyY2UiOiIvb3JkZXJzaGlwL29yZGVyLXNlcnZpY2UiLCJjb3JyZWxhdGlvbl9pZCI6IjAwMDAwMDAwLTAwMDAtMDAwMC0wMDAwLTAwMDAwMDAwMDAwMCIsImNhdXNhdGlvbl9pZCI6bnVsbCwidHJhY2VwYXJlbnQiOiIwMC0wMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMC0wMDAwMDAwMDAwMDAwMDAwLTAxIn0=', 'base64'), 'UTF8')::jsonb,
        now());
UPDATE orders.idempotency_keys SET response_status = 201, response_body = convert_to(repeat('x', 560), 'UTF8')
    WHERE scope = 'POST /orders' AND key = :k;
COMMIT;
