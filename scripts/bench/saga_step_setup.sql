-- Setup for saga_step.sql: 10 000 pending orders with their sagas, and a numbered index of their
-- ids so pgbench can pick one at random. Run once on a database migrated by `ordership migrate`.
CREATE TABLE IF NOT EXISTS bench_ids (n integer PRIMARY KEY, id uuid NOT NULL);
TRUNCATE bench_ids;
INSERT INTO bench_ids SELECT g, gen_random_uuid() FROM generate_series(1, 10000) g;
INSERT INTO orders.orders (id, customer_id, lines, total_amount, currency, ship_recipient, ship_line1, ship_city,
        ship_postal_code, ship_country, status, version, created_at, updated_at)
    SELECT id, 'c-42', '[{"sku":"ABC-123","quantity":2,"unit_price":{"amount":1250,"currency":"KRW"}}]', 2500, 'KRW',
        'Kim', '1 Sejong-daero', 'Seoul', '04524', 'KR', 'pending', 1, now(), now()
    FROM bench_ids;
INSERT INTO orders.sagas (order_id, state, attempts, deadline, version, updated_at)
    SELECT id, 'awaiting_delivery', 1, now() + interval '1 day', 1, now() FROM bench_ids;
