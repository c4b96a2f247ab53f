-- Schema version 2 -> 3: settings the database keeps for every run, by name.
-- 'order_secret' (32 random bytes, written once at start when missing) keys the
-- order tokens: an order is read, paid or cancelled only with its token.
CREATE TABLE IF NOT EXISTS meta (
  name  TEXT PRIMARY KEY,
  value BLOB NOT NULL
) WITHOUT ROWID;
