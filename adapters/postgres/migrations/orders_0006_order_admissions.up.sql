-- The waiting-room admission an order was placed with. One admission buys one order, and a
-- buyer orders once per room: both are enforced here, in the order's own transaction.
ALTER TABLE orders.orders
    ADD COLUMN admission_room text,
    ADD COLUMN admission_id   text,
    ADD CHECK ((admission_room IS NULL) = (admission_id IS NULL));
CREATE UNIQUE INDEX orders_admission_id ON orders.orders (admission_id) WHERE admission_id IS NOT NULL;
CREATE UNIQUE INDEX orders_admission_room_customer ON orders.orders (admission_room, customer_id)
    WHERE admission_room IS NOT NULL;
