DROP TABLE delivery.cdc_slot;
DROP PUBLICATION ordership_delivery_outbox;
