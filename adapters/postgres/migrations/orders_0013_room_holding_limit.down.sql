ALTER TABLE orders.waiting_rooms DROP COLUMN max_unordered;
