ALTER TABLE orders.orders DROP COLUMN admission_units;
DROP TABLE orders.room_stock;
