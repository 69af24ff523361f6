-- A waiting room's stock: the units on sale (`total`, the shop's; NULL while the room counts no
-- stock) and the units live orders hold (`sold`). An order takes its units in its own
-- transaction and gives them back in the transaction that cancels it; the checks make an
-- oversell impossible whatever the concurrency. The row outlives a room that stops counting,
-- so counting again starts from the units still held.
CREATE TABLE orders.room_stock (
    room  text    PRIMARY KEY REFERENCES orders.waiting_rooms (id) ON DELETE CASCADE,
    total integer CHECK (total >= 0),
    sold  integer NOT NULL DEFAULT 0 CHECK (sold >= 0),
    CHECK (total IS NULL OR sold <= total)
);
-- The units of its room's stock an order holds (0: the room counted none).
ALTER TABLE orders.orders
    ADD COLUMN admission_units integer NOT NULL DEFAULT 0 CHECK (admission_units >= 0);
