DROP TABLE delivery.dead_letters;
