-- Schema version 1 -> 2: the payment window.
-- Cancelled and expired orders record when they gave their units back.
ALTER TABLE orders ADD COLUMN closed_at INTEGER;
