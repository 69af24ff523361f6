DROP TABLE orders.dead_letters;
