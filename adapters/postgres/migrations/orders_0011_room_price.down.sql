ALTER TABLE orders.waiting_rooms DROP COLUMN unit_price_currency, DROP COLUMN unit_price_amount;
