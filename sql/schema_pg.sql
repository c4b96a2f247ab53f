-- flashsale schema for PostgreSQL (--db postgresql://...): several nodes, one database.
-- Compiled into the binary (sql/embed.sh) and applied at start under an advisory lock,
-- so nodes starting together do not race.  The same tables as sql/schema.sql, plus
-- flashsale_buy(): a whole group commit's purchases in one round trip.

CREATE TABLE IF NOT EXISTS flashsale_schema (version INTEGER NOT NULL);

-- Settings every node shares, by name (version 2): 'order_secret', 32 random bytes
-- inserted by the first node to start, keys the order tokens (src/ordertoken.h).
CREATE TABLE IF NOT EXISTS flashsale_meta (name TEXT PRIMARY KEY, value BYTEA NOT NULL);

CREATE TABLE IF NOT EXISTS sales (
  id             BIGSERIAL PRIMARY KEY,
  name           TEXT    NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  stock_total    BIGINT  NOT NULL CHECK (stock_total > 0),
  stock_left     BIGINT  NOT NULL CHECK (stock_left >= 0),
  per_user_limit BIGINT  NOT NULL DEFAULT 1 CHECK (per_user_limit >= 1),
  starts_at      BIGINT,           -- unix seconds
  ends_at        BIGINT,           -- unix seconds
  payment_window BIGINT  NOT NULL DEFAULT 0 CHECK (payment_window >= 0),
  created_at     BIGINT  NOT NULL  -- unix milliseconds
);

CREATE TABLE IF NOT EXISTS orders (
  id              BIGSERIAL PRIMARY KEY,
  sale_id         BIGINT  NOT NULL REFERENCES sales(id),
  user_id         TEXT    NOT NULL CHECK (octet_length(user_id) BETWEEN 1 AND 64),
  quantity        BIGINT  NOT NULL CHECK (quantity >= 1),
  status          TEXT    NOT NULL DEFAULT 'confirmed'
                  CHECK (status IN ('pending', 'paid', 'confirmed', 'cancelled', 'expired')),
  idempotency_key TEXT,
  created_at      BIGINT  NOT NULL,
  expires_at      BIGINT,
  paid_at         BIGINT,
  closed_at       BIGINT
);

CREATE INDEX IF NOT EXISTS orders_sale_user ON orders (sale_id, user_id);
CREATE UNIQUE INDEX IF NOT EXISTS orders_idempotency
  ON orders (sale_id, user_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS orders_pending_expiry ON orders (expires_at) WHERE status = 'pending';

-- A group commit's purchases, in order, in one call.  The arbiter is the same as in
-- SQLite: the guarded UPDATE takes the sale's row lock (so purchases of one sale,
-- from every node, pass one at a time), and only then the user's live units are
-- summed: in READ COMMITTED each statement of this VOLATILE function reads a fresh
-- snapshot, so it sees every order committed before the lock was granted.  A sale
-- that runs out is announced on channel 'flashsale' (NOTIFY is sent at COMMIT).
CREATE OR REPLACE FUNCTION flashsale_buy(
  p_sale BIGINT[], p_user TEXT[], p_qty BIGINT[], p_key TEXT[], p_window BIGINT[],
  p_guarded BOOLEAN[], p_blind BIGINT[], p_now BIGINT)
RETURNS TABLE (idx INTEGER, outcome TEXT, order_id BIGINT, quantity BIGINT, status TEXT,
               created_at BIGINT, expires_at BIGINT)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
  i INTEGER;
  v_left BIGINT;
  v_units BIGINT;
  v_limit BIGINT;
  o RECORD;
BEGIN
  FOR i IN 1 .. coalesce(array_length(p_sale, 1), 0) LOOP
    idx := i;
    IF p_key[i] IS NOT NULL THEN
      SELECT * INTO o FROM orders
       WHERE orders.sale_id = p_sale[i] AND orders.user_id = p_user[i] AND orders.idempotency_key = p_key[i];
      IF FOUND THEN
        outcome := 'replay'; order_id := o.id; quantity := o.quantity; status := o.status;
        created_at := o.created_at; expires_at := o.expires_at;
        RETURN NEXT;
        CONTINUE;
      END IF;
    END IF;
    IF p_guarded[i] THEN
      UPDATE sales SET stock_left = stock_left - p_qty[i]
       WHERE id = p_sale[i] AND stock_left >= p_qty[i]
      RETURNING stock_left, per_user_limit INTO v_left, v_limit;
      IF NOT FOUND THEN
        SELECT per_user_limit INTO v_limit FROM sales WHERE id = p_sale[i];
        IF NOT FOUND THEN
          outcome := 'not_found';
        ELSE
          SELECT coalesce(sum(orders.quantity), 0) INTO v_units FROM orders
           WHERE orders.sale_id = p_sale[i] AND orders.user_id = p_user[i]
             AND orders.status IN ('pending', 'paid', 'confirmed');
          outcome := CASE WHEN v_units + p_qty[i] > v_limit THEN 'limit_exceeded' ELSE 'sold_out' END;
          IF outcome = 'sold_out' THEN PERFORM pg_notify('flashsale', 'soldout:' || p_sale[i]); END IF;
        END IF;
        order_id := NULL; quantity := NULL; status := NULL; created_at := NULL; expires_at := NULL;
        RETURN NEXT;
        CONTINUE;
      END IF;
      SELECT coalesce(sum(orders.quantity), 0) INTO v_units FROM orders
       WHERE orders.sale_id = p_sale[i] AND orders.user_id = p_user[i]
         AND orders.status IN ('pending', 'paid', 'confirmed');
      IF v_units + p_qty[i] > v_limit THEN
        UPDATE sales SET stock_left = stock_left + p_qty[i] WHERE id = p_sale[i];
        outcome := 'limit_exceeded';
        order_id := NULL; quantity := NULL; status := NULL; created_at := NULL; expires_at := NULL;
        RETURN NEXT;
        CONTINUE;
      END IF;
      IF v_left = 0 THEN PERFORM pg_notify('flashsale', 'soldout:' || p_sale[i]); END IF;
    ELSE
      -- the unsafe strategy's blind write, for teaching only
      UPDATE sales SET stock_left = p_blind[i] WHERE id = p_sale[i];
    END IF;
    INSERT INTO orders (sale_id, user_id, quantity, status, idempotency_key, created_at, expires_at)
    VALUES (p_sale[i], p_user[i], p_qty[i],
            CASE WHEN p_window[i] > 0 THEN 'pending' ELSE 'confirmed' END, p_key[i], p_now,
            CASE WHEN p_window[i] > 0 THEN p_now + p_window[i] * 1000 END)
    RETURNING orders.id, orders.quantity, orders.status, orders.created_at, orders.expires_at
      INTO order_id, quantity, status, created_at, expires_at;
    outcome := 'ok';
    RETURN NEXT;
  END LOOP;
END;
$$;
