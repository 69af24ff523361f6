-- A waiting room may carry the price its SKUs are sold at (the shop's, not the buyer's): an
-- order of them at another price is refused. Both columns or neither.
ALTER TABLE orders.waiting_rooms
    ADD COLUMN unit_price_amount   bigint CHECK (unit_price_amount >= 0),
    ADD COLUMN unit_price_currency text   CHECK (unit_price_currency ~ '^[A-Z]{3}$'),
    ADD CHECK ((unit_price_amount IS NULL) = (unit_price_currency IS NULL));
