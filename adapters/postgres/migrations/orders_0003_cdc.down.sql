DROP TABLE orders.cdc_slot;
DROP PUBLICATION ordership_orders_outbox;
