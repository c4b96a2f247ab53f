"""Rate limits (per user id, per client address), signed purchase tokens (--user-secret), and
orders that strangers can neither read, pay nor cancel by walking their ids (X-Order-Token).

Usage: tests/test_security.py [BINARY]
"""
import hashlib
import hmac
import http.client
import os
import secrets
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Client, Server, check, finish, metric  # noqa: E402

SUITE = "security"
BINARY = sys.argv[1] if len(sys.argv) > 1 else None


def get_from(port, path, source):
    """A GET from a given loopback source address (127.0.0.x)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(source, 0))
    c.request("GET", path)
    r = c.getresponse()
    r.read()
    c.close()
    return r.status, r.getheader("Retry-After")


def user_rate():
    srv = Server(binary=BINARY, args=["--user-rate", "2"]).start()
    try:
        c = srv.client()
        sale = c.create_sale(name="Rate", stock=100, per_user_limit=100)
        # Until the first refusal: a slow machine may earn a token back between two
        # requests, so how many get through is its business; the burst of two is not.
        statuses = []
        while len(statuses) < 50 and (not statuses or statuses[-1].status == 201):
            statuses.append(c.post(f"/api/v1/sales/{sale}/orders", {"user_id": "eager"}))
        r = statuses[-1]
        bought = sum(1 for s in statuses if s.status == 201)
        check(SUITE, "user_rate_burst_allowed", [s.status for s in statuses[:2]] == [201, 201], repr(statuses))
        check(SUITE, "user_rate_429", r.status == 429 and r.error() == "rate_limited"
              and int(r.header("Retry-After") or 0) >= 1, repr(r))
        r = c.post(f"/api/v1/sales/{sale}/orders", {"user_id": "patient"})
        check(SUITE, "user_rate_other_user_unaffected", r.status == 201, repr(r))
        time.sleep(1.1)  # two tokens a second: at least one is back
        r = c.post(f"/api/v1/sales/{sale}/orders", {"user_id": "eager"})
        check(SUITE, "user_rate_refills", r.status == 201, repr(r))
        audit = c.get(f"/api/v1/sales/{sale}/audit").json
        check(SUITE, "user_rate_refusal_moves_no_stock", audit["units_sold"] == bought + 2 and audit["consistent"], repr(audit))
        text = c.get("/metrics").raw.decode()
        check(SUITE, "user_rate_counted", (metric(text, "flashsale_rate_limited_total") or 0) >= 1)
        srv.stop()
    finally:
        srv.cleanup()


def ip_rate():
    srv = Server(binary=BINARY, args=["--ip-rate", "5"]).start()
    try:
        c = srv.client()
        got = []  # until the first refusal (a slow machine earns tokens back meanwhile)
        while len(got) < 200 and (not got or got[-1] == 200):
            got.append(c.get("/api/v1/sales").status)
        check(SUITE, "ip_rate_429_after_burst", got[:5] == [200] * 5 and got[-1] == 429, repr(got))
        check(SUITE, "ip_rate_spares_healthz", c.get("/healthz").status == 200)
        status, retry = get_from(srv.port, "/api/v1/sales", "127.0.0.2")
        check(SUITE, "ip_rate_other_address_unaffected", status == 200, f"{status} {retry}")
        srv.stop()
    finally:
        srv.cleanup()


def token(secret, user, expires):
    mac = hmac.new(secret.encode(), f"{user}\n{expires}".encode(), hashlib.sha256).hexdigest()
    return f"{expires}.{mac}"


def user_secret():
    secret = "front-end-shared-secret"
    srv = Server(binary=BINARY, args=["--user-secret", secret]).start()
    try:
        c = srv.client()
        sale = c.create_sale(name="Signed", stock=10, payment_window=60)
        path = f"/api/v1/sales/{sale}/orders"
        later = int(time.time()) + 300
        cases = [
            ("no_token_401", None),
            ("forged_token_401", f"{later}." + "0" * 64),
            ("expired_token_401", token(secret, "ann", int(time.time()) - 5)),
            ("other_users_token_401", token(secret, "bob", later)),
            ("wrong_secret_401", token("guess", "ann", later)),
            ("garbage_token_401", "not-a-token"),
            ("short_mac_401", f"{later}.abcd"),
        ]
        for name, tok in cases:
            headers = {"X-User-Token": tok} if tok else {}
            r = c.request("POST", path, json_body={"user_id": "ann"}, headers=headers)
            check(SUITE, "token:" + name, r.status == 401 and r.error() == "invalid_token", repr(r))
        r = c.request("POST", path, json_body={"user_id": "ann"}, headers={"X-User-Token": token(secret, "ann", later)})
        check(SUITE, "token:valid_201", r.status == 201, repr(r))
        o = r.json if r.status == 201 else {"order_id": 0}
        r = c.order(o, "pay", {"user_id": "ann"})
        check(SUITE, "token:pay_needs_token", r.status == 401 and r.error() == "invalid_token", repr(r))
        r = c.order(o, "pay", {}, headers={"X-User-Token": token(secret, "ann", later)})
        check(SUITE, "token:pay_needs_user_id", r.status == 400 and r.error() == "invalid_request", repr(r))
        r = c.order(o, "pay", {"user_id": "ann"}, headers={"X-User-Token": token(secret, "ann", later)})
        check(SUITE, "token:pay_with_token", r.status == 200 and r.json["status"] == "paid", repr(r))
        audit = c.get(f"/api/v1/sales/{sale}/audit").json
        check(SUITE, "token:refusals_move_no_stock", audit["units_sold"] == 1 and audit["consistent"], repr(audit))
        srv.stop()
    finally:
        srv.cleanup()


def enumeration(label, secret=None):
    """A stranger who knows only that order ids count up from 1 (and, worst case,
    every buyer's user id) walks the ids and tries to read, pay and cancel every
    order: without the order's X-Order-Token every answer must be the one for an
    order that does not exist, and nothing may change."""
    srv = Server(binary=BINARY, args=["--user-secret", secret] if secret else []).start()
    later = int(time.time()) + 300

    def tok(o):  # (a made-up one where the server gave none, so the walk still runs)
        return o.get("order_token") or "0" * 32

    def signed(user):
        return {"X-User-Token": token(secret, user, later)} if secret else {}

    try:
        c = srv.client()
        pending_sale = c.create_sale(name="Reserve", stock=20, per_user_limit=5, payment_window=300)
        final_sale = c.create_sale(name="Final", stock=10, per_user_limit=5)
        victims = [f"victim-{i}-{secrets.token_hex(3)}" for i in range(6)]
        orders = []
        for i, user in enumerate(victims):
            for sale in (pending_sale, final_sale) if i % 2 else (pending_sale,):
                r = c.request("POST", f"/api/v1/sales/{sale}/orders", json_body={"user_id": user}, headers=signed(user))
                if r.status != 201:
                    raise AssertionError(f"setting up the victims' orders failed: {r}")
                orders.append(r.json)
        stranger = "stranger"
        r = c.request("POST", f"/api/v1/sales/{pending_sale}/orders", json_body={"user_id": stranger},
                      headers=signed(stranger))
        own = r.json
        check(SUITE, f"{label}:stranger_has_an_order", r.status == 201 and len(own.get("order_token", "")) == 32, repr(r))
        top = max(o["order_id"] for o in orders + [own])

        def snapshot():
            rows = srv.sql("SELECT id, sale_id, user_id, quantity, status, paid_at FROM orders ORDER BY id")
            sales = [c.get(f"/api/v1/sales/{s}").json for s in (pending_sale, final_sale)]
            return rows, sales

        before = snapshot()
        by_id = {o["order_id"]: o for o in orders}
        nothing = c.order({"order_id": top + 1000}, token=tok(own))  # what "no such order" looks like
        s = Client(srv.port)  # the stranger's own connection
        answers = []
        for oid in range(1, top + 11):
            if oid == own["order_id"]:
                continue
            victim = by_id.get(oid, {}).get("user_id", victims[0])
            other = tok(own) if oid % 2 else tok(orders[oid % len(orders)])
            if by_id.get(oid, {}).get("order_token") == other:
                other = tok(own)
            tries = [("get_no_token", None, None, ""),
                     ("get_wrong_token", None, None, secrets.token_hex(16)),
                     ("get_other_orders_token", None, None, other),
                     ("get_short_token", None, None, "0" * 31)]
            for action in ("pay", "cancel"):
                tries += [(f"{action}_owner_user_no_token", action, {"user_id": victim}, ""),
                          (f"{action}_owner_user_wrong_token", action, {"user_id": victim}, secrets.token_hex(16)),
                          (f"{action}_own_token_on_their_order", action, {"user_id": stranger}, tok(own)),
                          (f"{action}_other_orders_token", action, None, other),
                          (f"{action}_empty_body_no_token", action, None, "")]
            for name, action, body, given in tries:
                # signed as who the stranger is: with --user-secret no one can sign another's id
                r = s.order({"order_id": oid}, action, body, token=given, headers=signed(stranger))
                answers.append((oid, name, r))
        bad = [(oid, name, r) for oid, name, r in answers if r.status != 404 or r.error() != "not_found"]
        check(SUITE, f"{label}:walk_all_404", not bad and len(answers) > 100,
              f"{len(bad)} of {len(answers)} answers were not 404 not_found: {bad[:3]}")
        alike = [(oid, name, r) for oid, name, r in answers if r.raw != nothing.raw]
        check(SUITE, f"{label}:walk_answers_same_as_no_such_order", not alike and nothing.status == 404,
              f"{len(alike)} answers differ from {nothing}: {alike[:3]}")
        leaked = [(oid, name, r) for oid, name, r in answers for v in victims if v.encode() in r.raw]
        check(SUITE, f"{label}:walk_leaks_no_user_id", not leaked, repr(leaked[:3]))
        after = snapshot()
        check(SUITE, f"{label}:walk_changes_no_order", after[0] == before[0],
              f"{[b for b, a in zip(before[0], after[0]) if a != b][:3]}")
        check(SUITE, f"{label}:walk_moves_no_stock", after[1] == before[1], f"{before[1]} -> {after[1]}")
        audit = c.get(f"/api/v1/sales/{pending_sale}/audit").json
        check(SUITE, f"{label}:walk_audit_consistent", audit["consistent"] and audit["pending"] == 7
              and audit["cancelled"] == 0 and audit["paid"] == 0, repr(audit))

        # The owners, with their tokens, keep every right they had.
        o = orders[0]
        r = c.order(o)
        check(SUITE, f"{label}:owner_reads", r.status == 200 and r.json["user_id"] == o["user_id"]
              and r.json["status"] == "pending" and "order_token" not in r.json, repr(r))
        r = c.order(o, "pay", {"user_id": o["user_id"]}, headers=signed(o["user_id"]))
        check(SUITE, f"{label}:owner_pays", r.status == 200 and r.json["status"] == "paid", repr(r))
        p = orders[1]
        r = c.order(p, "cancel", {"user_id": p["user_id"]}, headers=signed(p["user_id"]))
        check(SUITE, f"{label}:owner_cancels", r.status == 200 and r.json["status"] == "cancelled", repr(r))
        q = orders[3]
        r = c.order(q, "cancel", {"user_id": stranger}, headers=signed(stranger))
        check(SUITE, f"{label}:right_token_wrong_user_403", r.status == 403 and r.error() == "forbidden", repr(r))
        r = c.order(q, "cancel", {"user_id": q["user_id"]}, token=tok(q).upper(), headers=signed(q["user_id"]))
        check(SUITE, f"{label}:token_is_lowercase_hex", r.status == 404, repr(r))
        if not secret:
            r = c.order(q, "cancel")
            check(SUITE, f"{label}:token_alone_cancels", r.status == 200 and r.json["status"] == "cancelled", repr(r))
        r = s.order(own, "cancel", {"user_id": stranger}, headers=signed(stranger))
        check(SUITE, f"{label}:stranger_cancels_own", r.status == 200 and r.json["status"] == "cancelled", repr(r))
        audit = c.get(f"/api/v1/sales/{pending_sale}/audit").json
        want_cancelled = 2 if secret else 3  # orders[1], the stranger's own, and orders[3] without a secret
        check(SUITE, f"{label}:owners_audit", audit["consistent"] and audit["paid"] == 1
              and audit["cancelled"] == want_cancelled, repr(audit))
        # Every node, and every restart, makes the same tokens: the secret is the database's.
        s.close()
        c.close()
        srv.stop()
        srv.start()
        c = srv.client()
        r = c.order(orders[2])
        check(SUITE, f"{label}:token_survives_restart", r.status == 200 and r.json["user_id"] == orders[2]["user_id"],
              repr(r))
        r = c.order(orders[2], token=tok(orders[4]))
        check(SUITE, f"{label}:after_restart_other_token_404", r.status == 404, repr(r))
        # A reset deletes the sale's orders (the newest ones here): their ids must not come
        # back, or a kept token would open a new buyer's order.
        gone = [o for o in orders + [own] if o["sale_id"] == pending_sale]
        r = c.admin(f"/api/v1/sales/{pending_sale}/reset")
        fresh = c.request("POST", f"/api/v1/sales/{pending_sale}/orders", json_body={"user_id": "newcomer"},
                          headers=signed("newcomer")).json or {}
        opened = [c.order({"order_id": fresh.get("order_id")}, token=tok(o)).status for o in gone]
        check(SUITE, f"{label}:reset_ids_not_reused", r.status == 200 and fresh.get("order_id", 0) > top
              and opened == [404] * len(gone), f"{r} {fresh} {opened}")
        srv.stop()
    finally:
        srv.cleanup()


def main():
    user_rate()
    ip_rate()
    user_secret()
    enumeration("orders")
    enumeration("orders_signed", secret="front-end-shared-secret")
    finish()


if __name__ == "__main__":
    main()
