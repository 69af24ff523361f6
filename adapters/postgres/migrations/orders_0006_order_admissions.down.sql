DROP INDEX orders.orders_admission_room_customer;
DROP INDEX orders.orders_admission_id;
ALTER TABLE orders.orders DROP COLUMN admission_id, DROP COLUMN admission_room;
