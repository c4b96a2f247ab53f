"""The payment window: pending -> paid | cancelled | expired, with stock returned exactly once.

Part one is the contract (pay, cancel, expiry, errors, restart).  Part two is a crowd
where buyers pay, cancel, let orders lapse, or pay right at the deadline to race the
sweeper; an auditor checks the invariant the whole time:
    stock_total == stock_left + pending + paid + confirmed
Usage: tests/test_lifecycle.py [BINARY]
"""
import os
import random
import sys
import threading
import time
from datetime import datetime

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Client, Server, check, finish, metric  # noqa: E402

SUITE = "lifecycle"
BINARY = sys.argv[1] if len(sys.argv) > 1 else None


def ts(rfc3339):
    return datetime.strptime(rfc3339, "%Y-%m-%dT%H:%M:%S.%fZ").timestamp() if rfc3339 else None


def until(cond, deadline=60):
    """Polls cond() until it holds or the (generous) deadline passes; its last value.
    For what the sweeper does in the background: when it runs is the machine's
    business, what it did is the test's."""
    end = time.time() + deadline
    while True:
        got = cond()
        if got or time.time() > end:
            return got
        time.sleep(0.1)


def contract(srv):
    c = srv.client()
    w = c.create_sale(name="Pay later", stock=3, per_user_limit=1, payment_window=2)
    plain = c.create_sale(name="Pay now", stock=3)
    sale = c.get(f"/api/v1/sales/{w}").json
    check(SUITE, "sale_shows_payment_window", sale["payment_window"] == 2 and sale["pending"] == 0, repr(sale))

    r = c.post(f"/api/v1/sales/{w}/orders", {"user_id": "u1"})
    o1 = r.json
    check(SUITE, "order_pending_with_expiry", r.status == 201 and o1["status"] == "pending" and o1["paid_at"] is None
          and 1.5 < ts(o1["expires_at"]) - ts(o1["created_at"]) < 2.5, repr(r))
    oid = o1["order_id"]
    r = c.order(o1, "pay", {"user_id": "someone-else"})
    check(SUITE, "pay_by_other_user_403", r.status == 403 and r.error() == "forbidden", repr(r))
    r = c.order(o1, "pay", {"user_id": "u1"})
    check(SUITE, "pay_200_paid", r.status == 200 and r.json["status"] == "paid" and r.json["paid_at"], repr(r))
    paid_at = r.json["paid_at"]
    r = c.order(o1, "pay", {"user_id": "u1"})
    check(SUITE, "pay_again_idempotent", r.status == 200 and r.json["status"] == "paid" and r.json["paid_at"] == paid_at,
          repr(r))
    r = c.order(o1, "cancel", {"user_id": "u1"})
    check(SUITE, "cancel_paid_409", r.status == 409 and r.error() == "order_final", repr(r))
    r = c.order(o1)
    check(SUITE, "get_order_shows_paid", r.json["status"] == "paid" and r.json["paid_at"] == paid_at, repr(r))

    r = c.post(f"/api/v1/sales/{w}/orders", {"user_id": "u2"})
    o2 = r.json
    left = c.get(f"/api/v1/sales/{w}").json["stock_left"]
    r = c.order(o2, "cancel", {"user_id": "u2"})
    after = c.get(f"/api/v1/sales/{w}").json
    check(SUITE, "cancel_200_returns_unit_at_once", r.status == 200 and r.json["status"] == "cancelled"
          and after["stock_left"] == left + 1 and after["cancelled"] == 1, f"{r} {left} -> {after}")
    r = c.order(o2, "cancel", {"user_id": "u2"})
    check(SUITE, "cancel_again_idempotent", r.status == 200 and r.json["status"] == "cancelled"
          and c.get(f"/api/v1/sales/{w}").json["stock_left"] == left + 1, repr(r))
    r = c.order(o2, "pay", {"user_id": "u2"})
    check(SUITE, "pay_cancelled_409", r.status == 409 and r.error() == "order_cancelled", repr(r))
    r = c.post(f"/api/v1/sales/{w}/orders", {"user_id": "u2"})
    check(SUITE, "limit_counts_live_orders_only", r.status == 201, repr(r))

    r = c.post(f"/api/v1/sales/{w}/orders", {"user_id": "u3"})
    o3 = r.json
    r = c.post(f"/api/v1/sales/{w}/orders", {"user_id": "u4"})
    check(SUITE, "window_sale_sold_out", r.status == 409 and r.error() == "sold_out", repr(r))
    # The window (2 s) passes and the sweeper (every 100 ms, or later on a busy
    # machine) expires u3's order and u2's second one, without anyone asking.
    time.sleep(2)
    until(lambda: c.order(o3).json["status"] == "expired" and c.get(f"/api/v1/sales/{w}").json["expired"] == 2)
    r = c.order(o3)
    sale = c.get(f"/api/v1/sales/{w}").json
    # u3's order and u2's second one lapsed; u1's is paid
    check(SUITE, "sweeper_expires_and_returns", r.json["status"] == "expired" and sale["expired"] == 2
          and sale["stock_left"] == 2 and sale["pending"] == 0 and sale["paid"] == 1, f"{r} {sale}")
    r = c.order(o3, "pay", {"user_id": "u3"})
    check(SUITE, "pay_expired_409", r.status == 409 and r.error() == "order_expired", repr(r))
    r = c.order(o3, "cancel", {"user_id": "u3"})
    check(SUITE, "cancel_expired_409", r.status == 409 and r.error() == "order_expired", repr(r))
    r = c.post(f"/api/v1/sales/{w}/orders", {"user_id": "u4"})
    check(SUITE, "returned_units_sell_again", r.status == 201, repr(r))

    r = c.post(f"/api/v1/sales/{plain}/orders", {"user_id": "p1"})
    check(SUITE, "no_window_confirmed", r.status == 201 and r.json["status"] == "confirmed" and r.json["expires_at"] is None,
          repr(r))
    po = r.json
    r = c.order(po, "pay", {"user_id": "p1"})
    check(SUITE, "pay_confirmed_unchanged", r.status == 200 and r.json["status"] == "confirmed", repr(r))
    r = c.order(po, "cancel", {"user_id": "p1"})
    check(SUITE, "cancel_confirmed_409", r.status == 409 and r.error() == "order_final", repr(r))
    for name, o, action, body, status, error in [
        ("pay_unknown_order_404", {"order_id": 999999, "order_token": po["order_token"]}, "pay", {"user_id": "x"},
         404, "not_found"),
        ("pay_without_token_404", {"order_id": po["order_id"]}, "pay", {"user_id": "p1"}, 404, "not_found"),
        ("pay_unknown_field_400", po, "pay", {"user_id": "p1", "x": 1}, 400, "invalid_request"),
        ("cancel_wrong_type_400", po, "cancel", {"user_id": 5}, 400, "invalid_request"),
        ("cancel_bad_json_400", po, "cancel", "not json", 400, "invalid_request"),
        # the token is the proof: the user id may be left out (but not be wrong)
        ("pay_empty_object_200", po, "pay", {}, 200, None),
        ("pay_null_user_200", po, "pay", {"user_id": None}, 200, None),
        ("pay_no_body_200", po, "pay", None, 200, None),
        ("cancel_no_body_409", po, "cancel", None, 409, "order_final"),
        ("cancel_other_user_403", po, "cancel", {"user_id": "p2"}, 403, "forbidden"),
    ]:
        r = c.order(o, action, body)
        check(SUITE, name, r.status == status and r.error() == error, repr(r))
    r = c.order(po, "pay", headers={"Content-Type": "text/plain"})
    check(SUITE, "pay_wrong_content_type_415", r.status == 415, repr(r))
    r = c.request("POST", f"/api/v1/orders/{po['order_id']}/pay", body='{"user_id":"p1"}',
                  headers={"Content-Type": "text/plain"})
    check(SUITE, "pay_wrong_content_type_no_token_404", r.status == 404, repr(r))
    r = c.get(f"/api/v1/orders/{po['order_id']}/pay")
    check(SUITE, "pay_get_405", r.status == 405 and r.header("Allow") == "POST", repr(r))

    audit = c.get(f"/api/v1/sales/{w}/audit").json
    check(SUITE, "audit_by_status", audit["consistent"] and audit["paid"] == 1 and audit["expired"] == 2
          and audit["cancelled"] == 1 and audit["pending"] == 1
          and audit["stock_left"] + audit["pending"] + audit["paid"] + audit["confirmed"] == audit["stock_total"],
          repr(audit))
    text = c.get("/metrics").raw.decode()
    check(SUITE, "metrics_lifecycle", metric(text, "flashsale_orders_paid_total") == 1
          and metric(text, "flashsale_orders_cancelled_total") == 1 and metric(text, "flashsale_orders_expired_total") == 2
          and metric(text, "flashsale_sale_pending", f'sale="{w}"') == 1, text[-600:])
    long_window = c.create_sale(name="Pay within a minute", stock=2, payment_window=60)
    kept = c.post(f"/api/v1/sales/{long_window}/orders", {"user_id": "u5"}).json
    before = c.get(f"/api/v1/sales/{w}").json
    c.close()
    srv.stop()
    srv.start()
    c = srv.client()
    r = c.get(f"/api/v1/sales/{w}")
    check(SUITE, "restart_rebuilds_status_counts", r.json == before, f"{r.json} != {before}")
    r = c.order(kept, "pay")  # the token made before the restart still opens it
    check(SUITE, "pay_after_restart", r.status == 200 and r.json["status"] == "paid", repr(r))
    c.close()


def race(srv, stock=40, window=1.0, users=300, seconds=6):
    """Buyers pay, cancel, lapse, or pay at the deadline; an auditor watches."""
    c = srv.client()
    sale = c.create_sale(name="Race", stock=stock, per_user_limit=1, payment_window=int(window))
    lock = threading.Lock()
    outcome = {"created": 0, "paid": 0, "cancelled": 0, "lapsed": 0, "late_won": 0, "late_lost": 0, "errors": []}
    results = []  # (order_id, action, http status of the action)
    stop = threading.Event()
    violations = []

    def auditor():
        a = Client(srv.port)
        n = 0
        while not stop.is_set():
            au = a.get(f"/api/v1/sales/{sale}/audit").json
            n += 1
            if not au["consistent"] or au["units_sold"] > au["stock_total"]:
                violations.append(au)
            time.sleep(0.05)
        outcome["audits"] = n

    def buyer(ids):
        b = Client(srv.port)
        rnd = random.Random(ids[0])
        deadline = time.time() + seconds
        for uid in ids:
            while time.time() < deadline:
                r = b.post(f"/api/v1/sales/{sale}/orders", {"user_id": uid})
                if r.status == 201:
                    break
                time.sleep(0.05)
            else:
                continue
            with lock:
                outcome["created"] += 1
            o = r.json
            action = rnd.choice(["pay", "pay", "cancel", "lapse", "late"])
            if action == "pay":
                time.sleep(rnd.uniform(0, window * 0.5))
                st = b.order(o, "pay", {"user_id": uid}).status
            elif action == "cancel":
                time.sleep(rnd.uniform(0, window * 0.5))
                st = b.order(o, "cancel", {"user_id": uid}).status
            elif action == "late":
                # pay within a few ms of the deadline, on either side: exactly one of
                # the payment and the sweeper may win
                time.sleep(max(0, ts(o["expires_at"]) - time.time() + rnd.uniform(-0.03, 0.03)))
                st = b.order(o, "pay", {"user_id": uid}).status
            else:
                st = None
            with lock:
                results.append((o["order_id"], action, st))

    t_audit = threading.Thread(target=auditor)
    t_audit.start()
    per = users // 20
    ts_ = [threading.Thread(target=buyer, args=([f"r-{i}" for i in range(k * per, (k + 1) * per)],)) for k in range(20)]
    for t in ts_:
        t.start()
    for t in ts_:
        t.join()
    # Every pending order lapses (window) and is swept, whenever the sweeper gets to it.
    until(lambda: srv.sql(f"SELECT count(*) FROM orders WHERE sale_id={sale} AND status='pending'")[0][0] == 0)
    stop.set()
    t_audit.join()

    rows = {r[0]: (r[1], r[2], r[3]) for r in srv.sql(
        f"SELECT id, status, paid_at, expires_at FROM orders WHERE sale_id={sale}")}
    wrong = []
    for oid, action, st in results:
        status, paid_at, expires_at = rows[oid]
        if st == 200 and status != "paid" and action != "cancel":
            wrong.append((oid, action, st, status))
        if action == "cancel" and st == 200 and status != "cancelled":
            wrong.append((oid, action, st, status))
        if st == 409 and status != "expired":
            wrong.append((oid, action, st, status))
        if action == "late":
            outcome["late_won" if st == 200 else "late_lost"] += 1
        if action == "lapse" and status != "expired":
            wrong.append((oid, action, st, status))
    audit = c.get(f"/api/v1/sales/{sale}/audit").json
    check(SUITE, "race:invariant_held_at_every_audit", not violations and outcome.get("audits", 0) > 10,
          f"{len(violations)} bad audits of {outcome.get('audits')}: {violations[:2]}")
    check(SUITE, "race:answers_match_database", not wrong, f"{len(wrong)} mismatches: {wrong[:5]}")
    check(SUITE, "race:no_payment_after_expiry", all(p is None or p < e for s, p, e in rows.values() if s == "paid")
          and audit["paid_after_expiry"] == 0, repr(audit))
    check(SUITE, "race:final_audit_consistent", audit["consistent"] and audit["pending"] == 0, repr(audit))
    check(SUITE, "race:returned_units_resold", len(rows) > stock and audit["expired"] + audit["cancelled"] > 0,
          f"{len(rows)} orders for {stock} units")
    check(SUITE, "race:deadline_races_happened", outcome["late_won"] + outcome["late_lost"] > 0, repr(outcome))
    paid = sum(1 for s, _, _ in rows.values() if s == "paid")
    check(SUITE, "race:stock_adds_up", audit["stock_left"] + paid == stock and audit["units_sold"] == paid, repr(audit))
    print(f"# race: {len(rows)} orders for {stock} units; paid {audit['paid']}, cancelled {audit['cancelled']}, "
          f"expired {audit['expired']}; deadline races: {outcome['late_won']} payments won, "
          f"{outcome['late_lost']} lost to the sweeper; {outcome.get('audits')} audits, all consistent: {not violations}")
    c.close()


def main():
    srv = Server(binary=BINARY, args=["--sweep-ms", "100"]).start()
    try:
        contract(srv)
        race(srv)
        code, _ = srv.stop()
        check(SUITE, "clean_stop", code == 0, f"exit {code}")
        check(SUITE, "no_sanitizer_reports", not srv.sanitizer_reports(), "\n".join(srv.sanitizer_reports()[:20]))
    finally:
        srv.cleanup()
    finish()


if __name__ == "__main__":
    main()
