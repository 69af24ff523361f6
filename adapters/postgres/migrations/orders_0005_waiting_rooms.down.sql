DROP TABLE orders.waiting_rooms;
