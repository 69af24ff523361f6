-- A waiting room may pause its admissions while this many admitted buyers have not ordered yet
-- (an abuse limit: admissions held by buyers who never order stop letting others in).
ALTER TABLE orders.waiting_rooms ADD COLUMN max_unordered integer CHECK (max_unordered > 0);
