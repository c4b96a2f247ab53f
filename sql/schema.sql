-- flashsale schema for SQLite (the embedded default store).
-- Compiled into the binary (sql/embed.sh); applied to an empty database, which then
-- gets PRAGMA user_version = 3.  Older databases are brought up to date by the
-- files in sql/migrations/ (sqlite-<version>-*.sql), in order, at start.
-- The database is the source of truth: the in-memory counters are rebuilt from
-- these tables at every start, and the CHECKs are the last line against oversell.

CREATE TABLE IF NOT EXISTS sales (
  id             INTEGER PRIMARY KEY,
  name           TEXT    NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  stock_total    INTEGER NOT NULL CHECK (stock_total > 0),
  stock_left     INTEGER NOT NULL CHECK (stock_left >= 0),
  per_user_limit INTEGER NOT NULL DEFAULT 1 CHECK (per_user_limit >= 1),
  starts_at      INTEGER,          -- unix seconds, NULL = open from creation
  ends_at        INTEGER,          -- unix seconds, NULL = never ends
  payment_window INTEGER NOT NULL DEFAULT 0 CHECK (payment_window >= 0),
  created_at     INTEGER NOT NULL  -- unix milliseconds
);

-- One row per purchase.  status leaves room for the payment window:
-- pending/paid/confirmed hold stock, cancelled/expired gave it back.
CREATE TABLE IF NOT EXISTS orders (
  id              INTEGER PRIMARY KEY,
  sale_id         INTEGER NOT NULL REFERENCES sales(id),
  user_id         TEXT    NOT NULL CHECK (length(CAST(user_id AS BLOB)) BETWEEN 1 AND 64),
  quantity        INTEGER NOT NULL CHECK (quantity >= 1),
  status          TEXT    NOT NULL DEFAULT 'confirmed'
                  CHECK (status IN ('pending', 'paid', 'confirmed', 'cancelled', 'expired')),
  idempotency_key TEXT,
  created_at      INTEGER NOT NULL, -- unix milliseconds
  expires_at      INTEGER,          -- unix milliseconds, pending orders only
  paid_at         INTEGER,          -- unix milliseconds
  closed_at       INTEGER           -- unix milliseconds: when cancelled or expired (v2)
);

-- Settings kept for every run, by name (v3): 'order_secret', 32 random bytes
-- written once at start, keys the order tokens (src/ordertoken.h).
CREATE TABLE IF NOT EXISTS meta (
  name  TEXT PRIMARY KEY,
  value BLOB NOT NULL
) WITHOUT ROWID;

-- No index on (sale_id, user_id) here: with a memory gate (--inventory atomic or
-- mutex) the ledger decides the per-user limit and SQL re-checks the stock only, and
-- that index was the most expensive part of every purchase (4.4 of 7.6 WAL pages
-- per group commit of 31).  --inventory sqlite decides the limit in SQL, so for it
-- the store creates orders_sale_user at start (and drops it for the others).

-- An idempotency key names one order per (sale, user); a replay finds it here.
CREATE UNIQUE INDEX IF NOT EXISTS orders_idempotency
  ON orders (sale_id, user_id, idempotency_key) WHERE idempotency_key IS NOT NULL;

-- The expiry sweeper looks for pending orders by deadline.
CREATE INDEX IF NOT EXISTS orders_pending_expiry
  ON orders (expires_at) WHERE status = 'pending';
